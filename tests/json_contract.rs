//! Every `--format json` document is one object with `format_version` and `ok`, and the
//! fields of each command are exactly what the guide's JSON table says (docs/src/output-formats.md), both ways: every
//! field a run emits is in the table, and every field in the table is emitted by some run
//! (successes and failures together), nested objects the table lists included. A failed
//! run carries `error` as `{message, hint}`; every time is RFC 3339 UTC. Steps share one
//! shape everywhere.

mod support;

use std::collections::{BTreeMap, BTreeSet};

/// docs/src/output-formats.md's table between the `json-table` markers: (command, path) → fields. The path
/// is empty for the top level, else like `checks[]` (each element of an array) or `error`;
/// the command `*` stands for every command.
fn readme_table() -> BTreeMap<(String, String), BTreeSet<String>> {
    let readme = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/src/output-formats.md"
    ))
    .unwrap();
    let start = readme
        .find("<!-- json-table:start -->")
        .expect("json-table:start marker");
    let end = readme
        .find("<!-- json-table:end -->")
        .expect("json-table:end marker");
    let mut table = BTreeMap::new();
    for line in readme[start..end]
        .lines()
        .filter(|l| l.starts_with("| `dr "))
    {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let names: Vec<&str> = cells[1]
            .split('`')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let command = names[0].trim_start_matches("dr ").to_string();
        let path = names.get(1).map(|p| p.to_string()).unwrap_or_default();
        let fields = cells[2]
            .split(',')
            .map(|f| f.trim().trim_matches('`').to_string())
            .filter(|f| !f.is_empty())
            .collect();
        assert!(
            table
                .insert((command.clone(), path.clone()), fields)
                .is_none(),
            "the guide's JSON table names {command} {path} twice"
        );
    }
    table
}

/// The objects at `path` in `doc` (`a[]` steps into every element of array `a`).
fn objects_at<'a>(doc: &'a serde_json::Value, path: &str) -> Vec<&'a serde_json::Value> {
    let mut now = vec![doc];
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, each) = match part.strip_suffix("[]") {
            Some(k) => (k, true),
            None => (part, false),
        };
        now = now
            .into_iter()
            .filter_map(|v| v.get(key))
            .flat_map(|v| match (each, v.as_array()) {
                (true, Some(items)) => items.iter().collect::<Vec<_>>(),
                (false, _) if v.is_object() => vec![v],
                _ => vec![],
            })
            .collect();
    }
    now
}

/// Every string of the document that looks like a time is RFC 3339 in UTC
/// (`2026-12-07T22:40:00Z`, with a fraction of a second where the source has one).
fn assert_times(name: &str, v: &serde_json::Value) {
    match v {
        serde_json::Value::String(s) => {
            let b = s.as_bytes();
            let dated = b.len() >= 10
                && b[..4].iter().all(u8::is_ascii_digit)
                && b[4] == b'-'
                && b[7] == b'-';
            // A date alone (`build_date`) is a calendar day, not a time.
            if dated && s.len() > 10 {
                let ok = chrono::DateTime::parse_from_rfc3339(s).is_ok()
                    && s.as_bytes()[10] == b'T'
                    && s.ends_with('Z');
                assert!(ok, "{name}: {s:?} is not an RFC 3339 UTC time");
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| assert_times(name, i)),
        serde_json::Value::Object(map) => map.values().for_each(|i| assert_times(name, i)),
        _ => {}
    }
}

fn keys(doc: &serde_json::Value) -> BTreeSet<String> {
    doc.as_object()
        .expect("a JSON object")
        .keys()
        .cloned()
        .collect()
}

/// Runs against the guide's table: each document's fields within its rows, and at the end
/// every row's fields emitted by some run.
struct Contract {
    table: BTreeMap<(String, String), BTreeSet<String>>,
    seen: BTreeMap<(String, String), BTreeSet<String>>,
}

impl Contract {
    fn new() -> Contract {
        Contract {
            table: readme_table(),
            seen: BTreeMap::new(),
        }
    }

    fn document(&mut self, name: &str, doc: &serde_json::Value) {
        assert_eq!(doc["format_version"], 2, "{name}: {doc}");
        assert!(doc["ok"].is_boolean(), "{name}: no ok: {doc}");
        assert_times(name, doc);
        // A failure before any report prints the error document, whatever the command.
        let command = if doc.get("exit_code").is_some() {
            "*"
        } else {
            name
        };
        let failed = doc["ok"] == false;
        if failed {
            let error = &doc["error"];
            assert!(
                error["message"].is_string(),
                "{name}: failed without error.message: {doc}"
            );
            assert!(
                error["hint"].is_null() || error["hint"].is_string(),
                "{name}: {doc}"
            );
        }
        let rows: Vec<(String, String)> = self
            .table
            .keys()
            .filter(|(c, p)| c == command || (c == "*" && !p.is_empty()))
            .cloned()
            .collect();
        assert!(
            rows.iter().any(|(_, p)| p.is_empty()),
            "{name}: no row in the guide's JSON table"
        );
        for row in rows {
            let allowed = &self.table[&row];
            for object in objects_at(doc, &row.1) {
                let mut fields = keys(object);
                // `error` joins any failed report (the envelope), listed once under `*`.
                if row.1.is_empty() && failed && !allowed.contains("error") {
                    fields.remove("error");
                    self.seen.entry(("*".into(), "error".into())).or_default();
                }
                let extra: Vec<&String> = fields.difference(allowed).collect();
                assert!(
                    extra.is_empty(),
                    "{name}: {extra:?} at {:?} are not in the guide's JSON table row {row:?}",
                    row.1
                );
                self.seen.entry(row.clone()).or_default().extend(fields);
            }
        }
    }

    /// Every field of every row was emitted by some run.
    fn complete(&self) {
        for (row, fields) in &self.table {
            let seen = self.seen.get(row).cloned().unwrap_or_default();
            let missing: Vec<&String> = fields.difference(&seen).collect();
            assert!(
                missing.is_empty(),
                "the guide's JSON table row {row:?} lists {missing:?}, which no run emitted"
            );
        }
    }
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
    let mut contract = Contract::new();
    let documented: BTreeSet<&str> = contract
        .table
        .keys()
        .map(|(c, _)| c.as_str())
        .filter(|c| *c != "*")
        .collect();
    let run_names: BTreeSet<&str> = runs.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        documented, run_names,
        "the guide's JSON table and this test name the same commands"
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
        contract.document(name, &doc);
        if let Some(steps) = doc.get("steps") {
            if *name != "runbook show" {
                assert_steps(name, steps);
            }
        }
        if let Some(v) = doc.get("verification").filter(|v| !v.is_null()) {
            assert_steps(name, &v["steps"]);
        }
    }
    // Failures: a check that fails (the server stopped), a usage error, a flag clap
    // refuses, a refusal with a report.
    let failures: Vec<(&str, Vec<&str>)> = vec![
        ("list", vec!["list", "--target", "nosuch"]),
        ("status", vec!["status", "--no-such-flag"]),
        (
            "validate",
            vec!["validate", "--backup-id", "nosuch-20990101T000000Z"],
        ),
    ];
    for (name, args) in &failures {
        let mut args = args.clone();
        args.extend(["--format", "json"]);
        let run = world.dr(&args);
        assert_ne!(run.code, 0, "{name}: {}", run.all());
        contract.document(name, &run.json());
    }
    pg.stop_server();
    for (name, args) in [
        ("check", vec!["check"]),
        ("backup", vec!["backup"]),
        ("status", vec!["status"]),
    ] {
        let mut args = args.clone();
        args.extend(["--format", "json"]);
        let run = world.dr(&args);
        let doc = run.json();
        contract.document(name, &doc);
    }
    // An archiving cluster with a base backup, a restore point, a pin and a backup dated
    // in the future: `dr list` shows its windows, restore points, pins and future-dated ids.
    let (pg2, world2) = support::pitr::cluster();
    support::pitr::write_rows(&pg2, 2, "x");
    let dump = world2.backup();
    support::pitr::base_backup(&world2);
    world2.dr(&["mark", "before-upgrade"]).expect_code(0);
    world2
        .dr(&["pin", "latest", "--target", "main"])
        .expect_code(0);
    let manifest = world2
        .storage_dir()
        .join("backups/main")
        .join(dump["id"].as_str().unwrap())
        .join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m["created_at"] = "2099-01-01T00:00:00Z".into();
    m["finished_at"] = "2099-01-01T00:00:01Z".into();
    std::fs::write(&manifest, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    for name in ["list", "status"] {
        let run = world2.dr(&[name, "--format", "json"]);
        contract.document(name, &run.json());
    }
    contract.complete();
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
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--pitr needs --pgdata"),
        "{doc}"
    );
    assert!(
        doc["error"]["hint"].is_null() || doc["error"]["hint"].is_string(),
        "{doc}"
    );
    // A flag clap does not know.
    let run = world.dr(&["list", "--format", "json", "--no-such-flag"]);
    run.expect_code(2);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", run.stdout));
    assert_eq!(doc["ok"], false, "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--no-such-flag"),
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
    // Flags of a dump restore given to a whole-cluster --pitr restore: refused, each named,
    // and the data directory never created.
    let run = world.dr(&[
        "restore",
        "--pitr",
        "--to-latest",
        "--pgdata",
        &pitr_dir,
        "--jobs",
        "4",
        "--no-safety-backup",
        "--format",
        "json",
    ]);
    run.expect_code(2);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", run.stdout));
    assert_eq!(
        doc["error"]["message"],
        "--jobs, --no-safety-backup do not apply to --pitr, which restores a whole cluster into --pgdata",
        "{doc}"
    );
    assert!(
        !std::path::Path::new(&pitr_dir).exists(),
        "{pitr_dir} was created"
    );
    // Without --format json, stdout stays empty on such an error.
    let run = world.dr(&["restore", "--pitr", "--to-latest"]);
    run.expect_code(2);
    assert!(run.stdout.trim().is_empty(), "{}", run.stdout);
}
