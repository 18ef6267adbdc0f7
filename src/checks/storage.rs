//! `storage.writable`: initialised (`dr init`'s marker) and writable; and
//! `storage.object_lock` where configured.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};

use super::{CheckContext, Finding, PlannedCheck};
use crate::config::StorageUrl;
use crate::storage::{self, marker, Storage};

pub fn plan(ctx: &Arc<CheckContext>, out: &mut Vec<PlannedCheck>) {
    let Some(store) = ctx.storage.clone() else {
        return;
    };
    let critical = ctx.config.postgres.iter().any(|t| t.critical);
    let s = store.clone();
    let local_root = match ctx.config.storage.as_ref().map(|s| &s.url) {
        Some(StorageUrl::Local(path)) => Some(path.clone()),
        _ => None,
    };
    let archiving = ctx.config.postgres.iter().any(|t| t.wal_archiving);
    out.push(PlannedCheck {
        name: "storage.writable",
        target: None,
        critical,
        timeout_per_read: false,
        run: Box::pin(
            async move { initialised_and_writable(s.as_ref(), local_root, archiving).await },
        ),
    });
    let lock_configured = ctx
        .config
        .storage
        .as_ref()
        .and_then(|s| s.s3.as_ref())
        .is_some_and(|s3| s3.object_lock_days.is_some());
    if lock_configured {
        out.push(PlannedCheck {
            name: "storage.object_lock",
            target: None,
            critical: false,
            timeout_per_read: false,
            run: Box::pin(async move {
                Ok(match store.capabilities_report().await {
                    Some(Ok(msg)) => Finding::pass(msg),
                    Some(Err(e)) => Finding::fail(format!("{e:#}")),
                    None => Finding::warn(
                        "object_lock_days is set but this storage cannot lock objects",
                    ),
                })
            }),
        });
    }
}

/// The marker first (`dr init`), then the probe. A local root that does not exist is not
/// probed: the probe would create it, on the mount point of a volume that is not mounted.
async fn initialised_and_writable(
    storage: &dyn Storage,
    local_root: Option<PathBuf>,
    archiving: bool,
) -> Result<Finding> {
    let marker = marker::read(storage).await?;
    if marker.is_none() {
        if let Some(root) = local_root.filter(|r| !r.exists()) {
            // With archiving on, wal-push refuses it now; without, the first backup would
            // create it (a new storage), so it is only a warning.
            let message = format!(
                "storage {} does not exist (no directory {}); nothing was probed{}; hint: check that its volume is mounted and [storage] url is right; for a new storage run `dr init`",
                storage.describe(),
                root.display(),
                if archiving { "; `dr wal-push` refuses it, so WAL archiving fails" } else { "" }
            );
            if archiving {
                bail!("{message}");
            }
            return Ok(Finding::warn(message));
        }
    }
    let probed = writable(storage).await?;
    Ok(match marker {
        Some(m) => Finding::pass(format!(
            "{}; initialised by {} at {}",
            probed.message,
            m.created_by,
            m.created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )),
        None if archiving => Finding::fail(marker::unmarked_message(
            storage,
            "`dr wal-push` refuses it, so WAL archiving fails",
        )),
        None => Finding::warn(marker::unmarked_message(
            storage,
            "`dr wal-push` would refuse it",
        )),
    })
}

async fn writable(storage: &dyn Storage) -> Result<Finding> {
    let key = format!(
        "checks/probe-{}-{}",
        std::process::id(),
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.f")
    );
    let payload = format!("dr storage probe {key}").into_bytes();
    storage::put_bytes(storage, &key, payload.clone()).await.map_err(|e| {
        anyhow::anyhow!("cannot write a probe object to {}: {e:#}; hint: check the path or bucket, its permissions and free space", storage.describe())
    })?;
    let back = storage::get_bytes(storage, &key).await;
    let deleted = storage.delete(&key).await;
    let back = back.map_err(|e| {
        anyhow::anyhow!(
            "wrote a probe to {} but cannot read it back: {e:#}",
            storage.describe()
        )
    })?;
    if back != payload {
        bail!("the probe read back from {} differs from what was written: the storage is corrupting data", storage.describe());
    }
    deleted.map_err(|e| {
        anyhow::anyhow!(
            "cannot delete the probe {key} from {}: {e:#}; hint: prune needs delete permission",
            storage.describe()
        )
    })?;
    Ok(Finding::pass(format!(
        "{}: probe written, read back and deleted",
        storage.describe()
    )))
}
