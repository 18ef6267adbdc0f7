//! `dr backup`: one backup per selected target (PostgreSQL, and Redis with `backup = true`);
//! exit 1 if any failed.

use anyhow::Result;

use crate::backup::{self, manifest::BackupKind, physical, BackupPlan};
use crate::cli::{BackupArgs, Format};
use crate::config::{BackupTarget, Config, NotifyEvent};
use crate::notify::{OperationRun, Outcome};
use crate::output::{self, backups::BackupFailure, backups::BackupReport};
use crate::pg::ConnTarget;
use crate::secret::scrub;

pub async fn run(config: &Config, args: BackupArgs) -> Result<i32> {
    let mut targets = config.select_backup_targets(args.target.as_deref())?;
    if args.physical {
        // Base backups are a PostgreSQL thing; Redis targets keep their own schedule.
        targets.retain(|t| matches!(t, BackupTarget::Postgres(_)));
        if targets.is_empty() {
            return Err(crate::error::usage(
                "--physical takes a base backup of a PostgreSQL target, and none is selected; hint: name one with --target",
            ));
        }
    }
    // An unset url_env is a configuration error (exit 2) before anything starts.
    for target in &targets {
        match target {
            BackupTarget::Postgres(t) => t.resolve_url()?,
            BackupTarget::Redis(t) => t.resolve_url()?,
        };
    }
    let storage = super::open_storage(config)?;
    let notifier = OperationRun::start(config, NotifyEvent::Backup, args.metrics_file.clone())?;
    let show_progress = args.format == Format::Table;
    let mut manifests = Vec::new();
    let mut failures = Vec::new();
    let mut outcomes = Vec::new();
    for selected in targets {
        let started = std::time::Instant::now();
        let (name, result) = match selected {
            BackupTarget::Redis(t) => (
                &t.name,
                super::redis_data::backup(config, storage.as_ref(), t, show_progress).await,
            ),
            BackupTarget::Postgres(t) => (
                &t.name,
                async {
                    let conn = ConnTarget::parse(&t.resolve_url()?)?;
                    let plan =
                        BackupPlan::new(t, conn, BackupKind::Regular, config, show_progress)?;
                    if args.physical {
                        physical::run(storage.as_ref(), plan).await
                    } else {
                        backup::run(storage.as_ref(), plan).await
                    }
                }
                .await,
            ),
        };
        match result {
            Ok(m) => {
                outcomes.push(Outcome::backup_made(
                    name,
                    &m.id,
                    m.duration_ms,
                    m.size_bytes,
                ));
                manifests.push(m);
            }
            Err(e) => {
                let error = scrub(&format!("{e:#}"), &config.secrets());
                tracing::error!("backup of {name} failed: {error}");
                let mut outcome = Outcome::new(Some(name), false, error.clone());
                outcome.duration_ms = started.elapsed().as_millis() as u64;
                outcomes.push(outcome);
                failures.push(BackupFailure {
                    target: name.clone(),
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
