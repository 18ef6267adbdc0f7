//! `backup.latest` (a complete backup younger than the RPO) and `backup.integrity` (the
//! newest backup's stored bytes still hash to its manifest).

use std::sync::Arc;

use anyhow::Result;
use chrono::Utc;

use super::{CheckContext, Finding, PlannedCheck};
use crate::backup::catalog;
use crate::backup::manifest::BackupManifest;
use crate::storage::Storage;
use crate::units::age as age_text;

pub fn plan(ctx: &Arc<CheckContext>, out: &mut Vec<PlannedCheck>) {
    let Some(store) = ctx.storage.clone() else {
        return;
    };
    for target in &ctx.config.postgres {
        // Both checks need the newest backup: list storage and read manifests once.
        let newest: NewestBackup = Arc::default();
        let (s, n, name, rpo) = (
            store.clone(),
            newest.clone(),
            target.name.clone(),
            ctx.config.objectives.rpo,
        );
        out.push(PlannedCheck {
            name: "backup.latest",
            target: Some(target.name.clone()),
            critical: target.critical,
            timeout_per_read: false,
            run: Box::pin(async move { latest(s.as_ref(), &n, &name, rpo).await }),
        });
        let (s, name, timeout) = (store.clone(), target.name.clone(), ctx.timeout);
        out.push(PlannedCheck {
            name: "backup.integrity",
            target: Some(target.name.clone()),
            critical: target.critical,
            timeout_per_read: true,
            run: Box::pin(async move { integrity(s.as_ref(), &newest, &name, timeout).await }),
        });
    }
}

/// The newest complete regular backup of a target, looked up once per `dr check`.
type NewestBackup = Arc<tokio::sync::OnceCell<Result<Option<BackupManifest>, String>>>;

async fn newest(
    cell: &NewestBackup,
    storage: &dyn Storage,
    target: &str,
) -> Result<Option<BackupManifest>> {
    cell.get_or_init(|| async {
        let (all, damaged) = catalog::list_complete(storage, Some(target))
            .await
            .map_err(|e| format!("{e:#}"))?;
        for d in damaged {
            tracing::warn!("damaged manifest {}: {}", d.key, d.error);
        }
        Ok(catalog::newest_trusted(&all, Utc::now()).0.cloned())
    })
    .await
    .clone()
    .map_err(anyhow::Error::msg)
}

async fn latest(
    storage: &dyn Storage,
    cell: &NewestBackup,
    target: &str,
    rpo: Option<std::time::Duration>,
) -> Result<Finding> {
    let Some(m) = newest(cell, storage, target).await? else {
        return Ok(Finding::fail(format!(
            "no complete backup of {target} in {}; hint: run `dr backup --target {target}` and schedule it",
            storage.describe()
        )));
    };
    let age = Utc::now() - m.created_at;
    let Some(rpo) = rpo else {
        return Ok(Finding::warn(format!(
            "newest backup {} is {} old, but no RPO is set; hint: set [objectives] rpo",
            m.id,
            age_text(age)
        )));
    };
    let rpo = chrono::Duration::from_std(rpo)?;
    let text = format!(
        "newest backup {} is {} old (RPO {})",
        m.id,
        age_text(age),
        age_text(rpo)
    );
    if age > rpo {
        Ok(Finding::fail(format!("{text}: the RPO is missed; hint: run `dr backup --target {target}` now and check the backup schedule")))
    } else if age * 5 > rpo * 4 {
        Ok(Finding::warn(format!(
            "{text}: past 80% of the RPO; hint: check that the next scheduled backup runs"
        )))
    } else {
        Ok(Finding::pass(text))
    }
}

async fn integrity(
    storage: &dyn Storage,
    cell: &NewestBackup,
    target: &str,
    timeout: std::time::Duration,
) -> Result<Finding> {
    let newest = tokio::time::timeout(timeout, newest(cell, storage, target))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "listing backups in {} timed out after {}",
                storage.describe(),
                crate::units::duration(timeout)
            )
        })?;
    let Some(m) = newest? else {
        return Ok(Finding::warn(format!(
            "no complete backup of {target} to check (see backup.latest)"
        )));
    };
    match catalog::verify_checksums(storage, &m, Some(timeout)).await {
        Ok(()) => Ok(Finding::pass(format!(
            "backup {}: {} object(s), {}, SHA-256 matches the manifest",
            m.id,
            m.objects.len(),
            crate::units::bytes(m.size_bytes)
        ))),
        Err(e) => Ok(Finding::fail(format!("{e:#}"))),
    }
}
