//! A streaming standby of a test cluster: `pg_basebackup -R` from the primary over its
//! socket, started on its own port, stopped on drop like any [`PgCluster`].
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use super::{free_port, PgCluster};

pub fn standby_of(primary: &PgCluster) -> PgCluster {
    let dir = tempfile::Builder::new()
        .prefix("dr-test-standby-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    if primary.run_as_postgres {
        let st = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success());
    }
    let standby = PgCluster {
        dir,
        port: free_port(),
        bin: primary.bin.clone(),
        run_as_postgres: primary.run_as_postgres,
    };
    let data = standby.data_dir();
    let port = primary.port.to_string();
    standby.run(
        "pg_basebackup",
        &[
            "-D",
            data.to_str().unwrap(),
            "-R",
            "--wal-method=stream",
            "--checkpoint=fast",
            "--no-sync",
            "-h",
            primary.socket_dir().to_str().unwrap(),
            "-p",
            &port,
            "-U",
            "postgres",
        ],
    );
    standby.start_server();
    standby
}
