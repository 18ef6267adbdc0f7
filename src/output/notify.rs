//! Notification results in a command's output: the JSON report with `notifications` and
//! `warnings` beside its own fields, and the table of `dr notify test`.

use serde::Serialize;

use super::table::{self, cell};
use crate::notify::{Delivery, NotifyReport};

#[derive(Serialize)]
struct WithNotifications<'a, T: Serialize> {
    #[serde(flatten)]
    report: &'a T,
    notifications: &'a [Delivery],
    warnings: &'a [String],
}

/// `report` as JSON, with what sending did: `notifications` (every delivery) and
/// `warnings` (everything that went wrong without changing the outcome).
pub fn json_with<T: Serialize>(report: &T, sent: &NotifyReport) -> String {
    let text = super::json(&WithNotifications {
        report,
        notifications: &sent.notifications,
        warnings: &sent.warnings,
    });
    // The evidence keeps the report itself, as the table renderers do.
    super::keep(report);
    text
}

#[derive(Serialize)]
struct TestReport<'a> {
    format_version: u32,
    ok: bool,
    notifications: &'a [Delivery],
}

pub fn test_json(deliveries: &[Delivery]) -> String {
    super::json(&TestReport {
        format_version: crate::report::FORMAT_VERSION,
        ok: deliveries.iter().all(|d| d.delivered),
        notifications: deliveries,
    })
}

pub fn test_table(deliveries: &[Delivery]) -> String {
    let mut t = table::new_table(&["sink", "kind", "sent", "result", "attempts", "time"]);
    for d in deliveries {
        t.add_row(vec![
            cell(&d.sink),
            cell(d.kind),
            cell(d.action),
            table::status_cell(if d.delivered {
                crate::report::Status::Pass
            } else {
                crate::report::Status::Fail
            }),
            cell(d.attempts.to_string()),
            cell(crate::units::millis(d.duration_ms)),
        ]);
    }
    let failed: Vec<String> = deliveries
        .iter()
        .filter(|d| !d.delivered)
        .map(|d| format!("{} ({}): {}", d.sink, d.action, d.message))
        .collect();
    let mut text = t.render();
    if failed.is_empty() {
        text.push_str(&format!("{} notification(s) delivered\n", deliveries.len()));
    } else {
        for f in &failed {
            text.push_str(&format!("NOT DELIVERED: {f}\n"));
        }
    }
    text
}
