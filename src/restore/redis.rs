//! Restoring a Redis backup: preflight (manifest, destination version), fetch with the
//! checksum checked before anything is touched, consent for a destination that holds
//! keys, a safety backup of it, optional FLUSHALL, then every key with
//! `RESTORE key ttl payload REPLACE ABSTTL`, pipelined, and verification.
//!
//! An RDB backup can instead be written to a file (`--rdb-file`): the exact way to place
//! it under a stopped server is part of the report.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use redis::aio::MultiplexedConnection;
use serde::Serialize;
use tokio::sync::mpsc;

use super::redis_verify::{BackupDigest, RedisVerifyReport};
use crate::backup::catalog;
use crate::backup::manifest::{BackupKind, BackupManifest};
use crate::backup::redis as redis_backup;
use crate::config::{Config, RedisTarget};
use crate::encryption::Identities;
use crate::error::usage;
use crate::redis_client::conn::{self, server_error_text, RedisEndpoint};
use crate::redis_client::rdb::{Entry, RdbReader};
use crate::report::{Phase, Steps, FORMAT_VERSION};
use crate::restore::preflight::free_bytes;
use crate::restore::stage::{stage, staging_area};
use crate::restore::Operation;
use crate::storage::Storage;
use crate::units;
use std::sync::Arc;

/// Commands per pipeline, and the payload bytes after which a pipeline is sent early.
const PIPELINE_KEYS: usize = 1000;
const PIPELINE_BYTES: usize = 8 << 20;

pub struct RedisRestoreRequest<'a> {
    pub config: &'a Config,
    pub storage: &'a dyn Storage,
    pub target: &'a RedisTarget,
    pub backup_id: &'a str,
    pub destination: RedisEndpoint,
    /// How the command line named the destination (`--into 'URL'` or `--into-env VAR`),
    /// for the command that goes back to the safety backup; `None` for the target's own.
    pub destination_flag: Option<String>,
    pub yes: bool,
    pub flush: bool,
    pub no_safety_backup: bool,
    /// Write the RDB here instead of restoring into a server.
    pub rdb_file: Option<PathBuf>,
    pub staging_dir: PathBuf,
    pub show_progress: bool,
    /// What encrypted backups are opened with.
    pub identities: Option<Arc<Identities>>,
    /// What the safety backup is encrypted to (`[encryption]`).
    pub recipients: Option<crate::encryption::Recipients>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoredKeys {
    /// Keys put back with RESTORE.
    pub keys: u64,
    /// Keys whose TTL had run out by the time of the restore: not restored.
    pub skipped_expired: u64,
}

/// The restore report's fields and vocabulary, plus what only Redis has: the keys restored,
/// and with `--rdb-file` the file and the steps to load it.
#[derive(Debug, Serialize)]
pub struct RedisRestoreReport {
    pub format_version: u32,
    pub operation: Operation,
    pub ok: bool,
    pub target: String,
    pub backup_id: Option<String>,
    /// Password removed.
    pub destination: String,
    pub safety_backup_id: Option<String>,
    pub steps: Vec<crate::report::Step>,
    /// Measured RTO: every step, without the time spent waiting for the operator.
    pub duration_ms: u64,
    pub rto_objective_ms: Option<u64>,
    pub rto_met: Option<bool>,
    pub verification: Option<RedisVerifyReport>,
    pub error: Option<String>,
    pub restored: Option<RestoredKeys>,
    pub rdb_file: Option<String>,
    pub next_steps: Vec<String>,
}

/// Storage reachable and the manifest a Redis backup of this target.
pub async fn resolve_manifest(
    storage: &dyn Storage,
    target: &RedisTarget,
    backup_id: &str,
    steps: &mut Steps,
) -> Result<BackupManifest> {
    steps
        .run("storage", Phase::Preflight, async {
            storage.list(catalog::BACKUPS_PREFIX).await?;
            Ok(((), format!("{} is reachable", storage.describe())))
        })
        .await?;
    steps
        .run("manifest", Phase::Preflight, async {
            let m = catalog::resolve(storage, &target.name, backup_id).await?;
            let d = redis_backup::details(&m)?;
            let msg = format!(
                "backup {} taken {} from Redis {} ({}, RDB version {}, {} key(s) in {} database(s), {} bytes)",
                m.id,
                units::time(m.created_at),
                m.server_version,
                d.method.as_str(),
                d.rdb_version,
                d.keys,
                d.databases.len(),
                m.size_bytes
            );
            Ok((m, msg))
        })
        .await
}

/// The destination answers and can load the backup's RDB version.
pub async fn check_destination(
    destination: &RedisEndpoint,
    manifest: &BackupManifest,
    steps: &mut Steps,
) -> Result<(MultiplexedConnection, u64)> {
    steps
        .run("destination", Phase::Preflight, async {
            let mut con = destination.connect().await?;
            let server = conn::server_info(&mut con).await?;
            let rdb_version = redis_backup::details(manifest)?.rdb_version;
            if !conn::can_load(&server.version, &manifest.server_version, rdb_version) {
                bail!(
                    "destination {} runs Redis {}, which loads RDB up to version {}, but backup {} was taken from Redis {} and holds RDB version {rdb_version}; hint: restore into Redis {}.{} or newer",
                    destination.public_url,
                    server.version,
                    conn::loads_rdb_up_to(&server.version),
                    manifest.id,
                    manifest.server_version,
                    manifest.server_major,
                    manifest.server_version.split('.').nth(1).unwrap_or("0")
                );
            }
            let keys: u64 = conn::keyspace(&mut con).await?.values().map(|k| k.0).sum();
            let msg = format!(
                "{} answers, Redis {} (can load the backup's RDB version {rdb_version}); holds {keys} key(s)",
                destination.public_url, server.version
            );
            Ok(((con, keys), msg))
        })
        .await
}

/// A backup object staged locally; its directory (and the record that lets the next `dr`
/// remove it if this one is killed) goes when this is dropped.
pub struct Staged {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
    /// Dropped after `_dir`: the record goes once the directory is gone.
    _registered: crate::leftovers::Registered,
}

/// The command that restores the safety backup `id` over the same destination: the
/// `--into` of the restore goes with it, or it would flush the target's own server.
fn go_back_command(target: &str, id: &str, destination_flag: Option<&str>) -> String {
    let mut cmd = format!("dr restore --target {target} --backup-id {id}");
    if let Some(flag) = destination_flag {
        cmd.push(' ');
        cmd.push_str(flag);
    }
    cmd.push_str(" --yes --flush");
    cmd
}

/// Fetches the stored object into a private staging directory, checking its SHA-256.
pub async fn fetch(
    storage: &dyn Storage,
    manifest: &BackupManifest,
    identities: Option<&Arc<Identities>>,
    staging_parent: &Path,
    decompress: bool,
    steps: &mut Steps,
) -> Result<Staged> {
    let (dir, registered) = staging_area(staging_parent)?;
    let object = manifest.dump();
    let path = dir.path().join(if decompress {
        "dump.rdb"
    } else {
        "backup.stored"
    });
    steps
        .run("fetch", Phase::Fetch, async {
            let free = free_bytes(staging_parent)?;
            let needed = if decompress { object.raw_bytes } else { object.size_bytes };
            if free < needed + needed / 20 {
                bail!(
                    "{} has {} MiB free, the restore stages {} MiB there; hint: free space or pass --staging-dir on a larger disk",
                    staging_parent.display(),
                    free >> 20,
                    needed >> 20
                );
            }
            let n = stage(storage, manifest, object, identities, &path, decompress).await?;
            Ok(((), format!(
                "{} fetched, SHA-256 verified; {} staged in {}",
                units::bytes(object.size_bytes),
                units::bytes(n),
                staging_parent.display()
            )))
        })
        .await?;
    Ok(Staged {
        path,
        _dir: dir,
        _registered: registered,
    })
}

/// A destination that holds keys needs consent: the target's name typed on a terminal,
/// `--yes` otherwise. Refusing changes nothing (exit 2).
fn confirm(req: &RedisRestoreRequest<'_>, keys: u64) -> Result<()> {
    if req.yes {
        return Ok(());
    }
    let fate = if req.flush {
        "all of them will be deleted (--flush)"
    } else {
        "keys with the same names will be replaced, the others stay"
    };
    if !std::io::stdin().is_terminal() {
        return Err(usage(format!(
            "destination Redis {} is not empty: it holds {keys} key(s) and {fate}; nothing was changed; hint: pass --yes to confirm (a safety backup is taken first), add --flush to empty it first, or restore elsewhere with --into",
            req.destination.public_url
        )));
    }
    let name = &req.target.name;
    eprint!(
        "Destination {} holds {keys} key(s); {fate} (a safety backup is taken first).\nType the target name ({name}) to confirm: ",
        req.destination.public_url
    );
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() != name {
        return Err(usage(format!(
            "confirmation did not match {name:?}; nothing was changed"
        )));
    }
    Ok(())
}

/// A run of entries of one database, restored with one pipeline.
struct Batch {
    db: u32,
    entries: Vec<Entry>,
    bytes: usize,
}

fn restore_cmd(p: &mut redis::Pipeline, e: &Entry) {
    p.cmd("RESTORE")
        .arg(&e.key)
        .arg(e.expire_at_ms.unwrap_or(0))
        .arg(e.payload.as_deref().unwrap_or_default())
        .arg("REPLACE")
        .arg("ABSTTL")
        .ignore();
}

fn restore_hint(error: &str) -> &'static str {
    if error.contains("payload version") {
        "the destination cannot read this RDB version: restore into the backup's Redis version or newer"
    } else if error.contains("OOM") {
        "the destination ran out of memory (maxmemory): raise it or restore into a larger instance"
    } else if error.contains("DB index") {
        "the destination has fewer databases than the backup: raise `databases` in its redis.conf"
    } else if error.contains("Bad data format") {
        "the value belongs to a module the destination has not loaded, or the backup is damaged"
    } else {
        "check the destination's log"
    }
}

async fn run_batch(con: &mut MultiplexedConnection, batch: &Batch) -> Result<()> {
    let mut p = redis::pipe();
    p.cmd("SELECT").arg(batch.db).ignore();
    for e in &batch.entries {
        restore_cmd(&mut p, e);
    }
    if p.query_async::<()>(con).await.is_ok() {
        return Ok(());
    }
    // Find the key that failed, to name it: one command at a time (failure path only).
    let select: Result<(), _> = redis::cmd("SELECT").arg(batch.db).query_async(con).await;
    if let Err(e) = select {
        let text = server_error_text(&e);
        bail!(
            "SELECT {} failed on the destination: {text}; hint: {}",
            batch.db,
            restore_hint(&text)
        );
    }
    for e in &batch.entries {
        let mut one = redis::pipe();
        one.cmd("SELECT").arg(batch.db).ignore();
        restore_cmd(&mut one, e);
        if let Err(err) = one.query_async::<()>(con).await {
            let text = server_error_text(&err);
            bail!(
                "RESTORE of key {:?} in database {} failed: {text}; hint: {}",
                String::from_utf8_lossy(&e.key),
                batch.db,
                restore_hint(&text)
            );
        }
    }
    bail!("a RESTORE pipeline failed, but every key succeeded when retried one by one")
}

/// Restores every entry of a staged backup into `con`, building the verification digest
/// in the same pass. `server_now_ms` is the destination's clock when the pass starts.
pub async fn load_keys(
    con: &mut MultiplexedConnection,
    manifest: &BackupManifest,
    staged: &Path,
    staged_compression: crate::config::Compression,
    server_now_ms: i64,
) -> Result<(RestoredKeys, BackupDigest)> {
    let (tx, mut rx) = mpsc::channel::<Batch>(4);
    let manifest_copy = manifest.clone();
    let path = staged.to_path_buf();
    let parser = tokio::task::spawn_blocking(move || -> Result<(u64, BackupDigest)> {
        let started = Instant::now();
        let file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&path)?);
        let input = crate::codec::decompressor(staged_compression, file)?;
        let mut source = redis_backup::entries(&manifest_copy, input)?;
        let mut digest = BackupDigest::new(server_now_ms);
        let mut skipped = 0u64;
        let mut batch = Batch {
            db: 0,
            entries: vec![],
            bytes: 0,
        };
        while let Some(e) = source.next_entry(&mut |h| {
            digest.consider(h);
            true
        })? {
            digest.keep(&e);
            let now = server_now_ms + started.elapsed().as_millis() as i64;
            if e.expire_at_ms.is_some_and(|t| t <= now) {
                skipped += 1;
                continue;
            }
            if batch.db != e.db
                || batch.entries.len() >= PIPELINE_KEYS
                || batch.bytes >= PIPELINE_BYTES
            {
                let full = std::mem::replace(
                    &mut batch,
                    Batch {
                        db: e.db,
                        entries: vec![],
                        bytes: 0,
                    },
                );
                if !full.entries.is_empty() && tx.blocking_send(full).is_err() {
                    bail!("the restore stopped");
                }
            }
            batch.bytes += e.payload.as_ref().map_or(0, Vec::len) + e.key.len();
            batch.entries.push(e);
        }
        if !batch.entries.is_empty() && tx.blocking_send(batch).is_err() {
            bail!("the restore stopped");
        }
        Ok((skipped, digest))
    });
    let mut restored = 0u64;
    let mut failure = None;
    while let Some(batch) = rx.recv().await {
        if let Err(e) = run_batch(con, &batch).await {
            failure = Some(e);
            break;
        }
        restored += batch.entries.len() as u64;
    }
    drop(rx);
    let parsed = parser
        .await
        .map_err(|e| anyhow!("the backup reader crashed: {e}"))?;
    if let Some(e) = failure {
        return Err(e.context(format!(
            "{restored} key(s) were restored before the failure"
        )));
    }
    let (skipped_expired, digest) = parsed?;
    Ok((
        RestoredKeys {
            keys: restored,
            skipped_expired,
        },
        digest,
    ))
}

/// The steps to load an RDB file into a server by hand, with this server's paths when it
/// answers CONFIG GET.
pub async fn placement_steps(
    file: &Path,
    destination: &RedisEndpoint,
    manifest: &BackupManifest,
) -> Vec<String> {
    let mut dir = "<dir>".to_string();
    let mut dbfilename = "dump.rdb".to_string();
    let mut aof = None;
    if let Ok(mut con) = destination
        .connect_with(std::time::Duration::from_secs(5))
        .await
    {
        for (name, slot) in [("dir", &mut dir), ("dbfilename", &mut dbfilename)] {
            if let Ok(v) = redis::cmd("CONFIG")
                .arg("GET")
                .arg(name)
                .query_async::<Vec<String>>(&mut con)
                .await
            {
                if let Some(value) = v.get(1) {
                    *slot = value.clone();
                }
            }
        }
        if let Ok(v) = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendonly")
            .query_async::<Vec<String>>(&mut con)
            .await
        {
            aof = v.get(1).map(|s| s == "yes");
        }
    }
    let host = format!("-h {} -p {}", destination.host, destination.port);
    let counts = redis_backup::details(manifest)
        .map(|d| {
            d.databases
                .iter()
                .map(|c| format!("db{}:keys={}", c.db, c.keys))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let mut steps = vec![
        format!("stop the Redis server (e.g. `systemctl stop redis-server`, or `redis-cli {host} SHUTDOWN NOSAVE`)"),
        format!(
            "with AOF on, Redis loads the AOF at start and ignores the RDB file: set `appendonly no` in redis.conf{}",
            match aof {
                Some(true) => " (this server has appendonly yes now) and move its appendonly directory aside",
                Some(false) => " (this server has appendonly no already)",
                None => " and move the appendonly directory aside",
            }
        ),
        format!(
            "install -m 0640 -o redis -g redis {} {dir}/{dbfilename}",
            file.display()
        ),
        "start the Redis server and wait until `redis-cli INFO persistence` shows loading:0".into(),
        format!("check `redis-cli {host} INFO keyspace` against the backup: {counts}"),
        format!("run `dr verify --target {} --backup-id {}`", manifest.target, manifest.id),
    ];
    if aof != Some(false) {
        steps.push(format!(
            "to turn AOF back on: `redis-cli {host} CONFIG SET appendonly yes` (it rewrites the AOF from the loaded data), then set appendonly yes in redis.conf again"
        ));
    }
    steps
}

/// Runs the restore; the report is complete whatever happened, and the result says how it
/// ended (a refused confirmation is a usage error: nothing was changed).
pub async fn run(req: RedisRestoreRequest<'_>) -> (RedisRestoreReport, Result<()>) {
    let mut steps = Steps::default();
    let mut report = RedisRestoreReport::new(Operation::Restore, req.target, &req.destination);
    report.rto_objective_ms = req.config.objectives.rto.map(|d| d.as_millis() as u64);
    let result: Result<()> = async {
        let manifest = resolve_manifest(req.storage, req.target, req.backup_id, &mut steps).await?;
        report.backup_id = Some(manifest.id.clone());
        if let Some(file) = &req.rdb_file {
            write_rdb_file(&req, &manifest, file, &mut steps).await?;
            report.rdb_file = Some(file.display().to_string());
            report.next_steps = placement_steps(file, &req.destination, &manifest).await;
            return Ok(());
        }
        let (mut con, keys) = check_destination(&req.destination, &manifest, &mut steps).await?;
        let staged = fetch(
            req.storage,
            &manifest,
            req.identities.as_ref(),
            &req.staging_dir,
            false,
            &mut steps,
        )
        .await?;
        if keys > 0 {
            confirm(&req, keys)?;
            if !req.no_safety_backup {
                let id = steps
                    .run("safety backup", Phase::Restore, async {
                        let m = redis_backup::run(
                            req.storage,
                            redis_backup::RedisBackupPlan {
                                target_name: &req.target.name,
                                endpoint: req.destination.clone(),
                                method: req.target.method,
                                kind: BackupKind::Safety,
                                settings: &req.config.backup,
                                recipients: req.recipients.clone(),
                                show_progress: req.show_progress,
                            },
                        )
                        .await
                        .context("cannot take the safety backup of the destination, so nothing was restored; hint: fix the cause, or pass --no-safety-backup to overwrite without a copy")?;
                        let msg = format!(
                            "{} ({} key(s)): to go back, run `{}`",
                            m.id,
                            m.redis.as_ref().map_or(0, |d| d.keys),
                            go_back_command(&req.target.name, &m.id, req.destination_flag.as_deref())
                        );
                        Ok((m.id, msg))
                    })
                    .await?;
                report.safety_backup_id = Some(id);
            }
            if req.flush {
                steps
                    .run("flush", Phase::Restore, async {
                        redis::cmd("FLUSHALL")
                            .query_async::<()>(&mut con)
                            .await
                            .map_err(|e| anyhow!("FLUSHALL failed: {}; hint: managed Redis may rename it: empty the destination another way, or restore without --flush", server_error_text(&e)))?;
                        Ok(((), format!("FLUSHALL removed {keys} key(s)")))
                    })
                    .await?;
            }
        }
        let now = conn::server_time_ms(&mut con).await?;
        let (restored, digest) = steps
            .run("restore", Phase::Restore, async {
                let (restored, digest) =
                    load_keys(&mut con, &manifest, &staged.path, manifest.dump().compression, now).await?;
                let msg = format!(
                    "{} key(s) restored with RESTORE ... REPLACE ABSTTL; {} already expired, skipped",
                    restored.keys, restored.skipped_expired
                );
                Ok(((restored, digest), msg))
            })
            .await?;
        report.restored = Some(restored);
        let started = Instant::now();
        let verification = super::redis_verify::verify(
            &mut con,
            &req.target.name,
            &req.destination.public_url,
            &manifest,
            &digest,
        )
        .await;
        steps.push(
            "verify",
            Phase::Verify,
            verification.as_finding(),
            started.elapsed().as_millis() as u64,
        );
        let ok = verification.ok;
        report.verification = Some(verification);
        if !ok {
            bail!("the restore finished but verification failed (see the verify step)");
        }
        Ok(())
    }
    .await;
    report.finish(steps, &result);
    (report, result)
}

impl RedisRestoreReport {
    fn new(operation: Operation, target: &RedisTarget, destination: &RedisEndpoint) -> Self {
        RedisRestoreReport {
            format_version: FORMAT_VERSION,
            operation,
            ok: false,
            target: target.name.clone(),
            backup_id: None,
            destination: destination.public_url.clone(),
            safety_backup_id: None,
            steps: vec![],
            duration_ms: 0,
            rto_objective_ms: None,
            rto_met: None,
            verification: None,
            error: None,
            restored: None,
            rdb_file: None,
            next_steps: vec![],
        }
    }

    fn finish(&mut self, steps: Steps, result: &Result<()>) {
        self.duration_ms = steps.total_ms();
        self.rto_met = match (self.rto_objective_ms, result.is_ok()) {
            (Some(r), true) if self.rdb_file.is_none() => Some(self.duration_ms <= r),
            (Some(_), _) => Some(false),
            (None, _) => None,
        };
        self.steps = steps.0;
        self.ok = result.is_ok();
        self.error = result.as_ref().err().map(|e| format!("{e:#}"));
    }
}

/// `--rdb-file`: the decompressed RDB, checksum-verified and parsed to its end, in a new
/// 0600 file (an existing file is never overwritten).
async fn write_rdb_file(
    req: &RedisRestoreRequest<'_>,
    manifest: &BackupManifest,
    file: &Path,
    steps: &mut Steps,
) -> Result<()> {
    if manifest.format != "rdb" {
        return Err(usage(format!(
            "backup {} was taken with method keys: it holds DUMP payloads, not an RDB file; hint: restore it into a server without --rdb-file",
            manifest.id
        )));
    }
    if file.exists() {
        return Err(usage(format!(
            "{} exists; dr never overwrites a file; hint: choose a new path for --rdb-file",
            file.display()
        )));
    }
    let name = file
        .file_name()
        .ok_or_else(|| usage(format!("--rdb-file {} names no file", file.display())))?
        .to_string_lossy()
        .into_owned();
    // Written under a temporary name, then linked into place (which fails rather than
    // replace a file that appeared meanwhile): a failed write leaves nothing usable-looking.
    let partial = file.with_file_name(format!(".{name}.dr-partial-{}", std::process::id()));
    let outcome = steps
        .run("rdb file", Phase::Restore, async {
            let n = stage(
                req.storage,
                manifest,
                manifest.dump(),
                req.identities.as_ref(),
                &partial,
                true,
            )
            .await?;
            let path = partial.clone();
            let (version, keys, dbs) = tokio::task::spawn_blocking(move || -> Result<(u16, u64, usize)> {
                let mut r = RdbReader::new(std::io::BufReader::new(std::fs::File::open(&path)?))?;
                r.read_to_end()?;
                Ok((r.version(), r.tallies().values().map(|t| t.keys).sum(), r.tallies().len()))
            })
            .await??;
            std::fs::hard_link(&partial, file)
                .with_context(|| format!("cannot create {}", file.display()))?;
            Ok(((), format!(
                "{} written ({}): RDB version {version}, {keys} key(s) in {dbs} database(s), CRC-64 verified",
                file.display(),
                units::bytes(n)
            )))
        })
        .await;
    std::fs::remove_file(&partial).ok();
    outcome
}

/// One pass over a staged backup: the verification digest, and the entries per database.
pub async fn read_staged(
    manifest: &BackupManifest,
    staged: &Path,
    staged_compression: crate::config::Compression,
    server_now_ms: i64,
) -> Result<(BackupDigest, std::collections::BTreeMap<u32, u64>)> {
    let manifest = manifest.clone();
    let path = staged.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&path)?);
        let input = crate::codec::decompressor(staged_compression, file)?;
        let mut source = redis_backup::entries(&manifest, input)?;
        let mut digest = BackupDigest::new(server_now_ms);
        let mut per_db = std::collections::BTreeMap::new();
        while let Some(e) = source.next_entry(&mut |h| digest.consider(h))? {
            digest.keep(&e);
            *per_db.entry(e.db).or_insert(0u64) += 1;
        }
        Ok((digest, per_db))
    })
    .await
    .map_err(|e| anyhow!("the backup reader crashed: {e}"))?
}

/// `dr validate` for a Redis target: everything a restore checks before it touches the
/// destination, and a full read of the backup; changes nothing.
pub async fn validate(
    storage: &dyn Storage,
    target: &RedisTarget,
    backup_id: &str,
    destination: &RedisEndpoint,
    identities: Option<&Arc<Identities>>,
    staging_parent: &Path,
) -> (RedisRestoreReport, Result<()>) {
    let mut steps = Steps::default();
    let mut report = RedisRestoreReport::new(Operation::Validate, target, destination);
    let result: Result<()> = async {
        let manifest = resolve_manifest(storage, target, backup_id, &mut steps).await?;
        report.backup_id = Some(manifest.id.clone());
        check_destination(destination, &manifest, &mut steps).await?;
        let staged =
            fetch(storage, &manifest, identities, staging_parent, false, &mut steps).await?;
        steps
            .run("contents", Phase::Fetch, async {
                let (_, per_db) =
                    read_staged(&manifest, &staged.path, manifest.dump().compression, 0).await?;
                let details = redis_backup::details(&manifest)?;
                for d in &details.databases {
                    let read = per_db.get(&d.db).copied().unwrap_or(0);
                    // A keys stream may hold a key twice (SCAN repeats keys), never fewer.
                    let ok = if manifest.format == "rdb" { read == d.keys } else { read >= d.keys };
                    if !ok {
                        bail!(
                            "db{} holds {read} key(s) in the backup but the manifest records {}: the backup does not match its manifest",
                            d.db,
                            d.keys
                        );
                    }
                }
                Ok(((), format!(
                    "read to the end ({}, integrity trailer checked): {} key(s) in {} database(s), as the manifest records",
                    manifest.format,
                    details.keys,
                    details.databases.len()
                )))
            })
            .await
    }
    .await;
    report.finish(steps, &result);
    (report, result)
}
