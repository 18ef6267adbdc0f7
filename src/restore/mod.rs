//! Restores: preflight (the steps `dr validate` runs), staging with checksum, guarded
//! `pg_restore`, then verification. Nothing touches the destination before every
//! preflight step passed and the staged bytes matched the manifest.

pub mod physical;
pub mod verify;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use crate::backup::catalog;
use crate::backup::manifest::{BackupManifest, StoredObject};
use crate::checks::Status;
use crate::config::{Compression, PostgresTarget};
use crate::pg::{self, tools, ConnTarget};
use crate::storage::Storage;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub status: Status,
    pub message: String,
    pub duration_ms: u64,
}

/// Records steps; the first failure stops the caller.
#[derive(Debug, Default, Serialize)]
pub struct Steps(pub Vec<Step>);

impl Steps {
    pub async fn run<T, F>(&mut self, name: &str, fut: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<(T, String)>>,
    {
        let started = Instant::now();
        let result = fut.await;
        let duration_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok((value, message)) => {
                self.0.push(Step {
                    name: name.into(),
                    status: Status::Pass,
                    message,
                    duration_ms,
                });
                Ok(value)
            }
            Err(e) => {
                self.0.push(Step {
                    name: name.into(),
                    status: Status::Fail,
                    message: format!("{e:#}"),
                    duration_ms,
                });
                Err(e.context(format!("step {name} failed")))
            }
        }
    }

    pub fn total_ms(&self) -> u64 {
        self.0.iter().map(|s| s.duration_ms).sum()
    }
}

/// Inputs shared by validate and restore.
pub struct Preflight<'a> {
    pub storage: &'a dyn Storage,
    pub target: &'a PostgresTarget,
    pub backup_id: &'a str,
    pub destination: &'a ConnTarget,
    pub staging_dir: &'a Path,
}

/// Runs the checks that need no download: storage, manifest, tools, destination,
/// extensions, disk. `seekable` says whether the restore stages a decompressed archive
/// (parallel pg_restore) or the stored bytes. Returns the manifest and the `pg_restore`
/// the tools step approved.
pub async fn preflight(
    p: &Preflight<'_>,
    steps: &mut Steps,
    seekable: bool,
) -> Result<(BackupManifest, PathBuf)> {
    steps
        .run("storage", async {
            p.storage.list(catalog::BACKUPS_PREFIX).await?;
            Ok(((), format!("{} is reachable", p.storage.describe())))
        })
        .await?;
    let manifest = steps
        .run("manifest", async {
            let m = catalog::resolve(p.storage, &p.target.name, p.backup_id).await?;
            let msg = format!(
                "backup {} of {} taken {} ({} tables, {} bytes)",
                m.id,
                m.database,
                m.created_at.to_rfc3339(),
                m.tables.len(),
                m.size_bytes
            );
            Ok((m, msg))
        })
        .await?;
    let pg_restore = steps
        .run("tools", async {
            let path = tools::find("pg_restore", p.target.pg_bin_dir.as_deref())?;
            let (major, version) = tools::version(&path)?;
            let (dump_major, _) = tools::parse_version(&manifest.pg_dump_version)?;
            if major < dump_major {
                bail!(
                    "pg_restore {version} is older than the pg_dump {} that wrote this backup and cannot read it; hint: install {} and set pg_bin_dir",
                    manifest.pg_dump_version,
                    tools::client_package(dump_major)
                );
            }
            Ok((path.clone(), format!("{} {version} can read a pg_dump {} archive", path.display(), manifest.pg_dump_version)))
        })
        .await?;
    let client = steps
        .run("destination", async {
            let client = p.destination.connect().await?;
            let (major, version) = pg::server_version(&client).await?;
            if major < manifest.server_major {
                bail!(
                    "destination {} runs PostgreSQL {version}, older than the backup's source ({}); hint: restore into a server of version {} or newer",
                    p.destination.public_url,
                    manifest.server_version,
                    manifest.server_major
                );
            }
            Ok((client, format!("{} answers, PostgreSQL {version}", p.destination.public_url)))
        })
        .await?;
    steps
        .run("extensions", async {
            let available: Vec<String> = client
                .query("SELECT name FROM pg_available_extensions", &[])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let missing: Vec<&String> = manifest.extensions.iter().filter(|e| !available.contains(e)).collect();
            if !missing.is_empty() {
                bail!(
                    "the backup uses extension(s) {} that the destination server does not have; hint: install them there (often the postgresql-contrib package) before restoring",
                    missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                );
            }
            Ok(((), format!("all {} extension(s) of the backup are available", manifest.extensions.len())))
        })
        .await?;
    {
        steps
            .run("disk", async {
                let staged = |o: &StoredObject| if seekable { o.raw_bytes } else { o.size_bytes };
                let needed = staged(manifest.dump()) + manifest.globals().map_or(0, staged);
                let free = free_bytes(p.staging_dir)?;
                if free < needed + needed / 20 {
                    bail!(
                        "{} has {} MiB free, the restore stages {} MiB there; hint: free space or pass --staging-dir on a larger disk",
                        p.staging_dir.display(),
                        free >> 20,
                        needed >> 20
                    );
                }
                Ok(((), format!("{} MiB needed, {} MiB free in {}", needed >> 20, free >> 20, p.staging_dir.display())))
            })
            .await?;
    }
    Ok((manifest, pg_restore))
}

fn free_bytes(dir: &Path) -> Result<u64> {
    let stat = nix::sys::statvfs::statvfs(dir)
        .with_context(|| format!("cannot read free space of {}", dir.display()))?;
    Ok(stat.blocks_available() as u64 * stat.fragment_size() as u64)
}

/// A blocking `Read` over chunks arriving from async code.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Streams one stored object once: hashes what arrives and hands the decompressed bytes to
/// `sink` on a blocking thread. Fails when the bytes do not match the manifest.
pub async fn stream_object<W: Write + Send + 'static>(
    storage: &dyn Storage,
    manifest: &BackupManifest,
    object: &StoredObject,
    sink: W,
    sink_may_stop_early: bool,
) -> Result<u64> {
    let key = catalog::object_key(manifest, &object.file);
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let compression = object.compression;
    let writer = tokio::task::spawn_blocking(move || -> Result<u64> {
        let mut sink = sink;
        let reader = ChannelReader {
            rx,
            current: Bytes::new(),
        };
        let mut decoder = crate::backup::decompressor(compression, reader)?;
        let n = std::io::copy(&mut decoder, &mut sink)?;
        sink.flush()?;
        Ok(n)
    });
    let mut stream = storage
        .get(&key)
        .await
        .with_context(|| format!("cannot fetch {key}"))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut sink_open = true;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("cannot read {key} from storage"))?;
        size += chunk.len() as u64;
        hasher.update(&chunk);
        if sink_open && tx.send(chunk).await.is_err() {
            sink_open = false;
        }
    }
    drop(tx);
    let sha = hex::encode(hasher.finalize());
    if sha != object.sha256 || size != object.size_bytes {
        let _ = writer.await;
        bail!(
            "checksum mismatch for {key}: the manifest says sha256 {} and {} bytes, storage returned sha256 {sha} and {size} bytes: the backup is corrupted or truncated; hint: use another backup (`dr list --target {}`)",
            object.sha256,
            object.size_bytes,
            manifest.target
        );
    }
    match writer.await? {
        Ok(n) => Ok(n),
        Err(_) if sink_may_stop_early => Ok(0),
        Err(e) => Err(e).with_context(|| format!("cannot decompress {key}")),
    }
}

/// `pg_restore --list` fed from the stored dump while it is hashed: proves the archive is
/// readable without staging it.
pub async fn list_archive_streaming(
    storage: &dyn Storage,
    manifest: &BackupManifest,
    pg_restore: &Path,
) -> Result<usize> {
    let mut child = tokio::process::Command::new(pg_restore)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .arg("--list")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start pg_restore --list")?;
    let stdin: std::fs::File = child.stdin.take().expect("piped").into_owned_fd()?.into();
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s).await;
        s
    });
    let err_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = (&mut stderr).take(64 * 1024).read_to_string(&mut s).await;
        s
    });
    stream_object(storage, manifest, manifest.dump(), stdin, true).await?;
    let status = child.wait().await?;
    let listing = out_task.await.unwrap_or_default();
    let errors = err_task.await.unwrap_or_default();
    if !status.success() {
        bail!(
            "pg_restore --list cannot read the archive: {}",
            errors.trim()
        );
    }
    Ok(count_toc_entries(&listing))
}

/// Entries in `pg_restore --list` output (comment lines start with `;`).
fn count_toc_entries(listing: &str) -> usize {
    listing
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .count()
}

/// A private staging directory (0700), removed on drop whatever happens.
pub fn staging_area(parent: &Path) -> Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("dr-staging-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a staging directory in {}", parent.display()))?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

/// Fetches an object once, checking its SHA-256 while it streams, into a 0600 file:
/// decompressed (a plain archive or SQL file), or as stored when `decompress` is false.
pub async fn stage(
    storage: &dyn Storage,
    manifest: &BackupManifest,
    object: &StoredObject,
    path: &Path,
    decompress: bool,
) -> Result<u64> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create staging file {}", path.display()))?;
    let writer = std::io::BufWriter::with_capacity(1 << 20, file);
    if decompress {
        stream_object(storage, manifest, object, writer, false).await
    } else {
        // Same hash check, no decoding: the bytes are staged as stored.
        let stored = StoredObject {
            compression: Compression::None,
            ..object.clone()
        };
        stream_object(storage, manifest, &stored, writer, false).await
    }
}

/// The pg_restore command line (no password: it comes from the passfile).
pub fn pg_restore_args(public_url: &str, jobs: u32, clean: bool, no_owner: bool) -> Vec<String> {
    let mut args = vec![
        "--exit-on-error".to_string(),
        "--no-password".to_string(),
        format!("--jobs={}", jobs.max(1)),
        format!("--dbname={public_url}"),
    ];
    if clean {
        args.push("--clean".into());
        args.push("--if-exists".into());
    }
    if no_owner {
        args.push("--no-owner".into());
    }
    args
}

/// Runs a child to completion; a non-zero exit is an error carrying its stderr.
pub async fn run_child(
    program: &Path,
    args: &[String],
    auth: &pg::ChildAuth,
    what: &str,
) -> Result<String> {
    let mut cmd = tokio::process::Command::new(program);
    auth.apply(&mut cmd);
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("cannot start {}", program.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if !out.status.success() {
        let tail: Vec<&str> = stderr
            .lines()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(anyhow!(
            "{what} failed ({}): {}",
            out.status,
            tail.join(" | ")
        ));
    }
    Ok(stderr)
}

/// Number of user tables: a destination with any is not empty.
pub async fn user_table_count(client: &tokio_postgres::Client) -> Result<i64> {
    Ok(client
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p') AND n.nspname NOT IN ('pg_catalog','information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'",
            &[],
        )
        .await?
        .get(0))
}

pub fn staging_file_name(object: &StoredObject) -> PathBuf {
    PathBuf::from(match object.role.as_str() {
        "globals" => "globals.sql",
        _ => "dump.pgdump",
    })
}

/// A dump fetched once and checksum-verified; the staging directory is removed when this
/// is dropped. `compression` is that of the staged file: `None` means a plain archive that
/// pg_restore can seek (needed for --jobs > 1); otherwise the stored bytes, decompressed
/// into pg_restore's stdin, which spares writing the whole archive to disk.
pub struct StagedDump {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub compression: Compression,
}

/// The `fetch` and `archive` steps shared by restore and drill.
pub async fn stage_dump(
    storage: &dyn Storage,
    manifest: &BackupManifest,
    pg_restore: &Path,
    staging_parent: &Path,
    seekable: bool,
    steps: &mut Steps,
) -> Result<StagedDump> {
    let dir = staging_area(staging_parent)?;
    let object = manifest.dump();
    let path = dir.path().join(staging_file_name(object));
    let compression = if seekable {
        Compression::None
    } else {
        object.compression
    };
    steps
        .run("fetch", async {
            let n = stage(storage, manifest, object, &path, seekable).await?;
            Ok((
                (),
                format!(
                    "{} fetched with SHA-256 verified; {} staged in {}",
                    crate::output::table::human_bytes(object.size_bytes),
                    crate::output::table::human_bytes(n),
                    staging_parent.display()
                ),
            ))
        })
        .await?;
    let staged = StagedDump {
        dir,
        path,
        compression,
    };
    steps
        .run("archive", async {
            let (listing, _) = run_archive_child(
                pg_restore,
                vec!["--list".into()],
                None,
                "pg_restore --list",
                &staged,
                true,
            )
            .await?;
            let n = count_toc_entries(&listing);
            Ok(((), format!("pg_restore --list reads {n} entries")))
        })
        .await?;
    Ok(staged)
}

/// Runs pg_restore on a staged dump: the file as an argument when it is a plain archive,
/// else decompressed into its stdin. `auth` is `None` for children that need no
/// connection (they then get a clean environment). Returns (stdout, stderr).
pub async fn run_archive_child(
    program: &Path,
    mut args: Vec<String>,
    auth: Option<&pg::ChildAuth>,
    what: &str,
    staged: &StagedDump,
    reader_may_stop_early: bool,
) -> Result<(String, String)> {
    let mut cmd = tokio::process::Command::new(program);
    match auth {
        Some(a) => a.apply(&mut cmd),
        None => {
            cmd.env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        }
    }
    let piped = staged.compression != Compression::None;
    if !piped {
        args.push(staged.path.display().to_string());
    }
    cmd.args(&args)
        .stdin(if piped { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    let feeder = if piped {
        let stdin: std::fs::File = child.stdin.take().expect("piped").into_owned_fd()?.into();
        let (path, compression) = (staged.path.clone(), staged.compression);
        Some(tokio::task::spawn_blocking(move || -> Result<u64> {
            let file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&path)?);
            let mut decoder = crate::backup::decompressor(compression, file)?;
            let mut stdin = stdin;
            Ok(std::io::copy(&mut decoder, &mut stdin)?)
        }))
    } else {
        None
    };
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s).await;
        s
    });
    let err_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = (&mut stderr).take(256 * 1024).read_to_string(&mut s).await;
        s
    });
    let status = child.wait().await?;
    let fed = match feeder {
        Some(f) => Some(f.await?),
        None => None,
    };
    let out = out_task.await.unwrap_or_default();
    let err = err_task.await.unwrap_or_default();
    if !status.success() {
        let tail: Vec<&str> = err
            .trim()
            .lines()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(anyhow!("{what} failed ({status}): {}", tail.join(" | ")));
    }
    if let Some(Err(e)) = fed {
        if !reader_may_stop_early {
            return Err(e.context(format!("cannot feed the archive to {what}")));
        }
    }
    Ok((out, err))
}

/// The `pg_restore` step shared by restore and drill.
pub async fn pg_restore_step(
    steps: &mut Steps,
    pg_restore: &Path,
    destination: &ConnTarget,
    staged: &StagedDump,
    jobs: u32,
    clean: bool,
    no_owner: bool,
) -> Result<()> {
    let auth = destination.child_env()?;
    steps
        .run("pg_restore", async {
            let args = pg_restore_args(&destination.public_url, jobs, clean, no_owner);
            run_archive_child(pg_restore, args, Some(&auth), "pg_restore", staged, false).await?;
            Ok((
                (),
                format!(
                    "restored into {} with {} job(s)",
                    destination.public_url,
                    jobs.max(1)
                ),
            ))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_restore_argv() {
        let args = pg_restore_args("postgres://u@h/db", 2, true, false);
        assert_eq!(
            args,
            vec![
                "--exit-on-error",
                "--no-password",
                "--jobs=2",
                "--dbname=postgres://u@h/db",
                "--clean",
                "--if-exists",
            ]
        );
        let args = pg_restore_args("postgres://u@h/db", 0, false, true);
        assert!(args.contains(&"--jobs=1".to_string()));
        assert!(args.contains(&"--no-owner".to_string()));
    }
}
