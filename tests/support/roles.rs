//! Logging in as a given role over TCP with its password, as an application would: the
//! proof that a restored role can log in.

use std::process::{Command, Output};

use super::PgCluster;

/// Runs `sql` in `db` as `user` with `password` over TCP (password authentication).
pub fn psql_as(pg: &PgCluster, user: &str, password: &str, db: &str, sql: &str) -> Output {
    Command::new(pg.bin("psql"))
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
        ])
        .args(["-p", &pg.port.to_string(), "-U", user, "-d", db, "-c", sql])
        .env("PGPASSWORD", password)
        .env_remove("PGPASSFILE")
        .output()
        .unwrap()
}

/// Like [`psql_as`], asserting success; returns the unaligned rows.
#[track_caller]
pub fn query_as(pg: &PgCluster, user: &str, password: &str, db: &str, sql: &str) -> String {
    let out = psql_as(pg, user, password, db, sql);
    assert!(
        out.status.success(),
        "{user} cannot run {sql:?} in {db}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
