//! `dr prune` keeps what restores, against real clusters: a base backup the archive cannot
//! make consistent is not counted as kept (so the newest restorable one and its WAL stay),
//! archived WAL is cut at the oldest kept base backup's start, and two clusters archiving
//! under one target name each keep their own newest base backup. With `pitr_window`, the
//! window's base backups and WAL stay, and an older (pinned) base backup keeps only the
//! WAL that makes it consistent.

mod support;

use support::archive::{
    base_backup_json, lose_segments_from, physical_backup_of, second_archiving_cluster,
    set_keep_last, stored_segments,
};
use support::pitr::{
    cluster, ids, psql_port, restore_dir, restore_started, time_between_writes, write_rows,
};
use support::wal::{switch_wal, system_id, wait_archived};
use support::{PgCluster, World};

fn archive_now(pg: &PgCluster) -> String {
    let seg = switch_wal(pg);
    wait_archived(pg, &seg);
    seg
}

/// Backup ids have one-second resolution.
fn next_second() {
    std::thread::sleep(std::time::Duration::from_millis(1100));
}

fn entries(run: &support::Run) -> Vec<serde_json::Value> {
    run.json()["backups"].as_array().unwrap().clone()
}

#[track_caller]
fn entry<'a>(entries: &'a [serde_json::Value], id: &str) -> &'a serde_json::Value {
    entries
        .iter()
        .find(|e| e["backup_id"] == id)
        .unwrap_or_else(|| panic!("no entry for {id}: {entries:?}"))
}

fn segment_names(world: &World) -> Vec<String> {
    stored_segments(world).into_iter().map(|(n, _)| n).collect()
}

fn start_wal(m: &serde_json::Value) -> String {
    m["physical"]["start_wal"].as_str().unwrap().to_string()
}

fn manifest_exists(world: &World, m: &serde_json::Value) -> bool {
    world
        .storage_dir()
        .join("backups/main")
        .join(m["id"].as_str().unwrap())
        .join("manifest.json")
        .exists()
}

#[test]
fn an_unrestorable_newest_base_backup_does_not_push_out_the_restorable_one() {
    let (pg, world) = cluster();
    let a = write_rows(&pg, 3, "a");
    archive_now(&pg);
    let older = base_backup_json(&world);
    let b = write_rows(&pg, 3, "b");
    archive_now(&pg);
    next_second();
    let newest = base_backup_json(&world);
    // The WAL the newest backup needs to become consistent is lost from storage.
    let lost = lose_segments_from(&world, &start_wal(&newest));
    let list = world
        .dr(&["list", "--target", "main", "--format", "json"])
        .json();
    assert_eq!(
        list["windows"][0]["unusable_backups"][0], newest["id"],
        "{list}"
    );
    let before = segment_names(&world);

    // keep_last = 1: the older, restorable backup is the one kept.
    let run = world.dr(&["prune", "--format", "json"]);
    run.expect_code(1);
    let e = entries(&run);
    let kept_older = entry(&e, older["id"].as_str().unwrap());
    assert_eq!(kept_older["action"], "keep", "{e:?}");
    assert_eq!(kept_older["kind"], "physical", "{e:?}");
    let unrestorable = entry(&e, newest["id"].as_str().unwrap());
    assert_eq!(unrestorable["kind"], "unrestorable", "{e:?}");
    assert_eq!(unrestorable["action"], "keep", "{e:?}");
    assert!(
        unrestorable["reason"].as_str().unwrap().contains(&lost[0]),
        "names the missing segment: {unrestorable}"
    );
    assert!(
        run.stderr.contains("cannot be restored") && run.stderr.contains("hint:"),
        "{}",
        run.stderr
    );
    assert!(manifest_exists(&world, &older));
    // Every segment from the older backup's start on stays (only WAL before it may go).
    let after = segment_names(&world);
    let needed: Vec<&String> = before.iter().filter(|n| **n >= start_wal(&older)).collect();
    assert!(needed.len() >= 2, "{before:?}");
    for name in needed {
        assert!(
            after.contains(name),
            "{name}, needed by the older backup, was removed: {e:?}"
        );
    }

    // What was kept restores: the rows written before the loss come back.
    let (run, server) = restore_started(&world, "after-prune", &["--to-latest"]);
    run.expect_code(0);
    assert_eq!(
        ids(&psql_port(
            server.port,
            "app",
            "SELECT id FROM events ORDER BY id"
        )),
        [a, b].concat()
    );
}

#[test]
fn wal_is_cut_at_the_oldest_kept_base_backup_never_the_newest() {
    let (pg, world) = cluster();
    set_keep_last(&world, 2);
    let mut backups = Vec::new();
    for note in ["one", "two", "three"] {
        backups.push(base_backup_json(&world));
        write_rows(&pg, 2, note);
        archive_now(&pg);
        write_rows(&pg, 2, note);
        archive_now(&pg);
        next_second();
    }
    let (first, second, third) = (&backups[0], &backups[1], &backups[2]);
    let cut = start_wal(second);
    let between: Vec<String> = segment_names(&world)
        .into_iter()
        .filter(|n| *n >= cut && *n < start_wal(third))
        .collect();
    assert!(
        between.len() >= 2,
        "segments between the kept backups' starts: {between:?}"
    );

    let run = world.dr(&["prune", "--format", "json"]);
    run.expect_code(0);
    let e = entries(&run);
    assert_eq!(entry(&e, first["id"].as_str().unwrap())["action"], "remove");
    assert_eq!(entry(&e, second["id"].as_str().unwrap())["action"], "keep");
    assert_eq!(entry(&e, third["id"].as_str().unwrap())["action"], "keep");
    let after = segment_names(&world);
    assert!(
        after.iter().all(|n| *n >= cut),
        "WAL before the oldest kept start {cut} is removed: {after:?}"
    );
    for name in &between {
        assert!(
            after.contains(name),
            "{name} is needed by {} (the oldest kept), so the cut is not at the newest kept backup's start: {after:?}",
            second["id"]
        );
    }

    // A newer backup that cannot become consistent changes nothing of that: it is not
    // counted, so the same two stay kept and the cut stays at the older one's start.
    let fourth = base_backup_json(&world);
    lose_segments_from(&world, &start_wal(&fourth));
    let run = world.dr(&["prune", "--format", "json"]);
    run.expect_code(1);
    let e = entries(&run);
    assert_eq!(
        entry(&e, second["id"].as_str().unwrap())["action"],
        "keep",
        "{e:?}"
    );
    assert_eq!(
        entry(&e, third["id"].as_str().unwrap())["action"],
        "keep",
        "{e:?}"
    );
    assert_eq!(
        entry(&e, fourth["id"].as_str().unwrap())["kind"],
        "unrestorable"
    );
    let after = segment_names(&world);
    for name in &between {
        assert!(after.contains(name), "{name} was cut: {after:?}");
    }
}

#[test]
fn two_clusters_under_one_target_each_keep_their_newest_base_backup() {
    let (pg, mut world) = cluster();
    let other = second_archiving_cluster(&world);
    assert_ne!(system_id(&pg), system_id(&other));
    write_rows(&pg, 2, "a");
    archive_now(&pg);
    let mine = physical_backup_of(&mut world, None);
    next_second();
    write_rows(&other, 2, "b");
    archive_now(&other);
    let theirs = physical_backup_of(&mut world, Some(other.superuser_url("app")));
    next_second();
    let theirs_newer = physical_backup_of(&mut world, Some(other.superuser_url("app")));
    assert_eq!(
        mine["physical"]["system_identifier"].as_str().unwrap(),
        system_id(&pg)
    );
    assert_eq!(
        theirs["physical"]["system_identifier"].as_str().unwrap(),
        system_id(&other)
    );
    let mine_dir = world.storage_dir().join("wal/main").join(system_id(&pg));
    let mine_wal: Vec<std::path::PathBuf> = support::wal::stored_wal(&world.storage_dir())
        .into_iter()
        .filter(|(n, _, p)| p.starts_with(&mine_dir) && n.len() == 24)
        .filter(|(n, _, _)| *n >= start_wal(&mine))
        .map(|(_, _, p)| p)
        .collect();
    assert!(!mine_wal.is_empty());

    // keep_last = 1, per cluster: the other cluster's newer backups do not push out this
    // cluster's only one.
    let run = world.dr(&["prune", "--format", "json"]);
    run.expect_code(0);
    let e = entries(&run);
    assert_eq!(
        entry(&e, mine["id"].as_str().unwrap())["action"],
        "keep",
        "{e:?}"
    );
    assert_eq!(
        entry(&e, theirs_newer["id"].as_str().unwrap())["action"],
        "keep",
        "{e:?}"
    );
    assert_eq!(
        entry(&e, theirs["id"].as_str().unwrap())["action"],
        "remove",
        "{e:?}"
    );
    assert!(manifest_exists(&world, &mine));
    assert!(manifest_exists(&world, &theirs_newer));
    assert!(!manifest_exists(&world, &theirs));
    // This cluster's WAL from its backup's start on is all still there.
    for path in &mine_wal {
        assert!(
            path.exists(),
            "{} of this cluster was removed",
            path.display()
        );
    }
}

#[test]
fn a_pitr_window_keeps_its_base_backup_and_wal_and_an_older_pin_only_its_own_wal() {
    let (pg, world) = cluster();
    let older = base_backup_json(&world);
    let a = write_rows(&pg, 2, "a");
    let in_gap = time_between_writes(&pg);
    let a_after_gap = write_rows(&pg, 1, "a");
    archive_now(&pg);
    next_second();
    let anchor = base_backup_json(&world);
    let b = write_rows(&pg, 2, "b");
    let inside = time_between_writes(&pg);
    write_rows(&pg, 2, "c");
    archive_now(&pg);
    // The window's start falls between the anchor's end and the newest backup's end.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let newest = base_backup_json(&world);
    write_rows(&pg, 2, "d");
    archive_now(&pg);
    world
        .dr(&[
            "pin",
            older["id"].as_str().unwrap(),
            "--reason",
            "legal hold",
        ])
        .expect_code(0);
    let anchor_end: chrono::DateTime<chrono::Utc> =
        anchor["finished_at"].as_str().unwrap().parse().unwrap();
    let window = (chrono::Utc::now() - anchor_end).num_seconds();
    let text = std::fs::read_to_string(world.config_path()).unwrap();
    let text = text.replace(
        "keep_last = 1",
        &format!("keep_last = 1\npitr_window = \"{window}s\""),
    );
    std::fs::write(world.config_path(), text).unwrap();
    let before = segment_names(&world);
    let (older_start, older_stop) = (
        start_wal(&older),
        older["physical"]["stop_wal"].as_str().unwrap().to_string(),
    );
    let gap: Vec<&String> = before
        .iter()
        .filter(|n| **n > older_stop && **n < start_wal(&anchor))
        .collect();
    assert!(
        !gap.is_empty(),
        "WAL between the pinned backup and the anchor: {before:?}"
    );

    let run = world.dr(&["prune", "--format", "json"]);
    run.expect_code(0);
    let e = entries(&run);
    let reason = |m: &serde_json::Value| {
        let x = entry(&e, m["id"].as_str().unwrap());
        assert_eq!(x["action"], "keep", "{e:?}");
        x["reason"].as_str().unwrap().to_string()
    };
    assert!(reason(&older).contains("PINNED"), "{e:?}");
    assert!(reason(&anchor).contains("window's start"), "{e:?}");
    assert!(reason(&newest).contains("newest"), "{e:?}");
    let wal: Vec<&serde_json::Value> = e.iter().filter(|x| x["kind"] == "wal").collect();
    assert!(
        wal.iter().any(|x| x["action"] == "keep"
            && x["reason"].as_str().unwrap().contains("pitr_window")),
        "{wal:?}"
    );
    assert!(
        wal.iter().any(|x| x["action"] == "remove"),
        "the gap is reported as removed: {wal:?}"
    );
    let after = segment_names(&world);
    for name in &gap {
        assert!(
            !after.contains(name),
            "{name} is needed by no kept backup: {after:?}"
        );
    }
    for name in before
        .iter()
        .filter(|n| (**n >= older_start && **n <= older_stop) || **n >= start_wal(&anchor))
    {
        assert!(after.contains(name), "{name} was removed: {e:?}");
    }
    assert!(manifest_exists(&world, &older) && manifest_exists(&world, &anchor));

    // A point between the pinned backup's end and the anchor lost its WAL: refused
    // before anything is written.
    let gap_dir = restore_dir(&world, "in-gap");
    let run = world.dr(&[
        "restore",
        "--target",
        "main",
        "--pitr",
        "--pgdata",
        &gap_dir.display().to_string(),
        "--to-time",
        &in_gap,
        "--format",
        "json",
    ]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
    assert!(!gap_dir.exists(), "{}", run.all());

    // A point inside the window still restores: the rows up to it, none after.
    let (run, server) = restore_started(&world, "inside-window", &["--to-time", &inside]);
    run.expect_code(0);
    assert_eq!(
        ids(&psql_port(
            server.port,
            "app",
            "SELECT id FROM events ORDER BY id"
        )),
        [a, a_after_gap, b].concat()
    );
}
