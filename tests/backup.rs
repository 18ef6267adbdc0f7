//! `dr backup`, `dr list`, `dr prune` against real PostgreSQL: complete or absent, never half.

mod support;

use support::OutputLimited;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{sha256sum, PgCluster, World, SUPERUSER_PASSWORD};

fn setup(extra: &str) -> (PgCluster, World) {
    support::sample_world(extra)
}

/// A table big enough that pg_dump runs for a while.
fn make_big(pg: &PgCluster, rows: u32) {
    pg.psql("app", &format!("CREATE TABLE public.big AS SELECT i, md5(i::text) || md5((i+1)::text) AS payload FROM generate_series(1, {rows}) i"));
}

#[test]
fn manifest_counts_and_checksum_match_reality() {
    let (pg, world) = setup("");
    let m = world.backup();
    let tables = m["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 3, "{m}");
    for t in tables {
        let (schema, name) = (t["schema"].as_str().unwrap(), t["name"].as_str().unwrap());
        let count: i64 = pg
            .psql(
                "app",
                &format!("SELECT count(*) FROM \"{schema}\".\"{name}\""),
            )
            .parse()
            .unwrap();
        assert_eq!(t["rows"].as_i64().unwrap(), count, "{schema}.{name}");
    }
    assert!(tables
        .iter()
        .any(|t| t["schema"] == "Mixed Case" && t["rows"] == 37));
    let schemas: Vec<&str> = m["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        schemas.contains(&"sales")
            && schemas.contains(&"Mixed Case")
            && schemas.contains(&"public")
    );
    let dump = world.dump_path(&m);
    assert_eq!(sha256sum(&dump), m["sha256"].as_str().unwrap());
    // size_bytes counts every stored object: the dump and (include_globals is on by
    // default) the roles.
    let stored: u64 = m["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["size_bytes"].as_u64().unwrap())
        .sum();
    assert!(m["objects"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["role"] == "globals"));
    assert_eq!(
        std::fs::metadata(&dump).unwrap().len()
            + std::fs::metadata(dump.with_file_name("globals.sql.zst"))
                .unwrap()
                .len(),
        stored
    );
    assert_eq!(stored, m["size_bytes"].as_u64().unwrap());
    for key in [
        "id",
        "target",
        "database",
        "created_at",
        "finished_at",
        "duration_ms",
        "server_version",
        "pg_dump_version",
        "dr_version",
        "format",
        "compression",
        "snapshot",
    ] {
        assert!(
            m.get(key).is_some_and(|v| !v.is_null()),
            "manifest lacks {key}: {m}"
        );
    }
    assert_eq!(m["format"], "custom");
    assert_eq!(m["compression"], "zstd");
    assert!(m["id"].as_str().unwrap().starts_with("main-20"));
    // The stored dump is a zstd stream of a pg_dump custom archive.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc '{}' | head -c 5", dump.display()))
        .output_limited()
        .unwrap();
    assert_eq!(&out.stdout, b"PGDMP");
    // list shows it, newest first, as JSON with the contract's fields.
    let second = world.backup();
    let list = world.dr(&["list", "--format", "json"]);
    list.expect_code(0);
    let ids: Vec<String> = list.json()["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids,
        vec![
            second["id"].as_str().unwrap().to_string(),
            m["id"].as_str().unwrap().to_string()
        ]
    );
    assert!(
        second["id"].as_str().unwrap() > m["id"].as_str().unwrap(),
        "ids sort by time"
    );
}

#[test]
fn files_are_0600_and_directories_0700_under_a_loose_umask() {
    let (_pg, world) = setup("[backup]\ninclude_globals = true\ncompression = \"gzip\"\n");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 022; exec '{}' --config '{}' backup --format json",
            env!("CARGO_BIN_EXE_dr"),
            world.config_path().display()
        ))
        .envs(world.env.iter().map(|(k, v)| (k, v)))
        .env("PATH", support::dr_path())
        .output_limited()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let roles: Vec<&str> = m["backups"][0]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, vec!["dump", "globals"]);
    let files = world.storage_files();
    // dump, globals, manifest, the integrity verdict of the backup's own hash, the
    // storage marker the first backup writes (dr-storage.json), and the evidence log's
    // record of the backup, its report and the log's head.
    assert_eq!(files.len(), 8, "{files:?}");
    for f in &files {
        assert_eq!(
            std::fs::metadata(f).unwrap().permissions().mode() & 0o777,
            0o600,
            "{}",
            f.display()
        );
        let mut dir = f.parent().unwrap().to_path_buf();
        while dir != world.dir.path() {
            assert_eq!(
                std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
                0o700,
                "{}",
                dir.display()
            );
            dir = dir.parent().unwrap().to_path_buf();
        }
    }
    let globals = files
        .iter()
        .find(|f| f.to_string_lossy().contains("globals"))
        .unwrap();
    let sql = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -dc '{}'", globals.display()))
        .output_limited()
        .unwrap();
    assert!(String::from_utf8_lossy(&sql.stdout).contains("CREATE ROLE postgres"));
}

#[test]
fn concurrent_writes_are_in_both_counts_and_dump_or_in_neither() {
    let (pg, mut world) = setup("");
    make_big(&pg, 300_000);
    pg.psql(
        "app",
        "CREATE TABLE public.ledger (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())",
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let psql = pg.bin("psql");
        let sock = pg.socket_dir().to_path_buf();
        let port = pg.port.to_string();
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = Command::new(&psql)
                    .args(["-X", "-q", "-h"])
                    .arg(&sock)
                    .args(["-p", &port, "-U", "postgres", "-d", "app", "-c", "INSERT INTO public.ledger DEFAULT VALUES; INSERT INTO public.ledger DEFAULT VALUES;"])
                    .output_limited();
                n += 1;
            }
            n
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let m = world.backup();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let batches = writer.join().unwrap();
    assert!(batches > 3, "the writer ran during the backup");
    let counted = m["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ledger")
        .unwrap()["rows"]
        .as_i64()
        .unwrap();
    let live: i64 = pg
        .psql("app", "SELECT count(*) FROM public.ledger")
        .parse()
        .unwrap();
    assert!(
        live > counted,
        "rows were written after the snapshot ({live} > {counted})"
    );
    // Restore the stored dump with plain pg_restore: it holds exactly the counted rows.
    pg.create_db("plain");
    let restore = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc '{}' | '{}' -h '{}' -p {} -U postgres -d plain --exit-on-error",
            world.dump_path(&m).display(),
            pg.bin("pg_restore").display(),
            pg.socket_dir().display(),
            pg.port
        ))
        .output_limited()
        .unwrap();
    assert!(
        restore.status.success(),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
    let restored: i64 = pg
        .psql("plain", "SELECT count(*) FROM public.ledger")
        .parse()
        .unwrap();
    assert_eq!(
        restored, counted,
        "counts and dump describe the same instant"
    );
    assert_eq!(restored % 2, 0, "no torn transaction");
    world.set_env("DR_TEST_INTO", &pg.superuser_url("plain"));
    world
        .dr(&["verify", "--into-env", "DR_TEST_INTO"])
        .expect_code(0);
}

#[test]
fn failing_pg_dump_leaves_no_backup_and_keeps_the_previous_one() {
    let (pg, mut world) = setup("");
    let first = world.backup();
    // A role that cannot read one table: pg_dump dies with "permission denied".
    pg.psql("app", "CREATE ROLE weak LOGIN PASSWORD 'weak-pw'; GRANT USAGE ON SCHEMA sales, \"Mixed Case\" TO weak; GRANT SELECT ON public.ten, \"Mixed Case\".\"Quoted Table\" TO weak;");
    world.env.retain(|(k, _)| k != "DR_TEST_PG_URL");
    world
        .env
        .push(("DR_TEST_PG_URL".into(), pg.url("weak", "weak-pw", "app")));
    // The evidence log records every run, failed ones too: it is the one thing that grows.
    let backups_only = |w: &World| -> Vec<std::path::PathBuf> {
        w.storage_files()
            .into_iter()
            .filter(|f| !f.starts_with(w.storage_dir().join("evidence")))
            .collect()
    };
    let before = backups_only(&world);
    let records = world.storage_dir().join("evidence/log");
    let records_before = std::fs::read_dir(&records).unwrap().count();
    let run = world.dr(&["backup"]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("permission denied"),
        "pg_dump's own words: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("public.big") || run.stderr.contains("sales.orders"),
        "names the table: {}",
        run.stderr
    );
    assert_eq!(backups_only(&world), before, "nothing new in storage");
    assert_eq!(
        std::fs::read_dir(&records).unwrap().count(),
        records_before + 1,
        "the failure is recorded"
    );
    world.env.retain(|(k, _)| k != "DR_TEST_PG_URL");
    world
        .env
        .push(("DR_TEST_PG_URL".into(), pg.superuser_url("app")));
    let list = world.dr(&["list", "--format", "json"]);
    assert_eq!(list.json()["backups"].as_array().unwrap().len(), 1);
    let check = world.dr(&["check", "--only", "backup.latest", "--format", "json"]);
    assert!(check.json()["checks"][0]["message"]
        .as_str()
        .unwrap()
        .contains(first["id"].as_str().unwrap()));

    // The database disappears: same guarantees.
    pg.psql("postgres", "CREATE DATABASE doomed");
    world.env.retain(|(k, _)| k != "DR_TEST_PG_URL");
    world
        .env
        .push(("DR_TEST_PG_URL".into(), pg.superuser_url("doomed")));
    pg.psql("postgres", "DROP DATABASE doomed");
    world.dr(&["backup"]).expect_code(1);
    assert_eq!(backups_only(&world), before);
}

#[test]
fn server_stopped_mid_dump_fails_without_a_manifest() {
    let (pg, world) = setup("");
    make_big(&pg, 1_500_000);
    let child = world.spawn(&["backup"]);
    wait_for_partial(&world, Duration::from_secs(30));
    pg.stop_server();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(world
        .storage_files()
        .iter()
        .all(|f| !f.ends_with("manifest.json")));
    assert!(
        world.storage_files().is_empty(),
        "temporary data removed: {:?}",
        world.storage_files()
    );
}

fn wait_for_partial(world: &World, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        // A dump's partial file (the evidence log writes through partial files too).
        if world.storage_files().iter().any(|f| {
            f.starts_with(world.storage_dir().join("backups"))
                && f.to_string_lossy().contains(".partial-")
                && std::fs::metadata(f).map(|m| m.len() > 0).unwrap_or(false)
        }) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no partial dump appeared within {limit:?}");
}

#[test]
fn sigkill_mid_dump_leaves_no_complete_backup_and_prune_sweeps_it() {
    let (pg, world) = setup("");
    make_big(&pg, 1_500_000);
    let mut child = world.command(&["backup"]).spawn().unwrap();
    wait_for_partial(&world, Duration::from_secs(30));
    support::send_signal(child.id(), "KILL");
    child.wait().unwrap();
    let leftovers = world.storage_files();
    assert!(!leftovers.is_empty());
    assert!(leftovers.iter().all(|f| !f.ends_with("manifest.json")));
    let list = world.dr(&["list", "--format", "json"]);
    assert_eq!(list.json()["backups"].as_array().unwrap().len(), 0);
    world
        .dr(&["restore", "--backup-id", "latest", "--yes"])
        .expect_code(1);
    // The stale lock died with the killed process: the next backup proceeds.
    world.backup();
    // Young leftovers are kept (a backup may still be running); old ones are swept.
    let run = world.dr(&["prune"]);
    run.expect_code(0);
    for f in &leftovers {
        assert!(f.exists(), "young leftover kept: {}", f.display());
        Command::new("touch")
            .args(["-d", "3 days ago"])
            .arg(f)
            .status()
            .unwrap();
    }
    let run = world.dr(&["prune", "--format", "json"]);
    run.expect_code(0);
    assert!(
        run.stdout
            .contains("leftover of an interrupted or failed backup"),
        "{}",
        run.stdout
    );
    for f in &leftovers {
        assert!(!f.exists(), "swept: {}", f.display());
    }
    assert_eq!(
        world.dr(&["list", "--format", "json"]).json()["backups"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn sigint_mid_dump_exits_130_and_removes_temporary_data() {
    let (pg, world) = setup("");
    make_big(&pg, 1_500_000);
    let child = world.spawn(&["backup"]);
    wait_for_partial(&world, Duration::from_secs(30));
    support::interrupt(child);
    assert!(
        world.storage_files().is_empty(),
        "{:?}",
        world.storage_files()
    );
    // pg_dump was killed too.
    std::thread::sleep(Duration::from_millis(300));
    let active: i64 = pg
        .psql(
            "app",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump'",
        )
        .parse()
        .unwrap();
    assert_eq!(active, 0);
}

#[test]
fn a_second_backup_is_refused_while_the_lock_is_held() {
    let (pg, world) = setup("");
    make_big(&pg, 1_000_000);
    let first = world.spawn(&["backup"]);
    wait_for_partial(&world, Duration::from_secs(30));
    let second = world.dr(&["backup"]);
    second.expect_code(1);
    assert!(
        second
            .stderr
            .contains("another dr backup of target main is running"),
        "{}",
        second.stderr
    );
    assert!(second.stderr.contains("advisory lock"), "{}", second.stderr);
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        world.dr(&["list", "--format", "json"]).json()["backups"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    drop(pg);
}

#[test]
fn the_password_never_reaches_argv_environ_manifest_or_logs() {
    let (pg, mut world) = setup("");
    make_big(&pg, 600_000);
    let secret = "Backup-Only-S3cret";
    pg.psql(
        "app",
        &format!("CREATE ROLE backup LOGIN PASSWORD '{secret}'; GRANT pg_read_all_data TO backup;"),
    );
    world.env.retain(|(k, _)| k != "DR_TEST_PG_URL");
    world
        .env
        .push(("DR_TEST_PG_URL".into(), pg.url("backup", secret, "app")));
    let mut cmd = world.command(&["-vv", "backup", "--format", "json"]);
    cmd.env("RUST_LOG", "trace")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let dr_pid = child.id();
    let mut seen_children = 0;
    let scan_deadline = Instant::now() + Duration::from_secs(60);
    let out = std::thread::scope(|s| {
        let handle = s.spawn(|| child.wait_with_output().unwrap());
        while !handle.is_finished() && Instant::now() < scan_deadline {
            // dr itself holds the URL in its environment (url_env): that is the user's
            // choice. Its children must not.
            // A child caught between fork and exec is still a copy of dr, with dr's
            // command line and environment; exec replaces both, so it is skipped.
            for p in support::processes()
                .into_iter()
                .filter(|p| p.ppid == dr_pid)
                .filter(|p| !p.cmdline.starts_with(env!("CARGO_BIN_EXE_dr")))
            {
                assert!(!p.cmdline.contains(secret), "password in argv of {}", p.pid);
                assert!(
                    !p.environ.contains(secret),
                    "password in environ of {}: {}",
                    p.pid,
                    p.cmdline
                );
                if p.cmdline.contains("--snapshot") {
                    seen_children += 1;
                    assert!(p.environ.contains("PGPASSFILE="), "passfile used");
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        handle.join().unwrap()
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(seen_children > 0, "saw the pg_dump child at least once");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(secret), "password in output or logs");
    for f in world.storage_files() {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "password in {}",
            f.display()
        );
    }
    assert!(!all.contains(SUPERUSER_PASSWORD));
    // The passfile is gone after the run.
    assert!(world.tmp_leftovers().is_empty(), "temporary files removed");
}

#[test]
fn prune_applies_retention_manifest_first_and_never_removes_the_newest() {
    let (_pg, world) = setup("");
    let mut ids = vec![];
    for _ in 0..4 {
        ids.push(world.backup()["id"].as_str().unwrap().to_string());
    }
    let dry = world.dr(&["prune", "--dry-run", "--format", "json"]);
    dry.expect_code(0);
    let entries = dry.json()["backups"].as_array().unwrap().clone();
    assert_eq!(
        entries.iter().filter(|e| e["action"] == "remove").count(),
        2
    );
    assert_eq!(
        world.dr(&["list", "--format", "json"]).json()["backups"]
            .as_array()
            .unwrap()
            .len(),
        4,
        "dry run removes nothing"
    );
    let run = world.dr(&["prune"]);
    run.expect_code(0);
    assert!(run.stdout.contains("keep_last 1/2"), "{}", run.stdout);
    let listed: Vec<String> = world.dr(&["list", "--format", "json"]).json()["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, vec![ids[3].clone(), ids[2].clone()]);
    assert!(
        !world
            .storage_dir()
            .join("backups/main")
            .join(&ids[0])
            .exists(),
        "data removed too"
    );
    // keep values of 0 still keep the newest.
    let cfg = std::fs::read_to_string(world.config_path())
        .unwrap()
        .replace("keep_last = 2", "keep_last = 0");
    world.write_config(&cfg);
    world.dr(&["prune"]).expect_code(0);
    let listed: Vec<String> = world.dr(&["list", "--format", "json"]).json()["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, vec![ids[3].clone()]);
    // Without a policy, prune refuses.
    let cfg = std::fs::read_to_string(world.config_path())
        .unwrap()
        .replace("[retention]\nkeep_last = 0", "");
    world.write_config(&cfg);
    let refused = world.dr(&["prune"]);
    refused.expect_code(2);
    assert!(refused.stderr.contains("[retention]"), "{}", refused.stderr);
}

#[test]
fn a_full_disk_fails_the_backup_cleanly() {
    let (pg, world) = setup("[backup]\ncompression = \"none\"\n");
    make_big(&pg, 200_000);
    // A 2 MiB file-size limit: the dump object cannot be written completely.
    let script = format!(
        "ulimit -f 4096; exec '{}' --config '{}' backup",
        env!("CARGO_BIN_EXE_dr"),
        world.config_path().display()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .envs(world.env.iter().map(|(k, v)| (k, v)))
        .env("PATH", support::dr_path())
        .output_limited()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("File too large") && stderr.contains("hint: free space"),
        "{stderr}"
    );
    assert!(
        world.storage_files().is_empty(),
        "no partial data left: {:?}",
        world.storage_files()
    );
    assert_eq!(
        world.dr(&["list", "--format", "json"]).json()["backups"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

/// Roles live outside any database: backups hold them by default (`include_globals`), and
/// `dr check` warns when they would not come back with a lost cluster.
#[test]
fn globals_are_in_backups_by_default_and_their_absence_is_a_warning() {
    let (_pg, world) = setup("\n[backup]\ninclude_globals = false\n");
    world.backup();
    let row = |world: &World| {
        let run = world.dr(&["check", "--only", "backup.globals", "--format", "json"]);
        run.json()["checks"][0].clone()
    };
    let finding = row(&world);
    assert_eq!(finding["status"], "warn", "{finding}");
    assert!(
        finding["message"]
            .as_str()
            .unwrap()
            .contains("set include_globals = true"),
        "{finding}"
    );
    // The default: the next backup holds the roles, and the row passes.
    let config = std::fs::read_to_string(world.config_path())
        .unwrap()
        .replace("include_globals = false", "");
    world.write_config(&config);
    let m = world.backup();
    assert!(m["objects"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["role"] == "globals"));
    let finding = row(&world);
    assert_eq!(finding["status"], "pass", "{finding}");
}
