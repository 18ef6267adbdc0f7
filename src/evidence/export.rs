//! `dr evidence export`: the auditor's package, as one JSON document or one HTML page
//! (`html.rs`) built from the same [`Export`], so that both always say the same.

use std::collections::BTreeMap;

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::chain::{self, ChainReport, Trust};
use super::log::Record;
use crate::storage::Storage;

#[derive(Debug, Clone, Serialize)]
pub struct Export {
    pub format_version: u32,
    /// The chain verified.
    pub ok: bool,
    pub generated_at: DateTime<Utc>,
    pub since: DateTime<Utc>,
    pub storage: String,
    pub public_key: Option<String>,
    pub rto_objective_ms: Option<u64>,
    pub rpo_objective_ms: Option<u64>,
    pub chain: ChainReport,
    /// Records in the period.
    pub records: u64,
    pub targets: Vec<TargetEvidence>,
    pub failures: Vec<FailureEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetEvidence {
    pub target: String,
    pub drills: Vec<DrillPoint>,
    pub backups: Vec<BackupPoint>,
    /// Age of the newest backup, at each recorded run that concerned the target.
    pub backup_age: Vec<Point>,
    /// From the oldest backup still kept to the moment, after each backup and prune.
    pub restorable_window: Vec<Point>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillPoint {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub rto_ms: Option<u64>,
    pub rpo_ms: Option<u64>,
    pub rto_objective_ms: Option<u64>,
    pub rpo_objective_ms: Option<u64>,
    pub predicted_rto_ms: Option<u64>,
    pub prediction_error_pct: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupPoint {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub backup_id: Option<String>,
    pub size_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub at: DateTime<Utc>,
    pub ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailureEntry {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub command: String,
    pub targets: Vec<String>,
    pub summary: String,
    /// The next successful run of the same command for the same targets: how it ended.
    pub resolved_by_seq: Option<u64>,
    pub resolved_at: Option<DateTime<Utc>>,
}

pub struct ExportRequest<'a> {
    pub storage: &'a dyn Storage,
    pub trust: &'a Trust,
    pub since: DateTime<Utc>,
    pub rto_objective_ms: Option<u64>,
    pub rpo_objective_ms: Option<u64>,
}

fn parse_at(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn fig(r: &Record, name: &str) -> Option<u64> {
    r.figures.get(name).and_then(|v| u64::try_from(*v).ok())
}

/// Verifies the whole chain and gathers the period's evidence from its records and the
/// reports they name.
pub async fn build(req: ExportRequest<'_>) -> Result<Export> {
    let (chain, records) = chain::verify(req.storage, req.trust, None).await?;
    let now = Utc::now();
    let mut targets: BTreeMap<String, TargetEvidence> = BTreeMap::new();
    // Backups known to be kept, per target: id -> created_at.
    let mut kept: BTreeMap<String, BTreeMap<String, DateTime<Utc>>> = BTreeMap::new();
    let mut failures: Vec<FailureEntry> = Vec::new();
    let mut in_period = 0;
    for r in &records {
        let Some(at) = parse_at(&r.at) else { continue };
        let period = at >= req.since;
        in_period += u64::from(period);
        let mut touched = r.targets.clone();
        for b in &r.backups {
            let kept_here = kept.entry(b.target.clone()).or_default();
            if b.removed {
                kept_here.remove(&b.id);
                continue;
            }
            let created = b.created_at.as_deref().and_then(parse_at).unwrap_or(at);
            kept_here.insert(b.id.clone(), created);
            if period {
                entry(&mut targets, &b.target).backups.push(BackupPoint {
                    seq: r.seq,
                    at,
                    ok: true,
                    backup_id: Some(b.id.clone()),
                    size_bytes: b.size_bytes,
                });
            }
        }
        match r.command.as_str() {
            "backup" if !r.ok && period => {
                let made: Vec<&str> = r.backups.iter().map(|b| b.target.as_str()).collect();
                for t in r.targets.iter().filter(|t| !made.contains(&t.as_str())) {
                    entry(&mut targets, t).backups.push(BackupPoint {
                        seq: r.seq,
                        at,
                        ok: false,
                        backup_id: None,
                        size_bytes: None,
                    });
                }
            }
            "drill" if period => {
                for t in &r.targets {
                    entry(&mut targets, t).drills.push(DrillPoint {
                        seq: r.seq,
                        at,
                        ok: r.ok,
                        rto_ms: fig(r, "rto_ms").filter(|_| r.ok),
                        rpo_ms: fig(r, "rpo_ms"),
                        rto_objective_ms: fig(r, "rto_objective_ms"),
                        rpo_objective_ms: fig(r, "rpo_objective_ms"),
                        predicted_rto_ms: fig(r, "predicted_rto_ms"),
                        prediction_error_pct: r.figures.get("prediction_error_pct").copied(),
                    });
                }
            }
            _ => {}
        }
        touched.sort();
        touched.dedup();
        if period {
            for t in &touched {
                let Some(k) = kept.get(t).filter(|k| !k.is_empty()) else {
                    continue;
                };
                let newest = k.values().max().copied().unwrap_or(at);
                let oldest = k.values().min().copied().unwrap_or(at);
                let e = entry(&mut targets, t);
                e.backup_age.push(Point {
                    at,
                    ms: ms_between(newest, at),
                });
                if matches!(r.command.as_str(), "backup" | "prune") {
                    e.restorable_window.push(Point {
                        at,
                        ms: ms_between(oldest, at),
                    });
                }
            }
        }
        if !r.ok {
            if period {
                failures.push(FailureEntry {
                    seq: r.seq,
                    at,
                    command: r.command.clone(),
                    targets: r.targets.clone(),
                    summary: r.summary.clone(),
                    resolved_by_seq: None,
                    resolved_at: None,
                });
            }
        } else {
            for f in failures.iter_mut().filter(|f| {
                f.resolved_by_seq.is_none() && f.command == r.command && f.targets == r.targets
            }) {
                f.resolved_by_seq = Some(r.seq);
                f.resolved_at = Some(at);
            }
        }
    }
    Ok(Export {
        format_version: crate::report::FORMAT_VERSION,
        ok: chain.ok,
        generated_at: now,
        since: req.since,
        storage: req.storage.describe(),
        public_key: chain.public_key.clone(),
        rto_objective_ms: req.rto_objective_ms,
        rpo_objective_ms: req.rpo_objective_ms,
        chain,
        records: in_period,
        targets: targets.into_values().collect(),
        failures,
    })
}

fn entry<'a>(targets: &'a mut BTreeMap<String, TargetEvidence>, t: &str) -> &'a mut TargetEvidence {
    targets
        .entry(t.to_string())
        .or_insert_with(|| TargetEvidence {
            target: t.to_string(),
            drills: Vec::new(),
            backups: Vec::new(),
            backup_age: Vec::new(),
            restorable_window: Vec::new(),
        })
}

fn ms_between(from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    (to - from).num_milliseconds().max(0) as u64
}
