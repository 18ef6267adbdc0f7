//! `pg.connect`, `pg.tools`, `pg.privileges`: can a backup of this target run right now?
//! `pg.mark`: can `dr mark` make a restore point on it?

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;

use super::{CheckContext, Finding, PlannedCheck};
use crate::config::PostgresTarget;
use crate::pg::slots::SharedClient;
use crate::pg::{self, tools};

pub fn plan(ctx: &Arc<CheckContext>, out: &mut Vec<PlannedCheck>) {
    // A fleet whose server could not list its databases: none of them can be checked.
    for (fleet, error) in &ctx.config.discovery_failures {
        let finding = Finding::fail(error.clone());
        out.push(PlannedCheck {
            name: "pg.connect",
            target: Some(fleet.clone()),
            critical: true,
            timeout_per_read: false,
            run: Box::pin(async move { Ok(finding) }),
        });
    }
    for target in &ctx.config.postgres {
        // One connection per target, shared by its checks (and bounded per server).
        let shared = ctx.clients.get(target.resolve_url());
        let s = shared.clone();
        out.push(PlannedCheck {
            name: "pg.connect",
            target: Some(target.name.clone()),
            critical: target.critical,
            timeout_per_read: false,
            run: Box::pin(async move { connect(&s).await }),
        });
        let (t, s, tools) = (target.clone(), shared.clone(), ctx.tools.clone());
        out.push(PlannedCheck {
            name: "pg.tools",
            target: Some(t.name.clone()),
            critical: t.critical,
            timeout_per_read: false,
            run: Box::pin(async move { client_tools(&t, &s, &tools).await }),
        });
        let s = shared.clone();
        out.push(PlannedCheck {
            name: "pg.privileges",
            target: Some(target.name.clone()),
            critical: target.critical,
            timeout_per_read: false,
            run: Box::pin(async move { privileges(&s).await }),
        });
        if target.wal_archiving {
            let (s, name) = (shared, target.name.clone());
            out.push(PlannedCheck {
                name: "pg.mark",
                target: Some(target.name.clone()),
                critical: false,
                timeout_per_read: false,
                run: Box::pin(async move { mark_privileges(&s, &name).await }),
            });
        }
    }
}

/// `pg.mark`: the role can run what `dr mark` runs (a restore point, then a WAL switch so
/// it is archived), which the runbooks ask for before every migration.
async fn mark_privileges(shared: &SharedClient, target: &str) -> Result<Finding> {
    let c = shared.conn()?;
    let Ok(client) = shared.client().await else {
        return Ok(Finding::fail(
            "cannot connect (see pg.connect), so the privileges of dr mark are unknown",
        ));
    };
    let row = client
        .query_one(
            "SELECT rolsuper, \
                    has_function_privilege('pg_create_restore_point(text)', 'EXECUTE'), \
                    has_function_privilege('pg_switch_wal()', 'EXECUTE') \
             FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(|e| anyhow::anyhow!("{}", pg::describe_pg_error(&e)))?;
    let (superuser, point, switch): (bool, bool, bool) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    if superuser || (point && switch) {
        return Ok(Finding::pass(format!(
            "role {} can make restore points and switch WAL (`dr mark NAME --target {target}`)",
            c.user
        )));
    }
    let missing: Vec<&str> = [
        (!point).then_some("pg_create_restore_point(text)"),
        (!switch).then_some("pg_switch_wal()"),
    ]
    .into_iter()
    .flatten()
    .collect();
    Ok(Finding::warn(format!(
        "role {} cannot run {}: `dr mark` before a migration would fail, and the runbooks ask for one; hint: GRANT EXECUTE ON FUNCTION {} TO {} (in database {}, where dr connects)",
        c.user,
        missing.join(" and "),
        missing.join(", "),
        c.user,
        c.database
    )))
}

async fn connect(shared: &SharedClient) -> Result<Finding> {
    let c = shared.conn()?;
    let started = Instant::now();
    let client = match shared.client().await {
        Ok(client) => client,
        Err(e) => return Ok(Finding::fail(format!("{e:#}"))),
    };
    client
        .simple_query("SELECT 1")
        .await
        .map_err(|e| anyhow::anyhow!("SELECT 1 failed: {}", pg::describe_pg_error(&e)))?;
    let (_, version) = pg::server_version(client).await?;
    Ok(Finding::pass(format!(
        "connected to {} as {} in {}; PostgreSQL {version}",
        c.public_url,
        c.user,
        crate::units::duration(started.elapsed())
    )))
}

async fn client_tools(
    target: &PostgresTarget,
    shared: &SharedClient,
    cache: &ToolVersions,
) -> Result<Finding> {
    let found = cache.get(target.pg_bin_dir.as_deref()).await;
    let found = match found {
        Ok(f) => f,
        Err(e) => return Ok(Finding::fail(e)),
    };
    let lowest = found.iter().map(|(_, major, _)| *major).min().unwrap_or(0);
    let server = match shared.client().await {
        Ok(client) => Some(pg::server_version(client).await?),
        Err(_) => None,
    };
    let tools_text = found
        .iter()
        .map(|(p, _, v)| format!("{p} {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    match server {
        None => Ok(Finding::warn(format!(
            "found {tools_text}, but the server version is unknown because the connection failed (see pg.connect)"
        ))),
        Some((server_major, server_text)) if lowest < server_major => Ok(Finding::fail(format!(
            "client tools are older than the server: {tools_text} vs server {server_text}; pg_dump {lowest} cannot dump a PostgreSQL {server_major} server; hint: install {} (or newer) and set pg_bin_dir",
            tools::client_package(server_major)
        ))),
        Some((_, server_text)) => Ok(Finding::pass(format!("{tools_text}; server {server_text}"))),
    }
}

/// Tables (and sequences) the role cannot read, and schemas it cannot enter: a dump would
/// die on the first of them.
const UNREADABLE_SQL: &str = "
SELECT format('%I.%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm', 'S', 'v')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
  AND NOT (has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT'))
ORDER BY 1 LIMIT 6";

async fn privileges(shared: &SharedClient) -> Result<Finding> {
    let c = shared.conn()?;
    let client = match shared.client().await {
        Ok(client) => client,
        Err(_) => {
            return Ok(Finding::fail(
                "cannot connect (see pg.connect), so privileges are unknown",
            ))
        }
    };
    let role = client
        .query_one(
            "SELECT rolsuper, pg_has_role(current_user, 'pg_read_all_data', 'USAGE') FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await;
    // pg_read_all_data exists from PostgreSQL 14; older servers fall back to table grants.
    if let Ok(row) = &role {
        let superuser: bool = row.try_get(0)?;
        let read_all: bool = row.try_get(1)?;
        if superuser {
            return Ok(Finding::pass(format!("role {} is a superuser", c.user)));
        }
        if read_all {
            return Ok(Finding::pass(format!(
                "role {} has pg_read_all_data",
                c.user
            )));
        }
    }
    let rows = client
        .query(UNREADABLE_SQL, &[])
        .await
        .map_err(|e| anyhow::anyhow!("{}", pg::describe_pg_error(&e)))?;
    if rows.is_empty() {
        let n: i64 = client
            .query_one("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p') AND n.nspname NOT IN ('pg_catalog','information_schema')", &[])
            .await?
            .try_get(0)?;
        return Ok(Finding::pass(format!(
            "role {} can read all {n} table(s)",
            c.user
        )));
    }
    let names: Vec<String> = rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let shown = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    let more = if names.len() > 5 { " and more" } else { "" };
    Ok(Finding::fail(format!(
        "role {} cannot read {shown}{more}: a backup would fail on them; hint: GRANT pg_read_all_data TO {} (PostgreSQL 14+), or GRANT USAGE on the schema and SELECT on these tables",
        c.user, c.user
    )))
}

/// `pg_dump --version` and `pg_restore --version`, asked once per `pg_bin_dir`: a fleet's
/// targets share their client tools, and a hundred children for the same answer would
/// cost more than every other check.
#[derive(Default)]
pub struct ToolVersions {
    found: tokio::sync::Mutex<std::collections::HashMap<Option<std::path::PathBuf>, ToolsFound>>,
}

/// The tools of one `pg_bin_dir`, or why they could not be asked.
type ToolsFound = Result<Vec<ToolVersion>, String>;

/// (path, major version, full version text)
type ToolVersion = (String, u32, String);

impl ToolVersions {
    async fn get(&self, bin_dir: Option<&std::path::Path>) -> ToolsFound {
        let mut found = self.found.lock().await;
        let key = bin_dir.map(std::path::Path::to_path_buf);
        if let Some(known) = found.get(&key) {
            return known.clone();
        }
        let asked: Result<Vec<ToolVersion>> = async {
            let mut out = Vec::new();
            for program in ["pg_dump", "pg_restore"] {
                let path = tools::find(program, bin_dir)?;
                let (major, full) = tools::version(&path).await?;
                out.push((path.display().to_string(), major, full));
            }
            Ok(out)
        }
        .await;
        let asked = asked.map_err(|e| format!("{e:#}"));
        found.insert(key, asked.clone());
        asked
    }
}
