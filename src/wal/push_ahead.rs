//! Push-ahead: when PostgreSQL has marked several segments ready, the `wal-push` it runs
//! for the oldest stores the others too, in parallel, and records each one that is durable
//! in `dr_wal_pushed/` beside `pg_wal` (inside the data directory, which the server's OS
//! user owns). PostgreSQL's next calls for them find the record, check that the file still
//! hashes to it and that the object is still in storage, and return at once.
//!
//! A record is written only after its object is durable, and only ever promises what the
//! storage still confirms: a record that does not match (another file under the name,
//! another storage, another target, an object gone) is removed and the file is pushed as
//! if there were none. `archive_status` belongs to PostgreSQL and is only read.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::push::{hash_file, LocalWalFile, PushOutcome};
use super::{WalKind, WalName};
use crate::storage::Storage;

/// The directory of records, beside `pg_wal` in the data directory.
pub const RECORD_DIR: &str = "dr_wal_pushed";

/// What one record says: this file, with this content, is durable at `key`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PushRecord {
    pub name: String,
    pub sha256: String,
    pub key: String,
    pub target: String,
    pub storage: String,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
}

pub fn record_dir(file: &LocalWalFile) -> PathBuf {
    super::data_dir_of(&file.path).join(RECORD_DIR)
}

/// Segments other than `file` that PostgreSQL marked ready and that carry no record yet,
/// oldest first, at most `limit`. Only segments: history and backup history files are few
/// and PostgreSQL sends them first.
pub fn ready_segments(file: &LocalWalFile, limit: usize) -> Vec<PathBuf> {
    let wal_dir = file.path.parent().unwrap_or(Path::new("."));
    let records = record_dir(file);
    let Ok(entries) = std::fs::read_dir(wal_dir.join("archive_status")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.strip_suffix(".ready")?.to_string();
            let wal = WalName::parse(&name)?;
            let wanted = wal.kind == WalKind::Segment
                && name != file.wal.name
                && !records.join(&name).exists();
            wanted.then_some(name)
        })
        .collect();
    names.sort();
    names.truncate(limit);
    names.into_iter().map(|n| wal_dir.join(n)).collect()
}

/// Writes the record of a durable push: a temporary file, fsynced, then renamed.
pub fn write_record(file: &LocalWalFile, outcome: &PushOutcome, storage: &str) -> Result<()> {
    use std::io::Write;
    let dir = record_dir(file);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let record = PushRecord {
        name: outcome.name.clone(),
        sha256: outcome.sha256.clone(),
        key: outcome.key.clone(),
        target: outcome.target.clone(),
        storage: storage.to_string(),
        raw_bytes: outcome.raw_bytes,
        stored_bytes: outcome.stored_bytes,
    };
    let path = dir.join(&outcome.name);
    let temp = dir.join(format!(".{}.{}", outcome.name, std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&temp)?;
        f.write_all(&serde_json::to_vec(&record).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&temp, &path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        anyhow::anyhow!("cannot write {}: {e}", path.display())
    })
}

/// The outcome of an earlier push-ahead of `file`, when its record still holds: the
/// file hashes to it, it names this storage and target, and the object is there. The
/// record is used once: it is removed whatever it says.
pub async fn recorded(
    storage: &dyn Storage,
    target: &str,
    file: &LocalWalFile,
) -> Option<PushOutcome> {
    let started = std::time::Instant::now();
    let path = record_dir(file).join(&file.wal.name);
    let text = std::fs::read(&path).ok()?;
    let _ = std::fs::remove_file(&path);
    let record: PushRecord = serde_json::from_slice(&text).ok()?;
    if record.name != file.wal.name
        || record.target != target
        || record.storage != storage.describe()
    {
        return None;
    }
    let wal_path = file.path.clone();
    let (sha256, raw_bytes) = tokio::task::spawn_blocking(move || hash_file(&wal_path))
        .await
        .ok()?
        .ok()?;
    if sha256 != record.sha256 {
        tracing::warn!(name = %file.wal.name, "{} changed since it was pushed ahead; pushing it again", file.path.display());
        return None;
    }
    match storage.head(&record.key).await {
        Ok(Some(_)) => {}
        _ => return None,
    }
    Some(PushOutcome {
        format_version: crate::report::FORMAT_VERSION,
        ok: true,
        name: record.name,
        target: target.to_string(),
        system_identifier: file.system_id.to_string(),
        key: record.key,
        sha256,
        raw_bytes,
        stored_bytes: record.stored_bytes,
        already_archived: true,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// Removes records whose file left `pg_wal` (archived and recycled): nothing will ask
/// for them again.
pub fn sweep(file: &LocalWalFile) {
    let dir = record_dir(file);
    let wal_dir = file.path.parent().unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if !wal_dir.join(&name).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Segments pushed ahead per slot of `push_parallel` in one call: enough that most of
/// PostgreSQL's calls find a record, few enough that one call ends within seconds.
const AHEAD_PER_SLOT: usize = 4;

/// Pushes `file` and, with `parallel` above 1, the segments PostgreSQL marked ready after
/// it, `parallel` at once. Returns `file`'s outcome: Ok only once `file` is durable. The
/// others only leave a record when they are durable; their failures are logged and left
/// to PostgreSQL's own calls for them.
pub async fn push_with_ahead(
    storage: &dyn Storage,
    target: &str,
    file: &LocalWalFile,
    settings: &crate::config::BackupConfig,
    recipients: Option<&crate::encryption::Recipients>,
    parallel: usize,
) -> Result<PushOutcome> {
    use futures::StreamExt;
    if file.wal.kind != WalKind::Segment {
        return super::push::push(storage, target, file, settings, recipients).await;
    }
    if let Some(done) = recorded(storage, target, file).await {
        tracing::info!(name = %file.wal.name, key = %done.key, "pushed ahead earlier");
        return Ok(done);
    }
    if parallel <= 1 {
        return super::push::push(storage, target, file, settings, recipients).await;
    }
    sweep(file);
    let ahead = ready_segments(file, parallel * AHEAD_PER_SLOT);
    let own = super::push::push(storage, target, file, settings, recipients);
    let others = futures::stream::iter(ahead)
        .map(|path| push_one_ahead(storage, target, file, path, settings, recipients))
        .buffer_unordered(parallel - 1)
        .collect::<Vec<()>>();
    let (own, _) = tokio::join!(own, others);
    own
}

async fn push_one_ahead(
    storage: &dyn Storage,
    target: &str,
    asked: &LocalWalFile,
    path: PathBuf,
    settings: &crate::config::BackupConfig,
    recipients: Option<&crate::encryption::Recipients>,
) {
    let shown = path.display().to_string();
    let result = async {
        let file = tokio::task::spawn_blocking(move || LocalWalFile::identify(&path)).await??;
        if file.system_id != asked.system_id {
            anyhow::bail!(
                "it belongs to system {}, not {}",
                file.system_id,
                asked.system_id
            );
        }
        let outcome = super::push::push(storage, target, &file, settings, recipients).await?;
        write_record(&file, &outcome, &storage.describe())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(
            "could not push {shown} ahead (PostgreSQL's own call for it pushes it): {e:#}"
        );
    }
}
