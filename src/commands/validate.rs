//! `dr validate`: proves a restore could start, changing nothing.

use anyhow::Result;

use crate::backup::catalog;
use crate::backup::manifest::BackupMethod;
use crate::cli::{Format, ValidateArgs};
use crate::config::Config;
use crate::output;
use crate::restore::{self, Action, RestoreRequest};

pub async fn run(config: &Config, args: ValidateArgs) -> Result<i32> {
    if let Some(redis) = config.redis_backup_target(args.target.as_deref()) {
        return super::redis_data::validate(config, redis?, args).await;
    }
    let target = super::single_target(config, args.target.as_deref())?;
    let storage = super::open_storage(config)?;
    let staging_dir = super::staging_dir(args.staging_dir.as_deref());
    let physical = args.physical
        || (args.backup_id != "latest"
            && catalog::resolve_method(storage.as_ref(), &target.name, &args.backup_id, None)
                .await
                .is_ok_and(|m| m.method == BackupMethod::Physical));
    if physical {
        let (report, result) = restore::physical::validate(
            storage.as_ref(),
            target,
            &args.backup_id,
            &staging_dir,
            super::identities(config, args.identity.as_deref())?,
        )
        .await;
        output::emit(&match args.format {
            Format::Json => output::json(&report),
            Format::Table => output::restore::table(&report),
        });
        return result
            .map(|()| 0)
            .map_err(|e| e.context("validation failed: nothing was changed"));
    }
    let (destination, destination_flag) = super::destination(target, &args.into)?;
    let (report, result) = restore::run(RestoreRequest {
        config,
        storage: storage.as_ref(),
        target,
        backup_id: &args.backup_id,
        destination: &destination,
        destination_flag,
        staging_dir: &staging_dir,
        scope: super::scope(&args.scope),
        identities: super::identities(config, args.identity.as_deref())?,
        action: Action::Validate,
    })
    .await;
    output::emit(&match args.format {
        Format::Json => output::json(&report),
        Format::Table => output::restore::table(&report),
    });
    result
        .map(|()| 0)
        .map_err(|e| e.context("validation failed: nothing was changed"))
}
