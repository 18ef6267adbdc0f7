//! Pins: a backup kept outside every retention rule (before a risky migration, for a legal
//! hold) until it is unpinned. A pin is a small object beside the backups,
//! `pins/<target>/<id>.json`, so it survives every prune and says why and since when.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::storage::{self, Storage};

const PINS_PREFIX: &str = "pins";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub format_version: u32,
    pub target: String,
    pub backup_id: String,
    pub reason: Option<String>,
    pub pinned_at: DateTime<Utc>,
    /// The host that pinned it.
    pub pinned_by: String,
}

fn key(target: &str, id: &str) -> String {
    format!(
        "{PINS_PREFIX}/{}/{id}.json",
        crate::config::storage_name(target)
    )
}

/// Pins a backup (again: the reason and time are replaced).
pub async fn pin(
    storage: &dyn Storage,
    target: &str,
    id: &str,
    reason: Option<&str>,
) -> Result<Pin> {
    let pin = Pin {
        format_version: 1,
        target: target.to_string(),
        backup_id: id.to_string(),
        reason: reason.map(str::to_string),
        pinned_at: Utc::now(),
        pinned_by: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".into()),
    };
    storage::put_bytes(storage, &key(target, id), serde_json::to_vec_pretty(&pin)?)
        .await
        .with_context(|| format!("cannot record the pin of {id} in {}", storage.describe()))?;
    Ok(pin)
}

/// Removes a pin; `false` when there was none.
pub async fn unpin(storage: &dyn Storage, target: &str, id: &str) -> Result<bool> {
    let k = key(target, id);
    if storage.head(&k).await?.is_none() {
        return Ok(false);
    }
    storage.delete(&k).await?;
    Ok(true)
}

/// Every pin of `target`. A pin that cannot be read still pins its backup (by its name):
/// a damaged record must never let prune delete what someone meant to keep.
pub async fn list(storage: &dyn Storage, target: &str) -> Result<Vec<Pin>> {
    let prefix = format!("{PINS_PREFIX}/{}/", crate::config::storage_name(target));
    let mut out = Vec::new();
    for o in storage.list(&prefix).await? {
        let Some(id) = o
            .key
            .strip_prefix(&prefix)
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        let read = storage::get_bytes(storage, &o.key)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<Pin>(&b).ok());
        out.push(read.unwrap_or_else(|| Pin {
            format_version: 1,
            target: target.to_string(),
            backup_id: id.to_string(),
            reason: Some(format!("the pin record {} cannot be read", o.key)),
            pinned_at: o.modified,
            pinned_by: "unknown".into(),
        }));
    }
    out.sort_by(|a, b| a.backup_id.cmp(&b.backup_id));
    Ok(out)
}
