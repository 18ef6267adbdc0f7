//! `dr validate` of a physical base backup: the WAL it needs is archived, the stored tar
//! hashes to the manifest, and, where the backup carries pg_basebackup's
//! `backup_manifest`, `pg_verifybackup` checks every file and parses the WAL from the
//! archive. Changes nothing; the staging copy is removed on every path.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};

use super::{Operation, RestoreReport};
use crate::backup::catalog;
use crate::backup::manifest::{BackupManifest, BackupMethod};
use crate::config::PostgresTarget;
use crate::encryption::Identities;
use crate::pg::tools;
use crate::process::ChildCommand;
use crate::report::{Finding, Phase, Steps, FORMAT_VERSION};
use crate::storage::Storage;
use crate::wal::{self, continuity, Lsn};

/// Hands the decompressed tar to an unpacking thread.
pub(super) struct TarSink {
    pub(super) tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
}

impl Write for TarSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // `tx` is taken only in drop.
        #[allow(clippy::expect_used)]
        let tx = self.tx.as_ref().expect("open until dropped");
        tx.send(buf.to_vec()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the tar extraction stopped")
        })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(super) struct ChunkReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.current.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.current = chunk;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Streams the base tar of `manifest` (decrypted, decompressed, its SHA-256 checked
/// against the manifest) and unpacks it into `dir`, which must exist.
pub(super) async fn unpack_base(
    storage: &dyn Storage,
    manifest: &BackupManifest,
    identities: Option<&Arc<Identities>>,
    dir: &Path,
) -> Result<u64> {
    let base = manifest
        .base()
        .ok_or_else(|| anyhow!("backup {} has no base tar", manifest.id))?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
    let unpack_dir = dir.to_path_buf();
    let unpacker = std::thread::spawn(move || -> Result<()> {
        let mut archive = tar::Archive::new(ChunkReader {
            rx,
            current: Vec::new(),
            at: 0,
        });
        archive.set_preserve_permissions(true);
        archive.unpack(&unpack_dir).with_context(|| {
            format!(
                "cannot unpack the base backup into {}",
                unpack_dir.display()
            )
        })
    });
    let streamed = super::stage::stream_object(
        storage,
        manifest,
        base,
        identities,
        TarSink { tx: Some(tx) },
        false,
    )
    .await;
    let unpacked = tokio::task::spawn_blocking(move || unpacker.join())
        .await?
        .map_err(|_| anyhow!("the tar extraction thread panicked"))?;
    streamed?;
    unpacked?;
    Ok(base.raw_bytes)
}

/// Validates a physical backup; the report says what happened, the result why it stopped.
pub async fn validate(
    storage: &dyn Storage,
    target: &PostgresTarget,
    backup_id: &str,
    staging_dir: &Path,
    identities: Option<Arc<Identities>>,
) -> (RestoreReport, Result<()>) {
    let mut steps = Steps::default();
    let result = steps_of(
        storage,
        target,
        backup_id,
        staging_dir,
        identities.as_ref(),
        &mut steps,
    )
    .await;
    let report = RestoreReport {
        format_version: FORMAT_VERSION,
        operation: Operation::Validate,
        ok: result.is_ok(),
        target: target.name.clone(),
        backup_id: result.as_ref().ok().cloned(),
        // A physical validation touches no database.
        destination: "-".into(),
        safety_backup_id: None,
        duration_ms: steps.total_ms(),
        steps: steps.0,
        rto_objective_ms: None,
        rto_met: None,
        verification: None,
        roles_without_password: Vec::new(),
        error: result.as_ref().err().map(|e| format!("{e:#}")),
    };
    (report, result.map(|_| ()))
}

async fn steps_of(
    storage: &dyn Storage,
    target: &PostgresTarget,
    backup_id: &str,
    staging_dir: &Path,
    identities: Option<&Arc<Identities>>,
    steps: &mut Steps,
) -> Result<String> {
    steps
        .run("storage", Phase::Preflight, async {
            storage.list(catalog::BACKUPS_PREFIX).await?;
            Ok(((), format!("{} is reachable", storage.describe())))
        })
        .await?;
    let manifest: BackupManifest = steps
        .run("manifest", Phase::Preflight, async {
            let m = catalog::resolve_method(storage, &target.name, backup_id, Some(BackupMethod::Physical)).await?;
            let p = m.physical.as_ref().context("the manifest of a physical backup has no physical section")?;
            let msg = format!(
                "physical base backup {} of system {} taken {}: WAL from {} ({}), consistent at {}, timeline {}",
                m.id,
                p.system_identifier,
                m.created_at.to_rfc3339(),
                p.start_lsn,
                p.start_wal,
                p.stop_lsn,
                p.timeline
            );
            Ok((m, msg))
        })
        .await?;
    let info = manifest
        .physical
        .clone()
        .context("the manifest of a physical backup has no physical section")?;
    let system_id: u64 = info.system_identifier.parse()?;
    let prefix = wal::cluster_prefix(&target.name, system_id);
    let segment_size = info.wal_segment_size;
    let (start, stop) = (
        Lsn::parse(&info.start_lsn)?.segno(segment_size),
        Lsn::parse(&info.stop_lsn)?.end_segno(segment_size),
    );
    let needed: Vec<wal::ArchivedFile> = steps
        .run("wal", Phase::Preflight, async {
            let files = wal::list_archive(storage, &prefix).await?;
            let walk = continuity::walk(&files, &continuity::Chain::single(info.timeline), start, Some(stop), segment_size);
            if let Some(first) = walk.first_missing() {
                bail!(
                    "the archive lacks {first} ({} of the segments from {} to {} this backup needs to become consistent): it cannot be restored; hint: use another backup (`dr list --target {}`)",
                    walk.missing_count,
                    walk.from,
                    walk.to,
                    target.name
                );
            }
            let needed: Vec<_> = files
                .into_iter()
                .filter(|f| {
                    f.wal.kind == wal::WalKind::Segment
                        && f.wal.timeline == info.timeline
                        && (start..=stop).contains(&f.wal.segno(segment_size))
                })
                .collect();
            Ok((needed, format!("{} segment(s) from {} to {} are archived", crate::units::count(walk.segments), walk.from, walk.to)))
        })
        .await?;

    let locked = manifest.encryption.is_some() && identities.is_none();
    let verifier = if locked {
        steps.push(
            "pg_verifybackup",
            Phase::Verify,
            Finding::warn(format!(
                "not run: the backup is encrypted (for {}) and no identity is configured here, so its tar was checked against its SHA-256 only; hint: pass --identity FILE to unpack and verify it too",
                manifest.recipients.join(", ")
            )),
            0,
        );
        None
    } else if info.backup_manifest {
        match tools::find_versioned(
            "pg_verifybackup",
            target.pg_bin_dir.as_deref(),
            manifest.server_major,
        ) {
            Ok(p) => Some(p),
            Err(e) => {
                steps.push(
                    "pg_verifybackup",
                    Phase::Verify,
                    Finding::warn(format!(
                        "not run: {e:#}; the stored tar was checked against its SHA-256 only"
                    )),
                    0,
                );
                None
            }
        }
    } else {
        None
    };
    let base = manifest
        .base()
        .context("the manifest of a physical backup lists no base object")?
        .clone();
    let staging = match &verifier {
        None => None,
        Some(_) => Some(
            steps
                .run("disk", Phase::Preflight, async {
                    let need = base.raw_bytes + needed.len() as u64 * segment_size;
                    let free = super::preflight::free_bytes(staging_dir)?;
                    if free < need + need / 20 {
                        bail!(
                            "{} has {} MiB free, pg_verifybackup needs the unpacked backup and its WAL there ({} MiB); hint: free space or pass --staging-dir on a larger disk",
                            staging_dir.display(),
                            free >> 20,
                            need >> 20
                        );
                    }
                    // Registered: a killed dr leaves no unpacked cluster behind for long.
                    let dir = super::stage::staging_area(staging_dir)?;
                    Ok((dir, format!("{} MiB needed, {} MiB free in {}", need >> 20, free >> 20, staging_dir.display())))
                })
                .await?,
        ),
    };

    steps
        .run("checksum", Phase::Fetch, async {
            match &staging {
                None if locked => {
                    // Integrity needs no key: the manifest records the hash of the stored bytes.
                    catalog::verify_checksums(storage, &manifest, None).await?;
                    Ok((
                        (),
                        format!(
                            "{} matches its SHA-256 ({} bytes stored, encrypted), proven without a key",
                            base.file, base.size_bytes
                        ),
                    ))
                }
                None => {
                    super::stage::stream_object(
                        storage,
                        &manifest,
                        &base,
                        identities,
                        std::io::sink(),
                        false,
                    )
                    .await?;
                    Ok((
                        (),
                        format!(
                            "{} matches its SHA-256 ({} bytes stored)",
                            base.file, base.size_bytes
                        ),
                    ))
                }
                Some(dir) => {
                    let data = dir.0.path().join("data");
                    std::fs::create_dir(&data)?;
                    unpack_base(storage, &manifest, identities, &data).await?;
                    Ok((
                        (),
                        format!(
                            "{} matches its SHA-256 and unpacks ({} bytes)",
                            base.file, base.raw_bytes
                        ),
                    ))
                }
            }
        })
        .await?;

    if let (Some(verifier), Some(dir)) = (verifier, &staging) {
        steps
            .run("pg_verifybackup", Phase::Verify, async {
                let wal_dir = dir.0.path().join("wal");
                std::fs::create_dir(&wal_dir)?;
                for f in &needed {
                    wal::fetch::fetch_to(storage, f, &wal_dir.join(&f.wal.name), identities).await?;
                }
                let out = ChildCommand::new(&verifier, "pg_verifybackup")
                    .arg(format!("--wal-directory={}", wal_dir.display()))
                    .arg(dir.0.path().join("data"))
                    .output()
                    .await
                    .map_err(|e| {
                        anyhow!(
                            "the backup is damaged: {e:#}; hint: use another backup (`dr list --target {}`)",
                            target.name
                        )
                    })?;
                let said = out.stdout.trim().lines().take(4).collect::<Vec<_>>().join("; ");
                Ok(((), format!(
                    "{said} ({}: every file against backup_manifest, WAL {} to {} parsed)",
                    verifier.display(),
                    info.start_lsn,
                    info.stop_lsn
                )))
            })
            .await?;
    } else if !info.backup_manifest {
        steps.push(
            "pg_verifybackup",
            Phase::Verify,
            Finding::pass("not applicable: the backup carries no backup_manifest; its tar was checked against its SHA-256"),
            0,
        );
    }
    drop(staging);
    Ok(manifest.id)
}
