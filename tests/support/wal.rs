//! A PostgreSQL cluster that archives its WAL with the built `dr wal-push`, and helpers
//! to drive and inspect its archiver. The storage is initialised (`dr init`) before the
//! server starts. As root the server (and so `archive_command`) runs as the `postgres` OS
//! user: the world directory, dr.toml and the storage directory are handed to that user.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{is_root, PgCluster, World};

/// How dr is reached from archive_command, and what the server adds to postgresql.conf.
#[derive(Default)]
pub struct ArchiveSetup<'a> {
    /// `[storage]` (and `[storage.s3]`) tables of dr.toml; local storage in the world when None.
    pub storage_toml: Option<String>,
    /// Environment assignments put in front of the command (S3 credentials).
    pub command_env: Vec<(String, String)>,
    /// Extra text for dr.toml (more targets, retention, ...).
    pub extra_toml: &'a str,
    /// Extra arguments of `wal-push` (such as `--target main`).
    pub push_args: &'a str,
    /// Extra `initdb` arguments (such as `--wal-segsize=1`).
    pub initdb_args: &'a [&'a str],
}

fn chown_to_postgres(path: &Path) {
    if is_root() {
        let st = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .unwrap();
        assert!(st.success(), "chown {}", path.display());
    }
}

/// Starts a cluster with database `app`, `archive_mode = on` and `archive_command`
/// calling the built dr with the world's dr.toml; the world's target `main` points at it
/// (superuser, `wal_archiving = true`).
pub fn archiving_cluster(setup: ArchiveSetup<'_>) -> (PgCluster, World) {
    let pg = PgCluster::start_with(super::free_port(), setup.initdb_args);
    pg.create_db("app");
    let mut world = World::new();
    let storage = setup.storage_toml.clone().unwrap_or_else(|| {
        format!(
            "[storage]\nurl = \"file://{}\"\n",
            world.storage_dir().display()
        )
    });
    world
        .env
        .push(("DR_TEST_PG_URL".into(), pg.superuser_url("app")));
    for (k, v) in &setup.command_env {
        world.env.push((k.clone(), v.clone()));
    }
    world.write_config(&format!(
        r#"
[objectives]
rpo = "1h"
rto = "10m"

{storage}

[retention]
keep_last = 1

[[postgres]]
name = "main"
url_env = "DR_TEST_PG_URL"
wal_archiving = true

[[contacts]]
name = "Test On-Call"
role = "primary"
phone = "+1-555-0100"
{}
"#,
        setup.extra_toml
    ));
    // wal-push writes only into an initialised storage; root initialises it here and the
    // chown below hands it to the server's OS user.
    world.dr(&["init"]).expect_code(0);
    chown_to_postgres(world.dir.path());
    std::fs::set_permissions(
        world.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let env: String = setup
        .command_env
        .iter()
        .map(|(k, v)| format!("{k}={v} "))
        .collect();
    let command = format!(
        "{env}{} --config {} wal-push {} %p",
        env!("CARGO_BIN_EXE_dr"),
        world.config_path().display(),
        setup.push_args
    );
    let conf = pg.data_dir().join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&format!(
        "\nwal_level = replica\narchive_mode = on\narchive_command = '{command}'\narchive_timeout = '5min'\nmax_wal_senders = 4\n# nothing is recycled while a test runs: every archived segment stays comparable\nwal_keep_size = '2GB'\nmax_wal_size = '2GB'\n"
    ));
    std::fs::write(&conf, text).unwrap();
    pg.stop_server();
    pg.start_server();
    (pg, world)
}

pub fn system_id(pg: &PgCluster) -> String {
    pg.psql(
        "postgres",
        "SELECT system_identifier FROM pg_control_system()",
    )
}

/// Closes the current segment (with something in it) and returns its name.
pub fn switch_wal(pg: &PgCluster) -> String {
    pg.psql(
        "postgres",
        "CREATE TABLE IF NOT EXISTS wal_filler (x int); INSERT INTO wal_filler VALUES (1)",
    );
    pg.psql("postgres", "SELECT pg_walfile_name(pg_switch_wal())")
}

/// pg_stat_archiver as (last archived, failed count, last failed).
pub fn archiver(pg: &PgCluster) -> (String, i64, String) {
    let row = pg.psql(
        "postgres",
        "SELECT coalesce(last_archived_wal, ''), failed_count, coalesce(last_failed_wal, '') FROM pg_stat_archiver",
    );
    let f: Vec<&str> = row.split('|').collect();
    (f[0].to_string(), f[1].parse().unwrap(), f[2].to_string())
}

/// Waits until the server reports `segment` (or a later one) archived.
#[track_caller]
pub fn wait_archived(pg: &PgCluster, segment: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // The statistics follow the .done file: wait for both, so a check sees it too.
        let (last, _, _) = archiver(pg);
        let done = pg
            .data_dir()
            .join("pg_wal/archive_status")
            .join(format!("{segment}.done"))
            .exists();
        if done && last.len() >= 24 && last[..24] >= *segment {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{segment} not archived after 60 s; pg_stat_archiver: {:?}; server log tail: {}",
            archiver(pg),
            log_tail(pg)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the archiver has failed at least `failures` times.
#[track_caller]
pub fn wait_failures(pg: &PgCluster, failures: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while archiver(pg).1 < failures {
        assert!(
            Instant::now() < deadline,
            "the archiver did not fail {failures} time(s): {:?}",
            archiver(pg)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn log_tail(pg: &PgCluster) -> String {
    let log = std::fs::read_to_string(pg.dir.path().join("log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Names the server has archived and still keeps in pg_wal (`archive_status/*.done`).
pub fn archived_in_pg_wal(pg: &PgCluster) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(pg.data_dir().join("pg_wal/archive_status"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".done")
                .map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

/// Archived objects below `root` (a local storage directory or an S3 bucket directory):
/// (WAL name, sha256 in the object name, path).
pub fn stored_wal(root: &Path) -> Vec<(String, String, PathBuf)> {
    super::files_below(&root.join("wal"))
        .into_iter()
        .filter_map(|p| {
            let file = p.file_name()?.to_string_lossy().into_owned();
            let rest = file
                .strip_suffix(".zst")
                .or_else(|| file.strip_suffix(".gz"))
                .unwrap_or(&file);
            let (name, sha) = rest.rsplit_once('.')?;
            (sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| (name.to_string(), sha.to_string(), p.clone()))
        })
        .collect()
}

/// Runs pgbench against `db` with the given arguments; panics on failure.
pub fn pgbench(pg: &PgCluster, db: &str, args: &[&str]) {
    let out = pgbench_command(pg, db, args).output().unwrap();
    assert!(
        out.status.success(),
        "pgbench {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn pgbench_command(pg: &PgCluster, db: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(pg.bin("pgbench"));
    cmd.arg("-h")
        .arg(pg.socket_dir())
        .args(["-p", &pg.port.to_string(), "-U", "postgres"])
        .args(args)
        .arg(db)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    cmd
}

/// A synthetic 16 MiB segment with a valid long page header for `system_id`, filled with
/// bytes derived from `seed` (incompressible), written as `dir/pg_wal/<name>`.
pub fn synthetic_segment(dir: &Path, system_id: u64, segno: u64, seed: u64) -> PathBuf {
    const SEG: u64 = 16 << 20;
    let name = format!("{:08X}{:08X}{:08X}", 1, segno / 256, segno % 256);
    let mut data = vec![0u8; SEG as usize];
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    data[0..2].copy_from_slice(&0xD110u16.to_ne_bytes());
    data[2..4].copy_from_slice(&2u16.to_ne_bytes());
    data[4..8].copy_from_slice(&1u32.to_ne_bytes());
    data[8..16].copy_from_slice(&(segno * SEG).to_ne_bytes());
    data[16..24].fill(0);
    data[24..32].copy_from_slice(&system_id.to_ne_bytes());
    data[32..36].copy_from_slice(&(SEG as u32).to_ne_bytes());
    data[36..40].copy_from_slice(&8192u32.to_ne_bytes());
    let wal = dir.join("pg_wal");
    std::fs::create_dir_all(&wal).unwrap();
    let path = wal.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

/// A key pair made by `age-keygen` (Debian package age): (identity file, public key).
pub fn age_keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&path)
        .output()
        .expect("age-keygen runs (apt-get install age)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = Command::new("age-keygen")
        .arg("-y")
        .arg(&path)
        .output()
        .unwrap();
    (
        path,
        String::from_utf8_lossy(&public.stdout).trim().to_string(),
    )
}
