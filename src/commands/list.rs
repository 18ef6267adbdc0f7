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
    let report = ListReport::new(manifests, damaged);
    output::emit(&match args.format {
        Format::Json => output::json(&report),
        Format::Table => {
            output::backups::list_table(&report, &storage.describe(), chrono::Utc::now())
        }
    });
    Ok(0)
}
