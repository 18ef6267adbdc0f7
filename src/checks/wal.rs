//! `pg.archiving`, `pg.replication` and `wal.continuity`: for targets with
//! `wal_archiving = true`, is the WAL reaching storage, can a base backup stream, and can
//! recovery replay from the newest base backup to the newest archived segment?

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};

use super::{CheckContext, PlannedCheck};
use crate::backup::catalog;
use crate::backup::manifest::{BackupKind, BackupManifest, BackupMethod};
use crate::config::PostgresTarget;
use crate::pg::slots::SharedClient;
use crate::pg::{self, tools};
use crate::process::ChildCommand;
use crate::report::Finding;
use crate::storage::Storage;
use crate::units::age as age_text;
use crate::wal::{self, continuity, Lsn, WalKind, WalName};

pub fn plan(ctx: &Arc<CheckContext>, out: &mut Vec<PlannedCheck>) {
    for target in ctx.config.postgres.iter().filter(|t| t.wal_archiving) {
        // The target's connection, shared with its pg.* checks.
        let shared = ctx.clients.get(target.resolve_url());
        let (s, rpo) = (shared.clone(), ctx.config.objectives.rpo);
        let suggested = ctx.config.archive_command();
        out.push(PlannedCheck {
            name: "pg.archiving",
            target: Some(target.name.clone()),
            critical: target.critical,
            timeout_per_read: false,
            run: Box::pin(async move { archiving(&s, rpo, suggested).await }),
        });
        let (t, s) = (target.clone(), shared.clone());
        out.push(PlannedCheck {
            name: "pg.replication",
            target: Some(t.name.clone()),
            critical: t.critical,
            timeout_per_read: false,
            run: Box::pin(async move { replication(&t, &s).await }),
        });
        if let Some(store) = ctx.storage.clone() {
            let (t, s) = (target.clone(), shared.clone());
            out.push(PlannedCheck {
                name: "wal.continuity",
                target: Some(t.name.clone()),
                critical: t.critical,
                timeout_per_read: false,
                run: Box::pin(async move { continuity(store.as_ref(), &t, &s).await }),
            });
        }
        if let Some(store) = ctx.storage.clone() {
            let (c, t, s) = (ctx.clone(), target.clone(), shared.clone());
            out.push(PlannedCheck {
                name: "wal.fetch",
                target: Some(t.name.clone()),
                critical: t.critical,
                timeout_per_read: false,
                run: Box::pin(
                    async move { super::wal_fetch::fetch(&c, store.as_ref(), &t, &s).await },
                ),
            });
        }
    }
}

/// pg_stat_archiver and the settings around it, in one round trip.
const ARCHIVER_SQL: &str = "
SELECT current_setting('archive_mode'),
       coalesce(current_setting('archive_library', true), ''),
       (SELECT setting::int FROM pg_settings WHERE name = 'archive_timeout'),
       a.archived_count, a.last_archived_wal,
       extract(epoch FROM now() - a.last_archived_time)::float8,
       a.failed_count, a.last_failed_wal,
       extract(epoch FROM now() - a.last_failed_time)::float8,
       a.last_failed_time IS NOT NULL AND (a.last_archived_time IS NULL OR a.last_failed_time > a.last_archived_time),
       pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END,
       (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size')
FROM pg_stat_archiver a";

fn secs(s: f64) -> chrono::Duration {
    chrono::Duration::milliseconds((s.max(0.0) * 1000.0) as i64)
}

/// What the server says about its archiver (`pg_stat_archiver` and the settings).
#[derive(Debug, Clone, Default)]
pub struct ArchiverState {
    pub mode: String,
    pub library: String,
    /// `archive_command`, or None when this role may not see it.
    pub command: Option<String>,
    pub timeout_s: i64,
    pub archived: i64,
    pub last_wal: Option<String>,
    pub last_age_s: Option<f64>,
    pub failed: i64,
    pub failed_wal: Option<String>,
    pub failed_age_s: Option<f64>,
    /// A failure more recent than the last success.
    pub failing: bool,
    pub in_recovery: bool,
    /// The segment being written now (primaries only).
    pub current_wal: Option<String>,
    pub segment_size: u64,
    pub user: String,
    /// The archive_command hints suggest: this configuration's own.
    pub suggested_command: String,
}

async fn archiving(
    shared: &SharedClient,
    rpo: Option<Duration>,
    suggested: String,
) -> Result<Finding> {
    let c = shared.conn()?;
    let Ok(client) = shared.client().await else {
        return Ok(Finding::fail(
            "cannot connect (see pg.connect), so archiving is unknown",
        ));
    };
    let row = client.query_one(ARCHIVER_SQL, &[]).await.map_err(|e| {
        anyhow!(
            "cannot read pg_stat_archiver: {}",
            pg::describe_pg_error(&e)
        )
    })?;
    let command = client
        .query_one("SELECT current_setting('archive_command')", &[])
        .await
        .ok()
        .and_then(|r| r.try_get::<_, String>(0).ok());
    let state = ArchiverState {
        mode: row.try_get(0)?,
        library: row.try_get(1)?,
        command,
        timeout_s: i64::from(row.try_get::<_, i32>(2)?),
        archived: row.try_get(3)?,
        last_wal: row.try_get(4)?,
        last_age_s: row.try_get(5)?,
        failed: row.try_get(6)?,
        failed_wal: row.try_get(7)?,
        failed_age_s: row.try_get(8)?,
        failing: row.try_get(9)?,
        in_recovery: row.try_get(10)?,
        current_wal: row.try_get(11)?,
        segment_size: row.try_get::<_, i64>(12)? as u64,
        user: c.user.clone(),
        suggested_command: suggested,
    };
    Ok(judge_archiver(&state, rpo))
}

/// The verdict of `pg.archiving`: pure, so every branch has a unit test.
pub fn judge_archiver(s: &ArchiverState, rpo: Option<Duration>) -> Finding {
    let mode = &s.mode;
    let suggested = if s.suggested_command.is_empty() {
        "dr --config /etc/dr/dr.toml wal-push %p"
    } else {
        s.suggested_command.as_str()
    };
    if mode == "off" {
        return Finding::fail(format!("archive_mode is off: no WAL is archived, so the RPO is the age of the last backup; hint: in postgresql.conf set wal_level = replica, archive_mode = on, archive_command = '{suggested}', then restart PostgreSQL"));
    }
    if s.in_recovery && mode != "always" {
        return Finding::warn(format!(
            "this server is a standby with archive_mode = {mode}: it archives nothing (the primary does); hint: point the target at the primary, or set archive_mode = always here"
        ));
    }
    if !s.library.is_empty() {
        return Finding::fail(format!(
            "archive_library = {:?} replaces archive_command, so WAL does not reach dr's storage; hint: set archive_library = '' and archive_command = '{suggested}'",
            s.library
        ));
    }
    let mut notes = Vec::new();
    match &s.command {
        Some(cmd) if cmd.trim().is_empty() => {
            return Finding::fail(format!(
                "archive_mode is {mode} but archive_command is empty: PostgreSQL keeps every WAL file in pg_wal until the disk fills; hint: set archive_command = '{suggested}' and reload"
            ))
        }
        Some(cmd) if !cmd.contains("wal-push") => {
            return Finding::fail(format!(
                "archive_command runs `{}`, not `dr wal-push`: the WAL goes elsewhere (or nowhere), so dr cannot restore from it; hint: set archive_command = '{suggested}' and reload",
                crate::wal::command_program(cmd)
            ))
        }
        Some(_) => {}
        None => notes.push(format!(
            "archive_command is not visible to role {} (hint: GRANT pg_read_all_settings TO {})",
            s.user, s.user
        )),
    }
    if s.failing {
        let failed_wal = s.failed_wal.as_deref();
        return Finding::fail(format!(
            "archiving is failing: {} failed {} ago ({} failure(s) since the statistics were reset){}; PostgreSQL keeps the WAL in pg_wal and retries, and pg_wal grows until it succeeds; hint: run the archive_command by hand as the OS user PostgreSQL runs as, in the data directory (`dr --config ... wal-push pg_wal/{}`), to see the error; check storage",
            failed_wal.unwrap_or("a file"),
            s.failed_age_s.map(|a| age_text(secs(a))).unwrap_or_else(|| "?".into()),
            s.failed,
            s.last_wal
                .as_deref()
                .map(|w| format!("; the last success was {w}"))
                .unwrap_or_default(),
            failed_wal.unwrap_or("<file>")
        ));
    }
    // Complete segments written but not archived yet: between the last archived one and
    // the one being written now.
    let backlog = match (
        &s.current_wal,
        s.last_wal.as_deref().and_then(WalName::parse),
    ) {
        (Some(current), Some(last)) if last.kind != WalKind::History => WalName::parse(current)
            .map(|cur| {
                cur.segno(s.segment_size)
                    .saturating_sub(last.segno(s.segment_size) + 1)
            })
            .unwrap_or(0),
        _ => 0,
    };
    let Some(last) = &s.last_wal else {
        return Finding::warn(format!(
            "nothing archived since the statistics were reset (the server writes {} now); hint: SELECT pg_switch_wal(); then check again, and look for archive_command errors in the server log",
            s.current_wal.as_deref().unwrap_or("?")
        ));
    };
    let age = secs(s.last_age_s.unwrap_or(0.0));
    let mut text = format!(
        "archive_command calls dr wal-push; last archived {last} {} ago; {} archived, {} failed since the statistics were reset",
        age_text(age),
        crate::units::count(s.archived),
        crate::units::count(s.failed)
    );
    if backlog > 0 {
        text.push_str(&format!(
            "; {} complete segment(s) wait",
            crate::units::count(backlog)
        ));
    }
    let Some(rpo) = rpo.and_then(|r| chrono::Duration::from_std(r).ok()) else {
        return Finding::warn(format!(
            "{text}; no RPO is set (hint: set [objectives] rpo)"
        ));
    };
    if age > rpo && backlog > 0 {
        return Finding::fail(format!(
            "{text}: WAL older than the RPO ({}) is not archived; hint: the archiver is stuck or too slow: check the server log for archive_command errors and storage throughput",
            age_text(rpo)
        ));
    }
    if rpo.num_seconds() > 0 && (s.timeout_s == 0 || s.timeout_s > rpo.num_seconds()) {
        notes.push(format!(
            "archive_timeout is {}, so on a quiet server the segment being written can wait longer than the RPO ({}) (hint: archive_timeout = '{}s')",
            if s.timeout_s == 0 {
                "off".to_string()
            } else {
                age_text(chrono::Duration::seconds(s.timeout_s))
            },
            age_text(rpo),
            (rpo.num_seconds() / 2).max(60)
        ));
    }
    if notes.is_empty() {
        Finding::pass(format!("{text} (RPO {})", age_text(rpo)))
    } else {
        Finding::warn(format!("{text}; {}", notes.join("; ")))
    }
}

/// `replication=true` added to a connection string (URL or keyword form).
pub fn replication_conninfo(public_url: &str) -> String {
    match url::Url::parse(public_url) {
        Ok(mut u) if u.scheme().starts_with("postgres") => {
            u.query_pairs_mut().append_pair("replication", "true");
            u.to_string()
        }
        _ => format!("{public_url} replication=true"),
    }
}

async fn replication(target: &PostgresTarget, shared: &SharedClient) -> Result<Finding> {
    let c = shared.conn()?;
    let Ok(client) = shared.client().await else {
        return Ok(Finding::fail(
            "cannot connect (see pg.connect), so the replication privilege is unknown",
        ));
    };
    let row = client
        .query_one(
            "SELECT r.rolsuper OR r.rolreplication,
                    (SELECT setting::int FROM pg_settings WHERE name = 'max_wal_senders'),
                    (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender')::int
             FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await
        .map_err(|e| anyhow!("{}", pg::describe_pg_error(&e)))?;
    let may: bool = row.try_get(0)?;
    let max_senders: i32 = row.try_get(1)?;
    let busy: i32 = row.try_get(2)?;
    let user = &c.user;
    if !may {
        return Ok(Finding::fail(format!(
            "role {user} has neither REPLICATION nor SUPERUSER, so `dr backup --physical` cannot stream a base backup; hint: ALTER ROLE {user} REPLICATION; and in pg_hba.conf: host replication {user} <dr host>/32 scram-sha-256"
        )));
    }
    if max_senders == 0 {
        return Ok(Finding::fail(
            "max_wal_senders = 0: no base backup can stream; hint: set max_wal_senders = 10 in postgresql.conf and restart PostgreSQL",
        ));
    }
    if busy >= max_senders {
        return Ok(Finding::fail(format!(
            "all {max_senders} WAL senders are in use, so a base backup would be refused; hint: raise max_wal_senders (restart needed)"
        )));
    }
    // Only a real replication connection proves pg_hba.conf lets it in.
    let psql = match tools::find("psql", target.pg_bin_dir.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            return Ok(Finding::warn(format!(
                "role {user} may replicate, but whether pg_hba.conf admits a replication connection is untested: {e:#}"
            )))
        }
    };
    let auth = c.child_env()?;
    let out = ChildCommand::new(psql, "psql (replication connection)")
        .args(["-X", "-A", "-t", "-q", "-c", "IDENTIFY_SYSTEM"])
        .arg(format!("--dbname={}", replication_conninfo(&c.public_url)))
        .envs(auth.env())
        .envs(&[("PGCONNECT_TIMEOUT".to_string(), "10".to_string())])
        .output()
        .await;
    let out = match out {
        Ok(out) => out.stdout,
        Err(e) => {
            return Ok(Finding::fail(format!(
                "a replication connection as {user} is refused ({e:#}); hint: add to pg_hba.conf: host replication {user} <dr host>/32 scram-sha-256 (before any reject line), then SELECT pg_reload_conf()"
            )))
        }
    };
    let fields: Vec<&str> = out.trim().split('|').collect();
    Ok(Finding::pass(format!(
        "role {user} may stream a base backup: replication connection accepted (system {}, timeline {}); {} of {max_senders} WAL senders free",
        fields.first().unwrap_or(&"?"),
        fields.get(1).unwrap_or(&"?"),
        max_senders - busy
    )))
}

/// The newest regular physical backup of `system_id` (or of any cluster).
fn newest_physical(all: &[BackupManifest], system_id: Option<u64>) -> Option<&BackupManifest> {
    all.iter().find(|m| {
        m.kind == BackupKind::Regular
            && m.method == BackupMethod::Physical
            && m.physical
                .as_ref()
                .is_some_and(|p| system_id.is_none_or(|id| p.system_identifier == id.to_string()))
    })
}

use super::wal_server::{live_server, LiveServer};
use crate::wal::continuity::{archive_chain, Chain};

/// A failure when the server writes a timeline the archive does not end on: two servers
/// archive two branches (an old primary that came back after a copy was promoted), and a
/// restore follows one branch only (`--timeline`), so the other branch's writes are lost to it.
pub fn judge_timeline(
    live: u32,
    chain: &Chain,
    segment_size: u64,
    target: &str,
) -> Option<Finding> {
    let newest = chain.newest();
    if live == newest {
        return None;
    }
    let fix = format!(
        "hint: decide which server is the primary; stop the stale one (the server on timeline {stale}) so only one server archives into wal/{target}, point target {target} at the primary, and take a new base backup from it (`dr backup --physical --target {target}`)",
        stale = live.min(newest)
    );
    let history = chain
        .steps
        .iter()
        .map(|(t, _)| t.to_string())
        .collect::<Vec<_>>()
        .join(" -> ");
    if let Some(i) = chain.steps.iter().position(|(t, _)| *t == live) {
        let (next, begin) = chain.steps.get(i + 1).copied().unwrap_or((newest, 0));
        return Some(Finding::fail(format!(
            "split brain: this server writes timeline {live}, but the archive's newest timeline is {newest} (history {history}; timeline {next} branched off timeline {live} at segment {}): another server was promoted and archives timeline {newest}, while this one still archives timeline {live} past the branch point; a restore follows one branch only (`dr restore --pitr --timeline N`), so the other branch's writes are lost to it; {fix}",
            crate::wal::segment_name(next, begin, segment_size)
        )));
    }
    if live > newest {
        return Some(Finding::fail(format!(
            "this server writes timeline {live}, but the archive's newest timeline is {newest} (history {history}): it holds no WAL of timeline {live}, not even its history file {live:08X}.history, so nothing this server wrote since it changed timeline can be restored; hint: make this server archive (see pg.archiving; `dr wal-push pg_wal/{live:08X}.history` from its data directory), stop any other server that still archives into wal/{target}, and take a new base backup (`dr backup --physical --target {target}`)"
        )));
    }
    Some(Finding::fail(format!(
        "split brain: this server writes timeline {live}, which is not on the history of the archive's newest timeline {newest} (history {history}): another server forked from it and archives timeline {newest}; a restore follows one branch only (`dr restore --pitr --timeline N`), so the other branch's writes are lost to it; {fix}"
    )))
}

async fn continuity(
    storage: &dyn Storage,
    target: &PostgresTarget,
    shared: &SharedClient,
) -> Result<Finding> {
    let name = &target.name;
    // What the server says: its cluster and its newest archived segment.
    let server = live_server(shared).await.ok();
    let (all, _) = catalog::list_complete(storage, Some(name)).await?;
    let system_id = server.as_ref().map(|s| s.system_id);
    let Some(backup) = newest_physical(&all, system_id) else {
        return Ok(Finding::fail(format!(
            "no physical base backup of {}: archived WAL cannot be replayed without one; hint: run `dr backup --physical --target {name}` and schedule it",
            match system_id {
                Some(id) => format!("this cluster (system {id})"),
                None => format!("target {name}"),
            }
        )));
    };
    let Some(info) = backup.physical.as_ref() else {
        return Ok(Finding::fail(format!(
            "backup {} is listed as physical but its manifest has no WAL positions; hint: run `dr validate --target {name} --backup-id {}`",
            backup.id, backup.id
        )));
    };
    let system_id: u64 = info.system_identifier.parse()?;
    let segment_size = info.wal_segment_size;
    let files = wal::list_archive(storage, &wal::cluster_prefix(name, system_id)).await?;
    // The record of which cluster this archive is: damaged, it is named here, not
    // ignored until a restore or prune needs it.
    if storage
        .head(&wal::cluster_record_key(name, system_id))
        .await?
        .is_some()
    {
        if let Err(e) = wal::read_cluster_record(storage, name, system_id).await {
            return Ok(Finding::fail(format!("{e:#}")));
        }
    }
    let chain = match archive_chain(storage, &files, info.timeline, segment_size).await {
        Ok(c) => c,
        Err(e) => return Ok(Finding::fail(format!("{e:#}"))),
    };
    if !chain.contains(info.timeline) {
        return Ok(Finding::fail(format!(
            "the newest base backup {} is on timeline {}, which is not an ancestor of the newest archived timeline {}: recovery from it cannot reach the newest WAL; hint: take a new base backup (`dr backup --physical --target {name}`)",
            backup.id,
            info.timeline,
            chain.newest()
        )));
    }
    if let Some(live) = server.as_ref().and_then(|s| s.timeline) {
        if let Some(finding) = judge_timeline(live, &chain, segment_size, name) {
            return Ok(finding);
        }
    }
    let from = Lsn::parse(&info.start_lsn)?.segno(segment_size);
    let walk = continuity::walk(&files, &chain, from, None, segment_size);
    if let Some(first) = walk.first_missing() {
        return Ok(Finding::fail(format!(
            "the WAL archive has a gap: first missing segment {first} ({} missing between {} and {}); recovery from base backup {} stops before it; hint: find out why it is missing (server log, storage), and take a new base backup now (`dr backup --physical --target {name}`) so recovery starts after the gap",
            walk.missing_count, walk.from, walk.to, backup.id
        )));
    }
    if let Some(LiveServer {
        last_archived: Some(last),
        ..
    }) = &server
    {
        if let Some(wal) = WalName::parse(last).filter(|w| w.kind == WalKind::Segment) {
            let stored = files.iter().any(|f| f.wal.name == wal.name);
            if !stored && wal.segno(segment_size) >= from {
                return Ok(Finding::fail(format!(
                    "the server reports {last} as archived, but it is not under wal/{name}/{system_id} in {}: archive_command stores WAL somewhere else; hint: make archive_command call `dr --config <this dr.toml> wal-push %p` (with --target {name} when several targets are configured)",
                    storage.describe()
                )));
            }
        }
    }
    Ok(Finding::pass(format!(
        "{} segment(s) from {} (start of base backup {}) to {}, no gap; timeline {}",
        crate::units::count(walk.segments),
        walk.from,
        backup.id,
        walk.to,
        chain.newest()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;

    const HOUR: Option<Duration> = Some(Duration::from_secs(3600));

    fn healthy() -> ArchiverState {
        ArchiverState {
            mode: "on".into(),
            command: Some("dr --config /etc/dr/dr.toml wal-push %p".into()),
            timeout_s: 300,
            archived: 40,
            last_wal: Some("000000010000000000000027".into()),
            last_age_s: Some(12.0),
            current_wal: Some("000000010000000000000028".into()),
            segment_size: 16 << 20,
            user: "dr".into(),
            ..Default::default()
        }
    }

    fn judged(f: impl FnOnce(&mut ArchiverState), rpo: Option<Duration>) -> Finding {
        let mut s = healthy();
        f(&mut s);
        judge_archiver(&s, rpo)
    }

    #[test]
    fn a_healthy_archiver_passes() {
        let f = judged(|_| {}, HOUR);
        assert_eq!(f.status, Status::Pass, "{}", f.message);
        assert!(f.message.contains("last archived 000000010000000000000027"));
    }

    #[test]
    fn archiving_that_cannot_reach_dr_fails() {
        for (change, needle) in [
            (
                Box::new(|s: &mut ArchiverState| s.mode = "off".into())
                    as Box<dyn Fn(&mut ArchiverState)>,
                "archive_mode = on",
            ),
            (
                Box::new(|s: &mut ArchiverState| {
                    s.command = Some("KEY=s3cr3t cp %p /mnt/%f".into())
                }),
                "runs `cp`, not `dr wal-push`",
            ),
            (
                Box::new(|s: &mut ArchiverState| s.command = Some(" ".into())),
                "archive_command is empty",
            ),
            (
                Box::new(|s: &mut ArchiverState| s.library = "basic_archive".into()),
                "archive_library",
            ),
        ] {
            let f = judged(|s| change(s), HOUR);
            assert_eq!(f.status, Status::Fail, "{}", f.message);
            assert!(!f.message.contains("s3cr3t"), "{}", f.message);
            assert!(
                f.message.contains(needle) && f.message.contains("hint:"),
                "{}",
                f.message
            );
        }
    }

    #[test]
    fn a_failure_since_the_last_success_fails_naming_the_segment() {
        let f = judged(
            |s| {
                s.failing = true;
                s.failed = 3;
                s.failed_wal = Some("000000010000000000000028".into());
                s.failed_age_s = Some(2.0);
            },
            HOUR,
        );
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.message.contains("000000010000000000000028 failed 2s ago"),
            "{}",
            f.message
        );
        assert!(f.message.contains("retries"), "{}", f.message);
    }

    #[test]
    fn old_wal_waiting_past_the_rpo_fails_but_an_idle_server_does_not() {
        let stuck = judged(
            |s| {
                s.last_age_s = Some(7200.0);
                s.current_wal = Some("00000001000000000000002B".into());
            },
            HOUR,
        );
        assert_eq!(stuck.status, Status::Fail, "{}", stuck.message);
        assert!(
            stuck.message.contains("3 complete segment(s) wait"),
            "{}",
            stuck.message
        );
        let idle = judged(|s| s.last_age_s = Some(7200.0), HOUR);
        assert_eq!(idle.status, Status::Pass, "{}", idle.message);
    }

    #[test]
    fn a_timeout_longer_than_the_rpo_or_no_rpo_warns() {
        let f = judged(|s| s.timeout_s = 0, HOUR);
        assert_eq!(f.status, Status::Warn);
        assert!(
            f.message.contains("archive_timeout is off") && f.message.contains("1800s"),
            "{}",
            f.message
        );
        assert_eq!(judged(|_| {}, None).status, Status::Warn);
        let hidden = judged(|s| s.command = None, HOUR);
        assert_eq!(hidden.status, Status::Warn);
        assert!(
            hidden.message.contains("pg_read_all_settings"),
            "{}",
            hidden.message
        );
        let standby = judged(|s| s.in_recovery = true, HOUR);
        assert_eq!(standby.status, Status::Warn);
        let fresh = judged(|s| s.last_wal = None, HOUR);
        assert_eq!(fresh.status, Status::Warn);
        assert!(fresh.message.contains("pg_switch_wal"), "{}", fresh.message);
    }

    #[test]
    fn a_server_off_the_archives_newest_timeline_fails_naming_both() {
        let seg = 1 << 20;
        let chain = Chain {
            steps: vec![(1, 0), (2, 7)],
        };
        assert!(judge_timeline(2, &chain, seg, "main").is_none());
        let stale = judge_timeline(1, &chain, seg, "main").unwrap();
        assert_eq!(stale.status, Status::Fail);
        for needle in [
            "split brain",
            "writes timeline 1",
            "newest timeline is 2",
            "000000020000000000000007",
            "stop the stale one (the server on timeline 1)",
            "dr backup --physical --target main",
        ] {
            assert!(
                stale.message.contains(needle),
                "{needle}: {}",
                stale.message
            );
        }
        let off = judge_timeline(3, &Chain::single(4), seg, "main").unwrap();
        assert!(
            off.message.contains("not on the history"),
            "{}",
            off.message
        );
        let ahead = judge_timeline(3, &chain, seg, "main").unwrap();
        assert!(
            ahead.message.contains("00000003.history"),
            "{}",
            ahead.message
        );
    }

    #[test]
    fn replication_conninfo_adds_the_parameter() {
        assert_eq!(
            replication_conninfo("postgres://u@h:5432/db?sslmode=require"),
            "postgres://u@h:5432/db?sslmode=require&replication=true"
        );
        assert_eq!(
            replication_conninfo("host=h dbname=d"),
            "host=h dbname=d replication=true"
        );
    }
}
