//! Redis data reports as human text: restore (and validate), verify.

use comfy_table::Cell;

use super::table::{new_table, status_cell, steps};
use crate::redis_backup::restore::RedisRestoreReport;
use crate::redis_backup::verify::RedisVerifyReport;
use crate::restore::Operation;
use crate::units;

pub fn verify_table(report: &RedisVerifyReport) -> String {
    let mut t = new_table(&["database", "in backup", "expired since", "found", "status"]);
    for d in &report.databases {
        t.add_row(vec![
            Cell::new(format!("db{}", d.db)),
            Cell::new(units::count(d.expected)),
            Cell::new(units::count(d.expired_since)),
            Cell::new(units::count(d.found)),
            status_cell(d.status),
        ]);
    }
    let mut items = new_table(&["verification", "status", "message"]);
    for s in &report.steps {
        items.add_row(vec![
            Cell::new(&s.name),
            status_cell(s.status),
            Cell::new(&s.message),
        ]);
    }
    format!(
        "{t}\n{items}\n{}\n",
        if report.ok {
            "VERIFIED"
        } else {
            "VERIFICATION FAILED"
        }
    )
}

pub fn restore_table(report: &RedisRestoreReport) -> String {
    let mut text = steps(&report.steps);
    let backup = report.backup_id.as_deref().unwrap_or("-");
    if let Some(file) = &report.rdb_file {
        if report.ok {
            text.push_str(&format!(
                "\nbackup {backup} written to {file}; nothing else was changed. To load it into a Redis server:\n"
            ));
            for (i, step) in report.next_steps.iter().enumerate() {
                text.push_str(&format!("  {}. {step}\n", i + 1));
            }
        } else {
            text.push_str(&format!(
                "\nRDB FILE NOT WRITTEN to {file} (see the error below)\n"
            ));
        }
        return text;
    }
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
                "\nbackup {backup} restored into {} in {} (RTO objective: {objective})\n",
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
