//! `dr check` as a human table.

use super::table::{cell, new_table, or_dash, status_cell, Fit};
use crate::checks::CheckReport;
use crate::report::Status;
use crate::units;

pub fn table(report: &CheckReport) -> String {
    let mut t = new_table(&["check", "target", "status", "critical", "message", "time"])
        .fit(Fit::Wrap, &["message"])
        .fit(Fit::Detail, &["critical"]);
    for c in &report.checks {
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
    format!(
        "{}{}: {} pass, {} warn, {} fail{}\n",
        t.render(),
        if report.ready { "READY" } else { "NOT READY" },
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail),
        if report.strict { " (strict)" } else { "" }
    )
}
