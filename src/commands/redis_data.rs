//! The Redis side of `backup`, `restore`, `validate`, `verify` and `drill`: each command
//! dispatches here when its `--target` is a `[[redis]]` target with `backup = true`.

use anyhow::{anyhow, Result};

use crate::backup::catalog;
use crate::backup::manifest::{BackupKind, BackupManifest};
use crate::cli::{DrillArgs, Format, RestoreArgs, ValidateArgs, VerifyArgs};
use crate::config::{Config, RedisTarget};
use crate::drill::redis::{self as redis_drill, RedisDrillRequest};
use crate::output;
use crate::redis_backup::conn::{self, RedisEndpoint};
use crate::redis_backup::restore::{self, RedisRestoreRequest};
use crate::redis_backup::{self, RedisBackupPlan};
use crate::report::{Status, Steps};
use crate::storage::Storage;

/// `--into URL` (no password: command lines are readable by every user), `--into-env VAR`,
/// or the target's own server.
fn destination(target: &RedisTarget, into: &crate::cli::IntoArgs) -> Result<RedisEndpoint> {
    let url = match (&into.into, &into.into_env) {
        (Some(url), _) if crate::secret::redact_url(url) != *url => {
            return Err(crate::error::usage(
                "--into carries a password, and any user of this host can read a command line; nothing was changed; hint: put the URL in an environment variable and pass --into-env VAR",
            ))
        }
        (Some(url), _) => url.clone(),
        (None, Some(var)) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => v,
            _ => {
                return Err(crate::error::usage(format!(
                    "--into-env {var}: the environment variable {var} is not set; hint: export {var}=redis://:password@host:6379"
                )))
            }
        },
        (None, None) => target.resolve_url()?,
    };
    Ok(RedisEndpoint::parse(&url)?.with_timeout(target.timeout))
}

/// How the command line named the destination, for commands printed back to the user
/// (`--into` carries no password: it was refused above).
fn destination_flag(into: &crate::cli::IntoArgs) -> Option<String> {
    match (&into.into, &into.into_env) {
        (Some(url), _) => Some(format!("--into '{url}'")),
        (None, Some(var)) => Some(format!("--into-env {var}")),
        (None, None) => None,
    }
}

/// One Redis backup; a fallback from rdb to keys is said on stderr.
pub async fn backup(
    config: &Config,
    storage: &dyn Storage,
    target: &RedisTarget,
    show_progress: bool,
) -> Result<BackupManifest> {
    let m = redis_backup::run(
        storage,
        RedisBackupPlan {
            target_name: &target.name,
            endpoint: destination(target, &crate::cli::IntoArgs::default())?,
            method: target.method,
            kind: BackupKind::Regular,
            settings: &config.backup,
            recipients: crate::encryption::configured_recipients(config)?,
            show_progress,
        },
    )
    .await?;
    if let Some(reason) = m.redis.as_ref().and_then(|d| d.fallback_reason.as_deref()) {
        tracing::warn!(
            "Redis target {}: method auto fell back to keys (SCAN + DUMP + PTTL, not a point-in-time snapshot) because the RDB snapshot failed: {reason}",
            target.name
        );
    }
    Ok(m)
}

pub async fn restore(config: &Config, target: &RedisTarget, args: RestoreArgs) -> Result<i32> {
    if args.pitr.pitr {
        return Err(crate::error::usage(format!(
            "--pitr restores PostgreSQL physical backups; {} is a Redis target; hint: drop --pitr and pass --backup-id",
            target.name
        )));
    }
    let storage = super::open_storage(config)?;
    let (report, result) = restore::run(RedisRestoreRequest {
        config,
        storage: storage.as_ref(),
        target,
        backup_id: args.backup_id.as_deref().unwrap_or("latest"),
        destination: destination(target, &args.into)?,
        destination_flag: destination_flag(&args.into),
        yes: args.yes,
        flush: args.flush,
        no_safety_backup: args.no_safety_backup,
        rdb_file: args.rdb_file.clone(),
        staging_dir: super::staging_dir(args.staging_dir.as_deref()),
        show_progress: args.format == Format::Table,
        identities: super::identities(config, args.identity.as_deref())?,
        recipients: crate::encryption::configured_recipients(config)?,
    })
    .await;
    output::emit(&match args.format {
        Format::Json => output::json(&report),
        Format::Table => output::redis::restore_table(&report),
    });
    result.map(|()| 0)
}

pub async fn validate(config: &Config, target: &RedisTarget, args: ValidateArgs) -> Result<i32> {
    let storage = super::open_storage(config)?;
    let (report, result) = restore::validate(
        storage.as_ref(),
        target,
        &args.backup_id,
        &destination(target, &args.into)?,
        super::identities(config, args.identity.as_deref())?.as_ref(),
        &super::staging_dir(args.staging_dir.as_deref()),
    )
    .await;
    output::emit(&match args.format {
        Format::Json => output::json(&report),
        Format::Table => output::redis::restore_table(&report),
    });
    result
        .map(|()| 0)
        .map_err(|e| e.context("validation failed: nothing was changed"))
}

pub async fn verify(config: &Config, target: &RedisTarget, args: VerifyArgs) -> Result<i32> {
    let storage = super::open_storage(config)?;
    let manifest = catalog::resolve(storage.as_ref(), &target.name, &args.backup_id).await?;
    redis_backup::details(&manifest)?;
    let endpoint = destination(target, &args.into)?;
    let mut con = endpoint.connect().await?;
    let now = conn::server_time_ms(&mut con).await?;
    // The sample is drawn from the backup itself, fetched (and its checksum checked) once.
    let mut steps = Steps::default();
    // verify has no --identity: an encrypted backup is opened with [encryption]'s identity.
    let identities = super::identities(config, None)?;
    let staged = restore::fetch(
        storage.as_ref(),
        &manifest,
        identities.as_ref(),
        &crate::backup::default_staging_dir(),
        false,
        &mut steps,
    )
    .await?;
    let (digest, _) =
        restore::read_staged(&manifest, &staged.path, manifest.dump().compression, now).await?;
    drop(staged);
    let report = redis_backup::verify::verify(
        &mut con,
        &target.name,
        &endpoint.public_url,
        &manifest,
        &digest,
    )
    .await;
    output::emit(&match args.format {
        Format::Json => output::json(&report),
        Format::Table => output::redis::verify_table(&report),
    });
    if report.ok {
        Ok(0)
    } else {
        Err(anyhow!(
            "verification of {} against backup {} failed: {}",
            endpoint.public_url,
            manifest.id,
            report
                .steps
                .iter()
                .filter(|s| s.status == Status::Fail)
                .map(|s| format!("{}: {}", s.name, s.message))
                .collect::<Vec<_>>()
                .join("; ")
        ))
    }
}

pub async fn drill(config: &Config, target: &RedisTarget, args: DrillArgs) -> Result<i32> {
    let storage = super::open_storage(config)?;
    let report = redis_drill::run(RedisDrillRequest {
        config,
        storage: storage.as_ref(),
        target,
        backup_id: args.backup_id.as_deref(),
        identities: super::identities(config, args.identity.as_deref())?,
    })
    .await?;
    output::emit(&match args.format {
        Format::Json => output::json(&report),
        Format::Table => output::drill::table(&report),
    });
    if report.ok {
        Ok(0)
    } else {
        Err(anyhow!(
            "drill {} failed: {}",
            report.id,
            report.verdict.trim_start_matches("fail: ")
        ))
    }
}
