//! `dr drill`: a rehearsed, measured recovery that never touches production.

use anyhow::Result;

use crate::cli::{DrillArgs, Format};
use crate::config::Config;
use crate::drill::{self, DrillMode, DrillRequest};
use crate::output;

pub async fn run(config: &Config, args: DrillArgs) -> Result<i32> {
    let target = super::single_target(config, args.target.as_deref())?;
    let storage = super::open_storage(config)?;
    let report = drill::run(DrillRequest {
        config,
        storage: storage.as_ref(),
        target,
        backup_id: args.backup_id.as_deref(),
        mode: if args.sandbox {
            DrillMode::Sandbox
        } else {
            DrillMode::ScratchDatabase
        },
        jobs: args.jobs,
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
        Err(anyhow::anyhow!(
            "drill {} failed: {}",
            report.id,
            report.verdict.trim_start_matches("fail: ")
        ))
    }
}
