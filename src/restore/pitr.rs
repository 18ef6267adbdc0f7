//! `dr restore --pitr`: a physical base backup unpacked into a new data directory and the
//! archived WAL replayed to a target. Everything that can be known before PostgreSQL
//! starts is checked first (the target lies in the restorable window, the archive holds
//! every segment up to it, the directory is empty); with `--start`, dr starts the server,
//! waits for recovery to end, and fails loudly when the target was not reached, naming the
//! segment that was missing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;

use super::window::{self, BasePoint, Reach, RestorableWindow};
use crate::backup::catalog;
use crate::backup::manifest::{BackupManifest, BackupMethod};
use crate::config::{Config, PostgresTarget};
use crate::encryption::Identities;
use crate::error::usage;
use crate::pg::tools;
use crate::process::ChildCommand;
use crate::report::{Finding, Phase, Step, Steps, FORMAT_VERSION};
use crate::storage::Storage;
use crate::wal::continuity::{self, Chain};
use crate::wal::marks::{self, RestorePoint};
use crate::wal::{self, segment_name, ArchivedFile, Lsn, WalKind, WalName};

/// Where recovery stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// Every transaction committed at or before this time, none after.
    Time(DateTime<Utc>),
    Lsn(Lsn),
    /// A named restore point, with dr's record of it when there is one.
    Name(String, Option<RestorePoint>),
    /// Everything archived.
    Latest,
}

/// The target as JSON shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetSpec {
    /// `time`, `lsn`, `name` or `latest`.
    pub kind: &'static str,
    pub value: Option<String>,
}

impl RecoveryTarget {
    /// From the four flags: exactly one of them.
    pub fn from_flags(
        time: Option<&str>,
        lsn: Option<&str>,
        name: Option<&str>,
        latest: bool,
    ) -> Result<RecoveryTarget> {
        let given = [time.is_some(), lsn.is_some(), name.is_some(), latest]
            .iter()
            .filter(|g| **g)
            .count();
        if given != 1 {
            return Err(usage(
                "--pitr needs exactly one target: --to-time TIME, --to-lsn LSN, --to-name MARK or --to-latest; hint: `dr list --target NAME` shows the restorable window",
            ));
        }
        if let Some(t) = time {
            return Ok(RecoveryTarget::Time(parse_time(t)?));
        }
        if let Some(l) = lsn {
            return Ok(RecoveryTarget::Lsn(Lsn::parse(l).map_err(|e| {
                usage(format!(
                    "--to-lsn: {e:#}; hint: write it as PostgreSQL does, like 0/3000060"
                ))
            })?));
        }
        if let Some(n) = name {
            marks::check_name(n)?;
            return Ok(RecoveryTarget::Name(n.to_string(), None));
        }
        Ok(RecoveryTarget::Latest)
    }

    pub fn spec(&self) -> TargetSpec {
        match self {
            RecoveryTarget::Time(t) => TargetSpec {
                kind: "time",
                value: Some(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
            },
            RecoveryTarget::Lsn(l) => TargetSpec {
                kind: "lsn",
                value: Some(l.to_string()),
            },
            RecoveryTarget::Name(n, _) => TargetSpec {
                kind: "name",
                value: Some(n.clone()),
            },
            RecoveryTarget::Latest => TargetSpec {
                kind: "latest",
                value: None,
            },
        }
    }

    pub fn describe(&self) -> String {
        match self {
            RecoveryTarget::Time(t) => format!("time {}", window::time_text(*t)),
            RecoveryTarget::Lsn(l) => format!("WAL position {l}"),
            RecoveryTarget::Name(n, _) => format!("restore point {n:?}"),
            RecoveryTarget::Latest => "the end of the archived WAL".into(),
        }
    }

    /// The lines of postgresql.auto.conf that set the target.
    pub fn settings(&self) -> Vec<(String, String)> {
        let one = |k: &str, v: String| vec![(k.to_string(), v)];
        match self {
            RecoveryTarget::Time(t) => one(
                "recovery_target_time",
                t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
            ),
            RecoveryTarget::Lsn(l) => one("recovery_target_lsn", l.to_string()),
            RecoveryTarget::Name(n, _) => one("recovery_target_name", n.clone()),
            RecoveryTarget::Latest => Vec::new(),
        }
    }
}

/// `2026-11-25T17:40:00Z`, `2026-11-25 17:40:00.5+01`, or without a zone (UTC).
pub fn parse_time(text: &str) -> Result<DateTime<Utc>> {
    let t = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(d) = DateTime::parse_from_str(t, format) {
            return Ok(d.with_timezone(&Utc));
        }
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, format) {
            return Ok(d.and_utc());
        }
    }
    Err(usage(format!(
        "--to-time {t:?} is not a time; hint: write it like 2026-11-25T17:40:00Z or '2026-11-25 17:40:00+01' (UTC when no zone is given)"
    )))
}

pub struct PitrRequest<'a> {
    pub config: &'a Config,
    pub storage: &'a dyn Storage,
    pub target: &'a PostgresTarget,
    pub recovery_target: RecoveryTarget,
    pub pgdata: &'a Path,
    pub backup_id: Option<&'a str>,
    pub identities: Option<Arc<Identities>>,
    /// Passed on to `dr wal-fetch` in restore_command.
    pub identity_file: Option<PathBuf>,
    pub start: bool,
    pub port: Option<u16>,
    /// Keep the backup's archive settings (the restored server becomes the primary).
    pub archive: bool,
    /// A drill's sandbox: the server listens on a socket in this directory only, with
    /// local trust, and nothing else.
    pub sandbox_socket_dir: Option<PathBuf>,
}

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

/// A restored server dr started.
#[derive(Debug, Clone)]
pub struct RunningServer {
    pub bin_dir: PathBuf,
    pub run_as: Option<String>,
}

impl RunningServer {
    /// Stops the server now (immediate mode).
    pub async fn stop(&self, pgdata: &Path) -> Result<()> {
        ChildCommand::new(self.bin_dir.join("pg_ctl"), "pg_ctl")
            .args(["-D"])
            .arg(pgdata)
            .args(["-m", "immediate", "-w", "stop"])
            .run_as(self.run_as.as_deref())
            .output()
            .await?;
        Ok(())
    }
}

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
}

async fn read_archive(storage: &dyn Storage, target: &str, base: &BasePoint) -> Result<Archive> {
    let prefix = wal::cluster_prefix(target, base.system_id);
    let objects = storage.list(&format!("{prefix}/")).await.with_context(|| {
        format!(
            "cannot list the WAL archive {prefix} in {}",
            storage.describe()
        )
    })?;
    let modified: HashMap<String, DateTime<Utc>> = objects
        .iter()
        .map(|o| (o.key.clone(), o.modified))
        .collect();
    let files = wal::archived_files(objects);
    let archived_at = window::archived_times(&files, &modified);
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
        let newest = bases
            .iter()
            .max_by_key(|b| b.consistent_by)
            .expect("non-empty");
        let archive = read_archive(storage, target, newest).await?;
        let mut reaches = Vec::new();
        let mut unusable = Vec::new();
        for b in &bases {
            match window::reach(b, &archive.files, &archive.archived_at, &archive.chain) {
                Ok(r) => reaches.push(r),
                Err(u) => unusable.push(u),
            }
        }
        out.push(window::window(
            target,
            system_id,
            &archive.chain,
            &reaches,
            &unusable,
        ));
    }
    out.sort_by(|a, b| a.system_identifier.cmp(&b.system_identifier));
    Ok(out)
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

    steps
        .run(
            "wal",
            Phase::Preflight,
            check_wal(req, &recovery_target, &manifest, &base, &archive, &reach),
        )
        .await?;

    let bin_dir = server_bin_dir(req.target, manifest.server_major)?;
    let run_as = server_user()?;
    let mut directory = DataDirectory {
        path: pgdata.to_path_buf(),
        created,
        keep: false,
    };
    steps
        .run("disk", Phase::Preflight, async {
            let need = manifest.base().map_or(0, |b| b.raw_bytes);
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
    steps
        .run("recovery settings", Phase::Restore, async {
            let lines = write_recovery_settings(req, &recovery_target, &archive)?;
            hand_over(pgdata, run_as.as_deref())?;
            Ok(((), lines))
        })
        .await?;
    let log = pgdata.join("log").join("dr-recovery.log");
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
    // From here the directory holds a server's work: kept, also on failure, with its log.
    directory.keep = true;
    let server = RunningServer {
        bin_dir: bin_dir.clone(),
        run_as: run_as.clone(),
    };
    steps
        .run("start", Phase::Restore, async {
            start_server(req, &server, &log).await?;
            Ok((
                (),
                format!(
                    "pg_ctl started PostgreSQL {} on {} (log: {})",
                    manifest.server_major,
                    pgdata.display(),
                    log.display()
                ),
            ))
        })
        .await?;
    facts.server = Some(server.clone());
    let outcome =
        steps
            .run("recovery", Phase::Restore, async {
                let outcome = wait_for_recovery(pgdata, &log).await;
                let outcome = match outcome {
                    Ok(o) => o,
                    Err(e) => {
                        let text = std::fs::read_to_string(&log).unwrap_or_default();
                        return Err(explain_failure(
                            e,
                            &text,
                            &archive,
                            &base,
                            &recovery_target,
                            req,
                            pgdata,
                        ));
                    }
                };
                let msg =
                    format!(
                "recovery reached {}{}; promoted on timeline {}; last replayed transaction {}",
                recovery_target.describe(),
                outcome.stopped.as_deref().map(|s| format!(" ({s})")).unwrap_or_default(),
                outcome.timeline.map_or("?".into(), |t| t.to_string()),
                outcome.last_transaction_at.map_or("none".into(), window::time_text)
            );
                Ok((outcome, msg))
            })
            .await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            facts.server = None;
            // A server that failed recovery may still be shutting down.
            let _ = server.stop(pgdata).await;
            return Err(e);
        }
    };
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

/// Picks the newest physical base backup consistent before the target (or the one given)
/// and says how far it reaches; refuses a target before the window.
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
    let Some(newest) = manifests.first() else {
        return Err(usage(format!(
            "{name} has no physical base backup in {}, so there is nothing to roll forward; hint: enable WAL archiving (wal_archiving = true, see the README) and take one with `dr backup --physical --target {name}`",
            req.storage.describe()
        )));
    };
    let newest_base = BasePoint::of(newest)?.expect("physical");
    // The cluster of the newest backup (a re-initialised cluster has a new system id).
    let system_id = match recovery_target {
        RecoveryTarget::Name(_, Some(p)) => {
            p.system_identifier.parse().unwrap_or(newest_base.system_id)
        }
        _ => newest_base.system_id,
    };
    let mut bases = Vec::new();
    for m in &manifests {
        let b = BasePoint::of(m)?.expect("physical");
        if b.system_id == system_id {
            bases.push((m, b));
        }
    }
    let Some((_, any)) = bases.first() else {
        bail!("no physical base backup of {name} belongs to system {system_id}, where the restore point was made; hint: pass --backup-id");
    };
    let archive = read_archive(req.storage, name, any).await?;
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
        let what = match req.backup_id {
            Some(id) => format!(
                "backup {id} is consistent only from {} ({})",
                window::time_text(reaches[0].2.from_time),
                reaches[0].2.from_lsn
            ),
            None => format!("the restorable window of {name} is {}", win.describe()),
        };
        return Err(usage(format!(
            "{} lies before the restorable window: {what}; nothing was changed; hint: choose a target inside the window (`dr list --target {name}`), or an older base backup if one is kept",
            recovery_target.describe()
        )));
    };
    let msg = format!(
        "base backup {} (timeline {}, consistent at {} by {}), rolled forward along timeline(s) {}",
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
    let window_text = format!(
        "{} (backup {} consistent at {}) to {} (WAL archived up to {}, {})",
        window::time_text(reach.from_time),
        reach.backup_id,
        reach.from_lsn,
        window::time_text(reach.to_time),
        reach.to_lsn,
        reach.to_wal
    );
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
            "{what} lies after the newest archived WAL: the restorable window is {window_text}; nothing was changed; hint: choose a target inside the window; WAL still on the server is archived within archive_timeout (or after `SELECT pg_switch_wal()`)"
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
                        "{target_text} lies after the last archived transaction ({}): the restorable window is {} to {}; nothing was changed; hint: choose a target inside the window; WAL still on the server is archived within archive_timeout (or after `SELECT pg_switch_wal()`)",
                        window::time_text(last),
                        window::time_text(reach.from_time),
                        window::time_text(last)
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
    Ok(((), message))
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

/// `Ok(true)` when dr creates the directory; refuses a non-empty one (exit 2).
fn check_pgdata(pgdata: &Path) -> Result<bool> {
    if !pgdata.is_absolute() {
        return Err(usage(format!(
            "--pgdata {} is relative; hint: pass an absolute path (restore_command and pg_ctl run elsewhere)",
            pgdata.display()
        )));
    }
    match std::fs::read_dir(pgdata) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(usage(format!(
                    "--pgdata {} is not empty; nothing was changed; hint: restore into a new or empty directory (a point-in-time restore never overwrites a data directory)",
                    pgdata.display()
                )));
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = pgdata.parent().unwrap_or(Path::new("/"));
            if !parent.is_dir() {
                return Err(usage(format!(
                    "--pgdata {}: its parent {} does not exist; hint: create it first",
                    pgdata.display(),
                    parent.display()
                )));
            }
            Ok(true)
        }
        Err(e) => Err(usage(format!(
            "--pgdata {} cannot be read ({e}); hint: pass a directory dr may create or use",
            pgdata.display()
        ))),
    }
}

fn existing_parent(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    while !p.exists() {
        match p.parent() {
            Some(parent) => p = parent.to_path_buf(),
            None => break,
        }
    }
    p
}

/// Removes what dr unpacked unless the restore got far enough to keep it.
struct DataDirectory {
    path: PathBuf,
    created: bool,
    keep: bool,
}

impl Drop for DataDirectory {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if self.created {
            let _ = std::fs::remove_dir_all(&self.path);
        } else if let Ok(entries) = std::fs::read_dir(&self.path) {
            for e in entries.flatten() {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
    }
}

fn single_quoted(text: &str, what: &str) -> Result<String> {
    if text.contains('\'') || text.contains('\n') {
        bail!("{what} {text:?} contains a quote or a newline, which postgresql.auto.conf cannot hold; hint: use a path without them");
    }
    Ok(format!("'{text}'"))
}

/// Appends the recovery settings to postgresql.auto.conf and creates recovery.signal.
fn write_recovery_settings(
    req: &PitrRequest<'_>,
    recovery_target: &RecoveryTarget,
    archive: &Archive,
) -> Result<String> {
    let pgdata = req.pgdata;
    let exe = std::env::current_exe().context("cannot find the dr executable")?;
    let config =
        std::fs::canonicalize(&req.config.path).unwrap_or_else(|_| req.config.path.clone());
    let mut fetch = format!(
        "{} --config {} wal-fetch --target {}",
        exe.display(),
        config.display(),
        req.target.name
    );
    if let Some(identity) = &req.identity_file {
        let identity = std::fs::canonicalize(identity).unwrap_or_else(|_| identity.clone());
        fetch.push_str(&format!(" --identity {}", identity.display()));
    }
    fetch.push_str(" %f %p");
    let mut settings: Vec<(String, String)> = vec![(
        "restore_command".into(),
        single_quoted(&fetch, "restore_command")?,
    )];
    for (k, v) in recovery_target.settings() {
        settings.push((k, single_quoted(&v, "the recovery target")?));
    }
    settings.push(("recovery_target_action".into(), "'promote'".into()));
    settings.push((
        "recovery_target_timeline".into(),
        format!("'{}'", archive.chain.newest()),
    ));
    if !req.archive {
        settings.push(("archive_mode".into(), "'off'".into()));
    }
    if let Some(dir) = &req.sandbox_socket_dir {
        settings.push(("listen_addresses".into(), "''".into()));
        settings.push((
            "unix_socket_directories".into(),
            single_quoted(&dir.display().to_string(), "the socket directory")?,
        ));
        settings.push((
            "hba_file".into(),
            single_quoted(
                &pgdata.join("dr_sandbox_hba.conf").display().to_string(),
                "the hba file",
            )?,
        ));
        std::fs::write(
            pgdata.join("dr_sandbox_hba.conf"),
            "# dr drill sandbox: a socket in a directory only dr's user can enter\nlocal all all trust\n",
        )?;
    }
    let mut text = format!(
        "\n# dr restore --pitr ({}): recovery of base backup to {}\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        recovery_target.describe()
    );
    for (k, v) in &settings {
        text.push_str(&format!("{k} = {v}\n"));
    }
    let auto = pgdata.join("postgresql.auto.conf");
    let mut current = std::fs::read_to_string(&auto).unwrap_or_default();
    current.push_str(&text);
    std::fs::write(&auto, current).with_context(|| format!("cannot write {}", auto.display()))?;
    std::fs::write(pgdata.join("recovery.signal"), "")?;
    for stale in ["standby.signal", "postmaster.pid", "postmaster.opts"] {
        let _ = std::fs::remove_file(pgdata.join(stale));
    }
    std::fs::create_dir_all(pgdata.join("log"))?;
    std::fs::create_dir_all(pgdata.join("pg_wal").join("archive_status"))?;
    Ok(format!(
        "recovery.signal and {} written: {}",
        auto.display(),
        settings
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// The OS user the server runs as: `postgres` when dr is root (PostgreSQL refuses root).
fn server_user() -> Result<Option<String>> {
    Ok(nix::unistd::Uid::effective()
        .is_root()
        .then(|| "postgres".to_string()))
}

/// Gives the data directory to the server's OS user, mode 0700 as PostgreSQL requires.
fn hand_over(pgdata: &Path, run_as: Option<&str>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(pgdata, std::fs::Permissions::from_mode(0o700))?;
    let Some(user) = run_as else {
        return Ok(());
    };
    let pw = nix::unistd::User::from_name(user)?.with_context(|| {
        format!("running as root, the restored server needs the {user} OS user; hint: install the postgresql package, which creates it")
    })?;
    let mut stack = vec![pgdata.to_path_buf()];
    while let Some(p) = stack.pop() {
        std::os::unix::fs::lchown(&p, Some(pw.uid.as_raw()), Some(pw.gid.as_raw()))
            .with_context(|| format!("cannot give {} to {user}", p.display()))?;
        if p.is_dir() && !p.is_symlink() {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    Ok(())
}

fn server_bin_dir(target: &PostgresTarget, major: u32) -> Result<PathBuf> {
    let versioned = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
    if versioned.join("pg_ctl").exists() {
        return Ok(versioned);
    }
    let dir = tools::find_server_bin_dir(target.pg_bin_dir.as_deref())?;
    Ok(dir)
}

fn start_command(
    bin_dir: &Path,
    pgdata: &Path,
    log: &Path,
    port: Option<u16>,
    run_as: Option<&str>,
) -> String {
    let mut cmd = String::new();
    if let Some(user) = run_as {
        cmd.push_str(&format!("runuser -u {user} -- "));
    }
    cmd.push_str(&format!(
        "{} -D {} -l {}",
        bin_dir.join("pg_ctl").display(),
        pgdata.display(),
        log.display()
    ));
    if let Some(p) = port {
        cmd.push_str(&format!(" -o '-p {p}'"));
    }
    cmd.push_str(" start");
    cmd
}

async fn start_server(req: &PitrRequest<'_>, server: &RunningServer, log: &Path) -> Result<()> {
    // English messages and the log in one known file: dr reads where recovery stopped
    // from it. The server's own logging settings apply again at its next restart.
    let mut options = String::from("-c logging_collector=off -c lc_messages=C");
    if let Some(p) = req.port {
        options.push_str(&format!(" -p {p}"));
    }
    ChildCommand::new(server.bin_dir.join("pg_ctl"), "pg_ctl")
        .arg("-D")
        .arg(req.pgdata)
        .arg("-l")
        .arg(log)
        .args(["-o", &options, "-W", "start"])
        .run_as(server.run_as.as_deref())
        .output()
        .await
        .map(|_| ())
}

#[derive(Debug, Default)]
struct RecoveryOutcome {
    stopped: Option<String>,
    timeline: Option<u32>,
    last_transaction_at: Option<DateTime<Utc>>,
}

const REACHED_READY: &str = "database system is ready to accept connections";
const TARGET_NOT_REACHED: &str = "recovery ended before configured recovery target was reached";

/// Waits until the server has promoted (or died), reading its log.
async fn wait_for_recovery(pgdata: &Path, log: &Path) -> Result<RecoveryOutcome> {
    let began = std::time::Instant::now();
    let mut seen_pid = false;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(TARGET_NOT_REACHED) {
            bail!("{TARGET_NOT_REACHED}");
        }
        if text.contains(REACHED_READY) {
            return Ok(parse_outcome(&text));
        }
        let alive = postmaster_alive(pgdata);
        seen_pid |= alive;
        if !alive && (seen_pid || began.elapsed() > Duration::from_secs(60)) {
            // Give the log a moment: the postmaster writes its last lines as it exits.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains(TARGET_NOT_REACHED) {
                bail!("{TARGET_NOT_REACHED}");
            }
            let fatal = text
                .lines()
                .rfind(|l| l.contains("FATAL") || l.contains("PANIC"))
                .unwrap_or("no FATAL line in the log");
            bail!("the server stopped during recovery: {}", fatal.trim());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn postmaster_alive(pgdata: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(pgdata.join("postmaster.pid")) else {
        return false;
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
    else {
        return false;
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// Where recovery stopped, the new timeline and the last replayed transaction, from the
/// server log (lc_messages = C).
fn parse_outcome(log: &str) -> RecoveryOutcome {
    let mut out = RecoveryOutcome::default();
    for line in log.lines() {
        let msg = line.split("LOG:  ").nth(1).unwrap_or("").trim();
        if msg.starts_with("recovery stopping") {
            out.stopped = Some(msg.to_string());
        }
        if let Some(tli) = msg.strip_prefix("selected new timeline ID: ") {
            out.timeline = tli.trim().parse().ok();
        }
        if let Some(t) = msg.strip_prefix("last completed transaction was at log time ") {
            out.last_transaction_at = parse_log_time(t);
        }
    }
    out
}

fn parse_log_time(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim();
    DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%#z")
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// Names what was missing when recovery ended before the target.
fn explain_failure(
    error: anyhow::Error,
    log: &str,
    archive: &Archive,
    base: &BasePoint,
    recovery_target: &RecoveryTarget,
    req: &PitrRequest<'_>,
    pgdata: &Path,
) -> anyhow::Error {
    let size = base.segment_size;
    let last_restored = log
        .lines()
        .filter_map(|l| l.split("restored log file \"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .filter_map(WalName::parse)
        .filter(|w| w.kind == WalKind::Segment)
        .map(|w| w.segno(size))
        .max();
    let next = last_restored.map_or(base.start_segno, |s| s + 1);
    let next_name = segment_name(archive.chain.timeline_at(next), next, size);
    let archived = archive
        .files
        .iter()
        .any(|f| f.wal.kind == WalKind::Segment && f.wal.name == next_name);
    let why = if archived {
        format!("{next_name} is archived but could not be fetched (storage unreachable from the server, or the copy damaged: see the log)")
    } else {
        format!("the archive lacks {next_name}")
    };
    anyhow!(
        "recovery did not reach {}: {error:#}; {why}; the last segment replayed was {}; the data directory {} is kept for inspection (log: {}); hint: {}",
        recovery_target.describe(),
        last_restored.map_or("none".into(), |s| segment_name(archive.chain.timeline_at(s), s, size)),
        pgdata.display(),
        pgdata.join("log/dr-recovery.log").display(),
        if archived {
            format!("fix access to storage from the server (run `dr wal-fetch --target {} {next_name} /tmp/x` as the server's OS user), remove the directory and restore again", req.target.name)
        } else {
            format!("choose an earlier target (`dr list --target {}`), remove the directory and restore again", req.target.name)
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_come_from_exactly_one_flag() {
        assert!(RecoveryTarget::from_flags(None, None, None, false).is_err());
        assert!(
            RecoveryTarget::from_flags(Some("2026-11-25T17:40:00Z"), None, None, true).is_err()
        );
        assert_eq!(
            RecoveryTarget::from_flags(None, Some("0/3000060"), None, false).unwrap(),
            RecoveryTarget::Lsn(Lsn(0x3000060))
        );
        assert_eq!(
            RecoveryTarget::from_flags(None, None, None, true).unwrap(),
            RecoveryTarget::Latest
        );
        assert!(RecoveryTarget::from_flags(None, None, Some("bad name"), false).is_err());
    }

    #[test]
    fn times_parse_in_the_usual_spellings() {
        let want = "2026-11-25T17:40:00.500+00:00";
        for text in [
            "2026-11-25T17:40:00.5Z",
            "2026-11-25 17:40:00.5+00",
            "2026-11-25 18:40:00.5+01:00",
            "2026-11-25 17:40:00.5",
        ] {
            assert_eq!(
                parse_time(text)
                    .unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
                want,
                "{text}"
            );
        }
        assert!(parse_time("yesterday").is_err());
        let t = RecoveryTarget::Time(parse_time("2026-11-25T17:40:00.5Z").unwrap());
        assert_eq!(
            t.settings(),
            vec![(
                "recovery_target_time".to_string(),
                "2026-11-25 17:40:00.500000+00".to_string()
            )]
        );
    }

    #[test]
    fn reads_the_outcome_from_the_server_log() {
        let log = "\
2026-11-25 17:41:03.100 UTC [900] LOG:  starting point-in-time recovery to 2026-11-25 17:41:02+00
2026-11-25 17:41:03.200 UTC [900] LOG:  restored log file \"000000010000000000000005\" from archive
2026-11-25 17:41:03.300 UTC [900] LOG:  recovery stopping before commit of transaction 760, time 2026-11-25 17:41:02.5+00
2026-11-25 17:41:03.300 UTC [900] LOG:  redo done at 0/5000100 system usage: CPU: user: 0.00 s
2026-11-25 17:41:03.300 UTC [900] LOG:  last completed transaction was at log time 2026-11-25 17:41:01.912345+00
2026-11-25 17:41:03.400 UTC [900] LOG:  selected new timeline ID: 2
2026-11-25 17:41:03.500 UTC [899] LOG:  database system is ready to accept connections
";
        let o = parse_outcome(log);
        assert_eq!(o.timeline, Some(2));
        assert!(o
            .stopped
            .unwrap()
            .starts_with("recovery stopping before commit"));
        assert_eq!(
            o.last_transaction_at
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "2026-11-25T17:41:01.912345Z"
        );
    }

    #[test]
    fn start_command_runs_as_postgres_when_root() {
        let c = start_command(
            Path::new("/usr/lib/postgresql/15/bin"),
            Path::new("/srv/pg/restored"),
            Path::new("/srv/pg/restored/log/dr-recovery.log"),
            Some(5544),
            Some("postgres"),
        );
        assert_eq!(c, "runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D /srv/pg/restored -l /srv/pg/restored/log/dr-recovery.log -o '-p 5544' start");
    }
}
