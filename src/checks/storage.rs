//! `storage.writable` (and `storage.object_lock` where configured).

use std::sync::Arc;

use anyhow::{bail, Result};

use super::{CheckContext, Finding, PlannedCheck};
use crate::storage::{self, Storage};

pub fn plan(ctx: &Arc<CheckContext>, out: &mut Vec<PlannedCheck>) {
    let Some(store) = ctx.storage.clone() else {
        return;
    };
    let critical = ctx.config.postgres.iter().any(|t| t.critical);
    let s = store.clone();
    out.push(PlannedCheck {
        name: "storage.writable",
        target: None,
        critical,
        timeout_per_read: false,
        run: Box::pin(async move { writable(s.as_ref()).await }),
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
