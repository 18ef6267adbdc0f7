//! The real `dr` binary against a real PostgreSQL and a real S3 server (s3s-fs, which
//! checks SigV4 signatures) on loopback: backup, list, validate, restore, check, prune,
//! multipart uploads with bounded memory, a server lost mid-upload, and error messages.

mod support;

use support::OutputLimited;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::s3::S3Server;
use support::{files_below, PgCluster, Run, World};

const PREFIX: &str = "team/prod";
const MIB: u64 = 1024 * 1024;

/// A world whose dr.toml points at `storage_toml` (a `[storage]` + `[storage.s3]` table)
/// and at database `db` of `pg`; the S3 credentials of `server` are in its environment.
fn s3_world(pg: &PgCluster, db: &str, server: &S3Server, storage_toml: &str, extra: &str) -> World {
    let mut world = World::new();
    world.env.extend(server.env());
    world
        .env
        .push(("DR_TEST_PG_URL".to_string(), pg.superuser_url(db)));
    world.write_config(&format!(
        r#"
[objectives]
rpo = "1h"
rto = "10m"

{storage_toml}

[retention]
keep_last = 1

[[postgres]]
name = "main"
url_env = "DR_TEST_PG_URL"
{extra}
"#
    ));
    world
}

fn standard(pg: &PgCluster, server: &S3Server, extra: &str) -> World {
    s3_world(pg, "app", server, &server.config_toml(PREFIX), extra)
}

fn set_env(world: &mut World, key: &str, value: &str) {
    world.env.retain(|(k, _)| k != key);
    world.env.push((key.to_string(), value.to_string()));
}

/// The on-server key of one file of a backup (below the configured prefix).
fn object_key(manifest: &serde_json::Value, file: &str) -> String {
    format!(
        "{PREFIX}/backups/{}/{}/{file}",
        manifest["target"].as_str().unwrap(),
        manifest["id"].as_str().unwrap()
    )
}

fn dump_file(manifest: &serde_json::Value) -> String {
    manifest["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["role"] == "dump")
        .unwrap_or_else(|| panic!("no dump object in {manifest}"))["file"]
        .as_str()
        .unwrap()
        .to_string()
}

fn listed_ids(world: &World) -> Vec<String> {
    let run = world.dr(&["list", "--format", "json"]);
    run.expect_code(0);
    run.json()["backups"]
        .as_array()
        .unwrap_or_else(|| panic!("list is not an array: {}", run.stdout))
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

fn count(pg: &PgCluster, db: &str, table: &str) -> i64 {
    pg.psql(db, &format!("SELECT count(*) FROM {table}"))
        .parse()
        .unwrap()
}

/// Incompressible data: about 144 bytes per row in a dump (the bytea goes out as hex).
fn make_big(pg: &PgCluster, rows: u32) {
    pg.psql(
        "app",
        &format!(
            "CREATE TABLE public.big AS SELECT i, decode(md5(i::text)||md5((i*7)::text)||md5((i*13)::text)||md5((i*31)::text),'hex') AS b FROM generate_series(1, {rows}) i"
        ),
    );
}

fn sample_app() -> PgCluster {
    let pg = PgCluster::start();
    pg.create_db("app");
    support::load_sample(&pg, "app");
    pg
}

#[test]
fn backup_list_validate_restore_and_check_on_s3() {
    let server = S3Server::start();
    let pg = sample_app();
    let mut world = standard(&pg, &server, "");

    let m = world.backup();
    let id = m["id"].as_str().unwrap().to_string();

    // The manifest's row counts are the database's.
    let tables = m["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 3, "{m}");
    for t in tables {
        let table = format!(
            "\"{}\".\"{}\"",
            t["schema"].as_str().unwrap(),
            t["name"].as_str().unwrap()
        );
        assert_eq!(
            t["rows"].as_i64().unwrap(),
            count(&pg, "app", &table),
            "{table}"
        );
    }

    // The objects really are on the S3 server, below the prefix, with the stated size.
    let dump_key = object_key(&m, &dump_file(&m));
    let dump_on_server = server.object_path(&dump_key);
    assert_eq!(
        std::fs::metadata(&dump_on_server)
            .unwrap_or_else(|e| panic!("{}: {e}", dump_on_server.display()))
            .len(),
        dump_object_size(&m)
    );
    assert_eq!(
        support::sha256sum(&dump_on_server),
        m["sha256"].as_str().unwrap()
    );
    let manifest_on_server = server.object_path(&object_key(&m, "manifest.json"));
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_on_server).unwrap()).unwrap();
    assert_eq!(stored["id"], m["id"]);

    // list shows it.
    assert_eq!(listed_ids(&world), vec![id.clone()]);

    // validate reads it back from S3.
    let v = world.dr(&["validate", "--backup-id", &id]);
    v.expect_code(0);

    // restore into a fresh database.
    pg.create_db("copy");
    world.set_env("DR_TEST_INTO", &pg.superuser_url("copy"));
    let run = world.dr(&[
        "restore",
        "--backup-id",
        &id,
        "--into-env",
        "DR_TEST_INTO",
        "--format",
        "json",
    ]);
    run.expect_code(0);
    let report = run.json();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["verification"]["ok"], true, "{report}");
    for table in [
        "public.ten",
        "sales.orders",
        "\"Mixed Case\".\"Quoted Table\"",
    ] {
        let (src, dst) = (count(&pg, "app", table), count(&pg, "copy", table));
        assert!(src > 0, "{table} is empty in the source");
        assert_eq!(src, dst, "{table}");
    }
    assert_eq!(
        pg.psql("copy", "SELECT sum(amount) FROM sales.orders"),
        pg.psql("app", "SELECT sum(amount) FROM sales.orders")
    );

    // The readiness checks pass against S3.
    let check = world.dr(&[
        "check",
        "--only",
        "storage.writable",
        "--only",
        "backup",
        "--format",
        "json",
    ]);
    check.expect_code(0);
    let report = check.json();
    assert_eq!(report["ready"], true, "{report}");
    let checks = report["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"storage.writable"), "{names:?}");
    assert!(names.contains(&"backup.latest"), "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| *n == "storage.writable" || n.starts_with("backup.")),
        "{names:?}"
    );
    for c in checks {
        assert_eq!(c["status"], "pass", "{c}");
    }
    for r in [&v, &run, &check] {
        assert!(!r.all().contains(&server.secret_key), "{}", r.all());
    }
}

/// Peak RSS of `dr <args>` in KiB, measured by GNU time.
fn dr_under_time(world: &World, args: &[&str]) -> (Run, u64) {
    let time = Path::new("/usr/bin/time");
    assert!(
        time.exists(),
        "/usr/bin/time is missing (needed to measure memory): apt-get install time"
    );
    let report = world.dir.path().join("time-report");
    let dr_cmd = world.command(args);
    let mut cmd = Command::new(time);
    cmd.arg("-v")
        .arg("-o")
        .arg(&report)
        .arg(dr_cmd.get_program());
    cmd.args(dr_cmd.get_args());
    for (k, v) in dr_cmd.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.stdin(Stdio::null());
    let started = Instant::now();
    let out = cmd.output_limited().unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    };
    let text = std::fs::read_to_string(&report).unwrap();
    let kib = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes):")
                .map(|v| v.trim().parse::<u64>().unwrap())
        })
        .unwrap_or_else(|| panic!("no peak RSS in /usr/bin/time output:\n{text}"));
    (run, kib)
}

#[test]
fn large_object_goes_up_as_multipart_with_bounded_memory() {
    let server = S3Server::start();
    let pg = PgCluster::start();
    pg.create_db("app");
    make_big(&pg, 1_000_000);
    let world = standard(&pg, &server, "\n[backup]\ncompression = \"none\"\n");

    let (run, rss_kib) = dr_under_time(&world, &["backup", "--format", "json"]);
    run.expect_code(0);
    println!(
        "dr backup of {} to S3: peak RSS {} KiB ({:.1} MiB) in {:.1} s",
        pg.psql(
            "app",
            "SELECT pg_size_pretty(pg_total_relation_size('public.big'))"
        ),
        rss_kib,
        rss_kib as f64 / 1024.0,
        run.elapsed.as_secs_f64()
    );
    let m = run.json()["backups"][0].clone();
    // The dump object's own size: size_bytes of the backup adds the roles (globals).
    let size = dump_object_size(&m);
    println!(
        "stored dump: {size} bytes ({:.1} MiB)",
        size as f64 / MIB as f64
    );
    assert!(size > 100 * MIB, "dump is only {size} bytes: {m}");
    assert!(
        rss_kib < 200 * 1024,
        "peak RSS {rss_kib} KiB is not below 200 MiB for a {size}-byte upload"
    );
    assert_eq!(m["compression"], "none");

    let path = server.object_path(&object_key(&m, &dump_file(&m)));
    let on_server = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len();
    assert_eq!(on_server, size);
    assert_eq!(support::sha256sum(&path), m["sha256"].as_str().unwrap());
    // The multipart upload completed: no parts are left behind.
    assert!(
        server.pending_uploads().is_empty(),
        "{:?}",
        server.pending_uploads()
    );
    assert_eq!(
        m["tables"][0]["rows"].as_i64().unwrap(),
        1_000_000,
        "{}",
        m["tables"]
    );
}

#[test]
fn server_stopped_mid_upload_leaves_no_backup() {
    let mut server = S3Server::start();
    let pg = PgCluster::start();
    pg.create_db("app");
    make_big(&pg, 800_000);
    let world = standard(&pg, &server, "\n[backup]\ncompression = \"none\"\n");
    // Small parts, one at a time, so that the upload lasts.
    let cfg = std::fs::read_to_string(world.config_path())
        .unwrap()
        .replace(
            "allow_http = true",
            "allow_http = true\npart_size_mib = 5\nupload_concurrency = 1",
        );
    world.write_config(&cfg);

    let out_path = world.dir.path().join("backup.out");
    let err_path = world.dir.path().join("backup.err");
    let mut child = world
        .command(&["backup", "--format", "json"])
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();

    // Wait until parts of a multipart upload are on the server.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if !server.pending_uploads().is_empty() {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "dr backup ended ({status}) before the multipart upload was seen; stderr: {}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no multipart upload under way after 120 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    server.stop();

    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dr backup still running 180 s after the S3 server stopped");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    println!("dr backup after the S3 server stopped: {status}; stderr:\n{stderr}");
    assert_eq!(
        status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // The error line names storage as the cause, not pg_dump's SIGPIPE that followed it.
    let error_line = stderr
        .lines()
        .find(|l| l.starts_with("error: backup of main failed"))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(
        error_line.contains(&server.endpoint) && error_line.contains("storage failed"),
        "the error names the endpoint and storage as the cause: {error_line}"
    );
    assert!(!stderr.contains(&server.secret_key) && !stdout.contains(&server.secret_key));

    server.restart();
    let manifests: Vec<PathBuf> = files_below(&server.dir.join(&server.bucket))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "manifest.json"))
        .collect();
    assert!(manifests.is_empty(), "{manifests:?}");
    assert_eq!(listed_ids(&world), Vec::<String>::new());
    let list = world.dr(&["list", "--format", "json"]);
    list.expect_code(0);
    assert_eq!(list.json()["backups"], serde_json::json!([]));
}

#[track_caller]
fn assert_fails_naming(run: &Run, needle: &str, secrets: &[&str]) {
    run.expect_code(1);
    assert!(
        run.stderr.to_lowercase().contains(&needle.to_lowercase()),
        "stderr does not name {needle:?}:\n{}",
        run.stderr
    );
    for s in secrets {
        assert!(
            !run.all().contains(s),
            "secret {s:?} leaked:\n{}",
            run.all()
        );
    }
}

#[test]
fn wrong_credentials_missing_bucket_and_unreachable_endpoint_are_named() {
    let server = S3Server::start();
    let pg = sample_app();
    let wrong = "wrong-Secret-Zq81xPv";
    let secrets = [wrong, server.secret_key.as_str()];

    // Wrong secret: access denied, for list and backup; nothing is stored.
    let mut world = standard(&pg, &server, "");
    set_env(&mut world, "DR_TEST_S3_SECRET", wrong);
    let run = world.dr(&["list"]);
    assert_fails_naming(&run, "access denied", &secrets);
    assert!(run.stderr.contains(&server.bucket), "{}", run.stderr);
    let run = world.dr(&["backup"]);
    assert_fails_naming(&run, "access denied", &secrets);
    assert!(
        files_below(&server.dir.join(&server.bucket)).is_empty(),
        "{:?}",
        files_below(&server.dir.join(&server.bucket))
    );
    // The right secret works (so the failure above was the secret).
    set_env(&mut world, "DR_TEST_S3_SECRET", &server.secret_key.clone());
    world.dr(&["list"]).expect_code(0);

    // A bucket that does not exist (s3s-fs would create it on PUT, so list).
    let missing = "no-such-bucket-7731";
    let toml = server.config_toml(PREFIX).replace(
        &format!("s3://{}/", server.bucket),
        &format!("s3://{missing}/"),
    );
    assert!(toml.contains(missing), "{toml}");
    let world = s3_world(&pg, "app", &server, &toml, "");
    let run = world.dr(&["list"]);
    assert_fails_naming(&run, missing, &secrets);
    assert!(!server.dir.join(missing).exists());

    // Nothing listens on the endpoint.
    let closed = support::free_port();
    let toml = server
        .config_toml(PREFIX)
        .replace(&server.endpoint, &format!("http://127.0.0.1:{closed}"));
    let world = s3_world(&pg, "app", &server, &toml, "");
    let run = world.dr(&["list"]);
    assert_fails_naming(&run, "cannot reach endpoint", &secrets);
    assert!(
        run.stderr.contains(&format!("127.0.0.1:{closed}")),
        "{}",
        run.stderr
    );
    assert!(
        run.elapsed < Duration::from_secs(60),
        "took {:?}",
        run.elapsed
    );
}

#[test]
fn prune_on_s3_removes_old_backups_and_their_objects() {
    let server = S3Server::start();
    let pg = sample_app();
    let world = standard(&pg, &server, "");
    let mut manifests = vec![];
    for _ in 0..3 {
        manifests.push(world.backup());
        // Distinct ids (second resolution at worst).
        std::thread::sleep(Duration::from_millis(1100));
    }
    let ids: Vec<String> = manifests
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed_ids(&world).len(), 3);
    let backup_dirs = |id: &str| server.object_path(&format!("{PREFIX}/backups/main/{id}"));
    for (m, id) in manifests.iter().zip(&ids) {
        assert!(server.object_path(&object_key(m, &dump_file(m))).is_file());
        assert!(!files_below(&backup_dirs(id)).is_empty());
    }

    let run = world.dr(&["prune", "--format", "json"]);
    run.expect_code(0);
    let entries = run.json()["backups"].as_array().unwrap().clone();
    let removed: Vec<&str> = entries
        .iter()
        .filter(|e| e["action"] == "remove")
        .map(|e| e["backup_id"].as_str().unwrap())
        .collect();
    let kept: Vec<&str> = entries
        .iter()
        .filter(|e| e["action"] == "keep")
        .map(|e| e["backup_id"].as_str().unwrap())
        .collect();
    assert_eq!(removed.len(), 2, "{entries:?}");
    assert!(removed.contains(&ids[0].as_str()) && removed.contains(&ids[1].as_str()));
    assert_eq!(kept, vec![ids[2].as_str()]);

    // The removed backups left no objects on the server; the newest is whole.
    for (m, id) in manifests.iter().zip(&ids).take(2) {
        let left = files_below(&backup_dirs(id));
        assert!(left.is_empty(), "{id} left {left:?}");
        assert!(!server.object_path(&object_key(m, &dump_file(m))).exists());
    }
    let newest = &manifests[2];
    let dump = server.object_path(&object_key(newest, &dump_file(newest)));
    assert_eq!(
        support::sha256sum(&dump),
        newest["sha256"].as_str().unwrap()
    );
    assert!(server
        .object_path(&object_key(newest, "manifest.json"))
        .is_file());
    assert_eq!(listed_ids(&world), vec![ids[2].clone()]);
    world
        .dr(&["validate", "--backup-id", &ids[2]])
        .expect_code(0);
}

/// The stored size of a backup's dump object (a backup's `size_bytes` counts every object).
fn dump_object_size(m: &serde_json::Value) -> u64 {
    m["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["role"] == "dump")
        .unwrap()["size_bytes"]
        .as_u64()
        .unwrap()
}
