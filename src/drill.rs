//! Drills: restore a backup into a scratch destination that cannot be production, verify
//! it, measure RTO and RPO against the objectives, and keep a report in storage.

use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backup::{self, catalog, manifest::BackupKind, BackupPlan};
use crate::checks::Status;
use crate::config::{Config, PostgresTarget};
use crate::pg::{self, ConnTarget};
use crate::restore::verify::{self, VerifyReport, VerifyRequest};
use crate::restore::{self, Preflight, Step, Steps};
use crate::sandbox::SandboxCluster;
use crate::storage::{self, Storage};

pub const DRILLS_PREFIX: &str = "drills";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillReport {
    pub format_version: u32,
    pub id: String,
    pub target: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// `scratch-database` or `sandbox`.
    pub mode: String,
    pub destination: String,
    pub backup_id: Option<String>,
    pub backup_created_at: Option<DateTime<Utc>>,
    pub phases: Vec<Step>,
    /// Measured recovery time: preflight, fetch, restore and verify.
    pub rto_ms: u64,
    /// Age of the backup used, at drill time.
    pub rpo_ms: Option<u64>,
    pub rto_objective_ms: Option<u64>,
    pub rpo_objective_ms: Option<u64>,
    pub rto_met: Option<bool>,
    pub rpo_met: Option<bool>,
    pub verification: Option<VerifyReport>,
    /// Redis drills: key counts and sampled keys against the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_verification: Option<crate::redis_backup::verify::RedisVerifyReport>,
    pub passed: bool,
    /// One line: what passed, or what failed and why.
    pub verdict: String,
}

pub struct DrillRequest<'a> {
    pub config: &'a Config,
    pub storage: &'a dyn Storage,
    pub target: &'a PostgresTarget,
    pub backup_id: Option<&'a str>,
    pub sandbox: bool,
    pub jobs: u32,
}

/// Runs a drill and stores its report, pass or fail. Errors only when even the report
/// cannot be written.
pub async fn run(req: DrillRequest<'_>) -> Result<DrillReport> {
    let started_at = Utc::now();
    let id = format!(
        "{}-{}",
        req.target.name,
        started_at.format("%Y%m%dT%H%M%SZ")
    );
    let mut steps = Steps::default();
    let mut destination_text = String::from("-");
    let mut manifest_used = None;
    let mut verification = None;
    let source = ConnTarget::parse(&req.target.resolve_url()?)?;

    let mut scratch: Option<ScratchDatabase> = None;
    let mut sandbox: Option<SandboxCluster> = None;
    let outcome: Result<()> = async {
        let manifest = match req.backup_id {
            Some(bid) => {
                steps
                    .run("backup", async {
                        let m = catalog::resolve(req.storage, &req.target.name, bid).await?;
                        let msg =
                            format!("using backup {} taken {}", m.id, m.created_at.to_rfc3339());
                        Ok((m, msg))
                    })
                    .await?
            }
            None => {
                steps
                    .run("backup", async {
                        let m = backup::run(
                            req.storage,
                            BackupPlan {
                                target_name: &req.target.name,
                                conn: source.clone(),
                                kind: BackupKind::Regular,
                                settings: &req.config.backup,
                                pg_bin_dir: req.target.pg_bin_dir.as_deref(),
                                show_progress: false,
                            },
                        )
                        .await?;
                        let msg = format!("took fresh backup {} ({} bytes)", m.id, m.size_bytes);
                        Ok((m, msg))
                    })
                    .await?
            }
        };
        manifest_used = Some(manifest.clone());
        let destination = if req.sandbox {
            let bin = req.target.pg_bin_dir.clone();
            let cluster = steps
                .run("sandbox", async {
                    let c =
                        tokio::task::spawn_blocking(move || SandboxCluster::start(bin.as_deref()))
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
        } else {
            let name = format!("dr_drill_{}", started_at.format("%Y%m%d%H%M%S"));
            let db = steps
                .run("scratch database", async {
                    let db = ScratchDatabase::create(&source, &name).await?;
                    let msg = format!("created {name} on the target's server");
                    Ok((db, msg))
                })
                .await?;
            let dest = db.conn.clone();
            scratch = Some(db);
            dest
        };
        destination_text = destination.public_url.clone();
        let staging_parent = backup::default_staging_dir();
        let pf = Preflight {
            storage: req.storage,
            target: req.target,
            backup_id: &manifest.id,
            destination: &destination,
            staging_dir: &staging_parent,
        };
        let (_, pg_restore) = restore::preflight(&pf, &mut steps, req.jobs > 1).await?;
        let staged = restore::stage_dump(
            req.storage,
            &manifest,
            &pg_restore,
            &staging_parent,
            req.jobs > 1,
            &mut steps,
        )
        .await?;
        // A scratch database may lack the production roles: ownership is not what a drill proves.
        restore::pg_restore_step(
            &mut steps,
            &pg_restore,
            &destination,
            &staged,
            req.jobs,
            false,
            req.sandbox,
        )
        .await?;
        drop(staged);
        let started = Instant::now();
        let report = verify::verify(VerifyRequest {
            config: req.config,
            target: &req.target.name,
            conn: &destination,
            manifest: Some(&manifest),
            include_services: false,
        })
        .await;
        steps.0.push(Step {
            name: "verify".into(),
            status: if report.ok {
                Status::Pass
            } else {
                Status::Fail
            },
            message: format!(
                "{} table(s) checked, {} mismatch(es)",
                report.tables_checked,
                report.mismatches.len()
            ),
            duration_ms: started.elapsed().as_millis() as u64,
        });
        let ok = report.ok;
        verification = Some(report);
        if !ok {
            anyhow::bail!("verification of the restored copy failed");
        }
        Ok(())
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
        steps.0.push(Step {
            name: "cleanup".into(),
            status: if ok { Status::Pass } else { Status::Warn },
            message: cleanup_msgs.join("; "),
            duration_ms: cleanup_started.elapsed().as_millis() as u64,
        });
    }

    let rto_ms: u64 = steps
        .0
        .iter()
        .filter(|s| {
            matches!(
                s.name.as_str(),
                "destination"
                    | "extensions"
                    | "disk"
                    | "storage"
                    | "manifest"
                    | "tools"
                    | "fetch"
                    | "archive"
                    | "pg_restore"
                    | "verify"
            )
        })
        .map(|s| s.duration_ms)
        .sum();
    let rpo_ms = manifest_used
        .as_ref()
        .map(|m| (started_at - m.created_at).num_milliseconds().max(0) as u64);
    let objectives = &req.config.objectives;
    let rto_objective_ms = objectives.rto.map(|d| d.as_millis() as u64);
    let rpo_objective_ms = objectives.rpo.map(|d| d.as_millis() as u64);
    let rto_met = rto_objective_ms.map(|o| rto_ms <= o);
    let rpo_met = match (rpo_ms, rpo_objective_ms) {
        (Some(a), Some(o)) => Some(a <= o),
        _ => None,
    };
    let mut problems = Vec::new();
    if let Err(e) = &outcome {
        problems.push(format!("{e:#}"));
    }
    if rto_met == Some(false) {
        problems.push(format!(
            "RTO objective missed: recovery took {}, the objective is {}",
            crate::output::table::millis(rto_ms),
            crate::output::table::millis(rto_objective_ms.unwrap_or(0))
        ));
    }
    if rpo_met == Some(false) {
        problems.push(format!(
            "RPO objective missed: the backup was {} old, the objective is {}",
            crate::output::table::millis(rpo_ms.unwrap_or(0)),
            crate::output::table::millis(rpo_objective_ms.unwrap_or(0))
        ));
    }
    let passed = problems.is_empty();
    let verdict = if passed {
        format!(
            "pass: restored and verified in {}",
            crate::output::table::millis(rto_ms)
        )
    } else {
        format!("fail: {}", problems.join("; "))
    };
    let report = DrillReport {
        format_version: 1,
        id,
        target: req.target.name.clone(),
        started_at,
        finished_at: Utc::now(),
        mode: if req.sandbox {
            "sandbox".into()
        } else {
            "scratch-database".into()
        },
        destination: destination_text,
        backup_id: manifest_used.as_ref().map(|m| m.id.clone()),
        backup_created_at: manifest_used.as_ref().map(|m| m.created_at),
        phases: steps.0,
        rto_ms,
        rpo_ms,
        rto_objective_ms,
        rpo_objective_ms,
        rto_met,
        rpo_met,
        verification,
        redis_verification: None,
        passed,
        verdict,
    };
    let key = format!("{DRILLS_PREFIX}/{}/{}.json", report.target, report.id);
    storage::put_bytes(req.storage, &key, serde_json::to_vec_pretty(&report)?)
        .await
        .with_context(|| format!("cannot store the drill report {key}"))?;
    Ok(report)
}

/// Drill reports of a target, newest first.
pub async fn list_reports(storage: &dyn Storage, target: &str) -> Result<Vec<DrillReport>> {
    let mut reports = Vec::new();
    for o in storage.list(&format!("{DRILLS_PREFIX}/{target}/")).await? {
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
}

impl ScratchDatabase {
    async fn create(source: &ConnTarget, name: &str) -> Result<ScratchDatabase> {
        let client = source.connect().await?;
        client
            .batch_execute(&format!("CREATE DATABASE {}", pg::quote_ident(name)))
            .await
            .map_err(|e| anyhow!("cannot create the scratch database {name}: {}; hint: the role needs CREATEDB, or use --sandbox", pg::describe_pg_error(&e)))?;
        Ok(ScratchDatabase {
            admin: source.clone(),
            conn: source.with_database(name)?,
            name: name.to_string(),
            dropped: false,
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
                eprintln!(
                    "warning: could not drop scratch database {name}: {e:#}; drop it by hand"
                );
            }
            Some(())
        })
        .join();
    }
}
