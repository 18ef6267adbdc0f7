//! `dr validate`, `dr restore` and `dr verify` as human text.

use super::table::{cell, new_table, status_cell, steps, Fit};
use crate::restore::verify::VerifyReport;
use crate::restore::{Operation, RestoreReport};
use crate::units;

pub fn table(report: &RestoreReport) -> String {
    let several = report.verification.is_some();
    let mut steps = steps(&report.steps);
    if several {
        steps = steps.heading("Steps");
    }
    let mut text = steps.render();
    match report.operation {
        Operation::Validate => text.push_str(if report.ok {
            "VALID: a restore of this backup can start\n"
        } else {
            "NOT VALID: see the failed step; nothing was changed\n"
        }),
        Operation::Restore if report.ok => {
            let objective = match (report.rto_objective_ms, report.rto_met) {
                (Some(r), Some(true)) => format!("{}, met", units::millis(r)),
                (Some(r), _) => format!("{}, MISSED", units::millis(r)),
                _ => "not set".into(),
            };
            text.push_str(&format!(
                "\nbackup {} restored into {} in {} (RTO objective: {objective})\n",
                report.backup_id.as_deref().unwrap_or("-"),
                report.destination,
                units::millis(report.duration_ms),
            ));
        }
        Operation::Restore => text.push_str(&format!(
            "\nRESTORE NOT COMPLETED into {} (see the error below)\n",
            report.destination
        )),
    }
    if let Some(v) = &report.verification {
        text.push('\n');
        text.push_str(&verification_table(v).heading("Verification").render());
        text.push_str(&verify_verdict(v));
    }
    if let Some(id) = &report.safety_backup_id {
        text.push_str(&format!("safety backup of the previous contents: {id}\n"));
    }
    text
}

/// `dr verify`: the table and the verdict.
pub fn verify_table(report: &VerifyReport) -> String {
    verification_table(report).render() + &verify_verdict(report)
}

fn verification_table(report: &VerifyReport) -> super::table::ReportTable {
    let mut t = new_table(&["verification", "status", "message"]).fit(Fit::Wrap, &["message"]);
    for s in &report.steps {
        t.add_row(vec![cell(&s.name), status_cell(s.status), cell(&s.message)]);
    }
    t
}

fn verify_verdict(report: &VerifyReport) -> String {
    if report.ok {
        "VERIFIED\n".into()
    } else {
        "VERIFICATION FAILED\n".into()
    }
}
