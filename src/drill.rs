//! Drills: restore a backup into a scratch destination that cannot be production, verify
//! it, measure RTO and RPO against the objectives, and keep a report in storage.

use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backup::{self, catalog, manifest::BackupKind, BackupPlan};
use crate::config::{Config, PostgresTarget};
use crate::pg::{self, ConnTarget};
use crate::report::{Finding, Phase, Step, Steps, FORMAT_VERSION};
use crate::restore::verify::VerifyReport;
use crate::restore::{self, Action, RestoreOptions, RestoreRequest, RestoreScope};
use crate::sandbox::SandboxCluster;
use crate::storage::{self, Storage};
use crate::units;

pub mod pitr;
pub mod redis;
pub mod redis_sandbox;
pub mod throughput;

pub const DRILLS_PREFIX: &str = "drills";

/// Where a drill restores: never production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrillMode {
    /// A new database `dr_drill_<timestamp>` on the target's server, dropped afterwards.
    ScratchDatabase,
    /// A throwaway PostgreSQL cluster started by `dr`, removed afterwards.
    Sandbox,
    /// A throwaway redis-server started by `dr` (Redis targets), removed afterwards.
    RedisSandbox,
    /// A physical base backup and archived WAL replayed to a target in a throwaway
    /// PostgreSQL data directory started by `dr`, removed afterwards.
    PitrSandbox,
}

impl DrillMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DrillMode::ScratchDatabase => "scratch-database",
            DrillMode::Sandbox => "sandbox",
            DrillMode::RedisSandbox => "redis-sandbox",
            DrillMode::PitrSandbox => "pitr-sandbox",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillReport {
    pub format_version: u32,
    pub id: String,
    pub target: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub mode: DrillMode,
    pub destination: String,
    pub backup_id: Option<String>,
    pub backup_created_at: Option<DateTime<Utc>>,
    #[serde(alias = "phases")]
    pub steps: Vec<Step>,
    /// Measured recovery time: preflight, fetch, restore and verify.
    pub rto_ms: u64,
    /// Age of the backup used, at drill time.
    pub rpo_ms: Option<u64>,
    pub rto_objective_ms: Option<u64>,
    pub rpo_objective_ms: Option<u64>,
    /// A failed drill meets no objective.
    pub rto_met: Option<bool>,
    pub rpo_met: Option<bool>,
    pub verification: Option<VerifyReport>,
    /// Redis drills: key counts and sampled keys against the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_verification: Option<crate::restore::redis_verify::RedisVerifyReport>,
    /// Point-in-time drills: the target and where recovery stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pitr: Option<pitr::PitrDrillDetails>,
    #[serde(alias = "passed")]
    pub ok: bool,
    /// The backup was encrypted and this drill opened it with an identity: someone still
    /// holds a key (`encryption.keys` looks for such a drill).
    #[serde(default)]
    pub decrypted: bool,
    /// One line: what passed, or what failed and why.
    pub verdict: String,
    /// What the drill restored: the backup's stored bytes, and for a point-in-time drill
    /// the WAL archived since its base backup.
    #[serde(default)]
    pub restored_bytes: Option<u64>,
    /// The recovery time earlier drills predicted for this restore, before it ran.
    #[serde(default)]
    pub predicted_rto_ms: Option<u64>,
    /// (predicted - measured) / measured, in percent; only for a drill that measured.
    #[serde(default)]
    pub prediction_error_pct: Option<i64>,
}

pub struct DrillRequest<'a> {
    pub config: &'a Config,
    pub storage: &'a dyn Storage,
    pub target: &'a PostgresTarget,
    pub backup_id: Option<&'a str>,
    pub mode: DrillMode,
    pub jobs: u32,
    /// Restore the backup's roles first (sandbox only; the default there when the
    /// backup holds them).
    pub with_globals: bool,
    pub no_owner: bool,
    /// Opens encrypted backups.
    pub identities: Option<std::sync::Arc<crate::encryption::Identities>>,
}

/// Runs a drill and stores its report, pass or fail. Errors only when even the report
/// cannot be written.
pub async fn run(req: DrillRequest<'_>) -> Result<DrillReport> {
    let started_at = Utc::now();
    let id = format!(
        "{}-{}",
        crate::config::storage_name(&req.target.name),
        started_at.format("%Y%m%dT%H%M%SZ")
    );
    let mut steps = Steps::default();
    let mut destination_text = String::from("-");
    let mut manifest_used = None;
    let mut verification = None;
    let source = ConnTarget::parse(&req.target.resolve_url()?)?;
    // Scratch databases are made and dropped with the restore credentials.
    let admin = ConnTarget::parse(&req.target.resolve_restore_url()?)?;

    let mut scratch: Option<ScratchDatabase> = None;
    let mut sandbox: Option<SandboxCluster> = None;
    let outcome: Result<()> = async {
        let manifest = match req.backup_id {
            Some(bid) => {
                steps
                    .run("backup", Phase::Prepare, async {
                        let m = catalog::resolve(req.storage, &req.target.name, bid).await?;
                        let msg = format!("using backup {} taken {}", m.id, units::time(m.created_at));
                        Ok((m, msg))
                    })
                    .await?
            }
            None => {
                steps
                    .run("backup", Phase::Prepare, async {
                        // Scheduled as `dr backup` schedules one: the database and its
                        // server's connection slots are held while it runs.
                        let fleet = crate::fleet::Fleet::new(req.config, 1);
                        let _held = fleet.hold_for_backup(&source, false).await?;
                        let plan = BackupPlan::new(
                            req.target,
                            source.clone(),
                            BackupKind::Regular,
                            req.config,
                            false,
                        )?;
                        let m = backup::run(req.storage, plan).await?;
                        let msg = format!("took fresh backup {} ({})", m.id, units::bytes(m.size_bytes));
                        Ok((m, msg))
                    })
                    .await?
            }
        };
        manifest_used = Some(manifest.clone());
        let destination = match req.mode {
            DrillMode::Sandbox => {
                let bin = req.target.pg_bin_dir.clone();
                let cluster = steps
                    .run("sandbox", Phase::Prepare, async {
                        let c = tokio::task::spawn_blocking(move || {
                            SandboxCluster::start(bin.as_deref())
                        })
                        .await??;
                        let msg = format!("throwaway cluster on 127.0.0.1:{}", c.port);
                        Ok((c, msg))
                    })
                    .await?;
                let dest = ConnTarget::parse(&cluster.url)?.with_database("dr_drill")?;
                let admin = ConnTarget::parse(&cluster.url)?;
                sandbox = Some(cluster);
                admin
                    .connect()
                    .await?
                    .batch_execute("CREATE DATABASE dr_drill")
                    .await
                    .map_err(|e| anyhow!("{}", pg::describe_pg_error(&e)))?;
                dest
            }
            DrillMode::RedisSandbox | DrillMode::PitrSandbox => {
                anyhow::bail!("{} drills run in their own module", req.mode.as_str())
            }
            DrillMode::ScratchDatabase => {
                for stale in stale_scratch_databases(&admin).await.unwrap_or_default() {
                    match drop_database(&admin, &stale).await {
                        Ok(()) => tracing::warn!("dropped scratch database {stale} left by a drill that died"),
                        Err(e) => tracing::warn!("cannot drop scratch database {stale} left by a drill that died: {e:#}"),
                    }
                }
                let name = format!("dr_drill_{}", started_at.format("%Y%m%d%H%M%S"));
                let db = steps
                    .run("scratch database", Phase::Prepare, async {
                        let db = ScratchDatabase::create(&admin, &name).await?;
                        let msg = format!("created {name} on the target's server");
                        Ok((db, msg))
                    })
                    .await?;
                let dest = db.conn.clone();
                scratch = Some(db);
                dest
            }
        };
        destination_text = destination.public_url.clone();
        let staging_dir = backup::default_staging_dir();
        let never_asked = |_: &restore::Consent| -> Result<()> {
            anyhow::bail!("the drill's destination is not empty; it was created for this drill, so something else wrote into it")
        };
        // A sandbox has none of the backup's roles: its globals bring them (the default
        // when the backup holds them); without them, owners and grants are left out.
        let sandbox = req.mode == DrillMode::Sandbox;
        let with_globals = sandbox && (req.with_globals || manifest.globals().is_some());
        if req.with_globals && manifest.globals().is_none() {
            anyhow::bail!(
                "--with-globals: backup {} holds no roles or tablespaces; hint: leave out --with-globals, and set [backup] include_globals = true for the next backups",
                manifest.id
            );
        }
        let scope = RestoreScope {
            create: false,
            with_globals,
            no_owner: req.no_owner || (sandbox && !with_globals),
            no_acl: sandbox && !with_globals,
            selection: Default::default(),
        };
        let (restored, result) = restore::run(RestoreRequest {
            config: req.config,
            storage: req.storage,
            target: req.target,
            backup_id: &manifest.id,
            destination: &destination,
            destination_flag: Some(format!("--into '{}'", destination.public_url)),
            staging_dir: &staging_dir,
            scope,
            identities: req.identities.clone(),
            action: Action::Restore(RestoreOptions {
                jobs: req.jobs,
                clean: false,
                safety_backup: false,
                verify_services: false,
                show_progress: false,
                confirm: &never_asked,
            }),
        })
        .await;
        steps.0.extend(restored.steps);
        verification = restored.verification;
        result
    }
    .await;

    // Cleanup runs on success and failure alike; Ctrl-C is covered by the guards' Drop.
    let cleanup_started = Instant::now();
    let mut cleanup_msgs = Vec::new();
    if let Some(db) = scratch.take() {
        match db.drop_now().await {
            Ok(name) => cleanup_msgs.push(format!("dropped scratch database {name}")),
            Err(e) => cleanup_msgs.push(format!("could not drop the scratch database: {e:#}")),
        }
    }
    if let Some(mut c) = sandbox.take() {
        tokio::task::spawn_blocking(move || c.stop()).await.ok();
        cleanup_msgs.push("stopped and removed the sandbox cluster".into());
    }
    if !cleanup_msgs.is_empty() {
        let ok = !cleanup_msgs.iter().any(|m| m.starts_with("could not"));
        let message = cleanup_msgs.join("; ");
        steps.push(
            "cleanup",
            Phase::Cleanup,
            if ok {
                Finding::pass(message)
            } else {
                Finding::warn(message)
            },
            cleanup_started.elapsed().as_millis() as u64,
        );
    }

    let restored = outcome.is_ok();
    let judged = Judgement::of(
        &steps,
        started_at,
        manifest_used.as_ref().map(|m| m.created_at),
        &req.config.objectives,
        &outcome,
    );
    let mut report = DrillReport {
        format_version: FORMAT_VERSION,
        id,
        target: req.target.name.clone(),
        started_at,
        finished_at: Utc::now(),
        mode: req.mode,
        destination: destination_text,
        backup_id: manifest_used.as_ref().map(|m| m.id.clone()),
        backup_created_at: manifest_used.as_ref().map(|m| m.created_at),
        steps: steps.0,
        rto_ms: judged.rto_ms,
        rpo_ms: judged.rpo_ms,
        rto_objective_ms: judged.rto_objective_ms,
        rpo_objective_ms: judged.rpo_objective_ms,
        rto_met: judged.rto_met,
        rpo_met: judged.rpo_met,
        verification,
        redis_verification: None,
        pitr: None,
        decrypted: restored
            && manifest_used
                .as_ref()
                .is_some_and(|m| m.encryption.is_some()),
        ok: judged.ok,
        verdict: judged.verdict,
        restored_bytes: None,
        predicted_rto_ms: None,
        prediction_error_pct: None,
    };
    store_report(req.storage, &mut report, req.config).await?;
    Ok(report)
}

/// A drill measured against the objectives. A drill that did not restore meets none.
pub(crate) struct Judgement {
    pub rto_ms: u64,
    pub rpo_ms: Option<u64>,
    pub rto_objective_ms: Option<u64>,
    pub rpo_objective_ms: Option<u64>,
    pub rto_met: Option<bool>,
    pub rpo_met: Option<bool>,
    pub ok: bool,
    /// One line: what passed, or what failed and why.
    pub verdict: String,
}

impl Judgement {
    pub fn of(
        steps: &Steps,
        started_at: DateTime<Utc>,
        backup_created_at: Option<DateTime<Utc>>,
        objectives: &crate::config::Objectives,
        outcome: &Result<()>,
    ) -> Judgement {
        let rto_ms = steps.recovery_ms();
        let rpo_ms = backup_created_at.map(|c| (started_at - c).num_milliseconds().max(0) as u64);
        let rto_objective_ms = objectives.rto.map(|d| d.as_millis() as u64);
        let rpo_objective_ms = objectives.rpo.map(|d| d.as_millis() as u64);
        let restored = outcome.is_ok();
        // A drill that did not restore measured nothing: "not measured", never "missed".
        let rto_met = rto_objective_ms.filter(|_| restored).map(|o| rto_ms <= o);
        let rpo_met = match (rpo_ms, rpo_objective_ms) {
            (Some(a), Some(o)) if restored => Some(a <= o),
            (None, Some(_)) if restored => Some(false),
            _ => None,
        };
        let mut problems = Vec::new();
        if let Err(e) = outcome {
            problems.push(format!("{e:#}"));
        }
        if restored && rto_met == Some(false) {
            problems.push(format!(
                "RTO objective missed: recovery took {}, the objective is {}",
                units::millis(rto_ms),
                units::millis(rto_objective_ms.unwrap_or(0))
            ));
        }
        if restored && rpo_met == Some(false) {
            problems.push(format!(
                "RPO objective missed: the backup was {} old, the objective is {}",
                units::millis(rpo_ms.unwrap_or(0)),
                units::millis(rpo_objective_ms.unwrap_or(0))
            ));
        }
        let ok = problems.is_empty();
        let verdict = if ok {
            format!("pass: restored and verified in {}", units::millis(rto_ms))
        } else {
            format!("fail: {}", problems.join("; "))
        };
        Judgement {
            rto_ms,
            rpo_ms,
            rto_objective_ms,
            rpo_objective_ms,
            rto_met,
            rpo_met,
            ok,
            verdict,
        }
    }
}

/// Stores a drill report. With `[encryption]`, what names tables (the verification) goes
/// only into an encrypted copy (`.json.age`); the readable report keeps the verdict, the
/// timings and the objectives, which is all `dr check` needs.
pub(crate) async fn store_report(
    storage: &dyn Storage,
    report: &mut DrillReport,
    config: &Config,
) -> Result<()> {
    throughput::annotate(storage, report).await;
    let report = &*report;
    let key = format!(
        "{DRILLS_PREFIX}/{}/{}.json",
        crate::config::storage_name(&report.target),
        report.id
    );
    let readable = match crate::encryption::configured_recipients(config)? {
        None => report.clone(),
        Some(recipients) => {
            let full = serde_json::to_vec_pretty(report)?;
            let mut sealed = Vec::new();
            let mut writer = recipients.encrypt(&mut sealed)?;
            std::io::Write::write_all(&mut writer, &full)?;
            writer.finish()?;
            let sealed_key = format!("{key}.age");
            storage::put_bytes(storage, &sealed_key, sealed)
                .await
                .with_context(|| format!("cannot store the drill report {sealed_key}"))?;
            let mut redacted = report.clone();
            redacted.verification = None;
            redacted.redis_verification = None;
            for step in redacted
                .steps
                .iter_mut()
                .filter(|s| s.phase == Phase::Verify)
            {
                step.message = format!(
                    "{}; details in the encrypted report {sealed_key}",
                    step.status.as_str()
                );
            }
            redacted
        }
    };
    storage::put_bytes(storage, &key, serde_json::to_vec_pretty(&readable)?)
        .await
        .with_context(|| format!("cannot store the drill report {key}"))?;
    Ok(())
}

/// Scratch databases of drills that died: named `dr_drill_<timestamp>`, a few seconds old
/// at least, and with nobody connected (a live drill holds a session in its database from
/// creation to drop).
pub async fn stale_scratch_databases(server: &ConnTarget) -> Result<Vec<String>> {
    stale_scratch_databases_on(&server.connect().await?).await
}

/// [`stale_scratch_databases`] over a connection already open.
pub async fn stale_scratch_databases_on(client: &tokio_postgres::Client) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT d.datname FROM pg_database d
              WHERE d.datname ~ '^dr_drill_[0-9]{14}$'
                AND to_timestamp(substr(d.datname, 10), 'YYYYMMDDHH24MISS')::timestamp < (now() AT TIME ZONE 'UTC') - interval '15 seconds'
                AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datid = d.oid)
              ORDER BY 1",
            &[],
        )
        .await
        .map_err(|e| anyhow!("cannot list scratch databases: {}", pg::describe_pg_error(&e)))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Drill reports of a target, newest first.
pub async fn list_reports(storage: &dyn Storage, target: &str) -> Result<Vec<DrillReport>> {
    let mut reports = Vec::new();
    let prefix = format!("{DRILLS_PREFIX}/{}/", crate::config::storage_name(target));
    for o in storage.list(&prefix).await? {
        if !o.key.ends_with(".json") {
            continue;
        }
        match storage::get_bytes(storage, &o.key)
            .await
            .and_then(|b| Ok(serde_json::from_slice::<DrillReport>(&b)?))
        {
            Ok(r) => reports.push(r),
            Err(e) => tracing::warn!("unreadable drill report {}: {e:#}", o.key),
        }
    }
    reports.sort_by_key(|r| std::cmp::Reverse(r.started_at));
    Ok(reports)
}

/// A database created for one drill and dropped afterwards, even on Ctrl-C (Drop).
struct ScratchDatabase {
    admin: ConnTarget,
    conn: ConnTarget,
    name: String,
    dropped: bool,
    /// A session held in the database for the drill's whole life: a scratch database
    /// nobody is connected to belongs to a drill that died.
    _keeper: tokio_postgres::Client,
}

impl ScratchDatabase {
    async fn create(source: &ConnTarget, name: &str) -> Result<ScratchDatabase> {
        let client = source.connect().await?;
        client
            .batch_execute(&format!("CREATE DATABASE {}", pg::quote_ident(name)))
            .await
            .map_err(|e| anyhow!("cannot create the scratch database {name}: {}; hint: the role needs CREATEDB, or use --sandbox", pg::describe_pg_error(&e)))?;
        let conn = source.with_database(name)?;
        let keeper = match conn.connect().await {
            Ok(k) => k,
            Err(e) => {
                drop_database(source, name).await.ok();
                return Err(e);
            }
        };
        Ok(ScratchDatabase {
            admin: source.clone(),
            conn,
            name: name.to_string(),
            dropped: false,
            _keeper: keeper,
        })
    }

    async fn drop_now(mut self) -> Result<String> {
        self.dropped = true;
        drop_database(&self.admin, &self.name).await?;
        Ok(self.name.clone())
    }
}

async fn drop_database(admin: &ConnTarget, name: &str) -> Result<()> {
    let client = admin.connect().await?;
    client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            pg::quote_ident(name)
        ))
        .await
        .map_err(|e| anyhow!("DROP DATABASE {name}: {}", pg::describe_pg_error(&e)))
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Interrupted: the async runtime is going away, so drop it from a helper thread.
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            if let Err(e) = rt.block_on(drop_database(&admin, &name)) {
                tracing::warn!("could not drop scratch database {name}: {e:#}; drop it by hand");
            }
            Some(())
        })
        .join();
    }
}
