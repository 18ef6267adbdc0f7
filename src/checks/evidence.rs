//! `evidence.chain`: the newest records of the evidence log verify, and whether they are
//! signed. `rto.predicted`: how long a restore of what storage holds now would take, at
//! the throughput drills measured, against the RTO objective.

use std::sync::Arc;

use anyhow::Result;

use super::{CheckContext, Finding, PlannedCheck};
use crate::evidence::prediction::{self, Verdict};
use crate::storage::Storage;
use crate::units;

pub fn plan(ctx: &Arc<CheckContext>, out: &mut Vec<PlannedCheck>) {
    let Some(store) = ctx.storage.clone() else {
        return;
    };
    let (s, c) = (store.clone(), ctx.clone());
    out.push(PlannedCheck {
        name: "evidence.chain",
        target: None,
        critical: false,
        timeout_per_read: false,
        run: Box::pin(async move { crate::evidence::check_tail(s.as_ref(), &c.config).await }),
    });
    for target in &ctx.config.postgres {
        let (s, name) = (store.clone(), target.name.clone());
        let objective = ctx.config.objectives.rto.map(|d| d.as_millis() as u64);
        out.push(PlannedCheck {
            name: "rto.predicted",
            target: Some(target.name.clone()),
            critical: false,
            timeout_per_read: false,
            run: Box::pin(async move { predicted(s.as_ref(), &name, objective).await }),
        });
    }
}

async fn predicted(storage: &dyn Storage, target: &str, objective: Option<u64>) -> Result<Finding> {
    let reports = crate::drill::list_reports(storage, target).await?;
    // A restore now goes the way the newest measured drill went.
    let Some(newest) = reports.iter().find(|r| r.ok && r.restored_bytes.is_some()) else {
        return Ok(Finding::warn(format!(
            "not measured: no drill of {target} has measured a restore's throughput yet; hint: run `dr drill --target {target}`"
        )));
    };
    let pitr = newest.pitr.is_some();
    let samples = crate::drill::throughput::samples(&reports, pitr);
    let Some((bytes, what)) = crate::drill::throughput::needed_now(storage, target, pitr).await?
    else {
        return Ok(Finding::warn(format!(
            "not measured: storage holds no {} of {target} to predict a restore of; hint: run `dr backup{} --target {target}`",
            if pitr { "base backup" } else { "backup" },
            if pitr { " --physical" } else { "" }
        )));
    };
    let Some(ms) = prediction::predict_ms(bytes, &samples) else {
        return Ok(Finding::warn(format!(
            "not measured: no drill of {target} measured a restore"
        )));
    };
    let rate = prediction::bytes_per_second(&samples).unwrap_or(0);
    let text = format!(
        "a restore of {what} would take about {} (drills measured {}/s over {} drill(s))",
        units::millis(ms),
        units::bytes(rate),
        samples.len().min(prediction::SAMPLES)
    );
    let Some(objective) = objective else {
        return Ok(Finding::pass(format!("{text}; no RTO objective is set")));
    };
    let fix = if pitr {
        format!("take a fresh base backup (`dr backup --physical --target {target}`) so that less WAL is replayed, or restore with more --jobs")
    } else {
        format!("restore with more parallel jobs (`--jobs`, measured by `dr drill --target {target} --jobs N`), or back up less (an incremental base backup with WAL archiving)")
    };
    Ok(match prediction::judge(ms, objective) {
        Verdict::Within => Finding::pass(format!(
            "{text}; the RTO objective is {}",
            units::millis(objective)
        )),
        Verdict::Close => Finding::warn(format!(
            "{text}: above 80% of the RTO objective {}; hint: {fix}",
            units::millis(objective)
        )),
        Verdict::Above => Finding::fail(format!(
            "{text}: more than the RTO objective {}; hint: {fix}",
            units::millis(objective)
        )),
    })
}
