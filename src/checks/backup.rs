//! `backup.latest` (a complete backup younger than the RPO) and `backup.integrity` (the
//! newest backup's stored bytes still hash to its manifest: confirmed from its integrity
//! verdict and the objects' metadata, hashed in full only when the verdict is missing or
//! older than `[backup] rehash_after`), and `backup.globals` (a lost cluster would come back
//! with its roles).

use std::sync::Arc;

use anyhow::Result;
use chrono::Utc;

use super::{CheckContext, Finding, PlannedCheck};
use crate::backup::catalog;
use crate::backup::integrity::{self, CheckedBy, IntegrityVerdict, Standing};
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
        let (s, n, name) = (store.clone(), newest.clone(), target.name.clone());
        let include_globals = ctx.config.backup.include_globals;
        out.push(PlannedCheck {
            name: "backup.globals",
            target: Some(target.name.clone()),
            critical: false,
            timeout_per_read: false,
            run: Box::pin(async move { globals(s.as_ref(), &n, &name, include_globals).await }),
        });
        let (s, name, timeout) = (store.clone(), target.name.clone(), ctx.timeout);
        let rehash_after = ctx.config.backup.rehash_after();
        out.push(PlannedCheck {
            name: "backup.integrity",
            target: Some(target.name.clone()),
            critical: target.critical,
            timeout_per_read: true,
            run: Box::pin(async move {
                integrity(s.as_ref(), &newest, &name, timeout, rehash_after).await
            }),
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

/// `redis.backup`: the same judgement of the newest backup's age, for a Redis target;
/// also the id and key count of that backup, for comparing with the live server.
pub(super) async fn latest_redis(
    storage: &dyn Storage,
    target: &str,
    rpo: Option<std::time::Duration>,
) -> Result<(Finding, Option<(String, u64)>)> {
    let cell = NewestBackup::default();
    let finding = latest(storage, &cell, target, rpo).await?;
    let keys = newest(&cell, storage, target)
        .await?
        .and_then(|m| m.redis.as_ref().map(|r| (m.id.clone(), r.keys)));
    Ok((finding, keys))
}

/// Roles and tablespaces live outside any one database: only `pg_dumpall --globals-only`
/// (`include_globals`) or a base backup brings them back onto a new cluster.
async fn globals(
    storage: &dyn Storage,
    cell: &NewestBackup,
    target: &str,
    include_globals: bool,
) -> Result<Finding> {
    let newest = newest(cell, storage, target).await?;
    if newest.as_ref().is_some_and(|m| m.physical.is_some()) {
        return Ok(Finding::pass(
            "the newest backup is a base backup: roles and tablespaces come back with the cluster",
        ));
    }
    if !include_globals {
        return Ok(Finding::warn(format!(
            "backups of {target} hold no roles or tablespaces ([backup] include_globals = false): a lost cluster would come back without the roles that own and read its data; hint: set include_globals = true in [backup] (the default) and run `dr backup --target {target}`"
        )));
    }
    Ok(match newest {
        Some(m) if m.globals().is_none() && m.redis.is_none() => Finding::warn(format!(
            "the newest backup {} holds no roles or tablespaces (it was taken without include_globals); the next backup will; hint: run `dr backup --target {target}`",
            m.id
        )),
        Some(m) if m.globals_role_passwords == Some(false) => Finding::pass(format!(
            "backup {} holds the roles, without their passwords (the backup role is not a superuser): a restore with --with-globals names the login roles to give a password",
            m.id
        )),
        Some(m) => Finding::pass(format!("backup {} holds the roles and tablespaces", m.id)),
        None => Finding::pass("the next backup will hold the roles and tablespaces"),
    })
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
    rehash_after: std::time::Duration,
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
    let standing = tokio::time::timeout(
        timeout,
        integrity::standing(storage, &m, Utc::now(), rehash_after),
    )
    .await
    .map_err(|_| {
        anyhow::anyhow!(
            "reading the integrity verdict of backup {} timed out after {}",
            m.id,
            crate::units::duration(timeout)
        )
    })??;
    let since = |v: &IntegrityVerdict| {
        format!(
            "{} ago by {}",
            age_text(Utc::now() - v.checked_at),
            v.checked_by.as_str()
        )
    };
    let why_hash = match standing {
        Standing::Confirmed(v) => {
            return Ok(Finding::pass(format!(
                "backup {}: {} object(s), {}, unchanged since their full SHA-256 check {} (next full re-hash once that is older than {})",
                m.id,
                m.objects.len(),
                crate::units::bytes(m.size_bytes),
                since(&v),
                age_text(chrono::Duration::from_std(rehash_after)?)
            )))
        }
        Standing::Changed { verdict, key, detail } => {
            return Ok(Finding::fail(format!(
                "{key} of backup {} changed since its full SHA-256 check {} ({detail}): its bytes may no longer match the manifest; hint: run `dr validate --target {target} --backup-id {}` to hash it again (it records a new verdict when the bytes still match), and find out who rewrote the object",
                m.id,
                since(&verdict),
                m.id
            )))
        }
        Standing::Failed(verdict) => {
            return Ok(Finding::fail(format!(
                "backup {} failed its full SHA-256 check {}: {}",
                m.id,
                since(&verdict),
                verdict.error.as_deref().unwrap_or("checksum mismatch")
            )))
        }
        Standing::Stale(v) => format!("the last one, {}, is too old", since(&v)),
        Standing::Missing => "no integrity verdict recorded yet".to_string(),
    };
    match integrity::rehash(storage, &m, CheckedBy::Check, Some(timeout)).await {
        Ok(()) => Ok(Finding::pass(format!(
            "backup {}: {} object(s), {}, SHA-256 matches the manifest (hashed in full: {why_hash}; verdict recorded)",
            m.id,
            m.objects.len(),
            crate::units::bytes(m.size_bytes)
        ))),
        Err(e) => Ok(Finding::fail(format!("{e:#}"))),
    }
}
