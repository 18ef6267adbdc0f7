//! `method = "keys"`: every key of every database through `SCAN`, `DUMP` and `PTTL`, the
//! commands managed Redis services allow. One round trip per batch: the pipeline that
//! dumps a batch also asks for the next one.
//!
//! Not a snapshot: keys written while the scan runs may or may not be in the backup.
//! Memory: one batch of values, plus 8 bytes per key of the database being scanned, to
//! count keys that SCAN returns twice only once.

use std::collections::BTreeMap;
use std::hash::BuildHasher;

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::Value;
use tokio::sync::mpsc;

use super::conn::server_error_text;
use super::keys_format::KeysWriter;
use super::rdb::{payload_version, DbTally};

/// Keys asked for per SCAN and dumped per pipeline.
pub const BATCH: usize = 1000;
const SEND_AT: usize = 1 << 20;

/// What a keys scan found.
#[derive(Debug, Default)]
pub struct KeysTally {
    pub dbs: BTreeMap<u32, DbTally>,
    /// The RDB version of the DUMP payloads (`None` when there was no key).
    pub rdb_version: Option<u16>,
}

fn scan_reply(v: Value) -> Result<(u64, Vec<Vec<u8>>)> {
    let (cursor, keys): (String, Vec<Vec<u8>>) =
        redis::from_owned_redis_value(v).map_err(|e| anyhow!("unexpected SCAN reply: {e}"))?;
    Ok((
        cursor
            .parse()
            .map_err(|_| anyhow!("SCAN returned cursor {cursor:?}"))?,
        keys,
    ))
}

fn command_error(what: &str, e: redis::RedisError) -> anyhow::Error {
    if e.is_timeout() {
        return anyhow!(super::conn::Unanswered(format!(
            "{what} failed: no answer within the target's timeout; hint: check the server's load (SLOWLOG, a long-running command) and network, or raise timeout in its [[redis]] table"
        )));
    }
    anyhow!("{what} failed: {}", server_error_text(&e))
}

/// Streams every key of `dbs` as a `dr-redis-keys-1` stream into `tx`.
pub async fn produce(
    con: &mut MultiplexedConnection,
    dbs: &[u32],
    tx: mpsc::Sender<Bytes>,
) -> Result<KeysTally> {
    let seed = std::collections::hash_map::RandomState::new();
    let mut tally = KeysTally::default();
    let mut w = KeysWriter::default();
    w.magic();
    let ship = |w: &mut KeysWriter, force: bool| {
        let ready = force || w.buf.len() >= SEND_AT;
        let chunk = ready.then(|| Bytes::from(std::mem::take(&mut w.buf)));
        let tx = tx.clone();
        async move {
            if let Some(chunk) = chunk {
                if tx.send(chunk).await.is_err() {
                    bail!("the storage writer stopped");
                }
            }
            Ok(())
        }
    };
    for &db in dbs {
        w.db(db);
        // Low bit: the key has a TTL. Sorted at the end so duplicates count once.
        let mut seen: Vec<u64> = Vec::new();
        let first: Vec<Value> = redis::pipe()
            .cmd("SELECT")
            .arg(db)
            .ignore()
            .cmd("SCAN")
            .arg(0)
            .arg("COUNT")
            .arg(BATCH)
            .query_async(con)
            .await
            .map_err(|e| command_error(&format!("SCAN of database {db}"), e))?;
        let (mut cursor, mut keys) = scan_reply(first.into_iter().next().unwrap_or(Value::Nil))?;
        loop {
            if keys.is_empty() {
                if cursor == 0 {
                    break;
                }
                let next: Vec<Value> = redis::pipe()
                    .cmd("SELECT")
                    .arg(db)
                    .ignore()
                    .cmd("SCAN")
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(BATCH)
                    .query_async(con)
                    .await
                    .map_err(|e| command_error(&format!("SCAN of database {db}"), e))?;
                (cursor, keys) = scan_reply(next.into_iter().next().unwrap_or(Value::Nil))?;
                continue;
            }
            let mut p = redis::pipe();
            p.cmd("SELECT").arg(db).ignore().cmd("TIME");
            for k in &keys {
                p.cmd("DUMP").arg(k).cmd("PTTL").arg(k);
            }
            if cursor != 0 {
                p.cmd("SCAN").arg(cursor).arg("COUNT").arg(BATCH);
            }
            let mut replies = p
                .query_async::<Vec<Value>>(con)
                .await
                .map_err(|e| {
                    command_error(&format!("DUMP of a batch of keys in database {db}"), e)
                })?
                .into_iter();
            let (secs, micros): (i64, i64) =
                redis::from_owned_redis_value(replies.next().unwrap_or(Value::Nil))
                    .map_err(|e| anyhow!("unexpected TIME reply: {e}"))?;
            let now_ms = secs * 1000 + micros / 1000;
            for key in keys.drain(..) {
                let dump = replies.next().unwrap_or(Value::Nil);
                let pttl = replies.next().unwrap_or(Value::Nil);
                let (Value::BulkString(payload), Value::Int(pttl)) = (dump, pttl) else {
                    // Deleted or expired between SCAN and DUMP.
                    continue;
                };
                if pttl == -2 {
                    continue;
                }
                let expire_at_ms = (pttl >= 0).then_some(now_ms + pttl);
                if tally.rdb_version.is_none() {
                    tally.rdb_version = payload_version(&payload).map(|(v, _)| v);
                }
                w.key(&key, expire_at_ms, &payload);
                let h = seed.hash_one((db, &key)) & !1;
                seen.push(h | u64::from(expire_at_ms.is_some()));
                ship(&mut w, false).await?;
            }
            if cursor == 0 {
                break;
            }
            (cursor, keys) = scan_reply(replies.next().unwrap_or(Value::Nil))?;
        }
        seen.sort_unstable();
        let mut db_tally = DbTally::default();
        let mut i = 0;
        while i < seen.len() {
            let key = seen[i] >> 1;
            let mut ttl = false;
            while i < seen.len() && seen[i] >> 1 == key {
                ttl |= seen[i] & 1 == 1;
                i += 1;
            }
            db_tally.keys += 1;
            db_tally.expires += u64::from(ttl);
        }
        if db_tally.keys > 0 {
            tally.dbs.insert(db, db_tally);
        }
    }
    w.trailer();
    ship(&mut w, true).await?;
    Ok(tally)
}
