//! `dr runbook`: embedded runbooks rendered from the live configuration.

mod support;

use support::{load_sample, PgCluster, World};

const NAMES: [&str; 8] = [
    "accidental-deletion",
    "application-failure",
    "data-corruption",
    "database-failure",
    "infrastructure-loss",
    "point-in-time-restore",
    "redis-failure",
    "security-incident",
];

fn example_world() -> World {
    let world = World::new();
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dr.toml.example")).unwrap();
    world.write_config(&example.replace(
        "file:///var/backups/dr",
        &format!("file://{}", world.storage_dir().display()),
    ));
    world
}

#[test]
fn every_embedded_runbook_renders_with_the_example_config() {
    let world = example_world();
    let list = world.dr(&["runbook", "--format", "json"]);
    list.expect_code(0);
    let names: Vec<String> = list.json()["runbooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, NAMES);
    for name in NAMES {
        let run = world.dr(&["runbook", "show", name]);
        run.expect_code(0);
        assert!(
            !run.stdout.contains("{{") && !run.stdout.contains("}}"),
            "{name} has an unfilled placeholder:\n{}",
            run.stdout
        );
        assert!(
            run.stdout.contains("+1-555-0100"),
            "{name} names the contacts"
        );
        assert!(run.stderr.is_empty(), "{name}: {}", run.stderr);
        let json = world
            .dr(&["runbook", "show", name, "--format", "json"])
            .json();
        let steps = json["steps"].as_array().unwrap();
        assert!(steps.len() >= 5);
        assert!(steps
            .iter()
            .filter(|s| s["kind"] == "dr")
            .all(|s| s["command"].as_str().unwrap().starts_with("dr ")));
    }
    let check = world.dr(&["check", "--only", "runbooks", "--format", "json"]);
    assert_eq!(
        check.json()["checks"][0]["status"],
        "pass",
        "{}",
        check.stdout
    );
}

#[test]
fn latest_backup_placeholder_shows_the_real_newest_backup() {
    let pg = PgCluster::start();
    pg.create_db("app");
    load_sample(&pg, "app");
    let mut world = World::new();
    world.standard_config(&pg, "app", "");
    world.backup();
    let newest = world.backup()["id"].as_str().unwrap().to_string();
    let run = world.dr(&["runbook", "show", "database-failure"]);
    run.expect_code(0);
    assert!(
        run.stdout
            .contains(&format!("dr validate --backup-id {newest}")),
        "{}",
        run.stdout
    );
}

#[test]
fn override_directory_replaces_and_adds_runbooks() {
    let world = example_world();
    let dir = world.dir.path().join("team-runbooks");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("database-failure.md"),
        "---\ntitle: Our database failure\nsummary: The team's own version.\n---\n## Steps\n1. [dr] Check: `dr check`\n2. [manual] Call {{contacts}}\n",
    )
    .unwrap();
    std::fs::write(dir.join("dns-outage.md"), "---\ntitle: DNS outage\nsummary: Names stop resolving.\n---\n## Steps\n1. [manual] Call the DNS vendor: {{vendors}}\n").unwrap();
    let cfg = std::fs::read_to_string(world.config_path()).unwrap()
        + "\n[runbooks]\ndir = \"team-runbooks\"\n";
    world.write_config(&cfg);
    let list = world.dr(&["runbook", "--format", "json"]).json();
    let by_name = |n: &str| {
        list["runbooks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == n)
            .cloned()
    };
    assert_eq!(
        by_name("database-failure").unwrap()["title"],
        "Our database failure"
    );
    assert!(by_name("dns-outage").is_some());
    assert_eq!(by_name("redis-failure").unwrap()["source"], "embedded");
    let show = world.dr(&["runbook", "show", "dns-outage"]);
    show.expect_code(0);
    assert!(show.stdout.contains("Cloud provider"), "{}", show.stdout);
    // A runbook with an unknown placeholder is reported by check and refused by show.
    std::fs::write(
        dir.join("broken.md"),
        "---\ntitle: Broken\nsummary: x\n---\n## Steps\n1. [manual] {{no_such_value}}\n",
    )
    .unwrap();
    let show = world.dr(&["runbook", "show", "broken"]);
    show.expect_code(1);
    assert!(
        show.stderr
            .contains("unknown placeholder {{no_such_value}}"),
        "{}",
        show.stderr
    );
    let check = world.dr(&["check", "--only", "runbooks", "--format", "json"]);
    assert_eq!(check.json()["checks"][0]["status"], "fail");
}

#[test]
fn unknown_runbook_is_exit_2_listing_the_known_ones() {
    let world = example_world();
    let run = world.dr(&["runbook", "show", "meteor-strike"]);
    run.expect_code(2);
    for name in NAMES {
        assert!(run.stderr.contains(name), "{}", run.stderr);
    }
}

/// Two PostgreSQL targets (one archives its WAL), encryption, a Redis target with data
/// backups: what `dr runbook show` prints depends on the target and the route.
fn branching_world() -> World {
    let mut world = World::new();
    let (_, public) = support::wal::age_keygen(world.dir.path(), "team.key");
    world.env = vec![
        (
            "DR_WAL_URL".into(),
            "postgres://dr_backup@db1.internal:6432/shop".into(),
        ),
        (
            "DR_PLAIN_URL".into(),
            "postgres://dr_backup@db2.internal:5432/crm".into(),
        ),
    ];
    world.write_config(&format!(
        r#"
[objectives]
rpo = "1h"
rto = "30m"

[storage]
url = "file://{}"

[encryption]
recipients = ["{public}"]
identity_file = "/etc/dr/team.key"

[[postgres]]
name = "shop"
url_env = "DR_WAL_URL"
wal_archiving = true

[[postgres]]
name = "crm"
url_env = "DR_PLAIN_URL"

[[redis]]
name = "sessions"
url = "redis://127.0.0.1:6399"
backup = true

[[contacts]]
name = "Test On-Call"
phone = "+1-555-0100"
"#,
        world.storage_dir().display()
    ));
    world
}

fn shown(world: &World, args: &[&str]) -> serde_json::Value {
    let mut argv = vec!["runbook", "show"];
    argv.extend_from_slice(args);
    argv.extend(["--format", "json"]);
    let run = world.dr(&argv);
    run.expect_code(0);
    run.json()
}

fn commands(doc: &serde_json::Value) -> Vec<String> {
    doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["command"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn runbooks_branch_on_the_target_and_fill_in_live_values() {
    let world = branching_world();
    let config = std::fs::canonicalize(world.config_path()).unwrap();

    // The archiving target: point-in-time by default, never --to-latest for a dropped database.
    let doc = shown(&world, &["database-failure", "--target", "shop"]);
    assert_eq!(doc["branches"]["route"], "pitr", "{}", doc["branches"]);
    assert_eq!(doc["branches"]["encryption"], true);
    let cmds = commands(&doc);
    assert!(
        cmds.iter().any(|c| c.contains("--pitr --to-latest")),
        "{cmds:?}"
    );
    assert!(cmds
        .iter()
        .any(|c| c == "dr backup --physical --target shop"));
    let text = doc["markdown"].as_str().unwrap();
    assert!(text.contains("replay the DROP too"), "{text}");
    assert!(
        text.contains("pg_isready -h db1.internal -p 6432"),
        "{text}"
    );
    assert!(
        text.contains("/etc/dr/team.key"),
        "the identity's place: {text}"
    );
    let numbers: Vec<u64> = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (1..=numbers.len() as u64).collect::<Vec<_>>());

    // The dump route of the same target, and the other target: no --pitr anywhere.
    for args in [
        vec!["database-failure", "--target", "shop", "--route", "dump"],
        vec!["database-failure", "--target", "crm"],
    ] {
        let doc = shown(&world, &args);
        assert_eq!(doc["branches"]["route"], "dump", "{args:?}");
        assert!(
            commands(&doc).iter().all(|c| !c.contains("--pitr")),
            "{args:?}: {:?}",
            commands(&doc)
        );
    }

    // A rebuild of the archiving target ends archiving again with a base backup.
    let doc = shown(
        &world,
        &["infrastructure-loss", "--target", "shop", "--route", "dump"],
    );
    let text = doc["markdown"].as_str().unwrap();
    assert!(
        text.contains(&format!(
            "archive_command = 'dr --config {} wal-push %p'",
            config.display()
        )),
        "{text}"
    );
    assert!(commands(&doc).contains(&"dr backup --physical --target shop".to_string()));

    // One table as of a time, for the archiving target.
    let doc = shown(&world, &["accidental-deletion", "--target", "shop"]);
    let cmds = commands(&doc);
    assert_eq!(cmds[0], "dr mark incident-NAME --target shop", "{cmds:?}");
    assert!(cmds
        .iter()
        .any(|c| c.contains("--pitr --to-time TIME --only-table")));

    // Redis with data backups: the restore is a dr step.
    let doc = shown(&world, &["redis-failure"]);
    assert_eq!(doc["branches"]["redis_target"], "sessions");
    assert!(commands(&doc)
        .contains(&"dr restore --target sessions --backup-id latest --yes --flush".to_string()));

    // A point-in-time route for a target that does not archive WAL is a usage error.
    let run = world.dr(&[
        "runbook",
        "show",
        "database-failure",
        "--target",
        "crm",
        "--route",
        "pitr",
    ]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("does not archive its WAL"),
        "{}",
        run.stderr
    );
    // Every branch of every runbook renders: the runbooks check.
    let check = world.dr(&["check", "--only", "runbooks", "--format", "json"]);
    assert_eq!(
        check.json()["checks"][0]["status"],
        "pass",
        "{}",
        check.stdout
    );
}
