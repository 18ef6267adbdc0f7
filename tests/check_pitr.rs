//! `dr check` before a point-in-time restore is needed, against real clusters: it judges a
//! physical base backup of an encrypted target instead of crashing on it, catches an old
//! primary that came back and archives a timeline the archive has left (split brain), and
//! proves the server's OS user can fetch and open the newest archived segment.

mod support;

use support::archive::base_backup_json;
use support::pitr::{
    base_backup, cluster_with, psql_port, restore_dir, switch_and_wait_archived, write_rows,
    RestoredServer,
};
use support::wal::{switch_wal, wait_archived};
use support::{free_port, is_root, PgCluster, World};

fn archive_now(pg: &PgCluster) -> String {
    let seg = switch_wal(pg);
    wait_archived(pg, &seg);
    seg
}

fn check(world: &World, only: &[&str]) -> support::Run {
    let mut args = vec!["check", "--format", "json"];
    for o in only {
        args.extend(["--only", o]);
    }
    world.dr(&args)
}

/// The row `name` of a check report.
#[track_caller]
fn row(report: &serde_json::Value, name: &str) -> serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} row: {report}"))
        .clone()
}

/// A cluster archiving encrypted WAL, with `[encryption] identity_file` naming a key in
/// the world's directory that belongs to root with mode 0600 (the server's OS user cannot
/// read it): (cluster, world, identity path).
fn encrypted_cluster() -> (PgCluster, World, std::path::PathBuf) {
    let keys = tempfile::tempdir().unwrap();
    let (generated, public) = support::wal::age_keygen(keys.path(), "team.key");
    let (pg, world) = cluster_with(&format!(
        "\n[encryption]\nrecipients = [\"{public}\"]\nidentity_file = \"@IDENTITY@\"\n"
    ));
    let identity = world.dir.path().join("team.key");
    std::fs::copy(&generated, &identity).unwrap();
    std::fs::set_permissions(
        &identity,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let text = std::fs::read_to_string(world.config_path()).unwrap();
    std::fs::write(
        world.config_path(),
        text.replace("@IDENTITY@", &identity.display().to_string()),
    )
    .unwrap();
    (pg, world, identity)
}

#[test]
fn an_encrypted_targets_newest_physical_backup_is_judged_not_crashed_on() {
    let (pg, world, _identity) = encrypted_cluster();
    // The identity is readable where dr check runs; the server's user is not asked here.
    write_rows(&pg, 3, "a");
    archive_now(&pg);
    let dump = world.dr(&["backup", "--target", "main", "--format", "json"]);
    dump.expect_code(0);
    std::thread::sleep(std::time::Duration::from_millis(1100)); // ids have one-second resolution
    let physical = base_backup_json(&world);
    let id = physical["id"].as_str().unwrap();
    assert_eq!(physical["method"], "physical", "{physical}");
    assert_eq!(physical["encryption"], "age", "{physical}");

    let run = check(&world, &["encryption", "backup"]);
    let report = run.json();
    for c in report["checks"].as_array().unwrap() {
        let message = c["message"].as_str().unwrap();
        assert!(
            !message.contains("crashed") && !message.contains("panicked"),
            "{}: {message}",
            c["name"]
        );
    }
    let keys = row(&report, "encryption.keys");
    let message = keys["message"].as_str().unwrap();
    assert_ne!(keys["status"], "fail", "{report}");
    assert!(
        message.contains(&format!("opens backup {id}")),
        "the identity was tried on the physical backup's base tar: {message}"
    );
    let latest = row(&report, "backup.latest");
    assert_eq!(latest["status"], "pass", "{report}");
    assert!(latest["message"].as_str().unwrap().contains(id), "{latest}");
    let integrity = row(&report, "backup.integrity");
    assert_eq!(integrity["status"], "pass", "{report}");
    assert!(
        integrity["message"].as_str().unwrap().contains(id),
        "{integrity}"
    );
    // Nothing in this report is not-ready: exit 0 (warnings only).
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
}

#[test]
fn an_old_primary_archiving_past_a_promotion_is_a_split_brain() {
    let (pg, world) = support::pitr::cluster();
    base_backup(&world);
    write_rows(&pg, 3, "a");
    archive_now(&pg);
    let before = check(&world, &["wal.continuity"]);
    assert_eq!(
        row(&before.json(), "wal.continuity")["status"],
        "pass",
        "{}",
        before.stdout
    );

    // A copy restored with --archive is promoted and archives timeline 2 into the same storage.
    let dir = restore_dir(&world, "promoted");
    let port = free_port();
    let dirs = dir.display().to_string();
    let ports = port.to_string();
    let run = world.dr(&[
        "restore",
        "--target",
        "main",
        "--pitr",
        "--pgdata",
        &dirs,
        "--to-latest",
        "--archive",
        // The old primary still runs: two primaries on purpose, the split brain to detect.
        "--new-primary",
        "--start",
        "--port",
        &ports,
        "--format",
        "json",
    ]);
    let promoted = RestoredServer {
        dir: dir.clone(),
        port,
    };
    run.expect_code(0);
    assert_eq!(run.json()["timeline"], 2, "{}", run.stdout);
    psql_port(
        port,
        "app",
        "INSERT INTO events (note) VALUES ('on the new primary')",
    );
    let seg = switch_and_wait_archived(&promoted);
    assert!(seg.starts_with("00000002"), "{seg}");

    // The old primary comes back and keeps writing and archiving timeline 1 past the fork.
    write_rows(&pg, 3, "stale");
    let stale = archive_now(&pg);
    assert!(stale.starts_with("00000001"), "{stale}");

    let run = check(&world, &["pg.archiving", "wal.continuity"]);
    let report = run.json();
    assert_eq!(report["ready"], false, "{report}");
    assert_eq!(run.code, 1, "NOT READY exits 1: {}", run.stderr);
    let continuity = row(&report, "wal.continuity");
    assert_eq!(continuity["status"], "fail", "{report}");
    let message = continuity["message"].as_str().unwrap();
    for needle in [
        "split brain",
        "this server writes timeline 1",
        "the archive's newest timeline is 2",
        "stop the stale one",
        "dr backup --physical --target main",
    ] {
        assert!(message.contains(needle), "{needle}: {message}");
    }

    // Checked against the promoted copy, the same archive is fine: it writes timeline 2.
    let mut world = world;
    world.env.push((
        "DR_TEST_PG_URL".into(),
        format!(
            "postgres://postgres:{}@127.0.0.1:{port}/app",
            support::SUPERUSER_PASSWORD
        ),
    ));
    let run = check(&world, &["wal.continuity"]);
    let continuity = row(&run.json(), "wal.continuity");
    assert_eq!(continuity["status"], "pass", "{}", run.stdout);
    assert!(
        continuity["message"]
            .as_str()
            .unwrap()
            .contains("timeline 2"),
        "{continuity}"
    );
}

#[test]
fn wal_fetch_proves_the_servers_user_can_open_the_newest_segment() {
    assert!(
        is_root(),
        "this test runs dr check as root against a server run by the postgres OS user"
    );
    let (pg, world, identity) = encrypted_cluster();
    write_rows(&pg, 3, "a");
    let newest = archive_now(&pg);
    let key = identity.display().to_string();

    // Root's 0600 key: restore_command (run as postgres) could not open a segment.
    let run = check(&world, &["wal.fetch"]);
    let report = run.json();
    let fetch = row(&report, "wal.fetch");
    assert_eq!(fetch["status"], "fail", "{report}");
    assert_eq!(report["ready"], false, "{report}");
    assert_eq!(run.code, 1);
    let message = fetch["message"].as_str().unwrap();
    assert!(message.contains(&newest), "names the segment: {message}");
    assert!(message.contains("OS user postgres"), "{message}");
    assert!(
        message.contains(&format!("chgrp postgres {key}; chmod 640 {key}")),
        "names the fix: {message}"
    );
    assert_eq!(message.matches("hint:").count(), 1, "{message}");
    // Nothing of the attempt is left behind.
    assert!(
        std::fs::read_dir(world.tmp_dir())
            .unwrap()
            .flatten()
            .all(|e| !e
                .file_name()
                .to_string_lossy()
                .starts_with("dr-check-fetch-")),
        "the private fetch directory is removed"
    );

    // The fix as named: the server's user reads the key through its group.
    for args in [vec!["postgres", &key], vec!["640", &key]] {
        let program = if args[0] == "postgres" {
            "chgrp"
        } else {
            "chmod"
        };
        let st = std::process::Command::new(program)
            .args(&args)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let run = check(&world, &["wal.fetch"]);
    let report = run.json();
    let fetch = row(&report, "wal.fetch");
    assert_eq!(fetch["status"], "pass", "{report}");
    let message = fetch["message"].as_str().unwrap();
    assert!(
        message.contains("OS user postgres") && message.contains(&newest),
        "{message}"
    );
    run.expect_code(0);
}

/// `pg.mark`: the guide's least-privilege role (docs/src/production.md), without and with the grants `dr mark`
/// needs; the check agrees with what `dr mark` then does.
#[test]
fn pg_mark_names_the_grant_a_least_privilege_role_lacks() {
    let (pg, mut world) = support::pitr::cluster();
    pg.psql(
        "postgres",
        "CREATE ROLE dr_backup LOGIN REPLICATION PASSWORD 'mark-pw'; GRANT pg_read_all_data TO dr_backup",
    );
    world.set_env("DR_TEST_PG_URL", &pg.url("dr_backup", "mark-pw", "app"));
    let before = check(&world, &["pg.mark"]);
    let finding = row(&before.json(), "pg.mark");
    assert_eq!(finding["status"], "warn", "{finding}");
    assert!(
        finding["message"].as_str().unwrap().contains(
            "GRANT EXECUTE ON FUNCTION pg_create_restore_point(text), pg_switch_wal() TO dr_backup"
        ),
        "{finding}"
    );
    assert_ne!(world.dr(&["mark", "m1", "--target", "main"]).code, 0);

    // In the target's database: functions' grants are per database.
    pg.psql(
        "app",
        "GRANT EXECUTE ON FUNCTION pg_create_restore_point(text), pg_switch_wal() TO dr_backup",
    );
    let after = check(&world, &["pg.mark"]);
    assert_eq!(
        row(&after.json(), "pg.mark")["status"],
        "pass",
        "{}",
        after.stdout
    );
    world.dr(&["mark", "m1", "--target", "main"]).expect_code(0);
}
