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
use crate::config::Config;
use crate::error::usage;
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
    let targets: Vec<String> = match args.target.as_deref() {
        Some(t) => {
            config.known_target(t)?;
            vec![t.to_string()]
        }
        None => {
            let mut names: Vec<String> = config.postgres.iter().map(|t| t.name.clone()).collect();
            names.extend(config.redis.iter().map(|t| t.name.clone()));
            if names.is_empty() {
                config.select_postgres(None)?;
            }
            names
        }
    };
    let storage = super::open_storage(config)?;
    let now = Utc::now();
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut entries = Vec::new();
    for target in &targets {
        let (manifests, _) =
            catalog::list_complete(storage.as_ref(), Some(target.as_str())).await?;
        let dirs = catalog::scan(storage.as_ref(), Some(target.as_str())).await?;
        for kind in [BackupKind::Regular, BackupKind::Safety] {
            let pool: Vec<(String, chrono::DateTime<Utc>)> = manifests
                .iter()
                .filter(|m| m.kind == kind)
                .map(|m| (m.id.clone(), m.created_at))
                .collect();
            for decision in retention::decide(&pool, &policy, now) {
                let kind_text = format!("{kind:?}").to_lowercase();
                if decision.keep {
                    entries.push(PruneEntry {
                        target: target.clone(),
                        id: decision.id,
                        kind: kind_text,
                        action: "keep",
                        reason: decision.reasons.join(", "),
                    });
                    continue;
                }
                if !args.dry_run {
                    // Manifest first: from here on the backup is no longer complete.
                    storage.delete(&manifest_key(target, &decision.id)).await?;
                    if let Some(dir) = dirs.iter().find(|d| d.id == decision.id) {
                        for key in &dir.keys {
                            storage.delete(key).await?;
                        }
                    }
                }
                entries.push(PruneEntry {
                    target: target.clone(),
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
                    target: target.clone(),
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
                    target: target.clone(),
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
