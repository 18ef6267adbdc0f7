//! `dr status`: one row per target, from what storage holds (backups, drill reports,
//! status records, archived WAL), never from the databases: it answers while a server is
//! down, and in well under a second for hundreds of targets.

use std::collections::HashMap;

use anyhow::Result;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;

use crate::backup::catalog::{self, BackupDir};
use crate::backup::manifest::{BackupKind, BackupManifest};
use crate::config::{storage_name, target_from_storage, Config};
use crate::drill::{DrillReport, DRILLS_PREFIX};
use crate::notify::state::{LastRun, STATUS_PREFIX};
use crate::notify::RunStatus;
use crate::report::Status;
use crate::storage::{self, Storage};
use crate::units::age as age_text;

/// Reads of storage in flight at once.
const READS_AT_ONCE: usize = 32;

#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub format_version: u32,
    /// No target failed.
    pub ok: bool,
    pub generated_at: DateTime<Utc>,
    pub rpo_s: Option<u64>,
    pub rto_s: Option<u64>,
    pub drill_every_s: u64,
    /// Worst first.
    pub targets: Vec<TargetStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    pub target: String,
    pub engine: &'static str,
    pub status: Status,
    /// What is wrong (or, when nothing is, what holds), worst first.
    pub summary: String,
    pub last_backup: Option<BackupSummary>,
    pub last_drill: Option<DrillSummary>,
    /// The newest archived WAL (targets with `wal_archiving`): a restore reaches up to it.
    pub restorable_until: Option<DateTime<Utc>>,
    /// Whether the newest backup is encrypted.
    pub encrypted: Option<bool>,
    pub last_failure: Option<FailureSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupSummary {
    pub id: String,
    pub finished_at: DateTime<Utc>,
    pub age_s: i64,
    pub size_bytes: u64,
    pub rpo_met: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillSummary {
    pub id: String,
    pub started_at: DateTime<Utc>,
    pub age_s: i64,
    pub ok: bool,
    pub rto_ms: u64,
    pub rto_objective_ms: Option<u64>,
    pub rto_met: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailureSummary {
    pub operation: String,
    pub at: DateTime<Utc>,
    pub message: String,
}

/// The targets a scorecard covers: PostgreSQL targets (fleet members included) and Redis
/// targets with backups.
pub fn target_names(config: &Config) -> Vec<(String, &'static str, bool)> {
    config
        .postgres
        .iter()
        .map(|t| (t.name.clone(), "postgres", t.wal_archiving))
        .chain(
            config
                .redis
                .iter()
                .filter(|t| t.backup)
                .map(|t| (t.name.clone(), "redis", false)),
        )
        .collect()
}

/// Reads what storage holds of `targets` and judges each.
pub async fn build(
    storage: &dyn Storage,
    config: &Config,
    targets: &[(String, &'static str, bool)],
    now: DateTime<Utc>,
) -> Result<StatusReport> {
    let dirs = catalog::scan(storage, None).await?;
    let mut by_target: HashMap<String, Vec<BackupDir>> = HashMap::new();
    for d in dirs.into_iter().filter(|d| d.has_manifest) {
        by_target.entry(d.target.clone()).or_default().push(d);
    }
    let drills = newest_keys(storage, DRILLS_PREFIX).await?;
    let records = storage.list(STATUS_PREFIX).await?;
    let mut records_of: HashMap<String, Vec<String>> = HashMap::new();
    for o in records {
        if let [_, _, file] = o.key.split('/').collect::<Vec<_>>().as_slice() {
            if let Some(t) = file.strip_suffix(".json") {
                records_of
                    .entry(target_from_storage(t))
                    .or_default()
                    .push(o.key.clone());
            }
        }
    }
    let encryption_configured = config.encryption.is_some();
    let rows = futures::stream::iter(targets.iter().map(|(name, engine, wal)| {
        let dirs = by_target.remove(name).unwrap_or_default();
        let drill_key = drills.get(&storage_name(name).into_owned()).cloned();
        let record_keys = records_of.remove(name).unwrap_or_default();
        async move {
            let backup = newest_backup(storage, dirs).await;
            let drill = match drill_key {
                Some(key) => storage::get_bytes(storage, &key)
                    .await
                    .and_then(|b| Ok(serde_json::from_slice::<DrillReport>(&b)?))
                    .ok(),
                None => None,
            };
            let mut runs = Vec::new();
            for key in record_keys {
                if let Ok(run) = storage::get_bytes(storage, &key)
                    .await
                    .and_then(|b| Ok(serde_json::from_slice::<LastRun>(&b)?))
                {
                    runs.push(run);
                }
            }
            let restorable_until = if *wal {
                newest_wal(storage, name).await
            } else {
                None
            };
            judge(
                Inputs {
                    name,
                    engine,
                    backup: backup.as_ref(),
                    drill: drill.as_ref(),
                    runs: &runs,
                    restorable_until,
                    encryption_configured,
                },
                config,
                now,
            )
        }
    }))
    .buffer_unordered(READS_AT_ONCE)
    .collect::<Vec<_>>()
    .await;
    let mut rows = rows;
    sort_worst_first(&mut rows);
    let secs = |d: Option<std::time::Duration>| d.map(|d| d.as_secs());
    Ok(StatusReport {
        format_version: crate::report::FORMAT_VERSION,
        ok: rows.iter().all(|r| r.status != Status::Fail),
        generated_at: now,
        rpo_s: secs(config.objectives.rpo),
        rto_s: secs(config.objectives.rto),
        drill_every_s: config.objectives.drill_every().as_secs(),
        targets: rows,
    })
}

fn rank(s: Status) -> u8 {
    match s {
        Status::Fail => 0,
        Status::Warn => 1,
        Status::Pass => 2,
    }
}

/// Failures first, then warnings; within each, the oldest backup first (none at all is
/// the oldest), then by name.
pub fn sort_worst_first(rows: &mut [TargetStatus]) {
    rows.sort_by(|a, b| {
        let age = |r: &TargetStatus| r.last_backup.as_ref().map_or(i64::MAX, |b| b.age_s);
        rank(a.status)
            .cmp(&rank(b.status))
            .then(age(b).cmp(&age(a)))
            .then(a.target.cmp(&b.target))
    });
}

/// The newest object (by modification time) under each `<prefix>/<segment>/`.
async fn newest_keys(storage: &dyn Storage, prefix: &str) -> Result<HashMap<String, String>> {
    let mut newest: HashMap<String, (DateTime<Utc>, String)> = HashMap::new();
    for o in storage.list(prefix).await? {
        if !o.key.ends_with(".json") {
            continue;
        }
        let Some(segment) = o.key.split('/').nth(1) else {
            continue;
        };
        let entry = newest
            .entry(segment.to_string())
            .or_insert((o.modified, o.key.clone()));
        if (o.modified, &o.key) > (entry.0, &entry.1) {
            *entry = (o.modified, o.key.clone());
        }
    }
    Ok(newest.into_iter().map(|(k, (_, key))| (k, key)).collect())
}

/// The newest complete regular backup: backup ids sort by time within a target, so the
/// manifests are read newest first until a regular one is found.
async fn newest_backup(storage: &dyn Storage, mut dirs: Vec<BackupDir>) -> Option<BackupManifest> {
    dirs.sort_by(|a, b| b.id.cmp(&a.id));
    for d in dirs {
        let key = catalog::manifest_key(&d.target, &d.id);
        let Ok(m) = storage::get_bytes(storage, &key)
            .await
            .and_then(|b| BackupManifest::parse(&b))
        else {
            continue;
        };
        if m.kind == BackupKind::Regular {
            return Some(m);
        }
    }
    None
}

/// When the newest WAL file of the target reached storage.
async fn newest_wal(storage: &dyn Storage, target: &str) -> Option<DateTime<Utc>> {
    let files = storage
        .list(&format!(
            "{}/{}",
            crate::wal::WAL_PREFIX,
            storage_name(target)
        ))
        .await
        .ok()?;
    files.iter().map(|o| o.modified).max()
}

pub struct Inputs<'a> {
    pub name: &'a str,
    pub engine: &'static str,
    pub backup: Option<&'a BackupManifest>,
    pub drill: Option<&'a DrillReport>,
    pub runs: &'a [LastRun],
    pub restorable_until: Option<DateTime<Utc>>,
    pub encryption_configured: bool,
}

/// The verdict of one row. Fail: no backup, nothing restorable within the RPO, or the
/// last backup run failed. Warn: never drilled, a drill overdue, failed or over the RTO,
/// another operation failing, or an unencrypted backup where encryption is configured.
pub fn judge(i: Inputs<'_>, config: &Config, now: DateTime<Utc>) -> TargetStatus {
    let objectives = &config.objectives;
    let rpo = objectives
        .rpo
        .and_then(|d| chrono::Duration::from_std(d).ok());
    let mut fails: Vec<String> = Vec::new();
    let mut warns: Vec<String> = Vec::new();
    let mut good: Vec<String> = Vec::new();

    let last_backup = i.backup.map(|m| {
        let age = now - m.finished_at;
        BackupSummary {
            id: m.id.clone(),
            finished_at: m.finished_at,
            age_s: age.num_seconds(),
            size_bytes: m.size_bytes,
            rpo_met: rpo.map(|r| age <= r),
        }
    });
    // With archived WAL, a restore reaches the newest segment, not just the backup.
    let newest_point = match (i.backup.map(|m| m.finished_at), i.restorable_until) {
        (Some(b), Some(w)) => Some(b.max(w)),
        (b, w) => b.or(w),
    };
    match (newest_point, rpo) {
        (None, _) => fails.push(format!(
            "no backup; hint: run `dr backup --target {}`",
            i.name
        )),
        (Some(at), Some(rpo)) if now - at > rpo => fails.push(format!(
            "newest restorable point is {} old, over the RPO ({}); hint: run `dr backup --target {}` and check the schedule",
            age_text(now - at),
            age_text(rpo),
            i.name
        )),
        (Some(at), Some(rpo)) => good.push(format!(
            "restorable point {} old (RPO {})",
            age_text(now - at),
            age_text(rpo)
        )),
        (Some(at), None) => good.push(format!("last backup {} old", age_text(now - at))),
    }

    let last_drill = i.drill.map(|d| DrillSummary {
        id: d.id.clone(),
        started_at: d.started_at,
        age_s: (now - d.started_at).num_seconds(),
        ok: d.ok,
        rto_ms: d.rto_ms,
        rto_objective_ms: d.rto_objective_ms,
        rto_met: d.rto_met,
    });
    let every = chrono::Duration::from_std(objectives.drill_every()).unwrap_or_default();
    match i.drill {
        None => warns.push(format!(
            "never drilled: the RTO is a promise; hint: run `dr drill --target {}`",
            i.name
        )),
        Some(d) if !d.ok => warns.push(format!(
            "the last drill ({} ago) failed: {}",
            age_text(now - d.started_at),
            d.verdict
        )),
        Some(d) if d.rto_met == Some(false) => warns.push(format!(
            "the last drill took {}, over the RTO",
            crate::units::millis(d.rto_ms)
        )),
        Some(d) if now - d.started_at > every => warns.push(format!(
            "the last drill is {} old, drills are due every {}; hint: run `dr drill --target {}`",
            age_text(now - d.started_at),
            age_text(every),
            i.name
        )),
        Some(d) => good.push(format!(
            "drilled {} ago (RTO {})",
            age_text(now - d.started_at),
            crate::units::millis(d.rto_ms)
        )),
    }

    let encrypted = i.backup.map(|m| m.encryption.is_some());
    if i.encryption_configured && encrypted == Some(false) {
        warns.push("the newest backup is not encrypted, though [encryption] is configured; hint: take a new backup".into());
    }

    // Status records hold each operation's last run: a failure there is still current.
    let last_failure = i
        .runs
        .iter()
        .filter_map(|r| {
            let failed_at = match r.status {
                RunStatus::Failure => r.at,
                RunStatus::Success => return None,
            };
            Some(FailureSummary {
                operation: r.operation.clone(),
                at: failed_at,
                message: r.message.clone(),
            })
        })
        .max_by_key(|f| f.at);
    if let Some(f) = &last_failure {
        let text = format!(
            "{} failed {} ago: {}",
            f.operation,
            age_text(now - f.at),
            first_line(&f.message)
        );
        if f.operation == "backup" {
            fails.push(text);
        } else {
            warns.push(text);
        }
    }

    let status = if !fails.is_empty() {
        Status::Fail
    } else if !warns.is_empty() {
        Status::Warn
    } else {
        Status::Pass
    };
    let summary = fails
        .into_iter()
        .chain(warns)
        .chain(if status == Status::Pass { good } else { vec![] })
        .collect::<Vec<_>>()
        .join("; ");
    TargetStatus {
        target: i.name.to_string(),
        engine: i.engine,
        status,
        summary,
        last_backup,
        last_drill,
        restorable_until: i.restorable_until,
        encrypted,
        last_failure,
    }
}

fn first_line(text: &str) -> &str {
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(160) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}
