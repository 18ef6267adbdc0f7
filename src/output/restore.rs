//! `dr validate`, `dr restore` and `dr verify` as human text.

use super::table::{cell, new_table, status_cell, steps, Fit};
use crate::restore::verify::VerifyReport;
use crate::restore::{Consent, Operation, RestoreReport};
use crate::units;

pub fn table(report: &RestoreReport) -> String {
    super::keep(report);
    let several = report.verification.is_some();
    let mut steps = steps(&report.steps);
    if several {
        steps = steps.heading("Steps");
    }
    let mut text = steps.render();
    let archive_unread = report
        .steps
        .iter()
        .any(|s| s.name == "archive" && s.message.starts_with("not read"));
    if report.operation == Operation::Validate && report.ok && archive_unread {
        // Checksums prove the bytes are intact, not that this host can open them.
        text.push_str("VALID (checksums only): every object matches its SHA-256; the archive was not read, so whether it restores is not proven here; hint: run dr validate --identity FILE where the key is\n");
        return text;
    }
    text.push_str(&outcome_line(
        report.operation,
        report.ok,
        report.backup_id.as_deref().unwrap_or("-"),
        &report.destination,
        report.duration_ms,
        report.rto_objective_ms,
        report.rto_met,
    ));
    if let Some(v) = &report.verification {
        text.push('\n');
        text.push_str(&verification_table(v).heading("Verification").render());
        text.push_str(&verify_verdict(v));
    }
    if let Some(id) = &report.safety_backup_id {
        text.push_str(&format!("safety backup of the previous contents: {id}\n"));
    }
    if !report.roles_without_password.is_empty() {
        text.push_str(&roles_without_password(report));
    }
    text
}

/// The restore's last words when `--with-globals` created login roles without their
/// passwords (the backup role could not read them): which, and how to set each.
fn roles_without_password(report: &RestoreReport) -> String {
    let server = url::Url::parse(&report.destination)
        .map(|mut u| {
            u.set_path("/postgres");
            u.set_query(None);
            u.to_string()
        })
        .unwrap_or_else(|_| report.destination.clone());
    let mut text = format!(
        "\nlogin roles left WITHOUT A PASSWORD (the backup role could not read passwords): {}\nthey cannot log in until each gets one; as a superuser, from your password store:\n",
        report.roles_without_password.join(", ")
    );
    for role in &report.roles_without_password {
        let simple = role
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        let name = if simple {
            role.clone()
        } else {
            crate::pg::quote_ident(role)
        };
        text.push_str(&format!("  psql '{server}' -c '\\password {name}'\n"));
    }
    text
}

/// The question asked on a terminal before a non-empty destination is overwritten.
pub fn consent_prompt(c: &Consent) -> String {
    let age = units::age(chrono::Utc::now() - c.backup_created_at);
    let mut text = format!(
        "\nabout to restore backup {} (taken {}, {age} ago, {})\ninto {} (database {})\n",
        c.backup_id,
        units::time(c.backup_created_at),
        units::bytes(c.backup_size_bytes),
        c.destination,
        c.database
    );
    text.push_str(&format!(
        "it holds {} user object(s); what the backup holds is dropped and recreated, anything else is left alone\n",
        c.user_objects
    ));
    if !c.replaced_tables.is_empty() {
        let shown: Vec<String> = c
            .replaced_tables
            .iter()
            .take(10)
            .map(|(name, rows)| match rows {
                Some(n) => format!("{name} (~{} rows)", units::count(*n)),
                None => name.clone(),
            })
            .collect();
        let more = c.replaced_tables.len().saturating_sub(shown.len());
        text.push_str(&format!(
            "tables replaced: {}{}\n",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ));
    }
    text.push_str(if c.safety_backup {
        "a safety backup of the destination is taken first\n"
    } else {
        "NO safety backup is taken (--no-safety-backup)\n"
    });
    text.push_str(&format!(
        "type the database name ({}) to confirm: ",
        c.database
    ));
    text
}

/// `dr verify`: the table and the verdict.
pub fn verify_table(report: &VerifyReport) -> String {
    super::keep(report);
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

/// The verdict line of a validate or restore, PostgreSQL or Redis alike.
pub fn outcome_line(
    operation: Operation,
    ok: bool,
    backup: &str,
    destination: &str,
    duration_ms: u64,
    rto_objective_ms: Option<u64>,
    rto_met: Option<bool>,
) -> String {
    match operation {
        Operation::Validate if ok => "VALID: a restore of this backup can start\n".into(),
        Operation::Validate => "NOT VALID: see the failed step; nothing was changed\n".into(),
        Operation::Restore if ok => {
            let objective = match (rto_objective_ms, rto_met) {
                (Some(r), Some(true)) => format!("{}, met", units::millis(r)),
                (Some(r), _) => format!("{}, MISSED", units::millis(r)),
                _ => "not set".into(),
            };
            format!(
                "\nbackup {backup} restored into {destination} in {} (RTO objective: {objective})\n",
                units::millis(duration_ms),
            )
        }
        Operation::Restore => {
            format!("\nRESTORE NOT COMPLETED into {destination} (see the error below)\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_names_backup_destination_and_what_is_replaced() {
        let c = Consent {
            backup_id: "main-20260102T030405Z".into(),
            backup_created_at: chrono::Utc::now() - chrono::Duration::hours(3),
            backup_size_bytes: 34_120,
            destination: "postgres://admin@db:5432/shop".into(),
            database: "shop".into(),
            user_objects: 12,
            replaced_tables: vec![
                ("shop.orders".into(), Some(3000)),
                ("shop.new".into(), None),
            ],
            safety_backup: true,
        };
        let text = consent_prompt(&c);
        for part in [
            "main-20260102T030405Z",
            "3h ago",
            "33.3 KiB",
            "postgres://admin@db:5432/shop",
            "12 user object(s)",
            "shop.orders (~3,000 rows), shop.new",
            "safety backup",
            "type the database name (shop)",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
    }
}
