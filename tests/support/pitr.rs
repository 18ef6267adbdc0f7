//! Point-in-time restores in tests: an archiving cluster with small (1 MiB) WAL segments,
//! a table whose rows carry their insert time, and the servers `dr restore --pitr --start`
//! leaves running, stopped on drop (also when a test panics).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::wal::{archiving_cluster, ArchiveSetup};
use super::{is_root, pg_bin_dir, PgCluster, World, SUPERUSER_PASSWORD};

/// An archiving cluster (1 MiB segments) with table `app.events(id, at)`.
pub fn cluster() -> (PgCluster, World) {
    cluster_with("")
}

/// [`cluster`] with more dr.toml (such as an `[encryption]` table).
pub fn cluster_with(extra_toml: &str) -> (PgCluster, World) {
    let (pg, world) = archiving_cluster(ArchiveSetup {
        initdb_args: &["--wal-segsize=1"],
        extra_toml,
        ..Default::default()
    });
    pg.psql(
        "app",
        "CREATE TABLE events (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(), note text)",
    );
    (pg, world)
}

/// Inserts `n` rows, one transaction each, a few milliseconds apart; returns their ids.
pub fn write_rows(pg: &PgCluster, n: usize, note: &str) -> Vec<i64> {
    (0..n)
        .map(|_| {
            let id = pg.psql(
                "app",
                &format!("INSERT INTO events (note) VALUES ('{note}') RETURNING id"),
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
            id.lines().next().unwrap().trim().parse().unwrap()
        })
        .collect()
}

/// The server's clock now, as `--to-time` takes it.
pub fn server_now(pg: &PgCluster) -> String {
    pg.psql(
        "postgres",
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    )
}

/// The server's clock with 50 ms of quiet on both sides: a time that rows written just
/// before and just after fall clearly on either side of.
pub fn time_between_writes(pg: &PgCluster) -> String {
    std::thread::sleep(std::time::Duration::from_millis(50));
    let t = server_now(pg);
    std::thread::sleep(std::time::Duration::from_millis(50));
    t
}

/// `dr backup --physical` of target `main`, which must succeed.
pub fn base_backup(world: &World) {
    world
        .dr(&[
            "backup",
            "--physical",
            "--target",
            "main",
            "--format",
            "json",
        ])
        .expect_code(0);
}

/// A path for a restored data directory: inside the world (the postgres user can enter
/// it), not created yet.
pub fn restore_dir(world: &World, name: &str) -> PathBuf {
    world.dir.path().join(name)
}

/// `dr restore --target main --pitr` into a fresh directory `name` of the world, started
/// on a free port, `--format json`, with `to` (`["--to-latest"]`, `["--to-time", T]`...)
/// choosing the point. The returned server is stopped when it drops, whatever the run did.
pub fn restore_started(world: &World, name: &str, to: &[&str]) -> (super::Run, RestoredServer) {
    let dir = restore_dir(world, name);
    let port = super::free_port();
    let (dir_text, port_text) = (dir.display().to_string(), port.to_string());
    let mut args = vec![
        "restore", "--target", "main", "--pitr", "--pgdata", &dir_text,
    ];
    args.extend_from_slice(to);
    args.extend(["--start", "--port", &port_text, "--format", "json"]);
    let run = world.dr(&args);
    (run, RestoredServer { dir, port })
}

/// Runs SQL on a restored server over TCP as the superuser; panics on error.
pub fn psql_port(port: u16, db: &str, sql: &str) -> String {
    let out = Command::new(pg_bin_dir().join("psql"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            db,
        ])
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGPASSWORD", SUPERUSER_PASSWORD)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql on port {port} failed on {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// On a restored server: closes its current segment and waits (a minute at most) until its
/// own archiver stored it; returns the segment's name.
pub fn switch_and_wait_archived(server: &RestoredServer) -> String {
    let port = server.port;
    let seg = psql_port(port, "postgres", "SELECT pg_walfile_name(pg_switch_wal())");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while psql_port(
        port,
        "postgres",
        "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
    ) < seg
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{seg} not archived by the restored server: {}",
            server.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    seg
}

pub fn ids(text: &str) -> Vec<i64> {
    // `INSERT 0 3` follows RETURNING rows: only the numbers count.
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// A data directory a restore started a server on: stopped (immediate) on drop.
pub struct RestoredServer {
    pub dir: PathBuf,
    pub port: u16,
}

impl RestoredServer {
    pub fn stop(&self) {
        if !self.dir.join("postmaster.pid").exists() {
            return;
        }
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(pg_bin_dir().join("pg_ctl"));
            c
        } else {
            Command::new(pg_bin_dir().join("pg_ctl"))
        };
        let _ = cmd
            .arg("-D")
            .arg(&self.dir)
            .args(["-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .output();
    }

    pub fn log(&self) -> String {
        let name = self.dir.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::read_to_string(self.dir.with_file_name(format!("{name}.dr-recovery.log")))
            .unwrap_or_default()
    }
}

impl Drop for RestoredServer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn exists_nonempty(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}
