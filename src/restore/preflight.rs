//! The steps that prove a restore can start, before a byte is fetched or anything is
//! touched: storage, manifest, tools, destination, extensions, disk.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::backup::catalog;
use crate::backup::manifest::{BackupManifest, StoredObject};
use crate::config::PostgresTarget;
use crate::pg::{self, tools, ConnTarget};
use crate::report::{Phase, Steps};
use crate::storage::Storage;
use crate::units;

/// What the preflight looks at.
pub struct Preflight<'a> {
    pub storage: &'a dyn Storage,
    pub target: &'a PostgresTarget,
    pub backup_id: &'a str,
    pub destination: &'a ConnTarget,
    pub staging_dir: &'a Path,
}

/// Runs the checks that need no download: storage, manifest, tools, destination,
/// extensions, disk. `seekable` says whether the restore stages a decompressed archive
/// (parallel pg_restore) or the stored bytes. Returns the manifest and the `pg_restore`
/// the tools step approved.
pub async fn run(
    p: &Preflight<'_>,
    steps: &mut Steps,
    seekable: bool,
) -> Result<(BackupManifest, PathBuf)> {
    steps
        .run("storage", Phase::Preflight, async {
            p.storage.list(catalog::BACKUPS_PREFIX).await?;
            Ok(((), format!("{} is reachable", p.storage.describe())))
        })
        .await?;
    let manifest = steps
        .run("manifest", Phase::Preflight, async {
            let m = catalog::resolve(p.storage, &p.target.name, p.backup_id).await?;
            let msg = format!(
                "backup {} of {} taken {} ({} tables, {})",
                m.id,
                m.database,
                units::time(m.created_at),
                units::count(m.tables.len() as u64),
                units::bytes(m.size_bytes)
            );
            Ok((m, msg))
        })
        .await?;
    let pg_restore = steps
        .run("tools", Phase::Preflight, async {
            let path = tools::find("pg_restore", p.target.pg_bin_dir.as_deref())?;
            let (major, version) = tools::version(&path).await?;
            let (dump_major, _) = tools::parse_version(&manifest.pg_dump_version)?;
            if major < dump_major {
                bail!(
                    "pg_restore {version} is older than the pg_dump {} that wrote this backup and cannot read it; hint: install {} and set pg_bin_dir",
                    manifest.pg_dump_version,
                    tools::client_package(dump_major)
                );
            }
            Ok((path.clone(), format!("{} {version} can read a pg_dump {} archive", path.display(), manifest.pg_dump_version)))
        })
        .await?;
    let client = steps
        .run("destination", Phase::Preflight, async {
            let client = p.destination.connect().await?;
            let (major, version) = pg::server_version(&client).await?;
            if major < manifest.server_major {
                bail!(
                    "destination {} runs PostgreSQL {version}, older than the backup's source ({}); hint: restore into a server of version {} or newer",
                    p.destination.public_url,
                    manifest.server_version,
                    manifest.server_major
                );
            }
            Ok((client, format!("{} answers, PostgreSQL {version}", p.destination.public_url)))
        })
        .await?;
    steps
        .run("extensions", Phase::Preflight, async {
            let available: Vec<String> = client
                .query("SELECT name FROM pg_available_extensions", &[])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let missing: Vec<&String> = manifest.extensions.iter().filter(|e| !available.contains(e)).collect();
            if !missing.is_empty() {
                bail!(
                    "the backup uses extension(s) {} that the destination server does not have; hint: install them there (often the postgresql-contrib package) before restoring",
                    missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                );
            }
            Ok(((), format!("all {} extension(s) of the backup are available", manifest.extensions.len())))
        })
        .await?;
    {
        steps
            .run("disk", Phase::Preflight, async {
                let staged = |o: &StoredObject| if seekable { o.raw_bytes } else { o.size_bytes };
                let needed = staged(manifest.dump()) + manifest.globals().map_or(0, staged);
                let free = free_bytes(p.staging_dir)?;
                if free < needed + needed / 20 {
                    bail!(
                        "{} has {} free, the restore stages {} there; hint: free space or pass --staging-dir on a larger disk",
                        p.staging_dir.display(),
                        units::bytes(free),
                        units::bytes(needed)
                    );
                }
                Ok(((), format!("{} needed, {} free in {}", units::bytes(needed), units::bytes(free), p.staging_dir.display())))
            })
            .await?;
    }
    Ok((manifest, pg_restore))
}

pub fn free_bytes(dir: &Path) -> Result<u64> {
    let stat = nix::sys::statvfs::statvfs(dir)
        .with_context(|| format!("cannot read free space of {}", dir.display()))?;
    Ok(stat.blocks_available() as u64 * stat.fragment_size() as u64)
}
