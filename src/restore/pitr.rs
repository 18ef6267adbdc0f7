//! `dr restore --pitr`: a physical base backup unpacked into a new data directory and the
//! archived WAL replayed to a target. Everything that can be known before PostgreSQL
//! starts is checked first (the target lies in the restorable window, the archive holds
//! every segment up to it, the directory is empty); with `--start`, dr starts the server,
//! waits for recovery to end, and fails loudly when the target was not reached, naming the
//! segment that was missing.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::lineage;
pub use super::lineage::TimelineChoice;
pub use super::pitr_request::PitrRequest;
use super::pitr_settings::{
    check_pgdata, existing_parent, hand_over, probe_restore_command, server_bin_dir, server_env,
    server_user, start_command, write_recovery_settings, DataDirectory,
};
pub use super::pitr_target::{parse_time, RecoveryTarget, TargetSpec};
use super::recovery;
use super::window::{self, BasePoint, Reach, RestorableWindow};
use crate::backup::catalog;
use crate::backup::manifest::{BackupManifest, BackupMethod};
use crate::error::usage;
use crate::pg::tools;
use crate::report::{Finding, Phase, Step, Steps, FORMAT_VERSION};
use crate::storage::Storage;
use crate::wal::continuity::{self, Chain};
use crate::wal::marks;
use crate::wal::{self, segment_name, ArchivedFile, WalKind, WalName};

/// `dr restore --pitr --format json`.
#[derive(Debug, Serialize)]
pub struct PitrReport {
    pub format_version: u32,
    pub ok: bool,
    pub operation: &'static str,
    pub target: String,
    pub backup_id: Option<String>,
    pub recovery_target: TargetSpec,
    pub pgdata: String,
    /// How far the chosen backup can be rolled forward.
    pub window: Option<Reach>,
    pub started: bool,
    pub port: Option<u16>,
    /// Without --start: the command that starts the server.
    pub start_command: Option<String>,
    /// The server log's line on where recovery stopped.
    pub stopped: Option<String>,
    /// The timeline the promoted server runs on.
    pub timeline: Option<u32>,
    /// The last transaction recovery replayed (from the server log).
    pub last_transaction_at: Option<DateTime<Utc>>,
    /// Achieved RPO: the requested time (or when the restore started, for --to-latest)
    /// minus the last replayed transaction.
    pub rpo_ms: Option<u64>,
    pub duration_ms: u64,
    pub steps: Vec<Step>,
    pub error: Option<String>,
}

/// What a finished restore hands to a drill.
#[derive(Debug, Clone)]
pub struct Restored {
    pub manifest: BackupManifest,
    pub server: Option<RunningServer>,
}

pub use super::recovery::RunningServer;

/// Runs a point-in-time restore; the report says what happened, the result why it stopped.
pub async fn run(req: PitrRequest<'_>) -> (PitrReport, Result<Restored>) {
    let started_at = Utc::now();
    let mut steps = Steps::default();
    let mut facts = Facts::default();
    let result = steps_of(&req, &mut steps, &mut facts).await;
    let rpo_ms = facts.last_transaction_at.and_then(|last| {
        let reference = match &req.recovery_target {
            RecoveryTarget::Time(t) => *t,
            RecoveryTarget::Name(_, Some(p)) => p.created_at,
            RecoveryTarget::Name(_, None) | RecoveryTarget::Lsn(_) => return None,
            RecoveryTarget::Latest => started_at,
        };
        Some((reference - last).num_milliseconds().max(0) as u64)
    });
    let report = PitrReport {
        format_version: FORMAT_VERSION,
        ok: result.is_ok(),
        operation: "pitr",
        target: req.target.name.clone(),
        backup_id: facts.backup_id.clone(),
        recovery_target: facts
            .resolved_target
            .as_ref()
            .unwrap_or(&req.recovery_target)
            .spec(),
        pgdata: req.pgdata.display().to_string(),
        window: facts.reach.clone(),
        started: facts.server.is_some(),
        port: req.port,
        start_command: facts.start_command.clone(),
        stopped: facts.stopped.clone(),
        timeline: facts.timeline,
        last_transaction_at: facts.last_transaction_at,
        rpo_ms,
        duration_ms: steps.total_ms(),
        steps: steps.0,
        error: result.as_ref().err().map(|e| format!("{e:#}")),
    };
    (report, result)
}

#[derive(Default)]
struct Facts {
    backup_id: Option<String>,
    resolved_target: Option<RecoveryTarget>,
    reach: Option<Reach>,
    start_command: Option<String>,
    stopped: Option<String>,
    timeline: Option<u32>,
    last_transaction_at: Option<DateTime<Utc>>,
    server: Option<RunningServer>,
}

/// The archive of one cluster as a restore needs it.
struct Archive {
    files: Vec<ArchivedFile>,
    archived_at: HashMap<String, DateTime<Utc>>,
    chain: Chain,
    /// Why the timeline followed deserves the operator's eye (several, none chosen).
    timeline_warning: Option<String>,
}

async fn read_archive(storage: &dyn Storage, target: &str, base: &BasePoint) -> Result<Archive> {
    let window::ArchiveListing { files, archived_at } =
        window::list_archive(storage, target, base.system_id).await?;
    let chain =
        continuity::archive_chain(storage, &files, base.timeline, base.segment_size).await?;
    let chain = if chain.contains(base.timeline) {
        chain
    } else {
        Chain::single(base.timeline)
    };
    Ok(Archive {
        files,
        archived_at,
        chain,
        timeline_warning: None,
    })
}

/// The restorable window of every cluster of `target` with a physical base backup.
pub async fn windows(
    storage: &dyn Storage,
    target: &str,
    manifests: &[BackupManifest],
) -> Result<Vec<RestorableWindow>> {
    let mut by_system: HashMap<u64, Vec<BasePoint>> = HashMap::new();
    for m in manifests.iter().filter(|m| m.target == target) {
        if let Some(b) = BasePoint::of(m)? {
            by_system.entry(b.system_id).or_default().push(b);
        }
    }
    let mut out = Vec::new();
    for (system_id, bases) in by_system {
        let Some(newest) = bases.iter().max_by_key(|b| b.consistent_by) else {
            continue;
        };
        let archive = match read_archive(storage, target, newest).await {
            Ok(a) => a,
            Err(e) => {
                // Named, not dropped: an operator reading `dr list` must see why.
                let mut w =
                    window::window(target, system_id, &Chain::single(newest.timeline), &[], &[]);
                w.problem = Some(format!("{e:#}"));
                out.push(w);
                continue;
            }
        };
        let mut reaches = Vec::new();
        let mut unusable = Vec::new();
        for b in &bases {
            match window::reach(b, &archive.files, &archive.archived_at, &archive.chain) {
                Ok(r) => reaches.push(r),
                Err(u) => unusable.push(u),
            }
        }
        let mut w = window::window(target, system_id, &archive.chain, &reaches, &unusable);
        w.timelines = branches(storage, &archive.files).await;
        out.push(w);
    }
    out.sort_by(|a, b| a.system_identifier.cmp(&b.system_identifier));
    Ok(out)
}

/// Every archived timeline with its fork point (from its history file) and its newest
/// segment.
async fn branches(storage: &dyn Storage, files: &[ArchivedFile]) -> Vec<window::TimelineBranch> {
    let mut out = Vec::new();
    for t in lineage::archived_timelines(files) {
        let last_wal = files
            .iter()
            .filter(|f| f.wal.kind == WalKind::Segment && f.wal.timeline == t)
            .map(|f| f.wal.name.clone())
            .max();
        let history = format!("{t:08X}.history");
        let fork = match files
            .iter()
            .find(|f| f.wal.kind == WalKind::History && f.wal.name == history)
        {
            Some(f) => wal::read_small(storage, f)
                .await
                .ok()
                .and_then(|raw| {
                    continuity::TimelineHistory::parse(t, &String::from_utf8_lossy(&raw)).ok()
                })
                .and_then(|h| h.switches.last().copied()),
            None => None,
        };
        out.push(window::TimelineBranch {
            timeline: t,
            parent: fork.map(|(p, _)| p),
            forked_at: fork.map(|(_, lsn)| lsn.to_string()),
            last_wal,
        });
    }
    out
}

fn fits(reach: &Reach, base: &BasePoint, target: &RecoveryTarget) -> bool {
    match target {
        RecoveryTarget::Time(t) => reach.from_time <= *t,
        RecoveryTarget::Lsn(l) => base.stop_lsn <= *l,
        RecoveryTarget::Name(_, Some(p)) => p.lsn().is_ok_and(|l| base.stop_lsn <= l),
        RecoveryTarget::Name(_, None) | RecoveryTarget::Latest => true,
    }
}

async fn steps_of(req: &PitrRequest<'_>, steps: &mut Steps, facts: &mut Facts) -> Result<Restored> {
    let name = &req.target.name;
    let pgdata = req.pgdata;
    let created = steps
        .run("pgdata", Phase::Preflight, async {
            check_pgdata(pgdata).map(|created| {
                let msg = if created {
                    format!("{} will be created", pgdata.display())
                } else {
                    format!("{} exists and is empty", pgdata.display())
                };
                (created, msg)
            })
        })
        .await?;

    let mut recovery_target = req.recovery_target.clone();
    if let RecoveryTarget::Name(mark, None) = &recovery_target {
        let mark = mark.clone();
        let point = steps
            .run("restore point", Phase::Preflight, async {
                match marks::find(req.storage, name, &mark).await? {
                    Some(p) => {
                        let msg = format!(
                            "{mark:?} was made at {} ({}, WAL {})",
                            window::time_text(p.created_at),
                            p.lsn,
                            p.wal
                        );
                        Ok((Some(p), msg))
                    }
                    None if req.backup_id.is_some() => Ok((
                        None,
                        format!("{mark:?} is not recorded by `dr mark`: its position is unknown, recovery stops at the first restore point of that name"),
                    )),
                    None => Err(usage(format!(
                        "restore point {mark:?} of {name} is not recorded in {}; hint: `dr list --target {name}` lists the recorded ones (`dr mark NAME` records one); for a restore point made by SQL, name the base backup to start from with --backup-id",
                        req.storage.describe()
                    ))),
                }
            })
            .await?;
        recovery_target = RecoveryTarget::Name(mark, point);
    }
    facts.resolved_target = Some(recovery_target.clone());

    let (manifest, base, archive, reach) = steps
        .run("backup", Phase::Preflight, choose(req, &recovery_target))
        .await?
        .into_parts();
    facts.backup_id = Some(manifest.id.clone());
    facts.reach = Some(reach.clone());
    if let Some(w) = &archive.timeline_warning {
        steps.push("timeline", Phase::Preflight, Finding::warn(w.clone()), 0);
    }

    steps
        .run(
            "wal",
            Phase::Preflight,
            check_wal(req, &recovery_target, &manifest, &base, &archive, &reach),
        )
        .await?;

    // An incremental: every link present and intact before anything is written.
    let links = match manifest.parent_id() {
        None => Vec::new(),
        Some(_) => {
            steps
                .run(
                    "chain",
                    Phase::Preflight,
                    super::chain::check(req.storage, &manifest),
                )
                .await?
        }
    };
    let bin_dir = server_bin_dir(req.target, manifest.server_major).await?;
    let run_as = server_user()?;
    if req.start {
        if let Some(p) = req.port.filter(|_| req.sandbox_socket_dir.is_none()) {
            steps
                .run("port", Phase::Preflight, async {
                    recovery::check_port_free(p, true)?;
                    Ok(((), format!("port {p} is free")))
                })
                .await?;
        }
        let first = segment_name(
            archive.chain.timeline_at(base.start_segno),
            base.start_segno,
            base.segment_size,
        );
        steps
            .run(
                "restore_command",
                Phase::Preflight,
                probe_restore_command(req, base.system_id, run_as.as_deref(), &first),
            )
            .await?;
    }
    let mut directory = DataDirectory {
        path: pgdata.to_path_buf(),
        created,
        keep: false,
    };
    steps
        .run("disk", Phase::Preflight, async {
            let need = match links.is_empty() {
                true => manifest.base().map_or(0, |b| b.raw_bytes),
                false => super::chain::disk_needed(&links),
            };
            let parent = existing_parent(pgdata);
            let free = super::preflight::free_bytes(&parent)?;
            if free < need + need / 10 {
                bail!(
                    "{} has {} MiB free, the unpacked base backup needs {} MiB plus room for WAL; hint: free space or restore onto a larger disk",
                    parent.display(),
                    free >> 20,
                    need >> 20
                );
            }
            Ok(((), format!("{} MiB needed, {} MiB free", need >> 20, free >> 20)))
        })
        .await?;
    steps
        .run("unpack", Phase::Fetch, async {
            if !links.is_empty() {
                let msg = super::chain::rebuild(
                    req.storage,
                    &links,
                    req.identities.as_ref(),
                    pgdata,
                    &bin_dir,
                )
                .await?;
                return Ok(((), msg));
            }
            std::fs::create_dir_all(pgdata)
                .with_context(|| format!("cannot create {}", pgdata.display()))?;
            let bytes = super::physical::unpack_base(
                req.storage,
                &manifest,
                req.identities.as_ref(),
                pgdata,
            )
            .await?;
            Ok((
                (),
                format!(
                    "{} matches its SHA-256 and is unpacked into {} ({} MiB)",
                    manifest.base().map_or("base.tar", |b| b.file.as_str()),
                    pgdata.display(),
                    bytes >> 20
                ),
            ))
        })
        .await?;
    // A spool or push records copied in with the base backup belong to its source.
    crate::wal::spool::remove(pgdata);
    steps
        .run("recovery settings", Phase::Restore, async {
            let lines =
                write_recovery_settings(req, &recovery_target, &archive.chain, base.system_id)?;
            hand_over(pgdata, run_as.as_deref())?;
            Ok(((), lines))
        })
        .await?;
    let log = recovery::log_path(pgdata);
    let command = start_command(&bin_dir, pgdata, &log, req.port, run_as.as_deref());
    if !req.start {
        directory.keep = true;
        facts.start_command = Some(command.clone());
        steps.push(
            "start",
            Phase::Restore,
            Finding::pass(format!(
                "not started (no --start); start it with: {command}"
            )),
            0,
        );
        return Ok(Restored {
            manifest,
            server: None,
        });
    }
    if req.sandbox_socket_dir.is_none() {
        steps
            .run("port", Phase::Restore, async {
                let port = recovery::configured_port(pgdata, req.port);
                recovery::check_port_free(port, req.port.is_some())?;
                Ok(((), format!("port {port} is free")))
            })
            .await?;
    }
    // From here the directory holds a server's work: kept, also on failure, with its log.
    directory.keep = true;
    let server = RunningServer {
        bin_dir: bin_dir.clone(),
        run_as: run_as.clone(),
    };
    recovery::fresh_log(&log, run_as.as_deref())?;
    let env = server_env(req.config);
    let plan = recovery::ServerPlan {
        env: &env,
        server: &server,
        pgdata,
        log: &log,
        port: req.port,
        sandbox_socket_dir: req.sandbox_socket_dir.as_deref(),
        role: req
            .target
            .resolve_url()
            .ok()
            .and_then(|u| crate::pg::ConnTarget::parse(&u).ok())
            .map_or_else(|| "postgres".to_string(), |c| c.user),
    };
    let expected = recovery::Expected {
        target: &recovery_target,
        last_wal: reach.to_wal.clone(),
        chain: &archive.chain,
        start_segno: base.start_segno,
        segment_size: base.segment_size,
        archived: archive
            .files
            .iter()
            .filter(|f| f.wal.kind == WalKind::Segment)
            .map(|f| f.wal.name.clone())
            .collect(),
    };
    let outcome = steps
        .run("recovery", Phase::Restore, async {
            let outcome = recovery::run(&plan, &expected).await?;
            let msg = format!(
                "PostgreSQL {} replayed to {}{}, checked against {} before dr promoted it on timeline {}; last replayed transaction {}; log: {}",
                manifest.server_major,
                outcome.replayed_to.as_deref().unwrap_or("?"),
                outcome.stopped.as_deref().map(|s| format!(" ({s})")).unwrap_or_default(),
                match &recovery_target {
                    RecoveryTarget::Latest => format!("the end of the archive ({})", reach.to_wal),
                    t => t.describe(),
                },
                outcome.timeline.map_or("?".into(), |t| t.to_string()),
                outcome.last_transaction_at.map_or("none".into(), window::time_text),
                log.display()
            );
            Ok((outcome, msg))
        })
        .await;
    // Recovery is over, replayed or not: nothing will ask for a prefetched segment again.
    let spool_of = pgdata.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || crate::wal::spool::remove(&spool_of)).await;
    let outcome = outcome?;
    facts.server = Some(server.clone());
    facts.stopped = outcome.stopped;
    facts.timeline = outcome.timeline;
    facts.last_transaction_at = outcome.last_transaction_at;
    Ok(Restored {
        manifest,
        server: Some(server),
    })
}

struct Chosen(BackupManifest, BasePoint, Archive, Reach);

impl Chosen {
    fn into_parts(self) -> (BackupManifest, BasePoint, Archive, Reach) {
        (self.0, self.1, self.2, self.3)
    }
}

/// Picks the cluster, the timeline, and the newest physical base backup of that cluster
/// consistent before the target (or the one given), and says how far it reaches; refuses
/// a target before the window.
async fn choose(
    req: &PitrRequest<'_>,
    recovery_target: &RecoveryTarget,
) -> Result<(Chosen, String)> {
    let name = &req.target.name;
    let manifests: Vec<BackupManifest> = match req.backup_id {
        Some(id) => vec![
            catalog::resolve_method(req.storage, name, id, Some(BackupMethod::Physical)).await?,
        ],
        None => {
            let (all, _) = catalog::list_complete(req.storage, Some(name)).await?;
            all.into_iter().filter(|m| m.physical.is_some()).collect()
        }
    };
    if manifests.is_empty() {
        return Err(usage(format!(
            "{name} has no physical base backup in {}, so there is nothing to roll forward; hint: enable WAL archiving (wal_archiving = true, see docs/src/wal.md) and take one with `dr backup --physical --target {name}`",
            req.storage.describe()
        )));
    }
    let mut all_bases = Vec::new();
    for m in &manifests {
        if let Some(b) = BasePoint::of(m)? {
            all_bases.push((m, b));
        }
    }
    // Each stored cluster with its newest base backup, newest first.
    let mut stored: Vec<(u64, String)> = Vec::new();
    for (m, b) in &all_bases {
        if !stored.iter().any(|(id, _)| *id == b.system_id) {
            stored.push((
                b.system_id,
                format!("{} at {}", m.id, window::time_text(b.consistent_by)),
            ));
        }
    }
    let live = lineage::live_server(req.target).await;
    let given = match (req.system_id, recovery_target, req.backup_id) {
        (Some(id), _, _) => Some(id),
        (None, RecoveryTarget::Name(_, Some(p)), _) => p.system_identifier.parse().ok(),
        (None, _, Some(_)) => all_bases.first().map(|(_, b)| b.system_id),
        _ => None,
    };
    let cluster = lineage::choose_cluster(name, &stored, given, live.as_ref())?;
    let system_id = cluster.system_id;
    if req.archive && !req.new_primary {
        if let Some(l) = live
            .as_ref()
            .filter(|l| l.system_id == system_id && l.archiving && !l.in_recovery)
        {
            return Err(usage(format!(
                "--archive would make a second primary of cluster {system_id}: its server still runs and archives (timeline {}); both would write WAL into one archive and restores could follow either; nothing was changed; hint: stop the old primary first; or pass --new-primary if two primaries are intended (then stop the old one before it archives past the fork)",
                l.timeline
            )));
        }
    }
    let Some((_, any)) = all_bases.iter().find(|(_, b)| b.system_id == system_id) else {
        bail!("no physical base backup of {name} belongs to cluster {system_id}; hint: pass --backup-id or --system-id");
    };
    let window::ArchiveListing { files, archived_at } =
        window::list_archive(req.storage, name, system_id).await?;
    let timelines = lineage::archived_timelines(&files);
    let (timeline, timeline_note) =
        lineage::choose_timeline(req.timeline, &timelines, live.as_ref(), system_id)?;
    let chain = lineage::chain_to(req.storage, &files, timeline, any.segment_size).await?;
    let archive = Archive {
        files,
        archived_at,
        chain,
        timeline_warning: timeline_note.strip_prefix("warning: ").map(str::to_string),
    };
    // A base backup helps only if the chosen timeline runs through its start.
    let bases: Vec<_> = all_bases
        .iter()
        .filter(|(_, b)| b.system_id == system_id)
        .filter(|(_, b)| archive.chain.timeline_at(b.start_segno) == b.timeline)
        .collect();
    if bases.is_empty() {
        return Err(usage(format!(
            "no base backup of cluster {system_id} lies on timeline {timeline}: the timeline forked before every stored base backup; nothing was changed; hint: choose another --timeline (`dr list --target {name}`)"
        )));
    }
    let mut reaches = Vec::new();
    let mut unusable = Vec::new();
    for (m, b) in &bases {
        match window::reach(b, &archive.files, &archive.archived_at, &archive.chain) {
            Ok(r) => reaches.push((*m, b.clone(), r)),
            Err(u) => unusable.push(u),
        }
    }
    let all_reaches: Vec<Reach> = reaches.iter().map(|(_, _, r)| r.clone()).collect();
    let win = window::window(name, system_id, &archive.chain, &all_reaches, &unusable);
    if reaches.is_empty() {
        let u = &unusable[0];
        bail!(
            "the archive lacks {}, which backup {} needs to become consistent: it cannot be restored; hint: take a new base backup (`dr backup --physical --target {name}`) and check archiving (`dr check --only wal`)",
            u.missing,
            u.backup_id
        );
    }
    // Newest first: the least WAL to replay.
    reaches.sort_by_key(|r| std::cmp::Reverse(r.2.from_time));
    let Some((m, b, r)) = reaches
        .iter()
        .find(|(_, b, r)| fits(r, b, recovery_target))
        .cloned()
    else {
        let spans = match req.backup_id {
            // Only that backup was asked for: its own span.
            Some(_) => reaches[0].2.describe(),
            None => win.describe(),
        };
        return Err(usage(format!(
            "{}; nothing was changed; hint: choose a target inside the window (`dr list --target {name}`), or an older base backup if one is kept",
            window::outside_text(&recovery_target.describe(), window::Outside::Before, name, &spans)
        )));
    };
    let msg = format!(
        "{}; {timeline_note}; base backup {} (timeline {}, consistent at {} by {}), rolled forward along timeline(s) {}",
        cluster.why,
        m.id,
        b.timeline,
        b.stop_lsn,
        window::time_text(b.consistent_by),
        archive
            .chain
            .steps
            .iter()
            .map(|(t, _)| t.to_string())
            .collect::<Vec<_>>()
            .join(" → ")
    );
    Ok((Chosen(m.clone(), b, archive, r), msg))
}

/// The archive holds every segment from the backup's start to the target, and the target
/// is not after the newest archived WAL.
async fn check_wal(
    req: &PitrRequest<'_>,
    recovery_target: &RecoveryTarget,
    manifest: &BackupManifest,
    base: &BasePoint,
    archive: &Archive,
    reach: &Reach,
) -> Result<((), String)> {
    let name = &req.target.name;
    let size = base.segment_size;
    let window_text = reach.describe();
    let gap_error = |what: String| {
        let gap = reach.gap.clone().unwrap_or_default();
        anyhow!(
            "the archive lacks {gap}, so recovery from backup {} cannot go past {} to reach {what}; nothing was changed; hint: the segment was lost from storage: restore it from another copy if there is one; otherwise the latest reachable point is before {}; a newer base backup (`dr list --target {name}`) may start after the gap",
            reach.backup_id,
            reach.to_wal,
            gap
        )
    };
    let after_window = |what: String| {
        usage(format!(
            "{}; nothing was changed; hint: choose a target inside the window (`dr list --target {name}`); WAL still on the server is archived within archive_timeout (or after `SELECT pg_switch_wal()`)",
            window::outside_text(&what, window::Outside::After, name, &window_text)
        ))
    };
    let target_text = recovery_target.describe();
    // A target past what the archive reaches: a gap stops it, else it is after the window.
    let past_reach = || {
        if reach.gap.is_some() {
            gap_error(target_text.clone())
        } else {
            after_window(target_text.clone())
        }
    };
    let message = match recovery_target {
        RecoveryTarget::Latest => {
            if reach.gap.is_some() {
                return Err(gap_error(target_text));
            }
            format!(
                "every segment from {} to {} is archived",
                segment_name(base.timeline, base.start_segno, size),
                reach.to_wal
            )
        }
        RecoveryTarget::Lsn(l) => {
            if *l > reach.to_lsn() {
                return Err(past_reach());
            }
            format!(
                "every segment from {} to {} is archived",
                segment_name(base.timeline, base.start_segno, size),
                segment_name(
                    archive.chain.timeline_at(l.segno(size)),
                    l.segno(size),
                    size
                )
            )
        }
        RecoveryTarget::Name(_, Some(p)) => {
            let l = p.lsn()?;
            if l > reach.to_lsn() {
                return Err(past_reach());
            }
            format!(
                "every segment from {} to {} (which holds the restore point) is archived",
                segment_name(base.timeline, base.start_segno, size),
                p.wal
            )
        }
        RecoveryTarget::Name(_, None) => {
            if reach.gap.is_some() {
                return Err(gap_error(target_text));
            }
            format!("every segment from {} to {} is archived (the restore point's position is unknown, so all of them)", segment_name(base.timeline, base.start_segno, size), reach.to_wal)
        }
        RecoveryTarget::Time(t) => {
            // Recovery stops at the first commit after the target: one must be archived.
            let last_commit = last_commit_before_gap(req, manifest, base, archive, reach).await;
            match last_commit {
                Ok(Some(last)) if *t <= last => format!(
                    "every segment from {} up to the target is archived; the last archived transaction committed at {}",
                    segment_name(base.timeline, base.start_segno, size),
                    window::time_text(last)
                ),
                Ok(Some(last)) => {
                    if reach.gap.is_some() {
                        return Err(gap_error(target_text));
                    }
                    return Err(usage(format!(
                        "{}; nothing was changed; hint: choose a target inside the window (`dr list --target {name}`); WAL still on the server is archived within archive_timeout (or after `SELECT pg_switch_wal()`)",
                        window::outside_text(
                            &target_text,
                            window::Outside::After,
                            name,
                            &reach.describe_to_last_commit(last)
                        )
                    )));
                }
                Ok(None) | Err(_) if *t > reach.to_time => {
                    return Err(if reach.gap.is_some() { gap_error(target_text) } else { after_window(target_text) });
                }
                Ok(None) => format!(
                    "every segment from {} to {} is archived (no transaction found in the last segments: recovery needs one after the target)",
                    segment_name(base.timeline, base.start_segno, size),
                    reach.to_wal
                ),
                Err(e) => format!(
                    "every segment from {} to {} is archived (the last commit time is unknown: {e:#})",
                    segment_name(base.timeline, base.start_segno, size),
                    reach.to_wal
                ),
            }
        }
    };
    // Segments PostgreSQL would get but could not use end recovery early as if the archive
    // ended there: found now, before anything is unpacked. (A time target is checked by
    // PostgreSQL itself, which fails when it ends before the target.)
    let to_segno = match recovery_target {
        RecoveryTarget::Latest | RecoveryTarget::Name(_, None) => {
            WalName::parse(&reach.to_wal).map(|w| w.segno(size))
        }
        RecoveryTarget::Lsn(l) => Some(l.segno(size)),
        RecoveryTarget::Name(_, Some(p)) => p.lsn().ok().map(|l| l.segno(size)),
        RecoveryTarget::Time(_) => None,
    };
    let Some(to_segno) = to_segno else {
        return Ok(((), message));
    };
    let usable = super::segments::check_needed(
        req.storage,
        &archive.files,
        &archive.chain,
        base.start_segno,
        to_segno,
        size,
        req.identities.as_deref(),
    )
    .await?;
    Ok(((), format!("{message}; {usable}")))
}

/// The time of the last transaction in the archived run the backup reaches: read with
/// pg_waldump from its last segments (up to three back, for quiet stretches).
async fn last_commit_before_gap(
    req: &PitrRequest<'_>,
    manifest: &BackupManifest,
    base: &BasePoint,
    archive: &Archive,
    reach: &Reach,
) -> Result<Option<DateTime<Utc>>> {
    let waldump = tools::find_versioned(
        "pg_waldump",
        req.target.pg_bin_dir.as_deref(),
        manifest.server_major,
    )?;
    let last = WalName::parse(&reach.to_wal)
        .ok_or_else(|| anyhow!("{} is not a segment name", reach.to_wal))?
        .segno(base.segment_size);
    let scratch = tempfile::Builder::new().prefix("dr-waldump-").tempdir()?;
    for segno in (base.start_segno..=last).rev().take(3) {
        let seg = segment_name(archive.chain.timeline_at(segno), segno, base.segment_size);
        let Some(file) = archive
            .files
            .iter()
            .find(|f| f.wal.kind == WalKind::Segment && f.wal.name == seg)
        else {
            break;
        };
        let path = scratch.path().join(&seg);
        wal::fetch::fetch_to(req.storage, file, &path, req.identities.as_ref()).await?;
        let found = wal::waldump::last_transaction_time(&waldump, &path).await?;
        std::fs::remove_file(&path).ok();
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}
