//! `dr check` as a human table.

use comfy_table::Cell;

use super::table::{new_table, or_dash, status_cell};
use crate::checks::CheckReport;
use crate::report::Status;
use crate::units;

pub fn table(report: &CheckReport) -> String {
    let mut t = new_table(&["check", "target", "status", "critical", "message", "time"]);
    for c in &report.checks {
        t.add_row(vec![
            Cell::new(&c.name),
            or_dash(c.target.as_deref()),
            status_cell(c.status),
            Cell::new(if c.critical { "yes" } else { "no" }),
            Cell::new(&c.message),
            Cell::new(units::millis(c.duration_ms)),
        ]);
    }
    let count = |s| report.checks.iter().filter(|c| c.status == s).count();
    format!(
        "{t}\n{}: {} pass, {} warn, {} fail{}\n",
        if report.ready { "READY" } else { "NOT READY" },
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail),
        if report.strict { " (strict)" } else { "" }
    )
}
