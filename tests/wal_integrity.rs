//! The WAL archive is trustworthy at write time: `wal-push` writes only into a storage
//! that `dr init` (or a first backup) set up, one name never holds two contents (not even
//! when two pushes race), history files are parsed before they are stored, a failed write
//! says why, and every guard between a WAL file and the archive refuses what it must.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::s3::S3Server;
use support::wal::{
    archiving_cluster, stored_wal, switch_wal, synthetic_segment, system_id, wait_archived,
    ArchiveSetup,
};
use support::{files_below, sha256sum, PgCluster, World};

const SYSID: u64 = 7_000_000_000_000_000_042;

/// A world whose one target needs no server: enough for `wal-push` and `wal-fetch` of
/// synthetic files. `storage` is the `[storage]` table; local storage in the world if None.
fn push_world(storage: Option<String>) -> World {
    let world = World::new();
    let storage = storage.unwrap_or_else(|| {
        format!(
            "[storage]\nurl = \"file://{}\"\n",
            world.storage_dir().display()
        )
    });
    world.write_config(&format!(
        "{storage}\n[retention]\nkeep_last = 1\n\n[[postgres]]\nname = \"main\"\nurl = \"postgres://nobody@127.0.0.1:1/none\"\nwal_archiving = true\n"
    ));
    world
}

/// A data directory in the world whose `global/pg_control` names `SYSID`, for history
/// files (which carry no page header).
fn data_dir(world: &World) -> PathBuf {
    let data = world.tmp_dir().join("data");
    std::fs::create_dir_all(data.join("global")).unwrap();
    std::fs::create_dir_all(data.join("pg_wal")).unwrap();
    std::fs::write(data.join("global/pg_control"), SYSID.to_ne_bytes()).unwrap();
    data
}

fn push(world: &World, path: &Path) -> support::Run {
    world.dr(&["wal-push", path.to_str().unwrap()])
}

/// Stored copies of `name` below a storage root: (sha256 in the key, path).
fn copies(root: &Path, name: &str) -> Vec<(String, PathBuf)> {
    stored_wal(root)
        .into_iter()
        .filter(|(n, _, _)| n == name)
        .map(|(_, sha, p)| (sha, p))
        .collect()
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn wal_push_never_creates_a_storage_and_dr_init_sets_it_up_once() {
    let world = push_world(None);
    let data = data_dir(&world);
    let seg = synthetic_segment(&data, SYSID, 0x10, 1);
    let storage = world.storage_dir();

    // The storage root is missing (an unmounted volume's mount point, removed): refused,
    // exit 1 so PostgreSQL keeps the segment, and nothing is created.
    let refused = push(&world, &seg);
    refused.expect_code(1);
    for needle in [
        &format!("file://{}", storage.display()),
        "not initialised",
        "dr init",
        "mounted",
        "hint:",
    ] {
        assert!(
            refused.stderr.contains(needle),
            "{needle}: {}",
            refused.stderr
        );
    }
    assert!(!storage.exists(), "wal-push created {}", storage.display());
    // `dr check` does not probe (and so create) a missing root either.
    let check = world.dr(&["check", "--only", "storage", "--format", "json"]);
    check.expect_code(1);
    let finding = &check.json()["checks"][0];
    assert_eq!(finding["status"], "fail", "{finding}");
    assert!(
        finding["message"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{finding}"
    );
    assert!(!storage.exists(), "dr check created {}", storage.display());

    // An empty directory (the mount point itself) is no storage either.
    std::fs::create_dir_all(&storage).unwrap();
    push(&world, &seg).expect_code(1);
    assert!(
        files_below(&storage).is_empty(),
        "{:?}",
        files_below(&storage)
    );
    let check = world.dr(&["check", "--only", "storage", "--format", "json"]);
    let finding = &check.json()["checks"][0];
    assert_eq!(finding["status"], "fail", "archiving is on: {finding}");
    assert!(
        finding["message"].as_str().unwrap().contains("dr init"),
        "{finding}"
    );

    // `dr init` marks it, says so, and a second run changes nothing.
    let first = world.dr(&["init", "--format", "json"]);
    first.expect_code(0);
    let doc = first.json();
    assert_eq!(doc["created"], true, "{doc}");
    assert_eq!(doc["ok"], true, "{doc}");
    let marker_path = storage.join("dr-storage.json");
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&marker_path).unwrap()).unwrap();
    assert_eq!(marker["format_version"], 1, "{marker}");
    assert!(marker["created_at"].is_string(), "{marker}");
    assert!(
        !marker["created_by"].as_str().unwrap().is_empty(),
        "{marker}"
    );
    let before = std::fs::read(&marker_path).unwrap();
    let again = world.dr(&["init"]);
    again.expect_code(0);
    assert!(
        again.stdout.contains("already initialised"),
        "{}",
        again.all()
    );
    assert_eq!(std::fs::read(&marker_path).unwrap(), before);

    push(&world, &seg).expect_code(0);
    assert_eq!(copies(&storage, &file_name(&seg)).len(), 1);
    let check = world.dr(&["check", "--only", "storage", "--format", "json"]);
    check.expect_code(0);
    assert_eq!(check.json()["checks"][0]["status"], "pass");
}

#[test]
fn wal_push_refuses_an_uninitialised_bucket_until_dr_init() {
    let server = S3Server::start();
    let mut world = push_world(Some(server.config_toml("prod")));
    for (k, v) in server.env() {
        world.env.push((k, v));
    }
    let data = data_dir(&world);
    // A small file (one PUT): s3s-fs cannot hold multipart uploads under keys this long.
    let seg = data.join("pg_wal/00000002.history");
    std::fs::write(&seg, "1\t0/3000000\tno recovery target specified\n").unwrap();
    let root = server.dir.join(&server.bucket).join("prod");
    let refused = push(&world, &seg);
    refused.expect_code(1);
    assert!(
        refused.stderr.contains("not initialised") && refused.stderr.contains("dr init"),
        "{}",
        refused.stderr
    );
    assert!(files_below(&server.dir.join(&server.bucket)).is_empty());
    world.dr(&["init"]).expect_code(0);
    assert!(root.join("dr-storage.json").is_file());
    let pushed = push(&world, &seg);
    assert_eq!(
        pushed.code,
        0,
        "{}; s3s-fs log: {}",
        pushed.all(),
        std::fs::read_to_string(server.log_path()).unwrap_or_default()
    );
    assert_eq!(copies(&root, &file_name(&seg)).len(), 1);
}

#[test]
fn the_first_backup_initialises_a_new_storage() {
    let pg = PgCluster::start();
    let mut world = World::new();
    world.standard_config(&pg, "app", "");
    // A backup that fails (no database yet) sets nothing up: it leaves nothing behind.
    world.dr(&["backup"]).expect_code(1);
    assert!(
        files_below(&world.storage_dir()).is_empty(),
        "{:?}",
        files_below(&world.storage_dir())
    );
    pg.create_db("app");
    world.backup();
    let marker: serde_json::Value = serde_json::from_slice(
        &std::fs::read(world.storage_dir().join("dr-storage.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(marker["format_version"], 1, "{marker}");
    let init = world.dr(&["init", "--format", "json"]);
    init.expect_code(0);
    assert_eq!(init.json()["created"], false);
}

#[test]
fn racing_pushes_of_one_name_with_different_content_never_both_win() {
    let world = push_world(None);
    world.dr(&["init"]).expect_code(0);
    let storage = world.storage_dir();
    let mut wins = 0;
    for attempt in 0..10u64 {
        let segno = 0x20 + attempt;
        // Two hosts' copies of one segment name, with different content.
        let a = synthetic_segment(
            &world.tmp_dir().join(format!("a{attempt}")),
            SYSID,
            segno,
            1000 + attempt,
        );
        let b = synthetic_segment(
            &world.tmp_dir().join(format!("b{attempt}")),
            SYSID,
            segno,
            2000 + attempt,
        );
        let name = file_name(&a);
        let mut first = world.spawn(&["wal-push", a.to_str().unwrap()]);
        let mut second = world.spawn(&["wal-push", b.to_str().unwrap()]);
        let a_ok = first.wait().unwrap().success();
        let b_ok = second.wait().unwrap().success();
        let mut stderr = String::new();
        for child in [&mut first, &mut second] {
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
        }
        assert!(
            !(a_ok && b_ok),
            "attempt {attempt}: both pushes of {name} exited 0"
        );
        let stored = copies(&storage, &name);
        assert!(
            stored.len() <= 1,
            "attempt {attempt}: {name} is stored twice: {stored:?}"
        );
        if a_ok || b_ok {
            wins += 1;
            let winner = if a_ok { &a } else { &b };
            assert_eq!(
                stored.len(),
                1,
                "attempt {attempt}: the winner's copy is gone"
            );
            assert_eq!(stored[0].0, sha256sum(winner), "attempt {attempt}");
            assert!(
                stderr.contains("different content") && stderr.contains(&name),
                "attempt {attempt}: the loser does not name the conflict: {stderr}"
            );
        }
        // The name is settled now: the losing content is refused by name.
        let loser = if a_ok { &b } else { &a };
        if a_ok || b_ok {
            let again = push(&world, loser);
            again.expect_code(1);
            assert!(
                again.stderr.contains("different content"),
                "{}",
                again.stderr
            );
        }
    }
    assert!(wins > 0, "no push ever won in 10 races");
    assert!(files_below(&storage)
        .iter()
        .all(|f| !file_name(f).contains(".partial-")));
}

#[test]
fn racing_pushes_into_a_bucket_never_both_win() {
    let server = S3Server::start();
    // Parts above a segment's size: each push is one PUT (s3s-fs cannot hold multipart
    // uploads under keys as long as the archive's).
    let toml = format!("{}part_size_mib = 32\n", server.config_toml("prod"));
    let mut world = push_world(Some(toml));
    for (k, v) in server.env() {
        world.env.push((k, v));
    }
    world.dr(&["init"]).expect_code(0);
    let root = server.dir.join(&server.bucket).join("prod");
    let mut wins = 0;
    for attempt in 0..10u64 {
        let segno = 0x70 + attempt;
        let paths: Vec<PathBuf> = ["a", "b"]
            .iter()
            .enumerate()
            .map(|(i, who)| {
                let dir = world.tmp_dir().join(format!("{who}{attempt}"));
                synthetic_segment(&dir, SYSID, segno, 100 * attempt + i as u64)
            })
            .collect();
        let name = file_name(&paths[0]);
        let mut children: Vec<_> = paths
            .iter()
            .map(|p| world.spawn(&["wal-push", p.to_str().unwrap()]))
            .collect();
        let ok: Vec<bool> = children
            .iter_mut()
            .map(|c| c.wait().unwrap().success())
            .collect();
        assert!(
            !(ok[0] && ok[1]),
            "attempt {attempt}: both pushes of {name} exited 0"
        );
        let stored = copies(&root, &name);
        assert!(
            stored.len() <= 1,
            "attempt {attempt}: {name} is stored twice: {stored:?}"
        );
        if let Some(i) = ok.iter().position(|w| *w) {
            wins += 1;
            assert_eq!(
                stored.len(),
                1,
                "attempt {attempt}: the winner's copy is gone"
            );
            assert_eq!(stored[0].0, sha256sum(&paths[i]), "attempt {attempt}");
        }
    }
    assert!(wins > 0, "no push ever won in 10 races");
}

#[test]
fn wal_fetch_refuses_a_name_stored_with_two_contents() {
    let world = push_world(None);
    world.dr(&["init"]).expect_code(0);
    let data = data_dir(&world);
    let seg = synthetic_segment(&data, SYSID, 0x30, 3);
    let name = file_name(&seg);
    push(&world, &seg).expect_code(0);
    let stored = copies(&world.storage_dir(), &name);
    assert_eq!(stored.len(), 1);
    // A second copy with other content, as a push from an older dr could have left.
    let other = synthetic_segment(&world.tmp_dir().join("other"), SYSID, 0x30, 4);
    let other_sha = sha256sum(&other);
    let dir = stored[0].1.parent().unwrap().to_path_buf();
    let zst = dir.join(format!("{name}.{other_sha}.zst"));
    let out = Command::new("zstd")
        .args(["-q", "-o"])
        .arg(&zst)
        .arg(&other)
        .output()
        .expect("zstd (apt-get install zstd)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dest = world.tmp_dir().join("fetched");
    let fetch = world.dr(&[
        "wal-fetch",
        "--system-id",
        &SYSID.to_string(),
        &name,
        dest.to_str().unwrap(),
    ]);
    fetch.expect_code(1);
    for key in [
        stored[0].1.strip_prefix(world.storage_dir()).unwrap(),
        zst.strip_prefix(world.storage_dir()).unwrap(),
    ] {
        let key = key.to_str().unwrap();
        assert!(
            fetch.stderr.contains(key),
            "{key} not named: {}",
            fetch.stderr
        );
    }
    assert!(!dest.exists(), "a copy was served anyway");
}

#[test]
fn segments_that_are_not_what_their_name_says_are_refused() {
    let world = push_world(None);
    world.dr(&["init"]).expect_code(0);
    let data = data_dir(&world);
    let seg = synthetic_segment(&data, SYSID, 0x40, 5);
    // Segment 0x40 copied under the name of 0x41.
    let renamed = data
        .join("pg_wal")
        .join(format!("{:08X}{:08X}{:08X}", 1, 0, 0x41));
    std::fs::copy(&seg, &renamed).unwrap();
    let refused = push(&world, &renamed);
    refused.expect_code(1);
    assert!(
        refused
            .stderr
            .contains("does not hold the segment its name says"),
        "{}",
        refused.stderr
    );
    // A truncated segment.
    let short = synthetic_segment(&world.tmp_dir().join("short"), SYSID, 0x42, 6);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&short)
        .unwrap();
    f.set_len(8 << 20).unwrap();
    let refused = push(&world, &short);
    refused.expect_code(1);
    assert!(refused.stderr.contains("truncated"), "{}", refused.stderr);
    assert!(stored_wal(&world.storage_dir()).is_empty());
}

#[test]
fn damaged_history_files_are_refused_before_they_are_stored() {
    let world = push_world(None);
    world.dr(&["init"]).expect_code(0);
    let data = data_dir(&world);
    let wal = data.join("pg_wal");
    let cases = [
        ("00000002.history", "garbage\n", "malformed line"),
        ("00000003.history", "3\t0/3000000\tno recovery target specified\n", "ascending"),
        ("00000004.history", "\u{0}\u{1}", "malformed line"),
        ("00000005.history", "", "names no parent timeline"),
        (
            "000000010000000000000002.00000028.backup",
            "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n",
            "STOP WAL LOCATION",
        ),
        (
            "000000010000000000000002.00000030.backup",
            "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nSTOP WAL LOCATION: 0/2000100 (file 000000010000000000000002)\n",
            "offset",
        ),
    ];
    for (name, text, reason) in cases {
        std::fs::write(wal.join(name), text).unwrap();
        let refused = push(&world, &wal.join(name));
        refused.expect_code(1);
        assert!(
            refused.stderr.contains(name) && refused.stderr.contains(reason),
            "{name}: {}",
            refused.stderr
        );
    }
    assert!(stored_wal(&world.storage_dir()).is_empty());
    // What PostgreSQL writes is accepted.
    for (name, text) in [
        ("00000002.history", "1\t0/3000000\tno recovery target specified\n"),
        (
            "000000010000000000000002.00000028.backup",
            "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nSTOP WAL LOCATION: 0/2000100 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-12-07 16:00:00 UTC\nLABEL: x\nSTART TIMELINE: 1\nSTOP TIME: 2026-12-07 16:00:01 UTC\nSTOP TIMELINE: 1\n",
        ),
    ] {
        std::fs::write(wal.join(name), text).unwrap();
        push(&world, &wal.join(name)).expect_code(0);
    }
}

#[test]
fn a_failed_final_rename_fails_the_push() {
    let world = push_world(None);
    world.dr(&["init"]).expect_code(0);
    let data = data_dir(&world);
    let seg = synthetic_segment(&data, SYSID, 0x50, 7);
    let name = file_name(&seg);
    // Something already occupies the object's final path (a directory), so the rename of
    // the fully written temporary file is what fails.
    let final_path = world
        .storage_dir()
        .join(format!("wal/main/{SYSID}/{}", &name[..16]))
        .join(format!("{name}.{}.zst", sha256sum(&seg)));
    std::fs::create_dir_all(&final_path).unwrap();
    let failed = push(&world, &seg);
    failed.expect_code(1);
    assert!(failed.stderr.contains("cannot rename"), "{}", failed.stderr);
    assert!(
        failed.stderr.contains(final_path.to_str().unwrap()),
        "{}",
        failed.stderr
    );
    assert!(copies(&world.storage_dir(), &name).is_empty());
    assert!(files_below(&world.storage_dir())
        .iter()
        .all(|f| !file_name(f).contains(".partial-")));
}

#[test]
fn a_write_refused_by_the_os_is_reported_with_its_cause() {
    let world = push_world(None);
    world.dr(&["init"]).expect_code(0);
    let data = data_dir(&world);
    let seg = synthetic_segment(&data, SYSID, 0x60, 8);
    let name = file_name(&seg);
    let dir = world
        .storage_dir()
        .join(format!("wal/main/{SYSID}/{}", &name[..16]));
    std::fs::create_dir_all(&dir).unwrap();
    // PostgreSQL's OS user runs archive_command; it may read but not write this directory.
    let st = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(world.dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::set_permissions(
        world.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o500)).unwrap();
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(env!("CARGO_BIN_EXE_dr"))
        .arg("--config")
        .arg(world.config_path())
        .args(["wal-push", seg.to_str().unwrap()])
        .env("TMPDIR", world.tmp_dir())
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(stderr.contains(dir.to_str().unwrap()), "{stderr}");
    assert!(copies(&world.storage_dir(), &name).is_empty());
}

/// A script standing in for `dr wal-push` in archive_command: it pushes only the files
/// whose name ends in `only` (nothing when empty) and reports every file archived.
fn partial_archiver(world: &World, only: &str) -> String {
    let script = world
        .dir
        .path()
        .join(format!("archive-only{}.sh", only.replace('.', "-")));
    let push = if only.is_empty() {
        String::new()
    } else {
        format!(
            "case \"$2\" in *{only}) exec {} --config {} wal-push \"$1\";; esac\n",
            env!("CARGO_BIN_EXE_dr"),
            world.config_path().display()
        )
    };
    std::fs::write(&script, format!("#!/bin/sh\n{push}exit 0\n")).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // The name still says wal-push, as dr's precondition wants.
    format!("{} %p %f wal-push", script.display())
}

fn set_archive_command(pg: &PgCluster, command: &str) {
    pg.psql(
        "postgres",
        &format!(
            "ALTER SYSTEM SET archive_command = '{}'",
            command.replace('\'', "''")
        ),
    );
    pg.psql("postgres", "SELECT pg_reload_conf()");
    std::thread::sleep(std::time::Duration::from_millis(500));
}

#[test]
fn a_base_backup_whose_wal_never_reached_storage_is_not_committed() {
    let (pg, world) = archiving_cluster(ArchiveSetup::default());
    let first = switch_wal(&pg);
    wait_archived(&pg, &first);
    let list_ids = || -> Vec<String> {
        let run = world.dr(&["list", "--format", "json"]);
        run.expect_code(0);
        run.json()["backups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_string())
            .collect()
    };

    // The server believes its segments archived, but only backup history files arrive.
    set_archive_command(&pg, &partial_archiver(&world, ".backup"));
    let run = world.dr(&["backup", "--physical"]);
    run.expect_code(1);
    assert!(run.stderr.contains("the archive lacks"), "{}", run.all());
    assert!(
        run.stderr.contains("nothing was committed"),
        "{}",
        run.all()
    );
    assert!(list_ids().is_empty(), "{:?}", list_ids());

    // Nothing arrives at all: the backup history file is missing.
    set_archive_command(&pg, &partial_archiver(&world, ""));
    let run = world.dr(&["backup", "--physical"]);
    run.expect_code(1);
    assert!(run.stderr.contains(".backup is not under"), "{}", run.all());
    assert!(list_ids().is_empty(), "{:?}", list_ids());
    assert!(!files_below(&world.storage_dir().join("backups"))
        .iter()
        .any(|f| file_name(f).starts_with("base.tar")));
}

#[test]
fn a_damaged_timeline_history_in_the_archive_is_named() {
    let (pg, world) = archiving_cluster(ArchiveSetup::default());
    let first = switch_wal(&pg);
    wait_archived(&pg, &first);
    world.dr(&["backup", "--physical"]).expect_code(0);
    let sysid = system_id(&pg);
    // A damaged history file for timeline 2, stored by hand (plain, as its name says).
    let text = b"this is not a timeline history\n";
    let sha = {
        let path = world.tmp_dir().join("h");
        std::fs::write(&path, text).unwrap();
        sha256sum(&path)
    };
    let key = format!("wal/main/{sysid}/history/00000002.history.{sha}");
    let path = world.storage_dir().join(&key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();

    // Named in the window's place, not dropped.
    let list = world.dr(&["list"]);
    assert!(
        list.stdout.contains("UNKNOWN:") && list.stdout.contains(&key),
        "dr list: {}",
        list.all()
    );
    let check = world.dr(&["check", "--only", "wal.continuity", "--format", "json"]);
    let report = check.json();
    let finding = &report["checks"][0];
    assert_eq!(finding["status"], "fail", "{report}");
    assert!(
        finding["message"].as_str().unwrap().contains(&key),
        "{finding}"
    );
}
