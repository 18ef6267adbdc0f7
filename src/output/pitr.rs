//! `dr restore --pitr`, `dr mark` and the restorable window of `dr list` as human text.

use serde::Serialize;

use super::table::steps;
use crate::report::FORMAT_VERSION;
use crate::restore::pitr::PitrReport;
use crate::restore::pitr_tables::TablesReport;
use crate::restore::window::{time_text, RestorableWindow};
use crate::units;
use crate::wal::marks::RestorePoint;

/// `dr restore --pitr --only-table ...`: what was copied, and how to bring rows back.
pub fn tables_text(report: &TablesReport) -> String {
    super::keep(report);
    let mut text = steps(&report.steps).render();
    let target = match &report.recovery_target.value {
        Some(v) => format!("{} {v}", report.recovery_target.kind),
        None => report.recovery_target.kind.to_string(),
    };
    if !report.ok {
        text.push_str(&format!(
            "FAILED: tables of {} as of {target} were not copied into {} ({}); production was not touched\n",
            report.target,
            report.destination,
            units::millis(report.duration_ms)
        ));
        return text;
    }
    text.push_str(&format!(
        "COPIED: {} as of {target} into {} ({}); production was not touched\n",
        report
            .tables
            .iter()
            .map(|t| format!("{} ({} rows)", t.table, units::count(t.rows)))
            .collect::<Vec<_>>()
            .join(", "),
        report.destination,
        units::millis(report.duration_ms)
    ));
    text.push_str(
        "compare with production, then copy back what is missing, e.g. with postgres_fdw or\n  psql -c \"\\copy (SELECT * FROM t WHERE id IN (...)) TO 'rows.csv' CSV\" on the copy and\n  \\copy t FROM 'rows.csv' CSV on production (see `dr runbook show accidental-deletion`)\n",
    );
    text
}

pub fn table(report: &PitrReport) -> String {
    super::keep(report);
    let mut text = steps(&report.steps).render();
    let target = match &report.recovery_target.value {
        Some(v) => format!("{} {v}", report.recovery_target.kind),
        None => report.recovery_target.kind.to_string(),
    };
    let backup = report.backup_id.as_deref().unwrap_or("-");
    if !report.ok {
        text.push_str(&format!(
            "FAILED: point-in-time restore of {} to {target} into {} ({})\n",
            report.target,
            report.pgdata,
            units::millis(report.duration_ms)
        ));
        return text;
    }
    if report.started {
        text.push_str(&format!(
            "RESTORED: backup {backup} rolled forward to {target}, running on {} ({})\n",
            report.pgdata,
            units::millis(report.duration_ms)
        ));
        match report.last_transaction_at {
            Some(t) => text.push_str(&format!(
                "last replayed transaction: {}{}\n",
                time_text(t),
                report
                    .rpo_ms
                    .map(|r| format!(" (achieved RPO {})", units::millis(r)))
                    .unwrap_or_default()
            )),
            None => text.push_str("last replayed transaction: none in the replayed WAL\n"),
        }
        if let Some(tli) = report.timeline {
            text.push_str(&format!(
                "the server was promoted and runs on timeline {tli}\n"
            ));
        }
    } else {
        text.push_str(&format!(
            "READY: backup {backup} unpacked into {} with recovery to {target} ({})\n",
            report.pgdata,
            units::millis(report.duration_ms)
        ));
        if let Some(c) = &report.start_command {
            text.push_str(&format!("start it with:\n  {c}\n"));
        }
    }
    text
}

/// `dr mark --format json`.
#[derive(Debug, Serialize)]
pub struct MarkReport {
    pub format_version: u32,
    pub ok: bool,
    pub restore_point: RestorePoint,
    /// The segment holding the restore point was closed (`pg_switch_wal()`), so it is
    /// archived within seconds.
    pub wal_switched: bool,
}

impl MarkReport {
    pub fn new(restore_point: RestorePoint, wal_switched: bool) -> Self {
        MarkReport {
            format_version: FORMAT_VERSION,
            ok: true,
            restore_point,
            wal_switched,
        }
    }
}

pub fn mark_table(report: &MarkReport) -> String {
    let p = &report.restore_point;
    let mut text = format!(
        "restore point {:?} of {} made at {} ({}, WAL {}, timeline {})\n",
        p.name,
        p.target,
        time_text(p.created_at),
        p.lsn,
        p.wal,
        p.timeline
    );
    text.push_str(if report.wal_switched {
        "its WAL segment was closed and is being archived\n"
    } else {
        "its WAL segment is archived when it fills or at archive_timeout\n"
    });
    text.push_str(&format!(
        "restore to it with: dr restore --target {} --pitr --to-name {} --pgdata DIR --start\n",
        p.target, p.name
    ));
    text
}

/// The lines `dr list` prints under the backups: each target's restorable window.
pub fn windows_text(windows: &[RestorableWindow], points: &[RestorePoint]) -> String {
    let mut text = String::new();
    for w in windows {
        text.push_str(&format!(
            "\npoint-in-time restorable window of {} (system {}, timeline {}):\n",
            w.target, w.system_identifier, w.timeline
        ));
        if let Some(problem) = &w.problem {
            text.push_str(&format!("  UNKNOWN: {problem}\n"));
        } else if w.spans.is_empty() {
            text.push_str("  none: no base backup can be made consistent from the archive\n");
        }
        for s in &w.spans {
            text.push_str(&format!(
                "  {} → {}   (from backup {} at {}, WAL archived up to {})\n",
                time_text(s.from_time),
                time_text(s.to_time),
                s.from_backup,
                s.from_lsn,
                s.to_wal
            ));
        }
        if w.timelines.len() > 1 {
            text.push_str(
                "  timelines (restore follows the live server's; --timeline N chooses):\n",
            );
            for t in &w.timelines {
                let fork = match (t.parent, &t.forked_at) {
                    (Some(p), Some(at)) => format!("forked from {p} at {at}"),
                    _ => "the first".to_string(),
                };
                text.push_str(&format!(
                    "    {}: {fork}, archived up to {}\n",
                    t.timeline,
                    t.last_wal.as_deref().unwrap_or("(no segment yet)")
                ));
            }
        }
        for g in &w.gaps {
            text.push_str(&format!(
                "  GAP: the archive lacks {g}; no point after it is reachable from an older backup\n"
            ));
        }
        for b in &w.unusable_backups {
            text.push_str(&format!(
                "  backup {b} cannot be rolled forward: the archive lacks WAL it needs\n"
            ));
        }
        let own: Vec<&RestorePoint> = points
            .iter()
            .filter(|p| p.target == w.target && p.system_identifier == w.system_identifier)
            .collect();
        if !own.is_empty() {
            text.push_str("  restore points (--to-name):\n");
            for p in own {
                text.push_str(&format!(
                    "    {}  {}  {}\n",
                    p.name,
                    time_text(p.created_at),
                    p.lsn
                ));
            }
        }
    }
    text
}
