//! `dr restore`: validate, stage (checksum while fetching), confirm, safety backup,
//! pg_restore, verify; then the measured RTO against the objective.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use comfy_table::Cell;
use serde::Serialize;

use crate::backup::{self, manifest::BackupKind, BackupPlan};
use crate::cli::{Format, RestoreArgs};
use crate::config::Config;
use crate::error::usage;
use crate::output::{self, table};
use crate::pg::{tools, ConnTarget};
use crate::restore::verify::{self, VerifyReport, VerifyRequest};
use crate::restore::{self, Preflight, Step, Steps};

#[derive(Serialize)]
pub struct RestoreReport {
    pub format_version: u32,
    pub ok: bool,
    pub backup_id: Option<String>,
    pub target: String,
    /// Password removed.
    pub destination: String,
    pub safety_backup_id: Option<String>,
    pub steps: Vec<Step>,
    /// Measured RTO: every step, without the time spent waiting for the operator.
    pub total_ms: u64,
    pub rto_objective_ms: Option<u64>,
    pub rto_met: Option<bool>,
    pub verification: Option<VerifyReport>,
    pub error: Option<String>,
}

pub async fn run(config: &Config, args: RestoreArgs) -> Result<i32> {
    if let Some(redis) = config.redis_backup_target(args.target.as_deref()) {
        return super::redis_data::restore(config, redis?, args).await;
    }
    if args.flush || args.rdb_file.is_some() {
        return Err(usage(
            "--flush and --rdb-file apply to Redis targets only; hint: a PostgreSQL restore replaces what the backup holds (see --yes)",
        ));
    }
    let target = super::single_target(config, args.target.as_deref())?;
    let storage = super::open_storage(config)?;
    let destination = ConnTarget::parse(&match &args.into {
        Some(url) => url.clone(),
        None => target.resolve_url()?,
    })?;
    let staging_parent = super::staging_dir(args.staging_dir.as_deref());
    let pf = Preflight {
        storage: storage.as_ref(),
        target,
        backup_id: &args.backup_id,
        destination: &destination,
        staging_dir: &staging_parent,
    };
    let mut steps = Steps::default();
    let mut safety_backup_id = None;
    let mut verification = None;
    let mut manifest_id = None;

    let result: Result<()> = async {
        let (manifest, pg_restore) = restore::preflight(&pf, &mut steps, args.jobs > 1).await?;
        manifest_id = Some(manifest.id.clone());
        let staged = restore::stage_dump(storage.as_ref(), &manifest, &pg_restore, &staging_parent, args.jobs > 1, &mut steps).await?;

        let client = destination.connect().await?;
        let tables = restore::user_table_count(&client).await?;
        drop(client);
        let destructive = tables > 0;
        if destructive {
            confirm(&destination, tables, args.yes)?;
            if !args.no_safety_backup {
                let id = steps
                    .run("safety backup", async {
                        let m = backup::run(
                            storage.as_ref(),
                            BackupPlan {
                                target_name: &target.name,
                                conn: destination.clone(),
                                kind: BackupKind::Safety,
                                settings: &config.backup,
                                pg_bin_dir: target.pg_bin_dir.as_deref(),
                                show_progress: args.format == Format::Table,
                            },
                        )
                        .await
                        .context("cannot take the safety backup of the destination, so nothing was restored; hint: fix the cause, or pass --no-safety-backup to overwrite without a copy")?;
                        let msg = format!("{} ({}): to go back, run `dr restore --backup-id {} --target {}`", m.id, table::human_bytes(m.size_bytes), m.id, target.name);
                        Ok((m.id, msg))
                    })
                    .await?;
                eprintln!("safety backup of the destination: {id}");
                safety_backup_id = Some(id);
            }
        }
        let auth = destination.child_env()?;
        if args.with_globals {
            if let Some(globals) = manifest.globals() {
                let path = staged.dir.path().join(restore::staging_file_name(globals));
                steps
                    .run("globals", async {
                        restore::stage(storage.as_ref(), &manifest, globals, &path, true).await?;
                        let psql = tools::find("psql", target.pg_bin_dir.as_deref())?;
                        let stderr = restore::run_child(
                            &psql,
                            &["-X".into(), "-q".into(), "--no-password".into(), format!("--dbname={}", destination.public_url), "-f".into(), path.display().to_string()],
                            &auth,
                            "psql (globals)",
                        )
                        .await?;
                        let errors = stderr.lines().filter(|l| l.contains("ERROR:")).count();
                        Ok(((), format!("roles and tablespaces applied; {errors} statement(s) failed (usually: role already exists)")))
                    })
                    .await?;
            } else {
                eprintln!("warning: --with-globals given but backup {} holds no globals (set [backup] include_globals = true)", manifest.id);
            }
        }
        restore::pg_restore_step(&mut steps, &pg_restore, &destination, &staged, args.jobs, destructive, args.no_owner).await?;
        drop(staged);
        let started = Instant::now();
        let report = verify::verify(VerifyRequest { config, target: &target.name, conn: &destination, manifest: Some(&manifest), include_services: args.into.is_none() }).await;
        steps.0.push(Step {
            name: "verify".into(),
            status: if report.ok { crate::checks::Status::Pass } else { crate::checks::Status::Fail },
            message: super::verify::summary(&report),
            duration_ms: started.elapsed().as_millis() as u64,
        });
        let ok = report.ok;
        verification = Some(report);
        if !ok {
            bail!("the restore finished but verification failed (see the verify step)");
        }
        Ok(())
    }
    .await;

    let total_ms = steps.total_ms();
    let rto = config.objectives.rto.map(|d| d.as_millis() as u64);
    let report = RestoreReport {
        format_version: 1,
        ok: result.is_ok(),
        backup_id: manifest_id,
        target: target.name.clone(),
        destination: destination.public_url.clone(),
        safety_backup_id,
        steps: steps.0,
        total_ms,
        rto_objective_ms: rto,
        rto_met: rto.map(|r| total_ms <= r),
        verification,
        error: result.as_ref().err().map(|e| format!("{e:#}")),
    };
    match args.format {
        Format::Json => output::emit(&output::json(&report)),
        Format::Table => {
            let mut text = steps_table(&report.steps);
            if report.ok {
                text.push_str(&format!(
                    "\nbackup {} restored into {} in {} (RTO objective: {})\n",
                    report.backup_id.as_deref().unwrap_or("-"),
                    report.destination,
                    table::millis(total_ms),
                    match (rto, report.rto_met) {
                        (Some(r), Some(true)) => format!("{}, met", table::millis(r)),
                        (Some(r), _) => format!("{}, MISSED", table::millis(r)),
                        _ => "not set".into(),
                    }
                ));
            } else {
                text.push_str(&format!(
                    "\nRESTORE NOT COMPLETED into {} (see the error below)\n",
                    report.destination
                ));
            }
            if let Some(v) = &report.verification {
                text.push_str(&super::verify::render_table(v));
            }
            if let Some(id) = &report.safety_backup_id {
                text.push_str(&format!("safety backup of the previous contents: {id}\n"));
            }
            output::emit(&text);
        }
    }
    result.map(|_| 0)
}

/// A non-empty destination needs consent: a typed database name on a terminal, `--yes`
/// otherwise. Refusing changes nothing (exit 2).
fn confirm(destination: &ConnTarget, tables: i64, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    let db = &destination.database;
    if !std::io::stdin().is_terminal() {
        return Err(usage(format!(
            "destination database {db} ({}) is not empty: it holds {tables} table(s) that the restore would overwrite; nothing was changed; hint: pass --yes to confirm (a safety backup is taken first), or restore into an empty database with --into",
            destination.public_url
        )));
    }
    eprint!("Destination {} holds {tables} table(s); they will be overwritten (a safety backup is taken first).\nType the database name ({db}) to confirm: ", destination.public_url);
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() != db {
        return Err(usage(format!(
            "confirmation did not match {db:?}; nothing was changed"
        )));
    }
    Ok(())
}

pub fn steps_table(steps: &[Step]) -> String {
    let mut t = table::new_table(&["step", "status", "message", "time"]);
    for s in steps {
        t.add_row(vec![
            Cell::new(&s.name),
            table::status_cell(s.status),
            Cell::new(&s.message),
            Cell::new(table::millis(s.duration_ms)),
        ]);
    }
    format!("{t}\n")
}
