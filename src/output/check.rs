//! `dr check` as a human table.

use super::table::{cell, new_table, or_dash, status_cell, Fit};
use crate::checks::CheckReport;
use crate::report::Status;
use crate::units;

/// The check table; with `problems_only`, only the rows that warn or fail, failures first
/// (the summary still counts every row).
pub fn table(report: &CheckReport, problems_only: bool) -> String {
    let mut t = new_table(&["check", "target", "status", "critical", "message", "time"])
        .fit(Fit::Wrap, &["message"])
        .fit(Fit::Detail, &["critical"]);
    let mut shown: Vec<_> = report
        .checks
        .iter()
        .filter(|c| !problems_only || c.status != Status::Pass)
        .collect();
    if problems_only {
        shown.sort_by_key(|c| c.status != Status::Fail);
    }
    for c in &shown {
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
        if shown.is_empty() {
            String::new()
        } else {
            t.render()
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
