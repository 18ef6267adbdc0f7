//! Finding backups in storage: `backups/<target>/<id>/` holds the objects and
//! `manifest.json`; only a directory with a readable manifest is a backup.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::manifest::{BackupKind, BackupManifest, BackupMethod, MANIFEST_FILE};
use super::retention::FUTURE_TOLERANCE;
use crate::config::{storage_name, target_from_storage};
use crate::error::usage;
use crate::storage::{self, Storage};

pub const BACKUPS_PREFIX: &str = "backups";

pub fn backup_dir(target: &str, id: &str) -> String {
    format!("{BACKUPS_PREFIX}/{}/{id}", storage_name(target))
}

pub fn manifest_key(target: &str, id: &str) -> String {
    format!("{}/{MANIFEST_FILE}", backup_dir(target, id))
}

pub fn object_key(manifest: &BackupManifest, file: &str) -> String {
    format!("{}/{file}", backup_dir(&manifest.target, &manifest.id))
}

/// The most bytes one file name may have on the file systems storage lives on (ext4,
/// XFS, btrfs, ZFS).
const NAME_MAX: usize = 255;

/// What dr appends to a target's storage name in one file name, at most: a safety
/// backup's id (`-20260102T030405Z-safety`), and a status record's `.json` followed by
/// local storage's `.partial-<pid>-<counter>` while it is written.
const NAME_SUFFIX_MAX: usize = 48;

/// Why `target` cannot be stored (its storage name leaves no room for dr's suffixes in a
/// 255-byte file name), with the fix; `None` when it fits.
pub fn storage_name_problem(target: &str) -> Option<String> {
    let stored = storage_name(target);
    if stored.len() + NAME_SUFFIX_MAX <= NAME_MAX {
        return None;
    }
    let hint = match target.split_once(crate::config::MEMBER_SEPARATOR) {
        Some((fleet, database)) => format!(
            "leave the database out with exclude = [{database:?}] in the [[postgres]] table {fleet:?} and back it up as a target of its own with a short name and database = {database:?}, or rename the database"
        ),
        None => "use a shorter target name".to_string(),
    };
    Some(format!(
        "target {target:?} is stored as {} bytes ({stored}...), but file names hold at most {NAME_MAX} bytes and dr adds up to {NAME_SUFFIX_MAX} (characters other than letters, digits, '-' and '_' take 3 bytes each); hint: {hint}",
        stored.len(),
        stored = stored.chars().take(40).collect::<String>(),
    ))
}

/// Every object of one backup directory, complete or not.
#[derive(Debug, Clone)]
pub struct BackupDir {
    pub target: String,
    pub id: String,
    pub has_manifest: bool,
    pub keys: Vec<String>,
    pub newest_modified: DateTime<Utc>,
}

/// Groups everything under `backups/` by backup directory.
pub async fn scan(storage: &dyn Storage, target: Option<&str>) -> Result<Vec<BackupDir>> {
    let prefix = match target {
        Some(t) => format!("{BACKUPS_PREFIX}/{}/", storage_name(t)),
        None => format!("{BACKUPS_PREFIX}/"),
    };
    let objects = storage
        .list(&prefix)
        .await
        .with_context(|| format!("cannot list backups in {}", storage.describe()))?;
    let mut dirs: BTreeMap<(String, String), BackupDir> = BTreeMap::new();
    for o in objects {
        let mut parts = o.key.splitn(4, '/');
        let (Some(_), Some(t), Some(id), Some(file)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let t = target_from_storage(t);
        let entry = dirs
            .entry((t.clone(), id.to_string()))
            .or_insert_with(|| BackupDir {
                target: t,
                id: id.to_string(),
                has_manifest: false,
                keys: vec![],
                newest_modified: o.modified,
            });
        entry.has_manifest |= file == MANIFEST_FILE;
        entry.newest_modified = entry.newest_modified.max(o.modified);
        entry.keys.push(o.key.clone());
    }
    Ok(dirs.into_values().collect())
}

/// A manifest that exists but cannot be read: reported, never trusted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DamagedManifest {
    pub key: String,
    pub error: String,
}

/// Complete backups (those with a readable manifest), newest first.
pub async fn list_complete(
    storage: &dyn Storage,
    target: Option<&str>,
) -> Result<(Vec<BackupManifest>, Vec<DamagedManifest>)> {
    let dirs = scan(storage, target).await?;
    let mut manifests = Vec::new();
    let mut damaged = Vec::new();
    let reads = futures::stream::iter(dirs.into_iter().filter(|d| d.has_manifest).map(
        |d| async move {
            let key = manifest_key(&d.target, &d.id);
            let result = storage::get_bytes(storage, &key)
                .await
                .and_then(|b| BackupManifest::parse(&b));
            (key, result)
        },
    ))
    .buffer_unordered(8)
    .collect::<Vec<_>>()
    .await;
    for (key, result) in reads {
        match result {
            Ok(m) => manifests.push(m),
            Err(e) => damaged.push(DamagedManifest {
                key,
                error: format!("{e:#}"),
            }),
        }
    }
    manifests.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    Ok((manifests, damaged))
}

/// Whether a backup is dated further in the future than clocks may disagree: a copied or
/// clock-skewed backup, reported but never trusted as the newest.
pub fn is_future_dated(manifest: &BackupManifest, now: DateTime<Utc>) -> bool {
    manifest.created_at > now + FUTURE_TOLERANCE
}

/// The newest regular backup that is not dated in the future, and the future-dated ones
/// that were passed over (newest first).
pub fn newest_trusted(
    manifests: &[BackupManifest],
    now: DateTime<Utc>,
) -> (Option<&BackupManifest>, Vec<&BackupManifest>) {
    let regular = manifests.iter().filter(|m| m.kind == BackupKind::Regular);
    let (future, trusted): (Vec<_>, Vec<_>) = regular.partition(|m| is_future_dated(m, now));
    (trusted.into_iter().next(), future)
}

/// Resolves `ID` or `latest` (the newest regular dump of `target` that is not dated in the
/// future) for the commands that work on dumps: a physical backup is refused by name. A
/// path-like or otherwise impossible id is unknown (exit 2).
pub async fn resolve(storage: &dyn Storage, target: &str, id: &str) -> Result<BackupManifest> {
    resolve_method(storage, target, id, Some(BackupMethod::Dump)).await
}

/// Resolves `ID` or `latest` among the backups of `method` (or of any method).
pub async fn resolve_method(
    storage: &dyn Storage,
    target: &str,
    id: &str,
    method: Option<BackupMethod>,
) -> Result<BackupManifest> {
    let m = resolve_any(storage, target, id, method).await?;
    match (method, m.method) {
        (Some(BackupMethod::Dump), BackupMethod::Physical) => Err(usage(format!(
            "backup {id} is a physical base backup; this command works on pg_dump backups; hint: restore the whole cluster from it with `dr restore --target {target} --pitr --backup-id {id} --to-latest --pgdata DIR`, or pick a dump (`dr list --target {target}` shows the method)"
        ))),
        (Some(BackupMethod::Physical), BackupMethod::Dump) => Err(usage(format!(
            "backup {id} is a pg_dump backup, not a physical one; hint: drop --physical"
        ))),
        _ => Ok(m),
    }
}

async fn resolve_any(
    storage: &dyn Storage,
    target: &str,
    id: &str,
    method: Option<BackupMethod>,
) -> Result<BackupManifest> {
    if id == "latest" {
        let (mut all, damaged) = list_complete(storage, Some(target)).await?;
        let complete = all.len();
        all.retain(|m| method.is_none_or(|w| m.method == w));
        let (word, flag) = match method {
            Some(BackupMethod::Physical) => ("physical ", " --physical"),
            // Only worth saying when base backups were passed over (never for Redis).
            Some(BackupMethod::Dump) if all.len() < complete => ("pg_dump ", ""),
            _ => ("", ""),
        };
        for d in &damaged {
            tracing::warn!(
                "latest skips {}: {}; that backup cannot be trusted",
                d.key,
                d.error
            );
        }
        let (newest, future) = newest_trusted(&all, Utc::now());
        let skipped: Vec<String> = future
            .iter()
            .map(|m| format!("{} (dated {})", m.id, crate::units::time(m.created_at)))
            .collect();
        if !skipped.is_empty() {
            tracing::warn!(
                "latest skips backup(s) dated in the future, which a copy or a wrong clock made: {}; hint: check the clock of the host that took them, and name one with --backup-id if you trust it",
                skipped.join(", ")
            );
        }
        return newest.cloned().ok_or_else(|| {
            let mut passed_over: Vec<String> = damaged
                .iter()
                .map(|d| format!("{}: {}", d.key, d.error))
                .collect();
            if !skipped.is_empty() {
                passed_over.push(format!("dated in the future: {}", skipped.join(", ")));
            }
            let also = if passed_over.is_empty() {
                String::new()
            } else {
                format!(" (passed over: {})", passed_over.join("; "))
            };
            anyhow::anyhow!(
                "no trustworthy complete {word}backup of target {target:?} in {}{also}; hint: run `dr backup --target {target}{flag}` first",
                storage.describe()
            )
        });
    }
    if !is_plausible_id(target, id) {
        return Err(usage(format!(
            "unknown backup id {id:?} for target {target:?}; hint: `dr list --target {target}` shows the complete backups"
        )));
    }
    let key = manifest_key(target, id);
    match storage.head(&key).await? {
        Some(_) => {
            let bytes = storage::get_bytes(storage, &key).await?;
            let m = BackupManifest::parse(&bytes)
                .with_context(|| format!("manifest {key} is damaged and cannot be trusted"))?;
            if m.target != target || m.id != id {
                anyhow::bail!(
                    "manifest {key} belongs to {}/{}, not {target}/{id}: it was moved or edited",
                    m.target,
                    m.id
                );
            }
            Ok(m)
        }
        None => {
            let leftovers = storage
                .list(&format!("{}/", backup_dir(target, id)))
                .await?;
            if leftovers.is_empty() {
                Err(usage(format!(
                    "unknown backup id {id:?} for target {target:?}; hint: `dr list --target {target}` shows the complete backups"
                )))
            } else {
                Err(anyhow::anyhow!(
                    "backup {id} has data but no manifest: it is incomplete (interrupted) or its manifest was deleted, so it cannot be trusted; hint: restore another backup (`dr list --target {target}`)"
                ))
            }
        }
    }
}

/// Ids are `<target>-<yyyymmddThhmmssZ>[-safety]`: anything else (a path, `..`, a slash)
/// names no backup and is never turned into a storage key.
fn is_plausible_id(target: &str, id: &str) -> bool {
    id.strip_prefix(storage_name(target).as_ref())
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// Streams an object and returns (size, SHA-256 hex); reading stops one byte past
/// `max_bytes`, so an endless object ends the read. With `idle_timeout`, storage that
/// stops answering for that long is an error, however long the whole read takes.
pub async fn hash_object(
    storage: &dyn Storage,
    key: &str,
    max_bytes: u64,
    idle_timeout: Option<std::time::Duration>,
) -> Result<(u64, String)> {
    let limit = idle_timeout.unwrap_or(std::time::Duration::MAX);
    let stalled = || {
        anyhow::anyhow!(
            "{} stopped answering for {} while reading {key}",
            storage.describe(),
            crate::units::duration(limit)
        )
    };
    let mut stream = tokio::time::timeout(limit, storage.get(key))
        .await
        .map_err(|_| stalled())??;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = tokio::time::timeout(limit, stream.next())
        .await
        .map_err(|_| stalled())?
    {
        let chunk = chunk.with_context(|| format!("cannot read {key}"))?;
        size += chunk.len() as u64;
        hasher.update(&chunk);
        if size > max_bytes {
            break;
        }
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// Every object's stored bytes hash to the manifest; the first mismatch is an error that
/// names the object, the expected and the found checksum.
pub async fn verify_checksums(
    storage: &dyn Storage,
    manifest: &BackupManifest,
    idle_timeout: Option<std::time::Duration>,
) -> Result<()> {
    for object in &manifest.objects {
        let key = object_key(manifest, &object.file);
        let (size, sha) = hash_object(storage, &key, object.size_bytes, idle_timeout)
            .await
            .with_context(|| {
                format!(
                    "object {key} of backup {} is missing or unreadable",
                    manifest.id
                )
            })?;
        if size > object.size_bytes {
            anyhow::bail!(
                "{key} holds more than the {} bytes its manifest records: the backup was altered; hint: use another backup (`dr list --target {}`)",
                object.size_bytes, manifest.target
            );
        }
        if sha != object.sha256 || size != object.size_bytes {
            anyhow::bail!(
                "checksum mismatch for {key}: the manifest says sha256 {} and {} bytes, storage holds sha256 {sha} and {size} bytes: the backup is corrupted; hint: use another backup (`dr list --target {}`)",
                object.sha256, object.size_bytes, manifest.target
            );
        }
    }
    Ok(())
}
