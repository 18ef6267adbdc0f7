//! Walking the evidence log: every name, link, signature and report hash. Any record or
//! report that was edited, removed, reordered or forked is a problem naming its key.

use anyhow::Result;
use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use super::log::{self, LogEntry, Record};
use super::signing;
use crate::storage::{self, Storage};

/// The key signatures are checked against, and where it came from.
pub struct Trust {
    pub key: Option<VerifyingKey>,
    pub source: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub key: String,
    pub problem: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChainReport {
    pub format_version: u32,
    pub ok: bool,
    /// Records in the log.
    pub records: u64,
    /// Records whose bytes, link, signature and report were checked.
    pub checked: u64,
    pub signed: u64,
    pub unsigned: u64,
    /// The trusted public key, when there is one.
    pub public_key: Option<String>,
    pub key_source: String,
    pub head_seq: Option<u64>,
    pub head_sha256: Option<String>,
    pub problems: Vec<Problem>,
    pub warnings: Vec<String>,
}

/// Verifies the log; `tail` checks only the newest records fully (names and sequence
/// numbers are always checked whole). Returns the report and the records read.
pub async fn verify(
    storage: &dyn Storage,
    trust: &Trust,
    tail: Option<usize>,
) -> Result<(ChainReport, Vec<Record>)> {
    let (entries, strays) = log::list(storage).await?;
    let mut problems: Vec<Problem> = strays
        .into_iter()
        .map(|key| Problem {
            key,
            problem: "not named like a record (<sequence>-<hash>.json): placed or renamed by hand"
                .into(),
        })
        .collect();
    sequence_problems(&entries, &mut problems);

    let start = tail.map_or(0, |t| entries.len().saturating_sub(t));
    // The record before the window: only its hash is needed, for the first link.
    let mut prev: Option<(u64, String, String)> = match start.checked_sub(1) {
        Some(i) => {
            let bytes = storage::get_bytes(storage, &entries[i].key).await?;
            Some((
                entries[i].seq,
                entries[i].key.clone(),
                log::sha256_hex(&bytes),
            ))
        }
        None => None,
    };
    let mut records = Vec::new();
    let (mut signed, mut unsigned, mut seen_signed) = (0u64, 0u64, false);
    let mut own_keys_only = false;
    let mut last_hash = None;
    let mut broken_links = Vec::new();
    for entry in &entries[start..] {
        let mut flag = |problem: String| {
            problems.push(Problem {
                key: entry.key.clone(),
                problem,
            })
        };
        let bytes = match storage::get_bytes(storage, &entry.key).await {
            Ok(b) => b,
            Err(e) => {
                flag(format!("cannot be read: {e:#}"));
                continue;
            }
        };
        let hash = log::sha256_hex(&bytes);
        let record: Record = match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            Err(e) => {
                flag(format!("not a readable record ({e})"));
                prev = Some((entry.seq, entry.key.clone(), hash));
                continue;
            }
        };
        if record.seq != entry.seq {
            flag(format!(
                "says it is record {} but is stored as record {}: records were renamed or reordered",
                record.seq, entry.seq
            ));
        }
        match (&prev, &record.prev_sha256) {
            (None, None) if entry.seq == 1 => {}
            (Some((pseq, _, phash)), Some(named)) if *pseq + 1 == entry.seq && named == phash => {}
            // The link names the SHA-256 the record before had when this one was written.
            (Some((pseq, pkey, _)), _) if *pseq + 1 == entry.seq && record.seq == entry.seq => {
                broken_links.push(Problem {
                    key: pkey.clone(),
                    problem: format!(
                        "changed after it was written (or replaced): record {} names another SHA-256 for it",
                        entry.seq
                    ),
                })
            }
            // A gap or a renamed record is reported once, by its own check.
            _ => {}
        }
        match (&record.signature, &trust.key) {
            (Some(sig), Some(key)) => {
                signed += 1;
                seen_signed = true;
                if sig.public_key != signing::public_hex(key) {
                    flag(format!(
                        "signed by key {}, not by the trusted key {} ({})",
                        sig.public_key,
                        signing::public_hex(key),
                        trust.source
                    ));
                } else if let Err(e) = signing::check(key, &record.signed_bytes(), &sig.value) {
                    flag(format!("{e}: the record was changed after it was signed"));
                }
            }
            (Some(sig), None) => {
                signed += 1;
                seen_signed = true;
                own_keys_only = true;
                match signing::parse_public(&sig.public_key) {
                    Ok(key) => {
                        if let Err(e) = signing::check(&key, &record.signed_bytes(), &sig.value) {
                            flag(format!("{e}: the record was changed after it was signed"));
                        }
                    }
                    Err(e) => flag(format!("{e:#}")),
                }
            }
            (None, _) => {
                unsigned += 1;
                if seen_signed {
                    flag("unsigned, after signed records: written without the signing key, or a signed record replaced".into());
                }
            }
        }
        match storage::get_bytes(storage, &record.report_key).await {
            Ok(report) if log::sha256_hex(&report) == record.report_sha256 => {}
            Ok(_) => flag(format!(
                "its report {} was changed: its SHA-256 is no longer the one recorded",
                record.report_key
            )),
            Err(_) => flag(format!(
                "its report {} is missing (removed)",
                record.report_key
            )),
        }
        prev = Some((entry.seq, entry.key.clone(), hash.clone()));
        last_hash = Some(hash);
        records.push(record);
    }
    problems.append(&mut broken_links);
    let head = head_problems(
        storage,
        trust,
        &entries,
        last_hash.as_deref(),
        seen_signed,
        &mut problems,
    )
    .await?;
    let mut warnings = Vec::new();
    if unsigned > 0 {
        warnings.push(format!(
            "{unsigned} record(s) unsigned: chained, but anyone who can write to the storage can rewrite the chain whole; hint: `dr evidence keygen --output /etc/dr/evidence.pem` and set [evidence] signing_key_file"
        ));
    }
    if own_keys_only {
        warnings.push("signatures were checked against the key each record names, not a trusted one; hint: set [evidence] public_key, or pass --public-key".into());
    }
    let report = ChainReport {
        format_version: crate::report::FORMAT_VERSION,
        ok: problems.is_empty(),
        records: entries.len() as u64,
        checked: records.len() as u64,
        signed,
        unsigned,
        public_key: trust.key.as_ref().map(signing::public_hex),
        key_source: trust.source.clone(),
        head_seq: head.as_ref().map(|h| h.seq),
        head_sha256: head.map(|h| h.sha256),
        problems,
        warnings,
    };
    Ok((report, records))
}

/// Sequence numbers must run 1, 2, 3, ... once each.
fn sequence_problems(entries: &[LogEntry], problems: &mut Vec<Problem>) {
    let mut expected = 1u64;
    for (i, e) in entries.iter().enumerate() {
        if i > 0 && entries[i - 1].seq == e.seq {
            problems.push(Problem {
                key: e.key.clone(),
                problem: format!(
                    "a fork: {} has sequence number {} too; two records claim one place in the chain",
                    entries[i - 1].key,
                    e.seq
                ),
            });
            continue;
        }
        if e.seq != expected {
            let missing = if e.seq == expected + 1 {
                format!("record {expected} is missing")
            } else if e.seq > expected {
                format!("records {expected} to {} are missing", e.seq - 1)
            } else {
                format!("out of order after record {}", expected - 1)
            };
            problems.push(Problem {
                key: e.key.clone(),
                problem: format!("{missing} before it (removed)"),
            });
        }
        expected = e.seq + 1;
    }
}

async fn head_problems(
    storage: &dyn Storage,
    trust: &Trust,
    entries: &[LogEntry],
    last_hash: Option<&str>,
    any_signed: bool,
    problems: &mut Vec<Problem>,
) -> Result<Option<log::Head>> {
    let head = match log::read_head(storage).await {
        Ok(h) => h,
        Err(e) => {
            flag_key(problems, log::HEAD_KEY, format!("{e:#}"));
            return Ok(None);
        }
    };
    let (Some(head), Some(last)) = (&head, entries.last()) else {
        if head.is_none() && !entries.is_empty() {
            flag_key(
                problems,
                log::HEAD_KEY,
                "missing: the log has records but nothing names its newest one".into(),
            );
        }
        if let (Some(h), None) = (&head, entries.last()) {
            flag_key(
                problems,
                log::HEAD_KEY,
                format!(
                    "names record {} but the log is empty: every record was removed",
                    h.seq
                ),
            );
        }
        return Ok(head);
    };
    if head.seq > last.seq {
        flag_key(
            problems,
            log::HEAD_KEY,
            format!(
            "names record {} ({}) but the log ends at record {}: records at the end were removed",
            head.seq, head.key, last.seq
        ),
        );
    } else if head.seq < last.seq {
        flag_key(problems, log::HEAD_KEY, format!(
            "names record {} but the log goes on to record {}; hint: a dr run appending right now (or one that died after writing its record) leaves this: the next recorded run moves the head; run verify again",
            head.seq, last.seq
        ));
    } else if last_hash.is_some_and(|h| h != head.sha256) {
        flag_key(
            problems,
            &last.key,
            "changed after it was written (or replaced): the head names another SHA-256 for it"
                .into(),
        );
    }
    if let Some(key) = &trust.key {
        match &head.signature {
            Some(sig) if signing::check(key, &head.signed_bytes(), &sig.value).is_ok() => {}
            Some(_) => flag_key(
                problems,
                log::HEAD_KEY,
                format!("its signature is not the trusted key's ({})", trust.source),
            ),
            None if any_signed => flag_key(
                problems,
                log::HEAD_KEY,
                "unsigned after signed records: written without the signing key, or replaced"
                    .into(),
            ),
            None => {}
        }
    }
    Ok(Some(head.clone()))
}

fn flag_key(problems: &mut Vec<Problem>, key: &str, problem: String) {
    problems.push(Problem {
        key: key.to_string(),
        problem,
    });
}
