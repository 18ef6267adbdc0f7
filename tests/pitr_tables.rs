//! One table as of a time: `dr restore --pitr --to-time T --only-table S.T --into-env VAR
//! --create` replays the base backup and WAL in a throwaway sandbox, copies just that table
//! into a new database, and never touches production; the sandbox is gone afterwards.

mod support;

use support::pitr::{base_backup, cluster, ids, time_between_writes, write_rows};
use support::wal::{switch_wal, wait_archived};

fn sandboxes(world: &support::World) -> Vec<String> {
    std::fs::read_dir(world.tmp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("dr-sandbox-"))
        .collect()
}

#[test]
fn a_table_as_of_a_time_lands_in_a_new_database_and_production_is_untouched() {
    let (pg, mut world) = cluster();
    // events refers to other: the copy of events alone cannot hold that foreign key.
    pg.psql(
        "app",
        "CREATE TABLE other (id int PRIMARY KEY); INSERT INTO other VALUES (1), (2); \
         ALTER TABLE events ADD COLUMN other_id int REFERENCES other (id)",
    );
    base_backup(&world);
    let kept = write_rows(&pg, 4, "before");
    let t = time_between_writes(&pg);
    pg.psql("app", "DELETE FROM events"); // the incident
    let after = write_rows(&pg, 2, "after");
    let seg = switch_wal(&pg);
    wait_archived(&pg, &seg);

    // Production itself as the destination: refused before anything is replayed.
    world.set_env("DR_TEST_INTO", &pg.superuser_url("app"));
    let refused = world.dr(&[
        "restore",
        "--target",
        "main",
        "--pitr",
        "--to-time",
        &t,
        "--only-table",
        "public.events",
        "--into-env",
        "DR_TEST_INTO",
    ]);
    refused.expect_code(2);
    assert!(
        refused.stderr.contains("own database"),
        "{}",
        refused.stderr
    );

    world.set_env("DR_TEST_INTO", &pg.superuser_url("recovered"));
    let run = world.dr(&[
        "restore",
        "--target",
        "main",
        "--pitr",
        "--to-time",
        &t,
        "--only-table",
        "public.events",
        "--into-env",
        "DR_TEST_INTO",
        "--create",
        "--format",
        "json",
    ]);
    run.expect_code(0);
    let report = run.json();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["tables"][0]["table"], "public.events", "{report}");
    assert_eq!(report["tables"][0]["rows"], kept.len() as i64, "{report}");
    // Exactly the rows of T, in the new database; nothing else copied.
    assert_eq!(
        ids(&pg.psql("recovered", "SELECT id FROM events ORDER BY id")),
        kept
    );
    assert_eq!(
        pg.psql(
            "recovered",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'other'"
        ),
        "0"
    );
    // Production as it was: the incident's state and the rows after it.
    assert_eq!(
        ids(&pg.psql("app", "SELECT id FROM events ORDER BY id")),
        after
    );
    assert!(sandboxes(&world).is_empty(), "{:?}", sandboxes(&world));

    // Again into the database that now has the table: refused, nothing replayed.
    let again = world.dr(&[
        "restore",
        "--target",
        "main",
        "--pitr",
        "--to-time",
        &t,
        "--only-table",
        "public.events",
        "--into-env",
        "DR_TEST_INTO",
    ]);
    again.expect_code(2);
    assert!(
        again.stderr.contains("already has public.events"),
        "{}",
        again.stderr
    );
}
