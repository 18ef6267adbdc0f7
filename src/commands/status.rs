//! `dr status`: the fleet scorecard, from storage only; exit 1 if any target fails.

use anyhow::Result;

use crate::cli::{Format, StatusArgs};
use crate::config::Config;
use crate::output;
use crate::scorecard;

pub async fn run(config: &Config, args: StatusArgs) -> Result<i32> {
    let mut targets = scorecard::target_names(config);
    if let Some(wanted) = args.target.as_deref() {
        let names = config.selected_names(wanted)?;
        targets.retain(|(name, ..)| names.contains(name));
    }
    let storage = super::open_storage(config)?;
    let report = scorecard::build(storage.as_ref(), config, &targets, chrono::Utc::now()).await?;
    output::emit(&match args.format {
        Format::Json => output::json(&report),
        Format::Table => output::status::table(&report),
    });
    Ok(if report.ok { 0 } else { 1 })
}
