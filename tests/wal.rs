//! Continuous WAL archiving and physical base backups against real clusters whose
//! `archive_command` is the built `dr wal-push`: under pgbench load, with storage going
//! down and coming back, with pushes killed mid-upload, on local and S3 storage.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::s3::S3Server;
use support::wal::{
    archived_in_pg_wal, archiver, archiving_cluster, pgbench, pgbench_command, stored_wal,
    switch_wal, synthetic_segment, system_id, wait_archived, wait_failures, ArchiveSetup,
};
use support::{files_below, sha256sum, PgCluster, World};

/// `zstd -dc FILE | sha256sum`: the raw content of a stored object, checked without dr.
fn raw_sha_of_object(path: &Path) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("zstd -q -dc \"$1\" | sha256sum")
        .arg("sh")
        .arg(path)
        .output()
        .expect("zstd (apt-get install zstd)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The check named `name` of `target` in `dr check --format json` output.
fn check<'a>(report: &'a serde_json::Value, name: &str, target: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name && c["target"] == target)
        .unwrap_or_else(|| panic!("no {name} check for {target} in {report}"))
}

fn checks(world: &World, only: &[&str]) -> serde_json::Value {
    let mut args = vec!["check", "--format", "json"];
    for o in only {
        args.extend(["--only", o]);
    }
    world.dr(&args).json()
}

#[test]
fn every_segment_archived_under_pgbench_load_is_stored_with_its_hash() {
    let (pg, mut world) = archiving_cluster(ArchiveSetup {
        push_args: "--target main",
        extra_toml: r#"
[[postgres]]
name = "limited"
url_env = "DR_TEST_LIMITED_URL"
wal_archiving = true
"#,
        ..Default::default()
    });
    pg.psql(
        "postgres",
        "CREATE ROLE limited LOGIN PASSWORD 'limited-pw-1'",
    );
    world.env.push((
        "DR_TEST_LIMITED_URL".into(),
        pg.url("limited", "limited-pw-1", "app"),
    ));
    let sysid = system_id(&pg);
    pgbench(&pg, "app", &["-i", "-q", "-s", "2"]);
    let first = switch_wal(&pg);
    wait_archived(&pg, &first);

    // A base backup while pgbench writes as fast as it can.
    let load = pgbench_command(&pg, "app", &["-n", "-T", "6", "-c", "2", "-j", "2"])
        .spawn()
        .unwrap();
    let run = world.dr(&[
        "backup",
        "--physical",
        "--target",
        "main",
        "--format",
        "json",
    ]);
    run.expect_code(0);
    let m = run.json()["backups"][0].clone();
    let load = load.wait_with_output().unwrap();
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    assert_eq!(m["method"], "physical");
    assert_eq!(m["format_version"], 2);
    let p = &m["physical"];
    assert_eq!(p["system_identifier"], sysid.as_str());
    assert_eq!(p["timeline"], 1);
    assert_eq!(p["wal_segment_size"], 16 << 20);
    assert_eq!(p["backup_manifest"], true);
    assert_eq!(p["tablespaces"].as_array().unwrap().len(), 0);
    assert!(p["start_lsn"].as_str().unwrap() <= p["stop_lsn"].as_str().unwrap());
    let base = world
        .storage_dir()
        .join("backups/main")
        .join(m["id"].as_str().unwrap())
        .join("base.tar.zst");
    assert_eq!(
        sha256sum(&base),
        m["objects"][0]["sha256"].as_str().unwrap()
    );

    let last = switch_wal(&pg);
    wait_archived(&pg, &last);

    // Every file the server reports archived (and still keeps) is stored once, named with
    // the hash of the file in pg_wal, and decompresses to exactly it.
    let stored = stored_wal(&world.storage_dir());
    let done = archived_in_pg_wal(&pg);
    assert!(
        done.len() >= 6,
        "too little WAL to prove anything: {done:?}"
    );
    assert!(done.iter().any(|n| n.ends_with(".backup")), "{done:?}");
    for name in &done {
        let copies: Vec<_> = stored.iter().filter(|(n, _, _)| n == name).collect();
        assert_eq!(
            copies.len(),
            1,
            "{name} must be stored exactly once: {copies:?}"
        );
        let (_, sha, path) = copies[0];
        assert!(
            path.starts_with(world.storage_dir().join("wal/main").join(&sysid)),
            "{}",
            path.display()
        );
        let local = sha256sum(&pg.data_dir().join("pg_wal").join(name));
        assert_eq!(
            sha, &local,
            "{name}: the object name carries the file's SHA-256"
        );
        assert_eq!(
            raw_sha_of_object(path),
            local,
            "{name} decompresses to the file"
        );
    }

    // wal-fetch: with several targets and no --target, the cluster's system identifier
    // picks the archive; the file arrives verified.
    let seg = done.iter().find(|n| n.len() == 24).unwrap();
    let dest = world.tmp_dir().join("fetched");
    world
        .dr(&[
            "wal-fetch",
            "--system-id",
            &sysid,
            seg,
            dest.to_str().unwrap(),
        ])
        .expect_code(0);
    assert_eq!(
        sha256sum(&dest),
        sha256sum(&pg.data_dir().join("pg_wal").join(seg))
    );
    // A file that was never archived: exit 1 and not a word (recovery's normal end).
    let missing = world.dr(&[
        "wal-fetch",
        "--system-id",
        &sysid,
        "0000000100000000000000FF",
        world.tmp_dir().join("nope").to_str().unwrap(),
    ]);
    missing.expect_code(1);
    assert_eq!(missing.stderr.trim(), "");
    assert!(!world.tmp_dir().join("nope").exists());

    // The same file pushed twice is accepted and writes nothing; other content under an
    // archived name is refused and the stored copy kept.
    let seg_path = pg.data_dir().join("pg_wal").join(seg);
    let again = world.dr(&[
        "wal-push",
        "--target",
        "main",
        "--format",
        "json",
        seg_path.to_str().unwrap(),
    ]);
    again.expect_code(0);
    assert_eq!(again.json()["already_archived"], true);
    let forged_dir = world.tmp_dir().join("forged/pg_wal");
    std::fs::create_dir_all(&forged_dir).unwrap();
    let mut bytes = std::fs::read(&seg_path).unwrap();
    bytes[100_000] ^= 0xFF;
    std::fs::write(forged_dir.join(seg), &bytes).unwrap();
    let refused = world.dr(&[
        "wal-push",
        "--target",
        "main",
        forged_dir.join(seg).to_str().unwrap(),
    ]);
    refused.expect_code(1);
    assert!(
        refused.stderr.contains("different content"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("hint:"), "{}", refused.stderr);
    let after = stored_wal(&world.storage_dir());
    assert_eq!(
        after
            .iter()
            .filter(|(n, _, _)| n == seg)
            .map(|(_, s, _)| s.clone())
            .collect::<Vec<_>>(),
        vec![sha256sum(&seg_path)],
        "the stored copy is kept, nothing else is written"
    );

    // The readiness checks see archiving, replication and an unbroken archive.
    let report = checks(
        &world,
        &["pg.archiving", "pg.replication", "wal.continuity"],
    );
    let archiving = check(&report, "pg.archiving", "main");
    assert_eq!(archiving["status"], "pass", "{archiving}");
    assert!(
        archiving["message"].as_str().unwrap().contains(&last),
        "{archiving}"
    );
    assert_eq!(check(&report, "pg.replication", "main")["status"], "pass");
    let limited = check(&report, "pg.replication", "limited");
    assert_eq!(limited["status"], "fail");
    assert!(
        limited["message"]
            .as_str()
            .unwrap()
            .contains("ALTER ROLE limited REPLICATION"),
        "{limited}"
    );
    let continuity = check(&report, "wal.continuity", "main");
    assert_eq!(continuity["status"], "pass", "{continuity}");
    assert!(continuity["message"]
        .as_str()
        .unwrap()
        .contains(m["id"].as_str().unwrap()));

    // Listed with its method, and validated: hashes, then pg_verifybackup over the
    // unpacked tar and the WAL from the archive.
    let list = world.dr(&["list", "--target", "main"]);
    list.expect_code(0);
    assert!(list.stdout.contains("physical"), "{}", list.stdout);
    let validate = world.dr(&[
        "validate",
        "--target",
        "main",
        "--physical",
        "--format",
        "json",
    ]);
    validate.expect_code(0);
    let steps = validate.json()["steps"].clone();
    let verify = steps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "pg_verifybackup")
        .unwrap();
    assert_eq!(verify["status"], "pass", "{steps}");
    assert!(
        verify["message"]
            .as_str()
            .unwrap()
            .contains("successfully verified"),
        "{verify}"
    );
    assert!(
        files_below(&world.tmp_dir())
            .iter()
            .all(|f| !f.to_string_lossy().contains("dr-staging-")),
        "validate leaves no staging behind"
    );

    // A dump command given the physical backup refuses it by name.
    let restore = world.dr(&[
        "restore",
        "--target",
        "main",
        "--backup-id",
        m["id"].as_str().unwrap(),
        "--yes",
    ]);
    restore.expect_code(2);
    assert!(
        restore.stderr.contains("physical base backup"),
        "{}",
        restore.stderr
    );
}

#[test]
fn a_push_killed_mid_upload_leaves_nothing_fetchable() {
    let mut world = World::new();
    world.write_config(&format!(
        "[storage]\nurl = \"file://{}\"\n\n[retention]\nkeep_last = 1\n\n[[postgres]]\nname = \"main\"\nurl = \"postgres://nobody@127.0.0.1:1/none\"\n",
        world.storage_dir().display()
    ));
    world.env.clear();
    let data = world.tmp_dir().join("data");
    let sysid: u64 = 7_000_000_000_000_000_001;
    let sysid_text = sysid.to_string();
    world.dr(&["init"]).expect_code(0);
    // One push that completes, for the damaged-copy case below.
    let whole = synthetic_segment(&data, sysid, 0x0F, 99);
    world
        .dr(&["wal-push", whole.to_str().unwrap()])
        .expect_code(0);
    let mut killed_mid_upload = 0;
    for attempt in 0..20u64 {
        let seg = synthetic_segment(&data, sysid, 0x10 + attempt, attempt);
        let name = seg.file_name().unwrap().to_string_lossy().into_owned();
        let mut child = world.spawn(&["wal-push", seg.to_str().unwrap()]);
        // Kill -9 the moment the object's temporary file appears (or at a varying time).
        let deadline = Instant::now() + Duration::from_millis(200 + attempt * 150);
        let mut saw_partial = false;
        while Instant::now() < deadline {
            saw_partial = files_below(&world.storage_dir()).iter().any(|f| {
                f.to_string_lossy().contains(&format!("{name}."))
                    && f.to_string_lossy().contains(".partial-")
            });
            if saw_partial || child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        let dest = world.tmp_dir().join(format!("fetched-{attempt}"));
        let fetched = world.dr(&[
            "wal-fetch",
            "--system-id",
            &sysid_text,
            &name,
            dest.to_str().unwrap(),
        ]);
        match fetched.code {
            // The push finished before the kill: the whole, right file.
            0 => assert_eq!(sha256sum(&dest), sha256sum(&seg)),
            // Killed: nothing is served, and nothing is left at the destination.
            1 => {
                assert_eq!(fetched.stderr.trim(), "", "not found is silent");
                assert!(!dest.exists());
            }
            other => panic!(
                "wal-fetch after a killed push exited {other}: {}",
                fetched.stderr
            ),
        }
        if saw_partial && status.code().is_none() && fetched.code == 1 {
            killed_mid_upload += 1;
            if killed_mid_upload >= 2 {
                break;
            }
        }
    }
    assert!(
        killed_mid_upload >= 1,
        "no kill landed while the object was being written"
    );
    let partials: Vec<PathBuf> = files_below(&world.storage_dir())
        .into_iter()
        .filter(|f| f.to_string_lossy().contains(".partial-"))
        .collect();
    assert!(!partials.is_empty());

    // A damaged stored copy is never served.
    let stored = stored_wal(&world.storage_dir());
    let (name, _, path) = stored.first().expect("the completed push").clone();
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&path, bytes).unwrap();
    let dest = world.tmp_dir().join("damaged");
    let damaged = world.dr(&[
        "wal-fetch",
        "--system-id",
        &sysid_text,
        &name,
        dest.to_str().unwrap(),
    ]);
    damaged.expect_code(1);
    assert!(damaged.stderr.contains("damaged"), "{}", damaged.stderr);
    assert!(!dest.exists());
    assert!(
        files_below(&world.tmp_dir())
            .iter()
            .all(|f| !f.to_string_lossy().contains(".dr-fetch-")),
        "no temporary file of the fetch is left"
    );
    world
        .dr(&["wal-fetch", "RECOVERYXLOG", "/tmp/x"])
        .expect_code(2);

    // Leftovers of killed pushes older than a day are swept by prune; archived files stay.
    for p in &partials {
        let st = std::process::Command::new("touch")
            .args(["-d", "2 days ago"])
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success());
    }
    world.dr(&["prune"]).expect_code(0);
    assert!(files_below(&world.storage_dir())
        .iter()
        .all(|f| !f.to_string_lossy().contains(".partial-")));
    assert_eq!(stored_wal(&world.storage_dir()).len(), stored.len());
}

#[test]
fn storage_down_makes_the_archiver_retry_and_no_segment_is_lost() {
    let (pg, world) = archiving_cluster(ArchiveSetup::default());
    let first = switch_wal(&pg);
    wait_archived(&pg, &first);
    world.dr(&["backup", "--physical"]).expect_code(0);
    let ready = checks(&world, &["pg.archiving", "wal.continuity"]);
    assert_eq!(ready["ready"], true, "{ready}");

    // Storage refuses the server's OS user: every push fails, PostgreSQL keeps the WAL.
    let storage = world.storage_dir();
    let set_mode = |mode: u32| {
        std::fs::set_permissions(&storage, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .unwrap()
    };
    set_mode(0o000);
    let (_, failed_before, _) = archiver(&pg);
    let mut written_while_down = Vec::new();
    for _ in 0..3 {
        written_while_down.push(switch_wal(&pg));
    }
    wait_failures(&pg, failed_before + 1);
    let down = checks(&world, &["pg.archiving"]);
    let finding = check(&down, "pg.archiving", "main");
    set_mode(0o700);
    assert_eq!(down["ready"], false, "{down}");
    assert_eq!(finding["status"], "fail");
    let message = finding["message"].as_str().unwrap();
    assert!(
        message.contains("archiving is failing") && message.contains("retries"),
        "{message}"
    );
    for name in &written_while_down {
        assert!(
            pg.data_dir().join("pg_wal").join(name).exists(),
            "PostgreSQL keeps {name}"
        );
    }

    // Storage is back: a new segment wakes the archiver, which catches up in order.
    let last = switch_wal(&pg);
    wait_archived(&pg, &last);
    let stored: Vec<String> = stored_wal(&storage)
        .into_iter()
        .map(|(n, _, _)| n)
        .collect();
    for name in written_while_down.iter().chain([&last]) {
        assert!(stored.contains(name), "{name} was lost: {stored:?}");
    }
    let back = checks(&world, &["pg.archiving", "wal.continuity"]);
    assert_eq!(back["ready"], true, "{back}");

    // A hole in storage: wal.continuity names the first missing segment.
    let victim = &written_while_down[1];
    let (_, _, path) = stored_wal(&storage)
        .into_iter()
        .find(|(n, _, _)| n == victim)
        .unwrap();
    std::fs::remove_file(path).unwrap();
    let gap = checks(&world, &["wal.continuity"]);
    let finding = check(&gap, "wal.continuity", "main");
    assert_eq!(finding["status"], "fail");
    let message = finding["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("first missing segment {victim}")),
        "{message}"
    );
    assert!(message.contains("dr backup --physical"), "{message}");
}

#[test]
fn prune_keeps_every_segment_a_kept_base_backup_needs() {
    let (pg, world) = archiving_cluster(ArchiveSetup::default());
    let first = switch_wal(&pg);
    wait_archived(&pg, &first);
    let old = world
        .dr(&["backup", "--physical", "--format", "json"])
        .json()["backups"][0]
        .clone();
    let mut between = Vec::new();
    for _ in 0..2 {
        between.push(switch_wal(&pg));
    }
    std::thread::sleep(Duration::from_millis(1100)); // ids have one-second resolution
    let new = world
        .dr(&["backup", "--physical", "--format", "json"])
        .json()["backups"][0]
        .clone();
    let last = switch_wal(&pg);
    wait_archived(&pg, &last);
    let new_start = new["physical"]["start_wal"].as_str().unwrap().to_string();
    let before: Vec<String> = stored_wal(&world.storage_dir())
        .into_iter()
        .map(|(n, _, _)| n)
        .collect();
    assert!(before.iter().any(|n| n.as_str() < new_start.as_str()));

    let dry = world.dr(&["prune", "--dry-run", "--format", "json"]);
    dry.expect_code(0);
    let planned = dry.json()["backups"].clone();
    assert!(
        planned
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "wal" && e["action"] == "remove"),
        "{planned}"
    );
    let same: Vec<String> = stored_wal(&world.storage_dir())
        .into_iter()
        .map(|(n, _, _)| n)
        .collect();
    assert_eq!(same, before, "a dry run removes nothing");

    let pruned = world.dr(&["prune", "--format", "json"]);
    pruned.expect_code(0);
    let entries = pruned.json()["backups"].clone();
    let removed_old = entries
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["backup_id"] == old["id"] && e["action"] == "remove");
    assert!(removed_old, "{entries}");
    let after: Vec<String> = stored_wal(&world.storage_dir())
        .into_iter()
        .map(|(n, _, _)| n)
        .collect();
    for name in &before {
        let needed = name.len() < 24 || name[..24] >= new_start[..];
        assert_eq!(
            after.contains(name),
            needed,
            "{name} (kept backup starts at {new_start})"
        );
    }
    assert!(after.contains(&last));
    // What stays is still a restorable chain from the kept backup to now.
    let report = checks(&world, &["wal.continuity"]);
    assert_eq!(
        check(&report, "wal.continuity", "main")["status"],
        "pass",
        "{report}"
    );
    world.dr(&["validate", "--physical"]).expect_code(0);
}

#[test]
fn archiving_and_base_backups_on_s3() {
    let mut server = S3Server::start();
    let (pg, world) = archiving_cluster(ArchiveSetup {
        storage_toml: Some(server.config_toml("prod")),
        command_env: server.env(),
        ..Default::default()
    });
    let sysid = system_id(&pg);
    pgbench(&pg, "app", &["-i", "-q", "-s", "1"]);
    let load = pgbench_command(&pg, "app", &["-n", "-T", "3", "-c", "2"])
        .spawn()
        .unwrap();
    let backup = world.dr(&["backup", "--physical", "--format", "json"]);
    backup.expect_code(0);
    assert!(load.wait_with_output().unwrap().status.success());
    let last = switch_wal(&pg);
    wait_archived(&pg, &last);
    let root = server.dir.join(&server.bucket).join("prod");
    let stored = stored_wal(&root);
    for name in archived_in_pg_wal(&pg) {
        let (_, sha, path) = stored
            .iter()
            .find(|(n, _, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} is not in the bucket"));
        let local = sha256sum(&pg.data_dir().join("pg_wal").join(&name));
        assert_eq!(sha, &local);
        assert_eq!(raw_sha_of_object(path), local);
    }
    world.dr(&["validate", "--physical"]).expect_code(0);
    let dest = world.tmp_dir().join("from-s3");
    world
        .dr(&[
            "wal-fetch",
            "--system-id",
            &sysid,
            &last,
            dest.to_str().unwrap(),
        ])
        .expect_code(0);
    assert_eq!(
        sha256sum(&dest),
        sha256sum(&pg.data_dir().join("pg_wal").join(&last))
    );

    // The store goes down: the archiver fails and retries, the check turns red.
    server.stop();
    let (_, failed_before, _) = archiver(&pg);
    let while_down = switch_wal(&pg);
    wait_failures(&pg, failed_before + 1);
    let down = checks(&world, &["pg.archiving"]);
    assert_eq!(
        check(&down, "pg.archiving", "main")["status"],
        "fail",
        "{down}"
    );
    server.restart();
    let after = switch_wal(&pg);
    wait_archived(&pg, &after);
    let names: Vec<String> = stored_wal(&root).into_iter().map(|(n, _, _)| n).collect();
    assert!(
        names.contains(&while_down) && names.contains(&after),
        "{names:?}"
    );
    let report = checks(&world, &["pg.archiving", "wal.continuity"]);
    assert_eq!(report["ready"], true, "{report}");

    // A push killed while its multipart upload is in flight leaves no object.
    let data = world.tmp_dir().join("data");
    let seg = synthetic_segment(&data, sysid.parse().unwrap(), 0x7F0, 9);
    let name = seg.file_name().unwrap().to_string_lossy().into_owned();
    let mut child = world.spawn(&["wal-push", seg.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.pending_uploads().is_empty() && child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.kill();
    child.wait().unwrap();
    let fetched = world.dr(&[
        "wal-fetch",
        "--system-id",
        &sysid,
        &name,
        world.tmp_dir().join("k").to_str().unwrap(),
    ]);
    if fetched.code == 0 {
        assert_eq!(sha256sum(&world.tmp_dir().join("k")), sha256sum(&seg));
    } else {
        fetched.expect_code(1);
        assert!(stored_wal(&root).iter().all(|(n, _, _)| *n != name));
    }
}

#[test]
fn a_physical_backup_is_refused_without_archiving() {
    let pg = PgCluster::start();
    pg.create_db("app");
    let mut world = World::new();
    world.standard_config(&pg, "app", "");
    let text = std::fs::read_to_string(world.config_path())
        .unwrap()
        .replace(
            "url_env = \"DR_TEST_PG_URL\"",
            "url_env = \"DR_TEST_PG_URL\"\nwal_archiving = true",
        );
    world.write_config(&text);
    let run = world.dr(&["backup", "--physical"]);
    run.expect_code(1);
    assert!(run.stderr.contains("archive_mode is off"), "{}", run.stderr);
    // The hint gives the archive_command for this configuration, not a placeholder path.
    let live = format!(
        "archive_command = 'dr --config {} wal-push %p'",
        std::fs::canonicalize(world.config_path())
            .unwrap()
            .display()
    );
    assert!(run.stderr.contains(&live), "{}", run.stderr);
    assert!(
        !world.storage_dir().join("backups").exists()
            || files_below(&world.storage_dir()).is_empty()
    );
    let report = checks(&world, &["pg.archiving", "wal.continuity"]);
    let archiving = check(&report, "pg.archiving", "main");
    assert_eq!(archiving["status"], "fail");
    assert!(
        archiving["message"]
            .as_str()
            .unwrap()
            .contains("archive_mode = on"),
        "{archiving}"
    );
    assert!(
        archiving["message"].as_str().unwrap().contains(&live),
        "{archiving}"
    );
    let continuity = check(&report, "wal.continuity", "main");
    assert_eq!(continuity["status"], "fail");
    assert!(
        continuity["message"]
            .as_str()
            .unwrap()
            .contains("no physical base backup"),
        "{continuity}"
    );
}

#[test]
fn with_encryption_segments_and_base_backups_are_stored_encrypted() {
    let keys = tempfile::tempdir().unwrap();
    let (identity, public) = support::wal::age_keygen(keys.path(), "team.key");
    let (pg, world) = archiving_cluster(ArchiveSetup {
        extra_toml: &format!("\n[encryption]\nrecipients = [\"{public}\"]\n"),
        ..Default::default()
    });
    let sysid = system_id(&pg);
    pgbench(&pg, "app", &["-i", "-q", "-s", "1"]);
    let run = world.dr(&["backup", "--physical", "--format", "json"]);
    run.expect_code(0);
    let m = run.json()["backups"][0].clone();
    assert_eq!(m["encryption"], "age");
    assert_eq!(m["objects"][0]["file"], "base.tar.zst.age");
    let last = switch_wal(&pg);
    wait_archived(&pg, &last);

    // Segments carry data: encrypted. History files carry positions: readable without a key.
    let stored = files_below(&world.storage_dir().join("wal"));
    let segment = stored
        .iter()
        .find(|p| p.to_string_lossy().contains(&format!("/{last}.")))
        .expect("the last segment is stored");
    assert!(
        segment.to_string_lossy().ends_with(".zst.age"),
        "{}",
        segment.display()
    );
    assert!(std::fs::read(segment)
        .unwrap()
        .starts_with(b"age-encryption.org/v1"));
    let history = stored
        .iter()
        .find(|p| p.to_string_lossy().contains(".backup."))
        .unwrap();
    assert!(
        history.to_string_lossy().ends_with(".zst"),
        "{}",
        history.display()
    );

    // Without the key nothing is served; with it the segment arrives verified.
    let dest = world.tmp_dir().join("seg");
    let refused = world.dr(&[
        "wal-fetch",
        "--system-id",
        &sysid,
        &last,
        dest.to_str().unwrap(),
    ]);
    refused.expect_code(1);
    assert!(
        refused.stderr.contains("no age identity"),
        "{}",
        refused.stderr
    );
    assert!(!dest.exists());
    let id = identity.to_str().unwrap();
    world
        .dr(&[
            "wal-fetch",
            "--identity",
            id,
            "--system-id",
            &sysid,
            &last,
            dest.to_str().unwrap(),
        ])
        .expect_code(0);
    assert_eq!(
        sha256sum(&dest),
        sha256sum(&pg.data_dir().join("pg_wal").join(&last))
    );

    // Validation proves integrity without a key, and everything with it.
    let locked = world.dr(&["validate", "--physical", "--format", "json"]);
    locked.expect_code(0);
    let steps = locked.json()["steps"].clone();
    let verify = steps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "pg_verifybackup")
        .unwrap();
    assert_eq!(verify["status"], "warn", "{steps}");
    let open = world.dr(&[
        "validate",
        "--physical",
        "--identity",
        id,
        "--format",
        "json",
    ]);
    open.expect_code(0);
    let steps = open.json()["steps"].clone();
    let verify = steps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "pg_verifybackup")
        .unwrap();
    assert_eq!(verify["status"], "pass", "{steps}");
    let report = checks(&world, &["pg.archiving", "wal.continuity"]);
    assert_eq!(report["ready"], true, "{report}");
}
