//! `dr backup` as a library: one backup per selected target (PostgreSQL, and Redis with
//! `backup = true`), scheduled over the fleet, then the notifications.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use crate::backup::manifest::{BackupKind, BackupManifest};
use crate::backup::{self, physical, BackupPlan};
use crate::config::{BackupConfig, BackupTarget, Config, NotifyEvent};
use crate::fleet::Fleet;
use crate::notify::{NotifyReport, OperationRun, Outcome};
use crate::pg::ConnTarget;
use crate::report::FORMAT_VERSION;
use crate::secret::scrub;

/// What `dr backup` was asked.
pub struct BackupRequest {
    pub target: Option<String>,
    /// A base backup (`--physical`) instead of a dump.
    pub physical: bool,
    /// `--incremental` (with `physical`): against the newest base backup of the cluster.
    pub incremental: bool,
    /// `--parallel`; else `[backup] parallel`.
    pub parallel: Option<usize>,
    /// Progress bars may be shown (a table on a terminal, not JSON).
    pub progress: bool,
    pub metrics_file: Option<PathBuf>,
}

/// A target whose backup failed.
#[derive(Debug, Serialize)]
pub struct BackupFailure {
    pub target: String,
    pub error: String,
    /// Refused before anything was stored (a usage or configuration error: exit 2).
    #[serde(skip)]
    pub refused: bool,
}

/// `dr backup --format json`.
#[derive(Debug, Serialize)]
pub struct BackupReport {
    pub format_version: u32,
    pub ok: bool,
    pub backups: Vec<BackupManifest>,
    pub failures: Vec<BackupFailure>,
}

impl BackupReport {
    pub fn new(backups: Vec<BackupManifest>, failures: Vec<BackupFailure>) -> Self {
        BackupReport {
            format_version: FORMAT_VERSION,
            ok: failures.is_empty(),
            backups,
            failures,
        }
    }
}

/// Backs up the selected targets; the report and what the sinks were told.
pub async fn run(config: &Config, args: BackupRequest) -> Result<(BackupReport, NotifyReport)> {
    let mut targets = match config.select_backup_targets(args.target.as_deref()) {
        Ok(targets) => targets,
        // Only fleets whose databases could not be listed: reported as failures below.
        Err(_) if !config.discovery_failures.is_empty() => Vec::new(),
        Err(e) => return Err(e),
    };
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
    let storage = super::setup::open_storage(config)?;
    let notifier = OperationRun::start(config, NotifyEvent::Backup, args.metrics_file.clone())?;
    let parallel = args
        .parallel
        .or(config.backup.parallel)
        .unwrap_or(BackupConfig::DEFAULT_PARALLEL);
    // Progress bars of several backups at once would overwrite each other.
    let show_progress = args.progress && (parallel == 1 || targets.len() == 1);
    let fleet = Fleet::new(config, parallel);
    let storage = storage.as_ref();
    let physical = args.physical;
    let incremental = args.incremental;
    let identities = if args.incremental {
        // Only an encrypted parent needs it; a missing or exposed key is said then.
        crate::encryption::Identities::load(config.encryption.as_ref(), config.dir(), None)
            .ok()
            .flatten()
            .map(std::sync::Arc::new)
    } else {
        None
    };
    let identities = &identities;
    let done: Vec<(String, u64, Result<BackupManifest>)> = fleet
        .run(targets, |selected| {
            let fleet = &fleet;
            async move {
                let started = std::time::Instant::now();
                let (name, result) = match selected {
                    BackupTarget::Redis(t) => (
                        &t.name,
                        async {
                            let _one = fleet.lock(format!("redis {}", t.name)).await;
                            super::redis::backup(config, storage, t, show_progress).await
                        }
                        .await,
                    ),
                    BackupTarget::Postgres(t) => (
                        &t.name,
                        async {
                            let conn = ConnTarget::parse(&t.resolve_url()?)?;
                            let _held = fleet.hold_for_backup(&conn, physical).await?;
                            let mut plan = BackupPlan::new(
                                t,
                                conn,
                                BackupKind::Regular,
                                config,
                                show_progress,
                            )?;
                            plan.incremental = incremental;
                            plan.identities = identities.clone();
                            if physical {
                                plan.standby = t
                                    .resolve_standby_url()?
                                    .map(|u| ConnTarget::parse(&u))
                                    .transpose()?;
                            }
                            if physical {
                                physical::run(storage, plan).await
                            } else {
                                backup::run(storage, plan).await
                            }
                        }
                        .await,
                    ),
                };
                (name.clone(), started.elapsed().as_millis() as u64, result)
            }
        })
        .await;
    let mut manifests = Vec::new();
    let mut failures = Vec::new();
    let mut outcomes = Vec::new();
    for (name, duration_ms, result) in done {
        match result {
            Ok(m) => {
                outcomes.push(Outcome::backup_made(
                    &name,
                    &m.id,
                    m.duration_ms,
                    m.size_bytes,
                ));
                manifests.push(m);
            }
            Err(e) => {
                let error = scrub(&format!("{e:#}"), &config.secrets());
                let refused = crate::error::exit_code(&e) == crate::error::EXIT_USAGE;
                tracing::error!("backup of {name} failed: {error}");
                let mut outcome = Outcome::new(Some(&name), false, error.clone());
                outcome.duration_ms = duration_ms;
                outcomes.push(outcome);
                failures.push(BackupFailure {
                    target: name,
                    error,
                    refused,
                });
            }
        }
    }
    // A storage that took a backup is set up (as `dr init` does), so that `wal-push`
    // accepts it; a failed backup leaves nothing behind, not even the marker.
    if !manifests.is_empty() {
        if let Err(e) = crate::storage::marker::ensure(storage).await {
            tracing::warn!("{e:#}");
        }
    }
    // Fleets whose server could not list its databases: their backups did not run.
    for (fleet, error) in &config.discovery_failures {
        let error = scrub(error, &config.secrets());
        tracing::error!("backup of {fleet} failed: {error}");
        outcomes.push(Outcome::new(Some(fleet), false, error.clone()));
        failures.push(BackupFailure {
            target: fleet.clone(),
            error,
            refused: false,
        });
    }
    let sent = notifier.finish(outcomes).await;
    Ok((BackupReport::new(manifests, failures), sent))
}
