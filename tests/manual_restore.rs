//! docs/src/manual-restore.md ("Restoring without dr"), run as written: the two blocks restore an encrypted
//! dump and an encrypted base backup with its archived WAL using only age, zstd, jq,
//! sha256sum, tar and PostgreSQL's programs. The first line of each block (what the reader
//! fills in) is replaced; the rest runs unchanged.

mod support;

use std::path::Path;
use std::process::Command;

use support::pitr::{psql_port, restore_dir, time_between_writes, write_rows, RestoredServer};
use support::wal::{age_keygen, archiving_cluster, switch_wal, wait_archived, ArchiveSetup};
use support::{free_port, pg_bin_dir, PgCluster};

/// The shell block of docs/src/manual-restore.md that follows `<!-- manual:NAME -->`, without its first line.
fn guide_block(name: &str) -> String {
    let guide = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/src/manual-restore.md"
    ))
    .unwrap();
    let marker = format!("<!-- manual:{name} -->\n```sh\n");
    let start = guide.find(&marker).unwrap_or_else(|| panic!("no {marker}")) + marker.len();
    let body = &guide[start..];
    let body = &body[..body.find("\n```").unwrap()];
    let (first, rest) = body.split_once('\n').unwrap();
    assert!(first.starts_with("STORAGE="), "{first}");
    rest.to_string()
}

/// Runs `script` with `sh`, with PostgreSQL's programs on PATH; returns (success, output).
fn run_sh(script: &str, user: Option<&str>) -> (bool, String) {
    let path = format!(
        "{}:{}",
        pg_bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = match user.filter(|_| support::is_root()) {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--", "sh", "-c", script]);
            c
        }
        None => {
            let mut c = Command::new("sh");
            c.args(["-c", script]);
            c
        }
    };
    let out = cmd.env("PATH", path).current_dir("/").output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn quoted(path: &Path) -> String {
    format!("'{}'", path.display())
}

#[test]
fn an_encrypted_dump_restores_by_hand_as_the_readme_says() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = age_keygen(keys.path(), "team.key");
    let (source, world) =
        support::sample_world(&format!("\n[encryption]\nrecipients = [\"{public}\"]\n"));
    let m = world.backup();
    let id = m["id"].as_str().unwrap();
    assert!(m["objects"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["role"] == "globals"));
    let destination = PgCluster::start();
    let script = format!(
        "STORAGE={} TARGET=main ID={id} KEY={} ADMIN_URL='{}' DB=app\n{}",
        quoted(&world.storage_dir()),
        quoted(&key),
        destination.superuser_url("postgres"),
        guide_block("dump")
    );
    let (ok, output) = run_sh(&script, None);
    assert!(ok, "{output}");
    assert_eq!(
        destination.dump_text("app", &[]),
        source.dump_text("app", &[]),
        "the hand-restored database differs from its source"
    );

    // A stored byte changed: the checksum line stops the block before anything is created.
    let stored = world.dump_path(&m);
    let mut bytes = std::fs::read(&stored).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&stored, bytes).unwrap();
    let again = PgCluster::start();
    let script = format!(
        "STORAGE={} TARGET=main ID={id} KEY={} ADMIN_URL='{}' DB=app\n{}",
        quoted(&world.storage_dir()),
        quoted(&key),
        again.superuser_url("postgres"),
        guide_block("dump")
    );
    let (ok, output) = run_sh(&script, None);
    assert!(!ok, "{output}");
    assert!(output.contains("FAILED"), "{output}");
    assert!(!again.databases().contains(&"app".to_string()));
}

#[test]
fn a_base_backup_and_its_wal_restore_by_hand_to_a_time_as_the_readme_says() {
    let (pg, world) = archiving_cluster(ArchiveSetup {
        initdb_args: &["--wal-segsize=1"],
        extra_toml: "",
        ..Default::default()
    });
    // Encryption switched on before anything is stored; the key where postgres reads it.
    let (key, public) = age_keygen(world.dir.path(), "team.key");
    support::archive::give_to_postgres(&key);
    let config = std::fs::read_to_string(world.config_path()).unwrap();
    world.write_config(&format!(
        "{config}\n[encryption]\nrecipients = [\"{public}\"]\nidentity_file = \"team.key\"\n"
    ));
    pg.psql(
        "app",
        "CREATE TABLE events (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(), note text)",
    );
    support::pitr::base_backup(&world);
    let list = world
        .dr(&["list", "--target", "main", "--format", "json"])
        .json();
    let id = list["backups"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(list["backups"][0]["encryption"], "age", "{list}");
    let before = write_rows(&pg, 3, "before");
    let time = time_between_writes(&pg);
    write_rows(&pg, 3, "after");
    let last = switch_wal(&pg);
    wait_archived(&pg, &last);

    let dir = restore_dir(&world, "by-hand");
    let port = free_port();
    let _server = RestoredServer {
        dir: dir.clone(),
        port,
    };
    // PostgreSQL's own form, as the guide writes it (it refuses ISO 8601's T and Z).
    let time = time.replace('T', " ").replace('Z', "+00");
    let script = format!(
        "STORAGE={} TARGET=main ID={id} KEY={} PGDATA={} PORT={port} TIME='{time}'\n{}",
        quoted(&world.storage_dir()),
        quoted(&key),
        quoted(&dir),
        guide_block("physical")
    );
    // As root, as the guide says: the server itself runs as postgres (runuser).
    assert!(support::is_root(), "the block runs as root");
    let (ok, output) = run_sh(&script, None);
    let server_log = std::fs::read_to_string(format!("{}.log", dir.display())).unwrap_or_default();
    assert!(ok, "{output}\nserver log:\n{server_log}");
    // Promoted at the target: the rows before it, none after.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while psql_port(port, "postgres", "SELECT pg_is_in_recovery()") == "t" {
        assert!(std::time::Instant::now() < deadline, "never promoted");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let ids: Vec<i64> =
        support::pitr::ids(&psql_port(port, "app", "SELECT id FROM events ORDER BY id"));
    assert_eq!(ids, before);
    let log = std::fs::read_to_string(format!("{}.log", dir.display())).unwrap();
    assert!(log.contains("recovery stopping before commit"), "{log}");
}
