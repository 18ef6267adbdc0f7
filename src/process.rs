//! Every child process `dr` starts goes through here, so every child gets the same care:
//! an environment built from an allow-list (never the caller's `PG*` variables or
//! secrets), stdin closed unless asked for, stderr piped with its last lines kept for the
//! error message, and a kill when the owning future is dropped (Ctrl-C, timeout, error).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use anyhow::{anyhow, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

/// Variables a child may inherit: what programs need to run, find `$HOME` files such as
/// `~/.postgresql/root.crt`, and speak the operator's language. Nothing else: a `PGHOST`,
/// `PGPASSWORD` or `PGSERVICE` left in the caller's shell must not redirect a child.
const INHERITED: [&str; 7] = [
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_MESSAGES",
    "TZ",
    "TMPDIR",
];

/// Lines of stderr kept for an error message.
const STDERR_LINES: usize = 12;

/// A command line and the environment it runs with.
#[derive(Debug, Clone)]
pub struct ChildCommand {
    program: PathBuf,
    /// What the operator calls it in messages (`pg_dump`, `psql (globals)`).
    what: String,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    run_as: Option<String>,
    current_dir: Option<PathBuf>,
    stderr_lines: usize,
}

impl ChildCommand {
    pub fn new(program: impl Into<PathBuf>, what: &str) -> ChildCommand {
        ChildCommand {
            program: program.into(),
            what: what.to_string(),
            args: Vec::new(),
            env: Vec::new(),
            run_as: None,
            current_dir: None,
            stderr_lines: STDERR_LINES,
        }
    }

    /// Keeps more of stderr than the last few lines: for a child whose every error
    /// matters (psql applying a script without stopping at the first error).
    pub fn keep_stderr_lines(mut self, lines: usize) -> Self {
        self.stderr_lines = lines.max(1);
        self
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Variables for the child, on top of the allow-list.
    pub fn envs(mut self, vars: &[(String, String)]) -> Self {
        self.env.extend(vars.iter().cloned());
        self
    }

    /// Runs the program as another OS user through `runuser` (only when `dr` is root).
    pub fn run_as(mut self, user: Option<&str>) -> Self {
        self.run_as = user.map(str::to_string);
        self
    }

    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.current_dir = Some(dir.to_path_buf());
        self
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    fn std_command(&self) -> std::process::Command {
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&self.program);
                c
            }
            None => std::process::Command::new(&self.program),
        };
        cmd.env_clear();
        for key in INHERITED {
            if let Some(value) = std::env::var_os(key) {
                cmd.env(key, value);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.args(&self.args);
        if let Some(dir) = &self.current_dir {
            cmd.current_dir(dir);
        }
        cmd
    }

    /// Starts the child: stdin as given, stdout as given, stderr piped into a tail that
    /// keeps the last lines. The child is killed if the returned value is dropped.
    pub fn spawn(&self, stdin: Stdio, stdout: Stdio) -> Result<RunningChild> {
        tracing::debug!(
            "starting {}: {} {:?}",
            self.what,
            self.program.display(),
            self.args
        );
        let mut cmd = tokio::process::Command::from(self.std_command());
        cmd.stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.program.display()))?;
        let stderr = child
            .stderr
            .take()
            .context("the child's stderr was not captured")?;
        Ok(RunningChild {
            child,
            stderr: tokio::spawn(keep_tail(stderr, self.stderr_lines)),
            what: self.what.clone(),
        })
    }

    /// Runs to completion with stdin closed; returns stdout, or an error carrying the last
    /// lines of stderr.
    pub async fn output(&self) -> Result<ChildOutput> {
        let mut running = self.spawn(Stdio::null(), Stdio::piped())?;
        let mut stdout = running
            .child
            .stdout
            .take()
            .context("the child's stdout was not captured")?;
        let reader = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text).await;
            text
        });
        let stderr = running.finish().await?;
        Ok(ChildOutput {
            stdout: reader.await.unwrap_or_default(),
            stderr,
        })
    }

    /// The blocking form of [`ChildCommand::output`], for code that already runs on a
    /// blocking thread (sandbox clusters).
    pub fn output_blocking(&self) -> Result<ChildOutput> {
        let out = self
            .std_command()
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", self.program.display()))?;
        let stderr = tail_of(&String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            return Err(failure(&self.what, out.status, &stderr));
        }
        Ok(ChildOutput {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        })
    }
}

pub struct ChildOutput {
    pub stdout: String,
    /// The last lines of stderr.
    pub stderr: String,
}

/// A started child whose stderr is being collected.
pub struct RunningChild {
    pub child: tokio::process::Child,
    stderr: tokio::task::JoinHandle<String>,
    what: String,
}

impl RunningChild {
    /// The child's stdin (spawned with `Stdio::piped()`) as a blocking file, for a writer
    /// thread that feeds it.
    pub fn take_stdin_file(&mut self) -> Result<std::fs::File> {
        let stdin = self
            .child
            .stdin
            .take()
            .context("the child's stdin is not piped")?;
        Ok(stdin.into_owned_fd()?.into())
    }

    /// Waits for the child; a non-zero exit is an error carrying the last stderr lines.
    /// Returns those lines on success too (warnings worth showing).
    pub async fn finish(mut self) -> Result<String> {
        let status = self
            .child
            .wait()
            .await
            .with_context(|| format!("cannot wait for {}", self.what))?;
        let stderr = self.stderr.await.unwrap_or_default();
        if !status.success() {
            return Err(failure(&self.what, status, &stderr));
        }
        Ok(stderr)
    }
}

/// `{what} failed (exit status 1): last | lines | of stderr`.
pub fn failure(what: &str, status: ExitStatus, stderr: &str) -> anyhow::Error {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        anyhow!("{what} failed ({status}) without saying why")
    } else {
        anyhow!("{what} failed ({status}): {}", lines.join(" | "))
    }
}

/// Reads a stream to its end and keeps only its last lines: a chatty child cannot fill
/// memory, and the lines that explain a failure come last.
async fn keep_tail<R: AsyncRead + Unpin>(stream: R, keep: usize) -> String {
    let mut lines = BufReader::new(stream).lines();
    let mut tail: VecDeque<String> = VecDeque::with_capacity(keep.min(1024));
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                if tail.len() == keep {
                    tail.pop_front();
                }
                // A single huge line must not fill memory either.
                tail.push_back(line.chars().take(2000).collect());
            }
            Ok(None) => break,
            // Not UTF-8 or a read error: what was kept still explains the most.
            Err(_) => break,
        }
    }
    Vec::from(tail).join("\n")
}

fn tail_of(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(STDERR_LINES)..].join("\n")
}

/// Runs `PROGRAM --version` off the async runtime and returns its first line.
pub async fn version_line(program: &Path) -> Result<String> {
    let cmd = ChildCommand::new(program, &program.display().to_string()).arg("--version");
    let out = tokio::task::spawn_blocking(move || cmd.output_blocking())
        .await
        .context("version probe thread failed")??;
    Ok(out.stdout.lines().next().unwrap_or("").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn children_do_not_inherit_libpq_variables() {
        std::env::set_var("PGHOST", "elsewhere.invalid");
        std::env::set_var("PGPASSWORD", "leaked");
        let out = ChildCommand::new("/usr/bin/env", "env")
            .envs(&[("PGPASSFILE".into(), "/tmp/x".into())])
            .output()
            .await
            .unwrap();
        std::env::remove_var("PGPASSWORD");
        std::env::remove_var("PGHOST");
        assert!(!out.stdout.contains("PGPASSWORD"), "{}", out.stdout);
        assert!(!out.stdout.contains("PGHOST"), "{}", out.stdout);
        assert!(out.stdout.contains("PGPASSFILE=/tmp/x"));
        assert!(out.stdout.contains("PATH="));
    }

    #[tokio::test]
    async fn failure_keeps_the_last_lines_of_stderr() {
        let script = "for i in $(seq 1 100); do echo line$i >&2; done; exit 3";
        let err = ChildCommand::new("/bin/sh", "noisy")
            .args(["-c", script])
            .output()
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("noisy failed (exit status: 3)"), "{err}");
        assert!(err.contains("line100"), "{err}");
        assert!(!err.contains("line50 "), "{err}");
        assert!(!err.contains("line1 |"), "{err}");
    }

    #[tokio::test]
    async fn a_dropped_child_is_killed() {
        let running = ChildCommand::new("/bin/sleep", "sleep")
            .arg("30")
            .spawn(Stdio::null(), Stdio::null())
            .unwrap();
        let pid = running.child.id().unwrap() as i32;
        drop(running);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        // Reaped or a zombie being reaped: either way no longer running `sleep 30`.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(stat.is_empty() || stat.contains(") Z"), "{stat}");
    }

    #[tokio::test]
    async fn version_probe_reads_the_first_line() {
        let line = version_line(Path::new("/usr/bin/env")).await.unwrap();
        assert!(line.contains("env"), "{line}");
    }
}
