//! `dr validate`, `dr restore` and `dr verify` as human text.

use comfy_table::Cell;

use super::table::{new_table, status_cell, steps};
use crate::restore::verify::VerifyReport;
use crate::restore::{Operation, RestoreReport};
use crate::units;

pub fn table(report: &RestoreReport) -> String {
    let mut text = steps(&report.steps);
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
        text.push_str(&verify_table(v));
    }
    if let Some(id) = &report.safety_backup_id {
        text.push_str(&format!("safety backup of the previous contents: {id}\n"));
    }
    text
}

pub fn verify_table(report: &VerifyReport) -> String {
    let mut t = new_table(&["verification", "status", "message"]);
    for s in &report.steps {
        t.add_row(vec![
            Cell::new(&s.name),
            status_cell(s.status),
            Cell::new(&s.message),
        ]);
    }
    format!(
        "{t}\n{}\n",
        if report.ok {
            "VERIFIED"
        } else {
            "VERIFICATION FAILED"
        }
    )
}
