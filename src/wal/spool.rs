//! WAL prefetch for recovery: `wal-fetch` serves a segment, then a background `dr
//! wal-fetch --prefetch` fetches the next `[wal] fetch_ahead` segments of the timeline
//! into `dr_wal_spool/` in the data directory, so the server's next calls only move a
//! file. The spool lives inside the data directory because the server's OS user can
//! write there and a rename into `pg_wal` stays on one filesystem.
//!
//! Each spooled segment has a sidecar (`NAME.json`) written after the segment was fetched
//! and checked against the SHA-256 in its object name. Before a spooled segment is used
//! it is checked again: the sidecar names this target and cluster, the file hashes to the
//! sidecar, has the cluster's segment size and a page header matching its name. Anything
//! else is removed and the segment is fetched from storage as if there were no spool.
//! `dr restore --pitr` and `dr drill --pitr` remove the spool when recovery ends.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{segment_name, ArchivedFile, WalKind, WalName};
use crate::encryption::Identities;
use crate::storage::Storage;

pub const SPOOL_DIR: &str = "dr_wal_spool";
const LOCK_FILE: &str = ".prefetch.lock";
const LOG_FILE: &str = "prefetch.log";
/// Fetches the prefetcher runs at once: two keep a segment ready ahead of replay; more
/// only take CPU from the replaying server on a small machine (measured on 2 cores).
const FETCH_PARALLEL: usize = 2;
/// How long recovery's call waits for a segment the prefetcher is writing, rather than
/// fetching it a second time.
const IN_FLIGHT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the prefetcher checked a spooled segment against.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Spooled {
    pub name: String,
    pub key: String,
    pub sha256: String,
    pub raw_bytes: u64,
    pub target: String,
    pub system_id: u64,
}

/// The spool of the data directory `dest` (restore_command's `%p`) lies in, when `dest` is
/// in a `pg_wal` directory: only a server's recovery prefetches, never a probe or a fetch
/// by hand into another directory.
pub fn spool_for(dest: &Path) -> Option<PathBuf> {
    let dest = if dest.is_absolute() {
        dest.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(dest)
    };
    let wal_dir = dest.parent()?;
    if wal_dir.file_name()?.to_str()? != "pg_wal" {
        return None;
    }
    Some(wal_dir.parent()?.join(SPOOL_DIR))
}

fn sidecar(spool: &Path, name: &str) -> PathBuf {
    spool.join(format!("{name}.json"))
}

/// Moves the spooled `wal` to `dest` when it passes every check; `false` (and the spooled
/// copy removed) otherwise.
pub fn take(spool: &Path, wal: &WalName, target: &str, system_id: u64, dest: &Path) -> bool {
    let data = spool.join(&wal.name);
    let side = sidecar(spool, &wal.name);
    let Ok(text) = std::fs::read(&side) else {
        return false;
    };
    let verdict = check(&data, &text, wal, target, system_id).and_then(|()| {
        std::fs::rename(&data, dest)
            .with_context(|| format!("cannot move it to {}", dest.display()))
    });
    let _ = std::fs::remove_file(&side);
    match verdict {
        Ok(()) => true,
        Err(e) => {
            let _ = std::fs::remove_file(&data);
            tracing::warn!(
                "refused the prefetched {} ({e:#}); it was removed and is fetched from storage again",
                data.display()
            );
            false
        }
    }
}

fn check(data: &Path, sidecar: &[u8], wal: &WalName, target: &str, system_id: u64) -> Result<()> {
    let spooled: Spooled = serde_json::from_slice(sidecar).context("its sidecar is not dr's")?;
    if spooled.name != wal.name || spooled.target != target || spooled.system_id != system_id {
        anyhow::bail!(
            "it was fetched for {} of target {} (system {}), not {} of target {target} (system {system_id})",
            spooled.name,
            spooled.target,
            spooled.system_id,
            wal.name
        );
    }
    let (sha, len) = super::push::hash_file(data)?;
    if sha != spooled.sha256 || len != spooled.raw_bytes {
        anyhow::bail!(
            "it hashes to sha256 {sha} ({len} bytes), it was fetched as {} ({} bytes)",
            spooled.sha256,
            spooled.raw_bytes
        );
    }
    let header = super::read_segment_header(data)?;
    let expected = wal.segno(header.segment_size) * header.segment_size;
    if header.system_id != system_id
        || header.page_address != expected
        || len != header.segment_size
    {
        anyhow::bail!(
            "its page header (system {}, address {}, segment size {}) does not match {}",
            header.system_id,
            super::Lsn(header.page_address),
            header.segment_size,
            wal.name
        );
    }
    Ok(())
}

/// How many of the `ahead` segments after `wal` the spool holds.
fn spooled_ahead(spool: &Path, wal: &WalName, segment_size: u64, ahead: usize) -> usize {
    next_names(wal, segment_size, ahead)
        .iter()
        .filter(|n| sidecar(spool, n).exists())
        .count()
}

fn next_names(wal: &WalName, segment_size: u64, ahead: usize) -> Vec<String> {
    let segno = wal.segno(segment_size);
    (1..=ahead as u64)
        .map(|i| segment_name(wal.timeline, segno + i, segment_size))
        .collect()
}

/// What the background prefetcher needs besides the served segment.
pub struct Prefetch<'a> {
    pub config_path: &'a Path,
    pub target: &'a str,
    pub system_id: u64,
    pub identity: Option<&'a Path>,
    pub ahead: usize,
}

/// Serves `wal` from the spool of `dest`'s data directory when it holds a good copy, and
/// keeps the prefetcher going; `false` when the caller must fetch it from storage.
pub fn serve(p: &Prefetch<'_>, wal: &WalName, dest: &Path) -> bool {
    if wal.kind != WalKind::Segment {
        return false;
    }
    let Some(spool) = spool_for(dest) else {
        return false;
    };
    wait_in_flight(&spool, &wal.name);
    if !take(&spool, wal, p.target, p.system_id, dest) {
        return false;
    }
    tracing::info!(name = %wal.name, "served from the prefetch spool");
    start_prefetch(p, wal, dest);
    true
}

/// After `wal` was served into `dest`: starts a background prefetcher unless the spool
/// already holds at least half of the next segments. Never fails the fetch it follows.
pub fn start_prefetch(p: &Prefetch<'_>, wal: &WalName, dest: &Path) {
    if p.ahead == 0 || wal.kind != WalKind::Segment {
        return;
    }
    let Some(spool) = spool_for(dest) else {
        return;
    };
    let Ok(header) = super::read_segment_header(dest) else {
        return;
    };
    if spooled_ahead(&spool, wal, header.segment_size, p.ahead) * 2 >= p.ahead.max(1) {
        return;
    }
    if let Err(e) = spawn(p, wal, &spool, header.segment_size) {
        tracing::warn!(
            "cannot start the WAL prefetcher: {e:#}; recovery fetches one segment at a time"
        );
    }
}

fn spawn(p: &Prefetch<'_>, wal: &WalName, spool: &Path, segment_size: u64) -> Result<()> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(spool).with_context(|| format!("cannot create {}", spool.display()))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(spool.join(LOG_FILE))
        .with_context(|| format!("cannot open {}", spool.join(LOG_FILE).display()))?;
    let exe = std::env::current_exe().context("cannot find the dr executable")?;
    let config = std::fs::canonicalize(p.config_path).unwrap_or_else(|_| p.config_path.into());
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--config")
        .arg(config)
        .args(["wal-fetch", "--target", p.target])
        .arg("--system-id")
        .arg(p.system_id.to_string())
        .arg("--prefetch")
        .arg(segment_size.to_string());
    if let Some(identity) = p.identity {
        cmd.arg("--identity")
            .arg(std::fs::canonicalize(identity).unwrap_or_else(|_| identity.into()));
    }
    // The spool as the destination's stand-in: the prefetcher writes nowhere else.
    cmd.arg(&wal.name)
        .arg(spool.join(&wal.name))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        // Its own process group: the server's signals to the restore_command's group
        // (a fast shutdown) do not reach it, and nothing waits for it.
        .process_group(0);
    cmd.spawn()
        .context("cannot start dr wal-fetch --prefetch")?;
    Ok(())
}

/// The background prefetcher: fetches the `ahead` segments after `after` that the spool
/// lacks into it, checked against their object names, and removes spooled segments that
/// recovery has passed. One at a time per spool (a lock); it stops when the spool is gone.
pub async fn fill(
    p: &Prefetch<'_>,
    storage: &dyn Storage,
    prefix: &str,
    segment_size: u64,
    identities: Option<&Arc<Identities>>,
    after: &WalName,
    spool: &Path,
) -> Result<()> {
    let (target, system_id, ahead) = (p.target, p.system_id, p.ahead);
    use futures::StreamExt;
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(spool.join(LOCK_FILE))
        .with_context(|| format!("cannot open the lock in {}", spool.display()))?;
    let Ok(_lock) = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
    else {
        return Ok(());
    };
    forget_passed(spool, after);
    let wanted: Vec<String> = next_names(after, segment_size, ahead)
        .into_iter()
        .filter(|n| !sidecar(spool, n).exists())
        .collect();
    let mut archived: Vec<ArchivedFile> = Vec::new();
    let mut dirs: Vec<String> = wanted.iter().map(|n| n[..16].to_string()).collect();
    dirs.dedup();
    for dir in dirs {
        let listed = storage.list(&format!("{prefix}/{dir}/")).await?;
        archived.extend(super::archived_files(listed));
    }
    let files: Vec<ArchivedFile> = wanted
        .iter()
        .filter_map(|n| {
            let mut copies = archived.iter().filter(|a| &a.wal.name == n);
            let first = copies.next()?;
            // Two contents under one name: wal-fetch's own call refuses it, loudly.
            copies
                .all(|c| c.sha256 == first.sha256)
                .then(|| first.clone())
        })
        .collect();
    futures::stream::iter(files)
        .map(|file| async move {
            let dest = spool.join(&file.wal.name);
            let fetched = super::fetch::fetch_to(storage, &file, &dest, identities).await;
            let result = fetched.and_then(|outcome| {
                let record = Spooled {
                    name: outcome.name,
                    key: outcome.key,
                    sha256: outcome.sha256,
                    raw_bytes: outcome.raw_bytes,
                    target: target.to_string(),
                    system_id,
                };
                write_sidecar(spool, &record)
            });
            if let Err(e) = result {
                let _ = std::fs::remove_file(&dest);
                tracing::warn!("prefetch of {} failed: {e:#}", file.wal.name);
            }
        })
        .buffer_unordered(FETCH_PARALLEL)
        .collect::<Vec<()>>()
        .await;
    Ok(())
}

fn write_sidecar(spool: &Path, record: &Spooled) -> Result<()> {
    let path = sidecar(spool, &record.name);
    let temp = spool.join(format!(".{}.json.{}", record.name, std::process::id()));
    std::fs::write(&temp, serde_json::to_vec(record)?)
        .and_then(|()| std::fs::rename(&temp, &path))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Removes spooled segments of `after`'s timeline up to `after`: recovery is past them.
fn forget_passed(spool: &Path, after: &WalName) {
    let Ok(entries) = std::fs::read_dir(spool) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let base = name.strip_suffix(".json").unwrap_or(&name);
        let passed = WalName::parse(base).is_some_and(|w| {
            w.kind == WalKind::Segment && w.timeline == after.timeline && w.name <= after.name
        });
        if passed {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Removes the spool of `data_dir` (and any push records copied in with a base backup):
/// renamed away first, so a prefetcher still running finds no spool to write into.
pub fn remove(data_dir: &Path) {
    let spool = data_dir.join(SPOOL_DIR);
    let gone = data_dir.join(format!(".{SPOOL_DIR}.removed-{}", std::process::id()));
    if std::fs::rename(&spool, &gone).is_ok() {
        wait_for_prefetcher(&gone.join(LOCK_FILE));
        for _ in 0..3 {
            if std::fs::remove_dir_all(&gone).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    let _ = std::fs::remove_dir_all(data_dir.join(super::push_ahead::RECORD_DIR));
}

/// Waits (up to 10 s) until no prefetcher holds the spool's lock: one still fetching
/// stops at its next write, as the spool is gone.
fn wait_for_prefetcher(lock: &Path) {
    let Ok(file) = std::fs::File::open(lock) else {
        return;
    };
    let mut file = file;
    for _ in 0..200 {
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(_held) => return,
            Err((f, _)) => file = f,
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Waits while the prefetcher is writing `name` (its temporary file is there and its
/// sidecar not yet), up to [`IN_FLIGHT_WAIT`].
fn wait_in_flight(spool: &Path, name: &str) {
    let temp_prefix = format!(".{name}.dr-fetch-");
    let in_flight = || {
        std::fs::read_dir(spool).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(&temp_prefix))
        })
    };
    let deadline = std::time::Instant::now() + IN_FLIGHT_WAIT;
    while !sidecar(spool, name).exists() && in_flight() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Renamed into place, its sidecar comes next.
    for _ in 0..10 {
        if sidecar(spool, name).exists() || !spool.join(name).exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
