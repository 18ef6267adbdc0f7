//! Rebuilding an incremental base backup for a point-in-time restore: every link of its
//! chain (the full backup, the incrementals between, the chosen one) is found and proven
//! intact before anything is written, then each is unpacked beside the data directory
//! (the same filesystem), `pg_combinebackup` writes the data directory, `pg_verifybackup`
//! checks the result, and the unpacked links are removed.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};

use crate::backup::catalog;
use crate::backup::manifest::{BackupManifest, BackupMethod};
use crate::encryption::Identities;
use crate::error::usage;
use crate::process::ChildCommand;
use crate::storage::Storage;

/// The links `manifest` is rebuilt from, the full backup first and `manifest` last, each
/// present and matching its checksums. A missing or foreign link is a refusal naming it.
pub(super) async fn check(
    storage: &dyn Storage,
    manifest: &BackupManifest,
) -> Result<(Vec<BackupManifest>, String)> {
    let info = manifest
        .physical
        .as_ref()
        .context("the manifest of a physical backup has no physical section")?;
    let target = &manifest.target;
    let whole = info
        .chain
        .iter()
        .chain(std::iter::once(&manifest.id))
        .cloned()
        .collect::<Vec<_>>()
        .join(" → ");
    let mut links = Vec::new();
    for id in &info.chain {
        let link = catalog::resolve_method(storage, target, id, Some(BackupMethod::Physical))
            .await
            .map_err(|e| {
                usage(format!(
                    "incremental backup {} cannot be rebuilt: link {id} of its chain ({whole}) is missing or unreadable ({e:#}); nothing was written; hint: restore from an older chain or a full base backup with --backup-id (`dr list --target {target}`)",
                    manifest.id
                ))
            })?;
        let expected_parent = links.last().map(|l: &BackupManifest| l.id.clone());
        let same_cluster = link
            .physical
            .as_ref()
            .is_some_and(|p| p.system_identifier == info.system_identifier);
        if !same_cluster || link.parent_id().map(str::to_string) != expected_parent {
            return Err(usage(format!(
                "incremental backup {} cannot be rebuilt: link {id} of its chain ({whole}) is another backup than the one it was built on (another cluster or parent); nothing was written; hint: restore from a full base backup with --backup-id (`dr list --target {target}`)",
                manifest.id
            )));
        }
        links.push(link);
    }
    if manifest.parent_id() != links.last().map(|l| l.id.as_str()) {
        return Err(usage(format!(
            "incremental backup {} names parent {:?}, which is not the end of its chain ({whole}); nothing was written; hint: restore from a full base backup with --backup-id (`dr list --target {target}`)",
            manifest.id,
            manifest.parent_id()
        )));
    }
    links.push(manifest.clone());
    // Present at its recorded size here; the bytes are hashed once, as each link is
    // unpacked, which is still before the data directory is created (`rebuild`).
    for link in &links {
        for object in &link.objects {
            let key = catalog::backup_dir(target, &link.id) + "/" + &object.file;
            let found = storage.head(&key).await.ok().flatten().map(|m| m.size);
            if found != Some(object.size_bytes) {
                return Err(anyhow!(
                    "incremental backup {} cannot be rebuilt: link {} of its chain ({whole}) is damaged: {key} is {} where its manifest records {} bytes; nothing was written; hint: restore from an older chain or a full base backup with --backup-id (`dr list --target {target}`)",
                    manifest.id,
                    link.id,
                    found.map_or("missing".to_string(), |n| format!("{n} bytes")),
                    object.size_bytes
                ));
            }
        }
    }
    let stored: u64 = links.iter().map(|l| l.size_bytes).sum();
    let msg = format!(
        "chain {whole}: {} link(s) present at their recorded sizes ({} MiB stored; each is hashed as it is unpacked)",
        links.len(),
        stored >> 20
    );
    Ok((links, msg))
}

/// Unpacked bytes a rebuild needs on the data directory's filesystem: every link, and the
/// combined copy (at most the full backup plus the incrementals).
pub(super) fn disk_needed(links: &[BackupManifest]) -> u64 {
    let raw: u64 = links
        .iter()
        .filter_map(|l| l.base())
        .map(|b| b.raw_bytes)
        .sum();
    raw * 2
}

/// Unpacks every link beside `pgdata`, combines them into `pgdata` (empty), verifies the
/// result without parsing WAL (the archive supplies it), and removes the unpacked links.
pub(super) async fn rebuild(
    storage: &dyn Storage,
    links: &[BackupManifest],
    identities: Option<&Arc<Identities>>,
    pgdata: &Path,
    bin_dir: &Path,
) -> Result<String> {
    let parent = pgdata
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Removed on drop, also when the restore is interrupted (registered as a leftover).
    let work = super::stage::staging_area(parent)?;
    let mut dirs = Vec::new();
    for (i, link) in links.iter().enumerate() {
        let dir = work.0.path().join(format!("{i:03}-{}", link.id));
        std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        super::physical::unpack_base(storage, link, identities, &dir)
            .await
            .map_err(|e| {
                anyhow!(
                    "link {} of the chain is damaged or unreadable: {e:#}; nothing was written to the data directory; hint: restore from an older chain or a full base backup with --backup-id",
                    link.id
                )
            })?;
        dirs.push(dir);
    }
    std::fs::create_dir_all(pgdata)
        .with_context(|| format!("cannot create {}", pgdata.display()))?;
    ChildCommand::new(bin_dir.join("pg_combinebackup"), "pg_combinebackup")
        .args(combine_args(&dirs, pgdata))
        .output()
        .await
        .map_err(|e| anyhow!("pg_combinebackup could not rebuild the chain: {e:#}"))?;
    let verified = ChildCommand::new(bin_dir.join("pg_verifybackup"), "pg_verifybackup")
        .arg("--no-parse-wal")
        .arg(pgdata)
        .output()
        .await
        .map_err(|e| anyhow!("pg_verifybackup refused the rebuilt data directory: {e:#}"))?;
    drop(work);
    Ok(format!(
        "{} link(s) unpacked and combined into {} by pg_combinebackup; pg_verifybackup: {}",
        links.len(),
        pgdata.display(),
        verified
            .stdout
            .trim()
            .lines()
            .take(2)
            .collect::<Vec<_>>()
            .join("; ")
    ))
}

/// pg_combinebackup's command line: the links oldest first, then the output directory.
pub(super) fn combine_args(dirs: &[std::path::PathBuf], pgdata: &Path) -> Vec<String> {
    let mut args: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    args.push("--output".into());
    args.push(pgdata.display().to_string());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combines_oldest_first_into_the_data_directory() {
        let dirs = vec!["/r/x/000-full".into(), "/r/x/001-incr".into()];
        assert_eq!(
            combine_args(&dirs, Path::new("/r/data")),
            ["/r/x/000-full", "/r/x/001-incr", "--output", "/r/data"]
        );
    }
}
