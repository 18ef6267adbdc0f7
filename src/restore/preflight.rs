//! The steps that prove a restore can start, before a byte is fetched or anything is
//! touched: storage, manifest, tools, destination, privileges, extensions, disk; and,
//! once the archive's table of contents is read, ownership.
//!
//! For `dr validate` a failed step does not stop the steps that do not depend on it: an
//! unreachable or missing destination still leaves the storage, checksum, archive and
//! tool versions checked and reported.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use tokio_postgres::Client;

use super::RestoreScope;
use crate::backup::catalog;
use crate::backup::manifest::{BackupManifest, StoredObject};
use crate::config::PostgresTarget;
use crate::pg::{self, tools, ConnTarget};
use crate::report::{Finding, Phase, Steps};
use crate::storage::Storage;
use crate::units;

/// What the preflight looks at.
pub struct Preflight<'a> {
    pub storage: &'a dyn Storage,
    pub target: &'a PostgresTarget,
    pub backup_id: &'a str,
    pub destination: &'a ConnTarget,
    pub staging_dir: &'a Path,
    pub scope: &'a RestoreScope,
    /// Whether the restore stages a decompressed archive (parallel pg_restore) or the
    /// stored bytes.
    pub seekable: bool,
    /// Validate: record a failed step and go on with the steps that do not need it.
    pub keep_going: bool,
}

/// The role the restore connects as, and what it may do.
#[derive(Debug, Clone)]
pub struct RestoreRole {
    pub name: String,
    pub superuser: bool,
    pub createdb: bool,
    pub createrole: bool,
}

/// The destination as the preflight found it.
pub struct Destination {
    /// Whether the database exists (else `--create` will create it).
    pub exists: bool,
    pub role: RestoreRole,
    pub server_major: u32,
    /// User objects it holds now (0 when missing): more than 0 makes a restore destructive.
    pub user_objects: i64,
}

/// What the preflight found. Without `keep_going` every field is set.
pub struct Preflighted {
    pub manifest: BackupManifest,
    pub pg_restore: Option<PathBuf>,
    pub destination: Option<Destination>,
    /// The steps that failed (only with `keep_going`), each with its error.
    pub failed: Vec<anyhow::Error>,
}

/// Runs the checks that need no download. Without `keep_going` the first failure is the
/// error; with it, only storage and manifest failures stop (nothing else can run without).
pub async fn run(p: &Preflight<'_>, steps: &mut Steps) -> Result<Preflighted> {
    let mut failed = Vec::new();
    let soft = |result: Result<()>, failed: &mut Vec<anyhow::Error>| -> Result<()> {
        match result {
            Err(e) if p.keep_going => {
                failed.push(e);
                Ok(())
            }
            other => other,
        }
    };
    steps
        .run("storage", Phase::Preflight, async {
            p.storage.list(catalog::BACKUPS_PREFIX).await?;
            Ok(((), format!("{} is reachable", p.storage.describe())))
        })
        .await?;
    let manifest = steps
        .run("manifest", Phase::Preflight, async {
            let m = catalog::resolve(p.storage, &p.target.name, p.backup_id).await?;
            p.scope.selection.check_against(&m)?;
            if p.scope.with_globals && m.globals().is_none() {
                return Err(crate::error::usage(format!(
                    "--with-globals: backup {} holds no roles or tablespaces; hint: leave out --with-globals (create the roles by hand, or use --no-owner), and set [backup] include_globals = true for the next backups",
                    m.id
                )));
            }
            let msg = format!(
                "backup {} of {} taken {} ({} tables, {}){}",
                m.id,
                m.database,
                units::time(m.created_at),
                units::count(m.tables.len() as u64),
                units::bytes(m.size_bytes),
                if p.scope.selection.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; restoring the rows of {} table(s): {}",
                        p.scope.selection.tables_of(&m).len(),
                        p.scope.selection.flags()
                    )
                }
            );
            Ok((m, msg))
        })
        .await?;
    let mut pg_restore = None;
    let tools = steps
        .run("tools", Phase::Preflight, async {
            let path = tools::find("pg_restore", p.target.pg_bin_dir.as_deref())?;
            let (major, version) = tools::version(&path).await?;
            let (dump_major, _) = tools::parse_version(&manifest.pg_dump_version)?;
            if major < dump_major {
                bail!(
                    "pg_restore {version} is older than the pg_dump {} that wrote this backup and cannot read it; hint: install {} and set pg_bin_dir",
                    manifest.pg_dump_version,
                    tools::client_package(dump_major)
                );
            }
            if p.scope.with_globals {
                tools::find("psql", p.target.pg_bin_dir.as_deref())?;
            }
            Ok((path.clone(), format!("{} {version} can read a pg_dump {} archive", path.display(), manifest.pg_dump_version)))
        })
        .await;
    match tools {
        Ok(path) => pg_restore = Some(path),
        Err(e) => soft(Err(e), &mut failed)?,
    }
    let reached = steps
        .run("destination", Phase::Preflight, async {
            destination(p, &manifest).await
        })
        .await;
    let mut found = None;
    match reached {
        Ok((client, dest)) => {
            let privileges = steps
                .run("privileges", Phase::Preflight, async {
                    Ok(((), privileges(p, &manifest, &client, &dest).await?))
                })
                .await;
            soft(privileges, &mut failed)?;
            let extensions = steps
                .run("extensions", Phase::Preflight, async {
                    let available: Vec<String> = client
                        .query("SELECT name FROM pg_available_extensions", &[])
                        .await?
                        .iter()
                        .map(|r| r.get(0))
                        .collect();
                    let missing: Vec<&String> = manifest.extensions.iter().filter(|e| !available.contains(e)).collect();
                    if !missing.is_empty() {
                        bail!(
                            "the backup uses extension(s) {} that the destination server does not have; hint: install them there (often the postgresql-contrib package) before restoring",
                            missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                        );
                    }
                    Ok(((), format!("all {} extension(s) of the backup are available", manifest.extensions.len())))
                })
                .await;
            soft(extensions, &mut failed)?;
            found = Some(dest);
        }
        Err(e) => soft(Err(e), &mut failed)?,
    }
    let disk = steps
        .run("disk", Phase::Preflight, async {
            let staged = |o: &StoredObject| if p.seekable { o.raw_bytes } else { o.size_bytes };
            let needed = staged(manifest.dump()) + manifest.globals().map_or(0, staged);
            let free = free_bytes(p.staging_dir)?;
            if free < needed + needed / 20 {
                bail!(
                    "{} has {} free, the restore stages {} there; hint: free space or pass --staging-dir on a disk with room",
                    p.staging_dir.display(),
                    units::bytes(free),
                    units::bytes(needed)
                );
            }
            Ok(((), format!("{} needed, {} free in {}", units::bytes(needed), units::bytes(free), p.staging_dir.display())))
        })
        .await;
    soft(disk, &mut failed)?;
    Ok(Preflighted {
        manifest,
        pg_restore,
        destination: found,
        failed,
    })
}

/// Connects to the destination database, or with `--create` to the server's maintenance
/// database when it is missing; checks the server version and, for a partial restore,
/// that the destination is empty.
async fn destination(
    p: &Preflight<'_>,
    manifest: &BackupManifest,
) -> Result<((Client, Destination), String)> {
    let dest = p.destination;
    let (client, exists) = match dest.connect().await {
        Ok(client) => (client, true),
        Err(e) if pg::is_missing_database(&e) && p.scope.create => {
            (dest.connect_maintenance().await?.1, false)
        }
        Err(e) if pg::is_missing_database(&e) => bail!(
            "database {} does not exist on {}; hint: add --create to create it (the restore role needs CREATEDB)",
            dest.database,
            dest.server()
        ),
        Err(e) => return Err(e),
    };
    let (major, version) = pg::server_version(&client).await?;
    if major < manifest.server_major {
        bail!(
            "destination {} runs PostgreSQL {version}, older than the backup's source ({}); hint: restore into a server of version {} or newer",
            dest.public_url,
            manifest.server_version,
            manifest.server_major
        );
    }
    let user_objects = if exists {
        super::user_object_count(&client).await?
    } else {
        0
    };
    if !p.scope.selection.is_empty() && user_objects > 0 {
        return Err(crate::error::usage(format!(
            "{} restores the backup's schema with only the chosen tables' rows, so it needs an empty database, and {} holds {user_objects} user object(s); nothing was changed; hint: restore into a new database (--into-env VAR --create) and copy the rows back from there",
            p.scope.selection.flags(),
            dest.public_url
        )));
    }
    let role = restore_role(&client).await?;
    let state = if !exists {
        format!(
            "database {} does not exist yet: --create will create it",
            dest.database
        )
    } else if user_objects == 0 {
        "empty".to_string()
    } else {
        format!("holds {user_objects} user object(s)")
    };
    let msg = format!(
        "{} answers as role {}, PostgreSQL {version}; {state}",
        dest.public_url, role.name
    );
    Ok((
        (
            client,
            Destination {
                exists,
                role,
                server_major: major,
                user_objects,
            },
        ),
        msg,
    ))
}

pub async fn restore_role(client: &Client) -> Result<RestoreRole> {
    let row = client
        .query_one(
            "SELECT rolname::text, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(|e| anyhow!("cannot read the restore role: {}", pg::describe_pg_error(&e)))?;
    Ok(RestoreRole {
        name: row.get(0),
        superuser: row.get(1),
        createdb: row.get(2),
        createrole: row.get(3),
    })
}

/// What this restore needs of the role on the destination, each missing privilege named
/// with its fix: CREATEDB for `--create`, CREATE on the database (and on schema public)
/// for the backup's objects, CREATEROLE for `--with-globals`.
async fn privileges(
    p: &Preflight<'_>,
    manifest: &BackupManifest,
    client: &Client,
    dest: &Destination,
) -> Result<String> {
    let role = &dest.role;
    let name = &role.name;
    let db = &p.destination.database;
    if role.superuser {
        return Ok(format!("role {name} is a superuser"));
    }
    let mut have = Vec::new();
    let mut missing: Vec<(String, String)> = Vec::new();
    if !dest.exists {
        if role.createdb {
            have.push("CREATEDB for --create".to_string());
        } else {
            missing.push((
                format!("CREATEDB, to create database {db} (--create)"),
                format!("ALTER ROLE {name} CREATEDB"),
            ));
        }
    } else {
        let needs_schemas = manifest.schemas.iter().any(|s| s != "public");
        let can_create: bool = client
            .query_one(
                "SELECT has_database_privilege(current_database(), 'CREATE')",
                &[],
            )
            .await?
            .get(0);
        if can_create {
            have.push(format!("CREATE on database {db}"));
        } else if needs_schemas {
            missing.push((
                format!("CREATE on database {db}, to create the backup's schemas"),
                format!(
                    "GRANT CREATE ON DATABASE {} TO {}",
                    pg::quote_ident(db),
                    pg::quote_ident(name)
                ),
            ));
        }
        let public_tables = manifest.tables.iter().any(|t| t.schema == "public");
        let public_ok: Option<bool> = client
            .query_one(
                "SELECT CASE WHEN to_regnamespace('public') IS NULL THEN NULL ELSE has_schema_privilege('public', 'CREATE') END",
                &[],
            )
            .await?
            .get(0);
        if public_tables && public_ok == Some(false) {
            missing.push((
                "CREATE on schema public, where the backup has tables".to_string(),
                format!("GRANT CREATE ON SCHEMA public TO {}", pg::quote_ident(name)),
            ));
        }
    }
    if p.scope.with_globals {
        if role.createrole {
            have.push("CREATEROLE for --with-globals (superuser roles and role passwords of the backup need a superuser)".to_string());
        } else {
            missing.push((
                "CREATEROLE, to create the backup's roles (--with-globals)".to_string(),
                format!("ALTER ROLE {name} CREATEROLE, or restore the globals as a superuser"),
            ));
        }
    }
    if missing.is_empty() {
        return Ok(format!(
            "role {name} has {}",
            if have.is_empty() {
                "what this restore needs".to_string()
            } else {
                have.join(", ")
            }
        ));
    }
    bail!(
        "role {name} lacks {}; hint: {} (as a superuser), or set restore_url to an owner or admin role",
        missing
            .iter()
            .map(|(what, _)| what.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        missing
            .iter()
            .map(|(_, fix)| fix.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    )
}

/// Whether the role can give the archive's objects back to their owners (pg_restore
/// runs `ALTER ... OWNER TO` for each): it is a superuser, is the owner, or is a member of
/// it. Otherwise the fix is `--no-owner`, or the roles (`--with-globals`).
pub async fn ownership(
    destination: &ConnTarget,
    dest: &Destination,
    scope: &RestoreScope,
    manifest: &BackupManifest,
    owners: &[String],
) -> Result<Finding> {
    let role = &dest.role;
    if scope.no_owner {
        return Ok(Finding::pass(format!(
            "--no-owner: every restored object will belong to {}",
            role.name
        )));
    }
    let client = if dest.exists {
        destination.connect().await?
    } else {
        destination.connect_maintenance().await?.1
    };
    // From PostgreSQL 16, giving an object away takes the SET option on the new owner.
    let privilege = if dest.server_major >= 16 {
        "SET"
    } else {
        "MEMBER"
    };
    let mut problems = Vec::new();
    for owner in owners.iter().filter(|o| **o != role.name) {
        let row = client
            .query_opt(
                &format!("SELECT pg_has_role(current_user, oid, '{privilege}') FROM pg_roles WHERE rolname = $1"),
                &[owner],
            )
            .await?;
        match row.map(|r| r.get::<_, bool>(0)) {
            Some(true) => {}
            Some(false) => problems.push(format!("it is not a member of {owner}")),
            // --with-globals creates it first; only a superuser may then hand it objects.
            None if scope.with_globals && role.superuser => {}
            None if scope.with_globals => problems.push(format!(
                "{owner} does not exist there yet, and only a superuser can give objects to the roles --with-globals creates"
            )),
            None => problems.push(format!("role {owner} does not exist there")),
        }
    }
    if problems.is_empty() {
        return Ok(Finding::pass(format!(
            "role {} may give every object back to its owner ({}){}",
            role.name,
            owners.join(", "),
            if role.superuser { ": a superuser" } else { "" }
        )));
    }
    let globals_hint = if manifest.globals().is_some() && !scope.with_globals {
        ", or create the missing roles first with --with-globals"
    } else {
        ""
    };
    Err(anyhow!(
        "role {} cannot give the restored objects back to their owners: {}; hint: use --no-owner (every object then belongs to {}){globals_hint}{}",
        role.name,
        problems.join("; "),
        role.name,
        if role.superuser { "" } else { ", or restore as a superuser" }
    ))
}

pub fn free_bytes(dir: &Path) -> Result<u64> {
    let stat = nix::sys::statvfs::statvfs(dir)
        .with_context(|| format!("cannot read free space of {}", dir.display()))?;
    Ok(stat.blocks_available() as u64 * stat.fragment_size() as u64)
}
