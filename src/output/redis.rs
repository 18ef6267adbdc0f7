//! Human renderings of Redis data reports: restore, verify, and the backup/list cells.

use comfy_table::Cell;

use super::table;
use crate::backup::manifest::BackupManifest;
use crate::redis_backup::restore::RedisRestoreReport;
use crate::redis_backup::verify::RedisVerifyReport;
use crate::restore::Step;

/// What a backup holds, in one cell: `3 tables` or `1200 keys in 3 db (rdb)`.
pub fn contents(m: &BackupManifest) -> String {
    match &m.redis {
        Some(d) => format!(
            "{} keys in {} db ({})",
            d.keys,
            d.databases.len(),
            d.method.as_str()
        ),
        None => format!("{} tables", m.tables.len()),
    }
}

fn steps_table(steps: &[Step]) -> String {
    let mut t = table::new_table(&["step", "status", "message", "time"]);
    for s in steps {
        t.add_row(vec![
            Cell::new(&s.name),
            table::status_cell(s.status),
            Cell::new(&s.message),
            Cell::new(table::millis(s.duration_ms)),
        ]);
    }
    format!("{t}\n")
}

pub fn verify_report(report: &RedisVerifyReport) -> String {
    let mut t = table::new_table(&["database", "in backup", "expired since", "found", "status"]);
    for d in &report.databases {
        t.add_row(vec![
            Cell::new(format!("db{}", d.db)),
            Cell::new(d.expected),
            Cell::new(d.expired_since),
            Cell::new(d.found),
            table::status_cell(d.status),
        ]);
    }
    let mut items = table::new_table(&["verification", "status", "message"]);
    for i in &report.items {
        items.add_row(vec![
            Cell::new(&i.name),
            table::status_cell(i.status),
            Cell::new(&i.message),
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

pub fn restore_report(report: &RedisRestoreReport) -> String {
    let mut text = steps_table(&report.steps);
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
    if report.ok {
        text.push_str(&format!(
            "\nbackup {backup} restored into {} in {} (RTO objective: {})\n",
            report.destination,
            table::millis(report.total_ms),
            match (report.rto_objective_ms, report.rto_met) {
                (Some(r), Some(true)) => format!("{}, met", table::millis(r)),
                (Some(r), _) => format!("{}, MISSED", table::millis(r)),
                _ => "not set".into(),
            }
        ));
    } else {
        text.push_str(&format!(
            "\nRESTORE NOT COMPLETED into {} (see the error below)\n",
            report.destination
        ));
    }
    if let Some(v) = &report.verification {
        text.push_str(&verify_report(v));
    }
    if let Some(id) = &report.safety_backup_id {
        text.push_str(&format!("safety backup of the previous contents: {id}\n"));
    }
    text
}
