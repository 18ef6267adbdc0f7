//! Is everything back? Key counts per database against the manifest (allowing for keys
//! whose TTL has run out since the backup), and a random sample of keys compared with the
//! backup by type, value and TTL.
//!
//! The sample is drawn while the backup streams past (reservoir sampling), so a backup of
//! any size is read once. A sampled key whose DUMP differs byte for byte from the backup's
//! (hash tables serialize in a server-specific order) is compared by value: the backup's
//! payload is restored under a scratch name with a 60 s TTL next to it, both are read with
//! the type's own commands, and the scratch key is deleted.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{anyhow, Result};
use redis::aio::MultiplexedConnection;
use redis::Value;
use serde::{Deserialize, Serialize};

use crate::backup::manifest::BackupManifest;
use crate::redis_client::conn::{self, server_error_text};
use crate::redis_client::rdb::{Entry, EntryHead};
use crate::report::{Finding, Phase, Status, Step, FORMAT_VERSION};

/// Keys compared by value per verification.
pub const SAMPLE_SIZE: usize = 32;
/// Larger values are compared by type and TTL only (they would be held in memory).
const SAMPLE_VALUE_LIMIT: usize = 4 << 20;
/// A key expiring sooner than this after the backup is read is not sampled.
const SAMPLE_TTL_MARGIN_MS: i64 = 5 * 60 * 1000;
/// Expiries within this horizon are kept to tell, later, which keys have expired since.
const EXPIRY_HORIZON_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Default)]
struct DbLedger {
    records: u64,
    /// Records already expired when the backup was read.
    expired: u64,
    /// Expiries within the horizon.
    soon: Vec<i64>,
}

#[derive(Debug, Clone)]
struct Sample {
    db: u32,
    key: Vec<u8>,
    expire_at_ms: Option<i64>,
    rdb_type: u8,
    payload: Option<Vec<u8>>,
}

/// What verification needs from one pass over a backup.
#[derive(Debug)]
pub struct BackupDigest {
    /// Server time (ms) the pass is judged against.
    t0: i64,
    dbs: BTreeMap<u32, DbLedger>,
    samples: Vec<Sample>,
    eligible: u64,
    pending: Option<usize>,
    rng: u64,
}

impl BackupDigest {
    pub fn new(server_now_ms: i64) -> Self {
        let seed = std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            server_now_ms,
        );
        BackupDigest {
            t0: server_now_ms,
            dbs: BTreeMap::new(),
            samples: Vec::new(),
            eligible: 0,
            pending: None,
            rng: seed | 1,
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: uniform enough to pick a sample, no dependency needed.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Called before an entry's value is read: records it and decides whether it becomes a
    /// sample (then its payload is needed).
    pub fn consider(&mut self, head: &EntryHead) -> bool {
        let ledger = self.dbs.entry(head.db).or_default();
        ledger.records += 1;
        match head.expire_at_ms {
            Some(t) if t <= self.t0 => ledger.expired += 1,
            Some(t) if t <= self.t0 + EXPIRY_HORIZON_MS => ledger.soon.push(t),
            _ => {}
        }
        self.pending = None;
        if head
            .expire_at_ms
            .is_some_and(|t| t <= self.t0 + SAMPLE_TTL_MARGIN_MS)
        {
            return false;
        }
        self.eligible += 1;
        if self.samples.len() < SAMPLE_SIZE {
            self.pending = Some(self.samples.len());
        } else {
            let slot = self.random() % self.eligible;
            if slot < SAMPLE_SIZE as u64 {
                self.pending = Some(slot as usize);
            }
        }
        self.pending.is_some()
    }

    /// Called with the entry just considered.
    pub fn keep(&mut self, e: &Entry) {
        let Some(slot) = self.pending.take() else {
            return;
        };
        let sample = Sample {
            db: e.db,
            key: e.key.clone(),
            expire_at_ms: e.expire_at_ms,
            rdb_type: e.rdb_type,
            payload: e
                .payload
                .as_ref()
                .filter(|p| p.len() <= SAMPLE_VALUE_LIMIT)
                .cloned(),
        };
        if slot == self.samples.len() {
            self.samples.push(sample);
        } else {
            self.samples[slot] = sample;
        }
    }

    /// Records in the backup whose expiry is at or before `now_ms`, per database.
    fn expired_by(&self, db: u32, now_ms: i64) -> u64 {
        self.dbs.get(&db).map_or(0, |l| {
            l.expired + l.soon.iter().filter(|t| **t <= now_ms).count() as u64
        })
    }

    #[cfg(test)]
    fn records(&self) -> u64 {
        self.dbs.values().map(|l| l.records).sum()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DbCheck {
    pub db: u32,
    /// Keys in the backup.
    pub expected: u64,
    /// Of which expired since (by their TTL): they are rightly gone.
    pub expired_since: u64,
    pub found: u64,
    pub status: Status,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedisVerifyReport {
    pub format_version: u32,
    pub ok: bool,
    pub target: String,
    /// Password removed.
    pub destination: String,
    pub backup_id: String,
    pub databases: Vec<DbCheck>,
    pub samples_checked: usize,
    pub sample_mismatches: Vec<String>,
    /// Every verification, in order.
    pub steps: Vec<Step>,
    pub duration_ms: u64,
}

impl RedisVerifyReport {
    /// The verdict as one finding: every step's message, failed ones first.
    pub fn as_finding(&self) -> Finding {
        let mut steps: Vec<&Step> = self.steps.iter().collect();
        steps.sort_by_key(|s| std::cmp::Reverse(s.status));
        let text = steps
            .iter()
            .map(|s| format!("{}: {}", s.name, s.message))
            .collect::<Vec<_>>()
            .join("; ");
        match self.steps.iter().map(|s| s.status).max() {
            Some(Status::Fail) => Finding::fail(text),
            Some(Status::Warn) => Finding::warn(text),
            _ => Finding::pass(text),
        }
    }
}

fn step(name: &str, status: Status, message: String, started: Instant) -> Step {
    Step::new(
        name,
        Phase::Verify,
        Finding { status, message },
        started.elapsed().as_millis() as u64,
    )
}

fn type_name(rdb_type: u8) -> Option<&'static str> {
    Some(match rdb_type {
        0 => "string",
        1 | 10 | 14 | 18 => "list",
        2 | 11 | 20 => "set",
        3 | 5 | 12 | 17 => "zset",
        4 | 9 | 13 | 16 | 22..=25 => "hash",
        15 | 19 | 21 => "stream",
        _ => return None,
    })
}

fn shown(key: &[u8]) -> String {
    let text = String::from_utf8_lossy(key);
    if text.chars().count() > 80 {
        format!("{:?}...", text.chars().take(80).collect::<String>())
    } else {
        format!("{text:?}")
    }
}

/// A value read with its type's commands, in a form where equal values compare equal.
async fn logical_value(
    con: &mut MultiplexedConnection,
    db: u32,
    key: &[u8],
    type_name: &str,
) -> Result<Vec<Vec<u8>>> {
    let mut p = redis::pipe();
    p.cmd("SELECT").arg(db).ignore();
    match type_name {
        "string" => p.cmd("GET").arg(key),
        "list" => p.cmd("LRANGE").arg(key).arg(0).arg(-1),
        "set" => p.cmd("SMEMBERS").arg(key),
        "zset" => p.cmd("ZRANGE").arg(key).arg(0).arg(-1).arg("WITHSCORES"),
        "hash" => p.cmd("HGETALL").arg(key),
        "stream" => p
            .cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .cmd("XINFO")
            .arg("GROUPS")
            .arg(key),
        other => {
            return Err(anyhow!(
                "values of type {other} cannot be compared by value"
            ))
        }
    };
    let mut replies: Vec<Value> = p
        .query_async(con)
        .await
        .map_err(|e| anyhow!("reading {} failed: {}", shown(key), server_error_text(&e)))?;
    let first = replies.remove(0);
    Ok(match type_name {
        "string" => vec![redis::from_owned_redis_value(first)?],
        "list" | "zset" => redis::from_owned_redis_value(first)?,
        "set" => {
            let mut v: Vec<Vec<u8>> = redis::from_owned_redis_value(first)?;
            v.sort();
            v
        }
        "hash" => {
            let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = redis::from_owned_redis_value(first)?;
            pairs.sort();
            pairs.into_iter().flat_map(|(k, v)| [k, v]).collect()
        }
        _ => vec![
            format!("{first:?}").into_bytes(),
            format!("{:?}", replies.first()).into_bytes(),
        ],
    })
}

/// Compares one sampled key; `Err` is a mismatch, described.
async fn compare_sample(
    con: &mut MultiplexedConnection,
    sample: &Sample,
    index: usize,
) -> Result<(), String> {
    let key = &sample.key;
    let (found_type, dump, pttl, (secs, micros)): (String, Option<Vec<u8>>, i64, (i64, i64)) =
        redis::pipe()
            .cmd("SELECT")
            .arg(sample.db)
            .ignore()
            .cmd("TYPE")
            .arg(key)
            .cmd("DUMP")
            .arg(key)
            .cmd("PTTL")
            .arg(key)
            .cmd("TIME")
            .query_async(con)
            .await
            .map_err(|e| {
                format!(
                    "db{} {}: cannot read it: {}",
                    sample.db,
                    shown(key),
                    server_error_text(&e)
                )
            })?;
    let at = format!("db{} {}", sample.db, shown(key));
    if found_type == "none" {
        return Err(format!("{at}: missing"));
    }
    let expected_type = type_name(sample.rdb_type);
    if let Some(t) = expected_type {
        if t != found_type {
            return Err(format!("{at}: type {found_type}, the backup holds a {t}"));
        }
    }
    let now = secs * 1000 + micros / 1000;
    let found_expire = (pttl >= 0).then_some(now + pttl);
    match (sample.expire_at_ms, found_expire) {
        (None, Some(_)) => return Err(format!("{at}: has a TTL, the backup's has none")),
        (Some(_), None) => return Err(format!("{at}: has no TTL, the backup's expires")),
        (Some(a), Some(b)) if (a - b).abs() > 1000 => {
            return Err(format!(
                "{at}: expires {} ms {} than in the backup",
                (a - b).abs(),
                if b > a { "later" } else { "earlier" }
            ))
        }
        _ => {}
    }
    let Some(payload) = &sample.payload else {
        return Ok(()); // too large to hold: type and TTL only
    };
    if dump.as_deref() == Some(payload.as_slice()) {
        return Ok(());
    }
    let Some(type_name) = expected_type else {
        return Err(format!("{at}: its module value serializes differently from the backup's and cannot be compared by value"));
    };
    let scratch = format!(
        "dr:verify:{}:{}:{index}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
    );
    let restored: Result<(), redis::RedisError> = redis::pipe()
        .cmd("SELECT")
        .arg(sample.db)
        .ignore()
        .cmd("RESTORE")
        .arg(&scratch)
        .arg(60_000)
        .arg(payload.as_slice())
        .ignore()
        .query_async(con)
        .await;
    if let Err(e) = restored {
        return Err(format!(
            "{at}: the backup's value cannot be loaded here for comparison: {}",
            server_error_text(&e)
        ));
    }
    let compared = async {
        let backup = logical_value(con, sample.db, scratch.as_bytes(), type_name).await?;
        let live = logical_value(con, sample.db, key, type_name).await?;
        Ok::<bool, anyhow::Error>(backup == live)
    }
    .await;
    let _ = redis::pipe()
        .cmd("SELECT")
        .arg(sample.db)
        .ignore()
        .cmd("DEL")
        .arg(&scratch)
        .ignore()
        .query_async::<()>(con)
        .await;
    match compared {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("{at}: the {type_name} differs from the backup's")),
        Err(e) => Err(format!("{at}: {e:#}")),
    }
}

/// Verifies a Redis server against a backup's manifest and the digest of one pass over it.
pub async fn verify(
    con: &mut MultiplexedConnection,
    target: &str,
    destination: &str,
    manifest: &BackupManifest,
    digest: &BackupDigest,
) -> RedisVerifyReport {
    let started = Instant::now();
    let mut items: Vec<Step> = Vec::new();
    let mut databases = Vec::new();
    let mut mismatches = Vec::new();
    let details = manifest.redis.as_ref();
    let result: Result<()> = async {
        let counted = Instant::now();
        let now = conn::server_time_ms(con).await?;
        let keyspace = conn::keyspace(con).await?;
        let mut problems = Vec::new();
        let mut extra = Vec::new();
        for d in details.map(|d| d.databases.as_slice()).unwrap_or_default() {
            let found = keyspace.get(&d.db).map_or(0, |k| k.0);
            let expired_since = digest.expired_by(d.db, now).min(d.keys);
            let lower = d.keys - expired_since;
            let status = if found < lower {
                problems.push(format!(
                    "db{}: {} key(s) missing ({} in the backup, {expired_since} expired since, {found} found)",
                    d.db,
                    lower - found,
                    d.keys
                ));
                Status::Fail
            } else if found > d.keys {
                extra.push(format!("db{}: {found} keys, {} more than the backup holds", d.db, found - d.keys));
                Status::Warn
            } else {
                Status::Pass
            };
            databases.push(DbCheck {
                db: d.db,
                expected: d.keys,
                expired_since,
                found,
                status,
            });
        }
        for (db, (found, _)) in &keyspace {
            if !databases.iter().any(|c| c.db == *db) {
                extra.push(format!("db{db}: {found} keys, none in the backup"));
                databases.push(DbCheck {
                    db: *db,
                    expected: 0,
                    expired_since: 0,
                    found: *found,
                    status: Status::Warn,
                });
            }
        }
        databases.sort_by_key(|c| c.db);
        let expected: u64 = databases.iter().map(|c| c.expected).sum();
        let found: u64 = databases.iter().map(|c| c.found).sum();
        items.push(if !problems.is_empty() {
            step("key counts", Status::Fail, problems.join("; "), counted)
        } else if !extra.is_empty() {
            step(
                "key counts",
                Status::Warn,
                format!(
                    "every key of backup {} is accounted for; also present: {} (not flushed before the restore, or written since)",
                    manifest.id,
                    extra.join("; ")
                ),
                counted,
            )
        } else {
            step(
                "key counts",
                Status::Pass,
                format!(
                    "{found} key(s) in {} database(s) match backup {} ({expected} backed up, {} expired since)",
                    databases.len(),
                    manifest.id,
                    databases.iter().map(|c| c.expired_since).sum::<u64>()
                ),
                counted,
            )
        });
        let sampling = Instant::now();
        for (i, sample) in digest.samples.iter().enumerate() {
            if sample.expire_at_ms.is_some_and(|t| t <= now + 1000) {
                continue;
            }
            if let Err(m) = compare_sample(con, sample, i).await {
                mismatches.push(m);
            }
        }
        let checked = digest.samples.len();
        items.push(if mismatches.is_empty() {
            step(
                "sampled keys",
                Status::Pass,
                if checked == 0 {
                    "the backup holds no key to sample".into()
                } else {
                    format!("{checked} randomly chosen key(s) match the backup by type, value and TTL")
                },
                sampling,
            )
        } else {
            step(
                "sampled keys",
                Status::Fail,
                format!(
                    "{} of {checked} sampled key(s) differ: {}",
                    mismatches.len(),
                    mismatches.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
                ),
                sampling,
            )
        });
        Ok(())
    }
    .await;
    if let Err(e) = result {
        items.push(step("redis", Status::Fail, format!("{e:#}"), started));
    }
    RedisVerifyReport {
        format_version: FORMAT_VERSION,
        ok: items.iter().all(|i| i.status != Status::Fail),
        target: target.to_string(),
        destination: destination.to_string(),
        backup_id: manifest.id.clone(),
        samples_checked: digest.samples.len(),
        databases,
        sample_mismatches: mismatches,
        steps: items,
        duration_ms: started.elapsed().as_millis() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(db: u32, i: u32, expire: Option<i64>) -> Entry {
        Entry {
            db,
            key: format!("k{i}").into_bytes(),
            expire_at_ms: expire,
            rdb_type: 0,
            payload: Some(vec![0, 1, b'x']),
        }
    }

    fn feed(d: &mut BackupDigest, e: &Entry) {
        let want = d.consider(&EntryHead {
            db: e.db,
            expire_at_ms: e.expire_at_ms,
        });
        if want {
            d.keep(e);
        }
    }

    #[test]
    fn reservoir_keeps_a_bounded_uniformish_sample() {
        let mut d = BackupDigest::new(1_000_000);
        for i in 0..10_000 {
            feed(&mut d, &entry(0, i, None));
        }
        assert_eq!(d.samples.len(), SAMPLE_SIZE);
        // Not just the first keys.
        assert!(d
            .samples
            .iter()
            .any(|s| s.key != format!("k{}", 0).into_bytes()
                && String::from_utf8_lossy(&s.key)[1..].parse::<u32>().unwrap() > 1000));
    }

    #[test]
    fn expiries_are_counted_and_soon_expiring_keys_not_sampled() {
        let t0 = 1_000_000_000;
        let mut d = BackupDigest::new(t0);
        feed(&mut d, &entry(2, 1, Some(t0 - 5)));
        feed(&mut d, &entry(2, 2, Some(t0 + 10_000)));
        feed(&mut d, &entry(2, 3, Some(t0 + 48 * 3600 * 1000)));
        feed(&mut d, &entry(2, 4, None));
        assert_eq!(d.expired_by(2, t0), 1);
        assert_eq!(d.expired_by(2, t0 + 20_000), 2);
        assert_eq!(d.records(), 4);
        let sampled: Vec<_> = d.samples.iter().map(|s| s.key.clone()).collect();
        assert_eq!(sampled, vec![b"k3".to_vec(), b"k4".to_vec()]);
    }
}
