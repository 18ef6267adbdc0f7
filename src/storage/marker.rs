//! `dr-storage.json`: the mark of a storage that `dr init` (or the first `dr backup`)
//! set up. Writers that must not create a storage of their own accord (`wal-push`, whose
//! storage root may be an unmounted volume's empty mount point) refuse one without it.

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Storage;

/// The marker's key, at the storage root.
pub const MARKER_KEY: &str = "dr-storage.json";

/// What the marker says: when and by whom the storage was set up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StorageMarker {
    pub format_version: u32,
    pub created_at: DateTime<Utc>,
    /// The host name of the machine that ran `dr init` (or the first backup).
    pub created_by: String,
    pub dr_version: String,
}

/// What `ensure` found or did.
#[derive(Debug, Clone, Serialize)]
pub struct Initialised {
    pub marker: StorageMarker,
    /// False when the storage was already marked: nothing was written.
    pub created: bool,
}

fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}

/// The marker of `storage`; None when it has none.
pub async fn read(storage: &dyn Storage) -> Result<Option<StorageMarker>> {
    let found = storage.head(MARKER_KEY).await.with_context(|| {
        format!(
            "cannot look for {MARKER_KEY} in storage {}",
            storage.describe()
        )
    })?;
    if found.is_none() {
        return Ok(None);
    }
    let bytes = super::get_bytes(storage, MARKER_KEY)
        .await
        .with_context(|| format!("cannot read {MARKER_KEY} in {}", storage.describe()))?;
    let marker = serde_json::from_slice(&bytes).map_err(|e| {
        anyhow!(
            "{MARKER_KEY} in {} is not dr's storage marker ({e}); hint: remove it and run `dr init`",
            storage.describe()
        )
    })?;
    Ok(Some(marker))
}

/// Marks `storage` as set up, creating its root (a local directory) if needed. Does
/// nothing to a storage already marked.
pub async fn ensure(storage: &dyn Storage) -> Result<Initialised> {
    if let Some(marker) = read(storage).await? {
        return Ok(Initialised {
            marker,
            created: false,
        });
    }
    let marker = StorageMarker {
        format_version: 1,
        created_at: Utc::now(),
        created_by: host_name(),
        dr_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    super::put_bytes(storage, MARKER_KEY, serde_json::to_vec_pretty(&marker)?)
        .await
        .map_err(|e| {
            anyhow!(
                "cannot write {MARKER_KEY} to storage {}: {e:#}; hint: check the path or bucket, its permissions and free space",
                storage.describe()
            )
        })?;
    Ok(Initialised {
        marker,
        created: true,
    })
}

/// Fails unless `storage` carries the marker: the check of a writer that must never set
/// up a storage itself.
/// `consequence` says what the refusal means for the caller (`nothing was written; ...`).
pub async fn require(storage: &dyn Storage, consequence: &str) -> Result<StorageMarker> {
    match read(storage).await? {
        Some(marker) => Ok(marker),
        None => bail!("{}", unmarked_message(storage, consequence)),
    }
}

/// Why an unmarked storage is refused, what that means, and the fix.
pub fn unmarked_message(storage: &dyn Storage, consequence: &str) -> String {
    format!(
        "storage {} is not initialised: it has no {MARKER_KEY}, so it may be an unmounted volume, a wrong path or bucket, or a new storage nobody set up; {consequence}; hint: check that the volume is mounted and [storage] url is right, then run `dr init` once (a first `dr backup` also initialises it)",
        storage.describe()
    )
}
