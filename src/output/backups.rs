//! `dr backup`, `dr list` and `dr prune` as human tables, and their JSON documents.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::compact::{compact_width, CompactRow, CompactTable, Fold};
use super::table::{cell, new_table, or_dash, Fit, Layout};
use crate::backup::catalog::DamagedManifest;
use crate::backup::manifest::BackupManifest;
use crate::prune::{Action, PruneReport};
use crate::report::FORMAT_VERSION;
use crate::units;

pub use crate::operations::backup::{BackupFailure, BackupReport};

/// `dr list --format json`.
#[derive(Debug, Serialize)]
pub struct ListReport {
    pub format_version: u32,
    pub ok: bool,
    /// Complete backups, newest first.
    pub backups: Vec<BackupManifest>,
    /// Manifests that exist but cannot be read: never listed as backups.
    pub damaged: Vec<DamagedManifest>,
    /// Point-in-time restorable windows, per target and cluster with a physical base
    /// backup (absent without one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<crate::restore::window::RestorableWindow>,
    /// Named restore points (`dr mark`), oldest first (absent without one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restore_points: Vec<crate::wal::marks::RestorePoint>,
    /// Ids of backups dated further in the future than clocks may disagree (a wrong
    /// clock, a copy): listed first, yet `latest` skips them (absent without one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub future_dated: Vec<String>,
    /// Backups kept outside every retention rule (`dr pin`), absent without one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pins: Vec<crate::backup::pins::Pin>,
}

impl ListReport {
    pub fn new(backups: Vec<BackupManifest>, damaged: Vec<DamagedManifest>) -> Self {
        let now = Utc::now();
        let future_dated = backups
            .iter()
            .filter(|m| crate::backup::catalog::is_future_dated(m, now))
            .map(|m| m.id.clone())
            .collect();
        ListReport {
            format_version: FORMAT_VERSION,
            ok: true,
            backups,
            damaged,
            windows: Vec::new(),
            restore_points: Vec::new(),
            future_dated,
            pins: Vec::new(),
        }
    }
}

/// How old a backup is; one dated after `now` shows how far ahead, with a minus sign
/// and a flag, never as "0 ms" (which would make it look like the freshest).
fn age_cell(created_at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    if created_at <= now {
        return units::age(now - created_at);
    }
    format!("-{} (FUTURE-DATED)", units::age(created_at - now))
}

pub fn backup_table(report: &BackupReport) -> String {
    super::keep(report);
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
    ])
    .fit(Fit::Detail, &["raw", "tables", "rows"]);
    for m in &report.backups {
        t.add_row(vec![
            cell(&m.id),
            cell(&m.target),
            cell(units::bytes(m.size_bytes)),
            cell(units::bytes(m.objects.iter().map(|o| o.raw_bytes).sum())),
            cell(match &m.redis {
                Some(d) => format!("{} db", d.databases.len()),
                None => units::count(m.tables.len() as u64),
            }),
            cell(match &m.redis {
                Some(d) => format!("{} keys ({})", units::count(d.keys), d.method.as_str()),
                None => units::count(m.tables.iter().map(|t| t.rows).sum::<i64>()),
            }),
            cell(units::millis(m.duration_ms)),
        ]);
    }
    t.render()
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
    ])
    .fit(Fit::Detail, &["raw"]);
    for m in &report.backups {
        let Some(p) = &m.physical else { continue };
        t.add_row(vec![
            cell(&m.id),
            cell(&m.target),
            cell(units::bytes(m.size_bytes)),
            cell(units::bytes(m.objects.iter().map(|o| o.raw_bytes).sum())),
            cell(format!("{} ({})", p.start_lsn, p.start_wal)),
            cell(&p.stop_lsn),
            cell(units::millis(m.duration_ms)),
        ]);
    }
    t.render()
}

pub fn list_table(report: &ListReport, storage: &str, now: DateTime<Utc>) -> String {
    list_table_for(report, storage, now, Layout::stdout())
}

/// The backups, then pins, notes and restorable windows fitted to the width. The method
/// column is never left out: dumps and base backups must not look alike.
pub fn list_table_for(
    report: &ListReport,
    storage: &str,
    now: DateTime<Utc>,
    layout: Layout,
) -> String {
    if report.backups.is_empty() {
        return format!("no complete backups in {storage}; run `dr backup` to take one\n");
    }
    let mut t = new_table(&[
        "backup id",
        "target",
        "database",
        "kind",
        "method",
        "created (UTC)",
        "age",
        "size",
        "tables",
        "encrypted for",
        "sha256",
    ])
    .fit(
        Fit::Detail,
        &["database", "kind", "tables", "encrypted for", "sha256"],
    );
    let mut narrow = CompactTable {
        header: Some(
            [
                "backup id",
                "target",
                "method",
                "created (UTC)",
                "age",
                "size",
                "tables",
            ]
            .map(String::from)
            .to_vec(),
        ),
        optional: vec![3, 6],
        rows: Vec::new(),
    };
    for m in &report.backups {
        let method = match &m.redis {
            Some(d) => d.method.as_str(),
            // An incremental needs its chain: it must not look like a full base backup.
            None if m.physical.as_ref().is_some_and(|p| p.parent_id.is_some()) => "incremental",
            None => m.method.as_str(),
        };
        let contents = match (&m.redis, &m.physical) {
            (Some(d), _) => format!("{} keys ({})", units::count(d.keys), d.method.as_str()),
            (None, Some(_)) => "-".to_string(),
            (None, None) => units::count(m.tables.len() as u64),
        };
        narrow.rows.push(CompactRow {
            values: vec![
                cell(&m.id),
                cell(&m.target),
                cell(method),
                cell(units::time(m.created_at)),
                cell(age_cell(m.created_at, now)),
                cell(units::bytes(m.size_bytes)),
                cell(contents.clone()),
            ],
            text: String::new(),
            fold: Fold::Wrap,
        });
        t.add_row(vec![
            cell(&m.id),
            cell(&m.target),
            or_dash((!m.database.is_empty()).then_some(m.database.as_str())),
            cell(m.kind.as_str()),
            cell(method),
            cell(units::time(m.created_at)),
            cell(age_cell(m.created_at, now)),
            cell(units::bytes(m.size_bytes)),
            cell(contents),
            cell(if m.recipients.is_empty() {
                "-".to_string()
            } else {
                m.recipients
                    .iter()
                    .map(|r| short_key(r))
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
            cell(&m.sha256[..12.min(m.sha256.len())]),
        ]);
    }
    let future: Vec<&BackupManifest> = report
        .backups
        .iter()
        .filter(|m| crate::backup::catalog::is_future_dated(m, now))
        .collect();
    let mut out = match compact_width(layout) {
        Some(width) => narrow.render(width, layout.styled),
        None => t.render_for(layout),
    };
    let mut notes = String::new();
    for m in &report.backups {
        let Some(p) = m.physical.as_ref().filter(|p| p.parent_id.is_some()) else {
            continue;
        };
        notes.push_str(&format!(
            "incremental: {} builds on {} (chain {} → {}); a restore needs every link\n",
            m.id,
            p.parent_id.as_deref().unwrap_or("-"),
            p.chain.join(" → "),
            m.id
        ));
    }
    for p in &report.pins {
        notes.push_str(&format!(
            "pinned: {} of {} since {}{}: prune keeps it outside every rule (`dr unpin {} --target {}`)\n",
            p.backup_id,
            p.target,
            units::time(p.pinned_at),
            p.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
            p.backup_id,
            p.target
        ));
    }
    for m in future {
        notes.push_str(&format!(
            "note: backup {} is dated {} in the future (a wrong clock or a copied manifest); `--backup-id latest` skips it\n",
            m.id,
            units::age(m.created_at - now)
        ));
    }
    notes.push_str(&super::pitr::windows_text(
        &report.windows,
        &report.restore_points,
    ));
    out.push_str(&super::compact::fit_lines(&notes, layout.width));
    out
}

/// `age1abcdef…uvwxyz`: enough of a public key to tell keys apart in a table.
fn short_key(key: &str) -> String {
    if key.len() <= 16 {
        return key.to_string();
    }
    format!("{}…{}", &key[..10], &key[key.len() - 6..])
}

pub fn prune_table(report: &PruneReport) -> String {
    super::keep(report);
    let removed_word = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut t = new_table(&["target", "backup id", "kind", "action", "why"])
        .fit(Fit::Wrap, &["why"])
        .fit(Fit::Detail, &["kind"]);
    for e in &report.backups {
        t.add_row(vec![
            cell(&e.target),
            cell(&e.backup_id),
            cell(e.kind.as_str()),
            cell(match e.action {
                Action::Keep => "keep",
                Action::Remove => removed_word,
            }),
            cell(&e.reason),
        ]);
    }
    let removed = report
        .backups
        .iter()
        .filter(|e| e.action == Action::Remove)
        .count();
    format!(
        "{}{} kept, {removed} {removed_word}{}\n",
        t.render(),
        report.backups.len() - removed,
        if report.dry_run { " (dry run)" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_from_the_future_is_not_zero_ms_old() {
        let now = Utc::now();
        let shown = age_cell(now + chrono::Duration::hours(3), now);
        assert!(
            shown.starts_with("-3") && shown.contains("FUTURE"),
            "{shown}"
        );
        assert!(!age_cell(now - chrono::Duration::hours(3), now).contains('-'));
    }
}
