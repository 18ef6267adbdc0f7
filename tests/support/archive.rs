//! Helpers for the tests of `dr check` and `dr prune` around point-in-time restores: a
//! second cluster archiving into a world's storage under the same target name, base
//! backups that return their manifest, and storage surgery on archived segments.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use super::wal::stored_wal;
use super::{is_root, PgCluster, World};

/// A second cluster (1 MiB segments, database `app`, table `events`) whose
/// archive_command pushes into `world`'s storage with `world`'s dr.toml: so it archives
/// under the same target name as the world's own cluster, with its own system identifier.
pub fn second_archiving_cluster(world: &World) -> PgCluster {
    let pg = PgCluster::start_with(super::free_port(), &["--wal-segsize=1"]);
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE events (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(), note text)",
    );
    let command = format!(
        "{} --config {} wal-push %p",
        env!("CARGO_BIN_EXE_dr"),
        world.config_path().display()
    );
    let conf = pg.data_dir().join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(&format!(
        "\nwal_level = replica\narchive_mode = on\narchive_command = '{command}'\narchive_timeout = '5min'\nmax_wal_senders = 4\nwal_keep_size = '2GB'\nmax_wal_size = '2GB'\n"
    ));
    std::fs::write(&conf, text).unwrap();
    pg.stop_server();
    pg.start_server();
    pg
}

/// `dr backup --physical --target main`, which must succeed; returns the new manifest.
pub fn base_backup_json(world: &World) -> serde_json::Value {
    let run = world.dr(&[
        "backup",
        "--physical",
        "--target",
        "main",
        "--format",
        "json",
    ]);
    run.expect_code(0);
    run.json()["backups"][0].clone()
}

/// `dr backup --physical --target main` of whatever `DR_TEST_PG_URL` points at (the
/// world's cluster, or `url` instead); returns the new backup's manifest.
pub fn physical_backup_of(world: &mut World, url: Option<String>) -> serde_json::Value {
    if let Some(url) = &url {
        world.env.push(("DR_TEST_PG_URL".into(), url.clone()));
    }
    let manifest = base_backup_json(world);
    if url.is_some() {
        world.env.pop();
    }
    manifest
}

/// Stored archived segments (no history or backup history files) of any cluster, by name.
pub fn stored_segments(world: &World) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = stored_wal(&world.storage_dir())
        .into_iter()
        .filter(|(n, _, _)| n.len() == 24)
        .map(|(n, _, p)| (n, p))
        .collect();
    out.sort();
    out
}

/// Removes from storage every archived segment from `first` on (same timeline): WAL a
/// base backup starting at `first` needs, lost. Returns the names removed.
pub fn lose_segments_from(world: &World, first: &str) -> Vec<String> {
    let mut lost = Vec::new();
    for (name, path) in stored_segments(world) {
        if name[..8] == first[..8] && name.as_str() >= first {
            std::fs::remove_file(&path).unwrap();
            lost.push(name);
        }
    }
    assert!(!lost.is_empty(), "no segment from {first} on is stored");
    lost
}

/// `[retention] keep_last = N` in the world's dr.toml (archiving worlds start with 1).
pub fn set_keep_last(world: &World, n: u32) {
    let text = std::fs::read_to_string(world.config_path()).unwrap();
    assert!(text.contains("keep_last = 1"), "{text}");
    let text = text.replace("keep_last = 1", &format!("keep_last = {n}"));
    std::fs::write(world.config_path(), text).unwrap();
}

/// chown to `postgres:postgres` (when root), so the server's OS user can read it.
pub fn give_to_postgres(path: &std::path::Path) {
    if is_root() {
        let st = Command::new("chown")
            .arg("postgres:postgres")
            .arg(path)
            .status()
            .unwrap();
        assert!(st.success());
    }
}
