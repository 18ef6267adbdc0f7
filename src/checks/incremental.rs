//! `pg.summarize_wal`: for targets with `incremental = true`, can the next
//! `dr backup --physical --incremental` be taken? PostgreSQL 17+ with `summarize_wal` on
//! (without WAL summaries the server cannot tell which blocks changed).

use std::sync::Arc;

use anyhow::{anyhow, Result};

use super::{CheckContext, PlannedCheck};
use crate::backup::incremental::FIRST_MAJOR;
use crate::pg::slots::SharedClient;
use crate::report::Finding;

pub fn plan(ctx: &Arc<CheckContext>, out: &mut Vec<PlannedCheck>) {
    for target in ctx.config.postgres.iter().filter(|t| t.incremental) {
        let shared = ctx.clients.get(target.resolve_url());
        let name = target.name.clone();
        out.push(PlannedCheck {
            name: "pg.summarize_wal",
            target: Some(name.clone()),
            critical: target.critical,
            timeout_per_read: false,
            run: Box::pin(async move { summarize_wal(&shared, &name).await }),
        });
    }
}

async fn summarize_wal(shared: &SharedClient, target: &str) -> Result<Finding> {
    let Ok(client) = shared.client().await else {
        return Ok(Finding::fail(
            "cannot connect (see pg.connect), so summarize_wal is unknown",
        ));
    };
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int / 10000,
                    current_setting('summarize_wal', true)",
            &[],
        )
        .await
        .map_err(|e| {
            anyhow!(
                "cannot read summarize_wal: {}",
                crate::pg::describe_pg_error(&e)
            )
        })?;
    Ok(judge(
        target,
        row.try_get::<_, i32>(0)? as u32,
        row.try_get(1)?,
    ))
}

/// The verdict: pure, so every branch has a unit test.
pub fn judge(target: &str, major: u32, setting: Option<String>) -> Finding {
    if major < FIRST_MAJOR {
        return Finding::warn(format!(
            "incremental = true, but PostgreSQL {major} has no incremental base backups (they need {FIRST_MAJOR}+), so `dr backup --physical --incremental` is refused; hint: take full base backups (`dr backup --physical --target {target}`) and remove incremental = true, or upgrade the server"
        ));
    }
    match setting.as_deref() {
        Some("on") => Finding::pass(format!(
            "summarize_wal is on (PostgreSQL {major}): `dr backup --physical --incremental` can build on the newest base backup"
        )),
        _ => Finding::warn(format!(
            "summarize_wal is off on PostgreSQL {major}, so `dr backup --physical --incremental` is refused; hint: ALTER SYSTEM SET summarize_wal = on; SELECT pg_reload_conf(); then take a full `dr backup --physical --target {target}` to build on"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;

    #[test]
    fn warns_when_an_incremental_would_be_refused() {
        assert_eq!(judge("m", 18, Some("on".into())).status, Status::Pass);
        let off = judge("m", 17, Some("off".into()));
        assert_eq!(off.status, Status::Warn);
        assert!(off.message.contains("ALTER SYSTEM SET summarize_wal = on"));
        let old = judge("m", 16, None);
        assert_eq!(old.status, Status::Warn);
        assert!(old.message.contains("PostgreSQL 16") && old.message.contains("17+"));
    }
}
