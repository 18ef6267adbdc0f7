//! Redis data backups: what a persistent Redis holds, taken as an RDB snapshot over the
//! replication protocol (`method = "rdb"`) or key by key with SCAN + DUMP + PTTL
//! (`method = "keys"`, for managed Redis that refuses SYNC), compressed, hashed and
//! stored like PostgreSQL dumps, with the manifest written last.
//!
//! Restores put every key back with `RESTORE ... REPLACE ABSTTL`, from either kind of
//! backup (`restore/redis.rs`); an RDB backup can also be written to a file (to place
//! under a stopped server) or loaded by a throwaway `redis-server` (`drill/redis.rs`).
//! Speaking Redis (connections, PSYNC, SCAN + DUMP, the RDB and keys formats) is
//! `redis_client/`.

use std::io::{Read, Write};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use chrono::Utc;
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;

use crate::backup::manifest::{
    BackupKind, BackupManifest, Engine, RedisDbCount, RedisDetails, StoredObject,
    DUMP_FORMAT_VERSION,
};
use crate::backup::{catalog, PipelineSettings};
use crate::codec::ChannelReader;
use crate::config::{BackupConfig, RedisBackupMethod};
use crate::redis_client::conn::{self, RedisEndpoint};
use crate::redis_client::rdb::{DbTally, EntrySource, RdbReader};
use crate::redis_client::{keys_format, scan, sync};
use crate::storage::{self, ByteStream, Storage};

/// What to back up and how.
pub struct RedisBackupPlan<'a> {
    pub target_name: &'a str,
    pub endpoint: RedisEndpoint,
    pub method: RedisBackupMethod,
    pub kind: BackupKind,
    pub settings: &'a BackupConfig,
    /// Set when `[encryption]` is: the stored object is encrypted to them.
    pub recipients: Option<crate::encryption::Recipients>,
    pub show_progress: bool,
}

/// One stored data object and what reading it found.
struct Taken {
    object: StoredObject,
    method: RedisBackupMethod,
    format: &'static str,
    rdb_version: u16,
    dbs: std::collections::BTreeMap<u32, DbTally>,
}

/// Takes one backup. On any failure nothing is left that looks like a backup.
pub async fn run(storage: &dyn Storage, plan: RedisBackupPlan<'_>) -> Result<BackupManifest> {
    let mut con = plan.endpoint.connect().await?;
    let server = conn::server_info(&mut con).await?;
    let _lock = lock(&mut con, &plan.endpoint, plan.target_name).await?;
    let created_at = Utc::now();
    let started = Instant::now();
    let id = crate::backup::unique_id(storage, plan.target_name, plan.kind).await?;
    let dir = catalog::backup_dir(plan.target_name, &id);
    tracing::info!(target = plan.target_name, id = %id, method = plan.method.as_str(), "Redis backup started");
    let pipeline = PipelineSettings::new(plan.settings, plan.recipients.clone());
    let ext = pipeline.extension();
    let rdb_key = format!("{dir}/dump.rdb{ext}");
    let keys_key = format!("{dir}/keys.drkeys{ext}");
    // Removed unless the manifest is written, also when the backup is interrupted.
    let mut stored = crate::backup::StoredSoFar::new(storage, rdb_key.clone());
    stored.keys.push(keys_key.clone());

    let result: Result<BackupManifest> = async {
        let mut fallback_reason = None;
        let taken = match plan.method {
            RedisBackupMethod::Rdb => take_rdb(storage, &plan, &pipeline, &rdb_key).await.map_err(|e| {
                e.context("the RDB snapshot failed; hint: managed Redis (ElastiCache, Upstash, Redis Cloud) refuses SYNC: set method = \"keys\" (or \"auto\") for this target")
            })?,
            RedisBackupMethod::Keys => take_keys(storage, &plan, &pipeline, &mut con, &server, &keys_key).await?,
            RedisBackupMethod::Auto => match take_rdb(storage, &plan, &pipeline, &rdb_key).await {
                Ok(t) => t,
                // A stalled server answers SCAN no better: fail within its timeout.
                Err(e) if e.chain().any(|c| c.is::<conn::Unanswered>()) => return Err(e),
                Err(e) => {
                    let reason = crate::secret::scrub(&format!("{e:#}"), &[]);
                    tracing::info!(target = plan.target_name, "the RDB snapshot failed ({reason}); falling back to method keys");
                    // The partial object (if any) was discarded by the storage contract.
                    storage.delete(&rdb_key).await.ok();
                    fallback_reason = Some(reason);
                    take_keys(storage, &plan, &pipeline, &mut con, &server, &keys_key)
                        .await
                        .context("method keys failed too, after the RDB snapshot failed")?
                }
            },
        };
        let databases: Vec<RedisDbCount> = taken
            .dbs
            .iter()
            .map(|(db, t)| RedisDbCount {
                db: *db,
                keys: t.keys,
                expires: t.expires,
            })
            .collect();
        let settings = plan.settings;
        let manifest = BackupManifest {
            format_version: DUMP_FORMAT_VERSION,
            id: id.clone(),
            target: plan.target_name.to_string(),
            kind: plan.kind,
            engine: Engine::Redis,
            method: Default::default(),
            database: String::new(),
            source: plan.endpoint.public_url.clone(),
            created_at,
            finished_at: Utc::now(),
            duration_ms: started.elapsed().as_millis() as u64,
            server_version: server.version.clone(),
            server_major: server.major,
            pg_dump_version: String::new(),
            dr_version: env!("CARGO_PKG_VERSION").to_string(),
            format: taken.format.to_string(),
            compression: settings.compression,
            compression_level: crate::codec::level(settings),
            encryption: plan.recipients.as_ref().map(|_| "age".to_string()),
            recipients: plan
                .recipients
                .as_ref()
                .map(|r| r.public_keys())
                .unwrap_or_default(),
            size_bytes: taken.object.size_bytes,
            sha256: taken.object.sha256.clone(),
            objects: vec![taken.object],
            snapshot: String::new(),
            schemas: vec![],
            extensions: vec![],
            tables: vec![],
            database_owner: None,
            globals_role_passwords: None,
            physical: None,
            redis: Some(RedisDetails {
                method: taken.method,
                requested_method: plan.method,
                fallback_reason,
                rdb_version: taken.rdb_version,
                keys: databases.iter().map(|d| d.keys).sum(),
                databases,
            }),
        };
        let json = serde_json::to_vec_pretty(&manifest)?;
        // The commit point: before this line there is no backup, after it there is one.
        storage::put_bytes(storage, &catalog::manifest_key(plan.target_name, &id), json)
            .await
            .context("cannot write the manifest")?;
        // The bytes were hashed as they went in: that is the first full check.
        crate::backup::integrity::record_after_backup(storage, &manifest).await;
        Ok(manifest)
    }
    .await;
    match &result {
        Ok(_) => stored.committed(),
        Err(_) => stored.remove().await,
    }
    result
}

/// Excludes a second `dr backup` of the same target: this connection carries the client
/// name `dr-backup-<target>`, and the server drops the name when the connection dies, so a
/// killed backup never leaves a stale lock. Servers that refuse CLIENT get no lock.
async fn lock(
    con: &mut MultiplexedConnection,
    endpoint: &RedisEndpoint,
    target: &str,
) -> Result<Option<MultiplexedConnection>> {
    let name = format!("dr-backup-{target}");
    let mut holder = endpoint.connect().await?;
    if let Err(e) = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(&name)
        .query_async::<()>(&mut holder)
        .await
    {
        tracing::debug!("no backup lock (CLIENT SETNAME refused: {e})");
        return Ok(None);
    }
    // A refused CLIENT ID or LIST leaves the backup unlocked; one never answered is a
    // stalled server, and the backup fails now rather than at its next request.
    let unanswered = |e: &redis::RedisError| e.is_timeout() || e.is_connection_dropped();
    let my_id: i64 = match redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut holder)
        .await
    {
        Ok(id) => id,
        Err(e) if unanswered(&e) => {
            return Err(anyhow!(conn::Unanswered(format!(
                "Redis at {} did not answer CLIENT ID within its timeout; hint: check its load and network, or raise timeout in its [[redis]] table",
                endpoint.public_url
            ))))
        }
        Err(_) => -1,
    };
    let list = match redis::cmd("CLIENT")
        .arg("LIST")
        .query_async::<String>(con)
        .await
    {
        Ok(list) => list,
        Err(e) if unanswered(&e) => {
            return Err(anyhow!(conn::Unanswered(format!(
                "Redis at {} did not answer CLIENT LIST within its timeout; hint: check its load and network, or raise timeout in its [[redis]] table",
                endpoint.public_url
            ))))
        }
        Err(_) => return Ok(Some(holder)),
    };
    let field = |line: &str, f: &str| -> Option<String> {
        line.split(' ')
            .find_map(|kv| kv.strip_prefix(f)?.strip_prefix('='))
            .map(str::to_string)
    };
    if let Some(other) = list.lines().find(|l| {
        field(l, "name").as_deref() == Some(name.as_str())
            && field(l, "id").and_then(|i| i.parse::<i64>().ok()) != Some(my_id)
    }) {
        bail!(
            "another dr backup of Redis target {target} is running: client {} from {} (connected {} s ago) holds the lock name {name} on {}; hint: wait for it to finish; the lock goes away when that backup ends or its connection dies",
            field(other, "id").unwrap_or_default(),
            field(other, "addr").unwrap_or_default(),
            field(other, "age").unwrap_or_default(),
            endpoint.public_url
        );
    }
    Ok(Some(holder))
}

/// A `Read` that hands everything it reads to a writer too.
struct Tee<'a, R> {
    inner: R,
    sink: &'a mut dyn Write,
    raw_bytes: u64,
    progress: Option<indicatif::ProgressBar>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sink.write_all(&buf[..n])?;
        self.raw_bytes += n as u64;
        if let Some(p) = &self.progress {
            p.set_position(self.raw_bytes);
        }
        Ok(n)
    }
}

/// Compresses, hashes and stores what `fill` writes, on a blocking thread; the object
/// becomes visible only if `fill` succeeds.
async fn store_stream<T: Send + 'static>(
    storage: &dyn Storage,
    key: &str,
    pipeline: &PipelineSettings,
    fill: impl FnOnce(&mut dyn Write) -> Result<(u64, T)> + Send + 'static,
) -> Result<(StoredObject, T)> {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(8);
    let pipeline = pipeline.clone();
    let producer_tx = tx.clone();
    drop(tx);
    let producer = tokio::task::spawn_blocking(move || {
        let mut extra = None;
        let result = crate::codec::compress_with(producer_tx.clone(), &pipeline, |w| {
            let (raw, value) = fill(w)?;
            extra = Some(value);
            Ok(raw)
        });
        match result {
            Ok(stats) => Ok((
                stats,
                extra.context("the Redis stream ended before its header was read")?,
            )),
            Err(e) => {
                // The writer must see the failure, or it would commit a partial object.
                let _ = producer_tx.blocking_send(Err(std::io::Error::other(format!("{e:#}"))));
                Err(e)
            }
        }
    });
    let data: ByteStream = Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let (put, produced) = tokio::join!(storage.put(key, data), producer);
    let produced = produced.map_err(|e| anyhow!("compression thread failed: {e}"))?;
    match (put, produced) {
        (Ok(_), Ok((stats, value))) => Ok((
            StoredObject::from_encoded(
                crate::backup::manifest::ObjectRole::Dump,
                key.rsplit('/').next().unwrap_or(key).to_string(),
                stats,
            ),
            value,
        )),
        (_, Err(e)) => Err(e),
        (Err(e), Ok(_)) => Err(e.context(format!("cannot store {key} in {}", storage.describe()))),
    }
}

async fn take_rdb(
    storage: &dyn Storage,
    plan: &RedisBackupPlan<'_>,
    pipeline: &PipelineSettings,
    key: &str,
) -> Result<Taken> {
    let from = || format!("Redis at {}", plan.endpoint.public_url);
    let stream = match sync::request_snapshot(&plan.endpoint)
        .await
        .with_context(from)?
    {
        sync::Handshake::Snapshot(s) => s,
        sync::Handshake::Refused(reason) => bail!("{reason}"),
    };
    let (raw_tx, raw_rx) = mpsc::channel::<Bytes>(16);
    let progress = crate::backup::progress_bar(plan.show_progress, plan.target_name);
    let bar = progress.clone();
    let store = store_stream(storage, key, pipeline, move |w| {
        let tee = Tee {
            inner: ChannelReader::new(raw_rx),
            sink: w,
            raw_bytes: 0,
            progress: bar,
        };
        let mut reader = RdbReader::new(tee)?;
        reader.read_to_end()?;
        if reader.functions() > 0 {
            tracing::warn!("the snapshot holds {} function library(ies): restoring with RESTORE brings back keys only; the RDB file (--rdb-file) brings back both", reader.functions());
        }
        let version = reader.version();
        let tallies = reader.tallies().clone();
        Ok((reader.bytes_read(), (version, tallies)))
    });
    let (forwarded, stored) = tokio::join!(stream.forward(raw_tx), store);
    if let Some(p) = &progress {
        p.finish_and_clear();
    }
    // A broken connection shows up in the reader as truncation: the connection is the cause.
    let (object, (rdb_version, dbs)) = match (forwarded, stored) {
        (Err(e), _) => return Err(e.context(from())),
        (Ok(_), Err(e)) => return Err(e),
        (Ok(_), Ok(s)) => s,
    };
    Ok(Taken {
        object,
        method: RedisBackupMethod::Rdb,
        format: "rdb",
        rdb_version,
        dbs,
    })
}

async fn take_keys(
    storage: &dyn Storage,
    plan: &RedisBackupPlan<'_>,
    pipeline: &PipelineSettings,
    con: &mut MultiplexedConnection,
    server: &conn::ServerInfo,
    key: &str,
) -> Result<Taken> {
    let dbs: Vec<u32> = match conn::keyspace(con).await {
        Ok(k) => k.into_keys().collect(),
        // A server that does not answer would not answer SCAN either, and the fallback
        // below would store less than the server holds: fail instead.
        Err(e) if e.chain().any(|c| c.is::<conn::Unanswered>()) => {
            return Err(e.context(format!(
                "Redis at {} stopped answering; hint: check its load (SLOWLOG, a long-running command, DEBUG SLEEP) and network, or raise timeout in its [[redis]] table",
                plan.endpoint.public_url
            )))
        }
        Err(e) => {
            tracing::warn!("{e:#}; backing up the URL's database only");
            vec![con_db(&plan.endpoint)]
        }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let progress = crate::backup::progress_bar(plan.show_progress, plan.target_name);
    let bar = progress.clone();
    let store = store_stream(storage, key, pipeline, move |w| {
        let mut tee = Tee {
            inner: ChannelReader::new(rx),
            sink: w,
            raw_bytes: 0,
            progress: bar,
        };
        std::io::copy(&mut tee, &mut std::io::sink())?;
        Ok((tee.raw_bytes, ()))
    });
    let (scanned, stored) = tokio::join!(scan::produce(con, &dbs, tx), store);
    if let Some(p) = &progress {
        p.finish_and_clear();
    }
    let tally = scanned?;
    let (object, ()) = stored?;
    Ok(Taken {
        object,
        method: RedisBackupMethod::Keys,
        format: keys_format::FORMAT,
        rdb_version: tally
            .rdb_version
            .unwrap_or_else(|| conn::loads_rdb_up_to(&server.version)),
        dbs: tally.dbs,
    })
}

fn con_db(endpoint: &RedisEndpoint) -> u32 {
    use redis::IntoConnectionInfo;
    endpoint
        .url()
        .into_connection_info()
        .map(|i| i.redis.db as u32)
        .unwrap_or(0)
}

/// The entries of a stored backup, from a reader of its decompressed bytes.
pub fn entries<'a, R: Read + 'a>(
    manifest: &BackupManifest,
    input: R,
) -> Result<Box<dyn EntrySource + 'a>> {
    match manifest.format.as_str() {
        "rdb" => Ok(Box::new(RdbReader::new(input)?)),
        keys_format::FORMAT => Ok(Box::new(keys_format::KeysReader::new(input)?)),
        other => Err(anyhow!(
            "backup {} has format {other:?}, which this dr cannot restore into Redis",
            manifest.id
        )),
    }
}

/// The Redis details of a manifest, or a usage error when it is not a Redis backup.
pub fn details(manifest: &BackupManifest) -> Result<&RedisDetails> {
    manifest.redis.as_ref().ok_or_else(|| {
        crate::error::usage(format!(
            "backup {} is a PostgreSQL backup, not a Redis one; hint: `dr list --target {}` shows this target's backups",
            manifest.id, manifest.target
        ))
    })
}
