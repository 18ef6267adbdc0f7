//! `dr backup`: one backup per selected target (PostgreSQL, and Redis with `backup = true`);
//! exit 1 if any failed.

use anyhow::Result;

use crate::cli::{BackupArgs, Format};
use crate::config::Config;
use crate::operations::backup::{self, BackupRequest};
use crate::output;

pub async fn run(config: &Config, args: BackupArgs) -> Result<i32> {
    let (report, sent) = backup::run(
        config,
        BackupRequest {
            target: args.target.clone(),
            physical: args.physical,
            incremental: args.incremental,
            parallel: args.parallel.map(usize::from),
            progress: args.format == Format::Table,
            metrics_file: args.metrics_file.clone(),
        },
    )
    .await?;
    output::emit(&match args.format {
        Format::Json => output::notify::json_with(&report, &sent),
        Format::Table => output::backups::backup_table(&report),
    });
    if report.ok {
        Ok(0)
    } else if report.failures.iter().all(|f| f.refused) {
        // Every failure was a refusal (nothing stored): exit 2, as for a usage error.
        Err(crate::error::usage(format!(
            "{} backup(s) refused: {}",
            report.failures.len(),
            report
                .failures
                .iter()
                .map(|f| f.target.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    } else {
        Err(anyhow::anyhow!(
            "{} of {} backup(s) failed: {}",
            report.failures.len(),
            report.failures.len() + report.backups.len(),
            report
                .failures
                .iter()
                .map(|f| f.target.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}
