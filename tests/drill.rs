//! `dr drill` and `dr demo`: recovery rehearsed and measured, scratch destinations removed.

mod support;

use support::OutputLimited;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{PgCluster, World};

fn setup(extra: &str) -> (PgCluster, World) {
    support::sample_world(extra)
}

fn drill_reports(world: &World) -> Vec<serde_json::Value> {
    let dir = world.storage_dir().join("drills/main");
    let mut out: Vec<serde_json::Value> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    out.sort_by_key(|r| r["started_at"].as_str().unwrap().to_string());
    out
}

fn scratch_databases(pg: &PgCluster) -> Vec<String> {
    pg.databases()
        .into_iter()
        .filter(|d| d.starts_with("dr_drill"))
        .collect()
}

#[test]
fn drill_restores_verifies_reports_and_drops_the_scratch_database() {
    let (pg, world) = setup("");
    let none = world.dr(&["check", "--only", "drill.recent", "--format", "json"]);
    assert_eq!(none.json()["checks"][0]["status"], "warn");
    let run = world.dr(&["drill", "--format", "json"]);
    run.expect_code(0);
    let report = run.json();
    assert_eq!(report["ok"], true);
    assert!(report["verdict"].as_str().unwrap().starts_with("pass"));
    assert_eq!(report["verification"]["ok"], true);
    assert_eq!(report["verification"]["tables_checked"], 3);
    let phases: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for phase in [
        "backup",
        "scratch database",
        "fetch",
        "pg_restore",
        "verify",
        "cleanup",
    ] {
        assert!(phases.contains(&phase), "{phase} missing in {phases:?}");
    }
    assert!(report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["duration_ms"].is_u64()));
    assert!(report["rto_ms"].as_u64().unwrap() > 0);
    assert_eq!(report["rto_met"], true);
    let stored = drill_reports(&world);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["id"], report["id"]);
    assert!(
        scratch_databases(&pg).is_empty(),
        "scratch database dropped: {:?}",
        pg.databases()
    );
    let after = world.dr(&["check", "--only", "drill.recent", "--format", "json"]);
    assert_eq!(after.json()["checks"][0]["status"], "pass");
}

#[test]
fn drill_of_a_corrupted_backup_fails_records_and_cleans_up() {
    let (pg, world) = setup("");
    let m = world.backup();
    let dump = world.dump_path(&m);
    let mut bytes = std::fs::read(&dump).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&dump, bytes).unwrap();
    let run = world.dr(&["drill", "--backup-id", m["id"].as_str().unwrap()]);
    run.expect_code(1);
    assert!(run.all().contains("checksum mismatch"), "{}", run.all());
    let stored = drill_reports(&world);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["ok"], false);
    assert!(stored[0]["verdict"].as_str().unwrap().contains("checksum"));
    assert!(scratch_databases(&pg).is_empty(), "{:?}", pg.databases());
    let check = world.dr(&["check", "--only", "drill.recent", "--format", "json"]);
    assert_eq!(check.json()["checks"][0]["status"], "warn");
}

#[test]
fn missed_rto_fails_the_drill_naming_the_objective() {
    let (pg, world) = setup("");
    let cfg = std::fs::read_to_string(world.config_path())
        .unwrap()
        .replace("rto = \"10m\"", "rto = \"1ms\"");
    world.write_config(&cfg);
    let run = world.dr(&["drill"]);
    run.expect_code(1);
    assert!(run.all().contains("RTO objective missed"), "{}", run.all());
    assert_eq!(drill_reports(&world)[0]["rto_met"], false);
    assert!(scratch_databases(&pg).is_empty());
}

fn sandbox_dirs(world: &World) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(world.tmp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("dr-sandbox-")
        })
        .collect()
}

fn postgres_processes_under(dir: &std::path::Path) -> usize {
    let needle = dir.to_string_lossy().to_string();
    support::processes()
        .iter()
        .filter(|p| p.cmdline.contains(&needle) && !p.cmdline.contains("cargo"))
        .count()
}

#[test]
fn sandbox_drill_leaves_nothing_behind_even_when_interrupted() {
    let (pg, world) = setup("");
    let run = world.dr(&["drill", "--sandbox", "--format", "json"]);
    run.expect_code(0);
    assert_eq!(run.json()["mode"], "sandbox");
    assert!(sandbox_dirs(&world).is_empty());
    assert_eq!(postgres_processes_under(&world.tmp_dir()), 0);

    // Interrupted mid-restore: a big table makes pg_restore run for a while.
    pg.psql(
        "app",
        "CREATE TABLE public.big AS SELECT i, md5(i::text) AS p FROM generate_series(1, 1500000) i",
    );
    let m = world.backup();
    let child = world
        .command(&[
            "drill",
            "--sandbox",
            "--backup-id",
            m["id"].as_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // pg_restore, a child of this drill, is running.
        let restoring = support::processes().iter().any(|p| {
            p.ppid == child.id()
                && p.cmdline.contains("pg_restore")
                && p.cmdline.contains("--exit-on-error")
        });
        if restoring {
            break;
        }
        assert!(Instant::now() < deadline, "pg_restore never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    support::interrupt(child);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        sandbox_dirs(&world).is_empty(),
        "{:?}",
        sandbox_dirs(&world)
    );
    assert_eq!(
        postgres_processes_under(&world.tmp_dir()),
        0,
        "no sandbox server left running"
    );
    assert!(
        std::fs::read_dir(world.tmp_dir()).unwrap().next().is_none(),
        "no staging left"
    );
}

#[test]
fn interrupted_scratch_drill_still_drops_its_database() {
    let (pg, world) = setup("");
    pg.psql(
        "app",
        "CREATE TABLE public.big AS SELECT i, md5(i::text) AS p FROM generate_series(1, 1500000) i",
    );
    let m = world.backup();
    let child = world
        .command(&["drill", "--backup-id", m["id"].as_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while scratch_databases(&pg).is_empty()
        || pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_restore'",
        ) == "0"
    {
        assert!(Instant::now() < deadline, "the restore never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    support::interrupt(child);
    assert!(scratch_databases(&pg).is_empty(), "{:?}", pg.databases());
}

#[test]
fn demo_runs_to_the_end_and_leaves_nothing_running() {
    let world = World::new();
    let tmp = world.tmp_dir();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dr"))
        .arg("demo")
        .env("TMPDIR", &tmp)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output_limited()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "$ dr check",
        "$ dr backup",
        "$ dr list",
        "$ dr drill",
        "pass: restored and verified",
        "READY: 6 pass",
    ] {
        assert!(stdout.contains(step), "{step} missing:\n{stdout}");
    }
    assert!(
        std::fs::read_dir(&tmp).unwrap().next().is_none(),
        "demo removed its files"
    );
    assert_eq!(postgres_processes_under(&tmp), 0);
}
