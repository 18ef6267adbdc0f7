//! The one restore pipeline. `dr validate`, `dr restore` and `dr drill` all run it, with
//! different requests: preflight (nothing fetched, nothing touched), consent, fetch with
//! checksum, ownership, then for a restore a safety backup, globals, the database itself
//! (`--create`), `pg_restore` and verification. Nothing touches the destination before
//! every preflight step passed and the staged bytes matched the manifest. It returns a
//! report; it never prints.

pub mod archive;
pub mod lineage;
pub mod load;
pub mod offsets;
pub mod physical;
pub mod pitr;
pub mod pitr_sandbox;
pub mod pitr_settings;
pub mod pitr_tables;
pub mod pitr_target;
pub mod preflight;
pub mod progress;
pub mod recovery;
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
use crate::config::{Config, PostgresTarget};
use crate::encryption::Identities;
use crate::pg::{self, tools, ConnTarget};
use crate::report::{notice, Finding, Phase, Status, Steps, FORMAT_VERSION};
use crate::storage::Storage;
use crate::units;
use preflight::{Destination, RestoreRole};
use selection::Selection;
use verify::{VerifyReport, VerifyRequest};

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
    let mut staged = stage::stage_dump(
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

/// Globals, the database itself, `pg_restore` and the database's settings: the steps that
/// change the destination.
#[allow(clippy::too_many_arguments)]
async fn apply(
    req: &RestoreRequest<'_>,
    options: &RestoreOptions<'_>,
    manifest: &BackupManifest,
    staged: &mut stage::StagedDump,
    pg_restore: &Path,
    dest: &Destination,
    destructive: bool,
    steps: &mut Steps,
    out: &mut Outcome,
) -> Result<()> {
    let destination = req.destination;
    let auth = destination.child_env()?;
    let server = if dest.exists {
        destination.clone()
    } else {
        destination.connect_maintenance().await?.0
    };
    if req.scope.with_globals {
        if let Some(globals) = manifest.globals() {
            let started = Instant::now();
            let result =
                apply_globals(req, manifest, globals, staged, &server, &dest.role, &auth).await;
            let elapsed = started.elapsed().as_millis() as u64;
            match result {
                Ok((finding, without_password)) => {
                    steps.push("globals", Phase::Restore, finding, elapsed);
                    out.roles_without_password = without_password;
                }
                Err(e) => {
                    steps.push(
                        "globals",
                        Phase::Restore,
                        Finding::fail(format!("{e:#}")),
                        elapsed,
                    );
                    return Err(e.context("step globals failed"));
                }
            }
        }
    }
    if !dest.exists {
        steps
            .run("create database", Phase::Restore, async {
                Ok((
                    (),
                    create_database(destination, manifest, &dest.role).await?,
                ))
            })
            .await?;
        out.created_database = true;
    }
    let use_list = if req.scope.selection.is_empty() {
        None
    } else {
        let path = staged.dir.path().join("partial.list");
        std::fs::write(&path, req.scope.selection.use_list(&staged.listing))
            .context("cannot write the list of entries to restore")?;
        Some(path)
    };
    let flags = archive::RestoreFlags {
        jobs: options.jobs,
        clean: destructive || (options.clean && dest.exists),
        no_owner: req.scope.no_owner,
        no_acl: req.scope.no_acl,
        use_list,
        sections: &[],
    };
    steps
        .run("pg_restore", Phase::Restore, async {
            let bar = progress::bar(options.show_progress, staged.raw_bytes);
            // Staged as stored only when dr's own sessions may load the rows (see `load`).
            let plan = if options.jobs > 1 && !staged.with_offsets {
                load::plan(staged)?
            } else {
                Err(String::new())
            };
            let result = match plan {
                Ok(plan) => {
                    load_in_parallel(&plan, staged, pg_restore, &flags, destination, &auth, bar.clone())
                        .await
                }
                Err(why) => {
                    let mut note = String::new();
                    if options.jobs > 1 && !staged.with_offsets {
                        // pg_restore --jobs N needs a plain archive it can seek in.
                        let filled = staged.make_seekable().await?;
                        note = format!(
                            " (rows by pg_restore: {why}; data offsets of {filled} table(s) filled in)"
                        );
                    }
                    let args = archive::pg_restore_args(&destination.public_url, &flags);
                    archive::restore_staged(pg_restore, args, &auth, staged, bar.clone())
                        .await
                        .map(|()| note)
                }
            };
            progress::finish(bar, result.is_ok());
            let how = result.map_err(|e| explain_restore_error(e, &req.scope, manifest, &dest.role))?;
            archive::make_durable(destination).await?;
            Ok((
                (),
                format!(
                    "restored into {} with {} job(s){how}{}",
                    destination.public_url,
                    options.jobs.max(1),
                    if req.scope.selection.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ": the backup's schema, rows of {} (no foreign keys)",
                            req.scope.selection.flags()
                        )
                    }
                ),
            ))
        })
        .await?;
    if !dest.exists {
        let started = Instant::now();
        let finding = database_settings(req, manifest, staged, pg_restore, &auth).await;
        steps.push(
            "database settings",
            Phase::Restore,
            finding,
            started.elapsed().as_millis() as u64,
        );
    }
    Ok(())
}

/// The restore of `load`: pg_restore for the schema, dr's COPY sessions for the rows,
/// pg_restore --jobs N for the rest. Returns how it went, for the step's message.
async fn load_in_parallel(
    plan: &load::Plan,
    staged: &stage::StagedDump,
    pg_restore: &Path,
    flags: &archive::RestoreFlags,
    destination: &ConnTarget,
    auth: &pg::ChildAuth,
    bar: Option<indicatif::ProgressBar>,
) -> Result<String> {
    let schema = archive::RestoreFlags {
        jobs: 1,
        sections: &["pre-data"],
        ..flags.clone()
    };
    let args = archive::pg_restore_args(&destination.public_url, &schema);
    archive::restore_file(pg_restore, args, auth, &plan.toc_path).await?;
    let loaded = load::load(plan, staged, destination, flags.jobs, bar).await?;
    let list = staged.dir.path().join("after-rows.list");
    let left_out = plan.loaded_entries().collect();
    std::fs::write(&list, archive::listing_without(&staged.listing, &left_out))
        .context("cannot write the list of entries to restore")?;
    let rest = archive::RestoreFlags {
        sections: &["data", "post-data"],
        use_list: Some(list),
        ..flags.clone()
    };
    let args = archive::pg_restore_args(&destination.public_url, &rest);
    archive::restore_file(pg_restore, args, auth, &plan.toc_path).await?;
    Ok(format!(
        ": the schema by pg_restore, {} row(s) of {} table(s) by {} COPY session(s){}, indexes, constraints and the rest by pg_restore --jobs {}",
        units::count(loaded.rows as i128),
        loaded.tables,
        loaded.sessions,
        if loaded.large_object_blocks > 0 {
            format!(
                ", {} block(s) of large objects by pg_restore",
                loaded.large_object_blocks
            )
        } else {
            String::new()
        },
        flags.jobs.max(1)
    ))
}

/// Applies the backup's roles and tablespaces. Statements about the restoring role itself
/// are left out; a role that already exists is not an error. Returns the step's finding
/// and the login roles that end up without a password.
async fn apply_globals(
    req: &RestoreRequest<'_>,
    manifest: &BackupManifest,
    globals: &crate::backup::manifest::StoredObject,
    staged: &stage::StagedDump,
    server: &ConnTarget,
    role: &RestoreRole,
    auth: &pg::ChildAuth,
) -> Result<(Finding, Vec<String>)> {
    let path = staged.dir.path().join(globals.role.staged_file_name());
    stage::stage(
        req.storage,
        manifest,
        globals,
        req.identities.as_ref(),
        &path,
        true,
    )
    .await?;
    let sql = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the staged globals {}", path.display()))?;
    let filtered = archive::globals_without_role(&sql, &role.name);
    let filtered_path = staged.dir.path().join("globals.applied.sql");
    std::fs::write(&filtered_path, &filtered)?;
    let named: Vec<String> = archive::globals_roles(&sql)
        .into_iter()
        .filter(|r| *r != role.name)
        .collect();
    let client = server.connect().await?;
    let existing: Vec<String> = client
        .query("SELECT rolname::text FROM pg_roles", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let psql = tools::find("psql", req.target.pg_bin_dir.as_deref())?;
    let errors = archive::apply_sql(
        &psql,
        "psql (globals)",
        &server.public_url,
        &filtered_path,
        auth,
    )
    .await?;
    let (benign, serious): (Vec<&String>, Vec<&String>) =
        errors.iter().partition(|e| e.contains("already exists"));
    let created: Vec<&String> = named.iter().filter(|r| !existing.contains(r)).collect();
    let had_passwords = manifest
        .globals_role_passwords
        .unwrap_or_else(|| sql.contains(" PASSWORD '"));
    let without_password: Vec<String> = if role.superuser {
        // pg_authid says exactly which roles have none.
        client
            .query(
                "SELECT rolname::text FROM pg_authid WHERE rolcanlogin AND rolpassword IS NULL AND rolname = ANY($1) ORDER BY 1",
                &[&named],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect()
    } else if had_passwords {
        Vec::new()
    } else {
        let created: Vec<String> = created.iter().map(|r| r.to_string()).collect();
        client
            .query(
                "SELECT rolname::text FROM pg_roles WHERE rolcanlogin AND rolname = ANY($1) ORDER BY 1",
                &[&created],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let mut message = format!(
        "{} role(s) created, {} already there{}",
        created.len(),
        named.len() - created.len(),
        if had_passwords {
            "; passwords restored"
        } else {
            "; the backup holds no passwords (its role could not read them)"
        }
    );
    if !without_password.is_empty() {
        message.push_str(&format!(
            "; login roles without a password: {}",
            without_password.join(", ")
        ));
    }
    if benign.is_empty() && serious.is_empty() {
        return Ok((Finding::pass(message), without_password));
    }
    if serious.is_empty() {
        return Ok((Finding::pass(message), without_password));
    }
    let shown: Vec<&str> = serious.iter().take(5).map(|s| s.as_str()).collect();
    Ok((
        Finding::warn(format!(
            "{message}; {} statement(s) failed: {}{}",
            serious.len(),
            shown.join(" | "),
            if serious.len() > 5 { " | ..." } else { "" }
        )),
        without_password,
    ))
}

/// `CREATE DATABASE` from template0, owned by the backup's database owner when that role
/// exists and the restore role may hand it the database, else by the restore role.
async fn create_database(
    destination: &ConnTarget,
    manifest: &BackupManifest,
    role: &RestoreRole,
) -> Result<String> {
    let (_, client) = destination.connect_maintenance().await?;
    let mut owner = role.name.clone();
    let mut why = String::new();
    if let Some(original) = manifest
        .database_owner
        .as_deref()
        .filter(|o| *o != role.name)
    {
        let allowed: Option<bool> = client
            .query_opt(
                "SELECT pg_has_role(current_user, oid, 'MEMBER') FROM pg_roles WHERE rolname = $1",
                &[&original],
            )
            .await?
            .map(|r| r.get(0));
        match allowed {
            Some(true) => owner = original.to_string(),
            Some(false) => {
                why = format!(
                    " (the backup's owner {original} exists, but {} is not a member of it)",
                    role.name
                )
            }
            None => why = format!(" (the backup's owner {original} does not exist here)"),
        }
    }
    client
        .batch_execute(&format!(
            "CREATE DATABASE {} TEMPLATE template0 OWNER {}",
            pg::quote_ident(&destination.database),
            pg::quote_ident(&owner)
        ))
        .await
        .map_err(|e| {
            anyhow!(
                "cannot create database {} on {}: {}; hint: create it by hand (createdb -O OWNER {}) and run the restore without --create",
                destination.database,
                destination.server(),
                pg::describe_pg_error(&e),
                destination.database
            )
        })?;
    Ok(format!(
        "created database {} owned by {owner}{why}",
        destination.database
    ))
}

/// The database's own settings and grants from the backup, for a database this restore
/// created. A failure here leaves the data restored, so it is a warning naming the SQL.
async fn database_settings(
    req: &RestoreRequest<'_>,
    manifest: &BackupManifest,
    staged: &stage::StagedDump,
    pg_restore: &Path,
    auth: &pg::ChildAuth,
) -> Finding {
    let result: Result<Finding> = async {
        let sql = archive::database_settings_sql(
            pg_restore,
            staged,
            &manifest.database,
            &req.destination.database,
        )
        .await?;
        let statements = sql
            .lines()
            .filter(|l| {
                ["ALTER DATABASE", "ALTER ROLE", "GRANT", "REVOKE", "COMMENT ON", "SECURITY LABEL"]
                    .iter()
                    .any(|p| l.starts_with(p))
            })
            .count();
        if statements == 0 {
            return Ok(Finding::pass("the backup's database has no settings or grants of its own"));
        }
        let path = staged.dir.path().join("database.sql");
        std::fs::write(&path, &sql)?;
        let psql = tools::find("psql", req.target.pg_bin_dir.as_deref())?;
        let errors = archive::apply_sql(
            &psql,
            "psql (database settings)",
            &req.destination.public_url,
            &path,
            auth,
        )
        .await?;
        if errors.is_empty() {
            Ok(Finding::pass(format!(
                "{statements} database setting(s) and grant(s) applied"
            )))
        } else {
            Ok(Finding::warn(format!(
                "{} of {statements} database setting(s) and grant(s) failed: {}; hint: apply them by hand (`pg_restore --create --schema-only -f - DUMP` shows them)",
                errors.len(),
                errors.join(" | ")
            )))
        }
    }
    .await;
    result.unwrap_or_else(|e| Finding::warn(format!("database settings not applied: {e:#}")))
}

/// What a failed pg_restore needs next time, by its words: owners it may not hand
/// objects to (`--no-owner`), or roles that do not exist (`--with-globals` when the
/// backup holds them).
fn fixes_for(
    e: &anyhow::Error,
    scope: &RestoreScope,
    manifest: &BackupManifest,
) -> Vec<&'static str> {
    let text = format!("{e:#}");
    let missing_role = text.contains("role \"") && text.contains("\" does not exist");
    let mut fixes = Vec::new();
    if missing_role && manifest.globals().is_some() && !scope.with_globals {
        fixes.push("--with-globals");
    }
    let grant = text.contains("Command was: GRANT") || text.contains("Command was: REVOKE");
    let owner = text.contains("must be member of role")
        || text.contains("must be able to SET ROLE")
        || (missing_role && !grant);
    if owner && !scope.no_owner {
        fixes.push("--no-owner");
    }
    fixes
}

/// pg_restore's words, with what to do when they are about owners or missing roles.
fn explain_restore_error(
    e: anyhow::Error,
    scope: &RestoreScope,
    manifest: &BackupManifest,
    role: &RestoreRole,
) -> anyhow::Error {
    let fixes = fixes_for(&e, scope, manifest);
    let mut hints = Vec::new();
    if fixes.contains(&"--with-globals") {
        hints.push("create the backup's roles first with --with-globals".to_string());
    } else if format!("{e:#}").contains("\" does not exist") && !scope.with_globals {
        hints.push("create the missing role first (CREATE ROLE ... NOLOGIN)".to_string());
    }
    if fixes.contains(&"--no-owner") {
        hints.push(format!(
            "restore with --no-owner (every object then belongs to {})",
            role.name
        ));
    }
    if hints.is_empty() {
        return e;
    }
    let text = format!("{e:#}");
    anyhow!(
        "{}; hint: {}",
        text.trim_end_matches([';', ' ']),
        hints.join(", or ")
    )
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

/// A failure after the destination changed: what failed, the state it left, then one
/// hint: the fix for the cause, then the retry or the way back.
fn restore_failed(e: anyhow::Error, note: String) -> anyhow::Error {
    if crate::error::exit_code(&e) != crate::error::EXIT_FAILED {
        return e.context(note);
    }
    let cause = format!("{e:#}");
    let (head, cause_hint) = cause.split_once("; hint: ").unwrap_or((&cause, ""));
    let head = head.trim_end_matches([';', ' ']);
    let (state, next) = note.split_once("; hint: ").unwrap_or((&note, ""));
    let hints: Vec<&str> = [cause_hint, next]
        .into_iter()
        .filter(|h| !h.is_empty())
        .collect();
    anyhow!("{head}; {state}; hint: {}", hints.join("; then "))
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

/// `dr restore --backup-id ... --target ...` with the destination named as the command
/// named it.
fn restore_command(req: &RestoreRequest<'_>, backup_id: &str) -> String {
    let mut cmd = format!(
        "dr restore --backup-id {backup_id} --target {}",
        req.target.name
    );
    if let Some(flag) = &req.destination_flag {
        cmd.push(' ');
        cmd.push_str(flag);
    }
    cmd
}

/// The exact command that restores the safety backup into the same destination.
fn go_back_command(req: &RestoreRequest<'_>, safety_id: &str) -> String {
    format!(
        "{} --yes --no-safety-backup",
        restore_command(req, safety_id)
    )
}

/// The same restore again, over what the failed one left: `--clean` drops the backup's
/// objects first; the previous contents are already safe (or were empty), so no new
/// safety copy.
fn retry_command(req: &RestoreRequest<'_>, before: &Before, fixes: &[&str]) -> String {
    let mut cmd = restore_command(req, &before.backup_id);
    let scope = &req.scope;
    if scope.with_globals || fixes.contains(&"--with-globals") {
        cmd.push_str(" --with-globals");
    }
    if scope.no_owner || fixes.contains(&"--no-owner") {
        cmd.push_str(" --no-owner");
    }
    if scope.create {
        cmd.push_str(" --create");
    }
    if !scope.selection.is_empty() {
        cmd.push(' ');
        cmd.push_str(&scope.selection.flags());
    }
    cmd.push_str(" --clean --yes --no-safety-backup");
    cmd
}

/// What an interruption or failure leaves while the destination changes, and how to go
/// on: the retry (`--clean`, or drop and `--create`) and the safety backup.
fn failure_note(
    req: &RestoreRequest<'_>,
    before: &Before,
    fixes: &[&str],
    created: Option<bool>,
) -> String {
    let dest = &req.destination.public_url;
    let db = &req.destination.database;
    let retry = retry_command(req, before, fixes);
    let drop = format!("DROP DATABASE {}", pg::quote_ident(db));
    match (before.existed, created) {
        (false, Some(true)) => {
            return format!(
                "database {db} was created by this restore and is now partly restored; hint: drop it ({drop}) and run the restore again with --create, or finish it over what is there with `{retry}`"
            )
        }
        (false, Some(false)) => {
            return format!(
                "database {db} was not created{}; hint: fix the cause and run `{retry}`",
                if req.scope.with_globals {
                    " (the backup's roles may have been)"
                } else {
                    ""
                }
            )
        }
        (false, None) => {
            return format!(
                "database {db} did not exist and was being created and restored, and is now partly restored or missing; hint: drop it if it exists ({drop}) and run the restore again with --create, or finish it with `{retry}`"
            )
        }
        _ => {}
    }
    if !before.destructive {
        return format!(
            "the destination {dest} was empty and is now partly restored; hint: run `{retry}` (it drops what was restored and restores again), or drop the database and restore with --create"
        );
    }
    match &before.safety_id {
        Some(id) => format!(
            "the destination {dest} was being overwritten and is now INCOMPLETE (objects the backup holds were dropped and only partly recreated); hint: finish it with `{retry}`, or go back to what it held before with `{}` (safety backup {id})",
            go_back_command(req, id)
        ),
        None => format!(
            "the destination {dest} was being overwritten without a safety backup (--no-safety-backup) and is now INCOMPLETE; hint: finish it with `{retry}`"
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

    fn manifest(globals: bool) -> BackupManifest {
        let mut objects = vec![
            serde_json::json!({"role": "dump", "file": "d", "compression": "zstd", "size_bytes": 1, "sha256": "a".repeat(64), "raw_bytes": 1}),
        ];
        if globals {
            objects.push(serde_json::json!({"role": "globals", "file": "g", "compression": "zstd", "size_bytes": 1, "sha256": "b".repeat(64), "raw_bytes": 1}));
        }
        serde_json::from_value(serde_json::json!({
            "format_version": 1, "id": "main-20260102T030405Z", "target": "main", "database": "shop",
            "source": "postgres://u@h/shop", "created_at": "2026-01-02T03:04:05Z",
            "finished_at": "2026-01-02T03:04:06Z", "duration_ms": 1, "server_version": "15.1",
            "server_major": 15, "pg_dump_version": "15.1", "dr_version": "0", "format": "custom",
            "compression": "zstd", "compression_level": 3, "encryption": null, "size_bytes": 2,
            "sha256": "a".repeat(64), "objects": objects, "snapshot": "s", "schemas": [],
            "extensions": [], "tables": []
        }))
        .unwrap()
    }

    #[test]
    fn failed_restores_name_the_flag_that_fixes_them() {
        let scope = RestoreScope::default();
        let member = anyhow!("pg_restore failed: could not execute query: ERROR:  must be member of role \"postgres\" | Command was: ALTER TABLE shop.t OWNER TO postgres;");
        assert_eq!(
            fixes_for(&member, &scope, &manifest(true)),
            vec!["--no-owner"]
        );
        let owner_missing = anyhow!(
            "ERROR:  role \"app\" does not exist | Command was: ALTER SCHEMA shop OWNER TO app;"
        );
        assert_eq!(
            fixes_for(&owner_missing, &scope, &manifest(true)),
            vec!["--with-globals", "--no-owner"]
        );
        assert_eq!(
            fixes_for(&owner_missing, &scope, &manifest(false)),
            vec!["--no-owner"]
        );
        let grantee = anyhow!("ERROR:  role \"reporting\" does not exist | Command was: GRANT SELECT ON TABLE shop.orders TO reporting;");
        assert_eq!(
            fixes_for(&grantee, &scope, &manifest(true)),
            vec!["--with-globals"]
        );
        assert!(fixes_for(&grantee, &scope, &manifest(false)).is_empty());
        let other = anyhow!("ERROR:  permission denied for database locked");
        assert!(fixes_for(&other, &scope, &manifest(true)).is_empty());
        let role = RestoreRole {
            name: "dr_restore".into(),
            superuser: false,
            createdb: true,
            createrole: false,
        };
        let explained = explain_restore_error(member, &scope, &manifest(true), &role).to_string();
        assert!(
            explained.ends_with(
                "hint: restore with --no-owner (every object then belongs to dr_restore)"
            ),
            "{explained}"
        );
        let explained = explain_restore_error(grantee, &scope, &manifest(false), &role).to_string();
        assert!(
            explained.contains("hint: create the missing role first"),
            "{explained}"
        );
    }
}
