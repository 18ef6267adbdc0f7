//! A real S3 server for integration tests: `s3s-fs` (it checks SigV4 signatures, so a
//! wrong secret really fails) on a free loopback port, storing into a temp directory.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "cargo install s3s-fs@0.14.1 --features binary --locked";

pub struct S3Server {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub port: u16,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    /// The server's root (inside a temp dir); the bucket is the directory `dir/bucket`.
    pub dir: PathBuf,
    binary: PathBuf,
    child: Option<Child>,
    /// Removed (with everything stored) on drop.
    _temp: tempfile::TempDir,
}

/// The `s3s-fs` binary on PATH or in `$HOME/.cargo/bin`; panics with the install command.
pub fn s3s_fs_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("s3s-fs"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let in_cargo = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin/s3s-fs"));
    on_path
        .into_iter()
        .chain(in_cargo)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "s3s-fs is not installed (needed by the S3 tests); install it with: {INSTALL_HINT}"
            )
        })
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

impl S3Server {
    /// Starts s3s-fs with bucket "dr-test" and waits until it accepts connections.
    pub fn start() -> S3Server {
        let binary = s3s_fs_binary();
        let temp = tempfile::Builder::new()
            .prefix("dr-s3s-")
            .tempdir()
            .expect("temp dir");
        let bucket = "dr-test".to_string();
        let dir = temp.path().join("root");
        std::fs::create_dir_all(dir.join(&bucket)).expect("create bucket directory");
        let port = free_port();
        let mut server = S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            bucket,
            access_key: "dr-test-access".to_string(),
            secret_key: "dr-test-secret-4Kq7Wz".to_string(),
            dir,
            binary,
            child: None,
            _temp: temp,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "s3s-fs is already running");
        let log = std::fs::File::create(self.log_path()).expect("s3s-fs log file");
        let mut child = Command::new(&self.binary)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--access-key",
                &self.access_key,
                "--secret-key",
                &self.secret_key,
            ])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "s3s-fs exited ({status}) before listening on port {}; log: {}",
                    self.port,
                    std::fs::read_to_string(self.log_path()).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "s3s-fs did not accept connections on port {} within 20 s",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    /// The server's output (next to, not inside, its root).
    pub fn log_path(&self) -> PathBuf {
        self._temp.path().join("s3s-fs.log")
    }

    /// Stops the server (the data stays): the endpoint then refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// The credentials, for the environment of `dr`.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("DR_TEST_S3_KEY".to_string(), self.access_key.clone()),
            ("DR_TEST_S3_SECRET".to_string(), self.secret_key.clone()),
        ]
    }

    /// A `[storage]` table for dr.toml pointing at `s3://dr-test/<prefix>`.
    pub fn config_toml(&self, prefix: &str) -> String {
        format!(
            r#"[storage]
url = "s3://{bucket}/{prefix}"

[storage.s3]
endpoint = "{endpoint}"
region = "us-east-1"
allow_http = true
access_key_id_env = "DR_TEST_S3_KEY"
secret_access_key_env = "DR_TEST_S3_SECRET"
"#,
            bucket = self.bucket,
            prefix = prefix.trim_matches('/'),
            endpoint = self.endpoint,
        )
    }

    /// Where an object is stored on disk.
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.dir.join(&self.bucket).join(key)
    }

    /// Multipart uploads neither completed nor aborted (s3s-fs keeps them in its root).
    pub fn pending_uploads(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(".upload"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
