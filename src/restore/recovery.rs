//! The server of a point-in-time restore, from its first start to the hand-over.
//!
//! PostgreSQL alone would promote the moment it runs out of WAL, whatever the reason: a
//! damaged segment looks like the end of the archive. So dr never lets it promote by itself.
//! The server first runs private (no TCP, a socket only dr can reach, trust for dr alone)
//! and unpromotable: paused at the target (`recovery_target_action = 'pause'`), or, for
//! `--to-latest`, as a standby that waits for more WAL. dr then asks the server where replay
//! stopped and compares it with what was asked and with the end of the archive that the
//! preflight listed. Only a recovery that reached both is promoted and handed over (restarted
//! with its own settings); anything short of it is stopped, unpromoted, and named. An
//! interruption stops the server before it can promote; a dr killed outright leaves a
//! record that the next run acts on (see `leftovers`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};

use super::pitr_target::RecoveryTarget;
use crate::leftovers::{self, Resource};
use crate::process::ChildCommand;
use crate::wal::continuity::Chain;
use crate::wal::{segment_name, Lsn, WalKind, WalName};

/// A restored server dr started.
#[derive(Debug, Clone)]
pub struct RunningServer {
    pub bin_dir: PathBuf,
    pub run_as: Option<String>,
}

impl RunningServer {
    /// Stops the server now (immediate mode).
    pub async fn stop(&self, pgdata: &Path) -> Result<()> {
        self.pg_ctl(pgdata)
            .args(["-m", "immediate", "-w", "stop"])
            .output()
            .await?;
        Ok(())
    }

    fn pg_ctl(&self, pgdata: &Path) -> ChildCommand {
        ChildCommand::new(self.bin_dir.join("pg_ctl"), "pg_ctl")
            .arg("-D")
            .arg(pgdata)
            .run_as(self.run_as.as_deref())
    }
}

/// dr's recovery log of one run: beside the data directory, never inside it, so a base
/// backup of the restored cluster does not carry it into the next restore.
pub fn log_path(pgdata: &Path) -> PathBuf {
    let name = pgdata
        .file_name()
        .map_or_else(|| "pgdata".into(), |n| n.to_string_lossy().into_owned());
    pgdata.with_file_name(format!("{name}.dr-recovery.log"))
}

/// Creates the run's log empty, owned by the server's OS user: lines of an earlier run
/// must never be read as this one's.
pub fn fresh_log(log: &Path, run_as: Option<&str>) -> Result<()> {
    std::fs::write(log, "").with_context(|| {
        format!(
            "cannot create the recovery log {}; hint: dr writes it beside --pgdata: make that directory writable",
            log.display()
        )
    })?;
    if let Some(user) = run_as {
        chown_to(log, user)?;
    }
    Ok(())
}

pub fn chown_to(path: &Path, user: &str) -> Result<()> {
    let pw = nix::unistd::User::from_name(user)?.with_context(|| {
        format!("running as root, the restored server needs the {user} OS user; hint: install the postgresql package, which creates it")
    })?;
    std::os::unix::fs::lchown(path, Some(pw.uid.as_raw()), Some(pw.gid.as_raw()))
        .with_context(|| format!("cannot give {} to {user}", path.display()))
}

/// Settings a restored data directory may carry from the cluster it was copied from (or
/// from an earlier restore of it): recovery settings that would steer this recovery, and
/// the comments dr wrote with them.
const INHERITED_KEYS: [&str; 13] = [
    "restore_command",
    "recovery_target",
    "recovery_target_time",
    "recovery_target_lsn",
    "recovery_target_name",
    "recovery_target_xid",
    "recovery_target_inclusive",
    "recovery_target_action",
    "recovery_target_timeline",
    "recovery_end_command",
    "archive_cleanup_command",
    "primary_conninfo",
    "primary_slot_name",
];

pub const DR_BLOCK_MARK: &str = "# dr restore --pitr";

/// `postgresql.auto.conf` without inherited recovery settings; returns the new text and
/// the keys removed.
pub fn strip_inherited(text: &str) -> (String, Vec<String>) {
    let mut removed = Vec::new();
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with(DR_BLOCK_MARK) {
            continue;
        }
        let key = trimmed
            .split(['=', ' ', '\t'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if !trimmed.starts_with('#') && INHERITED_KEYS.contains(&key.as_str()) {
            removed.push(key);
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    removed.sort();
    removed.dedup();
    (out, removed)
}

/// The port the server will listen on: `--port`, else the last `port` of
/// postgresql.auto.conf or postgresql.conf, else 5432.
pub fn configured_port(pgdata: &Path, given: Option<u16>) -> u16 {
    if let Some(p) = given {
        return p;
    }
    let port_in = |file: &str| -> Option<u16> {
        let text = std::fs::read_to_string(pgdata.join(file)).ok()?;
        text.lines()
            .rev()
            .filter_map(|l| {
                let l = l.split('#').next()?.trim();
                let (k, v) = l.split_once('=')?;
                (k.trim() == "port").then(|| v.trim().trim_matches('\'').parse().ok())?
            })
            .next()
    };
    port_in("postgresql.auto.conf")
        .or_else(|| port_in("postgresql.conf"))
        .unwrap_or(5432)
}

/// Refuses a port another process listens on, before anything waits on it.
pub fn check_port_free(port: u16, given: bool) -> Result<()> {
    for addr in ["127.0.0.1", "0.0.0.0"] {
        if let Err(e) = std::net::TcpListener::bind((addr, port)) {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                let why = if given {
                    format!("--port {port} is in use on this host")
                } else {
                    format!("the restored server would listen on port {port} (its postgresql.conf, or the default), which is in use on this host")
                };
                return Err(crate::error::usage(format!(
                    "{why}; nothing was started; hint: pass a free port with --port N"
                )));
            }
        }
    }
    Ok(())
}

/// What the restore expects recovery to reach.
pub struct Expected<'a> {
    pub target: &'a RecoveryTarget,
    /// The last segment of the unbroken archived run the preflight found.
    pub last_wal: String,
    pub chain: &'a Chain,
    pub start_segno: u64,
    pub segment_size: u64,
    /// Names of the segments in the archive (to tell "missing" from "refused").
    pub archived: HashSet<String>,
}

/// How dr runs the server while it recovers, and hands it over after.
pub struct ServerPlan<'a> {
    pub server: &'a RunningServer,
    pub pgdata: &'a Path,
    pub log: &'a Path,
    /// The port of the hand-over (`--port`); also names the private socket.
    pub port: Option<u16>,
    /// A drill's sandbox: its socket directory is already private; the server stays there
    /// and is not restarted.
    pub sandbox_socket_dir: Option<&'a Path>,
    /// A role to ask the server as (trust, on the private socket).
    pub role: String,
    /// What restore_command needs from dr's environment (storage credentials, the
    /// identity), passed to the server it starts; never on a command line.
    pub env: &'a [(String, String)],
}

/// Where recovery ended.
#[derive(Debug, Default, Clone)]
pub struct RecoveryOutcome {
    pub stopped: Option<String>,
    pub timeline: Option<u32>,
    pub last_transaction_at: Option<DateTime<Utc>>,
    pub replayed_to: Option<String>,
}

/// Stops the server on drop unless disarmed: Ctrl-C or SIGTERM drops the restore's future,
/// and a server that outlived dr would promote with nobody checking it.
struct StopOnDrop<'a> {
    pgdata: &'a Path,
    armed: bool,
    _record: leftovers::Registered,
}

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            leftovers::stop_postmaster_of(self.pgdata);
        }
    }
}

const TARGET_NOT_REACHED: &str = "recovery ended before configured recovery target was reached";
/// How long recovery may go without restoring a segment or replaying a record.
const NO_PROGRESS_LIMIT: Duration = Duration::from_secs(600);
/// The startup process waits with this event when no more WAL can be had.
const WAITING_FOR_WAL: &str = "RecoveryRetrieveRetryInterval";

/// Starts the server private and unpromotable, waits until replay stopped, checks where,
/// promotes, and hands the server over. On failure the server is stopped, unpromoted.
pub async fn run(plan: &ServerPlan<'_>, expected: &Expected<'_>) -> Result<RecoveryOutcome> {
    let private = match plan.sandbox_socket_dir {
        Some(dir) => PrivateSocket::Given(dir.to_path_buf()),
        None => PrivateSocket::new(plan.server.run_as.as_deref())?,
    };
    let socket_port = plan.port.unwrap_or(5432);
    let mut guard = StopOnDrop {
        pgdata: plan.pgdata,
        armed: true,
        _record: leftovers::register(Resource::RecoveringServer {
            dir: plan.pgdata.to_path_buf(),
        }),
    };
    if plan.sandbox_socket_dir.is_none() {
        crate::error::set_interrupt_note(Some(format!(
            "the server dr started on {} was stopped before it was promoted: it archived nothing and serves nobody; {} holds the unpacked base backup and partly replayed WAL (log: {}); hint: remove it before restoring again",
            plan.pgdata.display(),
            plan.pgdata.display(),
            plan.log.display()
        )));
    }
    let result = recover(plan, expected, private.path(), socket_port).await;
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            let _ = plan.server.stop(plan.pgdata).await;
            crate::error::set_interrupt_note(None);
            return Err(e);
        }
    };
    if plan.sandbox_socket_dir.is_none() {
        crate::error::set_interrupt_note(Some(format!(
            "{} recovered and was promoted (timeline {}), then stopped by the interruption before dr handed it over; hint: start it with pg_ctl -D {} start",
            plan.pgdata.display(),
            outcome.timeline.map_or("?".into(), |t| t.to_string()),
            plan.pgdata.display()
        )));
        if let Err(e) = hand_over(plan).await {
            let _ = plan.server.stop(plan.pgdata).await;
            crate::error::set_interrupt_note(None);
            return Err(e);
        }
    }
    crate::error::set_interrupt_note(None);
    // Verified and promoted: from here the server is the operator's (or the drill's).
    guard.armed = false;
    drop(private);
    Ok(outcome)
}

enum PrivateSocket {
    Given(PathBuf),
    Own(tempfile::TempDir),
}

impl PrivateSocket {
    fn new(run_as: Option<&str>) -> Result<PrivateSocket> {
        let dir = tempfile::Builder::new()
            .prefix("dr-recovery-")
            .tempdir()
            .context("cannot create a private socket directory for the recovering server")?;
        if let Some(user) = run_as {
            chown_to(dir.path(), user)?;
        }
        Ok(PrivateSocket::Own(dir))
    }

    fn path(&self) -> &Path {
        match self {
            PrivateSocket::Given(p) => p,
            PrivateSocket::Own(d) => d.path(),
        }
    }
}

async fn recover(
    plan: &ServerPlan<'_>,
    expected: &Expected<'_>,
    socket_dir: &Path,
    socket_port: u16,
) -> Result<RecoveryOutcome> {
    let hba = socket_dir.join("dr_recovery_hba.conf");
    std::fs::write(
        &hba,
        "# dr: only dr reaches the server while it recovers\nlocal all all trust\n",
    )?;
    if let Some(user) = plan.server.run_as.as_deref() {
        chown_to(&hba, user)?;
    }
    let options = format!(
        "-c listen_addresses='' -c unix_socket_directories='{}' -c hba_file='{}' -c hot_standby=on -c primary_conninfo='' -c logging_collector=off -c lc_messages=C -p {socket_port}",
        socket_dir.display(),
        hba.display()
    );
    plan.server
        .pg_ctl(plan.pgdata)
        .envs(plan.env)
        .arg("-l")
        .arg(plan.log)
        .args(["-o", &options, "-W", "start"])
        .output()
        .await?;
    let url = format!(
        "{}&connect_timeout=5",
        crate::pg::socket_url(&plan.role, "postgres", socket_dir, socket_port)
    );
    let settled = wait_until_settled(plan, expected, &url).await?;
    check_reached(expected, &settled)?;
    check_databases_valid(&url, expected).await?;
    promote(plan, &url).await?;
    let text = std::fs::read_to_string(plan.log).unwrap_or_default();
    let mut outcome = parse_outcome(&text);
    outcome.replayed_to = Some(settled.replay_lsn.to_string());
    if outcome.last_transaction_at.is_none() {
        outcome.last_transaction_at = settled.last_transaction_at;
    }
    Ok(outcome)
}

/// Where replay stood when it stopped for good.
#[derive(Debug)]
struct Settled {
    replay_lsn: Lsn,
    last_transaction_at: Option<DateTime<Utc>>,
    log: String,
}

/// Waits until the server paused at its target, or (to the latest) has replayed every
/// segment it could get; a server that stopped, or a segment wal-fetch refused, ends the
/// wait at once.
async fn wait_until_settled(
    plan: &ServerPlan<'_>,
    expected: &Expected<'_>,
    url: &str,
) -> Result<Settled> {
    let began = Instant::now();
    let mut seen_pid = false;
    let mut client: Option<tokio_postgres::Client> = None;
    // Progress is the log growing (segments restored) or replay advancing; none for this
    // long means a wait nobody will end, which must not hang an unattended restore.
    let mut progress = (0usize, Lsn(0), Instant::now());
    loop {
        let text = std::fs::read_to_string(plan.log).unwrap_or_default();
        if text.len() != progress.0 {
            progress = (text.len(), progress.1, Instant::now());
        }
        if progress.2.elapsed() > NO_PROGRESS_LIMIT {
            return Err(explain_failure(
                anyhow!(
                    "recovery made no progress for {} (replay at {})",
                    crate::units::duration(NO_PROGRESS_LIMIT),
                    progress.1
                ),
                &text,
                expected,
                plan,
            ));
        }
        if let Some(line) = fatal_line(&text) {
            if line.contains(TARGET_NOT_REACHED) {
                return Err(explain_failure(
                    anyhow!("{TARGET_NOT_REACHED}"),
                    &text,
                    expected,
                    plan,
                ));
            }
            return Err(explain_failure(
                anyhow!("the server stopped during recovery: {}", line.trim()),
                &text,
                expected,
                plan,
            ));
        }
        let refused = match expected.target {
            // A target short of the damage is still reachable: PostgreSQL says when not.
            RecoveryTarget::Latest => refused_segment(&text, expected),
            _ => None,
        };
        if let Some(refused) = refused {
            return Err(explain_failure(
                anyhow!("wal-fetch refused {refused}"),
                &text,
                expected,
                plan,
            ));
        }
        let alive = postmaster_alive(plan.pgdata);
        seen_pid |= alive;
        if !alive && (seen_pid || began.elapsed() > Duration::from_secs(10)) {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let text = std::fs::read_to_string(plan.log).unwrap_or_default();
            let fatal = fatal_line(&text).unwrap_or("no FATAL line in the log");
            return Err(explain_failure(
                anyhow!("the server stopped during recovery: {}", fatal.trim()),
                &text,
                expected,
                plan,
            ));
        }
        if alive && client.is_none() && text.contains("ready to accept read-only connections") {
            client = connect_as_superuser(url).await.ok();
        }
        if let Some(c) = &client {
            match replay_state(c).await {
                Ok(state) => {
                    if state.replay_lsn != progress.1 {
                        progress = (progress.0, state.replay_lsn, Instant::now());
                    }
                    if !state.in_recovery {
                        bail!("the recovering server left recovery without dr: something promoted it (pg_ctl promote, or a promote trigger); it was not checked; hint: remove {} and restore again", plan.pgdata.display());
                    }
                    let done = match expected.target {
                        RecoveryTarget::Latest => {
                            state.startup_wait.as_deref() == Some(WAITING_FOR_WAL)
                        }
                        _ => state.paused,
                    };
                    if done {
                        return Ok(Settled {
                            replay_lsn: state.replay_lsn,
                            last_transaction_at: state.last_transaction_at,
                            log: std::fs::read_to_string(plan.log).unwrap_or_default(),
                        });
                    }
                }
                Err(_) => client = None,
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct ReplayState {
    in_recovery: bool,
    replay_lsn: Lsn,
    paused: bool,
    startup_wait: Option<String>,
    last_transaction_at: Option<DateTime<Utc>>,
}

async fn replay_state(client: &tokio_postgres::Client) -> Result<ReplayState> {
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(), \
                    coalesce(pg_last_wal_replay_lsn(), '0/0')::text, \
                    CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END, \
                    (SELECT wait_event::text FROM pg_stat_activity WHERE backend_type = 'startup'), \
                    to_char(pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
            &[],
        )
        .await?;
    let lsn: String = row.get(1);
    let last: Option<String> = row.get(4);
    Ok(ReplayState {
        in_recovery: row.get(0),
        replay_lsn: Lsn::parse(&lsn)?,
        paused: row.get(2),
        startup_wait: row.get(3),
        last_transaction_at: last
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|d| d.with_timezone(&Utc)),
    })
}

/// Connects as the cluster's bootstrap superuser (the only role sure to see the startup
/// process's wait in pg_stat_activity): first as the target's role, which names it.
async fn connect_as_superuser(url: &str) -> Result<tokio_postgres::Client> {
    let client = connect(url).await?;
    let row = client
        .query_one("SELECT rolname::text FROM pg_roles WHERE oid = 10", &[])
        .await?;
    let superuser: String = row.get(0);
    let mut config: tokio_postgres::Config = url.parse()?;
    if config.get_user() == Some(superuser.as_str()) {
        return Ok(client);
    }
    config.user(&superuser);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let config: tokio_postgres::Config = url.parse()?;
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Replay stopped where it should: at the target, and, to the latest, inside the last
/// segment the archive holds. Anything short is a failure naming the segment.
fn check_reached(expected: &Expected<'_>, settled: &Settled) -> Result<()> {
    let size = expected.segment_size;
    let stopping = settled
        .log
        .lines()
        .filter_map(|l| l.split("LOG:  ").nth(1))
        .any(|m| m.starts_with("recovery stopping"));
    match expected.target {
        RecoveryTarget::Latest => {
            let last = WalName::parse(&expected.last_wal)
                .map(|w| w.segno(size))
                .ok_or_else(|| anyhow!("{} is not a segment name", expected.last_wal))?;
            // At least one record that starts in the last segment was replayed: replay
            // that ends exactly at its first byte stopped before it.
            let into_last = settled.replay_lsn.0 > last * size;
            if stopping || !into_last {
                let why = if stopping {
                    "recovery stopped at a target although --to-latest sets none".to_string()
                } else {
                    format!(
                        "replay stopped at {}, short of {} (the last archived segment)",
                        settled.replay_lsn, expected.last_wal
                    )
                };
                return Err(explain_short(why, settled, expected));
            }
        }
        _ => {
            if !stopping {
                return Err(explain_short(
                    format!(
                        "recovery paused at {} without reaching {}",
                        settled.replay_lsn,
                        expected.target.describe()
                    ),
                    settled,
                    expected,
                ));
            }
        }
    }
    Ok(())
}

/// A time target stops replay only at a commit record, and a DROP DATABASE writes its
/// own records (the database marked invalid, its files removed) before its commit. With
/// no other commit between the target and the DROP, replay applies them: the database is
/// gone although the DROP "did not happen yet". PostgreSQL marks it invalid
/// (`datconnlimit = -2`); such a recovery is not what was asked, so it is never promoted.
async fn check_databases_valid(url: &str, expected: &Expected<'_>) -> Result<()> {
    let client = connect_as_superuser(url).await?;
    let invalid: Vec<String> = client
        .query(
            "SELECT datname FROM pg_database WHERE datconnlimit = -2 ORDER BY datname",
            &[],
        )
        .await
        .context("cannot list the recovered cluster's databases")?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if invalid.is_empty() {
        return Ok(());
    }
    Err(anyhow!(
        "recovery to {} left database(s) {} invalid: a DROP DATABASE that committed after the target had already begun, and PostgreSQL applies a drop's own records before its commit when no other transaction commits in between; the data of {} is not in this recovery; the server was stopped before it was promoted; hint: choose a --to-time before the last commit that preceded the DROP (the server log, or `dr list`'s restore points), or --to-name a restore point made before it",
        expected.target.describe(),
        invalid.join(", "),
        invalid.join(", ")
    ))
}

fn explain_short(why: String, settled: &Settled, expected: &Expected<'_>) -> anyhow::Error {
    let size = expected.segment_size;
    let segno = settled.replay_lsn.segno(size).max(expected.start_segno);
    let next = if settled.replay_lsn.0 % size == 0 {
        segno
    } else {
        segno + 1
    };
    let next_name = segment_name(expected.chain.timeline_at(next), next, size);
    let refusal = wal_fetch_error(&settled.log, &next_name);
    anyhow!(
        "recovery did not reach {}: {why}; {next_name} could not be used{}; the server was stopped before it was promoted; hint: {}",
        expected.target.describe(),
        refusal.map(|r| format!(" (wal-fetch: {r})")).unwrap_or_else(|| " (see the log)".into()),
        if expected.archived.contains(&next_name) {
            format!("check {next_name} in storage (`dr wal-fetch --target NAME {next_name} /tmp/x` says why it is refused), or choose a target before it")
        } else {
            "choose an earlier target (`dr list --target NAME`)".into()
        }
    )
}

/// A segment of the run the preflight listed that wal-fetch refused (damaged, cannot be
/// decrypted, stored twice): recovery cannot go past it.
fn refused_segment(log: &str, expected: &Expected<'_>) -> Option<String> {
    let lines: Vec<&str> = log.lines().collect();
    for line in &lines {
        if !line.starts_with("error: ") {
            continue;
        }
        for word in line.split(|c: char| !c.is_ascii_hexdigit()) {
            if word.len() == 24
                && expected.archived.contains(word)
                && WalName::parse(word).is_some_and(|w| w.kind == WalKind::Segment)
            {
                return Some(word.to_string());
            }
        }
    }
    None
}

/// The error line wal-fetch wrote to the server log about `name`, if any.
fn wal_fetch_error(log: &str, name: &str) -> Option<String> {
    log.lines()
        .rev()
        .find(|l| l.starts_with("error: ") && l.contains(name))
        .map(|l| l.trim_start_matches("error: ").trim().to_string())
}

fn fatal_line(log: &str) -> Option<&str> {
    log.lines()
        .find(|l| l.contains("FATAL:  ") || l.contains("PANIC:  "))
}

async fn promote(plan: &ServerPlan<'_>, url: &str) -> Result<()> {
    plan.server
        .pg_ctl(plan.pgdata)
        .args(["-w", "-t", "120", "promote"])
        .output()
        .await
        .context("the recovered server could not be promoted")?;
    let client = connect(url).await?;
    let row = client.query_one("SELECT pg_is_in_recovery()", &[]).await?;
    if row.get::<_, bool>(0) {
        bail!("the recovered server is still in recovery after pg_ctl promote; see the log");
    }
    Ok(())
}

/// Restarts the promoted server with its own settings (and `--port`), without dr's
/// recovery settings: it now serves as configured.
async fn hand_over(plan: &ServerPlan<'_>) -> Result<()> {
    plan.server
        .pg_ctl(plan.pgdata)
        .args(["-m", "fast", "-w", "-t", "120", "stop"])
        .output()
        .await
        .context("the promoted server did not stop for its restart")?;
    remove_dr_settings(plan.pgdata)?;
    let mut start = plan
        .server
        .pg_ctl(plan.pgdata)
        .envs(plan.env)
        .arg("-l")
        .arg(plan.log);
    if let Some(p) = plan.port {
        start = start.args(["-o", &format!("-p {p}")]);
    }
    let started = start.args(["-w", "-t", "120", "start"]).output().await;
    if let Err(e) = started {
        let text = std::fs::read_to_string(plan.log).unwrap_or_default();
        let fatal = text
            .lines()
            .rev()
            .find(|l| l.contains("FATAL:  "))
            .map(str::trim)
            .unwrap_or("no FATAL line in the log");
        bail!(
            "the recovered and promoted server did not start with its own settings: {fatal} ({e:#}); {} is kept; hint: fix what the line names, then start it with pg_ctl -D {} -l {} start",
            plan.pgdata.display(),
            plan.pgdata.display(),
            plan.log.display()
        );
    }
    Ok(())
}

/// Removes dr's recovery block from postgresql.auto.conf once recovery is over: a base
/// backup of this cluster must not carry a recovery target into its next restore.
pub fn remove_dr_settings(pgdata: &Path) -> Result<()> {
    let auto = pgdata.join("postgresql.auto.conf");
    let text = std::fs::read_to_string(&auto)
        .with_context(|| format!("cannot read {}", auto.display()))?;
    let (clean, _) = strip_inherited(&text);
    std::fs::write(&auto, clean).with_context(|| format!("cannot write {}", auto.display()))
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

/// Where recovery stopped, the new timeline and the last replayed transaction, from this
/// run's server log (lc_messages = C).
pub fn parse_outcome(log: &str) -> RecoveryOutcome {
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

/// Names what was missing or refused when recovery ended before the target.
fn explain_failure(
    error: anyhow::Error,
    log: &str,
    expected: &Expected<'_>,
    plan: &ServerPlan<'_>,
) -> anyhow::Error {
    let size = expected.segment_size;
    let last_restored = log
        .lines()
        .filter_map(|l| l.split("restored log file \"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .filter_map(WalName::parse)
        .filter(|w| w.kind == WalKind::Segment)
        .map(|w| w.segno(size))
        .max();
    let next = last_restored.map_or(expected.start_segno, |s| s + 1);
    let next_name = segment_name(expected.chain.timeline_at(next), next, size);
    let archived = expected.archived.contains(&next_name);
    let why = if archived {
        match wal_fetch_error(log, &next_name) {
            Some(r) => format!("{next_name} is archived but could not be fetched: {r}"),
            None => format!("{next_name} is archived but could not be fetched (see the log)"),
        }
    } else {
        format!("the archive lacks {next_name}")
    };
    anyhow!(
        "recovery did not reach {}: {error:#}; {why}; the last segment replayed was {}; the server was stopped before it was promoted; the data directory {} is kept for inspection (log: {}); hint: {}",
        expected.target.describe(),
        last_restored.map_or("none".into(), |s| segment_name(expected.chain.timeline_at(s), s, size)),
        plan.pgdata.display(),
        plan.log.display(),
        if archived {
            format!("check the copy in storage and the server's access to it (`dr wal-fetch --target NAME {next_name} /tmp/x` as the server's OS user says why), remove the directory and restore again")
        } else {
            "choose an earlier target (`dr list --target NAME`), remove the directory and restore again".into()
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inherited_recovery_settings_are_stripped() {
        let text = "# Do not edit this file manually!\nport = 5544\nrestore_command = 'old'\n\n# dr restore --pitr (2026-01-01T00:00:00Z): recovery of base backup to time x\nrecovery_target_time = '2026-01-01 00:00:00+00'\nRecovery_Target_Action='promote'\nprimary_conninfo = 'host=prod'\nwork_mem = '8MB'\n";
        let (clean, removed) = strip_inherited(text);
        assert_eq!(
            clean,
            "# Do not edit this file manually!\nport = 5544\n\nwork_mem = '8MB'\n"
        );
        assert_eq!(
            removed,
            [
                "primary_conninfo",
                "recovery_target_action",
                "recovery_target_time",
                "restore_command"
            ]
        );
    }

    #[test]
    fn the_log_lives_beside_the_data_directory() {
        assert_eq!(
            log_path(Path::new("/srv/pg/restored")),
            Path::new("/srv/pg/restored.dr-recovery.log")
        );
    }

    #[test]
    fn the_port_comes_from_the_flag_then_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(configured_port(dir.path(), None), 5432);
        std::fs::write(dir.path().join("postgresql.conf"), "port = 5500 # x\n").unwrap();
        assert_eq!(configured_port(dir.path(), None), 5500);
        std::fs::write(dir.path().join("postgresql.auto.conf"), "port = '5600'\n").unwrap();
        assert_eq!(configured_port(dir.path(), None), 5600);
        assert_eq!(configured_port(dir.path(), Some(7000)), 7000);
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
}
