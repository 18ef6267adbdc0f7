//! WAL at full speed against real clusters: `dr wal-push` stores the segments PostgreSQL
//! marked ready ahead of its calls and records them (a record never vouches for a file that
//! changed), and `dr wal-fetch` prefetches the next segments into a spool that is checked
//! before use (a corrupted spooled segment is refused) and removed when a restore ends.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::pitr::{base_backup, cluster, psql_port, restore_started};
use support::wal::{
    archiving_cluster, stored_wal, switch_wal, system_id, wait_archived, wait_failures,
    ArchiveSetup,
};
use support::{is_root, sha256sum, World};

/// `dr` as the server's OS user in the data directory, as archive_command runs it.
fn dr_in(world: &World, data_dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", env!("CARGO_BIN_EXE_dr")]);
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_dr"))
    };
    cmd.arg("--config")
        .arg(world.config_path())
        .args(args)
        .current_dir(data_dir)
        .env_remove("RUST_LOG");
    for (k, v) in &world.env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ready_segments(data_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir.join("pg_wal/archive_status"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".ready")
                .filter(|n| n.len() == 24)
                .map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

/// Raw SHA-256 of each stored segment, by name (from the object names, which dr checks).
fn stored_shas(world: &World) -> std::collections::HashMap<String, String> {
    stored_wal(&world.storage_dir())
        .into_iter()
        .map(|(name, sha, _)| (name, sha))
        .collect()
}

#[test]
fn push_ahead_stores_the_ready_segments_and_a_record_never_vouches_for_a_changed_file() {
    let (pg, world) = archiving_cluster(ArchiveSetup {
        initdb_args: &["--wal-segsize=1"],
        extra_toml: "\n[wal]\npush_parallel = 3\n",
        ..Default::default()
    });
    let data = pg.data_dir();
    // The storage "goes away" (no marker): segments pile up as .ready.
    let marker = world.storage_dir().join("dr-storage.json");
    let parked = world.dir.path().join("marker.parked");
    std::fs::rename(&marker, &parked).unwrap();
    for _ in 0..6 {
        switch_wal(&pg);
    }
    wait_failures(&pg, 1);
    pg.stop_server();
    std::fs::rename(&parked, &marker).unwrap();
    let ready = ready_segments(&data);
    assert!(ready.len() >= 6, "{ready:?}");

    // One call, for the oldest, stores every ready segment.
    let first = format!("pg_wal/{}", ready[0]);
    let (code, _, err) = dr_in(&world, &data, &["wal-push", &first]);
    assert_eq!(code, 0, "{err}");
    let stored = stored_shas(&world);
    for name in &ready {
        let sha = stored
            .get(name)
            .unwrap_or_else(|| panic!("{name} not stored"));
        assert_eq!(*sha, sha256sum(&data.join("pg_wal").join(name)), "{name}");
    }
    let records = data.join("dr_wal_pushed");
    for name in &ready[1..] {
        assert!(records.join(name).is_file(), "no record of {name}");
    }

    // A pushed-ahead file that changed since is not vouched for by its record: it is
    // pushed again, and refused as different content, as without push-ahead.
    let changed = data.join("pg_wal").join(&ready[1]);
    let original = std::fs::read(&changed).unwrap();
    let mut damaged = original.clone();
    damaged[200_000] ^= 0xff;
    std::fs::write(&changed, &damaged).unwrap();
    let arg = format!("pg_wal/{}", ready[1]);
    let (code, _, err) = dr_in(&world, &data, &["wal-push", &arg]);
    assert_eq!(code, 1, "a changed file must not pass on its record: {err}");
    assert!(err.contains("different content"), "{err}");
    std::fs::write(&changed, &original).unwrap();

    // An unchanged one returns at once from its record, which is used up.
    let arg = format!("pg_wal/{}", ready[2]);
    let (code, out, err) = dr_in(&world, &data, &["wal-push", "--format", "json", &arg]);
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["already_archived"], true, "{json}");
    assert_eq!(json["sha256"], stored[&ready[2]].as_str());
    assert!(!records.join(&ready[2]).exists());

    // A record whose object left the storage vouches for nothing: the file is pushed again.
    let gone = stored_wal(&world.storage_dir())
        .into_iter()
        .find(|(n, _, _)| *n == ready[3])
        .unwrap()
        .2;
    std::fs::remove_file(&gone).unwrap();
    let arg = format!("pg_wal/{}", ready[3]);
    let (code, out, err) = dr_in(&world, &data, &["wal-push", "--format", "json", &arg]);
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["already_archived"], false, "{json}");
    assert!(gone.is_file(), "{} was not stored again", ready[3]);

    // The server's own archiver then goes through the rest, and the records are used up.
    pg.start_server();
    let last = ready.last().unwrap();
    wait_archived(&pg, last);
    let left: Vec<_> = std::fs::read_dir(&records)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| ready.iter().any(|r| r.as_str() == n.to_string_lossy()))
        .collect();
    assert!(left.is_empty(), "records left behind: {left:?}");
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn prefetch_spools_ahead_refuses_a_corrupted_segment_and_the_restore_removes_the_spool() {
    let (pg, world) = cluster();
    base_backup(&world);
    pg.psql(
        "app",
        "INSERT INTO events (note) SELECT repeat(md5(g::text), 16) FROM generate_series(1, 20000) g",
    );
    let last = switch_wal(&pg);
    wait_archived(&pg, &last);
    let count = pg.psql("app", "SELECT count(*) FROM events");
    let sysid = system_id(&pg);
    let stored = stored_shas(&world);
    let mut names: Vec<&String> = stored.keys().filter(|n| n.len() == 24).collect();
    names.sort();
    assert!(names.len() >= 12, "{names:?}");

    // restore_command's call for one segment leaves the next 8 in the spool, checked.
    let fake: PathBuf = world.tmp_dir().join("fake");
    std::fs::create_dir_all(fake.join("pg_wal")).unwrap();
    let dest = fake.join("pg_wal/RECOVERYXLOG");
    let fetch = |name: &str| {
        let dest = dest.display().to_string();
        world.dr(&[
            "wal-fetch",
            "--target",
            "main",
            "--system-id",
            &sysid,
            name,
            &dest,
        ])
    };
    fetch(names[0]).expect_code(0);
    assert_eq!(sha256sum(&dest), stored[names[0]]);
    let spool = fake.join("dr_wal_spool");
    wait_for("the spool", Duration::from_secs(30), || {
        names[1..9]
            .iter()
            .all(|n| spool.join(format!("{n}.json")).exists())
    });
    for n in &names[1..9] {
        assert_eq!(sha256sum(&spool.join(n)), stored[*n], "{n}");
    }

    // A spooled segment damaged on disk is refused: the served file is the archived one.
    let victim = spool.join(names[1]);
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[300_000] ^= 0x55;
    std::fs::write(&victim, &bytes).unwrap();
    fetch(names[1]).expect_code(0);
    assert_eq!(
        sha256sum(&dest),
        stored[names[1]],
        "a corrupted spooled segment was served"
    );
    // A good one is served from the spool (moved, not copied).
    fetch(names[2]).expect_code(0);
    assert_eq!(sha256sum(&dest), stored[names[2]]);
    assert!(!spool.join(names[2]).exists());

    // A point-in-time restore replays with prefetch and removes its spool at the end.
    let (run, server) = restore_started(&world, "pitr", &["--to-latest"]);
    run.expect_code(0);
    assert_eq!(
        psql_port(server.port, "app", "SELECT count(*) FROM events"),
        count
    );
    assert!(
        !server.dir.join("dr_wal_spool").exists(),
        "the spool was left behind"
    );
    server.stop();
}
