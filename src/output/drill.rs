//! `dr drill` as human text.

use comfy_table::Cell;

use super::table::{new_table, steps};
use crate::drill::DrillReport;
use crate::units;

pub fn table(report: &DrillReport) -> String {
    let mut text = steps(&report.steps);
    let mut t = new_table(&["objective", "measured", "target", "met"]);
    let met = |m: Option<bool>| {
        Cell::new(match m {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "not set",
        })
    };
    let ms = |v: Option<u64>| Cell::new(v.map(units::millis).unwrap_or_else(|| "-".into()));
    t.add_row(vec![
        Cell::new("RTO (restore + verify)"),
        Cell::new(units::millis(report.rto_ms)),
        ms(report.rto_objective_ms),
        met(report.rto_met),
    ]);
    t.add_row(vec![
        Cell::new("RPO (age of the backup)"),
        ms(report.rpo_ms),
        ms(report.rpo_objective_ms),
        met(report.rpo_met),
    ]);
    text.push_str(&format!(
        "{t}\ndrill {} ({}): {}\nreport stored as drills/{}/{}.json\n",
        report.id,
        report.mode.as_str(),
        report.verdict,
        report.target,
        report.id
    ));
    text
}
