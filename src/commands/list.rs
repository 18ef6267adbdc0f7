//! `dr list`: complete backups only, newest first.

use anyhow::Result;

use crate::backup::catalog;
use crate::cli::{Format, ListArgs};
use crate::config::Config;
use crate::output::{self, backups::ListReport};

pub async fn run(config: &Config, args: ListArgs) -> Result<i32> {
    // A glob or a fleet selects several targets: their backups are read and filtered.
    let (exact, selected) = match args.target.as_deref() {
        Some(t) if config.known_target(t).is_ok() && !crate::config::is_glob(t) => (Some(t), None),
        Some(t) => (None, Some(config.selected_names(t)?)),
        None => (None, None),
    };
    let storage = super::open_storage(config)?;
    let (mut manifests, damaged) = catalog::list_complete(storage.as_ref(), exact).await?;
    if let Some(names) = &selected {
        manifests.retain(|m| names.contains(&m.target));
    }
    for d in &damaged {
        tracing::warn!(
            "{} cannot be read ({}); that backup is not listed and cannot be restored",
            d.key,
            d.error
        );
    }
    let mut report = ListReport::new(manifests, damaged);
    let mut listed: Vec<String> = report.backups.iter().map(|m| m.target.clone()).collect();
    listed.sort();
    listed.dedup();
    for t in &listed {
        report
            .pins
            .extend(crate::backup::pins::list(storage.as_ref(), t).await?);
    }
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
        }
    });
    Ok(0)
}
