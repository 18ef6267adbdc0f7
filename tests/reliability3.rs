//! Reliability, round 3 (issue 29; rows 50 to 56 of docs/failure-modes.md): a private key
//! is never echoed and never left open to other users, a failed or interrupted backup
//! leaves nothing in storage, and the messages around restores, keys, dates and locks
//! say what is true.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::redis_data::{load_many, DataRedis};
use support::s3::S3Server;
use support::{files_below, processes, sample_world, send_signal, OutputLimited, PgCluster, World};

/// A key pair made by `age-keygen` (Debian package age): (identity file, public key,
/// secret key line).
fn keygen(dir: &Path, name: &str) -> (PathBuf, String, String) {
    let path = dir.join(name);
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&path)
        .output_limited()
        .expect("age-keygen runs (Debian package age)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = Command::new("age-keygen")
        .arg("-y")
        .arg(&path)
        .output_limited()
        .unwrap();
    let secret = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .expect("age-keygen wrote a secret key")
        .to_string();
    (
        path,
        String::from_utf8_lossy(&public.stdout).trim().to_string(),
        secret,
    )
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chgrp(path: &Path, group: &str) {
    let status = Command::new("chgrp").arg(group).arg(path).status().unwrap();
    assert!(status.success(), "chgrp {group} {}", path.display());
}

/// Asserts `text` holds no part of the secret key (its bech32 body, in either case).
#[track_caller]
fn assert_no_secret(text: &str, secret: &str) {
    let body = &secret["AGE-SECRET-KEY-1".len()..];
    for piece in [body, &body[..12], &body[body.len() - 12..]] {
        assert!(
            !text.contains(piece) && !text.contains(&piece.to_lowercase()),
            "the secret key is printed:\n{text}"
        );
    }
}

/// A world whose configuration never reaches a server (validation fails first).
fn offline_world(extra: &str) -> World {
    let world = World::new();
    world.write_config(&format!(
        "[storage]\nurl = \"file://{}\"\n\n[[postgres]]\nname = \"main\"\nurl = \"postgres://u@127.0.0.1:1/db\"\n{extra}",
        world.storage_dir().display()
    ));
    world
}

fn check_by_name(doc: &serde_json::Value, name: &str) -> serde_json::Value {
    doc["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks in {doc}"))
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {doc}"))
        .clone()
}

// 1. A secret key where a public key belongs: exit 2 naming its place, never its value.
#[test]
fn a_secret_key_where_a_recipient_belongs_is_exit_2_and_never_printed() {
    let keys = tempfile::tempdir().unwrap();
    let (identity, public, secret) = keygen(keys.path(), "team.key");
    let world = offline_world(&format!(
        "\n[encryption]\nrecipients = [\"{public}\", \"{secret}\"]\n"
    ));
    for args in [
        &["backup"][..],
        &["check"],
        &["check", "--format", "json"],
        &["-vv", "list"],
    ] {
        let run = world.dr(args);
        run.expect_code(2);
        assert!(
            run.stderr
                .contains("[encryption] recipients[1] is an age SECRET key, not a public key"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(run.stderr.contains("age-keygen -y"), "{}", run.stderr);
        assert_no_secret(&run.all(), &secret);
    }

    // The identity file itself given as recipients_file: its line is named.
    let world = offline_world(&format!(
        "\n[encryption]\nrecipients_file = \"{}\"\n",
        identity.display()
    ));
    let run = world.dr(&["backup"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("recipients_file")
            && run.stderr.contains("line 3 is an age SECRET key"),
        "{}",
        run.stderr
    );
    assert_no_secret(&run.all(), &secret);

    // The key pasted where a file or a variable is named.
    for (setting, needle) in [
        (
            "identity_file",
            "[encryption] identity_file holds an age SECRET key itself",
        ),
        (
            "identity_env",
            "[encryption] identity_env holds an age SECRET key itself",
        ),
    ] {
        let world = offline_world(&format!(
            "\n[encryption]\nrecipients = [\"{public}\"]\n{setting} = \"{secret}\"\n"
        ));
        for args in [&["validate"][..], &["check", "--format", "json"]] {
            let run = world.dr(args);
            run.expect_code(2);
            assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
            assert_no_secret(&run.all(), &secret);
        }
    }

    // A TOML error on the line that holds the key shows the line, without the key.
    let world = offline_world(&format!("\n[encryption]\nrecipients = [\"{secret}\"\n"));
    let run = world.dr(&["check", "--format", "json"]);
    run.expect_code(2);
    assert!(run.stderr.contains("line"), "{}", run.stderr);
    assert_no_secret(&run.all(), &secret);
}

// 2. An identity file others can read: refused where it decrypts, warned by check.
#[test]
fn an_identity_file_others_can_read_is_refused_and_warned() {
    let keys = tempfile::tempdir().unwrap();
    let (identity, public, _) = keygen(keys.path(), "team.key");
    let (pg, mut world) = sample_world(&format!(
        "\n[encryption]\nrecipients = [\"{public}\"]\nidentity_file = \"{}\"\n",
        identity.display()
    ));
    world.backup();
    let id = identity.to_str().unwrap();

    chmod(&identity, 0o644);
    pg.create_db("copy");
    world
        .env
        .push(("DR_TEST_INTO".into(), pg.superuser_url("copy")));
    let mut refused = vec![
        world.dr(&["validate"]),
        world.dr(&["validate", "--identity", id]),
        world.dr(&[
            "restore",
            "--backup-id",
            "latest",
            "--into-env",
            "DR_TEST_INTO",
            "--identity",
            id,
        ]),
        world.dr(&["drill", "--identity", id]),
    ];
    refused.push(world.dr(&[
        "wal-fetch",
        "--system-id",
        "1",
        "000000010000000000000001",
        world.tmp_dir().join("seg").to_str().unwrap(),
    ]));
    for run in &refused {
        run.expect_code(2);
        assert!(
            run.stderr
                .contains(&format!("the age identity {id} is readable by every user"))
                && run.stderr.contains(&format!("chmod 600 {id}")),
            "{}",
            run.stderr
        );
    }
    assert_eq!(
        pg.psql(
            "copy",
            "SELECT count(*) FROM pg_class WHERE relname = 'ten'"
        ),
        "0"
    );
    let check = world.dr(&["check", "--only", "encryption.keys", "--format", "json"]);
    let keys_check = check_by_name(&check.json(), "encryption.keys");
    assert_eq!(keys_check["status"], "warn", "{keys_check}");
    let message = keys_check["message"].as_str().unwrap();
    assert!(
        message.contains("readable by every user")
            && message.contains("chmod 600")
            && message.contains("chmod 640"),
        "{message}"
    );
    assert_eq!(message.matches("hint:").count(), 1, "{message}");

    // Group-readable: refused for an ordinary group, allowed for the server's group.
    chmod(&identity, 0o640);
    chgrp(&identity, "root");
    let run = world.dr(&["validate", "--identity", id]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("readable by group root") && run.stderr.contains("chgrp postgres"),
        "{}",
        run.stderr
    );
    chgrp(&identity, "postgres");
    world.dr(&["validate", "--identity", id]).expect_code(0);
    chmod(&identity, 0o600);
    world.dr(&["validate", "--identity", id]).expect_code(0);
}

#[test]
fn a_config_holding_a_secret_key_and_readable_by_others_is_a_warning() {
    let keys = tempfile::tempdir().unwrap();
    let (_, _, secret) = keygen(keys.path(), "team.key");
    let world = offline_world(&format!("# team key, for the record: {secret}\n"));
    chmod(&world.config_path(), 0o644);
    let run = world.dr(&["check", "--only", "config", "--format", "json"]);
    let config = check_by_name(&run.json(), "config");
    assert_eq!(config["status"], "warn", "{config}");
    let message = config["message"].as_str().unwrap();
    assert!(
        message.contains("age secret key")
            && message.contains("chmod 600")
            && message.contains("chmod 640"),
        "{message}"
    );
    assert_no_secret(&run.all(), &secret);
    chmod(&world.config_path(), 0o600);
    let run = world.dr(&["check", "--only", "config", "--format", "json"]);
    assert_eq!(check_by_name(&run.json(), "config")["status"], "pass");
}

// 3. A failed or interrupted backup leaves nothing in storage: no object, no directory.

/// Every file and directory below `dir`.
fn entries_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
            out.push(e.path());
        }
    }
    out.sort();
    out
}

#[track_caller]
fn assert_no_backup_left(world: &World) {
    let left = entries_below(&world.storage_dir().join("backups"));
    assert!(left.is_empty(), "left in storage: {left:?}");
    let list = world.dr(&["list", "--format", "json"]);
    list.expect_code(0);
    assert_eq!(
        list.json()["backups"].as_array().unwrap().len(),
        0,
        "{}",
        list.stdout
    );
}

/// A table big enough that pg_dump runs for a while.
fn make_big(pg: &PgCluster, rows: u32) {
    pg.psql("app", &format!("CREATE TABLE public.big AS SELECT i, md5(i::text) || md5((i+1)::text) AS payload FROM generate_series(1, {rows}) i"));
}

/// Waits for a child of `parent` whose command line holds `needle`; its pid.
fn wait_for_child(parent: u32, needle: &str) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(p) = processes()
            .into_iter()
            .find(|p| p.ppid == parent && p.cmdline.contains(needle))
        {
            return p.pid;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no child `{needle}` of {parent} within a minute");
}

/// Waits until a partial object with some bytes is in local storage (its directory exists).
fn wait_for_partial(world: &World) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if world.storage_files().iter().any(|f| {
            f.to_string_lossy().contains(".partial-")
                && std::fs::metadata(f).map(|m| m.len() > 0).unwrap_or(false)
        }) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no partial dump appeared within a minute");
}

#[test]
fn pg_dump_killed_mid_backup_leaves_no_directory() {
    let (pg, world) = sample_world("");
    make_big(&pg, 1_500_000);
    let child = world.spawn(&["backup"]);
    // The dump itself, not `pg_dump --version`.
    let pg_dump = wait_for_child(child.id(), "--snapshot=");
    wait_for_partial(&world);
    send_signal(pg_dump, "KILL");
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_backup_left(&world);
}

#[test]
fn a_role_that_cannot_read_a_table_leaves_no_directory() {
    let (pg, mut world) = sample_world("");
    pg.psql(
        "app",
        r#"CREATE ROLE reader LOGIN PASSWORD 'Reader-Pw-1';
GRANT USAGE ON SCHEMA public, sales, "Mixed Case" TO reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public, sales, "Mixed Case" TO reader;
GRANT SELECT ON ALL SEQUENCES IN SCHEMA public, sales, "Mixed Case" TO reader;
CREATE TABLE public.payroll (id int, salary numeric);
INSERT INTO public.payroll VALUES (1, 100);"#,
    );
    world.env.retain(|(k, _)| k != "DR_TEST_PG_URL");
    world.env.push((
        "DR_TEST_PG_URL".into(),
        pg.url("reader", "Reader-Pw-1", "app"),
    ));
    let run = world.dr(&["backup"]);
    run.expect_code(1);
    assert!(run.stderr.contains("payroll"), "{}", run.stderr);
    assert_no_backup_left(&world);
}

#[test]
fn sigint_mid_dump_leaves_no_directory() {
    let (pg, world) = sample_world("");
    make_big(&pg, 1_500_000);
    let child = world.spawn(&["backup"]);
    wait_for_partial(&world);
    support::interrupt(child);
    assert_no_backup_left(&world);
}

#[test]
fn a_full_disk_leaves_no_directory() {
    let (pg, world) = sample_world("");
    make_big(&pg, 1_500_000);
    // A file-size limit stands in for a full disk: the write fails (EFBIG) midway.
    let dr = world.command(&["backup"]);
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -f 2048 && exec \"$0\" \"$@\"")
        .arg(dr.get_program())
        .args(dr.get_args());
    for (k, v) in dr.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output_limited().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write"), "{stderr}");
    assert_no_backup_left(&world);
}

/// A `pg_bin_dir` whose `pg_dumpall` sleeps instead of dumping: a backup with
/// `include_globals` stores its dump, then waits there, to be interrupted.
fn stalling_globals_bin(pg: &PgCluster) -> tempfile::TempDir {
    let bin = tempfile::tempdir().unwrap();
    for program in ["pg_dump", "pg_restore", "psql"] {
        std::os::unix::fs::symlink(pg.bin(program), bin.path().join(program)).unwrap();
    }
    let script = bin.path().join("pg_dumpall");
    std::fs::write(&script, "#!/bin/sh\nexec sleep 97\n").unwrap();
    chmod(&script, 0o755);
    bin
}

fn with_pg_bin_dir(world: &World, bin: &Path) {
    let cfg = std::fs::read_to_string(world.config_path())
        .unwrap()
        .replace(
            "url_env = \"DR_TEST_PG_URL\"",
            &format!(
                "url_env = \"DR_TEST_PG_URL\"\npg_bin_dir = \"{}\"",
                bin.display()
            ),
        );
    world.write_config(&cfg);
}

fn interrupted_during_globals(signal: &str) {
    let (pg, world) = sample_world("[backup]\ninclude_globals = true\n");
    let bin = stalling_globals_bin(&pg);
    with_pg_bin_dir(&world, bin.path());
    let child = world.spawn(&["backup"]);
    let sleeper = wait_for_child(child.id(), "sleep 97");
    // The dump is stored by now: the backup waits for its globals.
    assert!(
        world
            .storage_files()
            .iter()
            .any(|f| f.to_string_lossy().contains("dump.pgdump")),
        "{:?}",
        world.storage_files()
    );
    send_signal(child.id(), signal);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = Command::new("kill")
        .arg(sleeper.to_string())
        .stderr(std::process::Stdio::null())
        .status();
    assert_no_backup_left(&world);
}

#[test]
fn sigint_mid_backup_leaves_no_object_and_no_directory() {
    interrupted_during_globals("INT");
}

#[test]
fn sigterm_mid_backup_leaves_no_object_and_no_directory() {
    interrupted_during_globals("TERM");
}

#[test]
fn an_interrupted_backup_leaves_no_object_in_s3() {
    let server = S3Server::start();
    let pg = PgCluster::start();
    pg.create_db("app");
    support::load_sample(&pg, "app");
    let bin = stalling_globals_bin(&pg);
    let mut world = World::new();
    world.env.extend(server.env());
    world
        .env
        .push(("DR_TEST_PG_URL".into(), pg.superuser_url("app")));
    world.write_config(&format!(
        "{}\n[backup]\ninclude_globals = true\n\n[[postgres]]\nname = \"main\"\nurl_env = \"DR_TEST_PG_URL\"\npg_bin_dir = \"{}\"\n",
        server.config_toml("r3"),
        bin.path().display()
    ));
    let child = world.spawn(&["backup"]);
    let sleeper = wait_for_child(child.id(), "sleep 97");
    let bucket = server.dir.join(&server.bucket);
    let stored = |bucket: &Path| -> Vec<PathBuf> {
        files_below(bucket)
            .into_iter()
            .filter(|f| f.to_string_lossy().contains("/backups/"))
            .collect()
    };
    assert!(
        stored(&bucket)
            .iter()
            .any(|f| f.to_string_lossy().contains("dump.pgdump")),
        "{:?}",
        files_below(&bucket)
    );
    send_signal(child.id(), "INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = Command::new("kill")
        .arg(sleeper.to_string())
        .stderr(std::process::Stdio::null())
        .status();
    assert!(stored(&bucket).is_empty(), "{:?}", stored(&bucket));
    let list = world.dr(&["list", "--format", "json"]);
    list.expect_code(0);
    assert_eq!(list.json()["backups"].as_array().unwrap().len(), 0);
}

#[test]
fn an_interrupted_redis_backup_leaves_no_directory() {
    let source = DataRedis::start();
    load_many(&source, 600_000, 100);
    let mut world = World::new();
    world.env.push(("DR_TEST_REDIS_URL".into(), source.url()));
    world.write_config(&format!(
        "[storage]\nurl = \"file://{}\"\n\n[backup]\ncompression = \"none\"\n\n[[redis]]\nname = \"cache\"\nurl_env = \"DR_TEST_REDIS_URL\"\npersistent = true\nbackup = true\nmethod = \"rdb\"\n",
        world.storage_dir().display()
    ));
    let child = world.spawn(&["backup", "--target", "cache"]);
    // Interrupted while its object is being written (its directory made).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !world
        .storage_files()
        .iter()
        .any(|f| f.to_string_lossy().contains(".partial-"))
    {
        assert!(
            Instant::now() < deadline,
            "the backup never started writing"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = support::interrupt(child);
    let left = entries_below(&world.storage_dir().join("backups"));
    assert!(
        left.is_empty(),
        "left in storage: {left:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// 4. The way back after a Redis restore --into goes back into the same server.
#[test]
fn redis_go_back_after_restore_into_carries_the_into() {
    let source = DataRedis::start();
    load_many(&source, 50, 16);
    let dest = DataRedis::start();
    load_many(&dest, 7, 16);
    let mut world = World::new();
    world.env.push(("DR_TEST_REDIS_URL".into(), source.url()));
    world.write_config(&format!(
        "[storage]\nurl = \"file://{}\"\n\n[[redis]]\nname = \"cache\"\nurl_env = \"DR_TEST_REDIS_URL\"\npersistent = true\nbackup = true\nmethod = \"keys\"\n",
        world.storage_dir().display()
    ));
    let backup = world.dr(&["backup", "--target", "cache", "--format", "json"]);
    backup.expect_code(0);
    let id = backup.json()["backups"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let into = dest.url();
    let run = world.dr(&[
        "restore",
        "--target",
        "cache",
        "--backup-id",
        &id,
        "--into",
        &into,
        "--yes",
        "--flush",
    ]);
    run.expect_code(0);
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains("to go back"))
        .unwrap_or_else(|| panic!("no way back printed:\n{}", run.stdout));
    assert!(line.contains(&format!("--into '{into}'")), "{line}");

    // Run as printed, it puts the 7 keys back into the destination, not the source.
    let command = line.split('`').nth(1).unwrap().to_string();
    let words: Vec<String> = shell_words(&command);
    assert_eq!(words[0], "dr");
    let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
    world.dr(&args).expect_code(0);
    assert_eq!(dest.dbsize_total(), 7);
    assert_eq!(source.dbsize_total(), 50);
}

/// Splits a printed command line on spaces, honouring single quotes.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = vec![];
    let mut current = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '\'' => quoted = !quoted,
            ' ' if !quoted => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

// 5. Messages that say what is true.
#[test]
fn a_wrong_key_is_not_called_damage() {
    let keys = tempfile::tempdir().unwrap();
    let (_, public, _) = keygen(keys.path(), "team.key");
    let (stranger, stranger_public, _) = keygen(keys.path(), "stranger.key");
    let (_pg, world) = sample_world(&format!("\n[encryption]\nrecipients = [\"{public}\"]\n"));
    world.backup();
    let id = stranger.to_str().unwrap();
    for args in [
        &["validate", "--identity", id][..],
        &["drill", "--identity", id],
        &[
            "restore",
            "--backup-id",
            "latest",
            "--yes",
            "--identity",
            id,
        ],
    ] {
        let run = world.dr(args);
        run.expect_code(1);
        let all = run.all();
        assert!(
            !all.contains("damaged") && !all.contains("corrupt"),
            "{args:?}: {all}"
        );
        assert!(
            all.contains("does not match the recipients") && all.contains(&public),
            "{args:?}: {all}"
        );
        assert!(
            all.contains(&stranger_public) || all.contains(id),
            "{args:?}: {all}"
        );
    }
}

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

#[test]
fn a_future_dated_backup_is_listed_as_from_the_future() {
    let (_pg, world) = sample_world("");
    world.backup();
    let future = world.backup();
    set_manifest_field(&world, &future, |m| {
        m["created_at"] = "2099-01-01T00:00:00Z".into();
        m["finished_at"] = "2099-01-01T00:00:01Z".into();
    });
    let run = world.dr(&["list"]);
    run.expect_code(0);
    let row = run
        .stdout
        .lines()
        .find(|l| l.contains(future["id"].as_str().unwrap()) && l.contains("2099"))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(!row.contains("0 ms"), "{row}");
    assert!(row.contains("FUTURE-DATED") && row.contains(" -"), "{row}");
    assert!(run.stdout.contains("in the future"), "{}", run.stdout);
    let json = world.dr(&["list", "--format", "json"]).json();
    assert_eq!(json["future_dated"][0], future["id"], "{json}");
}

#[test]
fn the_lock_refusal_names_the_target_holding_it() {
    let (pg, world) = sample_world("");
    make_big(&pg, 1_000_000);
    // A second target on the same database shares the backup lock.
    let cfg = std::fs::read_to_string(world.config_path()).unwrap();
    world.write_config(&format!(
        "{cfg}\n[[postgres]]\nname = \"orders\"\nurl_env = \"DR_TEST_PG_URL\"\n"
    ));
    let first = world.spawn(&["backup", "--target", "main"]);
    wait_for_partial(&world);
    let second = world.dr(&["backup", "--target", "orders"]);
    second.expect_code(1);
    assert!(
        second
            .stderr
            .contains("another dr backup of target main is running")
            && second
                .stderr
                .contains("this backup of target orders cannot start"),
        "{}",
        second.stderr
    );
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
