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
