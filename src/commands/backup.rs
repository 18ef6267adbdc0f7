//! `dr backup`: one backup per selected target; exit 1 if any failed.

use anyhow::Result;

use crate::backup::{self, manifest::BackupKind, BackupPlan};
use crate::cli::{BackupArgs, Format};
use crate::config::{Config, NotifyEvent};
use crate::notify::{OperationRun, Outcome};
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
    let notifier = OperationRun::start(config, NotifyEvent::Backup, args.metrics_file.clone())?;
    let mut manifests = Vec::new();
    let mut failures = Vec::new();
    let mut outcomes = Vec::new();
    for target in targets {
        let started = std::time::Instant::now();
        let result = async {
            let conn = ConnTarget::parse(&target.resolve_url()?)?;
            let show_progress = args.format == Format::Table;
            let plan = BackupPlan::new(target, conn, BackupKind::Regular, config, show_progress)?;
            backup::run(storage.as_ref(), plan).await
        }
        .await;
        match result {
            Ok(m) => {
                outcomes.push(Outcome::backup_made(
                    &target.name,
                    &m.id,
                    m.duration_ms,
                    m.size_bytes,
                ));
                manifests.push(m);
            }
            Err(e) => {
                let error = scrub(&format!("{e:#}"), &config.secrets());
                tracing::error!("backup of {} failed: {error}", target.name);
                let mut outcome = Outcome::new(Some(&target.name), false, error.clone());
                outcome.duration_ms = started.elapsed().as_millis() as u64;
                outcomes.push(outcome);
                failures.push(BackupFailure {
                    target: target.name.clone(),
                    error,
                });
            }
        }
    }
    let sent = notifier.finish(outcomes).await;
    let report = BackupReport::new(manifests, failures);
    output::emit(&match args.format {
        Format::Json => output::notify::json_with(&report, &sent),
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
