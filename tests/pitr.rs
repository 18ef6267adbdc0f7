//! Point-in-time restore against real PostgreSQL: a cluster archives its WAL with the built
//! `dr wal-push` (1 MiB segments), takes a physical base backup, writes rows under a
//! pgbench load, and `dr restore --pitr` brings back exactly the rows committed up to a
//! time, a restore point, or the end of the archive; targets outside the window and a lost
//! segment are refused or fail loudly, naming what is wrong.

mod support;

use support::pitr::{
    base_backup, cluster, exists_nonempty, ids, psql_port, restore_dir, server_now,
    switch_and_wait_archived, time_between_writes, write_rows, RestoredServer,
};
use support::wal::{pgbench, pgbench_command, switch_wal, wait_archived};
use support::{free_port, PgCluster, World};

/// Closes the current segment and waits until it is archived.
fn archive_now(pg: &PgCluster) {
    let seg = switch_wal(pg);
    wait_archived(pg, &seg);
}

fn restore(
    world: &World,
    dir: &std::path::Path,
    target: &[&str],
    start: Option<u16>,
) -> support::Run {
    let dir = dir.display().to_string();
    let mut args = vec![
        "restore", "--target", "main", "--pitr", "--pgdata", &dir, "--format", "json",
    ];
    args.extend_from_slice(target);
    let port;
    if let Some(p) = start {
        port = p.to_string();
        args.extend_from_slice(&["--start", "--port", &port]);
    }
    world.dr(&args)
}

fn restored_ids(port: u16) -> Vec<i64> {
    ids(&psql_port(port, "app", "SELECT id FROM events ORDER BY id"))
}

#[test]
fn restores_to_a_time_a_restore_point_and_the_latest_under_load() {
    let (pg, world) = cluster();
    pgbench(&pg, "app", &["-i", "-s", "1", "-q"]);
    let mut load = pgbench_command(&pg, "app", &["-c", "2", "-j", "2", "-T", "30", "-n"])
        .spawn()
        .unwrap();
    let before_backup = server_now(&pg);
    std::thread::sleep(std::time::Duration::from_millis(50));
    base_backup(&world);

    let a = write_rows(&pg, 5, "a");
    let mark = world.dr(&["mark", "before-b", "--target", "main", "--format", "json"]);
    mark.expect_code(0);
    assert_eq!(mark.json()["restore_point"]["name"], "before-b");
    // A second mark of the same name is refused: recovery would stop at the first.
    world
        .dr(&["mark", "before-b", "--target", "main"])
        .expect_code(2);
    let b = write_rows(&pg, 5, "b");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let t = server_now(&pg);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let c = write_rows(&pg, 5, "c");
    load.kill().ok();
    load.wait().ok();
    archive_now(&pg);
    // The source agrees with the split the test made.
    let at_or_before_t = ids(&pg.psql(
        "app",
        &format!("SELECT id FROM events WHERE at <= '{t}' ORDER BY id"),
    ));
    assert_eq!(at_or_before_t, [a.clone(), b.clone()].concat());

    // --to-time T: every row committed at or before T, none after.
    let dir = restore_dir(&world, "to-time");
    let port = free_port();
    let run = restore(&world, &dir, &["--to-time", &t], Some(port));
    run.expect_code(0);
    let _server = RestoredServer {
        dir: dir.clone(),
        port,
    };
    let report = run.json();
    assert_eq!(report["format_version"], 2);
    assert_eq!(report["ok"], true);
    assert_eq!(report["recovery_target"]["kind"], "time");
    assert_eq!(report["started"], true);
    assert!(report["last_transaction_at"].is_string(), "{report}");
    assert!(report["rpo_ms"].as_u64().is_some(), "{report}");
    assert_eq!(report["timeline"], 2);
    assert_eq!(restored_ids(port), at_or_before_t);
    assert_eq!(
        psql_port(port, "postgres", "SELECT pg_is_in_recovery()"),
        "f"
    );
    // Not archiving by default: the copy does not write into the production archive.
    assert_eq!(psql_port(port, "postgres", "SHOW archive_mode"), "off");
    drop(_server);

    // --to-name: the restore point made between a and b.
    let dir = restore_dir(&world, "to-name");
    let port = free_port();
    restore(&world, &dir, &["--to-name", "before-b"], Some(port)).expect_code(0);
    let _server = RestoredServer {
        dir: dir.clone(),
        port,
    };
    assert_eq!(restored_ids(port), a);
    drop(_server);

    // --to-lsn: the position the restore point was written at (recorded by dr mark).
    let lsn = mark.json()["restore_point"]["lsn"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = restore_dir(&world, "to-lsn");
    let port = free_port();
    restore(&world, &dir, &["--to-lsn", &lsn], Some(port)).expect_code(0);
    let _server = RestoredServer {
        dir: dir.clone(),
        port,
    };
    assert_eq!(restored_ids(port), a);
    drop(_server);
    let beyond = restore(
        &world,
        &restore_dir(&world, "beyond"),
        &["--to-lsn", "FF/0"],
        None,
    );
    beyond.expect_code(2);
    assert!(
        beyond
            .stderr
            .contains("after the restorable window of main: the window is"),
        "{}",
        beyond.stderr
    );

    // --to-latest: everything archived.
    let dir = restore_dir(&world, "to-latest");
    let port = free_port();
    restore(&world, &dir, &["--to-latest"], Some(port)).expect_code(0);
    let _server = RestoredServer {
        dir: dir.clone(),
        port,
    };
    assert_eq!(
        restored_ids(port),
        [a.clone(), b.clone(), c.clone()].concat()
    );
    drop(_server);

    // Without --start: the directory is ready and the exact start command is printed.
    let dir = restore_dir(&world, "not-started");
    let run = restore(&world, &dir, &["--to-time", &t], None);
    run.expect_code(0);
    let command = run.json()["start_command"].as_str().unwrap().to_string();
    assert!(
        command.contains("pg_ctl -D") && command.ends_with(" start"),
        "{command}"
    );
    assert!(dir.join("recovery.signal").exists());
    let auto = std::fs::read_to_string(dir.join("postgresql.auto.conf")).unwrap();
    assert!(
        auto.contains("restore_command = '")
            && auto.contains("wal-fetch --target main --system-id ")
            && auto.contains(" %f %p'"),
        "{auto}"
    );
    assert!(
        auto.contains("recovery_target_action = 'promote'"),
        "{auto}"
    );

    // A non-empty directory is refused, and left as it was.
    let refused = restore(&world, &dir, &["--to-latest"], None);
    refused.expect_code(2);
    assert!(
        refused.stderr.contains("is not empty"),
        "{}",
        refused.stderr
    );
    assert!(dir.join("recovery.signal").exists());

    // Before the base backup was consistent, and after the newest WAL: refused, naming
    // the window; nothing is created.
    let early = restore_dir(&world, "too-early");
    let run = restore(&world, &early, &["--to-time", &before_backup], None);
    run.expect_code(2);
    assert!(
        run.stderr.contains("before the restorable window"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("consistent at"), "{}", run.stderr);
    assert!(!early.exists());
    let late = restore(&world, &early, &["--to-time", "2099-01-01T00:00:00Z"], None);
    late.expect_code(2);
    assert!(late.stderr.contains("after the"), "{}", late.stderr);
    assert!(
        late.stderr
            .contains("after the restorable window of main: the window is"),
        "{}",
        late.stderr
    );
    assert!(!early.exists());

    // dr list shows the window and the restore point.
    let list = world.dr(&["list", "--target", "main"]);
    list.expect_code(0);
    assert!(
        list.stdout
            .contains("point-in-time restorable window of main"),
        "{}",
        list.stdout
    );
    assert!(list.stdout.contains("before-b"), "{}", list.stdout);
    let json = world
        .dr(&["list", "--target", "main", "--format", "json"])
        .json();
    assert_eq!(
        json["windows"][0]["spans"].as_array().unwrap().len(),
        1,
        "{json}"
    );
    assert!(json["windows"][0]["gaps"].as_array().unwrap().is_empty());
}

#[test]
fn a_lost_segment_fails_the_restore_naming_it() {
    let (pg, world) = cluster();
    base_backup(&world);
    write_rows(&pg, 3, "a");
    archive_now(&pg);
    write_rows(&pg, 3, "b");
    let lost = switch_wal(&pg);
    wait_archived(&pg, &lost);
    write_rows(&pg, 3, "c");
    let t = server_now(&pg);
    write_rows(&pg, 3, "d");
    archive_now(&pg);
    // The segment in the middle disappears from storage.
    let stored = support::wal::stored_wal(&world.storage_dir());
    let (_, _, path) = stored
        .iter()
        .find(|(n, _, _)| *n == lost)
        .expect("archived");
    std::fs::remove_file(path).unwrap();

    for target in [vec!["--to-latest"], vec!["--to-time", t.as_str()]] {
        let dir = restore_dir(&world, "gap");
        let run = restore(&world, &dir, &target, Some(free_port()));
        run.expect_code(1);
        assert!(
            run.stderr.contains(&format!("the archive lacks {lost}")),
            "{target:?}: {}",
            run.stderr
        );
        assert!(
            !exists_nonempty(&dir),
            "nothing is unpacked when the archive has a gap"
        );
        assert_eq!(run.json()["ok"], false);
    }
    // dr list names the gap.
    let json = world
        .dr(&["list", "--target", "main", "--format", "json"])
        .json();
    assert_eq!(json["windows"][0]["gaps"][0], lost.as_str(), "{json}");
}

#[test]
fn a_segment_that_cannot_be_fetched_stops_recovery_loudly() {
    let (pg, world) = cluster();
    base_backup(&world);
    write_rows(&pg, 3, "a");
    let damaged = switch_wal(&pg);
    wait_archived(&pg, &damaged);
    write_rows(&pg, 3, "b");
    let t = server_now(&pg);
    write_rows(&pg, 3, "c");
    archive_now(&pg);
    // The copy is listed (dr's checks before the start pass) but damaged: wal-fetch
    // refuses it and PostgreSQL ends recovery early.
    let stored = support::wal::stored_wal(&world.storage_dir());
    let (_, _, path) = stored
        .iter()
        .find(|(n, _, _)| *n == damaged)
        .expect("archived");
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(path, bytes).unwrap();

    let dir = restore_dir(&world, "damaged");
    let port = free_port();
    let run = restore(&world, &dir, &["--to-time", &t], Some(port));
    let _server = RestoredServer {
        dir: dir.clone(),
        port,
    };
    run.expect_code(1);
    assert!(
        run.stderr.contains("recovery did not reach"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(&damaged), "{}", run.stderr);
    assert!(
        run.stderr.contains("could not be fetched"),
        "{}",
        run.stderr
    );
    assert!(!dir.join("postmaster.pid").exists() || !_server.log().is_empty());
}

#[test]
fn restores_across_a_timeline_switch() {
    let (pg, world) = cluster();
    base_backup(&world);
    let a = write_rows(&pg, 3, "a");
    let t = time_between_writes(&pg);
    write_rows(&pg, 3, "b");
    archive_now(&pg);

    // The first restore becomes the primary: --archive keeps archiving its new timeline.
    let first = restore_dir(&world, "new-primary");
    let port = free_port();
    // The old primary still runs (this test follows the new timeline on purpose).
    let run = restore(
        &world,
        &first,
        &["--to-time", &t, "--archive", "--new-primary"],
        Some(port),
    );
    run.expect_code(0);
    let server = RestoredServer {
        dir: first.clone(),
        port,
    };
    assert_eq!(run.json()["timeline"], 2);
    let x = ids(&psql_port(
        port,
        "app",
        "INSERT INTO events (note) SELECT 'x' FROM generate_series(1, 3) RETURNING id",
    ));
    let seg = switch_and_wait_archived(&server);
    assert!(seg.starts_with("00000002"), "{seg}");
    drop(server);

    // From the same base backup, the end of the archive lies on timeline 2.
    let second = restore_dir(&world, "across");
    let port = free_port();
    let run = restore(
        &world,
        &second,
        &["--to-latest", "--timeline", "latest"],
        Some(port),
    );
    run.expect_code(0);
    let _server = RestoredServer {
        dir: second.clone(),
        port,
    };
    assert_eq!(run.json()["timeline"], 3, "{}", run.stdout);
    assert_eq!(restored_ids(port), [a, x].concat());
    let json = world
        .dr(&["list", "--target", "main", "--format", "json"])
        .json();
    // The copy restored last does not archive: the archive's newest timeline stays 2.
    assert_eq!(json["windows"][0]["timeline"], 2, "{json}");
}

fn sandboxes(world: &World) -> Vec<String> {
    std::fs::read_dir(world.tmp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("dr-sandbox-"))
        .collect()
}

#[test]
fn drill_pitr_passes_leaves_nothing_behind_and_counts_as_recent() {
    let (pg, world) = cluster();
    base_backup(&world);
    let a = write_rows(&pg, 3, "a");
    let t = server_now(&pg);
    write_rows(&pg, 3, "b");
    archive_now(&pg);

    let run = world.dr(&[
        "drill",
        "--pitr",
        "--target",
        "main",
        "--to-time",
        &t,
        "--format",
        "json",
    ]);
    run.expect_code(0);
    let report = run.json();
    assert_eq!(report["mode"], "pitr-sandbox");
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["rto_ms"].as_u64().is_some());
    assert!(report["rpo_ms"].as_u64().is_some(), "{report}");
    assert_eq!(report["rto_met"], true);
    assert_eq!(report["rpo_met"], true);
    assert!(
        report["pitr"]["last_transaction_at"].is_string(),
        "{report}"
    );
    let steps: Vec<(&str, &str)> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    for name in [
        "unpack",
        "recovery",
        "connect",
        "tables",
        "pg_amcheck",
        "cleanup",
    ] {
        assert!(steps.contains(&(name, "pass")), "{name}: {steps:?}");
    }
    let tables = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "tables")
        .unwrap();
    assert!(
        tables["message"].as_str().unwrap().contains("table(s) in"),
        "{tables}"
    );
    assert!(sandboxes(&world).is_empty(), "{:?}", sandboxes(&world));
    assert_eq!(a.len(), 3);

    // Kept like every drill: drill.recent counts it.
    let check = world.dr(&["check", "--format", "json"]).json();
    let recent = check["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "drill.recent")
        .unwrap();
    assert_eq!(recent["status"], "pass", "{recent}");

    // Interrupted once the restored server runs: exit 130, the server is stopped and the
    // directory removed.
    let child = world.spawn(&["drill", "--pitr", "--target", "main"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let pid_file = loop {
        let found = sandboxes(&world)
            .into_iter()
            .map(|s| world.tmp_dir().join(s).join("data/postmaster.pid"))
            .find(|p| p.exists());
        if let Some(p) = found {
            break p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the drill never started its server"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let postmaster: i32 = std::fs::read_to_string(&pid_file)
        .unwrap_or_default()
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    support::interrupt(child);
    assert!(sandboxes(&world).is_empty(), "{:?}", sandboxes(&world));
    if postmaster > 0 {
        assert!(
            !std::path::Path::new(&format!("/proc/{postmaster}")).exists(),
            "the sandbox server {postmaster} still runs"
        );
    }
}

/// The point-in-time runbook, followed literally: every `[dr]` step's command as
/// `dr runbook show` renders it, with TIME, DIR and PORT filled in as the operator would.
#[test]
fn the_point_in_time_runbook_works_as_written() {
    let (pg, mut world) = cluster();
    base_backup(&world);
    let good = write_rows(&pg, 3, "good");
    let t = time_between_writes(&pg);
    pg.psql("app", "DELETE FROM events"); // the incident
                                          // No archive_now: the runbook's first step closes and archives the WAL itself.

    let shown = world.dr(&[
        "runbook",
        "show",
        "point-in-time-restore",
        "--format",
        "json",
    ]);
    shown.expect_code(0);
    let doc = shown.json();
    let dir = restore_dir(&world, "new-primary");
    let port = free_port();
    let mut server = None;
    for step in doc["steps"].as_array().unwrap() {
        let number = step["number"].as_u64().unwrap();
        if step["kind"] == "manual" {
            if number == 5 {
                // Stop the damaged server.
                pg.stop_server();
            }
            if number == 7 {
                // Point the target at the restored server.
                let url = format!(
                    "postgres://postgres:{}@127.0.0.1:{port}/app",
                    support::SUPERUSER_PASSWORD
                );
                world.env.retain(|(k, _)| k != "DR_TEST_PG_URL");
                world.env.push(("DR_TEST_PG_URL".into(), url));
            }
            continue;
        }
        let command = step["command"]
            .as_str()
            .unwrap()
            .replace("TIME", &t)
            .replace("DIR", &dir.display().to_string())
            .replace("PORT", &port.to_string())
            .replace("NAME", "4711");
        let argv: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(argv[0], "dr", "{command}");
        let run = world.dr(&argv[1..]);
        if argv.contains(&"--pgdata") {
            server = Some(RestoredServer {
                dir: dir.clone(),
                port,
            });
        }
        assert_eq!(
            run.code, 0,
            "step {number}: {command}\n{}{}",
            run.stdout, run.stderr
        );
        if number == 2 {
            assert!(run.stdout.contains("restorable window"), "{}", run.stdout);
        }
    }
    assert!(server.is_some(), "the runbook restores");
    assert_eq!(restored_ids(port), good);
    // Step 9 took a base backup of the new timeline.
    let list = world
        .dr(&["list", "--target", "main", "--format", "json"])
        .json();
    assert_eq!(list["backups"][0]["physical"]["timeline"], 2, "{list}");
}

#[test]
fn an_encrypted_archive_restores_with_the_identity() {
    let keys = tempfile::tempdir().unwrap();
    let (generated, public) = support::wal::age_keygen(keys.path(), "team.key");
    let (pg, world) =
        support::pitr::cluster_with(&format!("\n[encryption]\nrecipients = [\"{public}\"]\n"));
    // The identity where the server's OS user (restore_command) can read it.
    let identity = world.dir.path().join("team.key");
    std::fs::copy(&generated, &identity).unwrap();
    if support::is_root() {
        std::process::Command::new("chown")
            .arg("postgres:postgres")
            .arg(&identity)
            .status()
            .unwrap();
    }
    let id = identity.display().to_string();
    base_backup(&world);
    let a = write_rows(&pg, 3, "a");
    let t = time_between_writes(&pg);
    write_rows(&pg, 3, "b");
    archive_now(&pg);

    // Without the identity nothing can be unpacked: refused, nothing left behind.
    let dir = restore_dir(&world, "no-key");
    let run = restore(&world, &dir, &["--to-time", &t], Some(free_port()));
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("identity"), "{}", run.stderr);
    assert!(!exists_nonempty(&dir));

    // With it: the base tar is decrypted, and restore_command passes it to wal-fetch.
    let dir = restore_dir(&world, "with-key");
    let port = free_port();
    let run = restore(
        &world,
        &dir,
        &["--to-time", &t, "--identity", &id],
        Some(port),
    );
    let _server = RestoredServer {
        dir: dir.clone(),
        port,
    };
    run.expect_code(0);
    assert_eq!(restored_ids(port), a);
    // restore_command passed the identity on; dr removed its recovery settings once it
    // handed the promoted server over.
    let steps = run.json()["steps"].clone();
    let settings = steps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "recovery settings")
        .unwrap();
    assert!(
        settings["message"]
            .as_str()
            .unwrap()
            .contains(&format!("--identity {id} %f %p")),
        "{settings}"
    );
    let auto = std::fs::read_to_string(dir.join("postgresql.auto.conf")).unwrap();
    assert!(!auto.contains("restore_command"), "{auto}");
}
