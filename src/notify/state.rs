//! The last outcome of each operation per target, kept in storage beside the backups
//! (`status/<operation>/<target>.json`, `status/<operation>.json` without a target), so a
//! recovery is recognised and `dr check --notify` speaks only on a change, whichever host
//! ran the previous time.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::RunStatus;
use crate::storage::{self, Storage};

pub const STATUS_PREFIX: &str = "status";
const STATE_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LastRun {
    pub format_version: u32,
    pub operation: String,
    pub target: Option<String>,
    pub status: RunStatus,
    pub at: DateTime<Utc>,
    pub message: String,
    pub last_success_at: Option<DateTime<Utc>>,
    /// Stored bytes of the last successful backup (for `dr_backup_size_bytes`).
    #[serde(default)]
    pub last_success_size_bytes: Option<u64>,
}

impl LastRun {
    /// The record after a run with `status`, carrying the last success forward.
    pub fn next(
        previous: Option<&LastRun>,
        operation: &str,
        target: Option<&str>,
        status: RunStatus,
        at: DateTime<Utc>,
        message: &str,
        size_bytes: Option<u64>,
    ) -> LastRun {
        let (last_success_at, last_success_size_bytes) = match status {
            RunStatus::Success => (Some(at), size_bytes),
            RunStatus::Failure => (
                previous.and_then(|p| p.last_success_at),
                previous.and_then(|p| p.last_success_size_bytes),
            ),
        };
        LastRun {
            format_version: STATE_FORMAT_VERSION,
            operation: operation.to_string(),
            target: target.map(str::to_string),
            status,
            at,
            message: message.to_string(),
            last_success_at,
            last_success_size_bytes,
        }
    }
}

pub fn key(operation: &str, target: Option<&str>) -> String {
    match target {
        Some(t) => format!(
            "{STATUS_PREFIX}/{operation}/{}.json",
            crate::config::storage_name(t)
        ),
        None => format!("{STATUS_PREFIX}/{operation}.json"),
    }
}

/// The stored record, `None` when there is none yet.
pub async fn read(
    storage: &dyn Storage,
    operation: &str,
    target: Option<&str>,
) -> Result<Option<LastRun>> {
    let key = key(operation, target);
    if storage.head(&key).await?.is_none() {
        return Ok(None);
    }
    let bytes = storage::get_bytes(storage, &key).await?;
    let record = serde_json::from_slice(&bytes)
        .with_context(|| format!("{key} in {} is not a status record", storage.describe()))?;
    Ok(Some(record))
}

pub async fn write(storage: &dyn Storage, record: &LastRun) -> Result<()> {
    let key = key(&record.operation, record.target.as_deref());
    storage::put_bytes(storage, &key, serde_json::to_vec_pretty(record)?)
        .await
        .with_context(|| format!("cannot store {key} in {}", storage.describe()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_the_last_success() {
        let t0 = Utc::now();
        let ok = LastRun::next(
            None,
            "backup",
            Some("main"),
            RunStatus::Success,
            t0,
            "ok",
            Some(42),
        );
        let failed = LastRun::next(
            Some(&ok),
            "backup",
            Some("main"),
            RunStatus::Failure,
            t0 + chrono::Duration::hours(1),
            "down",
            None,
        );
        assert_eq!(failed.last_success_at, Some(t0));
        assert_eq!(failed.last_success_size_bytes, Some(42));
        assert_eq!(failed.status, RunStatus::Failure);
        assert_eq!(key("backup", Some("main")), "status/backup/main.json");
        assert_eq!(key("check", None), "status/check.json");
    }
}
