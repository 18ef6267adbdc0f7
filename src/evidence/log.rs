//! The evidence log in storage: one JSON object per record under `evidence/log/`, named
//! by its sequence number (`0000000042.json`) and created only where no object is (so two
//! runs never both take one number); each record names the SHA-256 of the one before it,
//! so the records form one hash chain per storage. The full report of each
//! run is stored beside them under `evidence/reports/<sha256>.json`, and `evidence/head.json`
//! names the newest record, so that removing records from the end is noticed too.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context, Result};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::signing;
use crate::storage::{self, Storage};

pub const LOG_PREFIX: &str = "evidence/log";
pub const REPORTS_PREFIX: &str = "evidence/reports";
pub const HEAD_KEY: &str = "evidence/head.json";
pub const RECORD_FORMAT: u32 = 1;

/// An appender that finds its sequence number taken takes the next; this many times at most.
const APPEND_ATTEMPTS: u32 = 32;

/// One run of a recorded command. The field order is the signed byte order: the signature
/// covers the compact JSON of the record with `signature` null.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub format_version: u32,
    pub seq: u64,
    /// SHA-256 of the stored bytes of record `seq - 1`; None for the first record.
    pub prev_sha256: Option<String>,
    /// RFC 3339, UTC, milliseconds.
    pub at: String,
    pub command: String,
    /// The command line, passwords removed.
    pub argv: Vec<String>,
    pub host: String,
    pub user: String,
    pub targets: Vec<String>,
    pub ok: bool,
    pub exit_code: i32,
    /// The verdict, or the error, in one line.
    pub summary: String,
    /// Whole numbers taken from the report: rto_ms, rpo_ms, size_bytes, ...
    pub figures: BTreeMap<String, i64>,
    /// Backups the run made or removed: what the export charts without opening reports,
    /// which may be encrypted.
    pub backups: Vec<BackupItem>,
    pub report_key: String,
    pub report_sha256: String,
    pub report_bytes: u64,
    pub dr_version: String,
    pub signature: Option<RecordSignature>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RecordSignature {
    pub algorithm: String,
    /// 64 hex digits.
    pub public_key: String,
    /// 128 hex digits.
    pub value: String,
}

impl Record {
    /// The bytes the signature covers.
    // A record is plain data (strings, numbers, string-keyed maps): serde_json cannot fail.
    #[allow(clippy::expect_used)]
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.signature = None;
        serde_json::to_vec(&unsigned).expect("records serialize")
    }
}

/// A backup a run made (`removed` false) or removed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BackupItem {
    pub target: String,
    pub id: String,
    pub created_at: Option<String>,
    pub size_bytes: Option<u64>,
    pub removed: bool,
}

/// `evidence/head.json`: the newest record when it was written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub format_version: u32,
    pub seq: u64,
    pub sha256: String,
    pub key: String,
    pub signature: Option<RecordSignature>,
}

impl Head {
    pub fn signed_bytes(&self) -> Vec<u8> {
        format!(
            "dr-evidence-head\n{}\n{}\n{}",
            self.seq, self.sha256, self.key
        )
        .into_bytes()
    }
}

/// What a run hands over to be recorded.
pub struct Draft {
    pub command: String,
    pub argv: Vec<String>,
    pub targets: Vec<String>,
    pub ok: bool,
    pub exit_code: i32,
    pub summary: String,
    pub figures: BTreeMap<String, i64>,
    pub backups: Vec<BackupItem>,
    /// The report as stored: its JSON, or that sealed with age (`[encryption]`).
    pub report: Vec<u8>,
    pub report_sealed: bool,
}

/// A log object by its name: its sequence number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogEntry {
    pub seq: u64,
    pub key: String,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn record_key(seq: u64) -> String {
    format!("{LOG_PREFIX}/{seq:010}.json")
}

/// Parses a log key; None for an object that is not named like a record.
pub fn parse_key(key: &str) -> Option<LogEntry> {
    let name = key.strip_prefix(LOG_PREFIX)?.strip_prefix('/')?;
    let seq = name.strip_suffix(".json")?;
    let valid = seq.len() == 10 && seq.bytes().all(|b| b.is_ascii_digit());
    valid.then(|| LogEntry {
        seq: seq.parse().unwrap_or(0),
        key: key.to_string(),
    })
}

/// Every object below `evidence/log/`: the records, sorted by sequence number, and the
/// keys of objects not named like one.
pub async fn list(storage: &dyn Storage) -> Result<(Vec<LogEntry>, Vec<String>)> {
    let objects = storage
        .list(&format!("{LOG_PREFIX}/"))
        .await
        .with_context(|| format!("cannot list the evidence log in {}", storage.describe()))?;
    let mut entries = Vec::new();
    let mut strays = Vec::new();
    // A local write in progress (or one a killed run left) is no object of the log.
    for o in objects
        .into_iter()
        .filter(|o| !o.key.contains(storage::local::PARTIAL_MARKER))
    {
        match parse_key(&o.key) {
            Some(e) => entries.push(e),
            None => strays.push(o.key),
        }
    }
    entries.sort();
    Ok((entries, strays))
}

pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}

pub fn user_name() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| nix::unistd::getuid().to_string())
}

fn signature_of(key: &SigningKey, message: &[u8]) -> RecordSignature {
    RecordSignature {
        algorithm: "ed25519".into(),
        public_key: signing::public_hex(&key.verifying_key()),
        value: signing::sign(key, message),
    }
}

/// Appends one record (and its report) and returns its key. Two runs appending at once:
/// the record is created only where no object is, so one of them takes the number and
/// the other the next, chained after it. Reading the record back catches a store whose
/// create-only write is not atomic (the test server's): the loser takes the next number.
pub async fn append(
    storage: &dyn Storage,
    signing_key: Option<&SigningKey>,
    draft: Draft,
) -> Result<String> {
    let report = draft.report;
    let report_sha256 = sha256_hex(&report);
    let report_key = format!(
        "{REPORTS_PREFIX}/{report_sha256}.json{}",
        if draft.report_sealed { ".age" } else { "" }
    );
    let report_bytes = report.len() as u64;
    if storage.head(&report_key).await?.is_none() {
        storage::put_bytes(storage, &report_key, report)
            .await
            .with_context(|| format!("cannot store the report {report_key}"))?;
    }
    for attempt in 0..APPEND_ATTEMPTS {
        let (entries, _) = list(storage).await?;
        let (seq, prev_sha256) = match entries.last() {
            None => (1, None),
            Some(last) => {
                let bytes = storage::get_bytes(storage, &last.key).await?;
                (last.seq + 1, Some(sha256_hex(&bytes)))
            }
        };
        let mut record = Record {
            format_version: RECORD_FORMAT,
            seq,
            prev_sha256,
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            command: draft.command.clone(),
            argv: draft.argv.clone(),
            host: host_name(),
            user: user_name(),
            targets: draft.targets.clone(),
            ok: draft.ok,
            exit_code: draft.exit_code,
            summary: draft.summary.clone(),
            figures: draft.figures.clone(),
            backups: draft.backups.clone(),
            report_key: report_key.clone(),
            report_sha256: report_sha256.clone(),
            report_bytes,
            dr_version: env!("CARGO_PKG_VERSION").to_string(),
            signature: None,
        };
        record.signature = signing_key.map(|k| signature_of(k, &record.signed_bytes()));
        let mut bytes = serde_json::to_vec_pretty(&record)?;
        bytes.push(b'\n');
        let key = record_key(seq);
        let created = storage
            .put_new(&key, bytes::Bytes::from(bytes.clone()))
            .await
            .with_context(|| format!("cannot store the evidence record {key}"))?;
        if created && storage::get_bytes(storage, &key).await? == bytes {
            write_head(storage, signing_key).await?;
            // A store whose create-only write is not atomic (s3s-fs checks, then writes) can
            // let a second writer replace this record after the first read-back; by now,
            // a head write later, such a race has landed. Still ours: done; else chain on.
            if storage::get_bytes(storage, &key).await? == bytes {
                return Ok(key);
            }
        }
        // Another run took this number: chain after its record.
        let jitter = u64::from(std::process::id() % 23) + u64::from(attempt) * 10;
        tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
    }
    Err(anyhow!(
        "cannot append to the evidence log in {}: other dr runs took the same place {APPEND_ATTEMPTS} times; hint: run the command again",
        storage.describe()
    ))
}

/// Points `evidence/head.json` at the newest record, until a listing after the write shows
/// no newer one (a concurrent append may have written its head before this one).
async fn write_head(storage: &dyn Storage, signing_key: Option<&SigningKey>) -> Result<()> {
    for _ in 0..APPEND_ATTEMPTS {
        let (entries, _) = list(storage).await?;
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let bytes = storage::get_bytes(storage, &last.key).await?;
        let mut head = Head {
            format_version: RECORD_FORMAT,
            seq: last.seq,
            sha256: sha256_hex(&bytes),
            key: last.key.clone(),
            signature: None,
        };
        head.signature = signing_key.map(|k| signature_of(k, &head.signed_bytes()));
        storage::put_bytes(storage, HEAD_KEY, serde_json::to_vec_pretty(&head)?)
            .await
            .with_context(|| format!("cannot store {HEAD_KEY}"))?;
        let (again, _) = list(storage).await?;
        if again.last() == Some(last) {
            return Ok(());
        }
    }
    Ok(())
}

pub async fn read_head(storage: &dyn Storage) -> Result<Option<Head>> {
    if storage.head(HEAD_KEY).await?.is_none() {
        return Ok(None);
    }
    let bytes = storage::get_bytes(storage, HEAD_KEY).await?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| anyhow!("{HEAD_KEY} is not an evidence head ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_sequence_number() {
        let key = record_key(42);
        assert_eq!(key, "evidence/log/0000000042.json");
        assert_eq!(parse_key(&key).unwrap().seq, 42);
        assert!(parse_key("evidence/log/42.json").is_none());
        assert!(parse_key("evidence/log/000000004x.json").is_none());
        assert!(parse_key("evidence/log/0000000042-0123456789abcdef.json").is_none());
        assert!(parse_key("evidence/reports/x.json").is_none());
    }
}
