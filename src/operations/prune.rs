//! `dr prune` as a library: the targets it works on, `[retention]` applied (or only
//! decided, with `dry_run`), the notifications, and what was kept for inspection.

use std::path::PathBuf;

use anyhow::Result;

use crate::config::{Config, NotifyEvent};
use crate::error::usage;
use crate::notify::{NotifyReport, OperationRun, Outcome};
use crate::prune::{self, PruneReport};

/// What `dr prune` was asked.
pub struct PruneRequest {
    pub target: Option<String>,
    /// Decide and remove nothing.
    pub dry_run: bool,
    pub metrics_file: Option<PathBuf>,
}

/// Prunes the selected targets' backups; the report and what the sinks were told.
pub async fn run(config: &Config, args: PruneRequest) -> Result<(PruneReport, NotifyReport)> {
    let policy = config.retention.clone().ok_or_else(|| {
        usage(format!(
            "{}: no [retention] policy; prune refuses to guess what to keep; hint: add [retention] keep_last = 7, keep_daily = 7, keep_weekly = 4, keep_monthly = 6",
            config.path.display()
        ))
    })?;
    let selected;
    let targets: Vec<&str> = match args.target.as_deref() {
        Some(t) if config.known_target(t).is_ok() && !crate::config::is_glob(t) => vec![t],
        // A glob or a fleet: every target it selects.
        Some(t) => {
            selected = config.selected_names(t)?;
            selected.iter().map(String::as_str).collect()
        }
        // Every target's backups, Redis ones too (also of targets no longer backed up).
        None if !config.redis.is_empty() => config
            .postgres
            .iter()
            .map(|t| t.name.as_str())
            .chain(config.redis.iter().map(|t| t.name.as_str()))
            .collect(),
        None => config
            .select_postgres(None)?
            .iter()
            .map(|t| t.name.as_str())
            .collect(),
    };
    let storage = super::setup::open_storage(config)?;
    let notifier = OperationRun::start(config, NotifyEvent::Prune, args.metrics_file.clone())?;
    let started = std::time::Instant::now();
    let result = async {
        let plan = prune::plan(
            storage.as_ref(),
            &targets,
            &policy,
            config.backup.rehash_after(),
            chrono::Utc::now(),
        )
        .await?;
        prune::apply(storage.as_ref(), plan, args.dry_run).await
    }
    .await;
    let outcomes = targets
        .iter()
        .map(|&target| {
            let outcome = match &result {
                Ok(report) => {
                    let removed = report
                        .backups
                        .iter()
                        .filter(|e| e.target == target && e.action == prune::Action::Remove)
                        .count();
                    let verb = if args.dry_run {
                        "would remove"
                    } else {
                        "removed"
                    };
                    Outcome::new(
                        Some(target),
                        true,
                        format!("{verb} {removed} backup(s) or leftover(s)"),
                    )
                }
                Err(e) => Outcome::new(Some(target), false, format!("prune failed: {e:#}")),
            };
            Outcome {
                duration_ms: started.elapsed().as_millis() as u64,
                ..outcome
            }
        })
        .collect();
    let sent = notifier.finish(outcomes).await;
    Ok((result?, sent))
}

/// Backups kept for inspection (corrupt, or base backups the WAL archive cannot restore):
/// each kind one sentence with its hint; none when the prune found nothing wrong.
pub fn problems(report: &PruneReport) -> Vec<String> {
    let corrupt: Vec<&str> = report
        .backups
        .iter()
        .filter(|e| e.kind == prune::EntryKind::Corrupt)
        .map(|e| e.backup_id.as_str())
        .collect();
    let unrestorable: Vec<&str> = report
        .backups
        .iter()
        .filter(|e| e.kind == prune::EntryKind::Unrestorable)
        .map(|e| e.backup_id.as_str())
        .collect();
    let mut problems = Vec::new();
    if !corrupt.is_empty() {
        problems.push(format!(
            "backup(s) {} do not match their manifests: they were kept for inspection and not counted, so older good backups were kept in their place; hint: look at them (`dr validate --backup-id ID`), then remove them by hand",
            corrupt.join(", ")
        ));
    }
    if !unrestorable.is_empty() {
        problems.push(format!(
            "base backup(s) {} cannot be restored from the WAL archive as it stands (each entry says why; see `dr list`); they were kept for inspection and not counted, so the newest restorable base backup and its WAL were kept in their place; hint: find out who removed the WAL, take a new base backup (`dr backup --physical`), then remove the unrestorable ones by hand",
            unrestorable.join(", ")
        ));
    }
    problems
}
