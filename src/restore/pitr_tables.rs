//! `dr restore --pitr --to-time T --only-table SCHEMA.TABLE --into-env VAR [--create]`: one
//! table (or schema) as it was at a time, copied into another database, production never
//! touched. The base backup and WAL are replayed to T in a throwaway data directory on a
//! private socket (the drill's sandbox), the tables are dumped from it with `pg_dump` and
//! loaded into the destination with `pg_restore`, row counts compared, and the sandbox is
//! stopped and removed on every path, Ctrl-C included. What to copy back, and how, stays
//! the operator's decision: the rows are side by side with production's.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::pitr::{self, PitrRequest, RecoveryTarget, TargetSpec, TimelineChoice};
use super::pitr_sandbox::Sandbox;
use super::selection::Selection;
use crate::config::{Config, PostgresTarget};
use crate::encryption::Identities;
use crate::error::usage;
use crate::pg::{self, tools, ConnTarget};
use crate::process::ChildCommand;
use crate::report::{Phase, Step, Steps, FORMAT_VERSION};
use crate::storage::Storage;

pub struct TablesRequest<'a> {
    pub config: &'a Config,
    pub storage: &'a dyn Storage,
    pub target: &'a PostgresTarget,
    pub recovery_target: RecoveryTarget,
    pub backup_id: Option<&'a str>,
    pub identities: Option<Arc<Identities>>,
    pub identity_file: Option<std::path::PathBuf>,
    pub timeline: Option<TimelineChoice>,
    pub system_id: Option<u64>,
    pub selection: &'a Selection,
    /// Where the tables go; never the target's own database.
    pub destination: &'a ConnTarget,
    /// `--create`: create the destination database (it must not exist).
    pub create: bool,
}

/// One table as copied.
#[derive(Debug, Clone, Serialize)]
pub struct TableCopied {
    pub table: String,
    pub rows: i64,
}

/// `dr restore --pitr --only-table ... --format json`.
#[derive(Debug, Serialize)]
pub struct TablesReport {
    pub format_version: u32,
    pub ok: bool,
    pub operation: &'static str,
    pub target: String,
    pub backup_id: Option<String>,
    pub recovery_target: TargetSpec,
    /// Password removed.
    pub destination: String,
    pub tables: Vec<TableCopied>,
    pub last_transaction_at: Option<DateTime<Utc>>,
    pub duration_ms: u64,
    pub steps: Vec<Step>,
    pub error: Option<String>,
}

pub async fn run(req: TablesRequest<'_>) -> (TablesReport, Result<()>) {
    let mut steps = Steps::default();
    let mut tables = Vec::new();
    let mut facts: Option<pitr::PitrReport> = None;
    let result = steps_of(&req, &mut steps, &mut tables, &mut facts).await;
    let report = TablesReport {
        format_version: FORMAT_VERSION,
        ok: result.is_ok(),
        operation: "pitr-tables",
        target: req.target.name.clone(),
        backup_id: facts.as_ref().and_then(|f| f.backup_id.clone()),
        recovery_target: facts
            .as_ref()
            .map_or_else(|| req.recovery_target.spec(), |f| f.recovery_target.clone()),
        destination: req.destination.public_url.clone(),
        tables,
        last_transaction_at: facts.as_ref().and_then(|f| f.last_transaction_at),
        duration_ms: steps.total_ms(),
        steps: steps.0,
        error: result.as_ref().err().map(|e| format!("{e:#}")),
    };
    (report, result)
}

async fn steps_of(
    req: &TablesRequest<'_>,
    steps: &mut Steps,
    tables: &mut Vec<TableCopied>,
    facts: &mut Option<pitr::PitrReport>,
) -> Result<()> {
    let source = ConnTarget::parse(&req.target.resolve_url()?)?;
    steps
        .run(
            "destination",
            Phase::Preflight,
            check_destination(req, &source),
        )
        .await?;
    let mut sandbox = Sandbox::new()?;
    let port = crate::sandbox::free_port()?;
    let data = sandbox.data();
    let socket_dir = sandbox.path().to_path_buf();
    let (report, result) = pitr::run(PitrRequest {
        config: req.config,
        storage: req.storage,
        target: req.target,
        recovery_target: req.recovery_target.clone(),
        pgdata: &data,
        backup_id: req.backup_id,
        identities: req.identities.clone(),
        identity_file: req.identity_file.clone(),
        start: true,
        port: Some(port),
        archive: false,
        sandbox_socket_dir: Some(socket_dir.clone()),
        timeline: req.timeline,
        system_id: req.system_id,
        new_primary: false,
    })
    .await;
    steps.0.extend(report.steps.iter().cloned());
    *facts = Some(report);
    let restored = result?;
    sandbox.server = restored.server.clone();
    let major = restored.manifest.server_major;
    let dump_file = socket_dir.join("tables.dump");
    let sandbox_url = |user: &str| pg::socket_url(user, &source.database, &socket_dir, port);
    let superuser = steps
        .run("dump", Phase::Restore, async {
            let client = ConnTarget::parse(&sandbox_url(&source.user))?
                .connect()
                .await?;
            let row = client
                .query_one("SELECT rolname::text FROM pg_roles WHERE oid = 10", &[])
                .await
                .map_err(|e| anyhow!("{}", pg::describe_pg_error(&e)))?;
            let superuser: String = row.get(0);
            let pg_dump =
                tools::find_versioned("pg_dump", req.target.pg_bin_dir.as_deref(), major)?;
            let mut cmd = ChildCommand::new(pg_dump, "pg_dump")
                .args(["--format=custom", "--no-owner", "--no-acl"])
                .arg(format!("--file={}", dump_file.display()))
                .arg(format!("--dbname={}", sandbox_url(&superuser)));
            for t in &req.selection.tables {
                cmd = cmd.arg(format!(
                    "--table={}.{}",
                    pg::quote_ident(&t.schema),
                    pg::quote_ident(&t.name)
                ));
            }
            for s in &req.selection.schemas {
                cmd = cmd.arg(format!("--schema={}", pg::quote_ident(s)));
            }
            cmd.output().await?;
            Ok((
                superuser,
                format!(
                    "{} dumped from the replayed copy as of {}",
                    req.selection.flags(),
                    req.recovery_target.describe()
                ),
            ))
        })
        .await?;
    let counts_in_copy =
        count_rows(&ConnTarget::parse(&sandbox_url(&superuser))?, req.selection).await?;
    steps
        .run("load", Phase::Restore, async {
            load(req, &dump_file, major, &counts_in_copy).await?;
            Ok((
                (),
                format!(
                    "loaded into {} with pg_restore (no owner, no grants, no foreign keys)",
                    req.destination.public_url
                ),
            ))
        })
        .await?;
    let loaded = steps
        .run("verify", Phase::Verify, async {
            let found = count_rows(req.destination, req.selection).await?;
            for (table, rows) in &counts_in_copy {
                let there = found.iter().find(|(t, _)| t == table).map(|(_, r)| *r);
                if there != Some(*rows) {
                    bail!(
                        "{table} holds {} rows in {}, the replayed copy {rows}",
                        there.map_or("no".into(), |r| r.to_string()),
                        req.destination.public_url
                    );
                }
            }
            let msg = format!(
                "row counts match the replayed copy: {}",
                found
                    .iter()
                    .map(|(t, r)| format!("{t} {r}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok((found, msg))
        })
        .await?;
    tables.extend(
        loaded
            .into_iter()
            .map(|(table, rows)| TableCopied { table, rows }),
    );
    // Stopped and removed here; on an error or Ctrl-C, on drop.
    tokio::task::spawn_blocking(move || sandbox.remove())
        .await
        .ok();
    Ok(())
}

/// The destination is another database than the target's, and can take the tables: it
/// exists without them, or (`--create`) does not exist yet.
async fn check_destination(req: &TablesRequest<'_>, source: &ConnTarget) -> Result<((), String)> {
    let dest = req.destination;
    if dest.server() == source.server() && dest.database == source.database {
        return Err(usage(format!(
            "the destination {} is {}'s own database: a table as of a time goes into another database, never over production; nothing was changed; hint: pass --into-env VAR with a new database's URL and --create",
            dest.public_url, req.target.name
        )));
    }
    match dest.connect().await {
        Ok(client) => {
            if req.create {
                return Err(usage(format!(
                    "--create: database {} already exists on {}; nothing was changed; hint: drop --create to load into it, or name a new database",
                    dest.database,
                    dest.server()
                )));
            }
            for t in &req.selection.tables {
                let exists: bool = client
                    .query_one(
                        "SELECT to_regclass($1) IS NOT NULL",
                        &[&format!(
                            "{}.{}",
                            pg::quote_ident(&t.schema),
                            pg::quote_ident(&t.name)
                        )],
                    )
                    .await
                    .map_err(|e| anyhow!("{}", pg::describe_pg_error(&e)))?
                    .get(0);
                if exists {
                    return Err(usage(format!(
                        "{} already has {}; nothing was changed; hint: load into a new database (--create) and copy rows back from there",
                        dest.public_url,
                        t
                    )));
                }
            }
            Ok((
                (),
                format!("{} exists and has none of the tables", dest.public_url),
            ))
        }
        Err(e) if pg::is_missing_database(&e) && req.create => {
            Ok(((), format!("{} will be created", dest.public_url)))
        }
        Err(e) => Err(e),
    }
}

async fn count_rows(conn: &ConnTarget, selection: &Selection) -> Result<Vec<(String, i64)>> {
    let client = conn.connect().await?;
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(|e| anyhow!("{}", pg::describe_pg_error(&e)))?;
    let mut out = Vec::new();
    for r in rows {
        let (schema, name): (String, String) = (r.get(0), r.get(1));
        let wanted = selection
            .tables
            .iter()
            .any(|t| t.schema == schema && t.name == name)
            || selection.schemas.contains(&schema);
        if !wanted {
            continue;
        }
        let sql = format!(
            "SELECT count(*) FROM {}.{}",
            pg::quote_ident(&schema),
            pg::quote_ident(&name)
        );
        let n: i64 = client
            .query_one(&sql, &[])
            .await
            .map_err(|e| anyhow!("{}", pg::describe_pg_error(&e)))?
            .get(0);
        out.push((format!("{schema}.{name}"), n));
    }
    Ok(out)
}

/// Creates the database (with `--create`) and the schemas, then runs pg_restore.
async fn load(
    req: &TablesRequest<'_>,
    dump_file: &Path,
    major: u32,
    counts_in_copy: &[(String, i64)],
) -> Result<()> {
    let dest = req.destination;
    if req.create {
        let (_, admin) = dest.connect_maintenance().await?;
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {}",
                pg::quote_ident(&dest.database)
            ))
            .await
            .map_err(|e| {
                anyhow!(
                    "cannot create database {}: {}",
                    dest.database,
                    pg::describe_pg_error(&e)
                )
            })?;
    }
    let client = dest.connect().await?;
    let mut schemas: Vec<&str> = counts_in_copy
        .iter()
        .filter_map(|(t, _)| t.split_once('.').map(|(s, _)| s))
        .collect();
    schemas.sort_unstable();
    schemas.dedup();
    for s in schemas {
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                pg::quote_ident(s)
            ))
            .await
            .map_err(|e| {
                anyhow!(
                    "cannot create schema {s} in {}: {}",
                    dest.public_url,
                    pg::describe_pg_error(&e)
                )
            })?;
    }
    let pg_restore = tools::find_versioned("pg_restore", req.target.pg_bin_dir.as_deref(), major)
        .context("pg_restore is needed to load the tables")?;
    // A foreign key to a table that was not copied cannot be created in the destination,
    // so foreign keys are left out of the list pg_restore follows: the rows are what is
    // wanted, and production keeps its constraints.
    let toc = ChildCommand::new(&pg_restore, "pg_restore --list")
        .arg("--list")
        .arg(dump_file)
        .output()
        .await?;
    let list_file = dump_file.with_extension("list");
    let kept: Vec<&str> = toc
        .stdout
        .lines()
        .filter(|l| !l.contains(" FK CONSTRAINT "))
        .collect();
    std::fs::write(&list_file, kept.join("\n") + "\n")
        .with_context(|| format!("cannot write {}", list_file.display()))?;
    let auth = dest.child_env()?;
    ChildCommand::new(pg_restore, "pg_restore")
        .envs(auth.env())
        .args(["--no-owner", "--no-acl", "--exit-on-error"])
        .arg(format!("--use-list={}", list_file.display()))
        .arg(format!("--dbname={}", dest.public_url))
        .arg(dump_file)
        .output()
        .await?;
    Ok(())
}
