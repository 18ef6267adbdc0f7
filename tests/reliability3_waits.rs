//! Reliability, round 3, the rest (issue 29; rows 71 on of docs/failure-modes.md):
//! symlinks inside local storage, fleet member names too long for a file name, and bounded
//! waits on a stalled Redis or a silent S3 endpoint.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::redis_data::{load_many, DataRedis};
use support::wal::{stored_wal, synthetic_segment};
use support::{sample_world, sha256sum, PgCluster, World};

const SYSID: u64 = 7_000_000_000_000_000_071;

/// A TCP server that accepts connections (the kernel completes the handshake) and never
/// says a word.
fn silent_listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

fn list_ids(world: &World) -> Vec<String> {
    let list = world.dr(&["list", "--format", "json"]);
    list.expect_code(0);
    list.json()["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

/// Moves `from` to `to` (another directory of the same test) and links it back.
fn move_and_link(from: &Path, to: &Path) {
    std::fs::rename(from, to).unwrap();
    std::os::unix::fs::symlink(to, from).unwrap();
}

#[test]
fn a_symlinked_backup_is_listed_and_read_and_a_broken_link_is_named() {
    let (_pg, world) = sample_world("");
    let older = world.backup();
    let newer = world.backup();
    let newer_id = newer["id"].as_str().unwrap().to_string();
    let backup_dir = world.storage_dir().join("backups/main").join(&newer_id);
    // The operator moved the newest backup to another volume and linked it back.
    let elsewhere = world.tmp_dir().join("other-volume");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let moved = elsewhere.join(&newer_id);
    move_and_link(&backup_dir, &moved);

    let ids = list_ids(&world);
    assert!(
        ids.contains(&newer_id),
        "the linked backup vanished: {ids:?}"
    );
    assert!(ids.contains(&older["id"].as_str().unwrap().to_string()));
    // `latest` is the linked one, and its bytes are read through the link and checked.
    let validate = world.dr(&["validate", "--backup-id", "latest", "--format", "json"]);
    validate.expect_code(0);
    assert!(
        validate.stdout.contains(&newer_id),
        "latest is not the linked backup: {}",
        validate.stdout
    );

    // The volume is gone: the link is named with its target and the fix, never skipped.
    std::fs::rename(&moved, elsewhere.join("unmounted")).unwrap();
    let list = world.dr(&["list"]);
    assert_ne!(list.code, 0, "{}", list.all());
    for needle in [
        backup_dir.to_str().unwrap(),
        moved.to_str().unwrap(),
        "symlink",
        "hint:",
    ] {
        assert!(list.stderr.contains(needle), "{needle}: {}", list.stderr);
    }

    // A link back up the tree is named, not listed forever.
    std::fs::remove_file(&backup_dir).unwrap();
    std::os::unix::fs::symlink(world.storage_dir().join("backups"), &backup_dir).unwrap();
    let looped = world.dr(&["list"]);
    assert_ne!(looped.code, 0, "{}", looped.all());
    assert!(
        looped.stderr.contains(backup_dir.to_str().unwrap()) && looped.stderr.contains("symlink"),
        "{}",
        looped.stderr
    );
}

#[test]
fn a_symlinked_wal_segment_is_fetched_and_checked() {
    let world = World::new();
    world.write_config(&format!(
        "[storage]\nurl = \"file://{}\"\n\n[retention]\nkeep_last = 1\n\n[[postgres]]\nname = \"main\"\nurl = \"postgres://nobody@127.0.0.1:1/none\"\nwal_archiving = true\n",
        world.storage_dir().display()
    ));
    world.dr(&["init"]).expect_code(0);
    let data = world.tmp_dir().join("data");
    std::fs::create_dir_all(data.join("global")).unwrap();
    std::fs::write(data.join("global/pg_control"), SYSID.to_ne_bytes()).unwrap();
    let seg = synthetic_segment(&data, SYSID, 0x10, 71);
    let name = seg.file_name().unwrap().to_str().unwrap().to_string();
    world
        .dr(&["wal-push", seg.to_str().unwrap()])
        .expect_code(0);
    let stored = stored_wal(&world.storage_dir());
    let (_, _, stored_path) = stored.iter().find(|(n, _, _)| *n == name).unwrap();
    let elsewhere = world.tmp_dir().join("archive-volume");
    std::fs::create_dir_all(&elsewhere).unwrap();
    move_and_link(stored_path, &elsewhere.join("segment"));

    let dest = world.tmp_dir().join("fetched");
    let fetch = world.dr(&[
        "wal-fetch",
        "--system-id",
        &SYSID.to_string(),
        &name,
        dest.to_str().unwrap(),
    ]);
    fetch.expect_code(0);
    assert_eq!(sha256sum(&dest), sha256sum(&seg), "fetched other bytes");

    // Its target gone: exit 1 naming the link, not a silent "not archived".
    std::fs::remove_file(elsewhere.join("segment")).unwrap();
    let _ = std::fs::remove_file(&dest);
    let gone = world.dr(&[
        "wal-fetch",
        "--system-id",
        &SYSID.to_string(),
        &name,
        dest.to_str().unwrap(),
    ]);
    gone.expect_code(1);
    assert!(
        gone.stderr.contains(stored_path.to_str().unwrap()) && gone.stderr.contains("symlink"),
        "{}",
        gone.stderr
    );
    assert!(!dest.exists());
}

/// A database name of 63 bytes (21 three-byte characters), the most PostgreSQL allows:
/// 189 bytes once encoded for storage.
const LONG_DATABASE: &str = "日本語日本語日本語日本語日本語日本語日本語";

#[test]
fn a_fleet_member_whose_name_overflows_a_file_name_is_refused_before_any_backup() {
    let pg = PgCluster::start();
    pg.psql("postgres", "CREATE DATABASE short");
    pg.psql("postgres", &format!("CREATE DATABASE \"{LONG_DATABASE}\""));
    let fleet = "f".repeat(60);
    let long_member = format!("{fleet}/{LONG_DATABASE}");
    let mut world = World::new();
    world
        .env
        .push(("DR_TEST_PG_URL".into(), pg.superuser_url("postgres")));
    world.write_config(&format!(
        "[objectives]\nrpo = \"1h\"\nrto = \"10m\"\n\n[storage]\nurl = \"file://{}\"\n\n[[postgres]]\nname = \"{fleet}\"\nurl_env = \"DR_TEST_PG_URL\"\ndatabases = \"all\"\nexclude = [\"postgres\"]\n",
        world.storage_dir().display()
    ));

    let check = world.dr(&["check", "--only", "pg.connect", "--format", "json"]);
    check.expect_code(1);
    let report = check.json();
    let findings = report["checks"].as_array().unwrap();
    let long = findings
        .iter()
        .find(|c| c["target"] == long_member.as_str())
        .unwrap_or_else(|| panic!("no finding for the long member: {report}"));
    assert_eq!(long["status"], "fail", "{long}");
    let message = long["message"].as_str().unwrap();
    for needle in ["255 bytes", "exclude", LONG_DATABASE, "hint:"] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    let short = findings
        .iter()
        .find(|c| c["target"] == format!("{fleet}/short").as_str())
        .unwrap();
    assert_eq!(short["status"], "pass", "{short}");

    // The backup: the short member is stored, the long one reported, nothing half-made.
    let backup = world.dr(&["backup", "--format", "json"]);
    backup.expect_code(1);
    assert!(
        !backup.all().contains("File name too long"),
        "{}",
        backup.all()
    );
    assert!(backup.stderr.contains(&long_member), "{}", backup.stderr);
    let stored: Vec<String> = std::fs::read_dir(world.storage_dir().join("backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(stored, vec![format!("{fleet}+short")], "{stored:?}");
    let manifests = support::files_below(&world.storage_dir().join("backups"))
        .into_iter()
        .filter(|p| p.ends_with("manifest.json"))
        .count();
    assert_eq!(manifests, 1);
}

/// A Redis world with `timeout` on its target.
fn redis_world(source: &DataRedis, method: &str, timeout: &str) -> World {
    let mut world = World::new();
    world.env.push(("DR_TEST_REDIS_URL".into(), source.url()));
    world.write_config(&format!(
        "[storage]\nurl = \"file://{}\"\n\n[[redis]]\nname = \"cache\"\nurl_env = \"DR_TEST_REDIS_URL\"\nbackup = true\nmethod = \"{method}\"\ntimeout = \"{timeout}\"\n",
        world.storage_dir().display()
    ));
    world.dr(&["init"]).expect_code(0);
    world
}

/// Waits until `dr backup` holds its lock on the server (it is connected and working),
/// then stalls the server for `secs` with `DEBUG SLEEP`, from a thread of its own.
fn stall_when_locked(source: &DataRedis, secs: u32) -> (Instant, std::thread::JoinHandle<()>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut con = source.con();
    loop {
        let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut con).unwrap();
        if clients.contains("name=dr-backup-cache") {
            break;
        }
        assert!(Instant::now() < deadline, "dr never took its lock");
        std::thread::sleep(Duration::from_millis(5));
    }
    let stalled_at = Instant::now();
    let sleeper = std::thread::spawn(move || {
        let _: redis::RedisResult<String> =
            redis::cmd("DEBUG").arg("SLEEP").arg(secs).query(&mut con);
    });
    (stalled_at, sleeper)
}

#[test]
fn a_redis_that_stalls_mid_backup_fails_it_within_the_timeout() {
    let source = DataRedis::with_config(&["enable-debug-command yes"]);
    load_many(&source, 200_000, 64);
    for method in ["keys", "auto"] {
        let world = redis_world(&source, method, "2s");
        let child = world.spawn(&["backup"]);
        let (stalled_at, sleeper) = stall_when_locked(&source, 20);
        let out = child.wait_with_output().unwrap();
        let took = stalled_at.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("method {method}: failed {took:?} after the stall began");
        assert_eq!(out.status.code(), Some(1), "{method}: {stderr}");
        assert!(
            took < Duration::from_secs(2 + 4),
            "{method}: a stall of a server with timeout = 2s took {took:?} to fail: {stderr}"
        );
        assert!(
            stderr.contains("timeout") && stderr.contains("[[redis]]"),
            "{method}: {stderr}"
        );
        // Nothing half-made is left that could pass for a backup.
        assert!(
            support::files_below(&world.storage_dir().join("backups")).is_empty(),
            "{method}"
        );
        sleeper.join().unwrap();
    }
}

/// A world whose storage is a silent endpoint with the default timeout.
fn silent_s3_world(port: u16, pg: Option<&PgCluster>) -> World {
    let mut world = World::new();
    let storage = format!(
        "[storage]\nurl = \"s3://bucket/prefix\"\n\n[storage.s3]\nendpoint = \"http://127.0.0.1:{port}\"\nregion = \"us-east-1\"\nallow_http = true\naccess_key_id_env = \"K\"\nsecret_access_key_env = \"S\"\n"
    );
    match pg {
        Some(pg) => {
            world.standard_config(pg, "app", "");
            let cfg = std::fs::read_to_string(world.config_path()).unwrap();
            let start = cfg.find("[storage]").unwrap();
            let end = cfg[start..].find("[retention]").unwrap() + start;
            world.write_config(&format!("{}{storage}\n{}", &cfg[..start], &cfg[end..]));
        }
        None => world.write_config(&format!(
            "{storage}\n[[postgres]]\nname = \"main\"\nurl = \"postgres://nobody@127.0.0.1:1/none\"\nwal_archiving = true\n"
        )),
    }
    world.env.push(("K".into(), "key".into()));
    world.env.push(("S".into(), "secretsecret".into()));
    world
}

#[test]
fn a_silent_s3_endpoint_fails_wal_push_wal_fetch_and_backup_within_the_default_timeout() {
    let (_listener, port) = silent_listener();
    let pg = PgCluster::start();
    pg.create_db("app");
    support::load_sample(&pg, "app");
    let world = silent_s3_world(port, None);
    let data = world.tmp_dir().join("data");
    std::fs::create_dir_all(data.join("global")).unwrap();
    std::fs::write(data.join("global/pg_control"), SYSID.to_ne_bytes()).unwrap();
    let seg = synthetic_segment(&data, SYSID, 0x10, 72);
    let name = seg.file_name().unwrap().to_str().unwrap().to_string();
    let dest: PathBuf = world.tmp_dir().join("fetched");
    let backup_world = silent_s3_world(port, Some(&pg));
    let runs: Vec<(&str, &World, Vec<&str>)> = vec![
        ("wal-push", &world, vec!["wal-push", seg.to_str().unwrap()]),
        (
            "wal-fetch",
            &world,
            vec![
                "wal-fetch",
                "--system-id",
                "7000000000000000071",
                &name,
                dest.to_str().unwrap(),
            ],
        ),
        ("backup", &backup_world, vec!["backup"]),
    ];
    for (what, world, args) in runs {
        let run = world.dr(&args);
        eprintln!("{what} against a silent endpoint: {:?}", run.elapsed);
        run.expect_code(1);
        // 10 s per request, retries included, and a little for the process itself.
        assert!(
            run.elapsed < Duration::from_secs(10 + 5),
            "{what} took {:?}: {}",
            run.elapsed,
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!("127.0.0.1:{port}"))
                && run.stderr.contains("within 10s")
                && run.stderr.contains("timeout"),
            "{what}: {}",
            run.stderr
        );
    }
    assert!(!dest.exists());
}

#[test]
fn a_damaged_cluster_record_is_named_not_ignored() {
    let world = World::new();
    world.write_config(&format!(
        "[storage]\nurl = \"file://{}\"\n\n[retention]\nkeep_last = 1\n\n[[postgres]]\nname = \"main\"\nurl = \"postgres://nobody@127.0.0.1:1/none\"\nwal_archiving = true\n",
        world.storage_dir().display()
    ));
    world.dr(&["init"]).expect_code(0);
    let data = world.tmp_dir().join("data");
    std::fs::create_dir_all(data.join("global")).unwrap();
    std::fs::write(data.join("global/pg_control"), SYSID.to_ne_bytes()).unwrap();
    let first = synthetic_segment(&data, SYSID, 0x10, 73);
    world
        .dr(&["wal-push", first.to_str().unwrap()])
        .expect_code(0);
    let record = world
        .storage_dir()
        .join(format!("wal/main/{SYSID}/cluster.json"));
    let good = std::fs::read_to_string(&record).unwrap();
    assert!(good.contains(&SYSID.to_string()), "{good}");

    for (round, damage) in [
        "{\"format_version\": 1, \"target\": \"main\"".to_string(),
        good.replace(&SYSID.to_string(), "42"),
    ]
    .into_iter()
    .enumerate()
    {
        std::fs::write(&record, &damage).unwrap();
        // wal-fetch without --system-id takes the cluster from the records: refused, named.
        let dest = world.tmp_dir().join("fetched");
        let name = first.file_name().unwrap().to_str().unwrap();
        let fetch = world.dr(&["wal-fetch", name, dest.to_str().unwrap()]);
        fetch.expect_code(1);
        let key = format!("wal/main/{SYSID}/cluster.json");
        for needle in [key.as_str(), "damaged", "hint:"] {
            assert!(fetch.stderr.contains(needle), "{needle}: {}", fetch.stderr);
        }
        assert!(!dest.exists());
        // Archiving goes on (PostgreSQL must not fill pg_wal over a metadata file), and the
        // server's log names the record; the record is left as it is for inspection. (The
        // record is read with the first segment of each directory: a new log number.)
        let next = synthetic_segment(&data, SYSID, 0x100 * (round as u64 + 1), 74);
        let push = world.dr(&["wal-push", next.to_str().unwrap()]);
        push.expect_code(0);
        assert!(
            push.stderr.contains("cluster.json") && push.stderr.contains("damaged"),
            "{}",
            push.stderr
        );
        assert_eq!(std::fs::read_to_string(&record).unwrap(), damage);
        std::fs::remove_file(&next).unwrap();
        let _ = std::fs::remove_file(
            stored_wal(&world.storage_dir())
                .into_iter()
                .find(|(n, _, _)| n.as_str() == next.file_name().unwrap().to_str().unwrap())
                .unwrap()
                .2,
        );
    }
}
