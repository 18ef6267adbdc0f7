//! The evidence log: records of real runs chain and verify; any edited, removed, reordered
//! or forked record or report is caught by name; a wrong public key is caught; the HTML
//! export renders in headless Chromium with its charts and says what the JSON export says;
//! the predicted RTO after two drills is within 30% of a third drill's measured one.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{PgCluster, World};

/// A world whose records are signed with a key made by `dr evidence keygen`; returns the
/// public key.
fn signed_world() -> (PgCluster, World, String) {
    let (pg, world) = support::sample_world("\n[evidence]\nsigning_key_file = \"evidence.pem\"\n");
    let key = world.dir.path().join("evidence.pem");
    let run = world.dr(&[
        "evidence",
        "keygen",
        "--output",
        key.to_str().unwrap(),
        "--format",
        "json",
    ]);
    run.expect_code(0);
    let public = run.json()["public_key"].as_str().unwrap().to_string();
    assert_eq!(public.len(), 64, "{public}");
    (pg, world, public)
}

fn log_dir(world: &World) -> PathBuf {
    world.storage_dir().join("evidence/log")
}

/// The record files, in sequence order.
fn records(world: &World) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(log_dir(world))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

fn record_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn verify(world: &World, extra: &[&str]) -> support::Run {
    let mut args = vec!["evidence", "verify", "--format", "json"];
    args.extend_from_slice(extra);
    world.dr(&args)
}

/// Runs `verify`, expects exit 1 with a problem naming `key_part` that says `words`.
#[track_caller]
fn expect_caught(world: &World, key_part: &str, words: &str) {
    let run = verify(world, &[]);
    run.expect_code(1);
    let doc = run.json();
    assert_eq!(doc["ok"], false);
    let problems = doc["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["key"].as_str().unwrap().contains(key_part)
                && p["problem"].as_str().unwrap().contains(words)),
        "no problem naming {key_part} with {words:?}: {problems:#?}"
    );
    assert!(run.stderr.contains("fails verification"), "{}", run.stderr);
}

/// Changes a file, runs `check`, and puts the original bytes back.
fn tampered(path: &Path, change: impl FnOnce(&[u8]) -> Option<Vec<u8>>, check: impl FnOnce()) {
    let original = std::fs::read(path).unwrap();
    match change(&original) {
        Some(bytes) => std::fs::write(path, bytes).unwrap(),
        None => std::fs::remove_file(path).unwrap(),
    }
    check();
    std::fs::write(path, original).unwrap();
}

#[test]
fn a_chain_of_real_runs_verifies_and_every_change_to_it_is_caught() {
    let (pg, mut world, public) = signed_world();
    pg.create_db("copy");
    world.set_env("DR_TEST_INTO", &pg.superuser_url("copy"));
    world.backup();
    world.dr(&["validate"]).expect_code(0);
    world.dr(&["drill", "--backup-id", "latest"]).expect_code(0);
    world
        .dr(&[
            "restore",
            "--backup-id",
            "latest",
            "--into-env",
            "DR_TEST_INTO",
            "--yes",
        ])
        .expect_code(0);
    world
        .dr(&["verify", "--into-env", "DR_TEST_INTO"])
        .expect_code(0);
    world.dr(&["prune", "--dry-run"]).expect_code(0);
    // Not recorded: reads only.
    world.dr(&["list"]).expect_code(0);

    let files = records(&world);
    let commands: Vec<String> = files
        .iter()
        .map(|f| record_json(f)["command"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        commands,
        ["backup", "validate", "drill", "restore", "verify", "prune"],
        "one record per recorded run, in order"
    );
    // Each names the SHA-256 of the one before, and of its report, as sha256sum sees them.
    for (i, f) in files.iter().enumerate() {
        let r = record_json(f);
        assert_eq!(r["seq"], i as u64 + 1);
        let expected_prev = (i > 0).then(|| support::sha256sum(&files[i - 1]));
        assert_eq!(r["prev_sha256"].as_str().map(str::to_string), expected_prev);
        let report = world.storage_dir().join(r["report_key"].as_str().unwrap());
        assert_eq!(
            r["report_sha256"].as_str().unwrap(),
            support::sha256sum(&report)
        );
        assert_eq!(r["signature"]["public_key"], public.as_str());
        assert!(!r["host"].as_str().unwrap().is_empty());
    }
    let drill = record_json(&files[2]);
    assert!(drill["figures"]["rto_ms"].as_i64().unwrap() > 0, "{drill}");
    assert_eq!(drill["targets"], serde_json::json!(["main"]));
    let drill_report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            world
                .storage_dir()
                .join(drill["report_key"].as_str().unwrap()),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        drill_report["rto_ms"], drill["figures"]["rto_ms"],
        "the full report is kept"
    );

    let run = verify(&world, &[]);
    run.expect_code(0);
    let doc = run.json();
    assert_eq!(doc["ok"], true, "{doc}");
    assert_eq!(doc["records"], 6);
    assert_eq!(doc["signed"], 6);
    assert_eq!(doc["public_key"], public.as_str());
    let check = world.dr(&["check", "--only", "evidence.chain", "--format", "json"]);
    assert_eq!(
        check.json()["checks"][0]["status"],
        "pass",
        "{}",
        check.stdout
    );

    // A record edited (its verdict), even keeping its name.
    tampered(
        &files[2],
        |b| {
            Some(
                String::from_utf8_lossy(b)
                    .replace("pass: restored", "pass: RESTORED")
                    .into_bytes(),
            )
        },
        || {
            expect_caught(&world, "0000000003.json", "changed after it was written");
            let check = world.dr(&["check", "--only", "evidence.chain", "--format", "json"]);
            assert_eq!(
                check.json()["checks"][0]["status"],
                "fail",
                "{}",
                check.stdout
            );
        },
    );
    // A report edited.
    let report = world
        .storage_dir()
        .join(record_json(&files[2])["report_key"].as_str().unwrap());
    tampered(
        &report,
        |b| {
            Some(
                String::from_utf8_lossy(b)
                    .replacen("\"ok\": true", "\"ok\": false", 1)
                    .into_bytes(),
            )
        },
        || expect_caught(&world, "0000000003.json", "was changed"),
    );
    // A report removed.
    tampered(
        &report,
        |_| None,
        || expect_caught(&world, "0000000003.json", "missing"),
    );
    // A record removed from the middle, and the newest one.
    tampered(
        &files[1],
        |_| None,
        || expect_caught(&world, "0000000003.json", "record 2 is missing"),
    );
    tampered(
        &files[5],
        |_| None,
        || expect_caught(&world, "head.json", "records at the end were removed"),
    );
    // Two records reordered: contents swapped under their names.
    let (a, b) = (
        std::fs::read(&files[3]).unwrap(),
        std::fs::read(&files[4]).unwrap(),
    );
    std::fs::write(&files[3], &b).unwrap();
    std::fs::write(&files[4], &a).unwrap();
    expect_caught(&world, "0000000004.json", "reordered");
    std::fs::write(&files[3], &a).unwrap();
    std::fs::write(&files[4], &b).unwrap();
    // A second record slipped in beside record 4 (a fork made by hand).
    let fork = log_dir(&world).join("0000000004-0123456789abcdef.json");
    std::fs::copy(&files[3], &fork).unwrap();
    expect_caught(&world, "0000000004-0123", "not named like a record");
    std::fs::remove_file(&fork).unwrap();
    let other = world.tmp_dir().join("other.pem");
    let run = world.dr(&[
        "evidence",
        "keygen",
        "--output",
        other.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let other_public = run.json()["public_key"].as_str().unwrap().to_string();
    // A wrong public key is caught on every record.
    let run = verify(&world, &["--public-key", &other_public]);
    run.expect_code(1);
    let problems = run.json()["problems"].as_array().unwrap().clone();
    assert!(
        problems
            .iter()
            .filter(|p| p["problem"]
                .as_str()
                .unwrap()
                .contains("not by the trusted key"))
            .count()
            == 6,
        "{problems:#?}"
    );
    // Everything put back: it verifies again, with the right key given explicitly.
    verify(&world, &["--public-key", &public]).expect_code(0);
}

#[test]
fn concurrent_runs_append_without_forking_the_chain() {
    let (_pg, world, _) = signed_world();
    world.backup();
    let children: Vec<_> = (0..4)
        .map(|_| world.spawn(&["prune", "--dry-run"]))
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let run = verify(&world, &[]);
    run.expect_code(0);
    assert_eq!(run.json()["records"], 5, "{}", run.stdout);
    assert_eq!(records(&world).len(), 5, "no withdrawn record left behind");
}

#[test]
fn without_a_key_records_are_chained_unsigned_and_check_says_so() {
    let (_pg, world) = support::sample_world("");
    // A storage never set up gets no record: a failed first backup leaves nothing behind.
    let cfg = std::fs::read_to_string(world.config_path()).unwrap();
    let unreachable = cfg.replace(
        "url_env = \"DR_TEST_PG_URL\"",
        "url = \"postgres://nobody@127.0.0.1:1/app\"",
    );
    world.write_config(&unreachable);
    world.dr(&["backup"]).expect_code(1);
    assert!(
        world.storage_files().is_empty(),
        "{:?}",
        world.storage_files()
    );
    world.write_config(&cfg);
    world.backup();
    world.dr(&["validate"]).expect_code(0);
    let run = verify(&world, &[]);
    run.expect_code(0);
    let doc = run.json();
    assert_eq!(doc["records"], 2);
    assert_eq!(doc["unsigned"], 2);
    assert!(
        doc["warnings"][0].as_str().unwrap().contains("unsigned"),
        "{doc}"
    );
    let check = world.dr(&["check", "--only", "evidence.chain", "--format", "json"]);
    let row = &check.json()["checks"][0];
    assert_eq!(row["status"], "warn", "{row}");
    assert!(
        row["message"].as_str().unwrap().contains("unsigned"),
        "{row}"
    );
    // Even unsigned, the chain catches an edit.
    let files = records(&world);
    tampered(
        &files[0],
        |b| {
            Some(
                String::from_utf8_lossy(b)
                    .replace("\"ok\": true", "\"ok\": false")
                    .into_bytes(),
            )
        },
        || expect_caught(&world, "0000000001.json", "changed after it was written"),
    );
    // A failed run is recorded too, with its error.
    world.write_config(&unreachable);
    world.dr(&["backup"]).expect_code(1);
    let last = record_json(records(&world).last().unwrap());
    assert_eq!(last["ok"], false, "{last}");
    assert_eq!(last["exit_code"], 1, "{last}");
    assert!(last["summary"].as_str().unwrap().contains("main"), "{last}");
}

/// Headless Chromium from Debian, or a failure naming the package.
fn chromium() -> PathBuf {
    support::which("chromium").expect(
        "chromium not found; hint: apt-get install chromium (scripts/install-test-deps does)",
    )
}

fn chromium_run(args: &[&str], url: &str) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .unwrap()
}

#[test]
fn the_html_export_renders_in_chromium_with_charts_and_matches_the_json() {
    let (_pg, world, public) = signed_world();
    world.backup();
    for _ in 0..3 {
        world.dr(&["drill", "--backup-id", "latest"]).expect_code(0);
        // A drill's id has whole seconds: two in one second would share one report.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    world.dr(&["prune"]).expect_code(0);
    let dir = world.tmp_dir();
    let (json_path, html_path) = (dir.join("evidence.json"), dir.join("evidence.html"));
    let run = world.dr(&[
        "evidence",
        "export",
        "--since",
        "90d",
        "--format",
        "json",
        "--output",
        json_path.to_str().unwrap(),
    ]);
    run.expect_code(0);
    assert!(run.stdout.contains("verifies"), "{}", run.stdout);
    world
        .dr(&[
            "evidence",
            "export",
            "--since",
            "90d",
            "--format",
            "html",
            "--output",
            html_path.to_str().unwrap(),
        ])
        .expect_code(0);
    let export: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(export["ok"], true);
    assert_eq!(export["public_key"], public.as_str());
    assert_eq!(export["chain"]["records"], 5);
    let target = &export["targets"][0];
    assert_eq!(target["target"], "main");
    let drills = target["drills"].as_array().unwrap();
    assert_eq!(drills.len(), 3);
    // The page is self-contained: nothing to fetch.
    let html = std::fs::read_to_string(&html_path).unwrap();
    for remote in ["http://", "https://", "<script src", "<link"] {
        let outside = html.replace("http://www.w3.org/2000/svg", "");
        assert!(!outside.contains(remote), "the page loads {remote}");
    }

    let url = format!("file://{}", html_path.display());
    let dom = chromium_run(&["--dump-dom"], &url);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    assert!(
        dom.contains("Recovery evidence"),
        "rendered: {}",
        &dom[..dom.len().min(500)]
    );
    // Four charts per target, each with its points.
    assert_eq!(
        dom.matches("class=\"chart\"").count(),
        4,
        "charts in the DOM"
    );
    let measured = dom.matches("data-series=\"measured\"").count();
    assert_eq!(
        measured,
        drills.iter().filter(|d| d["rto_ms"].is_u64()).count()
    );
    let predicted = dom.matches("data-series=\"predicted\"").count();
    assert_eq!(
        predicted,
        drills
            .iter()
            .filter(|d| d["predicted_rto_ms"].is_u64())
            .count()
    );
    assert!(
        predicted >= 2,
        "the second and third drills were predicted: {drills:#?}"
    );
    // The numbers of every drill row are the JSON's.
    for d in drills {
        let seq = d["seq"].as_u64().unwrap();
        let start = dom
            .find(&format!("class=\"drill\" data-seq=\"{seq}\""))
            .expect("a row per drill");
        let row = &dom[start..start + dom[start..].find("</tr>").unwrap()];
        for field in [
            "rto_ms",
            "predicted_rto_ms",
            "prediction_error_pct",
            "rto_objective_ms",
            "rpo_ms",
        ] {
            match d[field].as_i64() {
                Some(v) => assert!(
                    row.contains(&format!("data-field=\"{field}\" data-value=\"{v}\"")),
                    "drill {seq} {field} = {v} not in {row}"
                ),
                None => assert!(
                    !row.contains(&format!("data-field=\"{field}\" data-value")),
                    "{row}"
                ),
            }
        }
    }
    for field in ["records", "signed", "unsigned"] {
        let v = export["chain"][field].as_u64().unwrap();
        assert!(
            dom.contains(&format!("data-field=\"chain.{field}\" data-value=\"{v}\"")),
            "chain.{field}"
        );
    }
    assert!(dom.contains(&public), "the public key is on the page");
    assert!(dom.contains("data-ok=\"true\""));

    // A screenshot: the page paints (a PNG of the window's size, not a blank one).
    let shot = dir.join("evidence.png");
    let out = chromium_run(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000",
            "--hide-scrollbars",
        ],
        &url,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        png.len() > 30_000,
        "a painted page, not a blank one: {} bytes",
        png.len()
    );
    if let Ok(dest) = std::env::var("DR_EVIDENCE_SCREENSHOT") {
        std::fs::copy(&shot, dest).unwrap();
    }
}

#[test]
fn the_predicted_rto_after_two_drills_is_within_30_percent_of_the_third() {
    let (pg, world) = support::sample_world("");
    // Enough rows that restoring them, not starting processes, is most of the time.
    pg.psql(
        "app",
        "CREATE TABLE public.big AS SELECT i AS id, md5(i::text) AS a, md5((i * 7)::text) AS b FROM generate_series(1, 400000) i",
    );
    world.backup();
    let check = world.dr(&["check", "--only", "rto.predicted", "--format", "json"]);
    let row = &check.json()["checks"][0];
    assert_eq!(row["status"], "warn");
    assert!(
        row["message"].as_str().unwrap().contains("not measured"),
        "{row}"
    );

    let drill = || {
        // A drill's id has whole seconds: two in one second would share one report.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let run = world.dr(&["drill", "--backup-id", "latest", "--format", "json"]);
        run.expect_code(0);
        run.json()
    };
    let first = drill();
    assert!(
        first["predicted_rto_ms"].is_null(),
        "nothing to predict from: {first}"
    );
    assert!(first["restored_bytes"].as_u64().unwrap() > 0);
    let second = drill();
    assert!(second["predicted_rto_ms"].is_u64(), "{second}");
    let third = drill();
    let predicted = third["predicted_rto_ms"].as_u64().unwrap() as f64;
    let measured = third["rto_ms"].as_u64().unwrap() as f64;
    let error = (predicted - measured).abs() / measured;
    eprintln!(
        "drills measured {} ms and {} ms; the third: predicted {predicted} ms, measured {measured} ms, error {:.0}%",
        first["rto_ms"], second["rto_ms"], error * 100.0
    );
    assert!(
        error <= 0.30,
        "predicted {predicted} ms, measured {measured} ms"
    );
    assert_eq!(
        third["prediction_error_pct"].as_i64().unwrap(),
        ((predicted - measured) * 100.0 / measured).round() as i64
    );
    // The prediction is shown after the drill, and kept in the evidence.
    let table = world.dr(&["drill", "--backup-id", "latest"]);
    assert!(
        table.stdout.contains("predicted RTO (from earlier drills)"),
        "{}",
        table.stdout
    );
    let last = record_json(records(&world).last().unwrap());
    assert!(last["figures"]["prediction_error_pct"].is_i64(), "{last}");
    // dr check predicts a restore of the newest backup, against the 10 minute objective.
    let check = world.dr(&["check", "--only", "rto.predicted", "--format", "json"]);
    let row = &check.json()["checks"][0];
    assert_eq!(row["status"], "pass", "{row}");
    assert!(
        row["message"]
            .as_str()
            .unwrap()
            .contains("would take about"),
        "{row}"
    );
    // An objective below the prediction fails, naming the fix.
    let cfg = std::fs::read_to_string(world.config_path()).unwrap();
    world.write_config(&cfg.replace("rto = \"10m\"", "rto = \"1ms\""));
    let check = world.dr(&["check", "--only", "rto.predicted", "--format", "json"]);
    let row = &check.json()["checks"][0];
    assert_eq!(row["status"], "fail", "{row}");
    assert!(row["message"].as_str().unwrap().contains("--jobs"), "{row}");
}

#[test]
fn on_s3_the_chain_verifies_concurrent_appends_do_not_fork_and_edits_are_caught() {
    let server = support::s3::S3Server::start();
    let pg = PgCluster::start();
    pg.create_db("app");
    support::load_sample(&pg, "app");
    let mut world = World::new();
    world.env.extend(server.env());
    world.set_env("DR_TEST_PG_URL", &pg.superuser_url("app"));
    world.write_config(&format!(
        "[objectives]\nrpo = \"1h\"\nrto = \"10m\"\n\n{}\n\n[retention]\nkeep_last = 2\n\n[[postgres]]\nname = \"main\"\nurl_env = \"DR_TEST_PG_URL\"\n\n[evidence]\nsigning_key_file = \"evidence.pem\"\n",
        server.config_toml("team/prod")
    ));
    let key = world.dir.path().join("evidence.pem");
    world
        .dr(&["evidence", "keygen", "--output", key.to_str().unwrap()])
        .expect_code(0);
    world.backup();
    let children: Vec<_> = (0..6)
        .map(|_| world.spawn(&["prune", "--dry-run"]))
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let run = verify(&world, &[]);
    run.expect_code(0);
    let doc = run.json();
    assert_eq!(doc["records"], 7, "{doc}");
    assert_eq!(doc["signed"], 7, "{doc}");
    let log = server.object_path("team/prod/evidence/log");
    let mut files = support::files_below(&log);
    files.sort();
    assert_eq!(
        files.len(),
        7,
        "no withdrawn record left in the bucket: {files:?}"
    );
    tampered(
        &files[1],
        |b| {
            Some(
                String::from_utf8_lossy(b)
                    .replace("\"ok\": true", "\"ok\": false")
                    .into_bytes(),
            )
        },
        || expect_caught(&world, "0000000002.json", "changed after it was written"),
    );
    verify(&world, &[]).expect_code(0);
}

/// A point-in-time drill restores a base backup and the WAL archived since: both count
/// in what it restored, and `rto.predicted` predicts the restore of the newest base backup
/// plus all WAL archived since.
#[test]
fn point_in_time_drills_count_the_wal_and_predict_the_restore_of_base_and_wal() {
    let (pg, world) = support::pitr::cluster();
    support::pitr::base_backup(&world);
    support::pitr::write_rows(&pg, 20, "evidence");
    let segment = support::wal::switch_wal(&pg);
    support::wal::wait_archived(&pg, &segment);
    let drill = || {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let run = world.dr(&[
            "drill",
            "--pitr",
            "--target",
            "main",
            "--to-latest",
            "--format",
            "json",
        ]);
        run.expect_code(0);
        run.json()
    };
    let first = drill();
    let base: serde_json::Value = world.dr(&["list", "--format", "json"]).json()["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["method"] == "physical")
        .unwrap()
        .clone();
    let base_bytes = base["size_bytes"].as_u64().unwrap();
    let restored = first["restored_bytes"].as_u64().unwrap();
    assert!(
        restored > base_bytes,
        "the WAL counts: {restored} restored, base backup {base_bytes}"
    );
    let second = drill();
    assert!(second["predicted_rto_ms"].is_u64(), "{second}");
    assert!(second["prediction_error_pct"].is_i64(), "{second}");
    let check = world.dr(&["check", "--only", "rto.predicted", "--format", "json"]);
    let row = &check.json()["checks"][0];
    assert_eq!(row["status"], "pass", "{row}");
    let message = row["message"].as_str().unwrap();
    assert!(
        message.contains("base backup") && message.contains("WAL archived since"),
        "{row}"
    );
}
