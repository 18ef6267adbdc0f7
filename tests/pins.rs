//! `dr pin ID` keeps a backup outside every retention rule until `dr unpin ID`: prune keeps
//! it and says why, `dr list` shows it.

mod support;

#[test]
fn a_pinned_backup_survives_prune_until_it_is_unpinned() {
    // keep_last = 2 (the standard config): the oldest of three would go.
    let (_pg, world) = support::sample_world("");
    let oldest = world.backup()["id"].as_str().unwrap().to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    world.backup();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    world.backup();

    let pin = world.dr(&[
        "pin",
        &oldest,
        "--reason",
        "before migration 42",
        "--format",
        "json",
    ]);
    pin.expect_code(0);
    assert_eq!(pin.json()["pinned"], true);
    let plan = world.dr(&["prune", "--dry-run", "--format", "json"]).json();
    let entry = plan["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["backup_id"] == oldest.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["action"], "keep", "{plan}");
    assert!(
        entry["reason"].as_str().unwrap().contains("PINNED since")
            && entry["reason"]
                .as_str()
                .unwrap()
                .contains("before migration 42"),
        "{entry}"
    );
    world.dr(&["prune"]).expect_code(0);
    let list = world.dr(&["list", "--format", "json"]).json();
    assert!(
        list["backups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["id"] == oldest.as_str()),
        "{list}"
    );
    assert_eq!(list["pins"][0]["backup_id"], oldest.as_str(), "{list}");
    let text = world.dr(&["list"]).stdout;
    assert!(
        text.contains(&format!("pinned: {oldest} of main")),
        "{text}"
    );

    world.dr(&["unpin", &oldest]).expect_code(0);
    world.dr(&["prune"]).expect_code(0);
    let list = world.dr(&["list", "--format", "json"]).json();
    assert!(
        !list["backups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["id"] == oldest.as_str()),
        "{list}"
    );
    assert!(list.get("pins").is_none(), "{list}");
    // An unknown id is refused, nothing recorded.
    assert_ne!(world.dr(&["pin", "main-20000101T000000Z"]).code, 0);
}
