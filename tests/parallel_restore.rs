//! `dr restore --jobs N`: the staged archive gets the data offsets pg_dump could not write
//! into its pipe, and the parallel restore gives exactly the source's data; a backup taken
//! before integrity verdicts existed restores the same way.

mod support;

use support::{sample_world, PgCluster, World};

/// Row counts and a checksum of every row of every table, in a stable order.
fn fingerprint(pg: &PgCluster, db: &str) -> String {
    pg.psql(
        db,
        r#"
SELECT string_agg(t, ' ' ORDER BY t) FROM (
  SELECT 'ten:' || count(*) || ':' || md5(string_agg(x::text, ',' ORDER BY id)) AS t FROM public.ten x
  UNION ALL
  SELECT 'orders:' || count(*) || ':' || md5(string_agg(x::text, ',' ORDER BY id)) FROM sales.orders x
  UNION ALL
  SELECT 'quoted:' || count(*) || ':' || md5(string_agg(x::text, ',' ORDER BY k)) FROM "Mixed Case"."Quoted Table" x
  UNION ALL
  SELECT 'wide:' || count(*) || ':' || md5(string_agg(x::text, ',' ORDER BY id)) FROM public.wide x
  UNION ALL
  SELECT 'objects:' || count(*) FROM pg_largeobject_metadata
) s
"#,
    )
}

fn restore_jobs(world: &World, id: &str, jobs: &str) -> serde_json::Value {
    let run = world.dr(&[
        "restore",
        "--backup-id",
        id,
        "--into-env",
        "DR_TEST_INTO",
        "--create",
        "--jobs",
        jobs,
        "--yes",
        "--no-safety-backup",
        "--format",
        "json",
    ]);
    run.expect_code(0);
    run.json()
}

fn step_message(report: &serde_json::Value, name: &str) -> String {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {report}"))["message"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn parallel_restore_fills_in_offsets_and_gives_the_source_data() {
    let (pg, mut world) = sample_world("");
    // More tables with data, one of them a few MB, and a large object: several data blocks
    // of both kinds for the offsets, work for more than one job.
    pg.psql(
        "app",
        "CREATE TABLE public.wide (id int PRIMARY KEY, body text, data bytea);
         INSERT INTO public.wide SELECT i, repeat(md5(i::text), 8), decode(md5(i::text), 'hex') FROM generate_series(1, 20000) i;
         CREATE INDEX wide_body ON public.wide (body);
         SELECT lo_from_bytea(0, 'a large object');",
    );
    let source = fingerprint(&pg, "app");
    let manifest = world.backup();
    let id = manifest["id"].as_str().unwrap().to_string();

    world.set_env("DR_TEST_INTO", &pg.superuser_url("copy_j2"));
    let report = restore_jobs(&world, &id, "2");
    let fetch = step_message(&report, "fetch");
    let filled: usize = fetch
        .split("data offsets of ")
        .nth(1)
        .unwrap_or_else(|| panic!("no offsets filled in: {fetch}"))
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // ten, orders, Quoted Table, wide, and the large objects' block.
    assert!(filled >= 5, "{fetch}");
    assert!(step_message(&report, "pg_restore").contains("with 2 job(s)"));
    assert_eq!(fingerprint(&pg, "copy_j2"), source);

    // One job streams the archive into pg_restore: no staged file, no offsets needed.
    world.set_env("DR_TEST_INTO", &pg.superuser_url("copy_j1"));
    let report = restore_jobs(&world, &id, "1");
    assert!(!step_message(&report, "fetch").contains("offsets"));
    assert_eq!(fingerprint(&pg, "copy_j1"), source);

    // A backup from before integrity verdicts (no integrity.json) restores in parallel too.
    std::fs::remove_file(world.dump_path(&manifest).with_file_name("integrity.json")).unwrap();
    world.set_env("DR_TEST_INTO", &pg.superuser_url("copy_old"));
    let report = restore_jobs(&world, &id, "4");
    assert!(step_message(&report, "fetch").contains("data offsets of"));
    assert_eq!(fingerprint(&pg, "copy_old"), source);
    assert!(world.tmp_leftovers().is_empty());
}
