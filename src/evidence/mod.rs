//! Evidence an auditor can trust: every backup, validate, restore, verify, drill and prune
//! appends a record to a hash-chained, optionally signed log in storage (`log`), which
//! `dr evidence verify` walks (`chain`) and `dr evidence export` turns into the auditor's
//! package (`export`); `prediction` is the arithmetic of the predicted RTO.

pub mod chain;
pub mod export;
pub mod html;
pub mod log;
pub mod prediction;
pub mod signing;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::config::Config;
use crate::report::Finding;
use crate::storage::Storage;

/// The commands whose runs are recorded.
pub const RECORDED: [&str; 6] = ["backup", "validate", "restore", "verify", "drill", "prune"];

/// How many of the newest records `dr check` verifies fully.
pub const CHECK_TAIL: usize = 20;

/// The key records are signed with, when `[evidence] signing_key_file` is set.
pub fn signing_key(config: &Config) -> Result<Option<ed25519_dalek::SigningKey>> {
    config
        .evidence
        .signing_key_path(config.dir())
        .map(|p| signing::load_signing_key(&p))
        .transpose()
}

/// The key signatures are checked against: `--public-key`, else `[evidence] public_key`,
/// else the public half of the signing key; none when neither is set.
pub fn trust(config: &Config, explicit: Option<&str>) -> Result<chain::Trust> {
    if let Some(text) = explicit {
        return Ok(chain::Trust {
            key: Some(signing::parse_public(text)?),
            source: "--public-key".into(),
        });
    }
    if let Some(text) = &config.evidence.public_key {
        return Ok(chain::Trust {
            key: Some(signing::parse_public(text).context("[evidence] public_key")?),
            source: "[evidence] public_key".into(),
        });
    }
    Ok(match signing_key(config)? {
        Some(k) => chain::Trust {
            key: Some(k.verifying_key()),
            source: "[evidence] signing_key_file".into(),
        },
        None => chain::Trust {
            key: None,
            source: "none: no public_key or signing_key_file in [evidence]".into(),
        },
    })
}

/// Appends the record of one finished run: `report` is the document the run printed (or
/// its error document). A storage that was never set up gets none (a failed first backup
/// leaves nothing behind). Errors are for the caller to warn about: recording never
/// changes a run's outcome.
pub async fn record_run(
    storage: &dyn Storage,
    config: &Config,
    command: &str,
    argv: Vec<String>,
    report: Value,
    exit_code: i32,
) -> Result<Option<String>> {
    if crate::storage::marker::read(storage).await?.is_none() {
        return Ok(None);
    }
    let key = match signing_key(config) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!("{e:#}; this record is appended unsigned");
            None
        }
    };
    let ok = exit_code == 0 && report["ok"].as_bool().unwrap_or(true);
    let summary = summary_of(&report, ok);
    let mut bytes = serde_json::to_vec_pretty(&report)?;
    // Reports name tables and row counts: with [encryption] only their sealed copy is
    // stored, as drills keep theirs.
    let recipients = crate::encryption::configured_recipients(config)?;
    if let Some(recipients) = &recipients {
        let mut sealed = Vec::new();
        let mut writer = recipients.encrypt(&mut sealed)?;
        std::io::Write::write_all(&mut writer, &bytes)?;
        writer.finish()?;
        bytes = sealed;
    }
    let draft = log::Draft {
        command: command.to_string(),
        argv,
        targets: targets_of(&report),
        ok,
        exit_code,
        summary,
        figures: figures_of(&report),
        backups: backups_of(command, &report),
        report: bytes,
        report_sealed: recipients.is_some(),
    };
    log::append(storage, key.as_ref(), draft).await.map(Some)
}

/// The backups a backup run made, or a prune (not a dry run) removed.
pub fn backups_of(command: &str, report: &Value) -> Vec<log::BackupItem> {
    let list = report["backups"].as_array().into_iter().flatten();
    match command {
        "backup" => list
            .filter_map(|b| {
                Some(log::BackupItem {
                    target: b["target"].as_str()?.to_string(),
                    id: b["id"].as_str()?.to_string(),
                    created_at: b["created_at"].as_str().map(str::to_string),
                    size_bytes: b["size_bytes"].as_u64(),
                    removed: false,
                })
            })
            .collect(),
        "prune" if report["dry_run"] == Value::Bool(false) => list
            .filter(|b| b["action"] == "remove")
            .filter_map(|b| {
                Some(log::BackupItem {
                    target: b["target"].as_str()?.to_string(),
                    id: b["backup_id"].as_str()?.to_string(),
                    created_at: None,
                    size_bytes: None,
                    removed: true,
                })
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn summary_of(report: &Value, ok: bool) -> String {
    for field in ["verdict", "error", "message"] {
        if let Some(text) = report[field].as_str() {
            return text.to_string();
        }
    }
    if let Some(f) = report["failures"].as_array().filter(|f| !f.is_empty()) {
        return f
            .iter()
            .map(|x| {
                format!(
                    "{}: {}",
                    x["target"].as_str().unwrap_or("-"),
                    x["error"].as_str().unwrap_or("failed")
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
    }
    if ok { "ok" } else { "failed" }.to_string()
}

/// Every target the report names: its own, and those of the objects in its lists.
pub fn targets_of(report: &Value) -> Vec<String> {
    let mut out = BTreeSet::new();
    if let Some(t) = report["target"].as_str() {
        out.insert(t.to_string());
    }
    if let Some(map) = report.as_object() {
        for list in map.values().filter_map(Value::as_array) {
            out.extend(
                list.iter()
                    .filter_map(|v| v["target"].as_str().map(str::to_string)),
            );
        }
    }
    out.into_iter().collect()
}

/// The report's top-level whole numbers (rto_ms, size_bytes, ...), the length of each of
/// its lists (`<list>_count`), and the bytes of the backups it made.
pub fn figures_of(report: &Value) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    let Some(map) = report.as_object() else {
        return out;
    };
    for (name, value) in map {
        if let Some(n) = value.as_i64() {
            out.insert(name.clone(), n);
        } else if let Some(list) = value.as_array() {
            out.insert(format!("{name}_count"), list.len() as i64);
        }
    }
    if let Some(backups) = map.get("backups").and_then(Value::as_array) {
        let bytes: i64 = backups
            .iter()
            .filter_map(|b| b["size_bytes"].as_i64())
            .sum();
        out.insert("backup_bytes".into(), bytes);
    }
    out.remove("format_version");
    out
}

/// `evidence.chain` in `dr check`: the newest records verified, and whether they are signed.
pub async fn check_tail(storage: &dyn Storage, config: &Config) -> Result<Finding> {
    let signing = signing_key(config);
    let trust = trust(config, None)?;
    let (report, _) = chain::verify(storage, &trust, Some(CHECK_TAIL)).await?;
    if let Some(p) = report.problems.first() {
        return Ok(Finding::fail(format!(
            "the evidence log fails verification: {}: {}{}; hint: run `dr evidence verify` for every problem, and find out who changed the storage",
            p.key,
            p.problem,
            if report.problems.len() > 1 {
                format!(" (and {} more)", report.problems.len() - 1)
            } else {
                String::new()
            }
        )));
    }
    if report.records == 0 {
        return Ok(Finding::pass(
            "the evidence log is empty: the next backup, drill or restore starts it",
        ));
    }
    let head = format!(
        "{} record(s), the newest {} verified",
        report.records, report.checked
    );
    match signing? {
        None => Ok(Finding::warn(format!(
            "{head}; records are chained but unsigned: anyone who can write to the storage can rewrite the log whole; hint: `dr evidence keygen --output /etc/dr/evidence.pem` and set [evidence] signing_key_file"
        ))),
        Some(key) => Ok(Finding::pass(format!(
            "{head}; signed with key {}",
            signing::public_hex(&key.verifying_key())
        ))),
    }
}

/// `dr evidence keygen`: a new key in `path` (0600); returns its public key.
pub fn keygen(path: &std::path::Path) -> Result<String> {
    let key = signing::generate()?;
    signing::write_new_key(path, &key)?;
    Ok(signing::public_hex(&key.verifying_key()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_and_targets_come_from_the_report() {
        let report = serde_json::json!({
            "format_version": 2, "ok": true, "rto_ms": 1200, "target": "main",
            "backups": [{"target": "main", "size_bytes": 10}, {"target": "shop/a", "size_bytes": 5}],
            "failures": [],
        });
        let f = figures_of(&report);
        assert_eq!(f["rto_ms"], 1200);
        assert_eq!(f["backups_count"], 2);
        assert_eq!(f["backup_bytes"], 15);
        assert!(!f.contains_key("format_version"));
        assert_eq!(targets_of(&report), vec!["main", "shop/a"]);
        assert_eq!(
            summary_of(&serde_json::json!({"verdict": "pass: x"}), true),
            "pass: x"
        );
    }
}
