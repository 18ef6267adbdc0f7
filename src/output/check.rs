//! `dr check` as a human table.

use super::compact::{compact_width, CompactRow, CompactTable, Fold};
use super::table::{cell, new_table, or_dash, status_cell, Fit, Layout};
use crate::checks::CheckReport;
use crate::report::Status;
use crate::units;

/// The check table; with `problems_only`, only the rows that warn or fail, failures first
/// (the summary still counts every row).
pub fn table(report: &CheckReport, problems_only: bool) -> String {
    table_for(report, problems_only, Layout::stdout())
}

pub fn table_for(report: &CheckReport, problems_only: bool, layout: Layout) -> String {
    let mut t = new_table(&["check", "target", "status", "critical", "message", "time"])
        .fit(Fit::Wrap, &["message"])
        .fit(Fit::Detail, &["critical"]);
    let mut shown: Vec<_> = report
        .checks
        .iter()
        .filter(|c| !problems_only || c.status != Status::Pass)
        .collect();
    let compact = compact_width(layout);
    if problems_only || compact.is_some() {
        // Problems first: failures, then warnings, then what passed.
        shown.sort_by_key(|c| match c.status {
            Status::Fail => 0,
            Status::Warn => 1,
            Status::Pass => 2,
        });
    }
    let mut narrow = CompactTable::default();
    for c in &shown {
        narrow.rows.push(CompactRow {
            values: vec![
                status_cell(c.status),
                cell(&c.name),
                or_dash(c.target.as_deref()),
            ],
            text: c.message.clone(),
            // What passed is one line; what warns or fails says all it has to say.
            fold: if c.status == Status::Pass {
                Fold::Cut
            } else {
                Fold::Wrap
            },
        });
        t.add_row(vec![
            cell(&c.name),
            or_dash(c.target.as_deref()),
            status_cell(c.status),
            cell(if c.critical { "yes" } else { "no" }),
            cell(&c.message),
            cell(units::millis(c.duration_ms)),
        ]);
    }
    let count = |s| report.checks.iter().filter(|c| c.status == s).count();
    let hidden = report.checks.len() - shown.len();
    format!(
        "{}{}: {} pass, {} warn, {} fail{}{}\n",
        match (shown.is_empty(), compact) {
            (true, _) => String::new(),
            (false, Some(width)) => narrow.render(width, layout.styled),
            (false, None) => t.render_for(layout),
        },
        if report.ready { "READY" } else { "NOT READY" },
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail),
        if report.strict { " (strict)" } else { "" },
        if hidden > 0 {
            format!(" ({hidden} passing not shown: --problems-only)")
        } else {
            String::new()
        }
    )
}
