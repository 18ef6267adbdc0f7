//! Nothing lost, nothing hung, nothing left behind: each defect found by attacking `dr`
//! as a black box, provoked for real (rows 32 and on of docs/failure-modes.md).

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{files_below, processes, sample_world, send_signal, OutputLimited, PgCluster, World};

fn set_manifest_field(
    world: &World,
    manifest: &serde_json::Value,
    edit: impl Fn(&mut serde_json::Value),
) {
    let path = world
        .storage_dir()
        .join("backups/main")
        .join(manifest["id"].as_str().unwrap())
        .join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut m);
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

fn flip_a_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

fn listed_ids(world: &World) -> Vec<String> {
    world.dr(&["list", "--format", "json"]).json()["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

/// A TCP server that accepts connections and never says a word.
fn silent_listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

// 1. `latest` never picks a backup dated in the future, and says that it exists.
#[test]
fn latest_skips_a_future_dated_backup_and_names_it() {
    let (_pg, world) = sample_world("");
    let good = world.backup();
    let future = world.backup();
    set_manifest_field(&world, &future, |m| {
        m["created_at"] = "2099-01-01T00:00:00Z".into();
        m["finished_at"] = "2099-01-01T00:00:01Z".into();
    });
    for command in ["validate", "verify"] {
        let run = world.dr(&[command, "--format", "json"]);
        run.expect_code(0);
        assert_eq!(run.json()["backup_id"], good["id"], "{command}");
        assert!(
            run.stderr.contains("dated in the future")
                && run.stderr.contains(future["id"].as_str().unwrap()),
            "{command}: {}",
            run.stderr
        );
    }
    let drill = world.dr(&["drill", "--backup-id", "latest", "--format", "json"]);
    drill.expect_code(0);
    assert_eq!(drill.json()["backup_id"], good["id"]);
}

// 2. Retention never counts a corrupt backup as kept and never deletes the newest good one.
#[test]
fn prune_keeps_the_older_good_backup_when_the_newest_is_corrupt() {
    let (_pg, world) = sample_world("");
    let cfg = std::fs::read_to_string(world.config_path())
        .unwrap()
        .replace("keep_last = 2", "keep_last = 1");
    world.write_config(&cfg);
    let oldest = world.backup();
    let good = world.backup();
    let corrupt = world.backup();
    flip_a_byte(&world.dump_path(&corrupt));
    let run = world.dr(&["prune", "--format", "json"]);
    run.expect_code(1);
    assert!(
        run.stderr.contains(corrupt["id"].as_str().unwrap()),
        "{}",
        run.stderr
    );
    let entries = run.json()["backups"].as_array().unwrap().clone();
    let action = |id: &serde_json::Value| {
        entries
            .iter()
            .find(|e| e["backup_id"] == *id)
            .map(|e| {
                (
                    e["kind"].as_str().unwrap().to_string(),
                    e["action"].as_str().unwrap().to_string(),
                )
            })
            .unwrap()
    };
    assert_eq!(action(&good["id"]), ("regular".into(), "keep".into()));
    assert_eq!(action(&corrupt["id"]), ("corrupt".into(), "keep".into()));
    assert_eq!(action(&oldest["id"]), ("regular".into(), "remove".into()));
    assert!(
        world.dump_path(&good).exists(),
        "the newest good backup survives"
    );
    // It is restorable, and `latest` now fails loudly on the corrupt one only when named.
    world
        .dr(&["validate", "--backup-id", good["id"].as_str().unwrap()])
        .expect_code(0);
}

// 3. Ctrl-C while pg_restore overwrites the destination says what state it is in.
#[test]
fn interrupted_restore_names_the_destination_state_and_the_way_back() {
    let (pg, world) = sample_world("");
    world.backup();
    // A session holding a lock on a table makes pg_restore --clean wait there.
    let mut blocker = Command::new(pg.bin("psql"))
        .args(["-X", "-q", "-d", &pg.superuser_url("app"), "-c"])
        .arg("BEGIN; LOCK TABLE public.ten IN ACCESS SHARE MODE; SELECT pg_sleep(60);")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let child = world.spawn(&["restore", "--backup-id", "latest", "--yes"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !processes()
        .iter()
        .any(|p| p.ppid == child.id() && p.cmdline.contains("pg_restore --exit-on-error"))
    {
        assert!(Instant::now() < deadline, "pg_restore never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let out = support::interrupt(child);
    let _ = blocker.kill();
    let _ = blocker.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("nothing was committed"), "{stderr}");
    assert!(stderr.contains("INCOMPLETE"), "{stderr}");
    let safety = listed_ids(&world)
        .into_iter()
        .find(|id| id.ends_with("-safety"))
        .expect("a safety backup was taken");
    assert!(
        stderr.contains(&format!(
            "dr restore --backup-id {safety} --target main --yes"
        )),
        "{stderr}"
    );
}

// 4. A configuration that protects nothing is not ready.
#[test]
fn a_configuration_without_targets_is_not_ready() {
    let world = World::new();
    world.write_config(&format!(
        "[storage]\nurl = \"file://{}\"\n",
        world.storage_dir().display()
    ));
    let run = world.dr(&["check", "--format", "json"]);
    run.expect_code(1);
    assert_eq!(run.json()["ready"], false);
    let config = run.json()["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "config")
        .cloned()
        .unwrap();
    assert_eq!(config["status"], "fail");
    assert!(config["message"]
        .as_str()
        .unwrap()
        .contains("protects nothing"));
}

// 5. An edited manifest is refused by every reader.
#[test]
fn an_edited_manifest_fails_validate_and_check() {
    let (_pg, world) = sample_world("");
    let m = world.backup();
    set_manifest_field(&world, &m, |m| {
        m["size_bytes"] = (m["size_bytes"].as_u64().unwrap() + 1).into();
    });
    let run = world.dr(&["validate"]);
    run.expect_code(1);
    assert!(run.all().contains("inconsistent"), "{}", run.all());
    let check = world.dr(&["check", "--only", "backup", "--format", "json"]);
    check.expect_code(1);
}

// 6. A safety copy of an --into destination goes back there, and is pooled with its own kind.
#[test]
fn safety_backups_go_back_to_the_database_they_copy() {
    let (pg, mut world) = sample_world("");
    world.backup();
    pg.create_db("copy");
    pg.psql(
        "copy",
        "CREATE TABLE precious (x int); INSERT INTO precious VALUES (1);",
    );
    world.set_env("DR_TEST_INTO", &pg.superuser_url("copy"));
    let run = world.dr(&[
        "restore",
        "--backup-id",
        "latest",
        "--into-env",
        "DR_TEST_INTO",
        "--yes",
        "--format",
        "json",
    ]);
    run.expect_code(0);
    let report = run.json();
    let safety = report["safety_backup_id"].as_str().unwrap().to_string();
    let step = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "safety backup")
        .cloned()
        .unwrap();
    let hint = step["message"].as_str().unwrap();
    assert!(
        hint.contains(&format!(
            "dr restore --backup-id {safety} --target main --into-env DR_TEST_INTO --yes"
        )),
        "{hint}"
    );
    // dr list shows which database each backup holds.
    let list = world.dr(&["list"]);
    assert!(list.stdout.contains("| copy "), "{}", list.stdout);
    // Safety copies of two databases: keep_last = 1 per destination keeps both.
    world
        .dr(&["restore", "--backup-id", "latest", "--yes"])
        .expect_code(0);
    let cfg = std::fs::read_to_string(world.config_path())
        .unwrap()
        .replace("keep_last = 2", "keep_last = 1");
    world.write_config(&cfg);
    world.dr(&["prune"]).expect_code(0);
    let safeties: Vec<String> = listed_ids(&world)
        .into_iter()
        .filter(|id| id.ends_with("-safety"))
        .collect();
    assert_eq!(safeties.len(), 2, "{safeties:?}");
}

// 7. A failed drill meets no objective.
#[test]
fn a_failed_drill_meets_nothing() {
    let (_pg, world) = sample_world("");
    let m = world.backup();
    flip_a_byte(&world.dump_path(&m));
    let run = world.dr(&["drill", "--backup-id", "latest", "--format", "json"]);
    run.expect_code(1);
    let report = run.json();
    assert_eq!(report["ok"], false);
    // Nothing was restored, so nothing was measured: neither met nor missed (issue 27).
    assert!(report["rto_met"].is_null(), "{report}");
    assert!(report["rpo_met"].is_null(), "{report}");
    let table = world.dr(&["drill", "--backup-id", "latest"]);
    table.expect_code(1);
    assert!(table.stdout.contains("not measured"), "{}", table.stdout);
    assert!(!table.stdout.contains("| yes"), "{}", table.stdout);
}

// 8. A database holding only a sequence is not empty.
#[test]
fn a_database_with_only_a_sequence_is_not_overwritten_without_consent() {
    let (pg, mut world) = sample_world("");
    world.backup();
    pg.create_db("seqonly");
    pg.psql("seqonly", "CREATE SEQUENCE important_numbers;");
    world.set_env("DR_TEST_INTO", &pg.superuser_url("seqonly"));
    let run = world.dr(&[
        "restore",
        "--backup-id",
        "latest",
        "--into-env",
        "DR_TEST_INTO",
    ]);
    run.expect_code(2);
    assert!(run.stderr.contains("user object"), "{}", run.stderr);
    assert_eq!(
        pg.psql(
            "seqonly",
            "SELECT count(*) FROM pg_class WHERE relname = 'important_numbers'"
        )
        .trim(),
        "1"
    );
}

// 9. A server that accepts and never answers fails every command within its timeout.
#[test]
fn a_silent_postgres_fails_every_command_within_the_connect_timeout() {
    let (_pg, world) = sample_world("");
    world.backup();
    let (_listener, port) = silent_listener();
    let silent = format!("postgres://dr@127.0.0.1:{port}/app?connect_timeout=2");
    for args in [
        vec!["backup"],
        vec!["validate"],
        vec!["verify"],
        vec!["drill", "--backup-id", "latest"],
    ] {
        let mut cmd = world.command(&args);
        cmd.env("DR_TEST_PG_URL", &silent);
        let started = Instant::now();
        let out = cmd.output_limited().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{args:?} took {:?}",
            started.elapsed()
        );
        assert!(
            stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains("connect_timeout"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_silent_redis_fails_verify_within_its_timeout() {
    let (_listener, port) = silent_listener();
    let (_pg, world) = sample_world(&format!(
        "[[redis]]\nname = \"cache\"\nurl = \"redis://127.0.0.1:{port}\"\ntimeout = \"1s\"\n"
    ));
    world.backup();
    let started = Instant::now();
    let run = world.dr(&["verify"]);
    run.expect_code(1);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        run.stderr.contains("did not answer within 1s"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_silent_s3_endpoint_fails_backup_and_validate_within_its_timeout() {
    let (_listener, port) = silent_listener();
    let pg = PgCluster::start();
    pg.create_db("app");
    support::load_sample(&pg, "app");
    let mut world = World::new();
    world.standard_config(&pg, "app", "");
    let cfg = std::fs::read_to_string(world.config_path()).unwrap();
    let storage_table = format!(
        "[storage]\nurl = \"s3://bucket/prefix\"\n\n[storage.s3]\nendpoint = \"http://127.0.0.1:{port}\"\nregion = \"us-east-1\"\nallow_http = true\naccess_key_id_env = \"K\"\nsecret_access_key_env = \"S\"\ntimeout = \"2s\"\n"
    );
    let start = cfg.find("[storage]").unwrap();
    let end = cfg[start..].find("[retention]").unwrap() + start;
    world.write_config(&format!(
        "{}{storage_table}\n{}",
        &cfg[..start],
        &cfg[end..]
    ));
    world.env.push(("K".into(), "key".into()));
    world.env.push(("S".into(), "secretsecret".into()));
    for args in [vec!["backup"], vec!["validate"]] {
        let started = Instant::now();
        let run = world.dr(&args);
        run.expect_code(1);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{args:?} took {:?}",
            started.elapsed()
        );
        assert!(
            run.stderr.contains(&format!("127.0.0.1:{port}")) && run.stderr.contains("timeout"),
            "{args:?}: {}",
            run.stderr
        );
    }
}

// 10. An object longer than its manifest says is not read forever.
#[test]
fn a_dump_replaced_by_dev_zero_fails_validate_quickly() {
    let (_pg, world) = sample_world("");
    let m = world.backup();
    let dump = world.dump_path(&m);
    std::fs::remove_file(&dump).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &dump).unwrap();
    let started = Instant::now();
    let run = world.dr(&["validate"]);
    run.expect_code(1);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(run.all().contains("holds more than"), "{}", run.all());
}

// 11. What a killed drill leaves is found and removed by the next dr.
#[test]
fn a_killed_sandbox_drill_leaves_nothing_after_the_next_run() {
    let (_pg, world) = sample_world("");
    world.backup();
    let child = world.spawn(&["drill", "--sandbox", "--backup-id", "latest"]);
    let deadline = Instant::now() + Duration::from_secs(90);
    let postmaster = loop {
        let procs = processes();
        if let Some(p) = procs
            .iter()
            .find(|p| p.cmdline.contains("pg_restore --exit-on-error") && p.ppid == child.id())
        {
            let _ = p;
            break procs
                .iter()
                .find(|p| {
                    // This world's sandbox only: its directory is under the world's TMPDIR.
                    p.cmdline.contains(&*world.tmp_dir().to_string_lossy())
                        && p.cmdline.contains("dr-sandbox-")
                        && p.cmdline.contains("postgres")
                })
                .map(|p| p.pid);
        }
        assert!(
            Instant::now() < deadline,
            "the drill never reached pg_restore"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    send_signal(child.id(), "KILL");
    let _ = child.wait_with_output();
    let tmp = world.tmp_dir();
    let left = |prefix: &str| {
        std::fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .count()
    };
    assert!(
        left("dr-sandbox-") + left("dr-staging-") + left("dr-auth-") > 0,
        "kill -9 left something to find"
    );
    let check = world.dr(&["check", "--only", "drill.leftovers", "--format", "json"]);
    let found = check.json()["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["target"].is_null())
        .cloned()
        .unwrap();
    assert_eq!(found["status"], "warn", "{found}");
    assert!(
        found["message"].as_str().unwrap().contains("removed"),
        "{found}"
    );
    assert_eq!(
        left("dr-sandbox-") + left("dr-staging-") + left("dr-auth-"),
        0
    );
    if let Some(pid) = postmaster {
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "the sandbox postmaster was stopped"
        );
    }
}

#[test]
fn a_killed_scratch_drill_leaves_a_database_the_next_drill_drops() {
    let (pg, world) = sample_world("");
    world.backup();
    let child = world.spawn(&["drill", "--backup-id", "latest"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pg.databases().iter().any(|d| d.starts_with("dr_drill_")) {
        assert!(Instant::now() < deadline, "no scratch database appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    send_signal(child.id(), "KILL");
    let _ = child.wait_with_output();
    std::thread::sleep(Duration::from_secs(17));
    let stale: Vec<String> = pg
        .databases()
        .into_iter()
        .filter(|d| d.starts_with("dr_drill_"))
        .collect();
    assert_eq!(stale.len(), 1, "{stale:?}");
    let check = world.dr(&["check", "--only", "drill.leftovers", "--format", "json"]);
    assert!(check.stdout.contains(&stale[0]), "{}", check.stdout);
    let drill = world.dr(&["drill", "--backup-id", "latest"]);
    drill.expect_code(0);
    assert!(drill.stderr.contains(&stale[0]), "{}", drill.stderr);
    assert!(!pg.databases().iter().any(|d| d.starts_with("dr_drill_")));
}

// 12. The caller's libpq variables never redirect a child.
#[test]
fn libpq_variables_in_the_callers_shell_change_nothing() {
    let (pg, world) = sample_world("");
    pg.create_db("copy");
    for (command, args) in [
        ("backup", vec!["backup"]),
        (
            "restore",
            vec![
                "restore",
                "--backup-id",
                "latest",
                "--into-env",
                "DR_TEST_INTO",
            ],
        ),
    ] {
        let mut cmd = world.command(&args);
        cmd.env("DR_TEST_INTO", pg.superuser_url("copy"));
        cmd.env("PGPASSWORD", "wrong")
            .env("PGHOST", "/nonexistent")
            .env("PGPORT", "1")
            .env("PGSERVICE", "nothing")
            .env("PGSSLMODE", "require")
            .env("PGDATABASE", "postgres");
        let out = cmd.output_limited().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// 13. Bad input: exit 2 with the fix, nothing changed.
#[test]
fn bad_input_is_exit_2_naming_the_fix() {
    let (_pg, world) = sample_world("");
    let m = world.backup();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["restore", "--backup-id", "../../../etc/passwd", "--yes"],
            "unknown backup id",
        ),
        (
            vec!["validate", "--backup-id", "main-../../x"],
            "unknown backup id",
        ),
        (
            vec!["restore", "--backup-id", "latest", "--jobs", "0"],
            "--jobs",
        ),
        (vec!["check", "--timeout", "0s"], "positive duration"),
    ];
    for (args, needle) in cases {
        let run = world.dr(&args);
        run.expect_code(2);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.matches("hint:").count() <= 1,
            "{args:?}: {}",
            run.stderr
        );
    }
    // An unset url_env is a configuration error at every command.
    for args in [vec!["check"], vec!["backup"], vec!["validate"]] {
        let mut cmd = world.command(&args);
        cmd.env_remove("DR_TEST_PG_URL");
        let out = cmd.output_limited().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("DR_TEST_PG_URL"));
    }
    // A target name too long for file names is refused at load.
    let cfg = std::fs::read_to_string(world.config_path()).unwrap();
    let long = "x".repeat(300);
    world.write_config(&cfg.replace("name = \"main\"", &format!("name = \"{long}\"")));
    let run = world.dr(&["backup"]);
    run.expect_code(2);
    assert!(run.stderr.contains("at most 64"), "{}", run.stderr);
    world.write_config(&cfg);
    // Staging that hits a file-size limit says so, with the space needed.
    assert!(m["objects"][0]["raw_bytes"].as_u64().unwrap() > 4096);
    let script = format!(
        "ulimit -f 1; exec {} --config {} restore --backup-id latest --jobs 2 --yes",
        env!("CARGO_BIN_EXE_dr"),
        world.config_path().display()
    );
    let out = world_shell(&world, &script);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("file-size limit"), "{stderr}");
    assert!(stderr.contains("stages"), "{stderr}");
}

fn world_shell(world: &World, script: &str) -> std::process::Output {
    let mut cmd = Command::new("bash");
    cmd.args(["-c", script]);
    let template = world.command(&[]);
    for (k, v) in template.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.stdin(Stdio::null()).output_limited().unwrap()
}

#[test]
fn a_failed_backup_leaves_no_directory() {
    let (pg, world) = sample_world("");
    pg.psql("postgres", "DROP DATABASE app");
    world.dr(&["backup"]).expect_code(1);
    let dirs: Vec<_> = files_below(&world.storage_dir());
    assert!(dirs.is_empty(), "{dirs:?}");
    assert!(!world.storage_dir().join("backups/main").exists());
}

// 14. Guards that had no test.
#[test]
fn a_destination_older_than_the_source_is_refused() {
    let (_pg, world) = sample_world("");
    let m = world.backup();
    set_manifest_field(&world, &m, |m| {
        m["server_major"] = 99.into();
        m["server_version"] = "99.0".into();
    });
    let run = world.dr(&["validate"]);
    run.expect_code(1);
    assert!(
        run.all().contains("older than the backup's source"),
        "{}",
        run.all()
    );
}

#[test]
fn a_globals_dump_failing_after_the_dump_leaves_no_object() {
    let pg = PgCluster::start();
    pg.create_db("app");
    support::load_sample(&pg, "app");
    let bin = tempfile::tempdir().unwrap();
    for program in ["pg_dump", "pg_restore", "psql"] {
        std::os::unix::fs::symlink(pg.bin(program), bin.path().join(program)).unwrap();
    }
    let mut world = World::new();
    world.standard_config(&pg, "app", "[backup]\ninclude_globals = true\n");
    let cfg = std::fs::read_to_string(world.config_path())
        .unwrap()
        .replace(
            "url_env = \"DR_TEST_PG_URL\"",
            &format!(
                "url_env = \"DR_TEST_PG_URL\"\npg_bin_dir = \"{}\"",
                bin.path().display()
            ),
        );
    world.write_config(&cfg);
    let run = world.dr(&["backup"]);
    run.expect_code(1);
    assert!(run.stderr.contains("pg_dumpall"), "{}", run.stderr);
    assert!(
        files_below(&world.storage_dir()).is_empty(),
        "{:?}",
        files_below(&world.storage_dir())
    );
}

#[test]
fn pg_dump_failing_alone_fails_the_backup() {
    let pg = PgCluster::start();
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE ROLE reader LOGIN PASSWORD 'readerpw';
         CREATE TABLE t (id serial PRIMARY KEY);
         GRANT SELECT ON t TO reader;
         REVOKE ALL ON SEQUENCE t_id_seq FROM reader;",
    );
    let mut world = World::new();
    world.standard_config(&pg, "app", "");
    world.env.retain(|(k, _)| k != "DR_TEST_PG_URL");
    world
        .env
        .push(("DR_TEST_PG_URL".into(), pg.url("reader", "readerpw", "app")));
    let run = world.dr(&["backup"]);
    run.expect_code(1);
    assert!(run.stderr.contains("pg_dump failed"), "{}", run.stderr);
    assert!(run.stderr.contains("t_id_seq"), "{}", run.stderr);
    assert!(files_below(&world.storage_dir()).is_empty());
}

#[test]
fn the_harness_kills_a_hanging_command() {
    let started = Instant::now();
    let result = std::panic::catch_unwind(|| {
        Command::new("sleep")
            .arg("600")
            .output_within(Duration::from_secs(1))
    });
    let message = *result.unwrap_err().downcast::<String>().unwrap();
    assert!(message.contains("was killed (a hang)"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
