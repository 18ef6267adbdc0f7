//! `dr prune`: apply `[retention]`. `--dry-run` decides and removes nothing.

use anyhow::Result;

use crate::cli::{Format, PruneArgs};
use crate::config::Config;
use crate::operations::prune::{self, PruneRequest};
use crate::output;

pub async fn run(config: &Config, args: PruneArgs) -> Result<i32> {
    let (report, sent) = prune::run(
        config,
        PruneRequest {
            target: args.target.clone(),
            dry_run: args.dry_run,
            metrics_file: args.metrics_file.clone(),
        },
    )
    .await?;
    output::emit(&match args.format {
        Format::Json => output::notify::json_with(&report, &sent),
        Format::Table => output::backups::prune_table(&report),
    });
    let problems = prune::problems(&report);
    if problems.is_empty() {
        Ok(0)
    } else {
        Err(anyhow::anyhow!("{}", problems.join("; ")))
    }
}
