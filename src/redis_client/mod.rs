//! Connections from `dr` to Redis targets, shared by checks, verification and backups;
//! and Redis as `dr` speaks it (the files below): endpoints, the replication protocol,
//! SCAN + DUMP, the RDB and keys formats.

pub mod conn;
pub mod keys_format;
pub mod rdb;
pub mod scan;
pub mod sync;

use std::time::Duration;

use anyhow::Result;
use redis::AsyncConnectionConfig;

use crate::config::RedisTarget;
use crate::secret::{redact_url, scrub};

/// How long connecting, and then each command, may take when the target sets no `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a connection to a Redis target; errors name the redacted URL and the fix. Both
/// connecting and every later command are bounded by the target's `timeout`, so a server
/// that accepts and never answers is an error, not a hang.
pub async fn open(target: &RedisTarget) -> Result<redis::aio::MultiplexedConnection> {
    let url = target.resolve_url()?;
    let shown = redact_url(&url);
    let client = redis::Client::open(url.as_str())
        .map_err(|e| anyhow::anyhow!("invalid Redis URL {shown}: {e}"))?;
    let limit = target.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(limit)
        .set_response_timeout(limit);
    let connecting = client.get_multiplexed_async_connection_with_config(&config);
    match tokio::time::timeout(limit, connecting).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) if e.is_timeout() => Err(silent(&shown, limit)),
        Ok(Err(e)) => Err(anyhow::anyhow!(
            "cannot connect to Redis at {shown}: {}; hint: check that redis-server runs there (redis-cli -u URL ping) and the password is right",
            scrub(&e.to_string(), &[])
        )),
        Err(_) => Err(silent(&shown, limit)),
    }
}

fn silent(shown: &str, limit: Duration) -> anyhow::Error {
    anyhow::anyhow!(
        "Redis at {shown} did not answer within {} (timeout); hint: check its load and network, or raise timeout in its [[redis]] table",
        crate::units::duration(limit)
    )
}

/// One field of an `INFO` section (`redis_version:7.0.15` → `7.0.15`).
pub fn info_field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}
