//! `drill.recent`: recovery was rehearsed recently enough. `drill.leftovers`: no drill
//! that died left a scratch database or files behind.

use std::sync::Arc;

use anyhow::Result;
use chrono::Utc;

use super::{CheckContext, Finding, PlannedCheck};
use crate::storage::Storage;
use crate::units::age as age_text;

pub fn plan(ctx: &Arc<CheckContext>, out: &mut Vec<PlannedCheck>) {
    let found = local_leftovers(&ctx.leftovers);
    out.push(PlannedCheck {
        name: "drill.leftovers",
        target: None,
        critical: false,
        timeout_per_read: false,
        run: Box::pin(async move { Ok(found) }),
    });
    for target in &ctx.config.postgres {
        // Drills make their scratch databases with the restore credentials: usually the
        // same URL as the target's, and then the same shared connection.
        let (t, s) = (
            target.clone(),
            ctx.clients.get(target.resolve_restore_url()),
        );
        out.push(PlannedCheck {
            name: "drill.leftovers",
            target: Some(t.name.clone()),
            critical: false,
            timeout_per_read: false,
            run: Box::pin(async move { scratch_leftovers(&t, &s).await }),
        });
    }
    let Some(store) = ctx.storage.clone() else {
        return;
    };
    for target in &ctx.config.postgres {
        let (s, name, every) = (
            store.clone(),
            target.name.clone(),
            ctx.config.objectives.drill_every(),
        );
        out.push(PlannedCheck {
            name: "drill.recent",
            target: Some(target.name.clone()),
            critical: false,
            timeout_per_read: false,
            run: Box::pin(async move { recent(s.as_ref(), &name, every).await }),
        });
    }
}

fn local_leftovers(found: &[crate::leftovers::Leftover]) -> Finding {
    if found.is_empty() {
        return Finding::pass(
            "no passfile, staging copy or sandbox cluster left by a dr run that died on this host",
        );
    }
    let removed: Vec<String> = found
        .iter()
        .filter(|l| l.error.is_none())
        .map(|l| format!("{} (pid {})", l.resource.describe(), l.pid))
        .collect();
    let stuck: Vec<String> = found
        .iter()
        .filter_map(|l| {
            l.error
                .as_ref()
                .map(|e| format!("{} ({e})", l.resource.describe()))
        })
        .collect();
    if stuck.is_empty() {
        Finding::warn(format!(
            "removed what dr runs that died (kill -9, a crash) left on this host: {}; hint: find out what killed them",
            removed.join(", ")
        ))
    } else {
        Finding::warn(format!(
            "dr runs that died left what could not be removed: {}; hint: remove it by hand",
            stuck.join(", ")
        ))
    }
}

async fn scratch_leftovers(
    target: &crate::config::PostgresTarget,
    shared: &crate::pg::slots::SharedClient,
) -> Result<Finding> {
    let stale = crate::drill::stale_scratch_databases_on(shared.client().await?).await?;
    Ok(if stale.is_empty() {
        Finding::pass("no scratch database of a drill that died")
    } else {
        Finding::warn(format!(
            "scratch database(s) of drills that died: {}; hint: the next `dr drill --target {}` drops them, or DROP DATABASE them by hand",
            stale.join(", "),
            target.name
        ))
    })
}

async fn recent(
    storage: &dyn Storage,
    target: &str,
    every: std::time::Duration,
) -> Result<Finding> {
    let reports = crate::drill::list_reports(storage, target).await?;
    let Some(last) = reports.iter().find(|r| r.ok) else {
        return Ok(Finding::warn(match reports.first() {
            Some(failed) => format!("no successful drill of {target}; the last one ({}) failed; hint: fix it and run `dr drill --target {target}`", failed.id),
            None => format!("no drill of {target} has ever run: the RTO is a promise, not a measurement; hint: run `dr drill --target {target}`"),
        }));
    };
    let age = Utc::now() - last.started_at;
    let every = chrono::Duration::from_std(every)?;
    let text = format!(
        "last successful drill {} was {} ago (RTO measured {}); drills are due every {}",
        last.id,
        age_text(age),
        crate::units::millis(last.rto_ms),
        age_text(every)
    );
    if age > every {
        Ok(Finding::fail(format!(
            "{text}; hint: run `dr drill --target {target}`"
        )))
    } else {
        Ok(Finding::pass(text))
    }
}
