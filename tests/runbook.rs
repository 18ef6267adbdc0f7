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
