//! `[[notify]]` sinks, heartbeats, `dr check --notify`, `dr notify test` and
//! `--metrics-file`, against a real HTTP server on loopback that records every request,
//! real PostgreSQL, `promtool` and a JSON Schema validator.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::http::{HttpServer, Request};
use support::{Run, World, SUPERUSER_PASSWORD};

const WEBHOOK_TOKEN: &str = "wh-Secret-Token-1";
const SLACK_TOKEN: &str = "slack-Secret-Token-2";
const PD_KEY: &str = "pd-Routing-Key-3";
const HEARTBEAT_TOKEN: &str = "hb-Secret-Uuid-4";

/// Four sinks, one of each kind, all on `server`; the webhook and heartbeat URLs and the
/// PagerDuty key come from the environment ([`sink_env`]).
fn four_sinks(server: &HttpServer) -> String {
    format!(
        r#"
[[notify]]
name = "ops-webhook"
kind = "webhook"
url_env = "DR_TEST_WEBHOOK_URL"

[[notify]]
kind = "slack"
url = "{}"

[[notify]]
kind = "pagerduty"
url = "{}"
routing_key_env = "DR_TEST_PD_KEY"

[[notify]]
kind = "heartbeat"
url_env = "DR_TEST_HEARTBEAT_URL"
events = ["backup"]
"#,
        server.url(&format!("/services/T0/B0/{SLACK_TOKEN}")),
        server.url("/v2/enqueue"),
    )
}

fn sink_env(world: &mut World, server: &HttpServer) {
    world.env.push((
        "DR_TEST_WEBHOOK_URL".into(),
        server.url(&format!("/hooks/{WEBHOOK_TOKEN}")),
    ));
    world.env.push((
        "DR_TEST_HEARTBEAT_URL".into(),
        server.url(&format!("/ping/{HEARTBEAT_TOKEN}")),
    ));
    world.env.push(("DR_TEST_PD_KEY".into(), PD_KEY.into()));
}

/// Runs `dr`, killing it (and failing the test) when it outlives `limit`.
fn dr_within(world: &World, args: &[&str], limit: Duration) -> Run {
    let started = Instant::now();
    let mut child = world.spawn(args);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "dr {args:?} still running after {limit:?}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

fn dr(world: &World, args: &[&str]) -> Run {
    dr_within(world, args, Duration::from_secs(120))
}

#[track_caller]
fn assert_no_secret(text: &str) {
    for secret in [
        WEBHOOK_TOKEN,
        SLACK_TOKEN,
        PD_KEY,
        HEARTBEAT_TOKEN,
        SUPERUSER_PASSWORD,
    ] {
        assert!(
            !text.contains(secret),
            "secret {secret:?} leaked into:\n{text}"
        );
    }
}

/// Validates a webhook document against schemas/notify-webhook.v1.json with Python's
/// `jsonschema` (an independent implementation), formats included.
#[track_caller]
fn assert_matches_schema(doc: &Value) {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/notify-webhook.v1.json");
    let script = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
v = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
errors = [f"{list(e.path)}: {e.message}" for e in v.iter_errors(json.load(sys.stdin))]
print("\n".join(errors))
sys.exit(1 if errors else 0)
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .arg(&schema)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with jsonschema: run scripts/install-test-deps");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), doc.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "webhook document does not match the schema:\n{}{}\n{doc:#}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `promtool check metrics` accepts the file (exit 0: no parse error, no lint).
#[track_caller]
fn assert_promtool_accepts(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "promtool not installed: run scripts/install-test-deps (Debian package prometheus)",
        );
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool rejects {}:\n{}{}\n{text}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the one sample of `series` (name and labels, exactly as written).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn paths(requests: &[Request]) -> Vec<String> {
    requests.iter().map(|r| r.path.clone()).collect()
}

#[test]
fn a_failed_backup_tells_every_sink_and_the_recovery_closes_the_incident() {
    let server = HttpServer::start();
    let (pg, mut world) = support::sample_world(&four_sinks(&server));
    sink_env(&mut world, &server);
    let prom = world.dir.path().join("backup.prom");
    let prom_arg = prom.to_str().unwrap();
    let hb = format!("/ping/{HEARTBEAT_TOKEN}");

    // A success with no history bothers nobody; the heartbeat hears start, then success.
    let ok = dr(
        &world,
        &["backup", "--format", "json", "--metrics-file", prom_arg],
    );
    ok.expect_code(0);
    assert_no_secret(&ok.all());
    let first = ok.json()["backups"][0].clone();
    assert!(server.requests_to("/hooks").is_empty());
    assert!(server.requests_to("/services").is_empty());
    assert!(server.requests_to("/v2").is_empty());
    assert_eq!(
        paths(&server.requests_to("/ping")),
        [format!("{hb}/start"), hb.clone()]
    );
    server.clear();

    // The server is stopped: the backup fails for real, and every sink hears it once.
    pg.stop_server();
    let failed = dr(
        &world,
        &[
            "-vv",
            "backup",
            "--format",
            "json",
            "--metrics-file",
            prom_arg,
        ],
    );
    failed.expect_code(1);
    assert_no_secret(&failed.all());
    let report = failed.json();
    assert_eq!(report["ok"], false);
    assert_eq!(report["failures"][0]["target"], "main");
    assert_eq!(report["warnings"], serde_json::json!([]), "{report:#}");
    let delivered: Vec<&Value> = report["notifications"].as_array().unwrap().iter().collect();
    assert!(
        delivered.iter().all(|d| d["delivered"] == true),
        "{report:#}"
    );

    let hooks = server.requests_to(&format!("/hooks/{WEBHOOK_TOKEN}"));
    assert_eq!(hooks.len(), 1, "{:?}", paths(&server.requests()));
    assert_eq!(hooks[0].method, "POST");
    assert_eq!(hooks[0].header("content-type"), Some("application/json"));
    let doc = hooks[0].json();
    assert_matches_schema(&doc);
    assert_eq!(doc["event"], "backup");
    assert_eq!(doc["status"], "failure");
    assert_eq!(doc["previous_status"], "success");
    assert_eq!(doc["target"], "main");
    assert_eq!(doc["dedup_key"], "dr/main/backup");
    assert!(
        doc["message"].as_str().unwrap().contains("127.0.0.1"),
        "{doc}"
    );

    let slack = server.requests_to("/services");
    assert_eq!(slack.len(), 1);
    let text = slack[0].json()["text"].as_str().unwrap().to_string();
    assert!(text.contains("*dr backup of main FAILED on "), "{text}");

    let pd = server.requests_to("/v2/enqueue");
    assert_eq!(pd.len(), 1);
    let trigger = pd[0].json();
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["routing_key"], PD_KEY);
    assert_eq!(trigger["dedup_key"], "dr/main/backup");
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(trigger["payload"]["component"], "main");

    let pings = server.requests_to("/ping");
    assert_eq!(paths(&pings), [format!("{hb}/start"), format!("{hb}/fail")]);
    assert!(pings[1].text().contains("FAILED"), "{}", pings[1].text());

    for r in server.requests() {
        assert!(!String::from_utf8_lossy(&r.body).contains(SUPERUSER_PASSWORD));
    }

    // The metrics still say when the last success was, and that this run failed.
    let metrics = std::fs::read_to_string(&prom).unwrap();
    assert_promtool_accepts(&prom);
    let labels = r#"{target="main",operation="backup"}"#;
    let last_success = sample(
        &metrics,
        &format!("dr_last_success_timestamp_seconds{labels}"),
    )
    .unwrap_or_else(|| panic!("{metrics}"));
    let first_finished =
        chrono::DateTime::parse_from_rfc3339(first["finished_at"].as_str().unwrap())
            .unwrap()
            .timestamp() as f64;
    assert!(
        (last_success - first_finished).abs() < 60.0,
        "{last_success} vs {first_finished}"
    );
    assert_eq!(
        sample(&metrics, &format!("dr_last_run_success{labels}")),
        Some(0.0)
    );
    assert_eq!(
        sample(&metrics, r#"dr_backup_size_bytes{target="main"}"#),
        first["size_bytes"].as_f64()
    );
    assert_eq!(
        sample(&metrics, r#"dr_rpo_objective_seconds{target="main"}"#),
        Some(3600.0)
    );
    server.clear();

    // Back up again: the incident resolves under the same key; the webhook says recovered.
    pg.start_server();
    let recovered = dr(
        &world,
        &["backup", "--format", "json", "--metrics-file", prom_arg],
    );
    recovered.expect_code(0);
    assert_no_secret(&recovered.all());
    let resolve = server.requests_to("/v2/enqueue");
    assert_eq!(resolve.len(), 1);
    assert_eq!(resolve[0].json()["event_action"], "resolve");
    assert_eq!(resolve[0].json()["dedup_key"], trigger["dedup_key"]);
    let doc = server.requests_to("/hooks")[0].json();
    assert_matches_schema(&doc);
    assert_eq!(doc["status"], "recovered");
    assert_eq!(doc["previous_status"], "failure");
    assert_eq!(doc["backup_id"], recovered.json()["backups"][0]["id"]);
    assert!(doc["size_bytes"].as_u64().unwrap() > 0);
    assert!(server.requests_to("/services")[0].json()["text"]
        .as_str()
        .unwrap()
        .contains("recovered"));
    assert_eq!(
        paths(&server.requests_to("/ping")),
        [format!("{hb}/start"), hb.clone()]
    );
    let metrics = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(
        sample(&metrics, &format!("dr_last_run_success{labels}")),
        Some(1.0)
    );
    assert!(
        sample(
            &metrics,
            &format!("dr_last_success_timestamp_seconds{labels}")
        )
        .unwrap()
            > last_success
    );
    server.clear();

    // Drill and prune write their metrics too; the heartbeat watches backups only.
    let drill_prom = world.dir.path().join("drill.prom");
    dr(
        &world,
        &["drill", "--metrics-file", drill_prom.to_str().unwrap()],
    )
    .expect_code(0);
    assert_promtool_accepts(&drill_prom);
    let text = std::fs::read_to_string(&drill_prom).unwrap();
    assert!(
        sample(&text, r#"dr_drill_rto_seconds{target="main"}"#).unwrap() > 0.0,
        "{text}"
    );
    assert!(
        sample(&text, r#"dr_drill_rpo_seconds{target="main"}"#).is_some(),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"dr_last_run_success{target="main",operation="drill"}"#
        ),
        Some(1.0)
    );
    let prune_prom = world.dir.path().join("prune.prom");
    dr(
        &world,
        &["prune", "--metrics-file", prune_prom.to_str().unwrap()],
    )
    .expect_code(0);
    assert_promtool_accepts(&prune_prom);
    assert!(std::fs::read_to_string(&prune_prom)
        .unwrap()
        .contains(r#"dr_last_success_timestamp_seconds{target="main",operation="prune"}"#));
    // A first drill and a prune that succeed are not news (default `on`); no heartbeat.
    assert!(
        server.requests().is_empty(),
        "{:?}",
        paths(&server.requests())
    );

    // The status kept in storage holds no secret either.
    let status =
        std::fs::read_to_string(world.storage_dir().join("status/backup/main.json")).unwrap();
    assert!(status.contains("\"status\": \"success\""), "{status}");
    assert_no_secret(&status);
}

#[test]
fn a_hanging_or_refusing_sink_delays_nothing_past_its_timeout_and_changes_no_exit_code() {
    let server = HttpServer::start();
    server.hang("/hang");
    server.reply("/busy", 503, "overloaded");
    server.reply("/wrong", 404, "no_service");
    let closed = format!("http://127.0.0.1:{}/gone", support::free_port());
    let sinks = format!(
        r#"
[[notify]]
name = "hang"
kind = "webhook"
url = "{}"
on = ["failure", "success"]
timeout = "1s"
retries = 1

[[notify]]
name = "busy"
kind = "slack"
url = "{}"
on = ["failure", "success"]
timeout = "1s"
retries = 2

[[notify]]
name = "gone"
kind = "webhook"
url = "{closed}"
on = ["failure", "success"]
retries = 0

[[notify]]
name = "wrong"
kind = "pagerduty"
url = "{}"
routing_key = "{PD_KEY}"
on = ["failure", "success"]
"#,
        server.url("/hang"),
        server.url("/busy"),
        server.url("/wrong"),
    );
    let (_pg, mut world) = support::sample_world(&sinks);

    let run = dr(&world, &["backup", "--format", "json"]);
    run.expect_code(0);
    assert_no_secret(&run.all());
    let report = run.json();
    let by_sink = |name: &str| -> Value {
        report["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["sink"] == name)
            .unwrap_or_else(|| panic!("no delivery for {name}: {report:#}"))
            .clone()
    };
    let hang = by_sink("hang");
    assert_eq!(hang["delivered"], false);
    assert_eq!(hang["attempts"], 2, "{hang}");
    let hang_ms = hang["duration_ms"].as_u64().unwrap();
    // Two attempts of 1 s and one pause of 0.25 s; never the server's forever.
    assert!((2000..4500).contains(&hang_ms), "{hang}");
    assert!(
        hang["message"]
            .as_str()
            .unwrap()
            .contains("no answer within 1s"),
        "{hang}"
    );
    assert_eq!(server.requests_to("/hang").len(), 2);
    let busy = by_sink("busy");
    assert_eq!(
        (busy["delivered"].as_bool(), busy["attempts"].as_u64()),
        (Some(false), Some(3))
    );
    assert!(
        busy["message"]
            .as_str()
            .unwrap()
            .contains("HTTP 503: overloaded"),
        "{busy}"
    );
    let wrong = by_sink("wrong");
    assert_eq!(wrong["attempts"], 1, "a 404 is not retried: {wrong}");
    assert_eq!(wrong["action"], "resolve");
    assert!(
        wrong["message"]
            .as_str()
            .unwrap()
            .contains("HTTP 404: no_service"),
        "{wrong}"
    );
    let gone = by_sink("gone");
    assert_eq!(
        (gone["delivered"].as_bool(), gone["attempts"].as_u64()),
        (Some(false), Some(1))
    );
    assert_eq!(
        report["warnings"].as_array().unwrap().len(),
        4,
        "{report:#}"
    );
    assert!(
        run.stderr.contains(
            r#"notification to webhook sink "hang" (backup success) failed after 2 attempt(s)"#
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("the outcome of the backup is unchanged"),
        "{}",
        run.stderr
    );
    // The sinks were tried at once: the whole notification took about the slowest one.
    let backup_ms = report["backups"][0]["duration_ms"].as_u64().unwrap();
    assert!(
        run.elapsed < Duration::from_millis(backup_ms + hang_ms) + Duration::from_secs(5),
        "{:?} for a {backup_ms} ms backup",
        run.elapsed
    );

    // A backup that fails (nothing listens on the target's port) still exits 1.
    world.env.retain(|(k, _)| k != "DR_TEST_PG_URL");
    world.env.push((
        "DR_TEST_PG_URL".into(),
        format!(
            "postgres://postgres:{SUPERUSER_PASSWORD}@127.0.0.1:{}/app",
            support::free_port()
        ),
    ));
    let failed = dr_within(
        &world,
        &["backup", "--format", "json"],
        Duration::from_secs(30),
    );
    failed.expect_code(1);
    assert_no_secret(&failed.all());
    assert_eq!(failed.json()["warnings"].as_array().unwrap().len(), 4);
    assert_eq!(failed.json()["failures"][0]["target"], "main");
}

#[test]
fn check_notify_speaks_only_when_readiness_changes() {
    let server = HttpServer::start();
    let unreachable = format!("http://127.0.0.1:{}/x", support::free_port());
    let (pg, mut world) = support::sample_world(&format!(
        r#"
[[notify]]
name = "ops"
kind = "webhook"
url_env = "DR_TEST_WEBHOOK_URL"

[[notify]]
name = "backup-heartbeat"
kind = "heartbeat"
url = "{unreachable}"
events = ["backup"]
"#
    ));
    sink_env(&mut world, &server);
    let prom = world.dir.path().join("check.prom");
    let check = |world: &World| {
        dr(
            world,
            &[
                "check",
                "--notify",
                "--only",
                "pg.connect",
                "--only",
                "notify",
                "--format",
                "json",
                "--metrics-file",
                prom.to_str().unwrap(),
            ],
        )
    };
    let hooks = || server.requests_to("/hooks");

    // Ready, and no history: nothing to say. notify.sinks finds one sink down (not critical).
    let ready = check(&world);
    ready.expect_code(0);
    let json = ready.json();
    let sink_checks: Vec<&Value> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "notify.sinks")
        .collect();
    assert_eq!(sink_checks.len(), 2, "{json:#}");
    let ops = sink_checks.iter().find(|c| c["target"] == "ops").unwrap();
    assert_eq!(ops["status"], "pass", "{ops}");
    let down = sink_checks
        .iter()
        .find(|c| c["target"] == "backup-heartbeat")
        .unwrap();
    assert_eq!(
        (down["status"].as_str(), down["critical"].as_bool()),
        (Some("fail"), Some(false))
    );
    assert!(
        down["message"].as_str().unwrap().contains("cannot connect"),
        "{down}"
    );
    assert!(hooks().is_empty());
    assert_no_secret(&ready.all());
    assert!(server.requests().is_empty(), "notify.sinks sends nothing");
    assert_promtool_accepts(&prom);
    let metrics = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(sample(&metrics, "dr_ready"), Some(1.0), "{metrics}");
    let ready_at = sample(
        &metrics,
        r#"dr_last_success_timestamp_seconds{target="",operation="check"}"#,
    )
    .unwrap();
    assert!(ready_at > 0.0);

    // Not ready: one failure; still not ready: silence.
    pg.stop_server();
    check(&world).expect_code(1);
    assert_eq!(hooks().len(), 1);
    let doc = hooks()[0].json();
    assert_matches_schema(&doc);
    assert_eq!(
        (doc["event"].as_str(), doc["status"].as_str()),
        (Some("check"), Some("failure"))
    );
    assert_eq!(doc["target"], Value::Null);
    assert_eq!(doc["dedup_key"], "dr/check");
    assert!(
        doc["message"]
            .as_str()
            .unwrap()
            .contains("pg.connect [main]"),
        "{doc}"
    );
    let metrics = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(sample(&metrics, "dr_ready"), Some(0.0));
    assert_eq!(
        sample(
            &metrics,
            r#"dr_last_success_timestamp_seconds{target="",operation="check"}"#
        ),
        Some(ready_at),
        "the last success stays while not ready"
    );
    check(&world).expect_code(1);
    // Without --notify, dr check never notifies.
    dr(&world, &["check", "--only", "pg.connect"]).expect_code(1);
    assert_eq!(hooks().len(), 1);

    // Ready again: recovered, once.
    pg.start_server();
    check(&world).expect_code(0);
    check(&world).expect_code(0);
    assert_eq!(hooks().len(), 2);
    let doc = hooks()[1].json();
    assert_matches_schema(&doc);
    assert_eq!(
        (doc["status"].as_str(), doc["previous_status"].as_str()),
        (Some("recovered"), Some("failure"))
    );
    assert!(server.requests_to("/ping").is_empty());
}

#[test]
fn notify_test_reaches_every_sink_and_config_mistakes_are_named() {
    let server = HttpServer::start();
    let mut world = World::new();
    sink_env(&mut world, &server);
    let base = format!(
        "[storage]\nurl = \"file://{}\"\n",
        world.storage_dir().display()
    );
    world.write_config(&format!("{base}{}", four_sinks(&server)));

    let run = dr(&world, &["notify", "test", "--format", "json"]);
    run.expect_code(0);
    assert_no_secret(&run.all());
    assert_eq!(run.json()["ok"], true);
    let doc = server.requests_to("/hooks")[0].json();
    assert_matches_schema(&doc);
    assert_eq!(doc["event"], "test");
    let pd: Vec<Value> = server
        .requests_to("/v2")
        .iter()
        .map(Request::json)
        .collect();
    assert_eq!(pd.len(), 2);
    assert_eq!(
        (
            pd[0]["event_action"].as_str(),
            pd[1]["event_action"].as_str()
        ),
        (Some("trigger"), Some("resolve"))
    );
    assert_eq!(pd[0]["dedup_key"], pd[1]["dedup_key"]);
    assert_eq!(pd[0]["payload"]["severity"], "info");
    // The heartbeat gets /log: recorded by the monitor, its state unchanged.
    assert_eq!(
        paths(&server.requests_to("/ping")),
        [format!("/ping/{HEARTBEAT_TOKEN}/log")]
    );
    assert_eq!(server.requests_to("/services").len(), 1);

    // One sink refuses: exit 1, and the table says which and why, without its URL.
    server.reply("/services", 403, "invalid_token");
    server.clear();
    let table = dr(&world, &["notify", "test", "--sink", "slack"]);
    table.expect_code(1);
    assert_no_secret(&table.all());
    assert!(
        table
            .stdout
            .contains("NOT DELIVERED: slack (test): refused with HTTP 403: invalid_token"),
        "{}",
        table.stdout
    );
    assert_eq!(server.requests().len(), 1, "only the chosen sink");
    dr(&world, &["notify", "test", "--sink", "nope"]).expect_code(2);

    // Configuration mistakes: exit 2, the sink and the fix named, never the URL.
    for (sink, expected) in [
        ("kind = \"heartbeat\"\nurl = \"http://127.0.0.1:1/ping\"", "needs events"),
        ("kind = \"heartbeat\"\nurl = \"http://127.0.0.1:1/ping\"\nevents = [\"backup\"]\non = [\"failure\"]", "takes no `on`"),
        ("kind = \"pagerduty\"", "routing_key"),
        ("kind = \"webhook\"", "neither url nor url_env"),
        ("kind = \"webhook\"\nurl = \"hooks.example/wh-Secret-Token-1\"", "not an http(s) URL"),
        ("kind = \"webhook\"\nurl = \"http://127.0.0.1:1/\"\nevents = [\"backups\"]", "unknown variant"),
        ("kind = \"webhook\"\nurl = \"http://127.0.0.1:1/\"\ntimeout = \"5m\"", "timeout"),
    ] {
        world.write_config(&format!("{base}[[notify]]\n{sink}\n"));
        let run = dr(&world, &["notify", "test"]);
        run.expect_code(2);
        assert!(run.stderr.contains(expected), "{sink}: {}", run.stderr);
        assert_no_secret(&run.all());
    }
}

#[test]
fn the_metrics_file_is_never_seen_half_written() {
    let mut world = World::new();
    // A target, so the config check has something to protect; it is never contacted.
    world.write_config(&format!(
        "[storage]\nurl = \"file://{}\"\n\n[[postgres]]\nname = \"main\"\nurl = \"postgres://dr@127.0.0.1:1/app\"\n",
        world.storage_dir().display()
    ));
    world.env.clear();
    let dir = world.dir.path().join("textfile");
    std::fs::create_dir(&dir).unwrap();
    let prom = dir.join("dr.prom");
    let done = std::sync::atomic::AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(300);
    let (reads, codes) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut reads = 0;
            // The deadline keeps a failing writer loop from leaving this thread spinning.
            while !done.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
                if let Ok(text) = std::fs::read_to_string(&prom) {
                    reads += 1;
                    assert!(
                        text.ends_with("\n") && text.contains("dr_last_run_success{"),
                        "a reader saw a partial metrics file:\n{text}"
                    );
                }
            }
            reads
        });
        let codes: Vec<(i32, String)> = (0..15)
            .map(|_| {
                let out = world
                    .command(&[
                        "check",
                        "--only",
                        "config",
                        "--metrics-file",
                        prom.to_str().unwrap(),
                    ])
                    .output()
                    .unwrap();
                (
                    out.status.code().unwrap_or(-1),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            })
            .collect();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        (reader.join().unwrap(), codes)
    });
    assert!(codes.iter().all(|(code, _)| *code == 0), "{codes:?}");
    assert!(reads > 0);
    assert_promtool_accepts(&prom);
    // Only the file itself: no temporary file left behind.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["dr.prom"]);
    // A directory that does not exist is refused before anything runs.
    let run = dr(
        &world,
        &["check", "--metrics-file", "/nonexistent/dir/dr.prom"],
    );
    run.expect_code(2);
    assert!(run.stderr.contains("does not exist"), "{}", run.stderr);
}

#[test]
fn the_guide_alert_rule_fires_when_no_backup_succeeds_within_the_rpo() {
    let guide = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src/notifications.md"),
    )
    .unwrap();
    let section = &guide[guide
        .find("## Alert rule")
        .expect("docs/src/notifications.md has the alert rule")..];
    let start = section.find("```yaml\n").unwrap() + "```yaml\n".len();
    let rules = &section[start..start + section[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
    // The last success at time 0, never again; RPO one hour.
    std::fs::write(
        dir.path().join("test.yml"),
        r#"
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'dr_last_success_timestamp_seconds{target="main",operation="backup",instance="db1"}'
        values: '0+0x120'
      - series: 'dr_rpo_objective_seconds{target="main",instance="db1"}'
        values: '3600+0x120'
      - series: 'dr_ready{instance="db1"}'
        values: '1+0x120'
    alert_rule_test:
      - eval_time: 50m
        alertname: DrNoBackupWithinRPO
        exp_alerts: []
      - eval_time: 75m
        alertname: DrNoBackupWithinRPO
        exp_alerts:
          - exp_labels: {severity: critical, target: main, operation: backup, instance: db1}
            exp_annotations:
              summary: "no successful backup of main within the RPO"
              description: "the last successful backup of main is 1h 15m 0s old; run `dr backup --target main` and read its error"
      - eval_time: 75m
        alertname: DrBackupMetricsMissing
        exp_alerts: []
      - eval_time: 75m
        alertname: DrNotReady
        exp_alerts: []
"#,
    )
    .unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules", "test.yml"])
        .current_dir(dir.path())
        .output()
        .expect(
            "promtool not installed: run scripts/install-test-deps (Debian package prometheus)",
        );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A run for one target keeps the other targets' series in the metrics file: an alert on a
/// target must not stop firing because another target was backed up last (issue 28).
#[test]
fn a_metrics_file_keeps_the_series_of_targets_not_in_this_run() {
    let pg = support::PgCluster::start();
    pg.create_db("a");
    pg.create_db("b");
    let world = World::new();
    world.write_config(&format!(
        "[objectives]\nrpo = \"1h\"\nrto = \"10m\"\n\n[storage]\nurl = \"file://{}\"\n\n\
         [[postgres]]\nname = \"a\"\nurl = \"{}\"\n\n[[postgres]]\nname = \"b\"\nurl = \"{}\"\n\n\
         [[contacts]]\nname = \"On-Call\"\nrole = \"primary\"\nphone = \"+1-555-0100\"\n",
        world.storage_dir().display(),
        pg.url("postgres", SUPERUSER_PASSWORD, "a"),
        pg.url("postgres", SUPERUSER_PASSWORD, "b"),
    ));
    let metrics = world.dir.path().join("dr.prom");
    let path = metrics.to_str().unwrap();
    world
        .dr(&["backup", "--target", "a", "--metrics-file", path])
        .expect_code(0);
    world
        .dr(&["backup", "--target", "b", "--metrics-file", path])
        .expect_code(0);
    let text = std::fs::read_to_string(&metrics).unwrap();
    for target in ["a", "b"] {
        assert!(
            sample(
                &text,
                &format!("dr_last_run_success{{target=\"{target}\",operation=\"backup\"}}")
            ) == Some(1.0),
            "{target} missing:\n{text}"
        );
    }
    assert_promtool_accepts(&metrics);
}
