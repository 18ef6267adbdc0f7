//! `dr wal-push PATH`: PostgreSQL's archive_command. Exit 0 only once the file is durable.

use anyhow::Result;

use crate::cli::{Format, WalPushArgs};
use crate::config::Config;
use crate::output;
use crate::wal::{self, push::LocalWalFile};

pub async fn run(config: &Config, args: WalPushArgs) -> Result<i32> {
    let path = args.path.clone();
    let file = tokio::task::spawn_blocking(move || LocalWalFile::identify(&path)).await??;
    let storage = super::open_storage(config)?;
    let target = wal::resolve_target(
        config,
        storage.as_ref(),
        args.target.as_deref(),
        Some(file.system_id),
    )
    .await?;
    let recipients = crate::encryption::configured_recipients(config)?;
    let outcome = wal::push_ahead::push_with_ahead(
        storage.as_ref(),
        &target.name,
        &file,
        &config.backup,
        recipients.as_ref(),
        config.wal.push_parallel(),
    )
    .await?;
    // archive_command output lands in the server log: silent on success.
    if args.format == Format::Json {
        output::emit(&output::json(&outcome));
    }
    Ok(0)
}
