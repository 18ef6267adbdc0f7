//! `dr prune`: apply `[retention]`; remove manifest first, then data; sweep leftovers of
//! crashed runs older than a day. `--dry-run` decides and removes nothing.

use anyhow::Result;
use chrono::{Duration, Utc};
use comfy_table::Cell;
use serde::Serialize;

use crate::backup::catalog::{self, manifest_key};
use crate::backup::manifest::BackupKind;
use crate::backup::retention;
use crate::cli::{Format, PruneArgs};
use crate::config::{Config, NotifyEvent, PostgresTarget, RetentionConfig};
use crate::error::usage;
use crate::notify::{OperationRun, Outcome};
use crate::output::{self, table};
use crate::storage::local::PARTIAL_MARKER;

#[derive(Debug, Serialize)]
struct PruneEntry {
    target: String,
    id: String,
    kind: String,
    action: &'static str,
    reason: String,
}

#[derive(Debug, Serialize)]
struct PruneReport {
    format_version: u32,
    dry_run: bool,
    entries: Vec<PruneEntry>,
}

pub async fn run(config: &Config, args: PruneArgs) -> Result<i32> {
    let policy = config.retention.clone().ok_or_else(|| {
        usage(format!(
            "{}: no [retention] policy; prune refuses to guess what to keep; hint: add [retention] keep_last = 7, keep_daily = 7, keep_weekly = 4, keep_monthly = 6",
            config.path.display()
        ))
    })?;
    let targets = config.select_postgres(args.target.as_deref())?;
    let storage = super::open_storage(config)?;
    let notifier = OperationRun::start(config, NotifyEvent::Prune, args.metrics_file.clone())?;
    let started = std::time::Instant::now();
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut entries = Vec::new();
    let result = apply(
        storage.as_ref(),
        &targets,
        &policy,
        args.dry_run,
        verb,
        &mut entries,
    )
    .await;
    let outcomes = targets
        .iter()
        .map(|t| {
            let mut o = match &result {
                Ok(()) => {
                    let removed = entries
                        .iter()
                        .filter(|e| e.target == t.name && e.action != "keep")
                        .count();
                    Outcome::new(
                        Some(&t.name),
                        true,
                        format!("{removed} backup(s) or leftover(s) {verb}"),
                    )
                }
                Err(e) => Outcome::new(Some(&t.name), false, format!("prune failed: {e:#}")),
            };
            o.duration_ms = started.elapsed().as_millis() as u64;
            o
        })
        .collect();
    let sent = notifier.finish(outcomes).await;
    result?;
    let report = PruneReport {
        format_version: 1,
        dry_run: args.dry_run,
        entries,
    };
    match args.format {
        Format::Json => output::emit(&output::notify::json_with(&report, &sent)),
        Format::Table => {
            let mut t = table::new_table(&["target", "backup id", "kind", "action", "why"]);
            for e in &report.entries {
                t.add_row(vec![
                    Cell::new(&e.target),
                    Cell::new(&e.id),
                    Cell::new(&e.kind),
                    Cell::new(e.action),
                    Cell::new(&e.reason),
                ]);
            }
            let removed = report.entries.iter().filter(|e| e.action != "keep").count();
            output::emit(&format!(
                "{t}\n{} kept, {removed} {verb}{}\n",
                report.entries.len() - removed,
                if args.dry_run { " (dry run)" } else { "" }
            ));
        }
    }
    Ok(0)
}

/// Decides and removes, target by target; `entries` holds what was done, also when a
/// removal fails part way.
async fn apply(
    storage: &dyn crate::storage::Storage,
    targets: &[&PostgresTarget],
    policy: &RetentionConfig,
    dry_run: bool,
    verb: &'static str,
    entries: &mut Vec<PruneEntry>,
) -> Result<()> {
    let now = Utc::now();
    for target in targets {
        let (manifests, _) = catalog::list_complete(storage, Some(&target.name)).await?;
        let dirs = catalog::scan(storage, Some(&target.name)).await?;
        for kind in [BackupKind::Regular, BackupKind::Safety] {
            let pool: Vec<(String, chrono::DateTime<Utc>)> = manifests
                .iter()
                .filter(|m| m.kind == kind)
                .map(|m| (m.id.clone(), m.created_at))
                .collect();
            for decision in retention::decide(&pool, policy, now) {
                let kind_text = format!("{kind:?}").to_lowercase();
                if decision.keep {
                    entries.push(PruneEntry {
                        target: target.name.clone(),
                        id: decision.id,
                        kind: kind_text,
                        action: "keep",
                        reason: decision.reasons.join(", "),
                    });
                    continue;
                }
                if !dry_run {
                    // Manifest first: from here on the backup is no longer complete.
                    storage
                        .delete(&manifest_key(&target.name, &decision.id))
                        .await?;
                    if let Some(dir) = dirs.iter().find(|d| d.id == decision.id) {
                        for key in &dir.keys {
                            storage.delete(key).await?;
                        }
                    }
                }
                entries.push(PruneEntry {
                    target: target.name.clone(),
                    id: decision.id,
                    kind: kind_text,
                    action: verb,
                    reason: "outside the retention policy".into(),
                });
            }
        }
        for dir in &dirs {
            let stale_partials: Vec<&String> = dir
                .keys
                .iter()
                .filter(|k| k.contains(PARTIAL_MARKER))
                .collect();
            let old = now - dir.newest_modified > Duration::days(1);
            if !dir.has_manifest && old {
                if !dry_run {
                    for key in &dir.keys {
                        storage.delete(key).await?;
                    }
                }
                entries.push(PruneEntry {
                    target: target.name.clone(),
                    id: dir.id.clone(),
                    kind: "incomplete".into(),
                    action: verb,
                    reason: format!("leftover of an interrupted or failed backup ({} object(s), no manifest, older than a day)", dir.keys.len()),
                });
            } else if dir.has_manifest && old && !stale_partials.is_empty() {
                if !dry_run {
                    for key in &stale_partials {
                        storage.delete(key).await?;
                    }
                }
                entries.push(PruneEntry {
                    target: target.name.clone(),
                    id: dir.id.clone(),
                    kind: "temporary".into(),
                    action: verb,
                    reason: format!(
                        "{} temporary file(s) of a crashed write",
                        stale_partials.len()
                    ),
                });
            }
        }
    }
    Ok(())
}
