//! `dr backup`: one backup per selected target; exit 1 if any failed.

use anyhow::Result;

use crate::backup::{self, manifest::BackupKind, physical, BackupPlan};
use crate::cli::{BackupArgs, Format};
use crate::config::Config;
use crate::output::{self, backups::BackupFailure, backups::BackupReport};
use crate::pg::ConnTarget;
use crate::secret::scrub;

pub async fn run(config: &Config, args: BackupArgs) -> Result<i32> {
    let targets = config.select_postgres(args.target.as_deref())?;
    // An unset url_env is a configuration error (exit 2) before anything starts.
    for target in &targets {
        target.resolve_url()?;
    }
    let storage = super::open_storage(config)?;
    let mut manifests = Vec::new();
    let mut failures = Vec::new();
    for target in targets {
        let result = async {
            let conn = ConnTarget::parse(&target.resolve_url()?)?;
            let show_progress = args.format == Format::Table;
            let plan = BackupPlan::new(target, conn, BackupKind::Regular, config, show_progress)?;
            if args.physical {
                physical::run(storage.as_ref(), plan).await
            } else {
                backup::run(storage.as_ref(), plan).await
            }
        }
        .await;
        match result {
            Ok(m) => manifests.push(m),
            Err(e) => {
                let error = scrub(&format!("{e:#}"), &config.secrets());
                tracing::error!("backup of {} failed: {error}", target.name);
                failures.push(BackupFailure {
                    target: target.name.clone(),
                    error,
                });
            }
        }
    }
    let report = BackupReport::new(manifests, failures);
    output::emit(&match args.format {
        Format::Json => output::json(&report),
        Format::Table => output::backups::backup_table(&report),
    });
    if report.ok {
        Ok(0)
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
