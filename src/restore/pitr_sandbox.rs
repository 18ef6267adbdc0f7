//! The throwaway data directory of a point-in-time restore nobody keeps: a drill's, or the
//! one a single table is copied out of. Registered as a leftover, so a killed dr's is
//! removed by the next run; the server is stopped and the directory removed on drop.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};

use super::recovery::RunningServer;
use crate::process::ChildCommand;

/// The sandbox directory: the server is stopped and the directory removed on drop.
pub struct Sandbox {
    dir: Option<tempfile::TempDir>,
    _registered: crate::leftovers::Registered,
    pub server: Option<RunningServer>,
}

impl Sandbox {
    pub fn new() -> Result<Sandbox> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("dr-sandbox-")
            .tempdir()
            .context("cannot create the sandbox directory")?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        if nix::unistd::Uid::effective().is_root() {
            let pw = nix::unistd::User::from_name("postgres")?
                .context("running as root, the sandbox needs the postgres OS user (PostgreSQL refuses root); hint: install the postgresql package, which creates it")?;
            nix::unistd::chown(dir.path(), Some(pw.uid), Some(pw.gid))?;
        }
        Ok(Sandbox {
            _registered: crate::leftovers::register(crate::leftovers::Resource::Sandbox {
                dir: dir.path().to_path_buf(),
            }),
            dir: Some(dir),
            server: None,
        })
    }

    pub fn path(&self) -> &Path {
        // `dir` is taken only in drop.
        #[allow(clippy::expect_used)]
        let dir = self.dir.as_ref().expect("until dropped");
        dir.path()
    }

    pub fn data(&self) -> PathBuf {
        self.path().join("data")
    }

    /// Stops the server (immediate) and removes the directory.
    pub fn remove(&mut self) {
        if self.dir.is_none() {
            return;
        }
        let data = self.data();
        if data.join("postmaster.pid").exists() {
            let stopped = match self.server.take() {
                Some(server) => ChildCommand::new(server.bin_dir.join("pg_ctl"), "pg_ctl")
                    .arg("-D")
                    .arg(&data)
                    .args(["-m", "immediate", "-w", "stop"])
                    .run_as(server.run_as.as_deref())
                    .output_blocking()
                    .map(|_| ()),
                None => Err(anyhow!("interrupted before the server was handed over")),
            };
            if stopped.is_err() {
                // Interrupted during recovery, or pg_ctl failed: the postmaster's pid file.
                crate::leftovers::stop_postmaster(self.path());
            }
        }
        self.dir = None;
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.remove();
    }
}
