//! `backup_from = "standby"`: the base backup streams from a real standby of the primary,
//! the WAL comes from the primary's archive, and a point-in-time restore from it gives
//! exactly the data; `pg.standby` fails once the standby is down.

mod support;

use support::archive::stored_segments;
use support::pitr::{cluster, ids, psql_port, restore_started, write_rows};
use support::standby::standby_of;
use support::wal::{switch_wal, wait_archived};

fn standby_check(world: &support::World) -> (support::Run, serde_json::Value) {
    let run = world.dr(&["check", "--only", "pg.standby", "--format", "json"]);
    let report = run.json();
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "pg.standby")
        .unwrap_or_else(|| panic!("no pg.standby: {report}"))
        .clone();
    (run, check)
}

#[test]
fn a_base_backup_from_a_standby_restores_exactly_and_the_check_sees_it_stop() {
    let (pg, mut world) = cluster();
    let standby = standby_of(&pg);
    // Rows the standby replays: its backup then ends inside the primary's current
    // segment, which nothing has archived yet, so dr has to switch and wait for it.
    let a = write_rows(&pg, 3, "a");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while standby.psql("app", "SELECT count(*) FROM events") != "3" {
        assert!(
            std::time::Instant::now() < deadline,
            "the standby does not replay"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(world.config_path()).unwrap();
    std::fs::write(
        world.config_path(),
        text.replace(
            "wal_archiving = true",
            "wal_archiving = true\nbackup_from = \"standby\"\nstandby_url_env = \"DR_TEST_STANDBY_URL\"",
        ),
    )
    .unwrap();
    world
        .env
        .push(("DR_TEST_STANDBY_URL".into(), standby.superuser_url("app")));
    assert_eq!(standby.psql("app", "SELECT pg_is_in_recovery()"), "t");

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
    let p = &m["physical"];
    assert_eq!(p["backup_from"], "standby", "{m}");
    assert_eq!(p["server"], format!("127.0.0.1:{}", standby.port), "{m}");
    assert_eq!(p["backup_history_file"], "", "{m}");
    assert!(!m.to_string().contains(support::SUPERUSER_PASSWORD), "{m}");
    // Its end segment came from the primary's archive (a standby archives nothing here).
    let stop_wal = p["stop_wal"].as_str().unwrap();
    assert!(
        stored_segments(&world).iter().any(|(n, _)| n == stop_wal),
        "{stop_wal} archived"
    );

    // Incrementals stream from the primary only: refused before anything is stored.
    let refused = world.dr(&["backup", "--physical", "--incremental", "--target", "main"]);
    refused.expect_code(2);
    assert!(
        refused.stderr.contains("primary only"),
        "{}",
        refused.stderr
    );

    let b = write_rows(&pg, 3, "b");
    let seg = switch_wal(&pg);
    wait_archived(&pg, &seg);
    let (run, check) = standby_check(&world);
    run.expect_code(0);
    assert_eq!(check["status"], "pass", "{check}");
    assert!(
        check["message"]
            .as_str()
            .unwrap()
            .contains("behind the primary"),
        "{check}"
    );

    let (run, server) = restore_started(&world, "from-standby", &["--to-latest"]);
    run.expect_code(0);
    assert_eq!(
        ids(&psql_port(
            server.port,
            "app",
            "SELECT id FROM events ORDER BY id"
        )),
        [a, b].concat()
    );

    standby.stop_server();
    let (run, check) = standby_check(&world);
    run.expect_code(1);
    assert_eq!(check["status"], "fail", "{check}");
    assert!(
        check["message"]
            .as_str()
            .unwrap()
            .contains(&standby.port.to_string()),
        "{check}"
    );
}
