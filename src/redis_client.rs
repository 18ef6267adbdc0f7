//! Connections from `dr` to Redis targets, shared by checks, verification and backups.

use anyhow::Result;

use crate::config::RedisTarget;
use crate::secret::{redact_url, scrub};

/// Opens a connection to a Redis target; errors name the redacted URL and the fix.
pub async fn open(target: &RedisTarget) -> Result<redis::aio::MultiplexedConnection> {
    let url = target.resolve_url()?;
    let shown = redact_url(&url);
    let client = redis::Client::open(url.as_str())
        .map_err(|e| anyhow::anyhow!("invalid Redis URL {shown}: {e}"))?;
    client.get_multiplexed_async_connection().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot connect to Redis at {shown}: {}; hint: check that redis-server runs there (redis-cli -u URL ping) and the password is right",
            scrub(&e.to_string(), &[])
        )
    })
}

/// One field of an `INFO` section (`redis_version:7.0.15` → `7.0.15`).
pub fn info_field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}
