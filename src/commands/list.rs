//! `dr list`: complete backups only, newest first.

use anyhow::Result;

use crate::backup::catalog;
use crate::cli::{Format, ListArgs};
use crate::config::Config;
use crate::output::{self, backups::ListReport};

pub async fn run(config: &Config, args: ListArgs) -> Result<i32> {
    if let Some(t) = &args.target {
        config.postgres_target(t)?;
    }
    let storage = super::open_storage(config)?;
    let (manifests, damaged) =
        catalog::list_complete(storage.as_ref(), args.target.as_deref()).await?;
    for d in &damaged {
        tracing::warn!(
            "{} cannot be read ({}); that backup is not listed and cannot be restored",
            d.key,
            d.error
        );
    }
    let report = ListReport::new(manifests, damaged);
    output::emit(&match args.format {
        Format::Json => output::json(&report),
        Format::Table => {
            output::backups::list_table(&report, &storage.describe(), chrono::Utc::now())
        }
    });
    Ok(0)
}
