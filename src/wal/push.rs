//! `archive_command`: one WAL file into storage, compressed, named with its SHA-256.
//!
//! Two passes over the file (it sits in the page cache): the first hashes it, which names
//! the object and decides whether it is already archived; the second compresses it into
//! storage and hashes it again, so a file that changed in between is refused before the
//! object is committed. Memory stays at a few MiB whatever the segment size.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{object_key, WalKind, WalName};
use crate::codec::PipelineSettings;
use crate::config::BackupConfig;
use crate::encryption::Recipients;
use crate::storage::{ByteStream, Storage};

/// A WAL file on local disk, recognised: its name, cluster and size.
#[derive(Debug, Clone)]
pub struct LocalWalFile {
    pub path: PathBuf,
    pub wal: WalName,
    pub system_id: u64,
    /// Known for segments (from their page header).
    pub segment_size: Option<u64>,
}

impl LocalWalFile {
    /// Reads what the file says about itself; segments must carry a page header that
    /// matches their name. Other files are attributed to the cluster of the data
    /// directory they live in (its `global/pg_control`).
    pub fn identify(path: &Path) -> Result<LocalWalFile> {
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow!("{} names no file", path.display()))?;
        let wal = WalName::parse(file_name).ok_or_else(|| {
            crate::error::usage(format!(
                "{file_name:?} is not a WAL file name (segment, .partial, .backup or .history); hint: archive_command must pass %p, as in archive_command = 'dr --config /etc/dr/dr.toml wal-push %p'"
            ))
        })?;
        let len = std::fs::metadata(path)
            .with_context(|| {
                format!(
                    "cannot read {} (working directory {}); hint: archive_command must pass %p, and dr must run as the OS user PostgreSQL runs as",
                    path.display(),
                    std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_else(|_| "unknown".into())
                )
            })?
            .len();
        if wal.has_page_header() {
            let header = super::read_segment_header(path)?;
            let expected = wal.segno(header.segment_size) * header.segment_size;
            if header.page_address != expected {
                bail!(
                    "{} does not hold the segment its name says: its first page is at WAL address {}, the name means {}; refusing to archive it; hint: the file was renamed or copied over",
                    path.display(),
                    super::Lsn(header.page_address),
                    super::Lsn(expected)
                );
            }
            if len != header.segment_size {
                bail!(
                    "{} is {len} bytes, but its cluster's segments are {} bytes: it is truncated or still being written; refusing to archive it",
                    path.display(),
                    header.segment_size
                );
            }
            return Ok(LocalWalFile {
                path: path.to_path_buf(),
                wal,
                system_id: header.system_id,
                segment_size: Some(header.segment_size),
            });
        }
        check_history_content(path, &wal)?;
        let data_dir = super::data_dir_of(path);
        let system_id = super::read_control_system_id(&data_dir).with_context(|| {
            format!(
                "cannot tell which cluster {file_name} belongs to: {} is not next to a data directory's global/pg_control; hint: push it from PostgreSQL's archive_command (which runs in the data directory)",
                path.display()
            )
        })?;
        Ok(LocalWalFile {
            path: path.to_path_buf(),
            wal,
            system_id,
            segment_size: None,
        })
    }
}

/// Larger than any history file PostgreSQL writes (a line per timeline switch).
const MAX_HISTORY_BYTES: u64 = 16 << 20;

/// Parses a timeline or backup history file before it is stored: recovery and `dr` itself
/// follow what they say, so a damaged one must not reach the archive.
fn check_history_content(path: &Path, wal: &WalName) -> Result<()> {
    use std::io::Read;
    if !matches!(wal.kind, WalKind::History | WalKind::Backup) {
        return Ok(());
    }
    let mut raw = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_HISTORY_BYTES + 1).read_to_end(&mut raw))
        .with_context(|| format!("cannot read {}", path.display()))?;
    let refuse = |why: String| {
        anyhow!(
            "{} is not a valid {} file: {why}; refusing to archive it; hint: PostgreSQL wrote it, so the file was damaged or replaced on disk: compare it with the server's pg_wal and the storage, then push the right one",
            path.display(),
            if wal.kind == WalKind::History { "timeline history" } else { "backup history" }
        )
    };
    if raw.len() as u64 > MAX_HISTORY_BYTES {
        return Err(refuse(format!("it is over {MAX_HISTORY_BYTES} bytes")));
    }
    let text = String::from_utf8(raw).map_err(|_| refuse("it is not text".into()))?;
    match wal.kind {
        WalKind::History => {
            let history = super::continuity::TimelineHistory::parse(wal.timeline, &text)
                .map_err(|e| refuse(format!("{e:#}")))?;
            // Every timeline after the first descends from an older one.
            if wal.timeline > 1 && history.switches.is_empty() {
                return Err(refuse("it names no parent timeline".into()));
            }
        }
        _ => {
            super::parse_backup_history(wal, &text).map_err(|e| refuse(format!("{e:#}")))?;
        }
    }
    Ok(())
}

/// What one push did.
#[derive(Debug, Clone, Serialize)]
pub struct PushOutcome {
    pub format_version: u32,
    pub ok: bool,
    pub name: String,
    pub target: String,
    pub system_identifier: String,
    pub key: String,
    pub sha256: String,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    /// The same content was already archived under this name: nothing was written.
    pub already_archived: bool,
    pub duration_ms: u64,
}

/// Two contents under one name: refused, naming the stored copy.
fn conflict(
    file: &LocalWalFile,
    target: &str,
    stored_key: &str,
    sha256: &str,
    what_happened: &str,
) -> anyhow::Error {
    anyhow!(
        "{} is already archived for target {target} (system {}) with different content: stored copy {stored_key}, this file's sha256 {sha256}; the stored copy is kept and {what_happened}; hint: find out which copy is right before anything else (`dr wal-fetch {} /tmp/{}.stored` fetches the stored one); PostgreSQL retries this file until the cause is fixed{}",
        file.wal.name,
        file.system_id,
        file.wal.name,
        file.wal.name,
        if file.wal.kind == WalKind::History {
            " (two clusters promoted to the same timeline?)"
        } else {
            ""
        }
    )
}

/// Whether the compressor failed only because the storage writer stopped reading.
fn writer_stopped(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.to_string().contains("storage writer stopped")
    })
}

pub(crate) fn hash_file(path: &Path) -> Result<(String, u64)> {
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// Pushes one file into the archive of `target`, compressed as `[backup]` says and, when
/// `recipients` are given and the file carries data, encrypted to them. Returns only when
/// the object is durable (or was already there with the same content).
pub async fn push(
    storage: &dyn Storage,
    target: &str,
    file: &LocalWalFile,
    settings: &BackupConfig,
    recipients: Option<&Recipients>,
) -> Result<PushOutcome> {
    let started = std::time::Instant::now();
    // Never into a storage nobody set up: an unmounted volume's mount point would take
    // the WAL, and it would vanish under the volume when it is mounted again.
    crate::storage::marker::require(
        storage,
        "nothing was written, PostgreSQL keeps the WAL and retries",
    )
    .await?;
    let prefix = super::cluster_prefix(target, file.system_id);
    let path = file.path.clone();
    let (sha256, raw_bytes) = tokio::task::spawn_blocking(move || hash_file(&path)).await??;

    let dir = format!("{prefix}/{}", file.wal.directory());
    let present = storage.list(&format!("{dir}/")).await.with_context(|| {
        format!(
            "cannot list {dir} in {}; PostgreSQL keeps the WAL and retries",
            storage.describe()
        )
    })?;
    let first_in_dir = present.is_empty();
    let existing: Vec<super::ArchivedFile> = super::archived_files(present)
        .into_iter()
        .filter(|a| a.wal.name == file.wal.name)
        .collect();
    if let Some(same) = existing.iter().find(|a| a.sha256 == sha256) {
        tracing::info!(name = %file.wal.name, key = %same.key, "already archived with the same content");
        return Ok(PushOutcome {
            format_version: crate::report::FORMAT_VERSION,
            ok: true,
            name: file.wal.name.clone(),
            target: target.to_string(),
            system_identifier: file.system_id.to_string(),
            key: same.key.clone(),
            sha256,
            raw_bytes,
            stored_bytes: same.size,
            already_archived: true,
            duration_ms: started.elapsed().as_millis() as u64,
        });
    }
    if let Some(other) = existing.first() {
        return Err(conflict(
            file,
            target,
            &other.key,
            &sha256,
            "nothing was written",
        ));
    }
    if first_in_dir {
        super::ensure_cluster_record(storage, target, file.system_id, file.segment_size)
            .await
            .with_context(|| {
                format!(
                    "cannot record cluster {} in {}",
                    file.system_id,
                    storage.describe()
                )
            })?;
    }

    // One thread: the archiver runs beside the database's own work.
    let pipeline = PipelineSettings {
        threads: 1,
        recipients: recipients
            .filter(|_| super::encrypts(file.wal.kind))
            .cloned(),
        ..PipelineSettings::new(settings, None)
    };
    let key = object_key(&prefix, &file.wal, &sha256, &pipeline.extension());
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
    let path = file.path.clone();
    let expected = sha256.clone();
    let producer = tokio::task::spawn_blocking(move || -> Result<u64> {
        let input = std::fs::File::open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut raw_hasher = Sha256::new();
        let mut hash_raw = |bytes: &[u8]| raw_hasher.update(bytes);
        let result =
            crate::codec::compress_into(input, tx.clone(), &pipeline, None, Some(&mut hash_raw));
        let outcome = result.and_then(|stored| {
            let again = hex::encode(raw_hasher.finalize());
            if again != expected {
                bail!(
                    "{} changed while it was being archived (sha256 {expected}, then {again}); nothing was committed",
                    path.display()
                );
            }
            Ok(stored.size_bytes)
        });
        if let Err(e) = &outcome {
            // The writer must see the failure before the stream ends, so it commits nothing.
            let _ = tx.blocking_send(Err(std::io::Error::other(format!("{e:#}"))));
        }
        outcome
    });
    let data: ByteStream = Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let (stored, produced) = tokio::join!(storage.put(&key, data), producer);
    let produced = produced.map_err(|e| anyhow!("compression thread failed: {e}"))?;
    let storage_failed = |e: anyhow::Error| {
        e.context(format!(
            "cannot store {} in {}; nothing was committed, PostgreSQL keeps the WAL and retries",
            file.wal.name,
            storage.describe()
        ))
    };
    let stored_bytes = match (stored, produced) {
        (Ok(n), Ok(_)) => n,
        // The writer failed first and the compressor only saw it stop: the writer's error
        // holds the cause (the OS error and the path).
        (Err(e), Err(p)) if writer_stopped(&p) => return Err(storage_failed(e)),
        (_, Err(e)) => return Err(e),
        (Err(e), Ok(_)) => return Err(storage_failed(e)),
    };
    // Another push of this name may have raced this one (two servers, or a retry beside a
    // stuck run): list again now that this copy is visible. A push that sees a copy with
    // other content withdraws its own, so two pushes of different content never both
    // succeed and never both stay (at worst both withdraw, and PostgreSQL retries).
    let rivals: Vec<super::ArchivedFile> = super::archived_files(
        storage.list(&format!("{dir}/")).await.with_context(|| {
            format!(
                "stored {key} but cannot list {dir} in {} to rule out a concurrent push; PostgreSQL keeps the WAL and retries",
                storage.describe()
            )
        })?,
    )
    .into_iter()
    .filter(|a| a.wal.name == file.wal.name && a.sha256 != sha256)
    .collect();
    if let Some(other) = rivals.first() {
        let withdrawn = match storage.delete(&key).await {
            Ok(()) => format!("this push's copy {key} was removed again"),
            Err(e) => {
                format!("this push's copy {key} could not be removed ({e:#}): remove it by hand")
            }
        };
        return Err(conflict(file, target, &other.key, &sha256, &withdrawn));
    }
    tracing::info!(name = %file.wal.name, key = %key, stored_bytes, "archived");
    Ok(PushOutcome {
        format_version: crate::report::FORMAT_VERSION,
        ok: true,
        name: file.wal.name.clone(),
        target: target.to_string(),
        system_identifier: file.system_id.to_string(),
        key,
        sha256,
        raw_bytes,
        stored_bytes,
        already_archived: false,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}
