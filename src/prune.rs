//! Retention applied to storage, as a plan and its application. The plan decides what to
//! keep and why ([`crate::backup::retention`]) and what leftovers of crashed runs to sweep;
//! applying removes each backup's manifest first, then its data, so a half-removed
//! backup never looks complete.

use std::collections::HashMap;

use anyhow::{Context, Result};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::backup::catalog::{self, manifest_key};
use crate::backup::integrity::{self, CheckedBy};
use crate::backup::manifest::{BackupKind, BackupManifest, BackupMethod, Engine};
use crate::backup::pins;
use crate::backup::pitr_window::{self, KeptBase};
use crate::backup::retention;
use crate::config::{RetentionConfig, RetentionKind};
use crate::report::FORMAT_VERSION;
use crate::restore::window::{self, BasePoint};
use crate::storage::local::PARTIAL_MARKER;
use crate::storage::Storage;
use crate::wal::continuity::{self, Chain};
use crate::wal::{self, Lsn};

/// What a prune entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A complete backup taken by `dr backup` or a drill.
    Regular,
    /// A complete safety copy taken by `dr restore`.
    Safety,
    /// Data without a manifest: an interrupted or failed backup.
    Incomplete,
    /// Temporary files of a crashed write inside a complete backup.
    Temporary,
    /// A complete backup whose stored bytes do not match its manifest.
    Corrupt,
    /// A complete physical base backup (`dr backup --physical`).
    Physical,
    /// Archived WAL of one cluster (`backup_id` is `wal:<system identifier>`).
    Wal,
    /// A complete physical base backup the WAL archive cannot make consistent (it lacks a
    /// segment between the backup's start and its consistency point).
    Unrestorable,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Regular => "regular",
            EntryKind::Safety => "safety",
            EntryKind::Incomplete => "incomplete",
            EntryKind::Temporary => "temporary",
            EntryKind::Corrupt => "corrupt",
            EntryKind::Physical => "physical",
            EntryKind::Wal => "wal",
            EntryKind::Unrestorable => "unrestorable",
        }
    }
}

impl From<BackupKind> for EntryKind {
    fn from(kind: BackupKind) -> Self {
        match kind {
            BackupKind::Regular => EntryKind::Regular,
            BackupKind::Safety => EntryKind::Safety,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Keep,
    Remove,
}

#[derive(Debug, Clone, Serialize)]
pub struct PruneEntry {
    pub target: String,
    pub backup_id: String,
    pub kind: EntryKind,
    pub action: Action,
    pub reason: String,
    /// What removal deletes, in order (the manifest first).
    #[serde(skip)]
    pub keys: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PruneReport {
    pub format_version: u32,
    pub ok: bool,
    pub dry_run: bool,
    pub backups: Vec<PruneEntry>,
}

/// Decides, for every target, what to keep and what to remove. Reads storage, changes nothing.
pub async fn plan(
    storage: &dyn Storage,
    targets: &[&str],
    policy: &RetentionConfig,
    rehash_after: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<Vec<PruneEntry>> {
    let mut entries = Vec::new();
    for &target in targets {
        let (manifests, _) = catalog::list_complete(storage, Some(target)).await?;
        let dirs = catalog::scan(storage, Some(target)).await?;
        let unrestorable = unrestorable(storage, target, &manifests).await?;
        let pinned = pins::list(storage, target).await?;
        // One pool per kind and method (dumps and physical base backups are kept each on
        // their own) and, for safety copies, per destination: one database's safety copies
        // never push out another's.
        let mut pools: Vec<(BackupKind, BackupMethod, &str)> = manifests
            .iter()
            .map(|m| (m.kind, m.method, pool_destination(m)))
            .collect();
        pools.sort();
        pools.dedup();
        let mut kept_physical: Vec<&BackupManifest> = Vec::new();
        for (kind, method, destination) in pools {
            let members: Vec<&BackupManifest> = manifests
                .iter()
                .filter(|m| {
                    m.kind == kind && m.method == method && pool_destination(m) == destination
                })
                .collect();
            let decided = decide_verified(
                storage,
                target,
                &members,
                &dirs,
                &unrestorable,
                policy,
                rehash_after,
                now,
            )
            .await?;
            let decided = keep_pinned(decided, &pinned);
            let decided = keep_chains(decided, &members);
            if method == BackupMethod::Physical {
                kept_physical.extend(members.iter().copied().filter(|m| {
                    decided.iter().any(|e| {
                        e.backup_id == m.id
                            && e.action == Action::Keep
                            && e.kind == EntryKind::Physical
                    })
                }));
            }
            entries.extend(decided);
        }
        for dir in &dirs {
            let stale_partials: Vec<String> = dir
                .keys
                .iter()
                .filter(|k| k.contains(PARTIAL_MARKER))
                .cloned()
                .collect();
            let old = now - dir.newest_modified > Duration::days(1);
            if !dir.has_manifest && old {
                entries.push(PruneEntry {
                    target: target.to_string(),
                    backup_id: dir.id.clone(),
                    kind: EntryKind::Incomplete,
                    action: Action::Remove,
                    reason: format!("leftover of an interrupted or failed backup ({} object(s), no manifest, older than a day)", dir.keys.len()),
                    keys: dir.keys.clone(),
                });
            } else if dir.has_manifest && old && !stale_partials.is_empty() {
                entries.push(PruneEntry {
                    target: target.to_string(),
                    backup_id: dir.id.clone(),
                    kind: EntryKind::Temporary,
                    action: Action::Remove,
                    reason: format!(
                        "{} temporary file(s) of a crashed write",
                        stale_partials.len()
                    ),
                    keys: stale_partials,
                });
            }
        }
        entries.extend(plan_wal(storage, target, &kept_physical, policy, now).await?);
    }
    Ok(entries)
}

/// Safety copies are pooled by the database they copy; physical base backups by cluster
/// (system identifier: two clusters archiving under one target name each keep their own
/// newest); other regular backups by target.
fn pool_destination(m: &BackupManifest) -> &str {
    match (m.kind, &m.physical) {
        (BackupKind::Safety, _) => &m.source,
        (BackupKind::Regular, Some(p)) => &p.system_identifier,
        (BackupKind::Regular, None) => "",
    }
}

/// The physical base backups of `target` the WAL archive cannot make consistent, with
/// why: the first segment each lacks (the same judgement as `dr list`'s
/// `unusable_backups` and a point-in-time restore: `restore::window::reach`), or an
/// archive whose timeline history cannot be followed (then none of that cluster counts).
async fn unrestorable(
    storage: &dyn Storage,
    target: &str,
    manifests: &[BackupManifest],
) -> Result<HashMap<String, String>> {
    let mut by_system: HashMap<u64, Vec<BasePoint>> = HashMap::new();
    for m in manifests
        .iter()
        .filter(|m| m.kind == BackupKind::Regular && m.method == BackupMethod::Physical)
    {
        match BasePoint::of(m) {
            Ok(Some(b)) => by_system.entry(b.system_id).or_default().push(b),
            Ok(None) => {}
            Err(e) => anyhow::bail!(
                "cannot read the WAL positions of base backup {}: {e:#}; hint: run `dr validate --target {target} --backup-id {}`",
                m.id,
                m.id
            ),
        }
    }
    let mut out = HashMap::new();
    for (system_id, bases) in by_system {
        let Some(newest) = bases.iter().max_by_key(|b| b.consistent_by) else {
            continue;
        };
        let window::ArchiveListing { files, archived_at } =
            window::list_archive(storage, target, system_id).await?;
        let chain = match continuity::archive_chain(
            storage,
            &files,
            newest.timeline,
            newest.segment_size,
        )
        .await
        {
            Ok(chain) => chain,
            // Nothing of this cluster is judged restorable, so nothing of it is
            // removed; other clusters and dumps are pruned as usual.
            Err(e) => {
                for b in &bases {
                    out.insert(
                            b.id.clone(),
                            format!("the WAL archive of cluster {system_id} cannot be followed ({e:#}), so whether any of its base backups restores is unknown"),
                        );
                }
                continue;
            }
        };
        for b in &bases {
            let chain = if chain.contains(b.timeline) {
                chain.clone()
            } else {
                Chain::single(b.timeline)
            };
            if let Err(u) = window::reach(b, &files, &archived_at, &chain) {
                out.insert(
                    u.backup_id,
                    format!(
                        "the WAL archive lacks {}, which it needs to become consistent, so no point-in-time restore can start from it",
                        u.missing
                    ),
                );
            }
        }
    }
    Ok(out)
}

/// Retention over backups that can be restored: whose stored bytes match their manifest
/// and, for a physical base backup, that the WAL archive can make consistent. Every backup
/// the policy would keep is verified first (from its integrity verdict when that stands,
/// see `backup::integrity`); a corrupt or unrestorable one is never counted as kept (the
/// decision is made again without it) and is never removed either: it is reported for a
/// person to look at. So the newest backup that restores is always kept.
#[allow(clippy::too_many_arguments)]
async fn decide_verified(
    storage: &dyn Storage,
    target: &str,
    members: &[&BackupManifest],
    dirs: &[catalog::BackupDir],
    unrestorable: &HashMap<String, String>,
    policy: &RetentionConfig,
    rehash_after: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<Vec<PruneEntry>> {
    let mut corrupt: Vec<(&BackupManifest, String)> = Vec::new();
    let mut verified: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let decisions = loop {
        let pool: Vec<(String, DateTime<Utc>)> = members
            .iter()
            .filter(|m| !corrupt.iter().any(|(c, _)| c.id == m.id))
            .filter(|m| !unrestorable.contains_key(&m.id))
            .map(|m| (m.id.clone(), m.created_at))
            .collect();
        let mut decisions = retention::decide(&pool, &policy.keeps(retention_kind(members)), now);
        window_keeps(&mut decisions, members, policy, now);
        let mut found_corrupt = false;
        for d in decisions.iter().filter(|d| d.keep) {
            if verified.contains(d.id.as_str()) {
                continue;
            }
            let Some(m) = members.iter().find(|m| m.id == d.id) else {
                continue;
            };
            // A standing verdict with unchanged objects spares the read; a changed object,
            // an old or a missing verdict means a full re-hash (recorded for next time).
            match integrity::confirm_or_rehash(storage, m, CheckedBy::Prune, rehash_after).await {
                Ok(()) => {
                    verified.insert(m.id.as_str());
                }
                Err(e) => {
                    corrupt.push((m, format!("{e:#}")));
                    found_corrupt = true;
                }
            }
        }
        if !found_corrupt {
            break decisions;
        }
    };
    let mut entries = Vec::new();
    for decision in decisions {
        let (action, reason, keys) = if decision.keep {
            (
                Action::Keep,
                format!("{}; verified", decision.reasons.join(", ")),
                vec![],
            )
        } else {
            let manifest = manifest_key(target, &decision.id);
            let mut keys = vec![manifest.clone()];
            if let Some(dir) = dirs.iter().find(|d| d.id == decision.id) {
                keys.extend(dir.keys.iter().filter(|k| **k != manifest).cloned());
            }
            (
                Action::Remove,
                "outside the retention policy".to_string(),
                keys,
            )
        };
        let kind = match members.iter().find(|m| m.id == decision.id) {
            Some(m) if m.method == BackupMethod::Physical => EntryKind::Physical,
            Some(m) => m.kind.into(),
            None => EntryKind::Regular,
        };
        entries.push(PruneEntry {
            target: target.to_string(),
            backup_id: decision.id,
            kind,
            action,
            reason,
            keys,
        });
    }
    for m in members {
        let Some(why) = unrestorable.get(&m.id) else {
            continue;
        };
        entries.push(PruneEntry {
            target: target.to_string(),
            backup_id: m.id.clone(),
            kind: EntryKind::Unrestorable,
            action: Action::Keep,
            reason: format!("UNRESTORABLE, not counted as kept and left for inspection: {why}"),
            keys: vec![],
        });
    }
    for (m, why) in corrupt {
        entries.push(PruneEntry {
            target: target.to_string(),
            backup_id: m.id.clone(),
            kind: EntryKind::Corrupt,
            action: Action::Keep,
            reason: format!("CORRUPT, not counted as kept and left for inspection: {why}"),
            keys: vec![],
        });
    }
    Ok(entries)
}

/// Which `[retention.KIND]` table applies to a pool (all its members share kind and method).
fn retention_kind(members: &[&BackupManifest]) -> RetentionKind {
    match members.first() {
        Some(m) if m.kind == BackupKind::Regular && m.method == BackupMethod::Physical => {
            RetentionKind::Physical
        }
        Some(m) if m.kind == BackupKind::Regular && m.engine == Engine::Postgres => {
            RetentionKind::Dump
        }
        _ => RetentionKind::Other,
    }
}

/// `pitr_window` over a pool of physical base backups of one cluster
/// (`backup::pitr_window`); other pools have no point-in-time to keep.
fn window_keeps(
    decisions: &mut [retention::RetentionDecision],
    members: &[&BackupManifest],
    policy: &RetentionConfig,
    now: DateTime<Utc>,
) {
    let Some(window) = policy.pitr_window else {
        return;
    };
    if retention_kind(members) != RetentionKind::Physical {
        return;
    }
    let ends: Vec<(String, DateTime<Utc>)> = members
        .iter()
        .map(|m| (m.id.clone(), m.finished_at))
        .collect();
    let window = Duration::from_std(window).unwrap_or(Duration::MAX);
    pitr_window::keep_window(decisions, &ends, window, now);
}

/// A pinned backup is kept whatever the rules say (and, being kept, so is the WAL a pinned
/// base backup needs).
/// Incremental base backups are restored through their whole chain: a kept incremental
/// keeps every ancestor ("parent of ID"), so a full backup goes only together with every
/// backup built on it (said on its line).
fn keep_chains(mut entries: Vec<PruneEntry>, members: &[&BackupManifest]) -> Vec<PruneEntry> {
    let chain_of = |id: &str| {
        members
            .iter()
            .find(|m| m.id == id)
            .and_then(|m| m.physical.as_ref())
            .map(|p| p.chain.clone())
            .unwrap_or_default()
    };
    let kept: Vec<String> = entries
        .iter()
        .filter(|e| e.action == Action::Keep && e.kind == EntryKind::Physical)
        .map(|e| e.backup_id.clone())
        .collect();
    for child in &kept {
        let chain = chain_of(child);
        for (i, ancestor) in chain.iter().enumerate() {
            let direct_child = chain.get(i + 1).unwrap_or(child);
            let note = format!("parent of {direct_child}");
            let Some(e) = entries.iter_mut().find(|e| &e.backup_id == ancestor) else {
                continue;
            };
            if e.reason.contains(&note) {
                continue;
            }
            if e.action == Action::Remove {
                e.action = Action::Keep;
                e.keys.clear();
                e.reason = note;
            } else {
                e.reason = format!("{}; {note}", e.reason);
            }
        }
    }
    for e in entries.iter_mut().filter(|e| e.action == Action::Remove) {
        let descendants: Vec<&str> = members
            .iter()
            .filter(|m| {
                m.physical
                    .as_ref()
                    .is_some_and(|p| p.chain.contains(&e.backup_id))
            })
            .map(|m| m.id.as_str())
            .collect();
        if !descendants.is_empty() {
            e.reason = format!(
                "{}, together with every incremental built on it ({})",
                e.reason,
                descendants.join(", ")
            );
        }
    }
    entries
}

fn keep_pinned(entries: Vec<PruneEntry>, pinned: &[pins::Pin]) -> Vec<PruneEntry> {
    entries
        .into_iter()
        .map(|mut e| {
            if let Some(p) = pinned.iter().find(|p| p.backup_id == e.backup_id) {
                if e.action == Action::Remove {
                    e.action = Action::Keep;
                    e.keys.clear();
                    e.reason = format!(
                        "PINNED since {}{}: kept outside every rule; `dr unpin {} --target {}` releases it",
                        p.pinned_at.format("%Y-%m-%d %H:%M UTC"),
                        p.reason
                            .as_deref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default(),
                        e.backup_id,
                        e.target
                    );
                } else {
                    e.reason = format!("{}; pinned", e.reason);
                }
            }
            e
        })
        .collect()
}

/// The archived WAL of each cluster of `target` that no kept physical base backup needs
/// (everything before the oldest kept backup's start), and temporary files of crashed
/// pushes older than a day. A cluster without a kept base backup keeps all of its WAL:
/// nothing tells what a restore of it would need.
async fn plan_wal(
    storage: &dyn Storage,
    target: &str,
    kept: &[&BackupManifest],
    policy: &RetentionConfig,
    now: DateTime<Utc>,
) -> Result<Vec<PruneEntry>> {
    let mut entries = Vec::new();
    for system_id in wal::archived_systems(storage, target).await? {
        let id = format!("wal:{system_id}");
        let objects = storage
            .list(&format!("{}/", wal::cluster_prefix(target, system_id)))
            .await?;
        let stale: Vec<String> = objects
            .iter()
            .filter(|o| o.key.contains(PARTIAL_MARKER) && now - o.modified > Duration::days(1))
            .map(|o| o.key.clone())
            .collect();
        if !stale.is_empty() {
            entries.push(PruneEntry {
                target: target.to_string(),
                backup_id: id.clone(),
                kind: EntryKind::Temporary,
                action: Action::Remove,
                reason: format!(
                    "{} temporary file(s) of interrupted WAL pushes, older than a day",
                    stale.len()
                ),
                keys: stale,
            });
        }
        let files = wal::archived_files(objects);
        let bases: Vec<KeptBase> = kept
            .iter()
            .filter_map(|m| Some((m, m.physical.as_ref()?)))
            .filter(|(_, p)| p.system_identifier == system_id.to_string())
            .filter_map(|(m, p)| {
                Some(KeptBase {
                    id: m.id.clone(),
                    start_segno: Lsn::parse(&p.start_lsn).ok()?.segno(p.wal_segment_size),
                    stop_segno: Lsn::parse(&p.stop_lsn).ok()?.end_segno(p.wal_segment_size),
                    consistent_by: m.finished_at,
                })
            })
            .collect();
        let segment_size = kept
            .iter()
            .filter_map(|m| m.physical.as_ref())
            .find(|p| p.system_identifier == system_id.to_string())
            .map(|p| p.wal_segment_size);
        let window = policy
            .pitr_window
            .map(|w| Duration::from_std(w).unwrap_or(Duration::MAX));
        let needs = pitr_window::wal_needs(&bases, window, now);
        let Some(segment_size) = segment_size.filter(|_| !needs.is_empty()) else {
            entries.push(PruneEntry {
                target: target.to_string(),
                backup_id: id,
                kind: EntryKind::Wal,
                action: Action::Keep,
                reason: format!(
                    "all {} archived file(s): no kept physical base backup of this cluster, so nothing tells what a restore needs (remove them by hand once the cluster is gone)",
                    files.len()
                ),
                keys: vec![],
            });
            continue;
        };
        let runs: Vec<(u64, Option<u64>)> =
            needs.iter().map(|n| (n.from_segno, n.to_segno)).collect();
        let remove = wal::retention::removable_outside(&files, &runs, segment_size);
        entries.extend(wal_entries(
            target,
            &id,
            &files,
            &needs,
            &remove,
            segment_size,
        ));
    }
    Ok(entries)
}

/// One entry per run of archived WAL: each kept run with the rule that keeps it, each
/// removed run (between kept ones) with its first and last file.
fn wal_entries(
    target: &str,
    id: &str,
    files: &[wal::ArchivedFile],
    needs: &[pitr_window::WalNeed],
    remove: &[wal::ArchivedFile],
    segment_size: u64,
) -> Vec<PruneEntry> {
    let entry = |action, reason, keys| PruneEntry {
        target: target.to_string(),
        backup_id: id.to_string(),
        kind: EntryKind::Wal,
        action,
        reason,
        keys,
    };
    let mut entries = Vec::new();
    for need in needs {
        let run: Vec<&wal::ArchivedFile> = files
            .iter()
            .filter(|f| {
                let segno = f.wal.segno(segment_size);
                segno >= need.from_segno && need.to_segno.is_none_or(|to| segno <= to)
            })
            .collect();
        let span = match (run.first(), run.last(), need.to_segno) {
            (Some(first), _, None) => format!("from {} on", first.wal.name),
            (Some(first), Some(last), Some(_)) => {
                format!("from {} to {}", first.wal.name, last.wal.name)
            }
            _ => "none yet".to_string(),
        };
        entries.push(entry(
            Action::Keep,
            format!(
                "{} archived file(s) {span}: {}",
                crate::units::count(run.len() as u64),
                need.reason
            ),
            vec![],
        ));
    }
    // Removed files in runs of consecutive segment numbers, so the report shows the gaps.
    let mut runs: Vec<Vec<&wal::ArchivedFile>> = Vec::new();
    for f in remove {
        let segno = f.wal.segno(segment_size);
        match runs.last_mut() {
            Some(run)
                if run
                    .last()
                    .is_some_and(|l| segno <= l.wal.segno(segment_size) + 1) =>
            {
                run.push(f)
            }
            _ => runs.push(vec![f]),
        }
    }
    for run in runs {
        if let (Some(first), Some(last)) = (run.first(), run.last()) {
            entries.push(entry(
                Action::Remove,
                format!(
                    "{} archived file(s) from {} to {}: no kept base backup needs them",
                    run.len(),
                    first.wal.name,
                    last.wal.name
                ),
                run.iter().map(|f| f.key.clone()).collect(),
            ));
        }
    }
    entries
}

/// Removes what the plan removes (nothing when `dry_run`), in the plan's order.
pub async fn apply(
    storage: &dyn Storage,
    entries: Vec<PruneEntry>,
    dry_run: bool,
) -> Result<PruneReport> {
    if !dry_run {
        for entry in entries.iter().filter(|e| e.action == Action::Remove) {
            for key in &entry.keys {
                storage.delete(key).await.with_context(|| {
                    format!(
                        "cannot remove {key} of {} {}",
                        entry.kind.as_str(),
                        entry.backup_id
                    )
                })?;
            }
        }
    }
    Ok(PruneReport {
        format_version: FORMAT_VERSION,
        ok: !entries
            .iter()
            .any(|e| matches!(e.kind, EntryKind::Corrupt | EntryKind::Unrestorable)),
        dry_run,
        backups: entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn physical(id: &str, chain: &[&str]) -> BackupManifest {
        serde_json::from_value(serde_json::json!({
            "format_version": 2, "id": id, "target": "main", "method": "physical",
            "source": "postgres://u@h/app", "created_at": "2026-01-02T03:04:05Z",
            "finished_at": "2026-01-02T03:04:06Z", "duration_ms": 1, "server_version": "18.1",
            "server_major": 18, "dr_version": "0.1.0", "format": "tar", "compression": "zstd",
            "compression_level": 3, "encryption": null, "size_bytes": 1, "sha256": "a".repeat(64),
            "objects": [],
            "physical": {
                "system_identifier": "1", "timeline": 1, "start_lsn": "0/1", "start_wal": "x",
                "checkpoint_lsn": "0/1", "stop_lsn": "0/2", "stop_wal": "x",
                "wal_segment_size": 16777216, "data_checksums": false, "tablespaces": [],
                "pg_basebackup_version": "18.1", "backup_manifest": true,
                "backup_history_file": "x", "parent_id": chain.last(), "chain": chain
            }
        }))
        .unwrap()
    }

    fn entry(id: &str, action: Action) -> PruneEntry {
        PruneEntry {
            target: "main".into(),
            backup_id: id.into(),
            kind: EntryKind::Physical,
            action,
            reason: match action {
                Action::Keep => "newest complete backup (always kept)".into(),
                Action::Remove => "outside the retention policy".into(),
            },
            keys: vec![format!("backups/main/{id}/manifest.json")],
        }
    }

    #[test]
    fn a_kept_incremental_keeps_its_ancestry_and_a_full_goes_with_its_descendants() {
        let (f1, i1, i2) = (
            physical("main-1", &[]),
            physical("main-2", &["main-1"]),
            physical("main-3", &["main-1", "main-2"]),
        );
        let (f2, j1) = (physical("main-4", &[]), physical("main-5", &["main-4"]));
        let members = vec![&f1, &i1, &i2, &f2, &j1];
        // The policy keeps only the newest incremental of the first chain; the second
        // chain is outside it.
        let decided = vec![
            entry("main-5", Action::Remove),
            entry("main-4", Action::Remove),
            entry("main-3", Action::Keep),
            entry("main-2", Action::Remove),
            entry("main-1", Action::Remove),
        ];
        let out = keep_chains(decided, &members);
        let by = |id: &str| out.iter().find(|e| e.backup_id == id).unwrap();
        assert_eq!(by("main-2").action, Action::Keep);
        assert_eq!(by("main-2").reason, "parent of main-3");
        assert!(
            by("main-2").keys.is_empty(),
            "nothing of a kept link is deleted"
        );
        assert_eq!(by("main-1").action, Action::Keep);
        assert_eq!(by("main-1").reason, "parent of main-2");
        assert_eq!(by("main-4").action, Action::Remove);
        assert!(
            by("main-4")
                .reason
                .contains("together with every incremental built on it (main-5)"),
            "{}",
            by("main-4").reason
        );
        assert_eq!(by("main-5").action, Action::Remove);
    }

    #[test]
    fn a_pin_keeps_what_the_rules_remove_and_nothing_else_changes() {
        let pin = pins::Pin {
            format_version: 1,
            target: "main".into(),
            backup_id: "old".into(),
            reason: Some("legal hold".into()),
            pinned_at: chrono::Utc::now(),
            pinned_by: "h".into(),
        };
        let out = keep_pinned(
            vec![
                entry("old", Action::Remove),
                entry("new", Action::Keep),
                entry("other", Action::Remove),
            ],
            &[pin],
        );
        assert_eq!(out[0].action, Action::Keep);
        assert!(
            out[0].keys.is_empty(),
            "a pinned backup has nothing to delete"
        );
        assert!(out[0].reason.contains("PINNED") && out[0].reason.contains("legal hold"));
        assert_eq!(out[1].action, Action::Keep);
        assert_eq!(out[2].action, Action::Remove);
        assert_eq!(out[2].keys.len(), 1);
    }

    #[test]
    fn wal_runs_are_reported_with_their_rule_and_removed_runs_with_their_ends() {
        let seg = 16u64 << 20;
        let files: Vec<wal::ArchivedFile> = (1..=8u64)
            .map(|n| wal::ArchivedFile {
                wal: wal::WalName::parse(&wal::segment_name(1, n, seg)).unwrap(),
                sha256: String::new(),
                compression: crate::config::Compression::Zstd,
                encrypted: false,
                key: format!("k{n}"),
                size: 1,
            })
            .collect();
        let needs = vec![
            pitr_window::WalNeed {
                from_segno: 6,
                to_segno: None,
                reason: "window".into(),
            },
            pitr_window::WalNeed {
                from_segno: 2,
                to_segno: Some(3),
                reason: "weekly".into(),
            },
        ];
        let runs: Vec<(u64, Option<u64>)> =
            needs.iter().map(|n| (n.from_segno, n.to_segno)).collect();
        let remove = wal::retention::removable_outside(&files, &runs, seg);
        let e = wal_entries("main", "wal:1", &files, &needs, &remove, seg);
        let text: Vec<(Action, &str)> = e.iter().map(|e| (e.action, e.reason.as_str())).collect();
        assert_eq!(text[0].0, Action::Keep);
        assert!(text[0]
            .1
            .starts_with("3 archived file(s) from 000000010000000000000006 on: window"));
        assert!(text[1].1.starts_with(
            "2 archived file(s) from 000000010000000000000002 to 000000010000000000000003: weekly"
        ));
        // Two removed runs: 1, and 4-5.
        let removed: Vec<&PruneEntry> = e.iter().filter(|e| e.action == Action::Remove).collect();
        assert_eq!(removed.len(), 2);
        assert_eq!(removed[0].keys, vec!["k1"]);
        assert_eq!(removed[1].keys, vec!["k4", "k5"]);
    }
}
