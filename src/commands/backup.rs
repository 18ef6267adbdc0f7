//! `dr backup`: one backup per selected target (PostgreSQL, and Redis with `backup = true`);
//! exit 1 if any failed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use futures::StreamExt;

use crate::backup::manifest::{BackupKind, BackupManifest};
use crate::backup::{self, physical, BackupPlan};
use crate::cli::{BackupArgs, Format};
use crate::config::{BackupConfig, BackupTarget, Config, NotifyEvent};
use crate::notify::{OperationRun, Outcome};
use crate::output::{self, backups::BackupFailure, backups::BackupReport};
use crate::pg::slots::ServerSlots;
use crate::pg::ConnTarget;
use crate::secret::scrub;

pub async fn run(config: &Config, args: BackupArgs) -> Result<i32> {
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
    let storage = super::open_storage(config)?;
    let notifier = OperationRun::start(config, NotifyEvent::Backup, args.metrics_file.clone())?;
    let parallel = args
        .parallel
        .map(usize::from)
        .or(config.backup.parallel)
        .unwrap_or(BackupConfig::DEFAULT_PARALLEL);
    // Progress bars of several backups at once would overwrite each other.
    let show_progress = args.format == Format::Table && (parallel == 1 || targets.len() == 1);
    let slots = ServerSlots::new(config.connections.max_per_server());
    let databases = DatabaseLocks::default();
    let storage = storage.as_ref();
    let physical = args.physical;
    let mut done: Vec<(usize, String, u64, Result<BackupManifest>)> =
        futures::stream::iter(targets.into_iter().enumerate().map(|(i, selected)| {
            let (slots, databases) = (&slots, &databases);
            async move {
                let started = std::time::Instant::now();
                let (name, result) = match selected {
                    BackupTarget::Redis(t) => (
                        &t.name,
                        async {
                            let _one = databases.lock(format!("redis {}", t.name)).await;
                            super::redis_data::backup(config, storage, t, show_progress).await
                        }
                        .await,
                    ),
                    BackupTarget::Postgres(t) => (
                        &t.name,
                        async {
                            let conn = ConnTarget::parse(&t.resolve_url()?)?;
                            let _one = databases
                                .lock(format!("{}/{}", conn.server(), conn.database))
                                .await;
                            // A dump holds two connections; a base backup one besides its
                            // replication connection.
                            let needed = if physical { 1 } else { DUMP_CONNECTIONS };
                            let mut _slots = slots.acquire(&conn, needed).await?;
                            _slots.release_after_database(&conn.database);
                            let plan = BackupPlan::new(
                                t,
                                conn,
                                BackupKind::Regular,
                                config,
                                show_progress,
                            )?;
                            if physical {
                                physical::run(storage, plan).await
                            } else {
                                backup::run(storage, plan).await
                            }
                        }
                        .await,
                    ),
                };
                (
                    i,
                    name.clone(),
                    started.elapsed().as_millis() as u64,
                    result,
                )
            }
        }))
        .buffer_unordered(parallel)
        .collect()
        .await;
    done.sort_by_key(|(i, ..)| *i);
    let mut manifests = Vec::new();
    let mut failures = Vec::new();
    let mut outcomes = Vec::new();
    for (_, name, duration_ms, result) in done {
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
                tracing::error!("backup of {name} failed: {error}");
                let mut outcome = Outcome::new(Some(&name), false, error.clone());
                outcome.duration_ms = duration_ms;
                outcomes.push(outcome);
                failures.push(BackupFailure {
                    target: name,
                    error,
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
        });
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

/// Connections one pg_dump backup holds at once: the session with the lock and the
/// snapshot, and pg_dump's (pg_dumpall's, with include_globals, comes after it).
const DUMP_CONNECTIONS: usize = 2;

/// One backup per database at a time, even when two targets name the same database.
#[derive(Default)]
struct DatabaseLocks {
    held: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl DatabaseLocks {
    async fn lock(&self, database: String) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .held
            .lock()
            .expect("database locks")
            .entry(database)
            .or_default()
            .clone();
        lock.lock_owned().await
    }
}
