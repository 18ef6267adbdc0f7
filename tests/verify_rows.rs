//! `dr verify` after rows were copied back: more rows than the backup is a warning (they
//! were written since), fewer is a failure; `--only-table` asks about those tables only and
//! probes no production Redis.

mod support;

#[test]
fn more_rows_warn_fewer_fail_and_only_table_asks_nothing_else() {
    // A Redis target nobody can reach: a whole-database verify probes it, --only-table not.
    let redis_port = support::free_port();
    let (pg, world) = support::sample_world(&format!(
        "\n[[redis]]\nname = \"cache\"\nurl = \"redis://127.0.0.1:{redis_port}\"\n"
    ));
    world.backup();
    pg.psql(
        "app",
        "INSERT INTO public.ten SELECT i, 'late ' || i FROM generate_series(11, 15) i",
    );
    let run = world.dr(&["verify", "--only-table", "public.ten", "--format", "json"]);
    run.expect_code(0);
    let json = run.json();
    let steps = json["steps"].as_array().unwrap();
    let rows = steps.iter().find(|s| s["name"] == "row counts").unwrap();
    assert_eq!(rows["status"], "warn", "{json}");
    assert!(
        rows["message"]
            .as_str()
            .unwrap()
            .contains("public.ten: 15 rows, 5 more than the backup's 10 (written since)"),
        "{rows}"
    );
    assert!(
        !steps
            .iter()
            .any(|s| s["name"].as_str().unwrap().starts_with("redis")),
        "--only-table probed Redis: {json}"
    );
    // The whole database: Redis is production's and is probed (and here down).
    let whole = world.dr(&["verify", "--format", "json"]);
    assert!(
        whole.json()["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "redis: cache"),
        "{}",
        whole.stdout
    );
    // Fewer rows than the backup: data it had is gone.
    pg.psql("app", "DELETE FROM public.ten WHERE id <= 6");
    let run = world.dr(&["verify", "--only-table", "public.ten", "--format", "json"]);
    run.expect_code(1);
}
