//! `dr pin ID` / `dr unpin ID`: a backup kept outside every retention rule, or released.

use anyhow::Result;
use serde::Serialize;

use crate::backup::{catalog, pins};
use crate::cli::{Format, PinArgs};
use crate::config::Config;
use crate::error::usage;
use crate::output;
use crate::report::FORMAT_VERSION;

#[derive(Debug, Serialize)]
struct PinReport {
    format_version: u32,
    ok: bool,
    target: String,
    backup_id: String,
    pinned: bool,
    reason: Option<String>,
}

pub async fn run(config: &Config, args: PinArgs, pin: bool) -> Result<i32> {
    if !pin && args.reason.is_some() {
        return Err(usage("--reason belongs to dr pin; hint: drop it"));
    }
    // A Redis target with backups, else the PostgreSQL one.
    let target = match config.redis_backup_target(args.target.as_deref()) {
        Some(redis) => redis?.name.clone(),
        None => super::single_target(config, args.target.as_deref())?
            .name
            .clone(),
    };
    let storage = super::open_storage(config)?;
    // Dumps and physical base backups alike (a base backup is pinned with its WAL).
    let manifest =
        catalog::resolve_method(storage.as_ref(), &target, &args.backup_id, None).await?;
    let (text, reason) = if pin {
        let p = pins::pin(
            storage.as_ref(),
            &target,
            &manifest.id,
            args.reason.as_deref(),
        )
        .await?;
        (
            format!(
                "pinned {} of {target}: prune keeps it outside every rule until `dr unpin {} --target {target}`\n",
                manifest.id, manifest.id
            ),
            p.reason,
        )
    } else if pins::unpin(storage.as_ref(), &target, &manifest.id).await? {
        (
            format!(
                "unpinned {} of {target}: the retention rules apply to it again\n",
                manifest.id
            ),
            None,
        )
    } else {
        (
            format!(
                "{} of {target} was not pinned; nothing changed\n",
                manifest.id
            ),
            None,
        )
    };
    output::emit(&match args.format {
        Format::Json => output::json(&PinReport {
            format_version: FORMAT_VERSION,
            ok: true,
            target: target.clone(),
            backup_id: manifest.id.clone(),
            pinned: pin,
            reason,
        }),
        Format::Table => text,
    });
    Ok(0)
}
