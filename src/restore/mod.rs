//! The one restore pipeline. `dr validate`, `dr restore` and `dr drill` all run it, with
//! different requests: preflight (nothing fetched, nothing touched), consent, fetch with
//! checksum, ownership, then for a restore a safety backup, globals, the database itself
//! (`--create`), `pg_restore` and verification. Nothing touches the destination before
//! every preflight step passed and the staged bytes matched the manifest. It returns a
//! report; it never prints.

mod apply;
pub mod archive;
mod chain;
mod failure;
pub mod lineage;
pub mod load;
pub mod offsets;
pub mod physical;
pub mod pitr;
pub mod pitr_request;
pub mod pitr_sandbox;
pub mod pitr_settings;
pub mod pitr_tables;
pub mod pitr_target;
pub mod preflight;
pub mod progress;
pub mod recovery;
pub mod redis;
pub mod redis_verify;
pub mod segments;
pub mod selection;
pub mod stage;
pub mod verify;
pub mod window;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backup::integrity::{self, CheckedBy};
use crate::backup::manifest::BackupManifest;
use crate::backup::{self, manifest::BackupKind, BackupPlan};
use crate::config::{Compression, Config, PostgresTarget};
use crate::encryption::Identities;
use crate::pg::{self, ConnTarget};
use crate::report::{notice, Finding, Phase, Status, Steps, FORMAT_VERSION};
use crate::storage::Storage;
use crate::units;
use preflight::Destination;
use selection::Selection;
use verify::{VerifyReport, VerifyRequest};

use apply::{apply, fixes_for};
use failure::{failure_note, go_back_command, restore_failed};
use stage::{stage_file, staging_area, StagedDump};

/// What to do with the backup.
pub enum Action<'a> {
    /// Prove a restore could start: preflight, then every object hashed while
    /// `pg_restore --list` reads the archive, then ownership. Changes nothing.
    Validate,
    /// Restore into the destination, then verify.
    Restore(RestoreOptions<'a>),
}

/// What the restore will do to the destination: validate checks the privileges this
/// needs, restore does it.
#[derive(Debug, Clone, Default)]
pub struct RestoreScope {
    /// Create the destination database when it does not exist.
    pub create: bool,
    /// Restore roles and tablespaces first.
    pub with_globals: bool,
    /// Every object belongs to the restore role instead of its owner.
    pub no_owner: bool,
    /// Leave out GRANTs (a sandbox drill without the backup's roles).
    pub no_acl: bool,
    /// Only these tables' rows (`--only-table`, `--only-schema`); empty: everything.
    pub selection: Selection,
}

pub struct RestoreOptions<'a> {
    pub jobs: u32,
    /// Drop the backup's objects before recreating them even if the destination looks
    /// empty (implied when it is not).
    pub clean: bool,
    /// Take a safety backup of a non-empty destination first.
    pub safety_backup: bool,
    /// Verify Redis targets and HTTP endpoints too: they belong to production, so a drill
    /// into a scratch database leaves them out.
    pub verify_services: bool,
    pub show_progress: bool,
    /// Asked, after the preflight, before a non-empty destination is overwritten; an
    /// error refuses and nothing is changed.
    pub confirm: &'a (dyn Fn(&Consent) -> Result<()> + Sync),
}

/// What the operator agrees to when a non-empty destination is overwritten.
#[derive(Debug, Clone)]
pub struct Consent {
    pub backup_id: String,
    pub backup_created_at: DateTime<Utc>,
    pub backup_size_bytes: u64,
    /// Password removed.
    pub destination: String,
    pub database: String,
    pub user_objects: i64,
    /// Tables of the backup that the destination holds now, with their estimated rows
    /// (`None`: never analysed): these are dropped and recreated.
    pub replaced_tables: Vec<(String, Option<i64>)>,
    pub safety_backup: bool,
}

pub struct RestoreRequest<'a> {
    pub config: &'a Config,
    pub storage: &'a dyn Storage,
    pub target: &'a PostgresTarget,
    /// A backup id or `latest`.
    pub backup_id: &'a str,
    pub destination: &'a ConnTarget,
    /// How the command named the destination (`--into-env VAR`), for the commands that
    /// go back to it; `None` for the target's own database.
    pub destination_flag: Option<String>,
    pub staging_dir: &'a Path,
    pub scope: RestoreScope,
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
    /// Login roles that `--with-globals` created without a password, because the backup
    /// role could not read the passwords: each needs one before it can log in.
    pub roles_without_password: Vec<String>,
    pub error: Option<String>,
}

/// What the pipeline learns as it goes, kept for the report even when it stops.
#[derive(Default)]
struct Outcome {
    /// Whether this run created the destination database (`--create`).
    created_database: bool,
    backup_id: Option<String>,
    safety_backup_id: Option<String>,
    verification: Option<VerifyReport>,
    roles_without_password: Vec<String>,
}

/// Runs the pipeline; the report says what happened, the result why it stopped.
pub async fn run(req: RestoreRequest<'_>) -> (RestoreReport, Result<()>) {
    let mut steps = Steps::default();
    let mut outcome = Outcome::default();
    let operation = match req.action {
        Action::Validate => Operation::Validate,
        Action::Restore(_) => Operation::Restore,
    };
    let result = pipeline(&req, &mut steps, &mut outcome).await;
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
        backup_id: outcome.backup_id,
        destination: req.destination.public_url.clone(),
        safety_backup_id: outcome.safety_backup_id,
        steps: steps.0,
        duration_ms,
        rto_objective_ms: rto,
        rto_met: rto.map(|r| result.is_ok() && duration_ms <= r),
        verification: outcome.verification,
        roles_without_password: outcome.roles_without_password,
        error: result.as_ref().err().map(|e| format!("{e:#}")),
    };
    (report, result)
}

async fn pipeline(req: &RestoreRequest<'_>, steps: &mut Steps, out: &mut Outcome) -> Result<()> {
    let seekable = match &req.action {
        Action::Restore(o) => o.jobs > 1,
        Action::Validate => false,
    };
    let validating = matches!(req.action, Action::Validate);
    let pf = preflight::Preflight {
        storage: req.storage,
        target: req.target,
        backup_id: req.backup_id,
        destination: req.destination,
        staging_dir: req.staging_dir,
        scope: &req.scope,
        seekable,
        keep_going: validating,
    };
    let found = preflight::run(&pf, steps).await?;
    let manifest = found.manifest;
    out.backup_id = Some(manifest.id.clone());
    if manifest.encryption.is_some() {
        steps.push(
            "keys",
            Phase::Preflight,
            key_rotation(req.config, &manifest)?,
            0,
        );
    }

    let options = match &req.action {
        Action::Validate => {
            return validate_rest(
                req,
                steps,
                &manifest,
                found.pg_restore,
                found.destination,
                found.failed,
            )
            .await;
        }
        Action::Restore(options) => options,
    };
    let (Some(pg_restore), Some(dest)) = (found.pg_restore, found.destination) else {
        unreachable!("without keep_going the preflight stops at the first failure");
    };

    let destructive = dest.user_objects > 0;
    if destructive {
        let consent = consent(req, options, &manifest, &dest).await?;
        (options.confirm)(&consent)?;
    }
    // Into a database without objects, dr's own sessions may load the rows (see `load`):
    // the dump is then staged as stored, not as a plain archive pg_restore can seek in.
    let clean = destructive || (options.clean && dest.exists);
    let rows_by_dr = !clean && req.scope.selection.is_empty();
    let mut staged = stage_dump(
        req.storage,
        &manifest,
        req.identities.as_ref(),
        &pg_restore,
        req.staging_dir,
        seekable && !rows_by_dr,
        steps,
    )
    .await?;
    steps
        .run("ownership", Phase::Fetch, async {
            let owners = selection::owners(&staged.listing);
            let finding =
                preflight::ownership(req.destination, &dest, &req.scope, &manifest, &owners)
                    .await?;
            Ok(((), finding.message))
        })
        .await?;
    if destructive && options.safety_backup {
        let id = steps
            .run("safety backup", Phase::Restore, async {
                let plan = BackupPlan::new(
                    req.target,
                    req.destination.clone(),
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
        out.safety_backup_id = Some(id);
    }
    let before = Before {
        destructive,
        existed: dest.exists,
        safety_id: out.safety_backup_id.clone(),
        backup_id: manifest.id.clone(),
    };
    // From here on the destination changes: an interruption must say so, and how to go back.
    crate::error::set_interrupt_note(Some(failure_note(req, &before, &[], None)));
    let changed = apply(
        req,
        options,
        &manifest,
        &mut staged,
        &pg_restore,
        &dest,
        destructive,
        steps,
        out,
    )
    .await;
    crate::error::set_interrupt_note(None);
    if let Err(e) = changed {
        let fixes = fixes_for(&e, &req.scope, &manifest);
        let created = Some(out.created_database);
        return Err(restore_failed(
            e,
            failure_note(req, &before, &fixes, created),
        ));
    }
    drop(staged);
    verify_step(req, options, &manifest, steps, out).await
}

/// Validate after the preflight: every object hashed while `pg_restore --list` reads the
/// archive, then ownership; the failures of all steps reported together.
async fn validate_rest(
    req: &RestoreRequest<'_>,
    steps: &mut Steps,
    manifest: &BackupManifest,
    pg_restore: Option<std::path::PathBuf>,
    dest: Option<Destination>,
    mut failed: Vec<anyhow::Error>,
) -> Result<()> {
    let identities = req.identities.as_ref();
    if manifest.encryption.is_some() && identities.is_none() {
        // Integrity needs no key: the manifest records the hash of the stored bytes.
        let checksum = steps
            .run("checksum", Phase::Fetch, async {
                integrity::rehash(req.storage, manifest, CheckedBy::Validate, None).await?;
                Ok((
                    (),
                    format!(
                        "{} encrypted object(s) match their SHA-256, proven without a key",
                        manifest.objects.len()
                    ),
                ))
            })
            .await;
        if let Err(e) = checksum {
            failed.push(e);
        }
        steps.push(
            "archive",
            Phase::Fetch,
            Finding::warn(format!(
                "not read: the backup is encrypted (for {}) and no identity is configured here, so ownership is not checked either; hint: pass --identity FILE to prove the archive readable too",
                manifest.recipients.join(", ")
            )),
            0,
        );
        return combine_failures(failed);
    }
    let listing = steps
        .run("checksum+archive", Phase::Fetch, integrity::hash_and_record(req.storage, manifest, CheckedBy::Validate, async {
            for object in manifest.objects.iter().filter(|o| o != &manifest.dump()) {
                stage::stream_object(req.storage, manifest, object, identities, std::io::sink(), false)
                    .await?;
            }
            let Some(pg_restore) = &pg_restore else {
                stage::stream_object(
                    req.storage,
                    manifest,
                    manifest.dump(),
                    identities,
                    std::io::sink(),
                    false,
                )
                .await?;
                return Ok((
                    None,
                    format!(
                        "{} object(s) match their SHA-256; the archive was not read (no usable pg_restore, see the tools step)",
                        manifest.objects.len()
                    ),
                ));
            };
            let listing =
                archive::list_streaming(req.storage, manifest, identities, pg_restore).await?;
            let msg = format!(
                "{} object(s) match their SHA-256; pg_restore --list reads {} archive entries",
                manifest.objects.len(),
                archive::count_toc_entries(&listing)
            );
            Ok((Some(listing), msg))
        }))
        .await;
    let listing = match listing {
        Ok(l) => l,
        Err(e) => {
            failed.push(e);
            None
        }
    };
    if let (Some(listing), Some(dest)) = (listing, &dest) {
        let ownership = steps
            .run("ownership", Phase::Fetch, async {
                let owners = selection::owners(&listing);
                let finding =
                    preflight::ownership(req.destination, dest, &req.scope, manifest, &owners)
                        .await?;
                Ok(((), finding.message))
            })
            .await;
        if let Err(e) = ownership {
            failed.push(e);
        }
    }
    combine_failures(failed)
}

/// One error for several failed steps: each one's words, one hint; a usage error among
/// them keeps exit 2.
fn combine_failures(mut failed: Vec<anyhow::Error>) -> Result<()> {
    match failed.len() {
        0 => Ok(()),
        1 => Err(failed.remove(0)),
        n => {
            let usage = failed.iter().any(|e| crate::error::exit_code(e) == 2);
            let text = format!(
                "{n} steps failed: {}",
                failed
                    .iter()
                    .map(|e| format!("{e:#}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            Err(if usage {
                crate::error::usage(text)
            } else {
                anyhow!(text)
            })
        }
    }
}

async fn consent(
    req: &RestoreRequest<'_>,
    options: &RestoreOptions<'_>,
    manifest: &BackupManifest,
    dest: &Destination,
) -> Result<Consent> {
    let client = req.destination.connect().await?;
    let names: Vec<String> = manifest.tables.iter().map(|t| t.qualified()).collect();
    let rows = client
        .query(
            "SELECT n.nspname || '.' || c.relname, c.reltuples::bigint
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind IN ('r', 'p') AND n.nspname || '.' || c.relname = ANY($1)
              ORDER BY c.reltuples DESC, 1",
            &[&names],
        )
        .await
        .map_err(|e| {
            anyhow!(
                "cannot inspect the destination: {}",
                pg::describe_pg_error(&e)
            )
        })?;
    Ok(Consent {
        backup_id: manifest.id.clone(),
        backup_created_at: manifest.created_at,
        backup_size_bytes: manifest.size_bytes,
        destination: req.destination.public_url.clone(),
        database: req.destination.database.clone(),
        user_objects: dest.user_objects,
        replaced_tables: rows
            .iter()
            .map(|r| {
                let est: i64 = r.get(1);
                (r.get(0), (est >= 0).then_some(est))
            })
            .collect(),
        safety_backup: options.safety_backup,
    })
}

async fn verify_step(
    req: &RestoreRequest<'_>,
    options: &RestoreOptions<'_>,
    manifest: &BackupManifest,
    steps: &mut Steps,
    out: &mut Outcome,
) -> Result<()> {
    let started = Instant::now();
    let report = verify::verify(VerifyRequest {
        config: req.config,
        target: &req.target.name,
        conn: req.destination,
        manifest: Some(manifest),
        include_services: options.verify_services,
        selection: &req.scope.selection,
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
    out.verification = Some(report);
    if !ok {
        bail!("the restore finished but verification failed (see the verify step)");
    }
    Ok(())
}

/// Whether the keys an encrypted backup was made for are still among the configured
/// recipients: when none is, only an identity kept from before can open it.
fn key_rotation(config: &Config, manifest: &BackupManifest) -> Result<Finding> {
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

/// The destination before the restore changed it.
struct Before {
    destructive: bool,
    existed: bool,
    safety_id: Option<String>,
    backup_id: String,
}

/// The `fetch` and `archive` steps of every restore.
pub async fn stage_dump(
    storage: &dyn Storage,
    manifest: &BackupManifest,
    identities: Option<&Arc<Identities>>,
    pg_restore: &Path,
    staging_parent: &Path,
    seekable: bool,
    steps: &mut Steps,
) -> Result<StagedDump> {
    let (dir, registered) = staging_area(staging_parent)?;
    let object = manifest.dump();
    let path = dir.path().join(object.role.staged_file_name());
    let compression = if seekable {
        Compression::None
    } else {
        object.compression
    };
    steps
        .run("fetch", Phase::Fetch, async {
            let (n, offsets) = stage_file(
                storage, manifest, object, identities, &path, seekable, seekable,
            )
            .await?;
            // pg_restore --jobs N needs them to find each table's data and to schedule the
            // largest tables first.
            let offsets = match offsets {
                Some(o) if o.filled() > 0 => {
                    format!("; data offsets of {} table(s) filled in", o.filled())
                }
                Some(_) => String::new(),
                None if seekable => "; data offsets unknown (pg_restore searches)".into(),
                None => String::new(),
            };
            Ok((
                (),
                format!(
                    "{} fetched with SHA-256 verified; {} staged in {}{offsets}",
                    units::bytes(object.size_bytes),
                    units::bytes(n),
                    staging_parent.display()
                ),
            ))
        })
        .await?;
    let mut staged = StagedDump {
        dir,
        path,
        compression,
        raw_bytes: object.raw_bytes,
        with_offsets: seekable,
        listing: String::new(),
        _registered: registered,
    };
    staged.listing = steps
        .run("archive", Phase::Fetch, async {
            let listing = archive::list_staged(pg_restore, &staged, false).await?;
            let n = archive::count_toc_entries(&listing);
            Ok((listing, format!("pg_restore --list reads {n} entries")))
        })
        .await?;
    Ok(staged)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_failures_become_one_error_and_keep_the_usage_code() {
        assert!(combine_failures(vec![]).is_ok());
        let one = combine_failures(vec![anyhow!("a; hint: fix a")]).unwrap_err();
        assert_eq!(one.to_string(), "a; hint: fix a");
        let two = combine_failures(vec![anyhow!("a"), crate::error::usage("b")]).unwrap_err();
        assert_eq!(two.to_string(), "2 steps failed: a; b");
        assert_eq!(crate::error::exit_code(&two), 2);
    }
}
