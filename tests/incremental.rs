//! Incremental base backups (PostgreSQL 17+) against a real cluster: after 5% of a
//! table's rows changed, `dr backup --physical --incremental` stores at most a quarter of
//! the full backup's bytes; `restore --pitr` rebuilds the chain (pg_combinebackup,
//! pg_verifybackup) to exactly the data; a missing middle link is refused before the data
//! directory is touched; prune keeps whole chains. On PostgreSQL 15/16 the flag is exit 2
//! naming the server's major.

mod support;

use support::pitr::{cluster, psql_port, restore_dir, restore_started};
use support::wal::{switch_wal, wait_archived};
use support::{PgCluster, World};

fn server_major(pg: &PgCluster) -> u32 {
    pg.psql("postgres", "SHOW server_version_num")
        .trim()
        .parse::<u32>()
        .unwrap()
        / 10000
}

fn backup(world: &World, incremental: bool) -> support::Run {
    let mut args = vec![
        "backup",
        "--physical",
        "--target",
        "main",
        "--format",
        "json",
    ];
    if incremental {
        args.push("--incremental");
    }
    world.dr(&args)
}

fn content_hash(query_port: impl Fn(&str) -> String) -> String {
    query_port(
        "SELECT count(*) || ':' || md5(string_agg(id || '/' || v, ',' ORDER BY id)) FROM items",
    )
}

const ROWS: u32 = 300_000;

#[test]
fn an_incremental_stores_the_changed_blocks_and_its_chain_restores_exactly() {
    let (pg, world) = cluster();
    let major = server_major(&pg);
    if major < 17 {
        backup(&world, false).expect_code(0);
        let refused = backup(&world, true);
        refused.expect_code(2);
        assert!(
            refused.stderr.contains(&format!("runs PostgreSQL {major}"))
                && refused.stderr.contains("PostgreSQL 17 or later")
                && refused
                    .stderr
                    .contains("hint: take a full `dr backup --physical"),
            "{}",
            refused.stderr
        );
        let listed = world.dr(&["list", "--target", "main", "--format", "json"]);
        assert_eq!(listed.json()["backups"].as_array().unwrap().len(), 1);
        return;
    }

    // A target configured for incrementals: dr check warns while summarize_wal is off.
    let config = std::fs::read_to_string(world.config_path()).unwrap();
    world.write_config(&config.replace(
        "wal_archiving = true\n",
        "wal_archiving = true\nincremental = true\n",
    ));
    let summarize_check = |world: &World| {
        let run = world.dr(&["check", "--only", "pg.summarize_wal", "--format", "json"]);
        run.json()["checks"][0].clone()
    };
    let warned = summarize_check(&world);
    assert_eq!(warned["status"], "warn", "{warned}");
    assert!(
        warned["message"]
            .as_str()
            .unwrap()
            .contains("ALTER SYSTEM SET summarize_wal = on"),
        "{warned}"
    );
    // summarize_wal off: refused with the fix, nothing stored.
    let refused = backup(&world, true);
    refused.expect_code(2);
    assert!(
        refused
            .stderr
            .contains("ALTER SYSTEM SET summarize_wal = on; SELECT pg_reload_conf();"),
        "{}",
        refused.stderr
    );
    pg.psql("postgres", "ALTER SYSTEM SET summarize_wal = on");
    pg.psql("postgres", "SELECT pg_reload_conf()");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(summarize_check(&world)["status"], "pass");
    // No parent yet: refused, naming the full backup to take.
    let refused = backup(&world, true);
    refused.expect_code(2);
    assert!(
        refused.stderr.contains("for an incremental to build on")
            && refused.stderr.contains("take a full `dr backup --physical"),
        "{}",
        refused.stderr
    );

    pg.psql(
        "app",
        &format!(
            "CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL);
             INSERT INTO items SELECT i, md5(i::text) || md5((i * 7)::text) FROM generate_series(1, {ROWS}) i;
             CHECKPOINT"
        ),
    );
    let full = backup(&world, false);
    full.expect_code(0);
    let full = full.json()["backups"][0].clone();
    let full_id = full["id"].as_str().unwrap().to_string();
    assert!(
        full["objects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["role"] == "backup_manifest"),
        "every physical backup stores its backup_manifest: {full}"
    );

    // 5% of the rows change (one contiguous range: 5% of the pages).
    pg.psql(
        "app",
        &format!("UPDATE items SET v = upper(v) WHERE id <= {}", ROWS / 20),
    );
    let incr1 = backup(&world, true);
    incr1.expect_code(0);
    let incr1 = incr1.json()["backups"][0].clone();
    let incr1_id = incr1["id"].as_str().unwrap().to_string();
    assert_eq!(incr1["physical"]["parent_id"], full_id.as_str());
    let (full_bytes, incr_bytes) = (
        full["size_bytes"].as_u64().unwrap(),
        incr1["size_bytes"].as_u64().unwrap(),
    );
    eprintln!("full {full_bytes} bytes stored, incremental {incr_bytes}");
    assert!(
        incr_bytes * 4 <= full_bytes,
        "the incremental stored {incr_bytes} bytes, more than 25% of the full's {full_bytes}"
    );

    pg.psql("app", "DELETE FROM items WHERE id % 1000 = 0");
    let incr2 = backup(&world, true);
    incr2.expect_code(0);
    let incr2 = incr2.json()["backups"][0].clone();
    let incr2_id = incr2["id"].as_str().unwrap().to_string();
    assert_eq!(incr2["physical"]["parent_id"], incr1_id.as_str());
    assert_eq!(
        incr2["physical"]["chain"],
        serde_json::json!([full_id, incr1_id])
    );
    let listed = world.dr(&["list", "--target", "main"]);
    assert!(
        listed.stdout.contains(&format!(
            "{incr2_id} builds on {incr1_id} (chain {full_id} → {incr1_id} → {incr2_id})"
        )),
        "{}",
        listed.stdout
    );

    let expected = content_hash(|sql| pg.psql("app", sql));
    let seg = switch_wal(&pg);
    wait_archived(&pg, &seg);

    // The newest base backup is incr2: the restore rebuilds full → incr1 → incr2.
    let (run, server) = restore_started(&world, "chain", &["--to-latest"]);
    run.expect_code(0);
    let report = run.json();
    assert_eq!(report["backup_id"], incr2_id.as_str());
    let steps = report["steps"].to_string();
    assert!(
        steps.contains("pg_combinebackup") && steps.contains("pg_verifybackup"),
        "{steps}"
    );
    assert_eq!(
        content_hash(|sql| psql_port(server.port, "app", sql)),
        expected
    );
    let parent = server.dir.parent().unwrap().to_path_buf();
    drop(server);
    let leftovers: Vec<_> = std::fs::read_dir(&parent)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("dr-staging-"))
        .collect();
    assert!(leftovers.is_empty(), "the unpacked links are removed");

    // Prune (keep_last = 1) keeps the whole chain of the newest backup.
    let pruned = world.dr(&["prune", "--format", "json"]);
    pruned.expect_code(0);
    let entries = pruned.json()["backups"].clone();
    for (id, why) in [
        (&full_id, format!("parent of {incr1_id}")),
        (&incr1_id, format!("parent of {incr2_id}")),
    ] {
        let e = entries
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["backup_id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} not in {entries}"));
        assert_eq!(e["action"], "keep", "{e}");
        assert!(e["reason"].as_str().unwrap().contains(&why), "{e}");
    }
    let listed = world.dr(&["list", "--target", "main", "--format", "json"]);
    assert_eq!(listed.json()["backups"].as_array().unwrap().len(), 3);

    let dir = restore_dir(&world, "broken");
    std::fs::create_dir(&dir).unwrap();
    support::archive::give_to_postgres(&dir);
    let dir_text = dir.display().to_string();
    let restore = || {
        world.dr(&[
            "restore",
            "--target",
            "main",
            "--pitr",
            "--pgdata",
            &dir_text,
            "--to-latest",
            "--format",
            "json",
        ])
    };

    // A damaged middle link (one byte of its tar, same size): found as it is unpacked,
    // named, and the data directory is never written.
    let middle = world.storage_dir().join("backups/main").join(&incr1_id);
    let tar = std::fs::read_dir(&middle)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("base.tar")
        })
        .expect("the middle link's base tar");
    let original = std::fs::read(&tar).unwrap();
    let mut damaged = original.clone();
    let at = damaged.len() / 2;
    damaged[at] ^= 0xff;
    std::fs::write(&tar, &damaged).unwrap();
    let failed = restore();
    failed.expect_code(1);
    assert!(
        failed
            .stderr
            .contains(&format!("link {incr1_id} of the chain is damaged")),
        "{}",
        failed.stderr
    );
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "the data directory stays empty"
    );
    std::fs::write(&tar, &original).unwrap();

    // A missing middle link: refused, naming it, before anything is unpacked.
    assert!(middle.is_dir(), "{}", middle.display());
    std::fs::remove_dir_all(&middle).unwrap();
    let refused = restore();
    refused.expect_code(2);
    assert!(
        refused
            .stderr
            .contains(&format!("link {incr1_id} of its chain"))
            && refused.stderr.contains("nothing was written"),
        "{}",
        refused.stderr
    );
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "the data directory stays empty"
    );
}
