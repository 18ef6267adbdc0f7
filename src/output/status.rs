//! `dr status` as a human table: one row per target, worst first.

use super::table::{cell, new_table, status_cell, Fit};
use crate::report::Status;
use crate::scorecard::StatusReport;
use crate::units;

pub fn table(report: &StatusReport) -> String {
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
        t.add_row(vec![
            cell(&r.target),
            status_cell(r.status),
            cell(match &r.last_backup {
                Some(b) => format!("{} ago", units::age(report.generated_at - b.finished_at)),
                None => "never".into(),
            }),
            cell(match &r.last_drill {
                Some(d) => format!(
                    "{} ago, {}{}",
                    units::age(report.generated_at - d.started_at),
                    units::millis(d.rto_ms),
                    if d.ok { "" } else { " (failed)" }
                ),
                None => "never".into(),
            }),
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
        if report.targets.is_empty() {
            String::new()
        } else {
            t.render()
        },
        report.targets.len(),
        count(Status::Fail),
        count(Status::Warn),
        count(Status::Pass),
    )
}
