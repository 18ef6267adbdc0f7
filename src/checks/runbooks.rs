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
            let runbooks = crate::runbook::load_all(&c.config)?;
            let mut broken = Vec::new();
            // Both routes, and a target with and one without WAL archiving: a branch only
            // one kind of target takes can break. One of each kind is enough (fleets).
            let mut choices = vec![(None, None)];
            let archiving = c.config.postgres.iter().find(|t| t.wal_archiving);
            let plain = c.config.postgres.iter().find(|t| !t.wal_archiving);
            for t in archiving.iter().chain(plain.iter()) {
                choices.push((Some(t.name.as_str()), Some(crate::runbook::Route::Dump)));
                if t.wal_archiving {
                    choices.push((Some(t.name.as_str()), Some(crate::runbook::Route::Pitr)));
                }
            }
            for (target, route) in choices {
                let branches = crate::runbook::Branches::choose(&c.config, target, route)?;
                let values =
                    crate::runbook::placeholder_values(&c.config, c.storage.as_deref(), &branches)
                        .await;
                for rb in &runbooks {
                    if let Err(e) = rb.render(&values, &branches) {
                        let line = format!("{}: {e:#}", rb.name);
                        if !broken.contains(&line) {
                            broken.push(line);
                        }
                    }
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
