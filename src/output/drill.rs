//! `dr drill` as human text.

use super::table::{cell, new_table, steps, Fit, TableCell};
use crate::drill::DrillReport;
use crate::units;

pub fn table(report: &DrillReport) -> String {
    super::keep(report);
    let mut text = steps(&report.steps).heading("Steps").render();
    let mut t = new_table(&["objective", "measured", "target", "met"])
        .heading("Objectives")
        .fit(Fit::Wrap, &["objective"]);
    let met = |m: Option<bool>, objective: Option<u64>| -> TableCell {
        cell(match (m, objective) {
            (Some(true), _) => "yes",
            (Some(false), _) => "NO",
            (None, Some(_)) => "not measured",
            (None, None) => "not set",
        })
    };
    let ms = |v: Option<u64>| cell(v.map(units::millis).unwrap_or_else(|| "-".into()));
    t.add_row(vec![
        cell("RTO (restore + verify)"),
        cell(units::millis(report.rto_ms)),
        ms(report.rto_objective_ms),
        met(report.rto_met, report.rto_objective_ms),
    ]);
    t.add_row(vec![
        cell(if report.pitr.is_some() {
            "RPO (target to last replayed transaction)"
        } else {
            "RPO (age of the backup)"
        }),
        ms(report.rpo_ms),
        ms(report.rpo_objective_ms),
        met(report.rpo_met, report.rpo_objective_ms),
    ]);
    let predicted = match (report.predicted_rto_ms, report.prediction_error_pct) {
        (Some(p), Some(e)) => format!(
            "predicted RTO (from earlier drills) {}, measured {}: error {e:+}%\n",
            units::millis(p),
            units::millis(report.rto_ms)
        ),
        (Some(p), None) => format!("predicted RTO (from earlier drills) {}\n", units::millis(p)),
        (None, _) => "predicted RTO: not measured (no earlier drill of this kind)\n".into(),
    };
    text.push_str(&format!(
        "{}{predicted}drill {} ({}): {}\nreport stored as drills/{}/{}.json\n",
        t.render(),
        report.id,
        report.mode.as_str(),
        report.verdict,
        crate::config::storage_name(&report.target),
        report.id
    ));
    text
}
