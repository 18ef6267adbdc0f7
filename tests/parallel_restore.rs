//! `dr restore --jobs N`: into a new database, dr's own COPY sessions load the rows between
//! pg_restore's schema and its indexes; over a database with objects, the staged archive
//! gets the data offsets pg_dump could not write into its pipe and pg_restore restores it.
//! Both give exactly the source's data, sequences, indexes and large objects; a backup
//! taken before integrity verdicts existed restores the same way.

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
  SELECT 'objects:' || count(*) || ':' || md5(string_agg(encode(lo_get(oid), 'hex'), ',' ORDER BY oid)) FROM pg_largeobject_metadata
  UNION ALL
  SELECT 'sequence:' || last_value FROM sales.orders_id_seq
  UNION ALL
  SELECT 'indexes:' || string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
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
fn parallel_restore_loads_rows_in_sessions_and_gives_the_source_data() {
    let (pg, mut world) = sample_world("");
    // More tables with data, one of them a few MB (pieces for both sessions), an empty
    // one, and large objects: every kind of data block.
    pg.psql(
        "app",
        "CREATE TABLE public.wide (id int PRIMARY KEY, body text, data bytea);
         INSERT INTO public.wide SELECT i, repeat(md5(i::text), 8) || E'\\n\\t line', decode(md5(i::text), 'hex') FROM generate_series(1, 20000) i;
         CREATE INDEX wide_body ON public.wide (body);
         CREATE TABLE public.empty (id int);
         SELECT lo_from_bytea(0, 'a large object');
         SELECT lo_from_bytea(0, decode(repeat(md5('x'), 20000), 'hex'));",
    );
    let source = fingerprint(&pg, "app");
    let manifest = world.backup();
    let id = manifest["id"].as_str().unwrap().to_string();

    world.set_env("DR_TEST_INTO", &pg.superuser_url("copy_j2"));
    let report = restore_jobs(&world, &id, "2");
    // Staged as stored: no plain copy of the archive on disk.
    assert!(!step_message(&report, "fetch").contains("offsets"));
    let restored = step_message(&report, "pg_restore");
    assert!(restored.contains("with 2 job(s)"), "{restored}");
    // ten, orders, Quoted Table, wide, empty.
    assert!(
        restored.contains("row(s) of 5 table(s) by 2 COPY session(s)"),
        "{restored}"
    );
    assert!(restored.contains("22,547 row(s)"), "{restored}");
    assert!(
        restored.contains("of large objects by pg_restore"),
        "{restored}"
    );
    assert_eq!(fingerprint(&pg, "copy_j2"), source);
    // The identity goes on where the source's did (its sequence value was restored).
    assert_eq!(
        pg.psql(
            "copy_j2",
            "INSERT INTO sales.orders (amount) VALUES (1) RETURNING id"
        )
        .lines()
        .next()
        .unwrap_or_default(),
        "2501"
    );

    // One job streams the archive into pg_restore: no staged file, no offsets needed.
    world.set_env("DR_TEST_INTO", &pg.superuser_url("copy_j1"));
    let report = restore_jobs(&world, &id, "1");
    assert!(!step_message(&report, "fetch").contains("offsets"));
    assert!(!step_message(&report, "pg_restore").contains("COPY session"));
    assert_eq!(fingerprint(&pg, "copy_j1"), source);

    // Over a database with objects (pg_restore --clean): the archive is staged with data
    // offsets and pg_restore --jobs 4 restores it. A backup from before integrity verdicts
    // (no integrity.json) restores the same way.
    std::fs::remove_file(world.dump_path(&manifest).with_file_name("integrity.json")).unwrap();
    world.set_env("DR_TEST_INTO", &pg.superuser_url("copy_j1"));
    let report = restore_jobs(&world, &id, "4");
    assert!(step_message(&report, "fetch").contains("data offsets of"));
    assert!(!step_message(&report, "pg_restore").contains("COPY session"));
    assert_eq!(fingerprint(&pg, "copy_j1"), source);
    assert!(world.tmp_leftovers().is_empty());
}

#[test]
fn an_archive_the_sessions_cannot_load_goes_to_pg_restore_with_the_reason() {
    let pg = PgCluster::start();
    // A LATIN1 database: its dump's rows are in LATIN1, and dr's sessions speak UTF-8.
    pg.psql(
        "postgres",
        "CREATE DATABASE latin ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
    );
    pg.psql(
        "latin",
        "CREATE TABLE names (id int PRIMARY KEY, name text);
         INSERT INTO names SELECT i, 'Müller-' || i FROM generate_series(1, 5000) i;",
    );
    // Compared as UTF-8 bytes: the copy's database may have another encoding.
    let rows = "SELECT count(*) || ':' || md5(convert_to(string_agg(name, ',' ORDER BY id), 'UTF8')) FROM names";
    let source = pg.psql("latin", rows);
    let mut world = World::new();
    world.standard_config(&pg, "latin", "");
    let id = world.backup()["id"].as_str().unwrap().to_string();

    world.set_env("DR_TEST_INTO", &pg.superuser_url("latin_copy"));
    let report = restore_jobs(&world, &id, "2");
    let restored = step_message(&report, "pg_restore");
    assert!(
        restored.contains("rows by pg_restore: it was dumped in encoding LATIN1"),
        "{restored}"
    );
    assert!(
        restored.contains("data offsets of 1 table(s) filled in"),
        "{restored}"
    );
    assert_eq!(pg.psql("latin_copy", rows), source);
    assert!(world.tmp_leftovers().is_empty());
}
