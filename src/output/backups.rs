//! `dr backup`, `dr list` and `dr prune` as human tables, and their JSON documents.

use chrono::{DateTime, Utc};
use comfy_table::Cell;
use serde::Serialize;

use super::table::new_table;
use crate::backup::catalog::DamagedManifest;
use crate::backup::manifest::BackupManifest;
use crate::prune::{Action, PruneReport};
use crate::report::FORMAT_VERSION;
use crate::units;

/// A target whose backup failed.
#[derive(Debug, Serialize)]
pub struct BackupFailure {
    pub target: String,
    pub error: String,
}

/// `dr backup --format json`.
#[derive(Debug, Serialize)]
pub struct BackupReport {
    pub format_version: u32,
    pub ok: bool,
    pub backups: Vec<BackupManifest>,
    pub failures: Vec<BackupFailure>,
}

impl BackupReport {
    pub fn new(backups: Vec<BackupManifest>, failures: Vec<BackupFailure>) -> Self {
        BackupReport {
            format_version: FORMAT_VERSION,
            ok: failures.is_empty(),
            backups,
            failures,
        }
    }
}

/// `dr list --format json`.
#[derive(Debug, Serialize)]
pub struct ListReport {
    pub format_version: u32,
    pub ok: bool,
    /// Complete backups, newest first.
    pub backups: Vec<BackupManifest>,
    /// Manifests that exist but cannot be read: never listed as backups.
    pub damaged: Vec<DamagedManifest>,
}

impl ListReport {
    pub fn new(backups: Vec<BackupManifest>, damaged: Vec<DamagedManifest>) -> Self {
        ListReport {
            format_version: FORMAT_VERSION,
            ok: true,
            backups,
            damaged,
        }
    }
}

pub fn backup_table(report: &BackupReport) -> String {
    if report.backups.is_empty() {
        return String::new();
    }
    if report.backups.iter().all(|m| m.physical.is_some()) {
        return physical_backup_table(report);
    }
    let mut t = new_table(&[
        "backup id",
        "target",
        "size",
        "raw",
        "tables",
        "rows",
        "duration",
    ]);
    for m in &report.backups {
        t.add_row(vec![
            Cell::new(&m.id),
            Cell::new(&m.target),
            Cell::new(units::bytes(m.size_bytes)),
            Cell::new(units::bytes(m.objects.iter().map(|o| o.raw_bytes).sum())),
            Cell::new(units::count(m.tables.len() as u64)),
            Cell::new(units::count(m.tables.iter().map(|t| t.rows).sum::<i64>())),
            Cell::new(units::millis(m.duration_ms)),
        ]);
    }
    format!("{t}\n")
}

/// `dr backup --physical`: where each base backup's WAL starts and where it is consistent.
fn physical_backup_table(report: &BackupReport) -> String {
    let mut t = new_table(&[
        "backup id",
        "target",
        "size",
        "raw",
        "WAL from",
        "consistent at",
        "duration",
    ]);
    for m in &report.backups {
        let Some(p) = &m.physical else { continue };
        t.add_row(vec![
            Cell::new(&m.id),
            Cell::new(&m.target),
            Cell::new(units::bytes(m.size_bytes)),
            Cell::new(units::bytes(m.objects.iter().map(|o| o.raw_bytes).sum())),
            Cell::new(format!("{} ({})", p.start_lsn, p.start_wal)),
            Cell::new(&p.stop_lsn),
            Cell::new(units::millis(m.duration_ms)),
        ]);
    }
    format!("{t}\n")
}

pub fn list_table(report: &ListReport, storage: &str, now: DateTime<Utc>) -> String {
    if report.backups.is_empty() {
        return format!("no complete backups in {storage}; run `dr backup` to take one\n");
    }
    let mut t = new_table(&[
        "backup id",
        "target",
        "kind",
        "method",
        "created (UTC)",
        "age",
        "size",
        "tables",
        "sha256",
    ]);
    for m in &report.backups {
        t.add_row(vec![
            Cell::new(&m.id),
            Cell::new(&m.target),
            Cell::new(m.kind.as_str()),
            Cell::new(m.method.as_str()),
            Cell::new(units::time(m.created_at)),
            Cell::new(units::age(now - m.created_at)),
            Cell::new(units::bytes(m.size_bytes)),
            Cell::new(match m.physical {
                Some(_) => "-".to_string(),
                None => units::count(m.tables.len() as u64),
            }),
            Cell::new(&m.sha256[..12.min(m.sha256.len())]),
        ]);
    }
    format!("{t}\n")
}

pub fn prune_table(report: &PruneReport) -> String {
    let removed_word = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut t = new_table(&["target", "backup id", "kind", "action", "why"]);
    for e in &report.backups {
        t.add_row(vec![
            Cell::new(&e.target),
            Cell::new(&e.backup_id),
            Cell::new(e.kind.as_str()),
            Cell::new(match e.action {
                Action::Keep => "keep",
                Action::Remove => removed_word,
            }),
            Cell::new(&e.reason),
        ]);
    }
    let removed = report
        .backups
        .iter()
        .filter(|e| e.action == Action::Remove)
        .count();
    format!(
        "{t}\n{} kept, {removed} {removed_word}{}\n",
        report.backups.len() - removed,
        if report.dry_run { " (dry run)" } else { "" }
    )
}
