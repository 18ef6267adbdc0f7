//! `dr status` as a human table: one row per target, worst first.

use super::compact::{compact_width, CompactRow, CompactTable, Fold};
use super::table::{cell, new_table, status_cell, Fit, Layout};
use crate::report::Status;
use crate::scorecard::StatusReport;
use crate::units;

pub fn table(report: &StatusReport) -> String {
    table_for(report, Layout::stdout())
}

/// Wide: a bordered row per target. Compact (a narrow terminal): the target, its status
/// and ages on one line, the summary beside them or below.
pub fn table_for(report: &StatusReport, layout: Layout) -> String {
    let mut narrow = CompactTable::default();
    let mut t = new_table(&[
        "target",
        "status",
        "last backup",
        "last drill",
        "restorable until",
        "encrypted",
        "summary",
    ])
    .fit(Fit::Wrap, &["summary"])
    .fit(Fit::Detail, &["restorable until", "encrypted"]);
    for r in &report.targets {
        let backup = match &r.last_backup {
            Some(b) => format!("{} ago", units::age(report.generated_at - b.finished_at)),
            None => "never".into(),
        };
        let drill = match &r.last_drill {
            Some(d) => format!(
                "{} ago, {}{}",
                units::age(report.generated_at - d.started_at),
                units::millis(d.rto_ms),
                if d.ok { "" } else { " (failed)" }
            ),
            None => "never".into(),
        };
        narrow.rows.push(CompactRow {
            values: vec![
                status_cell(r.status),
                cell(&r.target),
                cell(format!("backup {backup}")),
                cell(format!("drill {drill}")),
            ],
            text: r.summary.clone(),
            fold: Fold::Wrap,
        });
        t.add_row(vec![
            cell(&r.target),
            status_cell(r.status),
            cell(backup),
            cell(drill),
            cell(match r.restorable_until {
                Some(at) => at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
                None => "-".into(),
            }),
            cell(match r.encrypted {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            }),
            cell(&r.summary),
        ]);
    }
    let count = |s| report.targets.iter().filter(|r| r.status == s).count();
    let objectives = match report.rpo_s {
        Some(rpo) => format!(
            " (RPO {})",
            units::age(chrono::Duration::seconds(rpo as i64))
        ),
        None => " (no RPO set)".into(),
    };
    format!(
        "{}{} target(s){objectives}: {} fail, {} warn, {} pass\n",
        match (report.targets.is_empty(), compact_width(layout)) {
            (true, _) => String::new(),
            (false, Some(width)) => narrow.render(width, layout.styled),
            (false, None) => t.render_for(layout),
        },
        report.targets.len(),
        count(Status::Fail),
        count(Status::Warn),
        count(Status::Pass),
    )
}
