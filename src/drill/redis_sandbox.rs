//! A throwaway `redis-server` on a free loopback port, for Redis drills: the Redis that
//! `dr` can (re)start with an RDB file in place. Its password is random and travels in a
//! 0600 configuration file, never in argv; the server is killed and its directory removed
//! when the sandbox is dropped (normal end, error or Ctrl-C).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::redis_client::conn::RedisEndpoint;

/// Fields drop in order: the server is killed, then its directory removed, then the record
/// that would let the next `dr` do both is forgotten.
pub struct RedisSandbox {
    child: Option<tokio::process::Child>,
    dir: tempfile::TempDir,
    _registered: crate::leftovers::Registered,
    binary: PathBuf,
    pub port: u16,
    pub endpoint: RedisEndpoint,
}

/// The `redis-server` to use: the configured one, else the one on PATH.
pub fn find_binary(configured: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = configured {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!(
            "redis_server = {:?} does not exist; hint: point it at a redis-server binary, or remove the key to use the one on PATH",
            p.display()
        );
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!("redis-server not found on PATH: a Redis drill restores into a throwaway local server; hint: apt-get install redis-server (its version must load the backup), or set redis_server in the [[redis]] table")
        })
}

/// `redis-server --version` → `7.0.15`.
pub async fn version(binary: &Path) -> Result<String> {
    let out = tokio::process::Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {} --version", binary.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{} --version printed {:?}", binary.display(), text.trim()))
}

impl RedisSandbox {
    /// Prepares the directory and configuration; [`RedisSandbox::start`] starts the server,
    /// loading [`RedisSandbox::rdb_path`] if a file was put there.
    pub fn create(binary: PathBuf, databases: u32) -> Result<RedisSandbox> {
        let dir = tempfile::Builder::new()
            .prefix("dr-redis-sandbox-")
            .tempdir()
            .context("cannot create the sandbox directory")?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        let password = crate::sandbox::random_hex(16)?;
        let port = crate::sandbox::free_port()?;
        let config = format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode yes\ndaemonize no\ndir {}\ndbfilename dump.rdb\nsave \"\"\nappendonly no\ndatabases {}\nrequirepass {password}\nlogfile {}\npidfile {}\n",
            dir.path().display(),
            databases.max(16),
            dir.path().join("redis.log").display(),
            dir.path().join("redis.pid").display()
        );
        let conf_path = dir.path().join("redis.conf");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&conf_path)?;
            f.write_all(config.as_bytes())?;
        }
        let endpoint = RedisEndpoint::parse(&format!("redis://:{password}@127.0.0.1:{port}"))?;
        let registered = crate::leftovers::register(crate::leftovers::Resource::RedisSandbox {
            dir: dir.path().to_path_buf(),
        });
        Ok(RedisSandbox {
            child: None,
            dir,
            _registered: registered,
            binary,
            port,
            endpoint,
        })
    }

    /// Where an RDB file must be for the server to load it at start.
    pub fn rdb_path(&self) -> PathBuf {
        self.dir.path().join("dump.rdb")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().rev().take(5).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    /// Starts the server and waits until it answers (it answers LOADING while it loads an
    /// RDB file, however long that takes).
    pub async fn start(&mut self) -> Result<()> {
        let child = tokio::process::Command::new(&self.binary)
            .arg(self.dir.path().join("redis.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "the sandbox redis-server exited ({status}): {}",
                    self.log_tail()
                );
            }
            let answer = async {
                let mut con = self.endpoint.connect_with(Duration::from_secs(5)).await?;
                redis::cmd("PING")
                    .query_async::<String>(&mut con)
                    .await
                    .map_err(|e| anyhow!("{}", crate::redis_client::conn::server_error_text(&e)))
            }
            .await;
            match answer {
                Ok(_) => return Ok(()),
                Err(e) if format!("{e:#}").contains("LOADING") => {}
                Err(e) if started.elapsed() > Duration::from_secs(30) => {
                    bail!(
                        "the sandbox redis-server does not answer after 30 s ({e:#}): {}",
                        self.log_tail()
                    )
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server (the directory goes when the sandbox is dropped).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}
