//! `drill.recent`: recovery was rehearsed recently enough.

use std::sync::Arc;

use anyhow::Result;
use chrono::Utc;

use super::{CheckContext, Finding, PlannedCheck};
use crate::storage::Storage;
use crate::units::age as age_text;

pub fn plan(ctx: &Arc<CheckContext>, out: &mut Vec<PlannedCheck>) {
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
