//! The one restore pipeline. `dr validate`, `dr restore` and `dr drill` all run it, with
//! different requests: preflight (nothing fetched, nothing touched), fetch with checksum,
//! then, for a restore, consent, a safety backup, globals, `pg_restore` and verification.
//! Nothing touches the destination before every preflight step passed and the staged bytes
//! matched the manifest. It returns a report; it never prints.

pub mod archive;
pub mod physical;
pub mod preflight;
pub mod stage;
pub mod verify;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::backup::catalog;
use crate::backup::{self, manifest::BackupKind, BackupPlan};
use crate::config::{Config, PostgresTarget};
use crate::encryption::Identities;
use crate::pg::{tools, ConnTarget};
use crate::report::{notice, Finding, Phase, Status, Steps, FORMAT_VERSION};
use crate::storage::Storage;
use crate::units;
use verify::{VerifyReport, VerifyRequest};

/// What to do with the backup.
pub enum Action<'a> {
    /// Prove a restore could start: preflight, then every object hashed while
    /// `pg_restore --list` reads the archive. Changes nothing.
    Validate,
    /// Restore into the destination, then verify.
    Restore(RestoreOptions<'a>),
}

pub struct RestoreOptions<'a> {
    pub jobs: u32,
    pub no_owner: bool,
    pub with_globals: bool,
    /// Take a safety backup of a non-empty destination first.
    pub safety_backup: bool,
    /// Verify Redis targets and HTTP endpoints too: they belong to production, so a drill
    /// into a scratch database leaves them out.
    pub verify_services: bool,
    pub show_progress: bool,
    /// Asked before a non-empty destination is overwritten, with the number of user
    /// objects it holds; an error refuses and nothing is changed.
    pub confirm: &'a (dyn Fn(&ConnTarget, i64) -> Result<()> + Sync),
}

pub struct RestoreRequest<'a> {
    pub config: &'a Config,
    pub storage: &'a dyn Storage,
    pub target: &'a PostgresTarget,
    /// A backup id or `latest`.
    pub backup_id: &'a str,
    pub destination: &'a ConnTarget,
    /// The destination was named (`--into`, a drill's scratch database) rather than being
    /// the target's own database: commands that go back to it must name it too.
    pub destination_named: bool,
    pub staging_dir: &'a Path,
    /// Opens encrypted backups; `None` when no identity is configured here.
    pub identities: Option<Arc<Identities>>,
    pub action: Action<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Validate,
    Restore,
}

#[derive(Debug, Serialize)]
pub struct RestoreReport {
    pub format_version: u32,
    pub operation: Operation,
    pub ok: bool,
    pub target: String,
    pub backup_id: Option<String>,
    /// Password removed.
    pub destination: String,
    pub safety_backup_id: Option<String>,
    pub steps: Vec<crate::report::Step>,
    /// Measured RTO: every step, without the time spent waiting for the operator.
    pub duration_ms: u64,
    pub rto_objective_ms: Option<u64>,
    pub rto_met: Option<bool>,
    pub verification: Option<VerifyReport>,
    pub error: Option<String>,
}

/// Runs the pipeline; the report says what happened, the result why it stopped.
pub async fn run(req: RestoreRequest<'_>) -> (RestoreReport, Result<()>) {
    let mut steps = Steps::default();
    let mut backup_id = None;
    let mut safety_backup_id = None;
    let mut verification = None;
    let operation = match req.action {
        Action::Validate => Operation::Validate,
        Action::Restore(_) => Operation::Restore,
    };
    let result = pipeline(
        &req,
        &mut steps,
        &mut backup_id,
        &mut safety_backup_id,
        &mut verification,
    )
    .await;
    let duration_ms = steps.total_ms();
    let rto = match operation {
        Operation::Restore => req.config.objectives.rto.map(|d| d.as_millis() as u64),
        Operation::Validate => None,
    };
    let report = RestoreReport {
        format_version: FORMAT_VERSION,
        operation,
        ok: result.is_ok(),
        target: req.target.name.clone(),
        backup_id,
        destination: req.destination.public_url.clone(),
        safety_backup_id,
        steps: steps.0,
        duration_ms,
        rto_objective_ms: rto,
        rto_met: rto.map(|r| result.is_ok() && duration_ms <= r),
        verification,
        error: result.as_ref().err().map(|e| format!("{e:#}")),
    };
    (report, result)
}

async fn pipeline(
    req: &RestoreRequest<'_>,
    steps: &mut Steps,
    backup_id: &mut Option<String>,
    safety_backup_id: &mut Option<String>,
    verification: &mut Option<VerifyReport>,
) -> Result<()> {
    let seekable = match &req.action {
        Action::Restore(o) => o.jobs > 1,
        Action::Validate => false,
    };
    let pf = preflight::Preflight {
        storage: req.storage,
        target: req.target,
        backup_id: req.backup_id,
        destination: req.destination,
        staging_dir: req.staging_dir,
    };
    let (manifest, pg_restore) = preflight::run(&pf, steps, seekable).await?;
    *backup_id = Some(manifest.id.clone());
    if manifest.encryption.is_some() {
        steps.push(
            "keys",
            Phase::Preflight,
            key_rotation(req.config, &manifest)?,
            0,
        );
    }

    let options = match &req.action {
        Action::Validate if manifest.encryption.is_some() && req.identities.is_none() => {
            // Integrity needs no key: the manifest records the hash of the stored bytes.
            steps
                .run("checksum", Phase::Fetch, async {
                    catalog::verify_checksums(req.storage, &manifest, None).await?;
                    Ok((
                        (),
                        format!(
                            "{} encrypted object(s) match their SHA-256, proven without a key",
                            manifest.objects.len()
                        ),
                    ))
                })
                .await?;
            steps.push(
                "archive",
                Phase::Fetch,
                Finding::warn(format!(
                    "not read: the backup is encrypted (for {}) and no identity is configured here; hint: pass --identity FILE to prove the archive readable too",
                    manifest.recipients.join(", ")
                )),
                0,
            );
            return Ok(());
        }
        Action::Validate => {
            let identities = req.identities.as_ref();
            return steps
                .run("checksum+archive", Phase::Fetch, async {
                    for object in manifest.objects.iter().filter(|o| o != &manifest.dump()) {
                        stage::stream_object(
                            req.storage,
                            &manifest,
                            object,
                            identities,
                            std::io::sink(),
                            false,
                        )
                        .await?;
                    }
                    let entries = archive::list_streaming(
                        req.storage,
                        &manifest,
                        identities,
                        &pg_restore,
                    )
                    .await?;
                    Ok((
                        (),
                        format!(
                            "{} object(s) match their SHA-256; pg_restore --list reads {entries} archive entries",
                            manifest.objects.len()
                        ),
                    ))
                })
                .await;
        }
        Action::Restore(options) => options,
    };

    let staged = stage::stage_dump(
        req.storage,
        &manifest,
        req.identities.as_ref(),
        &pg_restore,
        req.staging_dir,
        seekable,
        steps,
    )
    .await?;
    let destination = req.destination;
    let objects = {
        let client = destination.connect().await?;
        user_object_count(&client).await?
    };
    let destructive = objects > 0;
    if destructive {
        (options.confirm)(destination, objects)?;
        if options.safety_backup {
            let id = steps
                .run("safety backup", Phase::Restore, async {
                    let plan = BackupPlan::new(
                        req.target,
                        destination.clone(),
                        BackupKind::Safety,
                        req.config,
                        options.show_progress,
                    )?;
                    let m = backup::run(req.storage, plan)
                    .await
                    .context("cannot take the safety backup of the destination, so nothing was restored; hint: fix the cause, or pass --no-safety-backup to overwrite without a copy")?;
                    let msg = format!(
                        "{} ({}): to go back, run `{}`",
                        m.id,
                        units::bytes(m.size_bytes),
                        go_back_command(req, &m.id)
                    );
                    Ok((m.id, msg))
                })
                .await?;
            notice(&format!("safety backup of the destination: {id}"));
            *safety_backup_id = Some(id);
        }
    }
    // From here on the destination changes: an interruption must say so, and how to go back.
    crate::error::set_interrupt_note(Some(interrupted_restore_note(
        req,
        destructive,
        safety_backup_id.as_deref(),
    )));
    let changed = apply(
        req,
        options,
        &manifest,
        &staged,
        &pg_restore,
        destructive,
        steps,
    )
    .await;
    crate::error::set_interrupt_note(None);
    if let Err(e) = changed {
        return Err(e.context(
            interrupted_restore_note(req, destructive, safety_backup_id.as_deref()).replacen(
                "the destination",
                "the restore failed and the destination",
                1,
            ),
        ));
    }
    drop(staged);
    verify_step(req, options, &manifest, steps, verification).await
}

/// Globals and `pg_restore`: the steps that change the destination.
async fn apply(
    req: &RestoreRequest<'_>,
    options: &RestoreOptions<'_>,
    manifest: &crate::backup::manifest::BackupManifest,
    staged: &stage::StagedDump,
    pg_restore: &Path,
    destructive: bool,
    steps: &mut Steps,
) -> Result<()> {
    let destination = req.destination;
    let auth = destination.child_env()?;
    if options.with_globals {
        match manifest.globals() {
            Some(globals) => {
                let path = staged.dir.path().join(globals.role.staged_file_name());
                steps
                    .run("globals", Phase::Restore, async {
                        stage::stage(
                            req.storage,
                            manifest,
                            globals,
                            req.identities.as_ref(),
                            &path,
                            true,
                        )
                        .await?;
                        let psql = tools::find("psql", req.target.pg_bin_dir.as_deref())?;
                        let errors =
                            archive::apply_globals(&psql, &destination.public_url, &path, &auth)
                                .await?;
                        Ok((
                            (),
                            format!("roles and tablespaces applied; {errors} statement(s) failed (usually: role already exists)"),
                        ))
                    })
                    .await?;
            }
            None => tracing::warn!(
                "--with-globals given but backup {} holds no globals (set [backup] include_globals = true)",
                manifest.id
            ),
        }
    }
    steps
        .run("pg_restore", Phase::Restore, async {
            let args = archive::pg_restore_args(
                &destination.public_url,
                options.jobs,
                destructive,
                options.no_owner,
            );
            archive::restore_staged(pg_restore, args, &auth, staged).await?;
            Ok((
                (),
                format!(
                    "restored into {} with {} job(s)",
                    destination.public_url,
                    options.jobs.max(1)
                ),
            ))
        })
        .await
}

async fn verify_step(
    req: &RestoreRequest<'_>,
    options: &RestoreOptions<'_>,
    manifest: &crate::backup::manifest::BackupManifest,
    steps: &mut Steps,
    verification: &mut Option<VerifyReport>,
) -> Result<()> {
    let started = Instant::now();
    let report = verify::verify(VerifyRequest {
        config: req.config,
        target: &req.target.name,
        conn: req.destination,
        manifest: Some(manifest),
        include_services: options.verify_services,
    })
    .await;
    let finding = Finding {
        status: if report.ok {
            Status::Pass
        } else {
            Status::Fail
        },
        message: report.summary(),
    };
    steps.push(
        "verify",
        Phase::Verify,
        finding,
        started.elapsed().as_millis() as u64,
    );
    let ok = report.ok;
    *verification = Some(report);
    if !ok {
        bail!("the restore finished but verification failed (see the verify step)");
    }
    Ok(())
}

/// Whether the keys an encrypted backup was made for are still among the configured
/// recipients: when none is, only an identity kept from before can open it.
fn key_rotation(
    config: &Config,
    manifest: &crate::backup::manifest::BackupManifest,
) -> Result<Finding> {
    let configured = crate::encryption::configured_recipients(config)?
        .map(|r| r.public_keys())
        .unwrap_or_default();
    let made_for = manifest.recipients.join(", ");
    Ok(
        if configured.is_empty() || manifest.recipients.iter().any(|r| configured.contains(r)) {
            Finding::pass(format!("encrypted for {made_for}"))
        } else {
            Finding::warn(format!(
                "encrypted for {made_for}, none of which is configured any more: only an identity kept from before opens it; hint: make sure someone still holds one of those keys"
            ))
        },
    )
}

/// The exact command that restores the safety backup into the same destination.
fn go_back_command(req: &RestoreRequest<'_>, safety_id: &str) -> String {
    let mut cmd = format!(
        "dr restore --backup-id {safety_id} --target {}",
        req.target.name
    );
    if req.destination_named {
        cmd.push_str(&format!(" --into '{}'", req.destination.public_url));
    }
    cmd.push_str(" --yes --no-safety-backup");
    cmd
}

/// What an interruption or failure leaves while the destination changes.
fn interrupted_restore_note(
    req: &RestoreRequest<'_>,
    destructive: bool,
    safety_id: Option<&str>,
) -> String {
    let dest = &req.destination.public_url;
    if !destructive {
        return format!(
            "the destination {dest} was empty and is now partly restored; hint: empty it (drop and recreate the database) and run the restore again"
        );
    }
    match safety_id {
        Some(id) => format!(
            "the destination {dest} was being overwritten and is now INCOMPLETE (objects the backup holds were dropped and only partly recreated); hint: run the restore again to finish it, or go back to what it held before with `{}`",
            go_back_command(req, id)
        ),
        None => format!(
            "the destination {dest} was being overwritten without a safety backup (--no-safety-backup) and is now INCOMPLETE; hint: run the restore again to finish it"
        ),
    }
}

/// User objects in a database: tables, sequences, views, materialized views, foreign
/// tables, functions and large objects (extension members aside). A destination with any
/// is not empty.
pub async fn user_object_count(client: &tokio_postgres::Client) -> Result<i64> {
    Ok(client
        .query_one(
            "SELECT
               (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind IN ('r','p','S','v','m','f')
                   AND n.nspname NOT IN ('pg_catalog','information_schema')
                   AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
                   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'))
             + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname NOT IN ('pg_catalog','information_schema')
                   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'))
             + (SELECT count(*) FROM pg_largeobject_metadata)",
            &[],
        )
        .await
        .map_err(|e| anyhow!("cannot inspect the destination: {}", crate::pg::describe_pg_error(&e)))?
        .get(0))
}
