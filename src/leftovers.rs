//! What a dead `dr` leaves behind, found and removed by the next one.
//!
//! Every run records what it creates on this host (a passfile's directory, a staging
//! directory, a sandbox cluster) in `$TMPDIR/dr-runs/<pid>-<start>.json` and forgets it
//! once it removed it. A `kill -9` skips that removal; the next `dr` finds run files whose
//! process is gone and removes what they name. (Scratch databases live on a server that
//! any host's drill may use; they are found there, see `drill::stale_scratch_databases`.)

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One thing a run created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    /// A private directory holding a passfile (a password in plain text).
    Passfile { dir: PathBuf },
    /// A staging directory holding a copy of backup data.
    Staging { dir: PathBuf },
    /// A sandbox cluster's directory; its postmaster may still run.
    Sandbox { dir: PathBuf },
    /// A Redis drill's sandbox directory; its redis-server may still run.
    RedisSandbox { dir: PathBuf },
    /// The data directory of a point-in-time restore whose server dr started and had not
    /// yet checked and promoted: the server is stopped, the directory kept for inspection.
    RecoveringServer { dir: PathBuf },
}

impl Resource {
    pub fn describe(&self) -> String {
        match self {
            Resource::Passfile { dir } => format!("passfile directory {}", dir.display()),
            Resource::Staging { dir } => format!("staging directory {}", dir.display()),
            Resource::Sandbox { dir } => format!("sandbox cluster {}", dir.display()),
            Resource::RedisSandbox { dir } => {
                format!("sandbox redis-server {}", dir.display())
            }
            Resource::RecoveringServer { dir } => format!(
                "unchecked recovering server on {} (stopped before it could promote; the directory is kept)",
                dir.display()
            ),
        }
    }
}

/// What a sweep found of a dead run.
#[derive(Debug, Clone)]
pub struct Leftover {
    pub resource: Resource,
    /// The dead run's process id.
    pub pid: u32,
    /// Why it could not be removed, if it could not.
    pub error: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RunFile {
    pid: u32,
    start_ticks: u64,
    resources: Vec<Resource>,
}

/// This process's resources; the run file mirrors it.
static THIS_RUN: Mutex<Vec<Resource>> = Mutex::new(Vec::new());

fn runs_dir() -> PathBuf {
    std::env::temp_dir().join("dr-runs")
}

/// The start time of a process (clock ticks since boot), to tell it from a later process
/// that got the same pid.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields count after the last ')'.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(19)?.parse().ok()
}

fn run_file_path(dir: &Path, pid: u32, ticks: u64) -> PathBuf {
    dir.join(format!("{pid}-{ticks}.json"))
}

fn write_run_file(resources: &[Resource]) {
    let pid = std::process::id();
    let Some(ticks) = start_ticks(pid) else {
        return;
    };
    let dir = runs_dir();
    let path = run_file_path(&dir, pid, ticks);
    if resources.is_empty() {
        let _ = std::fs::remove_file(&path);
        // Leave no trace when nothing is recorded (fails, as it should, while others are).
        let _ = std::fs::remove_dir(&dir);
        return;
    }
    let record = RunFile {
        pid,
        start_ticks: ticks,
        resources: resources.to_vec(),
    };
    let write = || -> std::io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let tmp = dir.join(format!(".{pid}-{ticks}.tmp"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        std::io::Write::write_all(&mut file, &serde_json::to_vec(&record)?)?;
        std::fs::rename(&tmp, &path)
    };
    if let Err(e) = write() {
        tracing::debug!(
            "cannot record this run's resources in {}: {e}",
            dir.display()
        );
    }
}

/// Records a resource until the returned guard is dropped (after the resource was removed).
#[must_use = "the record lasts as long as the guard"]
pub struct Registered(Resource);

pub fn register(resource: Resource) -> Registered {
    if let Ok(mut run) = THIS_RUN.lock() {
        run.push(resource.clone());
        write_run_file(&run);
    }
    Registered(resource)
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut run) = THIS_RUN.lock() {
            if let Some(i) = run.iter().position(|r| r == &self.0) {
                run.remove(i);
            }
            write_run_file(&run);
        }
    }
}

/// Finds the run files of dead processes, removes what they left that is safe to remove,
/// and returns everything found. Run files of live processes are left alone.
pub fn sweep() -> Vec<Leftover> {
    let dir = runs_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let Ok(record) = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<RunFile>(&b).map_err(|e| e.to_string()))
        else {
            continue;
        };
        if start_ticks(record.pid) == Some(record.start_ticks) {
            continue; // still running
        }
        for resource in record.resources {
            let error = remove(&resource).err();
            found.push(Leftover {
                resource,
                pid: record.pid,
                error,
            });
        }
        // Reported once: what could not be removed is named with its path and the error.
        let _ = std::fs::remove_file(&path);
    }
    let _ = std::fs::remove_dir(&dir);
    found
}

fn remove(resource: &Resource) -> Result<(), String> {
    match resource {
        Resource::Passfile { dir } | Resource::Staging { dir } => remove_dir(dir),
        Resource::Sandbox { dir } => {
            stop_postmaster(dir);
            remove_dir(dir)
        }
        Resource::RedisSandbox { dir } => {
            stop_redis_server(dir);
            remove_dir(dir)
        }
        Resource::RecoveringServer { dir } => {
            stop_postmaster_of(dir);
            Ok(())
        }
    }
}

/// Kills a sandbox's redis-server if it still runs: the process named in its pid file,
/// and only if that process works in the sandbox's directory (a recycled pid belongs to
/// someone else).
fn stop_redis_server(sandbox_dir: &Path) {
    let Some(pid) = std::fs::read_to_string(sandbox_dir.join("redis.pid"))
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
    else {
        return;
    };
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
    if cwd.is_none() || cwd != std::fs::canonicalize(sandbox_dir).ok() {
        return;
    }
    let pid = nix::unistd::Pid::from_raw(pid);
    if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).is_ok() {
        for _ in 0..50 {
            if nix::sys::signal::kill(pid, None).is_err() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

fn remove_dir(dir: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", dir.display())),
    }
}

/// Stops a sandbox's postmaster if it still runs (immediate shutdown, as `pg_ctl -m
/// immediate` would: the data is thrown away anyway).
pub fn stop_postmaster(sandbox_dir: &Path) {
    stop_postmaster_of(&sandbox_dir.join("data"));
}

/// Stops the postmaster of a data directory if it still runs (immediate shutdown).
pub fn stop_postmaster_of(pgdata: &Path) {
    let pid_file = pgdata.join("postmaster.pid");
    let Some(pid) = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
    else {
        return;
    };
    // A postmaster works in its data directory; a recycled pid belongs to someone else.
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
    if cwd.is_some() && cwd != std::fs::canonicalize(pgdata).ok() {
        return;
    }
    let pid = nix::unistd::Pid::from_raw(pid);
    if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGQUIT).is_ok() {
        for _ in 0..50 {
            if nix::sys::signal::kill(pid, None).is_err() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_identify_this_process() {
        let me = std::process::id();
        assert!(start_ticks(me).is_some());
        assert_eq!(start_ticks(me), start_ticks(me));
        assert_eq!(start_ticks(u32::MAX - 1), None);
    }

    #[test]
    fn a_dead_runs_directories_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let runs = tmp.path().join("dr-runs");
        std::fs::create_dir_all(&runs).unwrap();
        let staging = tmp.path().join("dr-staging-x");
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::write(staging.join("dump.pgdump"), b"data").unwrap();
        let record = RunFile {
            pid: u32::MAX - 1,
            start_ticks: 1,
            resources: vec![Resource::Staging {
                dir: staging.clone(),
            }],
        };
        std::fs::write(runs.join("x.json"), serde_json::to_vec(&record).unwrap()).unwrap();
        // The sweep reads $TMPDIR; point it at the temporary directory for this call.
        let found = with_tmpdir(tmp.path(), sweep);
        assert!(!staging.exists());
        assert_eq!(found.len(), 1);
        assert!(found[0].error.is_none());
        assert!(!runs.join("x.json").exists());
    }

    fn with_tmpdir<T>(dir: &Path, f: impl FnOnce() -> T) -> T {
        static LOCK: Mutex<()> = Mutex::new(());
        let _guard = LOCK.lock().unwrap();
        let before = std::env::var_os("TMPDIR");
        std::env::set_var("TMPDIR", dir);
        let out = f();
        match before {
            Some(v) => std::env::set_var("TMPDIR", v),
            None => std::env::remove_var("TMPDIR"),
        }
        out
    }
}
