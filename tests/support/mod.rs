//! Real servers for integration tests: throwaway PostgreSQL clusters and Redis servers on
//! free loopback ports, removed on drop (also when a test panics), and a runner for the
//! built `dr` binary. A missing server binary is a failure naming the package, never a skip.
#![allow(dead_code)]

pub mod archive;
pub mod http;
pub mod pitr;
pub mod redis_data;
pub mod roles;
pub mod s3;
pub mod standby;
pub mod wal;
pub mod world;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const SUPERUSER_PASSWORD: &str = "su-Secret-4711";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn is_root() -> bool {
    // SAFETY-free check: /proc/self/status Uid line.
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// `DR_TEST_PG_BIN`: run the suite against the PostgreSQL binaries in this directory (CI
/// runs the WAL, point-in-time and restore suites once more with PostgreSQL 18's).
pub fn pg_bin_override() -> Option<PathBuf> {
    std::env::var_os("DR_TEST_PG_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The PATH a `dr` under test runs with: `DR_TEST_PG_BIN` first, so its children (pg_dump,
/// pg_basebackup, pg_ctl through pg_config) are of the version under test.
pub fn dr_path() -> std::ffi::OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    match pg_bin_override() {
        Some(dir) => {
            std::env::join_paths(std::iter::once(dir).chain(std::env::split_paths(&path))).unwrap()
        }
        None => path,
    }
}

/// The PostgreSQL server binaries: `DR_TEST_PG_BIN`, else the newest installed.
pub fn pg_bin_dir() -> PathBuf {
    if let Some(dir) = pg_bin_override() {
        assert!(
            dir.join("initdb").exists(),
            "DR_TEST_PG_BIN={} holds no initdb",
            dir.display()
        );
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server not installed: apt-get install postgresql (or run .ci/run)")
        .flatten()
        .filter_map(|e| {
            Some((
                e.file_name().to_string_lossy().parse().ok()?,
                e.path().join("bin"),
            ))
        })
        .filter(|(_, p): &(u32, PathBuf)| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no initdb under /usr/lib/postgresql/*/bin: apt-get install postgresql")
        .1
}

pub struct PgCluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
    run_as_postgres: bool,
}

impl PgCluster {
    pub fn start() -> PgCluster {
        Self::start_on(free_port())
    }

    /// A fresh cluster (new `initdb`, only the `postgres` superuser) on a given port: the
    /// same address a lost cluster had.
    pub fn start_on(port: u16) -> PgCluster {
        Self::start_with(port, &[])
    }

    /// A fresh cluster with extra `initdb` arguments (such as `--wal-segsize=1`).
    pub fn start_with(port: u16, initdb_args: &[&str]) -> PgCluster {
        let bin = pg_bin_dir();
        let run_as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("dr-test-pg-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, SUPERUSER_PASSWORD).unwrap();
        if run_as_postgres {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(st.success());
        }
        let cluster = PgCluster {
            dir,
            port,
            bin,
            run_as_postgres,
        };
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
                "--no-sync",
                "-E",
                "UTF8",
            ]
            .into_iter()
            .chain(initdb_args.iter().copied())
            .collect::<Vec<_>>(),
        );
        cluster.start_server();
        cluster
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(program);
        let mut cmd = if self.run_as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn start_server(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.socket_dir().display()
        );
        let log = self.dir.path().join("log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data_dir().to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    pub fn stop_server(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data_dir().to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// URL for `user` with `password` (over TCP, password auth).
    pub fn url(&self, user: &str, password: &str, db: &str) -> String {
        format!("postgres://{user}:{password}@127.0.0.1:{}/{db}", self.port)
    }

    pub fn superuser_url(&self, db: &str) -> String {
        self.url("postgres", SUPERUSER_PASSWORD, db)
    }

    /// Runs SQL as the superuser over the socket; panics on error; returns unaligned rows.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self.psql_raw(db, sql);
        assert!(
            out.status.success(),
            "psql failed on {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn psql_raw(&self, db: &str, sql: &str) -> Output {
        Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.socket_dir())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .unwrap()
    }

    pub fn create_db(&self, name: &str) {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
    }

    pub fn databases(&self) -> Vec<String> {
        self.psql("postgres", "SELECT datname FROM pg_database ORDER BY 1")
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `pg_dump` of a database as text (for comparing two databases).
    pub fn dump_text(&self, db: &str, extra: &[&str]) -> String {
        let out = Command::new(self.bin.join("pg_dump"))
            .args(["-h"])
            .arg(self.socket_dir())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "--no-comments",
                "--restrict-key=drtest",
            ])
            .args(extra)
            .arg(db)
            .output()
            .unwrap();
        if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("restrict-key") {
            // Older pg_dump without --restrict-key.
            let out = Command::new(self.bin.join("pg_dump"))
                .args(["-h"])
                .arg(self.socket_dir())
                .args(["-p", &self.port.to_string(), "-U", "postgres"])
                .args(extra)
                .arg(db)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Turns on TLS with a fresh CA and refuses every non-TLS TCP connection. Returns the
    /// CA certificate's path.
    pub fn require_tls(&self) -> PathBuf {
        let dir = self.dir.path().join("tls");
        std::fs::create_dir_all(&dir).unwrap();
        let sh = |script: &str| {
            let out = Command::new("sh")
                .arg("-c")
                .arg(script)
                .current_dir(&dir)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "{script}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=dr test CA' 2>/dev/null");
        sh("openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj '/CN=127.0.0.1' 2>/dev/null");
        sh("printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\n' > ext && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile ext 2>/dev/null");
        let data = self.data_dir();
        std::fs::copy(dir.join("server.crt"), data.join("server.crt")).unwrap();
        std::fs::copy(dir.join("server.key"), data.join("server.key")).unwrap();
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        if self.run_as_postgres {
            Command::new("chown")
                .args(["postgres:postgres"])
                .arg(data.join("server.crt"))
                .arg(data.join("server.key"))
                .status()
                .unwrap();
        }
        let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        conf.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(data.join("postgresql.conf"), conf).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        self.stop_server();
        self.start_server();
        dir.join("ca.pem")
    }

    pub fn bin(&self, program: &str) -> PathBuf {
        self.bin.join(program)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.data_dir().join("postmaster.pid").exists() {
            let exe = self.bin.join("pg_ctl");
            let mut cmd = if self.run_as_postgres {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(exe);
                c
            } else {
                Command::new(exe)
            };
            let _ = cmd
                .args([
                    "-D",
                    self.data_dir().to_str().unwrap(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ])
                .output();
        }
    }
}

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> RedisServer {
        let exe = which("redis-server")
            .expect("redis-server not installed: apt-get install redis-server (or run .ci/run)");
        let dir = tempfile::Builder::new()
            .prefix("dr-test-redis-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let child = Command::new(exe)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port);
        RedisServer {
            child: Some(child),
            port,
            dir,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.exists())
}

pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on port {port} after 20 s");
}

/// How long one command run by a test may take: a hang fails the test in seconds
/// instead of holding CI until its own timeout.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(150);

/// `Command::output`, under [`COMMAND_LIMIT`]: a command still running then is killed
/// and the test fails naming it.
pub trait OutputLimited {
    fn output_limited(&mut self) -> std::io::Result<Output> {
        self.output_within(COMMAND_LIMIT)
    }
    fn output_within(&mut self, limit: Duration) -> std::io::Result<Output>;
}

impl OutputLimited for Command {
    fn output_within(&mut self, limit: Duration) -> std::io::Result<Output> {
        use std::io::Read;
        let mut child = self.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let out_reader = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = out.read_to_end(&mut b);
            b
        });
        let err_reader = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = err.read_to_end(&mut b);
            b
        });
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = err_reader.join().unwrap_or_default();
                panic!(
                    "{:?} still ran after {limit:?} and was killed (a hang); stderr:\n{}",
                    self,
                    String::from_utf8_lossy(&stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(Output {
            status,
            stdout: out_reader.join().unwrap_or_default(),
            stderr: err_reader.join().unwrap_or_default(),
        })
    }
}

/// The result of one `dr` run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A test world: a directory with dr.toml and a local storage directory.
pub struct World {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl World {
    pub fn new() -> World {
        World {
            dir: tempfile::Builder::new()
                .prefix("dr-test-world-")
                .tempdir()
                .unwrap(),
            env: vec![],
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("dr.toml")
    }

    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        let p = self.dir.path().join("tmp");
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config_path(), text).unwrap();
        std::fs::set_permissions(self.config_path(), std::fs::Permissions::from_mode(0o600))
            .unwrap();
    }

    /// A config with one PostgreSQL target (URL in $DR_TEST_PG_URL), local storage, objectives.
    pub fn standard_config(&mut self, pg: &PgCluster, db: &str, extra: &str) {
        self.env
            .push(("DR_TEST_PG_URL".into(), pg.superuser_url(db)));
        self.write_config(&format!(
            r#"
[objectives]
rpo = "1h"
rto = "10m"

[storage]
url = "file://{}"

[retention]
keep_last = 2

[[postgres]]
name = "main"
url_env = "DR_TEST_PG_URL"

[[contacts]]
name = "Test On-Call"
role = "primary"
phone = "+1-555-0100"
{extra}
"#,
            self.storage_dir().display()
        ));
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dr"));
        cmd.arg("--config").arg(self.config_path()).args(args);
        cmd.env("PATH", dr_path());
        cmd.env("TMPDIR", self.tmp_dir())
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .env_remove("DR_CONFIG");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    pub fn dr(&self, args: &[&str]) -> Run {
        let started = Instant::now();
        let out = self.command(args).output_limited().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: started.elapsed(),
        }
    }

    /// Runs `dr backup` and returns the new backup's manifest.
    pub fn backup(&self) -> serde_json::Value {
        let run = self.dr(&["backup", "--format", "json"]);
        run.expect_code(0);
        run.json()["backups"][0].clone()
    }

    /// Every file below the storage directory.
    pub fn storage_files(&self) -> Vec<PathBuf> {
        files_below(&self.storage_dir())
    }

    /// Spawns `dr` with stdout and stderr captured, for tests that act while it runs.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub fn dump_path(&self, manifest: &serde_json::Value) -> PathBuf {
        let dump = manifest["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["role"] == "dump")
            .unwrap();
        self.storage_dir()
            .join("backups")
            .join(manifest["target"].as_str().unwrap())
            .join(manifest["id"].as_str().unwrap())
            .join(dump["file"].as_str().unwrap())
    }
}

/// SHA-256 of a file by the system's sha256sum, independent of dr's own hashing.
pub fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Fills a database with a few schemas, a mixed-case name and known row counts.
pub fn load_sample(pg: &PgCluster, db: &str) {
    pg.psql(
        db,
        r#"
CREATE SCHEMA sales;
CREATE SCHEMA "Mixed Case";
CREATE TABLE public.ten (id int PRIMARY KEY, label text);
INSERT INTO public.ten SELECT i, 'row ' || i FROM generate_series(1, 10) i;
CREATE TABLE sales.orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, amount numeric(10,2), note text);
INSERT INTO sales.orders (amount, note) SELECT i * 1.5, md5(i::text) FROM generate_series(1, 2500) i;
CREATE TABLE "Mixed Case"."Quoted Table" (k text PRIMARY KEY, v jsonb);
INSERT INTO "Mixed Case"."Quoted Table" SELECT 'k' || i, jsonb_build_object('i', i) FROM generate_series(1, 37) i;
"#,
    );
}

/// A cluster with database `app` holding [`load_sample`], and a world configured for it.
pub fn sample_world(extra: &str) -> (PgCluster, World) {
    let pg = PgCluster::start();
    pg.create_db("app");
    load_sample(&pg, "app");
    let mut world = World::new();
    world.standard_config(&pg, "app", extra);
    (pg, world)
}

/// Every file below `dir` (recursively), sorted.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// One running process, as /proc shows it.
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub cmdline: String,
    pub environ: String,
}

/// The processes running now (those that vanish while being read are skipped).
pub fn processes() -> Vec<Proc> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // The command name in stat may hold spaces and parentheses: fields follow the last ')'.
            let ppid = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let read = |f: &str| {
                String::from_utf8_lossy(&std::fs::read(e.path().join(f)).unwrap_or_default())
                    .replace('\0', " ")
            };
            Some(Proc {
                pid,
                ppid,
                cmdline: read("cmdline"),
                environ: read("environ"),
            })
        })
        .collect()
}

pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Ctrl-C for a running `dr`: it must exit 130. Returns its output.
#[track_caller]
pub fn interrupt(child: Child) -> Output {
    send_signal(child.id(), "INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
