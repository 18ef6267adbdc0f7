//! The Redis side of `backup` and `verify` as a library, and where a Redis command works:
//! `--into`, `--into-env` or the target's own server.

use anyhow::Result;

use crate::backup::catalog;
use crate::backup::manifest::{BackupKind, BackupManifest};
use crate::backup::redis::{self as redis_backup, RedisBackupPlan};
use crate::config::{Config, RedisTarget};
use crate::redis_client::conn::{self, RedisEndpoint};
use crate::report::Steps;
use crate::restore::redis as restore;
use crate::restore::redis_verify::{self, RedisVerifyReport};
use crate::storage::Storage;

/// `--into URL` (no password: command lines are readable by every user), `--into-env VAR`,
/// or the target's own server.
pub fn destination(
    target: &RedisTarget,
    into: Option<&String>,
    into_env: Option<&String>,
) -> Result<RedisEndpoint> {
    let url = match (into, into_env) {
        (Some(url), _) if crate::secret::redact_url(url) != *url => {
            return Err(crate::error::usage(
                "--into carries a password, and any user of this host can read a command line; nothing was changed; hint: put the URL in an environment variable and pass --into-env VAR",
            ))
        }
        (Some(url), _) => url.clone(),
        (None, Some(var)) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => v,
            _ => {
                return Err(crate::error::usage(format!(
                    "--into-env {var}: the environment variable {var} is not set; hint: export {var}=redis://:password@host:6379"
                )))
            }
        },
        (None, None) => target.resolve_url()?,
    };
    Ok(RedisEndpoint::parse(&url)?.with_timeout(target.timeout))
}

/// One Redis backup; a fallback from rdb to keys is said on stderr.
pub async fn backup(
    config: &Config,
    storage: &dyn Storage,
    target: &RedisTarget,
    show_progress: bool,
) -> Result<BackupManifest> {
    let m = redis_backup::run(
        storage,
        RedisBackupPlan {
            target_name: &target.name,
            endpoint: destination(target, None, None)?,
            method: target.method,
            kind: BackupKind::Regular,
            settings: &config.backup,
            recipients: crate::encryption::configured_recipients(config)?,
            show_progress,
        },
    )
    .await?;
    if let Some(reason) = m.redis.as_ref().and_then(|d| d.fallback_reason.as_deref()) {
        tracing::warn!(
            "Redis target {}: method auto fell back to keys (SCAN + DUMP + PTTL, not a point-in-time snapshot) because the RDB snapshot failed: {reason}",
            target.name
        );
    }
    Ok(m)
}

/// Compares a live Redis (`--into`, `--into-env` or the target's own server) with a backup.
pub async fn verify(
    config: &Config,
    target: &RedisTarget,
    backup_id: &str,
    into: Option<&String>,
    into_env: Option<&String>,
) -> Result<RedisVerifyReport> {
    let storage = super::setup::open_storage(config)?;
    let manifest = catalog::resolve(storage.as_ref(), &target.name, backup_id).await?;
    redis_backup::details(&manifest)?;
    let endpoint = destination(target, into, into_env)?;
    let mut con = endpoint.connect().await?;
    let now = conn::server_time_ms(&mut con).await?;
    // The sample is drawn from the backup itself, fetched (and its checksum checked) once.
    let mut steps = Steps::default();
    // verify has no --identity: an encrypted backup is opened with [encryption]'s identity.
    let identities = super::setup::identities(config, None)?;
    let staged = restore::fetch(
        storage.as_ref(),
        &manifest,
        identities.as_ref(),
        &crate::backup::default_staging_dir(),
        false,
        &mut steps,
    )
    .await?;
    let (digest, _) =
        restore::read_staged(&manifest, &staged.path, manifest.dump().compression, now).await?;
    drop(staged);
    Ok(redis_verify::verify(
        &mut con,
        &target.name,
        &endpoint.public_url,
        &manifest,
        &digest,
    )
    .await)
}
