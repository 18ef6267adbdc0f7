//! Named restore points (`dr mark NAME`): `pg_create_restore_point` on the server, and a
//! record in storage (`marks/<target>/<name>.json`) with the position and time, so a
//! restore can check the name against the restorable window and pick the base backup
//! before it starts anything.

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Lsn;
use crate::error::usage;
use crate::storage::{self, Storage};

pub const MARKS_PREFIX: &str = "marks";

/// PostgreSQL keeps restore point names below 64 bytes (`MAXFNAMELEN`).
const MAX_NAME_LEN: usize = 63;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RestorePoint {
    pub format_version: u32,
    pub target: String,
    pub name: String,
    /// Where the restore point record was written (`pg_create_restore_point`).
    pub lsn: String,
    /// The WAL segment that holds it.
    pub wal: String,
    pub timeline: u32,
    /// As a string: JSON numbers lose precision above 2^53.
    pub system_identifier: String,
    /// The server's clock when the point was made.
    pub created_at: DateTime<Utc>,
    pub dr_version: String,
}

impl RestorePoint {
    pub fn lsn(&self) -> Result<Lsn> {
        Lsn::parse(&self.lsn)
    }
}

/// A name `dr mark` accepts: PostgreSQL's length limit, and characters that are safe in
/// an object key and in `recovery_target_name = '...'`.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        || name.starts_with('.')
    {
        return Err(usage(format!(
            "{name:?} is not a restore point name dr accepts; hint: use 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.', like before-migration-42"
        )));
    }
    Ok(())
}

pub fn key(target: &str, name: &str) -> String {
    format!("{MARKS_PREFIX}/{target}/{name}.json")
}

pub async fn find(storage: &dyn Storage, target: &str, name: &str) -> Result<Option<RestorePoint>> {
    let key = key(target, name);
    if storage.head(&key).await?.is_none() {
        return Ok(None);
    }
    let bytes = storage::get_bytes(storage, &key).await?;
    let point = serde_json::from_slice(&bytes)
        .with_context(|| format!("the restore point record {key} is damaged"))?;
    Ok(Some(point))
}

/// Every recorded restore point of `target`, oldest first.
pub async fn list(storage: &dyn Storage, target: &str) -> Result<Vec<RestorePoint>> {
    let objects = storage
        .list(&format!("{MARKS_PREFIX}/{target}/"))
        .await
        .with_context(|| format!("cannot list the restore points of {target}"))?;
    let mut out = Vec::new();
    for o in objects.iter().filter(|o| o.key.ends_with(".json")) {
        let bytes = storage::get_bytes(storage, &o.key).await?;
        match serde_json::from_slice::<RestorePoint>(&bytes) {
            Ok(p) => out.push(p),
            Err(e) => tracing::warn!(
                "{} cannot be read ({e}); that restore point is not listed",
                o.key
            ),
        }
    }
    out.sort_by_key(|p| p.created_at);
    Ok(out)
}

/// Records a restore point; a second point with the same name is refused (recovery would
/// stop at the first one, whatever the operator meant).
pub async fn record(storage: &dyn Storage, point: &RestorePoint) -> Result<()> {
    let key = key(&point.target, &point.name);
    if storage.head(&key).await?.is_some() {
        bail!(
            "restore point {} of {} is already recorded ({key})",
            point.name,
            point.target
        );
    }
    storage::put_bytes(storage, &key, serde_json::to_vec_pretty(point)?)
        .await
        .with_context(|| format!("cannot record the restore point {key}"))?;
    Ok(())
}

/// Waits (a minute at most) until the segment holding the restore point is archived: the
/// runbooks restore to "just before now" right after marking, and the window must reach it.
pub async fn wait_archived(client: &tokio_postgres::Client, segment: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let archived: Option<String> = client
            .query_one("SELECT last_archived_wal FROM pg_stat_archiver", &[])
            .await
            .ok()
            .and_then(|r| r.get(0));
        // Names of one timeline sort in WAL order; a later timeline's sort after.
        if archived.is_some_and(|a| a.len() == 24 && a.as_str() >= segment) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    tracing::warn!("{segment} was not archived within a minute: check archiving (`dr check --only pg.archiving`); the restore point reaches the window once it is");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["before-migration", "v1.2_release", "a"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "has space",
            "../x",
            ".hidden",
            "quote'",
            &"x".repeat(64),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
