//! `dr prune`: apply `[retention]`; remove manifest first, then data; sweep leftovers of
//! crashed runs older than a day. `--dry-run` decides and removes nothing.

use anyhow::Result;
use chrono::{Duration, Utc};
use comfy_table::Cell;
use serde::Serialize;

use crate::backup::catalog::{self, manifest_key};
use crate::backup::manifest::{BackupKind, BackupManifest, BackupMethod};
use crate::backup::retention;
use crate::cli::{Format, PruneArgs};
use crate::config::Config;
use crate::error::usage;
use crate::output::{self, table};
use crate::storage::local::PARTIAL_MARKER;
use crate::storage::Storage;
use crate::wal::{self, Lsn};

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
    let now = Utc::now();
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut entries = Vec::new();
    for target in targets {
        let (manifests, _) = catalog::list_complete(storage.as_ref(), Some(&target.name)).await?;
        let dirs = catalog::scan(storage.as_ref(), Some(&target.name)).await?;
        // Dumps and physical base backups are kept by the policy each on their own.
        let mut kept_physical = Vec::new();
        for (kind, method) in [
            (BackupKind::Regular, BackupMethod::Dump),
            (BackupKind::Safety, BackupMethod::Dump),
            (BackupKind::Regular, BackupMethod::Physical),
        ] {
            let pool: Vec<(String, chrono::DateTime<Utc>)> = manifests
                .iter()
                .filter(|m| m.kind == kind && m.method == method)
                .map(|m| (m.id.clone(), m.created_at))
                .collect();
            for decision in retention::decide(&pool, &policy, now) {
                let kind_text = match method {
                    BackupMethod::Physical => "physical".to_string(),
                    BackupMethod::Dump => format!("{kind:?}").to_lowercase(),
                };
                if decision.keep {
                    if method == BackupMethod::Physical {
                        kept_physical.extend(manifests.iter().filter(|m| m.id == decision.id));
                    }
                    entries.push(PruneEntry {
                        target: target.name.clone(),
                        id: decision.id,
                        kind: kind_text,
                        action: "keep",
                        reason: decision.reasons.join(", "),
                    });
                    continue;
                }
                if !args.dry_run {
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
                if !args.dry_run {
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
                if !args.dry_run {
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
        entries.extend(
            prune_wal(
                storage.as_ref(),
                &target.name,
                &kept_physical,
                args.dry_run,
                now,
            )
            .await?,
        );
    }
    let report = PruneReport {
        format_version: 1,
        dry_run: args.dry_run,
        entries,
    };
    match args.format {
        Format::Json => output::emit(&output::json(&report)),
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

/// Removes the archived WAL that no kept physical base backup needs, per cluster of the
/// target, and temporary files of crashed pushes older than a day. A cluster without a
/// kept base backup keeps all of its WAL.
async fn prune_wal(
    storage: &dyn Storage,
    target: &str,
    kept: &[&BackupManifest],
    dry_run: bool,
    now: chrono::DateTime<Utc>,
) -> Result<Vec<PruneEntry>> {
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut entries = Vec::new();
    for system_id in wal::archived_systems(storage, target).await? {
        let prefix = wal::cluster_prefix(target, system_id);
        let objects = storage.list(&format!("{prefix}/")).await?;
        let stale: Vec<String> = objects
            .iter()
            .filter(|o| o.key.contains(PARTIAL_MARKER) && now - o.modified > Duration::days(1))
            .map(|o| o.key.clone())
            .collect();
        let files = wal::archived_files(objects);
        let oldest = kept
            .iter()
            .filter_map(|m| m.physical.as_ref().map(|p| (m, p)))
            .filter(|(_, p)| p.system_identifier == system_id.to_string())
            .filter_map(|(m, p)| {
                Some((
                    Lsn::parse(&p.start_lsn).ok()?.segno(p.wal_segment_size),
                    *m,
                    p,
                ))
            })
            .min_by_key(|(segno, _, _)| *segno);
        let id = format!("wal {system_id}");
        if !stale.is_empty() {
            if !dry_run {
                for key in &stale {
                    storage.delete(key).await?;
                }
            }
            entries.push(PruneEntry {
                target: target.to_string(),
                id: id.clone(),
                kind: "temporary".into(),
                action: verb,
                reason: format!(
                    "{} temporary file(s) of interrupted WAL pushes, older than a day",
                    stale.len()
                ),
            });
        }
        let Some((start, backup, info)) = oldest else {
            entries.push(PruneEntry {
                target: target.to_string(),
                id,
                kind: "wal".into(),
                action: "keep",
                reason: format!(
                    "all {} archived file(s): no kept physical base backup of this cluster, so dr cannot tell what is needed (remove by hand once the cluster is gone)",
                    files.len()
                ),
            });
            continue;
        };
        let remove = wal::retention::removable(&files, start, info.wal_segment_size);
        if !dry_run {
            // Oldest first: an interrupted prune leaves no hole in what stays.
            for f in &remove {
                storage.delete(&f.key).await?;
            }
        }
        entries.push(PruneEntry {
            target: target.to_string(),
            id: id.clone(),
            kind: "wal".into(),
            action: "keep",
            reason: format!(
                "{} archived file(s) from {} on: base backup {} (the oldest kept) needs them to become consistent, and every later one to recover to now",
                files.len() - remove.len(),
                info.start_wal,
                backup.id
            ),
        });
        if !remove.is_empty() {
            entries.push(PruneEntry {
                target: target.to_string(),
                id,
                kind: "wal".into(),
                action: verb,
                reason: format!(
                    "{} archived file(s) from {} to {}: older than the start of every kept base backup",
                    remove.len(),
                    remove.first().map(|f| f.wal.name.as_str()).unwrap_or("-"),
                    remove.last().map(|f| f.wal.name.as_str()).unwrap_or("-")
                ),
            });
        }
    }
    Ok(entries)
}
