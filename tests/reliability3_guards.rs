//! Reliability, round 3 (issue 29): guards that were held only by a unit test or a message
//! get tests that check the data, and refusals name the restorable window in one wording.

mod support;

use serde_json::Value;
use support::pitr::{
    base_backup, cluster, ids, psql_port, restore_dir, server_now, write_rows, RestoredServer,
};
use support::wal::{stored_wal, switch_wal, wait_archived};
use support::{free_port, PgCluster, World};

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

/// Every object below `v` that has `key`.
fn find_all<'a>(v: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(map) => {
            if map.contains_key(key) {
                out.push(v);
            }
            map.values().for_each(|x| find_all(x, key, out));
        }
        Value::Array(items) => items.iter().for_each(|x| find_all(x, key, out)),
        _ => {}
    }
}

#[test]
fn refusals_name_the_restorable_window_in_one_wording() {
    let (pg, world) = cluster();
    write_rows(&pg, 3, "before");
    let before_backup = server_now(&pg);
    std::thread::sleep(std::time::Duration::from_millis(50));
    base_backup(&world);
    write_rows(&pg, 3, "after");
    archive_now(&pg);

    let dir = restore_dir(&world, "refused");
    let cases: [(&[&str], &str); 3] = [
        (&["--to-time", &before_backup], "before"),
        (&["--to-time", "2099-01-01T00:00:00Z"], "after"),
        (&["--to-lsn", "FFFF/0"], "after"),
    ];
    for (target, side) in cases {
        let run = restore(&world, &dir, target, None);
        run.expect_code(2);
        let wording = format!(" lies {side} the restorable window of main: the window is ");
        for needle in [
            wording.as_str(),
            "(backup main-",
            " consistent at ",
            "WAL archived up to ",
            "nothing was changed; hint: choose a target inside the window (`dr list --target main`)",
        ] {
            assert!(
                run.stderr.contains(needle),
                "{target:?}: {needle:?} missing: {}",
                run.stderr
            );
        }
        assert!(!dir.exists(), "{target:?} created {}", dir.display());
    }
}

#[test]
fn a_hole_in_a_base_backups_own_wal_makes_it_unrestorable_and_fails_the_gap_check() {
    let (pg, world) = cluster();
    base_backup(&world);
    let early = write_rows(&pg, 3, "early");
    std::thread::sleep(std::time::Duration::from_millis(50));
    let t_early = server_now(&pg);
    archive_now(&pg);
    base_backup(&world);
    let late = write_rows(&pg, 3, "late");
    archive_now(&pg);

    // The newest base backup's start segment (named by its backup history file) is lost.
    let stored = stored_wal(&world.storage_dir());
    let history = stored
        .iter()
        .filter(|(n, _, _)| n.ends_with(".backup"))
        .map(|(n, _, _)| n.clone())
        .max()
        .expect("backup history files");
    let start_segment = history[..24].to_string();
    let (_, _, path) = stored
        .iter()
        .find(|(n, _, _)| *n == start_segment)
        .unwrap_or_else(|| panic!("{start_segment} not stored: {stored:?}"));
    std::fs::remove_file(path).unwrap();

    // dr list: the newest backup is unusable, and no span of the window starts from it.
    let list = world.dr(&["list", "--target", "main", "--format", "json"]);
    list.expect_code(0);
    let json = list.json();
    let backups: Vec<String> = json["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(backups.len(), 2, "{json:#}");
    let newest = backups.iter().max().unwrap().clone();
    let mut windows = Vec::new();
    find_all(&json, "unusable_backups", &mut windows);
    assert!(!windows.is_empty(), "no window in {json:#}");
    for w in &windows {
        assert!(
            w["unusable_backups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b == newest.as_str()),
            "{newest} counted usable: {w:#}"
        );
        for span in w["spans"].as_array().unwrap() {
            assert_ne!(span["from_backup"], newest.as_str(), "{w:#}");
        }
    }

    // dr check: the gap check names the missing segment.
    let check = world.dr(&["check", "--only", "wal.continuity", "--format", "json"]);
    check.expect_code(1);
    let finding = &check.json()["checks"][0];
    assert_eq!(finding["status"], "fail", "{finding}");
    assert!(
        finding["message"]
            .as_str()
            .unwrap()
            .contains(&start_segment),
        "{finding}"
    );

    // --to-latest cannot pass the hole: exit 1 naming it, nothing created.
    let dir = restore_dir(&world, "latest");
    let run = restore(&world, &dir, &["--to-latest"], None);
    run.expect_code(1);
    assert!(run.stderr.contains(&start_segment), "{}", run.stderr);
    assert!(!dir.exists());

    // Before the hole, the older base backup still restores exactly the rows written then.
    let dir = restore_dir(&world, "early");
    let port = free_port();
    let run = restore(&world, &dir, &["--to-time", &t_early], Some(port));
    run.expect_code(0);
    let _server = RestoredServer {
        dir: dir.clone(),
        port,
    };
    let restored = ids(&psql_port(port, "app", "SELECT id FROM events ORDER BY id"));
    assert_eq!(restored, early, "late rows {late:?} must not be there");
}

/// A key pair made by `age-keygen` (Debian package age): (identity file, public key).
fn keygen(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let path = dir.join("team.key");
    let made = std::process::Command::new("age-keygen")
        .arg("-o")
        .arg(&path)
        .output()
        .expect("age-keygen runs (Debian package age)");
    assert!(made.status.success());
    let public = std::process::Command::new("age-keygen")
        .arg("-y")
        .arg(&path)
        .output()
        .unwrap();
    (
        path,
        String::from_utf8_lossy(&public.stdout).trim().to_string(),
    )
}

#[test]
fn a_decrypted_dump_that_is_not_the_plaintext_the_manifest_names_is_refused_and_loads_nothing() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keygen(keys.path());
    let (pg, mut world) =
        support::sample_world(&format!("[encryption]\nrecipients = [\"{public}\"]\n"));
    let manifest = world.backup();
    // The stored (encrypted) bytes still match the manifest and open with the key: only the
    // plaintext they decrypt to is not the one the backup recorded.
    let path = world
        .storage_dir()
        .join("backups/main")
        .join(manifest["id"].as_str().unwrap())
        .join("manifest.json");
    let mut edited: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let dump = edited["objects"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|o| o["role"] == "dump")
        .unwrap();
    let recorded = dump["plaintext_sha256"].as_str().unwrap().to_string();
    let other = format!(
        "{}{}",
        if recorded.starts_with('0') { "1" } else { "0" },
        &recorded[1..]
    );
    dump["plaintext_sha256"] = Value::from(other);
    std::fs::write(&path, serde_json::to_vec_pretty(&edited).unwrap()).unwrap();

    pg.create_db("copy");
    world.set_env("DR_TEST_INTO", &pg.superuser_url("copy"));
    for jobs in ["1", "2"] {
        let run = world.dr(&[
            "restore",
            "--backup-id",
            "latest",
            "--into-env",
            "DR_TEST_INTO",
            "--identity",
            key.to_str().unwrap(),
            "--jobs",
            jobs,
        ]);
        run.expect_code(1);
        assert!(
            run.stderr.contains(&recorded) || run.stderr.contains("SHA-256"),
            "--jobs {jobs}: {}",
            run.stderr
        );
        // Nothing of the backup reached the destination.
        assert_eq!(
            pg.psql(
                "copy",
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
            )
            .trim(),
            "0",
            "--jobs {jobs} loaded objects from a dump whose plaintext does not match"
        );
    }
    // validate reads past what `pg_restore --list` needs, so it says so too.
    let validate = world.dr(&["validate", "--identity", key.to_str().unwrap()]);
    validate.expect_code(1);
    assert!(
        validate
            .all()
            .contains("decrypted bytes do not match the manifest"),
        "{}",
        validate.all()
    );
}

#[test]
fn a_sink_that_echoes_secrets_in_its_reply_gets_them_scrubbed_everywhere() {
    const TOKEN: &str = "wh-Echoed-Token-29";
    let server = support::http::HttpServer::start();
    let (_pg, mut world) = support::sample_world(
        "[[notify]]\nname = \"ops\"\nkind = \"webhook\"\nurl_env = \"DR_TEST_WEBHOOK_URL\"\non = [\"success\", \"failure\"]\nretries = 0\n",
    );
    world.set_env(
        "DR_TEST_WEBHOOK_URL",
        &server.url(&format!("/hooks/{TOKEN}")),
    );
    // A proxy or a misconfigured receiver that answers with what it was given.
    server.reply(
        "/hooks",
        500,
        &format!(
            "rejected /hooks/{TOKEN}: upstream postgres://postgres:{}@db/app refused",
            support::SUPERUSER_PASSWORD
        ),
    );
    let run = world.dr(&["backup", "--format", "json"]);
    run.expect_code(0);
    assert_eq!(server.requests().len(), 1, "the sink was called");
    let report = run.json();
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("HTTP 500") && warnings.contains("***"),
        "the reply is reported, scrubbed: {warnings}"
    );
    let delivery = &report["notifications"][0];
    assert_eq!(delivery["delivered"], false, "{delivery}");
    // What stays: the status record in storage, for `dr status` and the next run.
    let status: String = support::files_below(&world.storage_dir().join("status"))
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(!status.is_empty(), "no status record was stored");
    for text in [&run.stdout, &run.stderr, &status] {
        for secret in [TOKEN, support::SUPERUSER_PASSWORD] {
            assert!(!text.contains(secret), "{secret} leaked into:\n{text}");
        }
    }
}
