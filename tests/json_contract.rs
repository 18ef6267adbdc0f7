//! Every `--format json` document is one object with `format_version` and `ok`, and the
//! top-level fields of each command are exactly what the guide's JSON table says (docs/src/output-formats.md). Steps
//! share one shape everywhere.

mod support;

use std::collections::{BTreeMap, BTreeSet};

/// docs/src/output-formats.md's table between the `json-table` markers: command → fields.
fn guide_table() -> BTreeMap<String, BTreeSet<String>> {
    let guide = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/src/output-formats.md"
    ))
    .unwrap();
    let start = guide
        .find("<!-- json-table:start -->")
        .expect("json-table:start marker");
    let end = guide
        .find("<!-- json-table:end -->")
        .expect("json-table:end marker");
    let mut table = BTreeMap::new();
    for line in guide[start..end]
        .lines()
        .filter(|l| l.starts_with("| `dr "))
    {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let command = cells[1]
            .trim_matches('`')
            .trim_start_matches("dr ")
            .to_string();
        let fields = cells[2]
            .split(',')
            .map(|f| f.trim().trim_matches('`').to_string())
            .filter(|f| !f.is_empty())
            .collect();
        table.insert(command, fields);
    }
    table
}

fn keys(doc: &serde_json::Value) -> BTreeSet<String> {
    doc.as_object()
        .expect("a JSON object")
        .keys()
        .cloned()
        .collect()
}

fn assert_steps(command: &str, steps: &serde_json::Value) {
    for step in steps.as_array().unwrap() {
        for field in ["name", "phase", "status", "message", "duration_ms"] {
            assert!(
                step.get(field).is_some(),
                "{command}: step without {field}: {step}"
            );
        }
        assert!(
            ["pass", "warn", "fail"].contains(&step["status"].as_str().unwrap()),
            "{command}: {step}"
        );
    }
}

#[test]
fn every_json_document_matches_the_readme_table() {
    let (pg, mut world) = support::sample_world("");
    pg.create_db("copy");
    world.set_env("DR_TEST_INTO", &pg.superuser_url("copy"));
    // A completed WAL segment of the cluster, for `dr wal-push`.
    pg.psql("app", "CREATE TABLE wal_filler AS SELECT 1 AS x");
    let segment = pg.psql("postgres", "SELECT pg_walfile_name(pg_switch_wal())");
    let wal_dir = world.tmp_dir().join("data/pg_wal");
    std::fs::create_dir_all(&wal_dir).unwrap();
    std::fs::copy(
        pg.data_dir().join("pg_wal").join(&segment),
        wal_dir.join(&segment),
    )
    .unwrap();
    let segment_path = wal_dir.join(&segment).display().to_string();
    let pitr_dir = world.tmp_dir().join("pitr").display().to_string();
    let key_file = world.tmp_dir().join("evidence.pem").display().to_string();
    let runs: Vec<(&str, Vec<&str>)> = vec![
        ("backup", vec!["backup"]),
        ("check", vec!["check"]),
        ("list", vec!["list"]),
        ("validate", vec!["validate"]),
        (
            "restore",
            vec![
                "restore",
                "--backup-id",
                "latest",
                "--into-env",
                "DR_TEST_INTO",
            ],
        ),
        ("verify", vec!["verify"]),
        ("drill", vec!["drill", "--backup-id", "latest"]),
        ("status", vec!["status"]),
        ("prune", vec!["prune", "--dry-run"]),
        ("contacts", vec!["contacts"]),
        ("runbook", vec!["runbook"]),
        ("runbook show", vec!["runbook", "show", "database-failure"]),
        ("version", vec!["version"]),
        ("wal-push", vec!["wal-push", &segment_path]),
        ("mark", vec!["mark", "json-contract"]),
        ("init", vec!["init"]),
        ("pin", vec!["pin", "latest", "--reason", "json contract"]),
        ("unpin", vec!["unpin", "latest"]),
        (
            "restore --pitr --only-table",
            vec![
                "restore",
                "--pitr",
                "--to-latest",
                "--only-table",
                "public.ten",
                "--into-env",
                "DR_TEST_INTO",
            ],
        ),
        (
            "restore --pitr",
            vec!["restore", "--pitr", "--to-latest", "--pgdata", &pitr_dir],
        ),
        ("evidence verify", vec!["evidence", "verify"]),
        (
            "evidence keygen",
            vec!["evidence", "keygen", "--output", &key_file],
        ),
    ];
    let table = guide_table();
    let documented: BTreeSet<&str> = table.keys().map(String::as_str).collect();
    let run_names: BTreeSet<&str> = runs.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        documented, run_names,
        "docs/src/output-formats.md's JSON table and this test name the same commands"
    );
    for (name, args) in &runs {
        let mut args = args.clone();
        args.extend(["--format", "json"]);
        let run = world.dr(&args);
        // This world has no physical base backup: `restore --pitr` is refused (exit 2),
        // and still prints its report.
        assert!(
            run.code == 0
                || *name == "check"
                || (name.starts_with("restore --pitr") && run.code == 2),
            "{name}: {}",
            run.all()
        );
        let doc = run.json();
        assert_eq!(doc["format_version"], 2, "{name}");
        assert!(doc["ok"].is_boolean(), "{name}: no ok");
        assert_eq!(
            &keys(&doc),
            &table[*name],
            "{name}: fields differ from docs/src/output-formats.md's table"
        );
        if let Some(steps) = doc.get("steps") {
            if *name != "runbook show" {
                assert_steps(name, steps);
            }
        }
        if let Some(v) = doc.get("verification").filter(|v| !v.is_null()) {
            assert_steps(name, &v["steps"]);
        }
    }
}

/// With `--format json`, every exit prints exactly one JSON document: a usage error, a
/// command line clap refuses, and a refusal after the command's own report alike.
#[test]
fn every_exit_prints_exactly_one_json_document() {
    let (_pg, world) = support::sample_world("");
    // Refused before any report: the error document.
    let run = world.dr(&["restore", "--pitr", "--to-latest", "--format", "json"]);
    run.expect_code(2);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", run.stdout));
    assert_eq!(doc["format_version"], 2);
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["exit_code"], 2);
    assert!(
        doc["error"]
            .as_str()
            .unwrap()
            .contains("--pitr needs --pgdata"),
        "{doc}"
    );
    assert!(doc["hint"].is_null() || doc["hint"].is_string(), "{doc}");
    // A flag clap does not know.
    let run = world.dr(&["list", "--format", "json", "--no-such-flag"]);
    run.expect_code(2);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", run.stdout));
    assert_eq!(doc["ok"], false, "{doc}");
    assert!(
        doc["error"].as_str().unwrap().contains("--no-such-flag"),
        "{doc}"
    );
    // A refusal after the command printed its report: still one document (the report).
    let pitr_dir = world.tmp_dir().join("p").display().to_string();
    let run = world.dr(&[
        "restore",
        "--pitr",
        "--to-latest",
        "--pgdata",
        &pitr_dir,
        "--format",
        "json",
    ]);
    run.expect_code(2);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", run.stdout));
    assert_eq!(doc["operation"], "pitr", "{doc}");
    // Without --format json, stdout stays empty on such an error.
    let run = world.dr(&["restore", "--pitr", "--to-latest"]);
    run.expect_code(2);
    assert!(run.stdout.trim().is_empty(), "{}", run.stdout);
}
