//! `dr validate`, `dr restore`, `dr verify` on real PostgreSQL: proven before, guarded
//! during, verified after.

mod support;

use std::io::{Read, Write};
use std::process::Command;

use support::{PgCluster, World};

const REALISTIC_SCHEMA: &str = r#"
CREATE EXTENSION IF NOT EXISTS plpgsql;
CREATE SCHEMA "Billing Dept";
CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN public.positive_int AS integer CHECK (VALUE > 0);
CREATE SEQUENCE public.invoice_no START 1000;
CREATE TABLE public.customers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL, mood public.mood, tags text[], doc jsonb, avatar bytea);
COMMENT ON TABLE public.customers IS 'people who pay';
CREATE TABLE "Billing Dept"."Invoices" (id integer DEFAULT nextval('public.invoice_no') PRIMARY KEY, customer_id bigint REFERENCES public.customers(id), qty public.positive_int, total numeric(12,2), updated_at timestamptz);
CREATE TABLE public.events (id bigserial, at date NOT NULL, payload jsonb) PARTITION BY RANGE (at);
CREATE TABLE public.events_2025 PARTITION OF public.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE public.events_2026 PARTITION OF public.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
CREATE TRIGGER invoices_touch BEFORE UPDATE ON "Billing Dept"."Invoices" FOR EACH ROW EXECUTE FUNCTION public.touch();
INSERT INTO public.customers (name, mood, tags, doc, avatar) SELECT 'c' || i, (ARRAY['sad','ok','happy'])[1 + i % 3]::public.mood, ARRAY['a' || i, 'b'], jsonb_build_object('n', i, 'nested', jsonb_build_array(i, i * 2)), decode(md5(i::text), 'hex') FROM generate_series(1, 500) i;
INSERT INTO "Billing Dept"."Invoices" (customer_id, qty, total) SELECT 1 + i % 500, 1 + i % 7, i * 3.25 FROM generate_series(1, 800) i;
INSERT INTO public.events (at, payload) SELECT DATE '2025-06-01' + (i % 400), jsonb_build_object('i', i) FROM generate_series(1, 900) i;
CREATE VIEW public.big_customers AS SELECT c.name, sum(i.total) AS total FROM public.customers c JOIN "Billing Dept"."Invoices" i ON i.customer_id = c.id GROUP BY c.name;
CREATE MATERIALIZED VIEW public.mood_counts AS SELECT mood, count(*) FROM public.customers GROUP BY mood;
SELECT lo_from_bytea(4242, 'large object payload');
SELECT setval('public.invoice_no', 5000);
"#;

fn setup() -> (PgCluster, World) {
    support::sample_world("")
}

fn normalized_dump(pg: &PgCluster, db: &str, extra: &[&str]) -> String {
    pg.dump_text(db, extra)
        .lines()
        .filter(|l| {
            !l.starts_with("--") && !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn realistic_schema_round_trips_exactly() {
    let pg = PgCluster::start();
    pg.create_db("src");
    pg.psql("src", REALISTIC_SCHEMA);
    let mut world = World::new();
    world.standard_config(&pg, "src", "");
    let m = world.backup();
    pg.create_db("copy");
    let run = world.dr(&[
        "restore",
        "--backup-id",
        m["id"].as_str().unwrap(),
        "--into",
        &pg.superuser_url("copy"),
        "--format",
        "json",
    ]);
    run.expect_code(0);
    let report = run.json();
    assert_eq!(report["ok"], true);
    assert_eq!(report["verification"]["ok"], true);
    assert!(
        report["safety_backup_id"].is_null(),
        "an empty destination needs no safety copy"
    );
    assert!(report["duration_ms"].as_u64().unwrap() > 0);
    assert!(!run.stdout.contains(support::SUPERUSER_PASSWORD));
    assert_eq!(
        normalized_dump(&pg, "src", &["--schema-only"]),
        normalized_dump(&pg, "copy", &["--schema-only"])
    );
    assert_eq!(
        normalized_dump(&pg, "src", &["--data-only"]),
        normalized_dump(&pg, "copy", &["--data-only"])
    );
    assert_eq!(
        pg.psql("copy", "SELECT convert_from(lo_get(4242), 'UTF8')"),
        "large object payload"
    );
    assert_eq!(
        pg.psql("copy", "SELECT last_value FROM public.invoice_no"),
        "5000"
    );
    assert_eq!(
        pg.psql("copy", "SELECT count(*) FROM public.mood_counts"),
        "3"
    );
}

fn flip_one_byte(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn corrupted_truncated_or_unmanifested_backups_are_refused_before_touching_anything() {
    let (pg, world) = setup();
    let m = world.backup();
    let id = m["id"].as_str().unwrap().to_string();
    world.dr(&["validate", "--backup-id", &id]).expect_code(0);
    let dump = world.dump_path(&m);
    let original = std::fs::read(&dump).unwrap();
    pg.create_db("dest");
    pg.psql(
        "dest",
        "CREATE TABLE keep_me (i int); INSERT INTO keep_me VALUES (42)",
    );
    let dest = pg.superuser_url("dest");

    flip_one_byte(&dump);
    let v = world.dr(&["validate", "--backup-id", &id]);
    v.expect_code(1);
    assert!(v.all().contains("checksum mismatch"), "{}", v.all());
    let r = world.dr(&["restore", "--backup-id", &id, "--into", &dest, "--yes"]);
    r.expect_code(1);
    assert!(r.all().contains("checksum mismatch"), "{}", r.all());
    assert_eq!(pg.psql("dest", "SELECT i FROM keep_me"), "42");
    assert_eq!(
        pg.psql(
            "dest",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'sales'"
        ),
        "0",
        "destination untouched"
    );
    let check = world.dr(&["check", "--only", "backup.integrity", "--format", "json"]);
    check.expect_code(1);
    assert!(check.stdout.contains("checksum mismatch"));

    std::fs::write(&dump, &original[..original.len() - 100]).unwrap();
    let v = world.dr(&["validate", "--backup-id", &id]);
    v.expect_code(1);
    assert!(v.all().contains("checksum mismatch"), "{}", v.all());
    world
        .dr(&["restore", "--backup-id", &id, "--into", &dest, "--yes"])
        .expect_code(1);
    assert_eq!(pg.psql("dest", "SELECT i FROM keep_me"), "42");

    std::fs::write(&dump, &original).unwrap();
    std::fs::remove_file(dump.parent().unwrap().join("manifest.json")).unwrap();
    let v = world.dr(&["validate", "--backup-id", &id]);
    v.expect_code(1);
    assert!(v.all().contains("no manifest"), "{}", v.all());
    world
        .dr(&["restore", "--backup-id", &id, "--into", &dest, "--yes"])
        .expect_code(1);
    assert_eq!(
        pg.psql(
            "dest",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'sales'"
        ),
        "0"
    );
    // An id that never existed is a usage error.
    world
        .dr(&["validate", "--backup-id", "main-19990101T000000Z"])
        .expect_code(2);
    // No staging files were left behind on any failure path.
    assert!(std::fs::read_dir(world.tmp_dir()).unwrap().next().is_none());
}

#[test]
fn non_empty_destination_needs_yes_and_gets_a_safety_backup() {
    let (pg, world) = setup();
    let m = world.backup();
    pg.psql(
        "app",
        "INSERT INTO public.ten VALUES (11, 'added after the backup')",
    );
    let refused = world.dr(&["restore", "--backup-id", "latest"]);
    refused.expect_code(2);
    assert!(
        refused.stderr.contains("not empty") && refused.stderr.contains("--yes"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        pg.psql("app", "SELECT count(*) FROM public.ten"),
        "11",
        "untouched"
    );
    assert_eq!(
        world.dr(&["list", "--format", "json"]).json()["backups"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "no safety backup when refused"
    );

    let run = world.dr(&[
        "restore",
        "--backup-id",
        "latest",
        "--yes",
        "--format",
        "json",
    ]);
    run.expect_code(0);
    let report = run.json();
    assert_eq!(report["backup_id"], m["id"]);
    let safety = report["safety_backup_id"].as_str().unwrap().to_string();
    assert!(safety.ends_with("-safety"), "{safety}");
    assert_eq!(
        pg.psql("app", "SELECT count(*) FROM public.ten"),
        "10",
        "restored to the backup's state"
    );
    let list = world.dr(&["list", "--format", "json"]).json();
    let safety_entry = list["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == safety.as_str())
        .expect("safety backup listed");
    assert_eq!(safety_entry["kind"], "safety");
    let ten = safety_entry["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ten")
        .unwrap();
    assert_eq!(ten["rows"], 11, "the safety copy holds what was there");
    // `latest` still means the newest regular backup, not the safety copy.
    let again = world.dr(&[
        "restore",
        "--backup-id",
        "latest",
        "--yes",
        "--no-safety-backup",
        "--format",
        "json",
    ]);
    again.expect_code(0);
    assert_eq!(again.json()["backup_id"], m["id"]);
}

#[test]
fn parallel_restore_gives_the_same_content() {
    let (pg, world) = setup();
    let m = world.backup();
    let id = m["id"].as_str().unwrap();
    pg.create_db("one");
    pg.create_db("two");
    world
        .dr(&[
            "restore",
            "--backup-id",
            id,
            "--into",
            &pg.superuser_url("one"),
            "--jobs",
            "1",
        ])
        .expect_code(0);
    world
        .dr(&[
            "restore",
            "--backup-id",
            id,
            "--into",
            &pg.superuser_url("two"),
            "--jobs",
            "2",
        ])
        .expect_code(0);
    assert_eq!(
        normalized_dump(&pg, "one", &[]),
        normalized_dump(&pg, "two", &[])
    );
}

#[test]
fn verify_reports_missing_rows_failed_assertions_and_http_errors() {
    let (pg, mut world) = setup();
    // An HTTP endpoint that answers 503.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    world.standard_config(
        &pg,
        "app",
        &format!(
            "[[verify.sql]]\nname = \"ten rows\"\nquery = \"SELECT count(*) FROM public.ten\"\nexpect = \">= 10\"\n\n[[verify.http]]\nname = \"api\"\nurl = \"http://127.0.0.1:{port}/health\"\nexpect_status = 200\ntimeout = \"3s\"\n"
        ),
    );
    world.backup();
    let run = world.dr(&["verify", "--format", "json"]);
    run.expect_code(1);
    let json = run.json();
    assert!(json["mismatches"].as_array().unwrap().is_empty());
    let http = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "http: api")
        .unwrap();
    assert_eq!(http["status"], "fail");
    assert!(http["message"].as_str().unwrap().contains("503"), "{http}");

    // Without the HTTP check: all good, until a row disappears.
    world.standard_config(&pg, "app", "[[verify.sql]]\nname = \"ten rows\"\nquery = \"SELECT count(*) FROM public.ten\"\nexpect = \">= 10\"\n");
    world.dr(&["verify"]).expect_code(0);
    pg.psql("app", "DELETE FROM public.ten WHERE id = 7");
    let run = world.dr(&["verify", "--format", "json"]);
    run.expect_code(1);
    let json = run.json();
    assert_eq!(json["mismatches"][0]["table"], "public.ten");
    assert_eq!(json["mismatches"][0]["expected"], 10);
    assert_eq!(json["mismatches"][0]["found"], 9);
    let sql = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "sql: ten rows")
        .unwrap();
    assert_eq!(sql["status"], "fail");
    let table = world.dr(&["verify"]);
    table.expect_code(1);
    assert!(
        table
            .all()
            .contains("public.ten: 10 rows expected, 9 found"),
        "{}",
        table.all()
    );
}

#[test]
fn failing_pg_restore_exits_1_with_its_own_words() {
    let (pg, world) = setup();
    world.backup();
    pg.psql(
        "postgres",
        "CREATE ROLE limited LOGIN PASSWORD 'limited-pw'",
    );
    pg.create_db("locked");
    pg.psql("postgres", "REVOKE CREATE ON DATABASE locked FROM PUBLIC");
    pg.psql("locked", "REVOKE CREATE ON SCHEMA public FROM PUBLIC;");
    let run = world.dr(&[
        "restore",
        "--backup-id",
        "latest",
        "--into",
        &pg.url("limited", "limited-pw", "locked"),
    ]);
    run.expect_code(1);
    assert!(run.all().contains("pg_restore failed"), "{}", run.all());
    assert!(
        run.all().contains("permission denied"),
        "pg_restore's words: {}",
        run.all()
    );
    assert!(!run.all().contains("limited-pw"));
    assert!(
        std::fs::read_dir(world.tmp_dir()).unwrap().next().is_none(),
        "staging removed"
    );
}

#[test]
fn validate_reports_every_step_as_json() {
    let (_pg, world) = setup();
    world.backup();
    let run = world.dr(&["validate", "--format", "json"]);
    run.expect_code(0);
    let steps: Vec<String> = run.json()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        steps,
        vec![
            "storage",
            "manifest",
            "tools",
            "destination",
            "extensions",
            "disk",
            "checksum+archive"
        ]
    );
    let _ = Command::new("true");
}

#[test]
fn globals_are_restored_first_on_a_fresh_cluster() {
    let pg = PgCluster::start();
    pg.create_db("app");
    pg.psql("app", "CREATE ROLE app_owner NOLOGIN; CREATE TABLE public.owned (i int); ALTER TABLE public.owned OWNER TO app_owner; INSERT INTO public.owned VALUES (1), (2);");
    let mut world = World::new();
    world.standard_config(&pg, "app", "[backup]\ninclude_globals = true\n");
    world.backup();
    // A fresh cluster has no app_owner role: without globals, ownership cannot be restored.
    let fresh = PgCluster::start();
    fresh.create_db("app");
    let without = world.dr(&[
        "restore",
        "--backup-id",
        "latest",
        "--into",
        &fresh.superuser_url("app"),
    ]);
    without.expect_code(1);
    assert!(without.all().contains("app_owner"), "{}", without.all());
    fresh.psql("postgres", "DROP DATABASE app");
    fresh.create_db("app");
    let run = world.dr(&[
        "restore",
        "--backup-id",
        "latest",
        "--into",
        &fresh.superuser_url("app"),
        "--with-globals",
        "--format",
        "json",
    ]);
    run.expect_code(0);
    let steps: Vec<String> = run.json()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    let globals = steps
        .iter()
        .position(|s| s == "globals")
        .expect("globals step");
    assert!(
        globals < steps.iter().position(|s| s == "pg_restore").unwrap(),
        "globals come first: {steps:?}"
    );
    assert_eq!(
        fresh.psql(
            "app",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'owned'"
        ),
        "app_owner"
    );
    assert_eq!(fresh.psql("app", "SELECT count(*) FROM public.owned"), "2");
}

/// Rewrites one field of a stored manifest (what a newer dr or another server would write).
fn edit_manifest(
    world: &World,
    manifest: &serde_json::Value,
    edit: impl Fn(&mut serde_json::Value),
) {
    let path = world
        .dump_path(manifest)
        .parent()
        .unwrap()
        .join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut m);
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

#[test]
fn validate_refuses_an_older_pg_restore_and_missing_extensions() {
    let (pg, world) = setup();
    let m = world.backup();
    pg.create_db("dest");
    let dest = pg.superuser_url("dest");

    edit_manifest(&world, &m, |m| m["pg_dump_version"] = "99.1".into());
    let v = world.dr(&["validate", "--into", &dest, "--format", "json"]);
    v.expect_code(1);
    let failed = v.json()["steps"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(failed["name"], "tools");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("older than the pg_dump 99.1"),
        "{failed}"
    );
    world
        .dr(&["restore", "--backup-id", "latest", "--into", &dest])
        .expect_code(1);
    assert_eq!(
        pg.psql(
            "dest",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'sales'"
        ),
        "0"
    );

    edit_manifest(&world, &m, |m| {
        m["pg_dump_version"] = "15.0".into();
        m["extensions"] = serde_json::json!(["plpgsql", "no_such_extension"]);
    });
    let v = world.dr(&["validate", "--into", &dest, "--format", "json"]);
    v.expect_code(1);
    let failed = v.json()["steps"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(failed["name"], "extensions");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("no_such_extension"),
        "{failed}"
    );
}
