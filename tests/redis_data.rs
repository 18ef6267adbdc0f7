//! Redis data backups against real redis-server processes: both methods round-trip every
//! type with TTLs, `auto` falls back when SYNC and PSYNC are renamed away, a killed backup
//! leaves nothing listed, restores ask before touching data, verify and drill compare
//! against the backup.

mod support;

use std::time::Duration;

use support::redis_data::{assert_same_data, load_every_type, load_many, snapshot, DataRedis};
use support::World;

/// A world whose only target is Redis `cache` (URL in $DR_TEST_REDIS_URL).
fn redis_world(source: &DataRedis, method: &str) -> World {
    let world = World::new();
    let storage = format!(
        "[storage]\nurl = \"file://{}\"\n",
        world.storage_dir().display()
    );
    redis_world_on(world, &storage, source, method)
}

/// A world that also encrypts (an age key made by `age-keygen`); returns the identity file.
fn encrypted_redis_world(source: &DataRedis, method: &str) -> (World, std::path::PathBuf) {
    let world = World::new();
    let identity = world.dir.path().join("team.key");
    let made = std::process::Command::new("age-keygen")
        .arg("-o")
        .arg(&identity)
        .output()
        .expect("age-keygen runs (Debian package age; scripts/install-test-deps)");
    assert!(made.status.success());
    let public = std::process::Command::new("age-keygen")
        .arg("-y")
        .arg(&identity)
        .output()
        .unwrap();
    let public = String::from_utf8_lossy(&public.stdout).trim().to_string();
    let storage = format!(
        "[storage]\nurl = \"file://{}\"\n\n[encryption]\nrecipients = [\"{public}\"]\n",
        world.storage_dir().display()
    );
    (redis_world_on(world, &storage, source, method), identity)
}

/// The same, with `storage_toml` as its `[storage]` table.
fn redis_world_on(mut world: World, storage_toml: &str, source: &DataRedis, method: &str) -> World {
    world.env.push(("DR_TEST_REDIS_URL".into(), source.url()));
    world.write_config(&format!(
        r#"
[objectives]
rpo = "1h"
rto = "10m"

{storage_toml}

[retention]
keep_last = 2

[[redis]]
name = "cache"
url_env = "DR_TEST_REDIS_URL"
persistent = true
backup = true
method = "{method}"

[[contacts]]
name = "Test On-Call"
role = "primary"
phone = "+1-555-0100"
"#
    ));
    world
}

fn backup(world: &World) -> serde_json::Value {
    let run = world.dr(&["backup", "--target", "cache", "--format", "json"]);
    run.expect_code(0);
    run.json()["backups"][0].clone()
}

fn restore_into(world: &World, id: &str, into: &DataRedis, extra: &[&str]) -> support::Run {
    let url = into.url();
    let mut args = vec![
        "restore",
        "--target",
        "cache",
        "--backup-id",
        id,
        "--into",
        url.as_str(),
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    world.dr(&args)
}

fn round_trip(method: &str) {
    let source = DataRedis::start();
    let keys = load_every_type(&source);
    let world = redis_world(&source, method);
    let m = backup(&world);
    assert_eq!(m["engine"], "redis");
    assert_eq!(m["redis"]["method"], method);
    assert_eq!(
        m["redis"]["rdb_version"], 10,
        "Redis 7.0 writes RDB version 10"
    );
    assert!(
        m["server_version"].as_str().unwrap().starts_with("7."),
        "{m}"
    );
    assert_eq!(m["redis"]["keys"], keys);
    let dbs: Vec<(u64, u64)> = m["redis"]["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["db"].as_u64().unwrap(), d["keys"].as_u64().unwrap()))
        .collect();
    assert_eq!(dbs, vec![(0, keys - 22), (1, 2), (5, 20)]);
    assert!(
        m.get("tables").is_none() && m.get("pg_dump_version").is_none(),
        "{m}"
    );

    // Listed like any backup, with its checksum matching the stored bytes.
    let list = world.dr(&["list", "--target", "cache", "--format", "json"]);
    list.expect_code(0);
    assert_eq!(list.json()["backups"][0]["id"], m["id"]);
    let data_file = world.dump_path(&m);
    assert_eq!(
        support::sha256sum(&data_file),
        m["sha256"].as_str().unwrap()
    );

    let fresh = DataRedis::start();
    let run = restore_into(&world, m["id"].as_str().unwrap(), &fresh, &[]);
    run.expect_code(0);
    let report = run.json();
    assert_eq!(report["restored"]["keys"], keys, "{report}");
    assert_eq!(report["verification"]["ok"], true, "{report}");
    assert_same_data(&snapshot(&source), &snapshot(&fresh));

    // The documents the guide describes (docs/src/output-formats.md): the restore report's fields plus Redis's own.
    let fields = |doc: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = doc.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let mut expected = vec![
        "format_version",
        "operation",
        "ok",
        "target",
        "backup_id",
        "destination",
        "safety_backup_id",
        "steps",
        "duration_ms",
        "rto_objective_ms",
        "rto_met",
        "verification",
        "error",
        "restored",
        "rdb_file",
        "next_steps",
    ];
    expected.sort();
    assert_eq!(fields(&report), expected);
    assert_eq!(report["format_version"], 2);
    let url = fresh.url();
    let run = world.dr(&[
        "verify", "--target", "cache", "--into", &url, "--format", "json",
    ]);
    run.expect_code(0);
    let mut expected = vec![
        "format_version",
        "ok",
        "target",
        "destination",
        "backup_id",
        "databases",
        "samples_checked",
        "sample_mismatches",
        "steps",
        "duration_ms",
    ];
    expected.sort();
    assert_eq!(fields(&run.json()), expected);
    for step in run.json()["steps"].as_array().unwrap() {
        assert_eq!(step["phase"], "verify", "{step}");
    }
}

#[test]
fn rdb_method_round_trips_every_type_and_ttl() {
    round_trip("rdb");
}

#[test]
fn keys_method_round_trips_every_type_and_ttl() {
    round_trip("keys");
}

#[test]
fn auto_falls_back_to_keys_when_sync_is_disabled() {
    let source = DataRedis::with_config(&["rename-command SYNC \"\"", "rename-command PSYNC \"\""]);
    load_every_type(&source);
    let world = redis_world(&source, "auto");
    let run = world.dr(&["backup", "--target", "cache", "--format", "json"]);
    run.expect_code(0);
    assert!(
        run.stderr.contains("fell back to keys") && run.stderr.contains("PSYNC"),
        "{}",
        run.stderr
    );
    let doc = run.json();
    let m = &doc["backups"][0];
    assert_eq!(m["redis"]["method"], "keys");
    assert_eq!(m["redis"]["requested_method"], "auto");
    assert!(
        m["redis"]["fallback_reason"]
            .as_str()
            .unwrap()
            .contains("refused PSYNC"),
        "{m}"
    );
    let fresh = DataRedis::start();
    restore_into(&world, m["id"].as_str().unwrap(), &fresh, &[]).expect_code(0);
    assert_same_data(&snapshot(&source), &snapshot(&fresh));

    // Asked for rdb explicitly, the same server is a failure that says what to do.
    let strict = redis_world(&source, "rdb");
    let run = strict.dr(&["backup", "--target", "cache"]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("method = \\\"keys\\\"") || run.stderr.contains("method = \"keys\""),
        "{}",
        run.stderr
    );
    assert!(
        strict.storage_files().is_empty(),
        "{:?}",
        strict.storage_files()
    );
}

#[test]
fn encrypted_redis_backups_hold_no_plaintext_and_open_with_the_key() {
    let source = DataRedis::start();
    load_every_type(&source);
    redis::cmd("SET")
        .arg("needle")
        .arg("plaintext-needle-5c1e")
        .query::<()>(&mut source.con())
        .unwrap();
    for method in ["rdb", "keys"] {
        let (world, identity) = encrypted_redis_world(&source, method);
        let m = backup(&world);
        assert_eq!(m["encryption"], "age", "{m}");
        let object = &m["objects"][0];
        assert!(
            object["file"].as_str().unwrap().ends_with(".zst.age"),
            "{m}"
        );
        let stored = std::fs::read(world.dump_path(&m)).unwrap();
        assert!(!stored.windows(21).any(|w| w == b"plaintext-needle-5c1e"));
        // Without the key: a usage error naming who can open it, nothing touched.
        let fresh = DataRedis::start();
        let id = m["id"].as_str().unwrap();
        let run = restore_into(&world, id, &fresh, &[]);
        run.expect_code(2);
        assert!(
            run.stderr.contains("encrypted") && run.stderr.contains("--identity"),
            "{}",
            run.stderr
        );
        assert_eq!(fresh.dbsize_total(), 0);
        // With it: the same data back, and a drill opens it too.
        let key = identity.to_str().unwrap();
        restore_into(&world, id, &fresh, &["--identity", key]).expect_code(0);
        assert_same_data(&snapshot(&source), &snapshot(&fresh));
        let drill = world.dr(&[
            "drill",
            "--target",
            "cache",
            "--backup-id",
            id,
            "--identity",
            key,
            "--format",
            "json",
        ]);
        drill.expect_code(0);
        assert_eq!(drill.json()["decrypted"], true);
    }
}

#[test]
fn kill_9_mid_backup_leaves_nothing_listed() {
    let source = DataRedis::start();
    load_many(&source, 300_000, 200);
    let world = redis_world(&source, "keys");
    let mut child = world.spawn(&["backup", "--target", "cache"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while world.storage_files().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the backup never started writing"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    support::send_signal(child.id(), "KILL");
    child.wait().unwrap();
    let files = world.storage_files();
    assert!(!files.is_empty());
    assert!(
        files.iter().all(|f| !f.ends_with("manifest.json")),
        "{files:?}"
    );
    let list = world.dr(&["list", "--target", "cache", "--format", "json"]);
    list.expect_code(0);
    assert_eq!(list.json()["backups"], serde_json::json!([]));
    let fresh = DataRedis::start();
    let run = restore_into(&world, "latest", &fresh, &[]);
    run.expect_code(1);
    assert!(
        run.stdout.contains("complete backup of target"),
        "{}",
        run.all()
    );
    assert_eq!(fresh.dbsize_total(), 0);
    // The killed backup's lock died with its connection: the next backup runs.
    let m = backup(&world);
    assert_eq!(m["redis"]["keys"], 300_000);
}

#[test]
fn a_second_backup_of_the_same_target_is_refused_while_one_runs() {
    let source = DataRedis::start();
    load_many(&source, 300_000, 200);
    let world = redis_world(&source, "keys");
    let mut first = world.spawn(&["backup", "--target", "cache"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while world.storage_files().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first backup never started"
        );
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first backup ended too soon"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = world.dr(&["backup", "--target", "cache"]);
    second.expect_code(1);
    assert!(
        second
            .stderr
            .contains("another dr backup of Redis target cache is running"),
        "{}",
        second.stderr
    );
    let out = first.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = world.dr(&["list", "--target", "cache", "--format", "json"]);
    assert_eq!(list.json()["backups"].as_array().unwrap().len(), 1);
}

#[test]
fn a_destination_with_keys_needs_consent_and_gets_a_safety_backup() {
    let source = DataRedis::start();
    load_every_type(&source);
    let world = redis_world(&source, "rdb");
    let m = backup(&world);
    let id = m["id"].as_str().unwrap();

    let dest = DataRedis::start();
    redis::cmd("SET")
        .arg("only-in-destination")
        .arg("keep me?")
        .query::<()>(&mut dest.con())
        .unwrap();
    let run = restore_into(&world, id, &dest, &[]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("not empty") && run.stderr.contains("--yes"),
        "{}",
        run.stderr
    );
    assert_eq!(
        dest.dbsize_total(),
        1,
        "a refused restore changed the destination"
    );

    // --yes without --flush: the backup's keys come back, the other key stays; verify warns.
    let run = restore_into(&world, id, &dest, &["--yes"]);
    run.expect_code(0);
    let report = run.json();
    let safety = report["safety_backup_id"].as_str().unwrap().to_string();
    assert!(safety.ends_with("-safety"), "{report}");
    let counts = report["verification"]["steps"][0].clone();
    assert_eq!(counts["status"], "warn", "{counts}");
    assert!(
        counts["message"].as_str().unwrap().contains("not flushed"),
        "{counts}"
    );

    // --yes --flush: exactly the backup.
    let run = restore_into(&world, id, &dest, &["--yes", "--flush"]);
    run.expect_code(0);
    assert_eq!(run.json()["verification"]["steps"][0]["status"], "pass");
    assert_same_data(&snapshot(&source), &snapshot(&dest));

    // The first safety backup holds the destination as it was: one key.
    let other = DataRedis::start();
    restore_into(&world, &safety, &other, &[]).expect_code(0);
    let back = snapshot(&other);
    assert_eq!(back.len(), 1);
    assert!(back.contains_key(&(0, b"only-in-destination".to_vec())));
}

#[test]
fn expired_keys_are_skipped_and_verification_allows_for_them() {
    let source = DataRedis::start();
    load_every_type(&source);
    redis::cmd("SET")
        .arg("short-lived")
        .arg("x")
        .arg("PX")
        .arg(1500)
        .query::<()>(&mut source.con())
        .unwrap();
    let world = redis_world(&source, "keys");
    let m = backup(&world);
    std::thread::sleep(Duration::from_millis(1700));
    let fresh = DataRedis::start();
    let run = restore_into(&world, m["id"].as_str().unwrap(), &fresh, &[]);
    run.expect_code(0);
    let report = run.json();
    assert_eq!(report["restored"]["skipped_expired"], 1, "{report}");
    assert_eq!(
        report["verification"]["databases"][0]["expired_since"], 1,
        "{report}"
    );
    assert!(!snapshot(&fresh).contains_key(&(0, b"short-lived".to_vec())));
}

/// A flag that does not apply is refused, not ignored: `--only-table` names PostgreSQL
/// tables, and a Redis verify with it checked everything while saying nothing.
#[test]
fn verify_of_a_redis_target_refuses_postgres_only_flags() {
    let source = DataRedis::start();
    let world = redis_world(&source, "rdb");
    backup(&world);
    for flag in ["--only-table", "--only-schema"] {
        let value = if flag == "--only-table" {
            "public.x"
        } else {
            "public"
        };
        let run = world.dr(&["verify", "--target", "cache", flag, value]);
        run.expect_code(2);
        assert!(
            run.stderr.contains("is a Redis target") && run.stderr.contains("nothing was checked"),
            "{}",
            run.stderr
        );
    }
}

/// Restore, validate and drill of a Redis target refuse PostgreSQL's flags (exit 2, each
/// named) before anything is read or written, instead of ignoring them; with `--format
/// json` the refusal is the one document.
#[test]
fn restore_validate_and_drill_of_a_redis_target_refuse_flags_that_do_not_apply() {
    let source = DataRedis::start();
    let world = redis_world(&source, "rdb");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["restore", "--backup-id", "latest", "--yes", "--clean"],
            "--clean",
        ),
        (
            vec!["restore", "--backup-id", "latest", "--yes", "--jobs", "4"],
            "--jobs",
        ),
        (
            vec!["restore", "--backup-id", "latest", "--yes", "--create"],
            "--create",
        ),
        (
            vec![
                "restore",
                "--backup-id",
                "latest",
                "--yes",
                "--only-table",
                "public.x",
            ],
            "--only-table",
        ),
        (
            vec![
                "restore",
                "--backup-id",
                "latest",
                "--yes",
                "--with-globals",
            ],
            "--with-globals",
        ),
        (vec!["validate", "--physical"], "--physical"),
        (vec!["validate", "--only-schema", "public"], "--only-schema"),
        (vec!["validate", "--no-owner"], "--no-owner"),
        (vec!["drill", "--sandbox"], "--sandbox"),
        (vec!["drill", "--pitr"], "--pitr"),
        (vec!["drill", "--jobs", "2"], "--jobs"),
    ];
    for (args, flag) in cases {
        let mut args = args.clone();
        args.extend(["--target", "cache"]);
        let run = world.dr(&args);
        run.expect_code(2);
        assert!(
            run.stderr
                .contains(&format!("{flag} does not apply to cache, a Redis target"))
                && run.stderr.contains("hint: drop them"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert!(
        !world.storage_dir().join("backups").exists(),
        "nothing was read or written"
    );
    let run = world.dr(&[
        "restore",
        "--backup-id",
        "latest",
        "--target",
        "cache",
        "--clean",
        "--jobs",
        "3",
        "--format",
        "json",
    ]);
    run.expect_code(2);
    let doc = run.json();
    assert_eq!(doc["ok"], false, "{doc}");
    assert_eq!(
        doc["error"]["message"], "--clean, --jobs do not apply to cache, a Redis target",
        "{doc}"
    );
}

#[test]
fn verify_finds_missing_and_changed_keys() {
    // Fewer keys than the sample size: every key is compared.
    let source = DataRedis::start();
    let mut con = source.con();
    for i in 0..10 {
        redis::cmd("HSET")
            .arg(format!("h{i}"))
            .arg("f")
            .arg(i)
            .query::<()>(&mut con)
            .unwrap();
    }
    let world = redis_world(&source, "rdb");
    let m = backup(&world);
    let dest = DataRedis::start();
    restore_into(&world, m["id"].as_str().unwrap(), &dest, &[]).expect_code(0);
    let url = dest.url();
    let mut d = dest.con();
    redis::cmd("HSET")
        .arg("h3")
        .arg("f")
        .arg("changed")
        .query::<()>(&mut d)
        .unwrap();
    let run = world.dr(&[
        "verify", "--target", "cache", "--into", &url, "--format", "json",
    ]);
    run.expect_code(1);
    let mismatches = run.json()["sample_mismatches"].to_string();
    assert!(
        mismatches.contains("h3") && mismatches.contains("differs"),
        "{mismatches}"
    );

    redis::cmd("DEL").arg("h5").query::<()>(&mut d).unwrap();
    let run = world.dr(&["verify", "--target", "cache", "--into", &url]);
    run.expect_code(1);
    assert!(run.stderr.contains("1 key(s) missing"), "{}", run.all());
}

#[test]
fn a_newer_backup_is_refused_naming_both_versions() {
    let source = DataRedis::start();
    load_every_type(&source);
    let world = redis_world(&source, "rdb");
    let m = backup(&world);
    let manifest_path = world.dump_path(&m).with_file_name("manifest.json");
    let mut edited: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    edited["server_version"] = "99.1.0".into();
    edited["server_major"] = 99.into();
    edited["redis"]["rdb_version"] = 99.into();
    std::fs::write(&manifest_path, serde_json::to_vec(&edited).unwrap()).unwrap();
    let dest = DataRedis::start();
    let run = restore_into(&world, m["id"].as_str().unwrap(), &dest, &[]);
    run.expect_code(1);
    let out = run.all();
    assert!(out.contains("runs Redis 7.0"), "{out}");
    assert!(
        out.contains("Redis 99.1.0") && out.contains("RDB version 99"),
        "{out}"
    );
    assert_eq!(dest.dbsize_total(), 0);
}

#[test]
fn a_corrupted_backup_is_refused_before_the_destination_is_touched() {
    let source = DataRedis::start();
    load_every_type(&source);
    let world = redis_world(&source, "keys");
    let m = backup(&world);
    let path = world.dump_path(&m);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let dest = DataRedis::start();
    let run = restore_into(&world, m["id"].as_str().unwrap(), &dest, &[]);
    run.expect_code(1);
    assert!(run.stdout.contains("checksum mismatch"), "{}", run.all());
    assert_eq!(dest.dbsize_total(), 0);
}

#[test]
fn drills_restore_both_kinds_into_a_sandbox() {
    let source = DataRedis::start();
    load_every_type(&source);
    for method in ["rdb", "keys"] {
        let world = redis_world(&source, method);
        let run = world.dr(&["drill", "--target", "cache", "--format", "json"]);
        run.expect_code(0);
        let report = run.json();
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["mode"], "redis-sandbox");
        let v = &report["redis_verification"];
        assert_eq!(v["ok"], true, "{report}");
        assert_eq!(v["samples_checked"], 32, "{report}");
        let phases: Vec<&str> = report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        if method == "rdb" {
            assert!(phases.contains(&"load"), "{phases:?}");
        } else {
            assert!(phases.contains(&"restore"), "{phases:?}");
        }
        assert!(world
            .storage_files()
            .iter()
            .any(|f| f.to_string_lossy().contains("drills/cache/")));
        assert_no_sandbox_left(&world);
    }
}

/// Sandboxes live in the world's $TMPDIR: nothing of them may remain, running or on disk.
fn assert_no_sandbox_left(world: &World) {
    let tmp = world.tmp_dir().canonicalize().unwrap();
    let running: Vec<u32> = support::processes()
        .into_iter()
        .filter(|p| {
            std::fs::read_link(format!("/proc/{}/cwd", p.pid))
                .is_ok_and(|cwd| cwd.starts_with(&tmp))
        })
        .map(|p| p.pid)
        .collect();
    assert!(
        running.is_empty(),
        "sandbox servers still running: {running:?}"
    );
    let dirs: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("dr-redis-sandbox-")
        })
        .map(|e| e.path())
        .collect();
    assert!(dirs.is_empty(), "sandbox directories left: {dirs:?}");
}

/// redis-server processes working in a drill's sandbox directory: (pid, parent pid).
fn sandbox_servers() -> Vec<(u32, u32)> {
    support::processes()
        .into_iter()
        .filter(|p| {
            std::fs::read_link(format!("/proc/{}/cwd", p.pid))
                .is_ok_and(|cwd| cwd.to_string_lossy().contains("dr-redis-sandbox-"))
        })
        .map(|p| (p.pid, p.ppid))
        .collect()
}

fn running(pid: u32) -> bool {
    sandbox_servers().iter().any(|(p, _)| *p == pid)
}

#[test]
fn a_killed_drill_s_sandbox_is_removed_by_the_next_run() {
    let source = DataRedis::start();
    load_many(&source, 100_000, 100);
    let world = redis_world(&source, "keys");
    let mut child = world.spawn(&["drill", "--target", "cache"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // Other tests' drills may run meanwhile: this drill's server is its child.
    let server = loop {
        if let Some((pid, _)) = sandbox_servers()
            .into_iter()
            .find(|(_, ppid)| *ppid == child.id())
        {
            break pid;
        }
        assert!(std::time::Instant::now() < deadline, "no sandbox appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the drill ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    support::send_signal(child.id(), "KILL");
    child.wait().unwrap();
    assert!(running(server), "kill -9 leaves the sandbox running");
    let run = world.dr(&["list", "--target", "cache"]);
    run.expect_code(0);
    assert!(
        run.stderr.contains("sandbox redis-server"),
        "{}",
        run.stderr
    );
    assert!(!running(server), "the next run stopped it");
}

#[test]
fn rdb_file_is_written_with_the_steps_to_place_it() {
    let source = DataRedis::start();
    load_every_type(&source);
    let world = redis_world(&source, "rdb");
    let m = backup(&world);
    let id = m["id"].as_str().unwrap();
    let out = world.dir.path().join("restored.rdb");
    let out_s = out.to_str().unwrap();
    let run = world.dr(&[
        "restore",
        "--target",
        "cache",
        "--backup-id",
        id,
        "--rdb-file",
        out_s,
    ]);
    run.expect_code(0);
    assert!(run.stdout.contains("appendonly no"), "{}", run.stdout);
    assert!(run.stdout.contains("install -m 0640"), "{}", run.stdout);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(std::fs::read(&out).unwrap().starts_with(b"REDIS0010"));

    // Placed under a server as its dump.rdb, with AOF off, it loads the same data.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&out, dir.path().join("loaded.rdb")).unwrap();
    let dir_line = format!("dir {}", dir.path().display());
    let loaded = DataRedis::with_config(&[&dir_line, "dbfilename loaded.rdb"]);
    assert_same_data(&snapshot(&source), &snapshot(&loaded));

    // An existing file is never overwritten; a keys backup has no RDB to write.
    let again = world.dr(&[
        "restore",
        "--target",
        "cache",
        "--backup-id",
        id,
        "--rdb-file",
        out_s,
    ]);
    again.expect_code(2);
    assert!(
        again.stderr.contains("never overwrites"),
        "{}",
        again.stderr
    );
    let keys_world = redis_world(&source, "keys");
    let km = backup(&keys_world);
    let other = world.dir.path().join("other.rdb");
    let run = keys_world.dr(&[
        "restore",
        "--target",
        "cache",
        "--backup-id",
        km["id"].as_str().unwrap(),
        "--rdb-file",
        other.to_str().unwrap(),
    ]);
    run.expect_code(2);
    assert!(!other.exists());
}

#[test]
fn redis_backup_check_follows_the_newest_backup() {
    let source = DataRedis::start();
    redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query::<()>(&mut source.con())
        .unwrap();
    let world = redis_world(&source, "auto");
    let check = || {
        let run = world.dr(&["check", "--only", "redis.backup", "--format", "json"]);
        run.json()["checks"][0].clone()
    };
    let before = check();
    assert_eq!(before["status"], "fail", "{before}");
    assert!(
        before["message"]
            .as_str()
            .unwrap()
            .contains("dr backup --target cache"),
        "{before}"
    );
    let first = backup(&world);
    let after = check();
    assert_eq!(after["status"], "pass", "{after}");

    // Retention treats Redis backups like PostgreSQL ones (keep_last = 2).
    backup(&world);
    let newest = backup(&world);
    world.dr(&["prune", "--target", "cache"]).expect_code(0);
    let ids: Vec<String> = world
        .dr(&["list", "--target", "cache", "--format", "json"])
        .json()["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(ids[0], newest["id"].as_str().unwrap());
    assert!(!ids.contains(&first["id"].as_str().unwrap().to_string()));
}

#[test]
fn s3_storage_holds_redis_backups_like_any_other() {
    let s3 = support::s3::S3Server::start();
    let source = DataRedis::start();
    load_every_type(&source);
    let mut world = World::new();
    world.env.extend(s3.env());
    let world = redis_world_on(world, &s3.config_toml("redis"), &source, "keys");
    let m = backup(&world);
    assert!(world.storage_files().is_empty(), "nothing local");
    let fresh = DataRedis::start();
    restore_into(&world, "latest", &fresh, &[]).expect_code(0);
    assert_same_data(&snapshot(&source), &snapshot(&fresh));
    let url = fresh.url();
    world
        .dr(&[
            "validate",
            "--target",
            "cache",
            "--backup-id",
            m["id"].as_str().unwrap(),
            "--into",
            &url,
        ])
        .expect_code(0);
}

#[test]
fn passwords_stay_out_of_outputs_and_storage() {
    let password = "redis-Secret-9931";
    let requirepass = format!("requirepass {password}");
    let source = DataRedis::with_config(&[&requirepass]);
    load_every_type(&source);
    let world = redis_world(&source, "auto");
    let m = world.dr(&["-vv", "backup", "--target", "cache", "--format", "json"]);
    m.expect_code(0);
    assert_eq!(
        m.json()["backups"][0]["redis"]["method"],
        "rdb",
        "PSYNC after AUTH works"
    );
    let drill = world.dr(&["-vv", "drill", "--target", "cache", "--format", "json"]);
    drill.expect_code(0);
    for run in [&m, &drill] {
        assert!(!run.all().contains(password), "{}", run.all());
    }
    for f in world.storage_files() {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(password),
            "{} holds the password",
            f.display()
        );
    }
}

/// `redis.backup` compares the live key count with the newest backup's: a Redis that came
/// back empty (FLUSHALL, a restart on an empty RDB) answers PING, and `dr check` must not
/// stay READY over it; after `dr restore` the check passes again.
#[test]
fn an_emptied_redis_is_not_ready_until_restored() {
    let source = DataRedis::start();
    load_many(&source, 1202, 16);
    let world = redis_world(&source, "keys");
    let m = backup(&world);
    let id = m["id"].as_str().unwrap();
    let row = |world: &World| {
        let run = world.dr(&["check", "--only", "redis.backup", "--format", "json"]);
        (run.code, run.json()["checks"][0].clone())
    };
    let (code, finding) = row(&world);
    assert_eq!(code, 0, "{finding}");
    assert!(
        finding["message"]
            .as_str()
            .unwrap()
            .contains(&format!("the server holds 1202 keys, backup {id} 1202")),
        "{finding}"
    );

    redis::cmd("FLUSHALL").exec(&mut source.con()).unwrap();
    let (code, finding) = row(&world);
    assert_eq!(finding["status"], "fail", "{finding}");
    assert_ne!(code, 0);
    assert!(
        finding["message"]
            .as_str()
            .unwrap()
            .contains(&format!("dr restore --target cache --backup-id {id}")),
        "{finding}"
    );

    // The redis-failure runbook's command, as it stands there.
    world
        .dr(&[
            "restore",
            "--target",
            "cache",
            "--backup-id",
            "latest",
            "--yes",
            "--flush",
        ])
        .expect_code(0);
    assert_eq!(source.dbsize_total(), 1202);
    let (code, finding) = row(&world);
    assert_eq!(code, 0, "{finding}");
}
