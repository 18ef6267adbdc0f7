//! Redis data reports as human text: restore (and validate), verify.

use super::table::{cell, new_table, status_cell, steps, Fit, ReportTable};
use crate::restore::redis::RedisRestoreReport;
use crate::restore::redis_verify::RedisVerifyReport;
use crate::units;

fn databases_table(report: &RedisVerifyReport) -> ReportTable {
    let mut t = new_table(&["database", "in backup", "expired since", "found", "status"]);
    for d in &report.databases {
        t.add_row(vec![
            cell(format!("db{}", d.db)),
            cell(units::count(d.expected)),
            cell(units::count(d.expired_since)),
            cell(units::count(d.found)),
            status_cell(d.status),
        ]);
    }
    t
}

fn verification_table(report: &RedisVerifyReport) -> ReportTable {
    let mut t = new_table(&["verification", "status", "message"]).fit(Fit::Wrap, &["message"]);
    for s in &report.steps {
        t.add_row(vec![cell(&s.name), status_cell(s.status), cell(&s.message)]);
    }
    t
}

fn verify_verdict(report: &RedisVerifyReport) -> &'static str {
    if report.ok {
        "VERIFIED\n"
    } else {
        "VERIFICATION FAILED\n"
    }
}

/// `dr verify` of a Redis target: key counts per database, the verifications, the verdict.
pub fn verify_table(report: &RedisVerifyReport) -> String {
    super::keep(report);
    databases_table(report).heading("Databases").render()
        + "\n"
        + &verification_table(report).heading("Verification").render()
        + verify_verdict(report)
}

pub fn restore_table(report: &RedisRestoreReport) -> String {
    super::keep(report);
    let several = report.verification.is_some();
    let mut steps = steps(&report.steps);
    if several {
        steps = steps.heading("Steps");
    }
    let mut text = steps.render();
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
    text.push_str(&super::restore::outcome_line(
        report.operation,
        report.ok,
        backup,
        &report.destination,
        report.duration_ms,
        report.rto_objective_ms,
        report.rto_met,
    ));
    if let Some(v) = &report.verification {
        text.push('\n');
        text.push_str(&databases_table(v).heading("Databases").render());
        text.push('\n');
        text.push_str(&verification_table(v).heading("Verification").render());
        text.push_str(verify_verdict(v));
    }
    if let Some(id) = &report.safety_backup_id {
        text.push_str(&format!("safety backup of the previous contents: {id}\n"));
    }
    text
}
