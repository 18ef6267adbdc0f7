//! A throwaway PostgreSQL cluster on a free loopback port, for `dr drill --sandbox` and
//! `dr demo`. It is stopped and its directory removed on drop: normal end, error or Ctrl-C.
//! As root, the server runs as the `postgres` OS user (initdb refuses root).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::process::ChildCommand;

pub struct SandboxCluster {
    dir: Option<tempfile::TempDir>,
    registered: Option<crate::leftovers::Registered>,
    bin_dir: PathBuf,
    run_as: Option<String>,
    pub port: u16,
    /// Superuser URL, with its (random) password.
    pub url: String,
}

impl SandboxCluster {
    /// Blocking: runs initdb and pg_ctl. Call from `spawn_blocking` in async code.
    pub fn start(pg_bin_dir: Option<&Path>) -> Result<SandboxCluster> {
        let bin_dir = crate::pg::tools::find_server_bin_dir(pg_bin_dir)?;
        let run_as = if nix::unistd::Uid::effective().is_root() {
            Some("postgres".to_string())
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("dr-sandbox-")
            .tempdir()
            .context("cannot create the sandbox directory")?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        if let Some(user) = &run_as {
            let pw = nix::unistd::User::from_name(user)?
                .with_context(|| format!("running as root, the sandbox needs the {user} OS user (initdb refuses root); hint: install the postgresql package, which creates it"))?;
            nix::unistd::chown(dir.path(), Some(pw.uid), Some(pw.gid))?;
        }
        let password = random_hex(16)?;
        let pwfile = dir.path().join("pwfile");
        {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&pwfile)?;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            writeln!(f, "{password}")?;
        }
        if let Some(user) = &run_as {
            let pw = nix::unistd::User::from_name(user)?
                .with_context(|| format!("there is no OS user {user}"))?;
            nix::unistd::chown(&pwfile, Some(pw.uid), Some(pw.gid))?;
        }
        let port = free_port()?;
        let cluster = SandboxCluster {
            registered: Some(crate::leftovers::register(
                crate::leftovers::Resource::Sandbox {
                    dir: dir.path().to_path_buf(),
                },
            )),
            dir: Some(dir),
            bin_dir,
            run_as,
            port,
            url: format!("postgres://dr:{password}@127.0.0.1:{port}/postgres"),
        };
        let data = cluster.path().join("data");
        cluster.run(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                "dr",
                "--auth=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        std::fs::remove_file(&pwfile).ok();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            cluster.path().display()
        );
        cluster.run(
            "pg_ctl",
            &[
                "-D",
                &data.display().to_string(),
                "-l",
                &cluster.path().join("log").display().to_string(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )?;
        Ok(cluster)
    }

    pub fn path(&self) -> &Path {
        // `dir` is taken only in drop.
        #[allow(clippy::expect_used)]
        let dir = self.dir.as_ref().expect("sandbox directory");
        dir.path()
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<()> {
        let result = ChildCommand::new(self.bin_dir.join(program), program)
            .args(args)
            .run_as(self.run_as.as_deref())
            .current_dir(self.path())
            .output_blocking();
        if let Err(e) = result {
            let log = std::fs::read_to_string(self.path().join("log")).unwrap_or_default();
            bail!(
                "{e:#} (sandbox cluster log: {})",
                log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
            );
        }
        Ok(())
    }

    /// Stops the server now (immediate mode) and removes its directory.
    pub fn stop(&mut self) {
        if self.dir.is_none() {
            return;
        }
        let data = self.path().join("data");
        if data.join("postmaster.pid").exists() {
            if let Err(e) = self.run(
                "pg_ctl",
                &[
                    "-D",
                    &data.display().to_string(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            ) {
                tracing::warn!("cannot stop the sandbox cluster: {e:#}");
            }
        }
        self.dir = None;
        self.registered = None;
    }
}

impl Drop for SandboxCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn free_port() -> Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

pub(crate) fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(hex::encode(buf))
}
