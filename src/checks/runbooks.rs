//! `runbooks`: every runbook renders with the current configuration.

use std::sync::Arc;

use super::{CheckContext, Finding, PlannedCheck};

pub fn plan(ctx: &Arc<CheckContext>, out: &mut Vec<PlannedCheck>) {
    let c = ctx.clone();
    out.push(PlannedCheck {
        name: "runbooks",
        target: None,
        critical: false,
        timeout_per_read: false,
        run: Box::pin(async move {
            let values = crate::runbook::placeholder_values(&c.config, c.storage.as_deref()).await;
            let runbooks = crate::runbook::load_all(&c.config)?;
            let mut broken = Vec::new();
            for rb in &runbooks {
                if let Err(e) = rb.render(&values) {
                    broken.push(format!("{}: {e:#}", rb.name));
                }
            }
            Ok(if broken.is_empty() {
                Finding::pass(format!(
                    "all {} runbook(s) render with this configuration",
                    runbooks.len()
                ))
            } else {
                Finding::fail(format!(
                    "{}; hint: fix the runbook or add the missing setting to dr.toml",
                    broken.join("; ")
                ))
            })
        }),
    });
}
