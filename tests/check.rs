//! `dr check` against real PostgreSQL and Redis: the readiness gate and its contracts.

mod support;

use support::OutputLimited;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use support::{PgCluster, RedisServer, World, SUPERUSER_PASSWORD};

fn config_for(world: &mut World, pg: &PgCluster, redis: &RedisServer) {
    world
        .env
        .push(("DR_TEST_PG_URL".into(), pg.superuser_url("postgres")));
    world.write_config(&format!(
        r#"
[objectives]
rpo = "1h"
rto = "30m"

[storage]
url = "file://{}"

[[postgres]]
name = "main"
url_env = "DR_TEST_PG_URL"

[[redis]]
name = "cache"
url = "{}"

[[contacts]]
name = "Ada"
role = "DBA"
phone = "+1-555-0101"
hours = "24/7"

[[vendors]]
name = "Hosting Co"
service = "managed PostgreSQL"
support_url = "https://support.example.test"
"#,
        world.storage_dir().display(),
        redis.url()
    ));
}

fn check_by_name<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {json}"))
}

#[test]
fn all_pass_is_ready_with_contract_json_shape() {
    let pg = PgCluster::start();
    let redis = RedisServer::start();
    let mut world = World::new();
    config_for(&mut world, &pg, &redis);
    let before = world.dr(&["check", "--format", "json"]);
    before.expect_code(1);
    assert_eq!(
        check_by_name(&before.json(), "backup.latest")["status"],
        "fail"
    );
    world.backup();
    let run = world.dr(&["check", "--format", "json"]);
    run.expect_code(0);
    let json = run.json();
    assert_eq!(json["ready"], true);
    assert_eq!(
        check_by_name(&json, "drill.recent")["status"],
        "warn",
        "no drill yet"
    );
    let checks = json["checks"].as_array().unwrap();
    for name in [
        "config",
        "contacts",
        "pg.connect",
        "pg.tools",
        "pg.privileges",
        "redis.connect",
        "redis.persistence",
        "storage.writable",
        "backup.latest",
        "backup.integrity",
        "runbooks",
    ] {
        let c = check_by_name(&json, name);
        assert_eq!(c["status"], "pass", "{c}");
        for key in [
            "name",
            "target",
            "status",
            "critical",
            "message",
            "duration_ms",
        ] {
            assert!(c.get(key).is_some(), "{key} missing in {c}");
        }
    }
    assert_eq!(check_by_name(&json, "pg.connect")["critical"], true);
    assert_eq!(check_by_name(&json, "redis.connect")["critical"], false);
    assert!(check_by_name(&json, "pg.connect")["message"]
        .as_str()
        .unwrap()
        .contains("PostgreSQL 1"));
    assert!(checks.len() >= 8);
    // `dr check --help` documents every check the engine runs.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_dr"))
        .args(["check", "--help"])
        .output_limited()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for c in checks {
        let name = c["name"].as_str().unwrap();
        assert!(
            help.contains(&format!("  {name} ")),
            "`dr check --help` does not document {name}"
        );
    }
    // The table format says the same; --strict turns the drill warning into exit 1.
    let table = world.dr(&["check"]);
    table.expect_code(0);
    world.dr(&["check", "--strict"]).expect_code(1);
    assert!(table.stdout.contains("READY: "), "{}", table.stdout);
    assert!(
        !table.stdout.contains('\u{1b}'),
        "no colour when not a terminal"
    );
}

#[test]
fn stopped_postgres_fails_critical_check_with_a_hint() {
    let pg = PgCluster::start();
    let redis = RedisServer::start();
    let mut world = World::new();
    config_for(&mut world, &pg, &redis);
    pg.stop_server();
    let run = world.dr(&["check", "--format", "json"]);
    run.expect_code(1);
    let json = run.json();
    assert_eq!(json["ready"], false);
    let c = check_by_name(&json, "pg.connect");
    assert_eq!(c["status"], "fail");
    let msg = c["message"].as_str().unwrap();
    assert!(msg.contains("hint:") && msg.contains("pg_isready"), "{msg}");
}

#[test]
fn stopped_redis_is_not_critical_unless_strict() {
    let pg = PgCluster::start();
    let mut redis = RedisServer::start();
    let mut world = World::new();
    config_for(&mut world, &pg, &redis);
    redis.stop();
    let run = world.dr(&[
        "check", "--only", "pg", "--only", "redis", "--format", "json",
    ]);
    run.expect_code(0);
    let c = check_by_name(&run.json(), "redis.connect").clone();
    assert_eq!(c["status"], "fail");
    assert_eq!(c["critical"], false);
    let strict = world.dr(&[
        "check", "--only", "pg", "--only", "redis", "--strict", "--format", "json",
    ]);
    strict.expect_code(1);
    assert_eq!(strict.json()["ready"], false);
}

#[test]
fn hung_server_fails_within_the_timeout() {
    // A listener that accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _holder = std::thread::spawn(move || {
        let mut held = vec![];
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let world = World::new();
    world.write_config(&format!(
        "[[postgres]]\nname = \"hung\"\nurl = \"postgres://u@127.0.0.1:{port}/db\"\n\n[[redis]]\nname = \"hungredis\"\nurl = \"redis://127.0.0.1:{port}\"\ncritical = true\n"
    ));
    let run = world.dr(&[
        "check",
        "--timeout",
        "2s",
        "--only",
        "pg.connect",
        "--only",
        "redis.connect",
        "--format",
        "json",
    ]);
    run.expect_code(1);
    assert!(
        run.elapsed < Duration::from_secs(8),
        "took {:?}",
        run.elapsed
    );
    for name in ["pg.connect", "redis.connect"] {
        let c = check_by_name(&run.json(), name).clone();
        assert_eq!(c["status"], "fail", "{c}");
        assert!(
            c["message"]
                .as_str()
                .unwrap()
                .contains("timed out after 2s"),
            "{c}"
        );
    }
}

#[test]
fn wrong_password_fails_and_is_never_printed() {
    let pg = PgCluster::start();
    let world = World::new();
    let secret = "Wrong-Pa55word-xyzzy";
    world.write_config(&format!(
        "[[postgres]]\nname = \"main\"\nurl = \"{}\"\n",
        pg.url("postgres", secret, "postgres")
    ));
    for format in ["json", "table", "junit", "prometheus"] {
        let mut cmd = world.command(&["-vv", "check", "--format", format]);
        cmd.env("RUST_LOG", "trace");
        let out = cmd.output_limited().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !all.contains(secret),
            "password leaked in {format} output:\n{all}"
        );
        assert!(!all.contains(SUPERUSER_PASSWORD));
        if format == "json" {
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let c = check_by_name(&json, "pg.connect");
            assert!(
                c["message"]
                    .as_str()
                    .unwrap()
                    .contains("password authentication failed"),
                "{c}"
            );
        }
    }
}

#[test]
fn unreadable_table_fails_privileges_naming_it() {
    let pg = PgCluster::start();
    pg.psql(
        "postgres",
        "CREATE ROLE reader LOGIN PASSWORD 'reader-pw'; CREATE TABLE public.open_t (i int); CREATE TABLE public.secret_t (i int); GRANT SELECT ON public.open_t TO reader;",
    );
    let world = World::new();
    world.write_config(&format!(
        "[[postgres]]\nname = \"main\"\nurl = \"{}\"\n",
        pg.url("reader", "reader-pw", "postgres")
    ));
    let run = world.dr(&["check", "--only", "pg.privileges", "--format", "json"]);
    run.expect_code(1);
    let c = check_by_name(&run.json(), "pg.privileges").clone();
    assert_eq!(c["status"], "fail");
    let msg = c["message"].as_str().unwrap();
    assert!(msg.contains("public.secret_t"), "{msg}");
    assert!(!msg.contains("open_t"), "{msg}");
    assert!(msg.contains("GRANT"), "{msg}");
    pg.psql("postgres", "GRANT pg_read_all_data TO reader");
    world
        .dr(&["check", "--only", "pg.privileges"])
        .expect_code(0);
}

#[test]
fn junit_and_prometheus_outputs_pass_real_parsers() {
    let pg = PgCluster::start();
    let mut redis = RedisServer::start();
    let mut world = World::new();
    config_for(&mut world, &pg, &redis);
    world.backup();
    redis.stop(); // one failing (non-critical) check, so a failure element exists
    let junit = world.dr(&["check", "--format", "junit"]);
    junit.expect_code(0);
    let path = world.dir.path().join("report.xml");
    std::fs::write(&path, &junit.stdout).unwrap();
    let script = r#"
import sys
from junitparser import JUnitXml, Failure
xml = JUnitXml.fromfile(sys.argv[1])
cases = [c for suite in xml for c in suite]
failed = [c.name for c in cases if any(isinstance(r, Failure) for r in c.result)]
print(len(cases), ",".join(sorted(failed)))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output_limited()
        .expect("python3");
    assert!(
        out.status.success(),
        "junitparser failed (pip install junitparser): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let (count, failed) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    assert!(count.parse::<usize>().unwrap() >= 8, "{text}");
    assert!(failed.contains("redis.connect [cache]"), "{text}");
    assert!(!failed.contains("pg.connect"), "{text}");

    let prom = world.dr(&["check", "--format", "prometheus"]);
    prom.expect_code(0);
    assert!(prom.stdout.contains("dr_ready 1"), "{}", prom.stdout);
    assert!(
        prom.stdout.contains(
            "dr_check_status{check=\"redis.connect\",target=\"cache\",critical=\"false\"} 2"
        ),
        "{}",
        prom.stdout
    );
    let promtool = support::which("promtool")
        .or_else(|| std::env::var_os("PROMTOOL").map(Into::into))
        .expect("promtool not found: install Debian's prometheus package or set PROMTOOL (.ci/run does)");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(&prom.stdout);
    assert!(
        child.0.success(),
        "promtool rejected the metrics: {}",
        child.1
    );
    child.1.clear();
}

trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &str) -> (std::process::ExitStatus, String);
}

impl OutputWithStdin for Command {
    fn output_with_stdin(&mut self, input: &str) -> (std::process::ExitStatus, String) {
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status,
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

#[test]
fn config_errors_exit_2_naming_the_key() {
    let world = World::new();
    world.write_config("[objectives]\nrpo = \"1h\"\nrto_typo = \"30m\"\n");
    let run = world.dr(&["check"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("rto_typo") && run.stderr.contains("line 3"),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stderr.trim().lines().count(),
        1,
        "one line: {}",
        run.stderr
    );

    world.write_config("[objectives]\nrpo = \"an hour\"\n");
    let run = world.dr(&["check"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("rpo") && run.stderr.contains("invalid duration"),
        "{}",
        run.stderr
    );

    world.write_config("[[postgres]]\nname = \"a\"\nurl = \"postgres://x@h/d\"\n[[postgres]]\nname = \"a\"\nurl = \"postgres://x@h/d\"\n");
    let run = world.dr(&["check"]);
    run.expect_code(2);
    assert!(run.stderr.contains("\"a\" is used twice"), "{}", run.stderr);

    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_dr"))
        .args(["--config", "/nonexistent/dr.toml", "check"])
        .output_limited()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("/nonexistent/dr.toml") && err.contains("hint:"),
        "{err}"
    );
}

#[test]
fn example_config_loads_and_config_env_lookup_works() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/dr.toml.example");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dr"))
        .args(["contacts", "--format", "json"])
        .env("DR_CONFIG", example)
        .output_limited()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!json["contacts"].as_array().unwrap().is_empty());
}

#[test]
fn inline_password_in_a_world_readable_file_warns() {
    let world = World::new();
    world.write_config(
        "[[postgres]]\nname = \"main\"\nurl = \"postgres://u:inline-pw@127.0.0.1:1/db\"\n",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(world.config_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = world.dr(&["check", "--only", "config", "--format", "json"]);
    let c = check_by_name(&run.json(), "config").clone();
    assert_eq!(c["status"], "warn");
    assert!(c["message"].as_str().unwrap().contains("chmod 600"), "{c}");
    assert!(!run.all().contains("inline-pw"));
}

#[test]
fn only_rejects_unknown_names_and_contacts_lists_what_is_configured() {
    let pg = PgCluster::start();
    let redis = RedisServer::start();
    let mut world = World::new();
    config_for(&mut world, &pg, &redis);
    let run = world.dr(&["check", "--only", "nosuch"]);
    run.expect_code(2);
    assert!(run.stderr.contains("pg.connect"), "{}", run.stderr);
    let only = world.dr(&["check", "--only", "redis", "--format", "json"]);
    only.expect_code(0);
    let names: Vec<String> = only.json()["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["redis.connect", "redis.persistence"]);

    let contacts = world.dr(&["contacts", "--format", "json"]);
    contacts.expect_code(0);
    let json = contacts.json();
    assert_eq!(json["contacts"][0]["name"], "Ada");
    assert_eq!(json["contacts"][0]["hours"], "24/7");
    assert_eq!(json["vendors"][0]["service"], "managed PostgreSQL");
    let table = world.dr(&["contacts"]);
    assert!(
        table.stdout.contains("+1-555-0101") && table.stdout.contains("Hosting Co"),
        "{}",
        table.stdout
    );
}

#[test]
fn redis_with_failing_bgsave_warns() {
    let pg = PgCluster::start();
    let redis = RedisServer::start();
    let mut world = World::new();
    config_for(&mut world, &pg, &redis);
    // The RDB file's path is taken by a directory, so the background save cannot rename
    // its temporary file into place: the failure Redis reports in INFO persistence.
    let cli = |args: &[&str]| {
        Command::new("redis-cli")
            .args(["-p", &redis.port.to_string()])
            .args(args)
            .output_limited()
            .expect("redis-cli")
    };
    cli(&["SET", "k", "v"]);
    std::fs::create_dir(redis.dir.path().join("dump.rdb")).unwrap();
    cli(&["BGSAVE"]);
    std::thread::sleep(Duration::from_millis(1500));
    let run = world.dr(&["check", "--only", "redis.persistence", "--format", "json"]);
    let c = check_by_name(&run.json(), "redis.persistence").clone();
    assert_eq!(c["status"], "warn", "{c}");
    assert!(c["message"].as_str().unwrap().contains("BGSAVE"), "{c}");
}

/// `--problems-only`: at 3 a.m. on a narrow terminal, only what warns or fails, failures
/// first; the summary still counts every check.
#[test]
fn problems_only_shows_what_warns_or_fails_and_counts_everything() {
    let pg = PgCluster::start();
    let redis = RedisServer::start();
    let mut world = World::new();
    config_for(&mut world, &pg, &redis);
    // No backup yet: backup.latest fails, drill.recent warns, pg.connect passes.
    let full = world.dr(&["check"]);
    let short = world.dr(&["check", "--problems-only"]);
    assert_eq!(short.code, full.code);
    let rows = |text: &str, name: &str| {
        text.lines()
            .filter(|l| l.starts_with(&format!("| {name} ")))
            .count()
    };
    assert_eq!(rows(&full.stdout, "pg.connect"), 1, "{}", full.stdout);
    assert_eq!(rows(&short.stdout, "pg.connect"), 0, "{}", short.stdout);
    assert_eq!(rows(&short.stdout, "backup.latest"), 1, "{}", short.stdout);
    assert_eq!(rows(&short.stdout, "drill.recent"), 1, "{}", short.stdout);
    // Failures first.
    let fail_at = short.stdout.find("| backup.latest ").unwrap();
    let warn_at = short.stdout.find("| drill.recent ").unwrap();
    assert!(fail_at < warn_at, "{}", short.stdout);
    // The same summary counts, and how many rows were left out.
    let summary = |text: &str| text.lines().last().unwrap_or("").to_string();
    assert!(
        summary(&short.stdout).starts_with(summary(&full.stdout).as_str()),
        "{}\n{}",
        full.stdout,
        short.stdout
    );
    assert!(
        summary(&short.stdout).contains("passing not shown: --problems-only"),
        "{}",
        short.stdout
    );
}
