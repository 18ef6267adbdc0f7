//! What the sinks hear about a restore and a drill.

use anyhow::Result;

use crate::drill::DrillReport;
use crate::notify::Outcome;
use crate::restore::RestoreReport;

/// A restore of `target`: restored and verified, or why not; its recovery time when it
/// succeeded.
pub fn restore(target: &str, report: &RestoreReport) -> Outcome {
    Outcome {
        backup_id: report.backup_id.clone(),
        duration_ms: report.duration_ms,
        rto_ms: report.ok.then_some(report.duration_ms),
        ..Outcome::new(
            Some(target),
            report.ok,
            match &report.error {
                None => format!(
                    "backup {} restored into {} and verified",
                    report.backup_id.as_deref().unwrap_or("-"),
                    report.destination
                ),
                Some(e) => format!("restore into {} failed: {e}", report.destination),
            },
        )
    }
}

/// A drill of `target`: its verdict, and the recovery time a verified restore measured.
pub fn drill(target: &str, result: &Result<DrillReport>) -> Outcome {
    match result {
        Ok(report) => Outcome {
            backup_id: report.backup_id.clone(),
            // Only a restore that was verified measured a recovery time.
            rto_ms: (report.verification.is_some() || (report.pitr.is_some() && report.ok))
                .then_some(report.rto_ms),
            rpo_ms: report.rpo_ms,
            ..Outcome::new(Some(target), report.ok, report.verdict.clone())
        },
        Err(e) => Outcome::new(Some(target), false, format!("drill failed: {e:#}")),
    }
}
