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

/// How pg_restore runs, beyond the archive and the destination.
#[derive(Debug, Clone, Default)]
pub struct RestoreFlags {
    pub jobs: u32,
    /// Drop the archive's objects before recreating them.
    pub clean: bool,
    pub no_owner: bool,
    /// Leave out GRANTs and REVOKEs.
    pub no_acl: bool,
    /// `--use-list`: restore only these entries (a partial restore).
    pub use_list: Option<std::path::PathBuf>,
    /// `--section`: restore only these parts (`pre-data`, `data`, `post-data`); all when
    /// empty.
    pub sections: &'static [&'static str],
}

/// The pg_restore command line (no password: it comes from the passfile).
pub fn pg_restore_args(public_url: &str, flags: &RestoreFlags) -> Vec<String> {
    let mut args = vec![
        "--exit-on-error".to_string(),
        "--no-password".to_string(),
        format!("--jobs={}", flags.jobs.max(1)),
        format!("--dbname={public_url}"),
    ];
    if flags.clean {
        args.push("--clean".into());
        args.push("--if-exists".into());
    }
    if flags.no_owner {
        args.push("--no-owner".into());
    }
    if flags.no_acl {
        args.push("--no-acl".into());
    }
    if let Some(list) = &flags.use_list {
        args.push(format!("--use-list={}", list.display()));
    }
    args.extend(flags.sections.iter().map(|s| format!("--section={s}")));
    args
}

/// A `pg_restore --list` listing with the given entries commented out (`;` in front, as
/// pg_restore's own comments): a `--use-list` that restores everything else.
pub fn listing_without(listing: &str, left_out: &std::collections::HashSet<i64>) -> String {
    let mut out = String::with_capacity(listing.len() + 64);
    for line in listing.lines() {
        let id = line
            .split_once(';')
            .and_then(|(id, _)| id.trim().parse::<i64>().ok());
        if id.is_some_and(|id| left_out.contains(&id)) {
            out.push(';');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The psql command line that applies a SQL file (globals, database settings) without
/// stopping at an error: each failed statement is reported, the rest still apply.
pub fn psql_script_args(public_url: &str, file: &Path) -> Vec<String> {
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
/// readable without staging it. Returns the listing.
pub async fn list_streaming(
    storage: &dyn Storage,
    manifest: &BackupManifest,
    identities: Option<&Arc<Identities>>,
    pg_restore: &Path,
) -> Result<String> {
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
    Ok(listing.await.unwrap_or_default())
}

/// `pg_restore --list` on a staged dump (with `--create`: the database's own entries too).
pub async fn list_staged(pg_restore: &Path, staged: &StagedDump, create: bool) -> Result<String> {
    let mut cmd = ChildCommand::new(pg_restore, "pg_restore --list").arg("--list");
    if create {
        cmd = cmd.arg("--create");
    }
    run_on_staged(cmd, staged, true, None).await
}

/// Session settings of pg_restore's connections. `synchronous_commit = off`: pg_restore
/// commits every statement on its own, and each commit would wait for its WAL to reach disk;
/// a restore is worth nothing until it has ended anyway, and [`make_durable`] waits for all
/// of it once at the end. (About 10 % of the wall time of `pg_restore -j 2` here.)
pub const RESTORE_SESSION_OPTIONS: &str = "-c synchronous_commit=off";

/// Restores a staged dump into the destination, showing progress on `bar` when given.
pub async fn restore_staged(
    pg_restore: &Path,
    args: Vec<String>,
    auth: &ChildAuth,
    staged: &StagedDump,
    bar: Option<indicatif::ProgressBar>,
) -> Result<()> {
    let cmd = ChildCommand::new(pg_restore, "pg_restore")
        .args(args)
        .envs(auth.env())
        .envs(&[("PGOPTIONS".to_string(), RESTORE_SESSION_OPTIONS.to_string())]);
    run_on_staged(cmd, staged, false, bar).await.map(drop)
}

/// Restores from a plain archive file that pg_restore reads itself (the table of contents
/// of a restore whose rows dr loads).
pub async fn restore_file(
    pg_restore: &Path,
    args: Vec<String>,
    auth: &ChildAuth,
    file: &Path,
) -> Result<()> {
    ChildCommand::new(pg_restore, "pg_restore")
        .args(args)
        .arg(file)
        .envs(auth.env())
        .envs(&[("PGOPTIONS".to_string(), RESTORE_SESSION_OPTIONS.to_string())])
        .spawn(Stdio::null(), Stdio::null())?
        .finish()
        .await
        .map(drop)
}

/// Waits until everything pg_restore committed asynchronously is on disk: a commit with
/// `synchronous_commit = on` flushes the WAL up to its own record, which comes after theirs.
pub async fn make_durable(destination: &crate::pg::ConnTarget) -> Result<()> {
    let client = destination.connect().await?;
    client
        .batch_execute("BEGIN; SET LOCAL synchronous_commit = on; SELECT txid_current(); COMMIT")
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot make the restore durable (flush its WAL): {}",
                crate::pg::describe_pg_error(&e)
            )
        })?;
    Ok(())
}

/// The SQL of the database's own settings and grants (`ALTER DATABASE ... SET`, `GRANT
/// ... ON DATABASE`, its comment), which pg_restore writes only with `--create`; for a
/// database that `dr` created itself, renamed to `new_name`.
pub async fn database_settings_sql(
    pg_restore: &Path,
    staged: &StagedDump,
    old_name: &str,
    new_name: &str,
) -> Result<String> {
    let listing = list_staged(pg_restore, staged, true).await?;
    let wanted: String = listing
        .lines()
        .filter(|l| {
            super::selection::TocEntry::parse(l).is_some_and(|e| {
                let r = e.desc_and_rest;
                r.starts_with("DATABASE PROPERTIES ")
                    || r.starts_with("ACL - DATABASE ")
                    || r.starts_with("COMMENT - DATABASE ")
                    || r.starts_with("SECURITY LABEL - DATABASE ")
            })
        })
        .map(|l| format!("{l}\n"))
        .collect();
    if wanted.is_empty() {
        return Ok(String::new());
    }
    let list = staged.dir.path().join("database.list");
    std::fs::write(&list, wanted)?;
    let cmd = ChildCommand::new(pg_restore, "pg_restore (database settings)")
        .args(["--create", "--file=-"])
        .arg(format!("--use-list={}", list.display()));
    let sql = run_on_staged(cmd, staged, true, None).await?;
    Ok(rename_database_sql(&sql, old_name, new_name))
}

/// pg_restore's `--create` SQL for the database's settings, made to apply to `new_name`
/// over an open connection: no `\connect`, and the database named anew.
pub fn rename_database_sql(sql: &str, old_name: &str, new_name: &str) -> String {
    let old_forms = [crate::pg::quote_ident(old_name), old_name.to_string()];
    let new = crate::pg::quote_ident(new_name);
    let mut out = String::new();
    for line in sql.lines() {
        // The database exists already, with its owner: only its settings and grants apply.
        if line.starts_with("\\connect")
            || line.starts_with("CREATE DATABASE ")
            || (line.starts_with("ALTER DATABASE ") && line.contains(" OWNER TO "))
        {
            continue;
        }
        let mut line = line.to_string();
        for old in &old_forms {
            for (before, after) in [(" ", " "), (" ", ";")] {
                line = line.replace(
                    &format!("DATABASE{before}{old}{after}"),
                    &format!("DATABASE{before}{new}{after}"),
                );
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Runs `psql` on a SQL file without stopping at errors; returns every error line.
pub async fn apply_sql(
    psql: &Path,
    what: &str,
    public_url: &str,
    file: &Path,
    auth: &ChildAuth,
) -> Result<Vec<String>> {
    let out = ChildCommand::new(psql, what)
        .args(psql_script_args(public_url, file))
        .envs(auth.env())
        .keep_stderr_lines(5000)
        .output()
        .await?;
    Ok(out
        .stderr
        .lines()
        .filter_map(|l| l.split_once("ERROR:").map(|(_, e)| e.trim().to_string()))
        .collect())
}

/// The globals without the statements about `role`, the role the restore connects as: it
/// exists, and giving it the backup's attributes or password would lock the restore out.
pub fn globals_without_role(sql: &str, role: &str) -> String {
    let forms = [crate::pg::quote_ident(role), role.to_string()];
    sql.lines()
        .filter(|l| {
            !forms.iter().any(|r| {
                *l == format!("CREATE ROLE {r};") || l.starts_with(&format!("ALTER ROLE {r} "))
            })
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The roles a globals file creates.
pub fn globals_roles(sql: &str) -> Vec<String> {
    sql.lines()
        .filter_map(|l| l.strip_prefix("CREATE ROLE ")?.strip_suffix(';'))
        .map(
            |name| match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
                Some(quoted) => quoted.replace("\"\"", "\""),
                None => name.to_string(),
            },
        )
        .collect()
}

/// Runs a pg_restore child on a staged dump: the file as an argument when it is a plain
/// archive, else decompressed into its stdin. Returns its stdout.
async fn run_on_staged(
    cmd: ChildCommand,
    staged: &StagedDump,
    reader_may_stop_early: bool,
    bar: Option<indicatif::ProgressBar>,
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
        let bar = bar.clone();
        Some(tokio::task::spawn_blocking(move || -> Result<u64> {
            let file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&path)?);
            let mut decoder = crate::codec::decompressor(compression, file)?;
            let stdin = super::progress::Counted::new(stdin, bar);
            // Rows joined into large chunks: far fewer calls for pg_restore (see `offsets`).
            let stdin = std::io::BufWriter::with_capacity(64 << 10, stdin);
            let mut rewriter = super::offsets::ArchiveRewriter::new(stdin);
            let n = super::offsets::copy_large(&mut decoder, &mut rewriter)?;
            rewriter.finish()?;
            Ok(n)
        }))
    } else {
        None
    };
    // A child reading the file itself: its progress is what it has read.
    let watcher = match (&bar, piped) {
        (Some(bar), false) => running
            .child
            .id()
            .map(|pid| super::progress::watch_reads(pid, bar.clone())),
        _ => None,
    };
    let stdout = read_stdout(&mut running);
    let finished = running.finish().await;
    if let Some(w) = watcher {
        w.abort();
    }
    finished?;
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
    // `spawn` was given Stdio::piped() for stdout by every caller of this function.
    #[allow(clippy::expect_used)]
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
        let flags = |jobs, clean, no_owner| RestoreFlags {
            jobs,
            clean,
            no_owner,
            ..RestoreFlags::default()
        };
        let args = pg_restore_args("postgres://u@h/db", &flags(2, true, false));
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
        let args = pg_restore_args("postgres://u@h/db", &flags(0, false, true));
        assert!(args.contains(&"--jobs=1".to_string()));
        assert!(args.contains(&"--no-owner".to_string()));
        let partial = RestoreFlags {
            no_acl: true,
            use_list: Some("/s/list".into()),
            ..flags(1, false, false)
        };
        let args = pg_restore_args("postgres://u@h/db", &partial);
        assert!(args.contains(&"--no-acl".to_string()));
        assert!(args.contains(&"--use-list=/s/list".to_string()));
    }

    const GLOBALS: &str = "\\restrict abc\nSET default_transaction_read_only = off;\n\
CREATE ROLE app;\n\
ALTER ROLE app WITH NOSUPERUSER INHERIT LOGIN;\n\
CREATE ROLE \"Odd \"\"Role\"\"\";\n\
CREATE ROLE postgres;\n\
ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:x';\n\
ALTER ROLE postgres SET work_mem TO '8MB';\n\
CREATE ROLE postgres2;\n\
GRANT pg_read_all_data TO app GRANTED BY postgres;\n";

    #[test]
    fn globals_skip_the_restoring_role_only() {
        let filtered = globals_without_role(GLOBALS, "postgres");
        assert!(!filtered.contains("CREATE ROLE postgres;"));
        assert!(!filtered.contains("ALTER ROLE postgres "));
        assert!(filtered.contains("CREATE ROLE postgres2;"));
        assert!(filtered.contains("ALTER ROLE app WITH"));
        assert!(filtered.contains("GRANTED BY postgres"));
        assert!(filtered.contains("\\restrict abc"));
        assert_eq!(
            globals_roles(GLOBALS),
            vec!["app", "Odd \"Role\"", "postgres", "postgres2"]
        );
        let odd = globals_without_role(GLOBALS, "Odd \"Role\"");
        assert!(!odd.contains("Odd"), "{odd}");
    }

    #[test]
    fn database_settings_are_renamed() {
        let sql = "CREATE DATABASE shop WITH TEMPLATE = template0;\nALTER DATABASE shop OWNER TO app;\n\\connect shop\nALTER DATABASE shop SET work_mem TO '8MB';\nGRANT CONNECT ON DATABASE shop TO app;\nALTER ROLE app IN DATABASE shop SET x TO '1';\nCOMMENT ON DATABASE shop IS 'DATABASE shopkeeper';\nALTER DATABASE shop2 SET y TO 1;\n";
        let out = rename_database_sql(sql, "shop", "Shop Recovery");
        assert!(!out.contains("\\connect"));
        assert!(
            !out.contains("CREATE DATABASE") && !out.contains("OWNER TO"),
            "{out}"
        );
        assert!(out.contains("ALTER DATABASE \"Shop Recovery\" SET work_mem"));
        assert!(out.contains("ON DATABASE \"Shop Recovery\" TO app"));
        assert!(out.contains("IN DATABASE \"Shop Recovery\" SET x"));
        assert!(out.contains("COMMENT ON DATABASE \"Shop Recovery\" IS 'DATABASE shopkeeper'"));
        assert!(out.contains("ALTER DATABASE shop2 SET y"));
    }

    #[test]
    fn toc_entries_skip_comments() {
        assert_eq!(
            count_toc_entries(";\n; Archive\n1; 2 TABLE x\n\n2; 3 DATA y\n"),
            2
        );
    }
}
