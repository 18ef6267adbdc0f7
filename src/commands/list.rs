//! `dr list`: complete backups only, newest first.

use anyhow::Result;

use crate::backup::catalog;
use crate::cli::{Format, ListArgs};
use crate::config::Config;
use crate::output::{self, backups::ListReport};

pub async fn run(config: &Config, args: ListArgs) -> Result<i32> {
    if let Some(t) = &args.target {
        config.known_target(t)?;
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
    let mut report = ListReport::new(manifests, damaged);
    // The restorable window of every target with a physical base backup.
    let mut targets: Vec<String> = report
        .backups
        .iter()
        .filter(|m| m.physical.is_some())
        .map(|m| m.target.clone())
        .collect();
    targets.sort();
    targets.dedup();
    for t in &targets {
        match crate::restore::pitr::windows(storage.as_ref(), t, &report.backups).await {
            Ok(w) => report.windows.extend(w),
            Err(e) => tracing::warn!("cannot work out the restorable window of {t}: {e:#}"),
        }
        report
            .restore_points
            .extend(crate::wal::marks::list(storage.as_ref(), t).await?);
    }
    output::emit(&match args.format {
        Format::Json => output::json(&report),
        Format::Table => {
            output::backups::list_table(&report, &storage.describe(), chrono::Utc::now())
                + &output::pitr::windows_text(&report.windows, &report.restore_points)
        }
    });
    Ok(0)
}
