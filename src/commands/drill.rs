//! `dr drill`: a rehearsed, measured recovery that never touches production.

use anyhow::Result;
use comfy_table::Cell;

use crate::cli::{DrillArgs, Format};
use crate::config::Config;
use crate::drill::{self, DrillRequest};
use crate::output::{self, table};

pub async fn run(config: &Config, args: DrillArgs) -> Result<i32> {
    if let Some(redis) = config.redis_backup_target(args.target.as_deref()) {
        return super::redis_data::drill(config, redis?, args).await;
    }
    let target = super::single_target(config, args.target.as_deref())?;
    let storage = super::open_storage(config)?;
    let report = drill::run(DrillRequest {
        config,
        storage: storage.as_ref(),
        target,
        backup_id: args.backup_id.as_deref(),
        sandbox: args.sandbox,
        jobs: args.jobs,
    })
    .await?;
    render(&report, args.format);
    if report.passed {
        Ok(0)
    } else {
        Err(anyhow::anyhow!(
            "drill {} failed: {}",
            report.id,
            report.verdict.trim_start_matches("fail: ")
        ))
    }
}

pub fn render(report: &crate::drill::DrillReport, format: Format) {
    match format {
        Format::Json => output::emit(&output::json(&report)),
        Format::Table => {
            let mut text = super::restore::steps_table(&report.phases);
            let mut t = table::new_table(&["objective", "measured", "target", "met"]);
            let met = |m: Option<bool>| {
                Cell::new(match m {
                    Some(true) => "yes",
                    Some(false) => "NO",
                    None => "not set",
                })
            };
            let ms = |v: Option<u64>| Cell::new(v.map(table::millis).unwrap_or_else(|| "-".into()));
            t.add_row(vec![
                Cell::new("RTO (restore + verify)"),
                Cell::new(table::millis(report.rto_ms)),
                ms(report.rto_objective_ms),
                met(report.rto_met),
            ]);
            t.add_row(vec![
                Cell::new("RPO (age of the backup)"),
                ms(report.rpo_ms),
                ms(report.rpo_objective_ms),
                met(report.rpo_met),
            ]);
            text.push_str(&format!(
                "{t}\ndrill {} ({}): {}\nreport stored as drills/{}/{}.json\n",
                report.id, report.mode, report.verdict, report.target, report.id
            ));
            output::emit(&text);
        }
    }
}
