//! The steps of a restore that change the destination: globals, the database itself,
//! `pg_restore` (or dr's own COPY sessions) and the database's settings, and what a
//! failed `pg_restore` needs next time.

use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};

use super::preflight::{Destination, RestoreRole};
use super::{
    archive, load, progress, stage, Outcome, RestoreOptions, RestoreRequest, RestoreScope,
};
use crate::backup::manifest::BackupManifest;
use crate::pg::{self, tools, ConnTarget};
use crate::report::{Finding, Phase, Steps};
use crate::units;

/// Globals, the database itself, `pg_restore` and the database's settings: the steps that
/// change the destination.
#[allow(clippy::too_many_arguments)]
pub(super) async fn apply(
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
pub(super) fn fixes_for(
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

#[cfg(test)]
mod tests {
    use super::*;

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
