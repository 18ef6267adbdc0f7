//! `pg_restore` and `psql` on a fetched backup: reading the archive's table of contents,
//! restoring it into the destination, and applying the globals.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::io::AsyncReadExt;

use super::stage::{self, StagedDump};
use crate::backup::manifest::BackupManifest;
use crate::config::Compression;
use crate::encryption::Identities;
use crate::pg::ChildAuth;
use crate::process::ChildCommand;
use crate::storage::Storage;

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

/// The psql command line that applies a globals file (roles, tablespaces).
pub fn psql_globals_args(public_url: &str, file: &Path) -> Vec<String> {
    vec![
        "-X".into(),
        "-q".into(),
        "--no-password".into(),
        format!("--dbname={public_url}"),
        "-f".into(),
        file.display().to_string(),
    ]
}

/// Entries in `pg_restore --list` output (comment lines start with `;`).
pub fn count_toc_entries(listing: &str) -> usize {
    listing
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .count()
}

/// `pg_restore --list` fed from the stored dump while it is hashed: proves the archive is
/// readable without staging it.
pub async fn list_streaming(
    storage: &dyn Storage,
    manifest: &BackupManifest,
    identities: Option<&Arc<Identities>>,
    pg_restore: &Path,
) -> Result<usize> {
    let mut running = ChildCommand::new(pg_restore, "pg_restore --list")
        .arg("--list")
        .spawn(Stdio::piped(), Stdio::piped())?;
    let stdin = running.take_stdin_file()?;
    let listing = read_stdout(&mut running);
    stage::stream_object(storage, manifest, manifest.dump(), identities, stdin, true).await?;
    running
        .finish()
        .await
        .context("pg_restore cannot read the archive")?;
    Ok(count_toc_entries(&listing.await.unwrap_or_default()))
}

/// `pg_restore --list` on a staged dump: its number of entries.
pub async fn list_staged(pg_restore: &Path, staged: &StagedDump) -> Result<usize> {
    let cmd = ChildCommand::new(pg_restore, "pg_restore --list").arg("--list");
    let listing = run_on_staged(cmd, staged, true).await?;
    Ok(count_toc_entries(&listing))
}

/// Restores a staged dump into the destination.
pub async fn restore_staged(
    pg_restore: &Path,
    args: Vec<String>,
    auth: &ChildAuth,
    staged: &StagedDump,
) -> Result<()> {
    let cmd = ChildCommand::new(pg_restore, "pg_restore")
        .args(args)
        .envs(auth.env());
    run_on_staged(cmd, staged, false).await.map(drop)
}

/// Runs `psql` on a staged globals file; returns how many statements failed (a role that
/// already exists is the usual one).
pub async fn apply_globals(
    psql: &Path,
    public_url: &str,
    file: &Path,
    auth: &ChildAuth,
) -> Result<usize> {
    let out = ChildCommand::new(psql, "psql (globals)")
        .args(psql_globals_args(public_url, file))
        .envs(auth.env())
        .output()
        .await?;
    Ok(out.stderr.lines().filter(|l| l.contains("ERROR:")).count())
}

/// Runs a pg_restore child on a staged dump: the file as an argument when it is a plain
/// archive, else decompressed into its stdin. Returns its stdout.
async fn run_on_staged(
    cmd: ChildCommand,
    staged: &StagedDump,
    reader_may_stop_early: bool,
) -> Result<String> {
    let piped = staged.compression != Compression::None;
    let cmd = if piped { cmd } else { cmd.arg(&staged.path) };
    let what = cmd.what().to_string();
    let mut running = cmd.spawn(
        if piped { Stdio::piped() } else { Stdio::null() },
        Stdio::piped(),
    )?;
    let feeder = if piped {
        let stdin = running.take_stdin_file()?;
        let (path, compression) = (staged.path.clone(), staged.compression);
        Some(tokio::task::spawn_blocking(move || -> Result<u64> {
            let file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&path)?);
            let mut decoder = crate::codec::decompressor(compression, file)?;
            let mut stdin = stdin;
            Ok(std::io::copy(&mut decoder, &mut stdin)?)
        }))
    } else {
        None
    };
    let stdout = read_stdout(&mut running);
    running.finish().await?;
    if let Some(feeder) = feeder {
        if let Err(e) = feeder.await? {
            if !reader_may_stop_early {
                return Err(e.context(format!("cannot feed the archive to {what}")));
            }
        }
    }
    Ok(stdout.await.unwrap_or_default())
}

fn read_stdout(running: &mut crate::process::RunningChild) -> tokio::task::JoinHandle<String> {
    let mut stdout = running.child.stdout.take().expect("stdout is piped");
    tokio::spawn(async move {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text).await;
        text
    })
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

    #[test]
    fn toc_entries_skip_comments() {
        assert_eq!(
            count_toc_entries(";\n; Archive\n1; 2 TABLE x\n\n2; 3 DATA y\n"),
            2
        );
    }
}
