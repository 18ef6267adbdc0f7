//! The Redis side of `verify` and `drill`: each command dispatches here when its
//! `--target` is a `[[redis]]` target with `backup = true`.

use anyhow::{anyhow, Result};

use crate::cli::{DrillArgs, Format, VerifyArgs};
use crate::config::{Config, RedisTarget};
use crate::drill::redis::{self as redis_drill, RedisDrillRequest};
use crate::operations::redis;
use crate::output;
use crate::report::Status;

pub async fn verify(config: &Config, target: &RedisTarget, args: VerifyArgs) -> Result<i32> {
    if !args.only.selection().is_empty() {
        return Err(crate::error::usage(format!(
            "--only-table and --only-schema name PostgreSQL tables, and {} is a Redis target, whose keys verify compares as a whole; nothing was checked; hint: leave them out",
            target.name
        )));
    }
    let report = redis::verify(
        config,
        target,
        &args.backup_id,
        args.into.into.as_ref(),
        args.into.into_env.as_ref(),
    )
    .await?;
    output::emit(&match args.format {
        Format::Json => output::json(&report),
        Format::Table => output::redis::verify_table(&report),
    });
    if report.ok {
        Ok(0)
    } else {
        Err(anyhow!(
            "verification of {} against backup {} failed: {}",
            report.destination,
            report.backup_id,
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
    super::refuse_for_redis_drill(&args, &target.name)?;
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
