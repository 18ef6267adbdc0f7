//! `dr drill --pitr`: a point-in-time restore rehearsed in a throwaway data directory.
//! The base backup and archived WAL are replayed to a target (default: five minutes ago),
//! the server is started on a socket only dr can reach, every table of every database is
//! read, `pg_amcheck` checks heap and indexes when installed, RTO and the achieved RPO are
//! judged against the objectives, and the report is stored like every drill. The server
//! is stopped and the directory removed on every path, Ctrl-C included; a killed dr's
//! sandbox is swept by the next run (it is registered as a leftover).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{store_report, DrillMode, DrillReport, Judgement};
use crate::config::{Config, PostgresTarget};
use crate::encryption::Identities;
use crate::pg::{self, tools, ConnTarget};
use crate::process::ChildCommand;
use crate::report::{Finding, Phase, Steps, FORMAT_VERSION};
use crate::restore::pitr::{self, PitrRequest, RecoveryTarget};
use crate::restore::pitr_sandbox::Sandbox;
use crate::restore::window;
use crate::storage::Storage;

/// How far back the default target lies: recent enough to measure the archive's RPO,
/// old enough that its WAL is archived.
const DEFAULT_LOOKBACK_MINUTES: i64 = 5;

/// What a point-in-time drill adds to its report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PitrDrillDetails {
    /// `time` or `latest`, and its value.
    pub recovery_target: String,
    pub last_transaction_at: Option<DateTime<Utc>>,
    pub timeline: Option<u32>,
    /// The server log's line on where recovery stopped.
    pub stopped: Option<String>,
}

pub struct PitrDrillRequest<'a> {
    pub config: &'a Config,
    pub storage: &'a dyn Storage,
    pub target: &'a PostgresTarget,
    pub to_time: Option<DateTime<Utc>>,
    pub backup_id: Option<&'a str>,
    pub identities: Option<Arc<Identities>>,
    pub identity_file: Option<PathBuf>,
    pub timeline: Option<pitr::TimelineChoice>,
    pub system_id: Option<u64>,
    /// `--to-latest`: recover everything archived.
    pub to_latest: bool,
}

/// Runs a point-in-time drill and stores its report, pass or fail. Errors only when even
/// the report cannot be written.
pub async fn run(req: PitrDrillRequest<'_>) -> Result<DrillReport> {
    let started_at = Utc::now();
    let id = format!(
        "{}-{}",
        req.target.name,
        started_at.format("%Y%m%dT%H%M%SZ")
    );
    let mut steps = Steps::default();
    let mut sandbox: Option<Sandbox> = None;
    let mut details: Option<PitrDrillDetails> = None;
    let mut manifest_used = None;
    let mut reference = started_at;

    let outcome: Result<()> = async {
        let recovery_target = steps
            .run("target", Phase::Prepare, choose_target(&req, started_at))
            .await?;
        if let RecoveryTarget::Time(t) = &recovery_target {
            reference = *t;
        }
        let sb = steps
            .run("sandbox", Phase::Prepare, async {
                let sb = Sandbox::new()?;
                let msg = format!("throwaway data directory {}", sb.data().display());
                Ok((sb, msg))
            })
            .await?;
        let data = sb.data();
        let socket_dir = sb.path().to_path_buf();
        let port = crate::sandbox::free_port()?;
        sandbox = Some(sb);
        let (report, result) = pitr::run(PitrRequest {
            config: req.config,
            storage: req.storage,
            target: req.target,
            recovery_target: recovery_target.clone(),
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
        steps.0.extend(report.steps);
        details = Some(PitrDrillDetails {
            recovery_target: match &report.recovery_target.value {
                Some(v) => format!("{} {v}", report.recovery_target.kind),
                None => report.recovery_target.kind.to_string(),
            },
            last_transaction_at: report.last_transaction_at,
            timeline: report.timeline,
            stopped: report.stopped.clone(),
        });
        let restored = result?;
        if let (Some(sb), Some(server)) = (sandbox.as_mut(), restored.server.clone()) {
            sb.server = Some(server);
        }
        manifest_used = Some(restored.manifest.clone());
        verify(&req, &mut steps, &socket_dir, port, &restored.manifest).await
    }
    .await;

    // A refusal (a target outside the window, no identity, an ambiguous cluster) is a
    // usage error, as for `dr restore --pitr`: exit 2, and no drill happened to record.
    let outcome = match outcome {
        Err(e) if crate::error::exit_code(&e) == crate::error::EXIT_USAGE => {
            if let Some(mut sb) = sandbox.take() {
                tokio::task::spawn_blocking(move || sb.remove()).await.ok();
            }
            return Err(e);
        }
        other => other,
    };
    let cleanup_started = Instant::now();
    if let Some(mut sb) = sandbox.take() {
        tokio::task::spawn_blocking(move || sb.remove()).await.ok();
        steps.push(
            "cleanup",
            Phase::Cleanup,
            Finding::pass("stopped the sandbox server and removed its data directory"),
            cleanup_started.elapsed().as_millis() as u64,
        );
    }

    // Achieved RPO: from the requested point back to the last transaction replayed (the
    // base backup's consistency when no transaction followed it).
    let last = details
        .as_ref()
        .and_then(|d| d.last_transaction_at)
        .or(manifest_used.as_ref().map(|m| m.finished_at));
    let judged = Judgement::of(&steps, reference, last, &req.config.objectives, &outcome);
    let verdict = judged
        .verdict
        .replace("the backup was", "the last replayed transaction was");
    let mut report = DrillReport {
        format_version: FORMAT_VERSION,
        id,
        target: req.target.name.clone(),
        started_at,
        finished_at: Utc::now(),
        mode: DrillMode::PitrSandbox,
        destination: "throwaway data directory (removed)".into(),
        backup_id: manifest_used.as_ref().map(|m| m.id.clone()),
        backup_created_at: manifest_used.as_ref().map(|m| m.created_at),
        steps: steps.0,
        rto_ms: judged.rto_ms,
        rpo_ms: judged.rpo_ms,
        rto_objective_ms: judged.rto_objective_ms,
        rpo_objective_ms: judged.rpo_objective_ms,
        rto_met: judged.rto_met,
        rpo_met: judged.rpo_met,
        verification: None,
        redis_verification: None,
        pitr: details,
        decrypted: outcome.is_ok()
            && manifest_used
                .as_ref()
                .is_some_and(|m| m.encryption.is_some()),
        ok: judged.ok,
        verdict,
        restored_bytes: None,
        predicted_rto_ms: None,
        prediction_error_pct: None,
    };
    store_report(req.storage, &mut report, req.config).await?;
    Ok(report)
}

/// `--to-time`, else five minutes ago when that lies in the restorable window, else the
/// end of the archive.
async fn choose_target(
    req: &PitrDrillRequest<'_>,
    now: DateTime<Utc>,
) -> Result<(RecoveryTarget, String)> {
    if req.to_latest {
        return Ok((
            RecoveryTarget::Latest,
            "recover to the end of the archive (--to-latest)".into(),
        ));
    }
    if let Some(t) = req.to_time {
        return Ok((
            RecoveryTarget::Time(t),
            format!("recover to {} (--to-time)", window::time_text(t)),
        ));
    }
    let default = now - chrono::Duration::minutes(DEFAULT_LOOKBACK_MINUTES);
    let (manifests, _) =
        crate::backup::catalog::list_complete(req.storage, Some(&req.target.name)).await?;
    let windows = pitr::windows(req.storage, &req.target.name, &manifests).await?;
    // The window of the cluster the restore will pick: --system-id, else the live
    // server's; another cluster's window (before a rebuild) says nothing about this one.
    let cluster = match req.system_id {
        Some(id) => Some(id),
        None => crate::restore::lineage::live_server(req.target)
            .await
            .map(|l| l.system_id),
    };
    let inside = windows
        .iter()
        .filter(|w| cluster.is_none_or(|id| w.system_identifier == id.to_string()))
        .flat_map(|w| &w.spans)
        .any(|s| s.from_time <= default && default <= s.to_time);
    if inside {
        Ok((
            RecoveryTarget::Time(default),
            format!(
                "recover to {} ({DEFAULT_LOOKBACK_MINUTES} minutes ago)",
                window::time_text(default)
            ),
        ))
    } else {
        Ok((
            RecoveryTarget::Latest,
            format!("recover to the end of the archive ({DEFAULT_LOOKBACK_MINUTES} minutes ago lies outside the restorable window)"),
        ))
    }
}

/// The restored server accepts connections, every table of every database reads, and
/// pg_amcheck (when installed) finds no corruption.
async fn verify(
    req: &PitrDrillRequest<'_>,
    steps: &mut Steps,
    socket_dir: &Path,
    port: u16,
    manifest: &crate::backup::manifest::BackupManifest,
) -> Result<()> {
    let configured = ConnTarget::parse(&req.target.resolve_url()?)?;
    let url = |user: &str, db: &str| pg::socket_url(user, db, socket_dir, port);
    let superuser = steps
        .run("connect", Phase::Verify, async {
            let c = ConnTarget::parse(&url(&configured.user, "postgres"))?;
            let client = c.connect().await?;
            let row = client
                .query_one(
                    "SELECT rolname::text, version() FROM pg_roles WHERE oid = 10",
                    &[],
                )
                .await
                .map_err(|e| anyhow!("{}", pg::describe_pg_error(&e)))?;
            let (su, version): (String, String) = (row.get(0), row.get(1));
            Ok((
                su,
                format!(
                    "the restored server accepts connections ({})",
                    version.split(" on ").next().unwrap_or(&version)
                ),
            ))
        })
        .await?;
    steps
        .run("tables", Phase::Verify, async {
            let admin = ConnTarget::parse(&url(&superuser, "postgres"))?.connect().await?;
            let q = |e: tokio_postgres::Error| anyhow!("{}", pg::describe_pg_error(&e));
            let dbs: Vec<String> = admin
                .query("SELECT datname::text FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1", &[])
                .await
                .map_err(q)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let (mut tables, mut rows) = (0u64, 0i64);
            for db in &dbs {
                let client = ConnTarget::parse(&url(&superuser, db))?.connect().await?;
                let names: Vec<(String, String)> = client
                    .query(
                        "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                         WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2",
                        &[],
                    )
                    .await
                    .map_err(q)?
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect();
                for (schema, table) in names {
                    let sql = format!("SELECT count(*) FROM {}.{}", pg::quote_ident(&schema), pg::quote_ident(&table));
                    let n: i64 = client.query_one(&sql, &[]).await.map_err(|e| {
                        anyhow!("table {schema}.{table} in database {db} cannot be read: {}", pg::describe_pg_error(&e))
                    })?.get(0);
                    tables += 1;
                    rows += n;
                }
            }
            Ok(((), format!("{tables} table(s) in {} database(s) read completely ({} rows)", dbs.len(), crate::units::count(rows))))
        })
        .await?;
    match tools::find_versioned(
        "pg_amcheck",
        req.target.pg_bin_dir.as_deref(),
        manifest.server_major,
    ) {
        Err(e) => steps.push(
            "pg_amcheck",
            Phase::Verify,
            Finding::warn(format!("not run: {e:#}")),
            0,
        ),
        Ok(amcheck) => {
            steps
                .run("pg_amcheck", Phase::Verify, async {
                    ChildCommand::new(&amcheck, "pg_amcheck")
                        .arg(format!("--host={}", socket_dir.display()))
                        .arg(format!("--port={port}"))
                        .arg(format!("--username={superuser}"))
                        .args(["--all", "--install-missing", "--no-password"])
                        .output()
                        .await
                        .map_err(|e| {
                            anyhow!("pg_amcheck found corruption in the restored copy: {e:#}")
                        })?;
                    Ok((
                        (),
                        "heap and B-tree indexes of every database checked, no corruption"
                            .to_string(),
                    ))
                })
                .await?;
        }
    }
    Ok(())
}
