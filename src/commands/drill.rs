//! `dr drill`: a rehearsed, measured recovery that never touches production.

use anyhow::Result;

use crate::cli::{DrillArgs, Format};
use crate::config::{Config, NotifyEvent};
use crate::drill::{self, DrillMode, DrillRequest};
use crate::notify::{OperationRun, Outcome};
use crate::operations::outcomes;
use crate::output;

pub async fn run(config: &Config, args: DrillArgs) -> Result<i32> {
    if let Some(redis) = config.redis_backup_target(args.target.as_deref()) {
        return super::redis_verify::drill(config, redis?, args).await;
    }
    let target = super::single_target(config, args.target.as_deref())?;
    let storage = super::open_storage(config)?;
    let notifier = OperationRun::start(config, NotifyEvent::Drill, args.metrics_file.clone())?;
    let started = std::time::Instant::now();
    let result = if args.pitr {
        let to_time = match args.to_time.as_deref() {
            Some(t) => Some(crate::restore::pitr::parse_time(t)?),
            None => None,
        };
        drill::pitr::run(drill::pitr::PitrDrillRequest {
            config,
            storage: storage.as_ref(),
            target,
            to_time,
            backup_id: args.backup_id.as_deref(),
            identities: super::identities(config, args.identity.as_deref())?,
            identity_file: args.identity.clone(),
            timeline: args
                .timeline
                .as_deref()
                .map(crate::restore::pitr::TimelineChoice::parse)
                .transpose()?,
            system_id: args.system_id,
            to_latest: args.to_latest,
        })
        .await
    } else {
        drill::run(DrillRequest {
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
            with_globals: args.with_globals,
            no_owner: args.no_owner,
            identities: super::identities(config, args.identity.as_deref())?,
        })
        .await
    };
    let outcome = outcomes::drill(&target.name, &result);
    let duration_ms = started.elapsed().as_millis() as u64;
    let sent = notifier
        .finish_after(
            &result,
            vec![Outcome {
                duration_ms,
                ..outcome
            }],
        )
        .await;
    let report = result?;
    output::emit(&match args.format {
        Format::Json => output::notify::json_with(&report, &sent),
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
