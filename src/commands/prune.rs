//! `dr prune`: apply `[retention]`. `--dry-run` decides and removes nothing.

use anyhow::Result;

use crate::cli::{Format, PruneArgs};
use crate::config::Config;
use crate::error::usage;
use crate::output;
use crate::prune;

pub async fn run(config: &Config, args: PruneArgs) -> Result<i32> {
    let policy = config.retention.clone().ok_or_else(|| {
        usage(format!(
            "{}: no [retention] policy; prune refuses to guess what to keep; hint: add [retention] keep_last = 7, keep_daily = 7, keep_weekly = 4, keep_monthly = 6",
            config.path.display()
        ))
    })?;
    let targets: Vec<&str> = config
        .select_postgres(args.target.as_deref())?
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    let storage = super::open_storage(config)?;
    let plan = prune::plan(storage.as_ref(), &targets, &policy, chrono::Utc::now()).await?;
    let report = prune::apply(storage.as_ref(), plan, args.dry_run).await?;
    output::emit(&match args.format {
        Format::Json => output::json(&report),
        Format::Table => output::backups::prune_table(&report),
    });
    let corrupt: Vec<&str> = report
        .backups
        .iter()
        .filter(|e| e.kind == prune::EntryKind::Corrupt)
        .map(|e| e.backup_id.as_str())
        .collect();
    if corrupt.is_empty() {
        Ok(0)
    } else {
        Err(anyhow::anyhow!(
            "backup(s) {} do not match their manifests: they were kept for inspection and not counted, so older good backups were kept in their place; hint: look at them (`dr validate --backup-id ID`), then remove them by hand",
            corrupt.join(", ")
        ))
    }
}
