//! The Redis side of `restore` and `validate`: each command dispatches here when its
//! `--target` is a `[[redis]]` target with `backup = true`.

use anyhow::Result;

use crate::cli::{Format, RestoreArgs, ValidateArgs};
use crate::config::{Config, RedisTarget};
use crate::operations::redis::destination;
use crate::output;
use crate::restore::redis::{self as restore, RedisRestoreRequest};

/// How the command line named the destination, for commands printed back to the user
/// (`--into` carries no password: it was refused above).
fn destination_flag(into: &crate::cli::IntoArgs) -> Option<String> {
    match (&into.into, &into.into_env) {
        (Some(url), _) => Some(format!("--into '{url}'")),
        (None, Some(var)) => Some(format!("--into-env {var}")),
        (None, None) => None,
    }
}

pub async fn restore(config: &Config, target: &RedisTarget, args: RestoreArgs) -> Result<i32> {
    if args.pitr.pitr {
        return Err(crate::error::usage(format!(
            "--pitr restores PostgreSQL physical backups; {} is a Redis target; hint: drop --pitr and pass --backup-id",
            target.name
        )));
    }
    super::refuse_for_redis_restore(&args, &target.name)?;
    let storage = super::open_storage(config)?;
    let (report, result) = restore::run(RedisRestoreRequest {
        config,
        storage: storage.as_ref(),
        target,
        backup_id: args.backup_id.as_deref().unwrap_or("latest"),
        destination: destination(target, args.into.into.as_ref(), args.into.into_env.as_ref())?,
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
    super::refuse_for_redis_validate(&args, &target.name)?;
    let storage = super::open_storage(config)?;
    let (report, result) = restore::validate(
        storage.as_ref(),
        target,
        &args.backup_id,
        &destination(target, args.into.into.as_ref(), args.into.into_env.as_ref())?,
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
