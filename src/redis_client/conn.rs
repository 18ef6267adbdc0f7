//! Reaching a Redis server: its address and credentials (never printed), connections with
//! timeouts, and the facts backups depend on: version, RDB version, keyspace, clock.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use redis::aio::MultiplexedConnection;

use crate::secret::{redact_url, Secret};

/// A Redis server as a URL names it.
#[derive(Clone)]
pub struct RedisEndpoint {
    url: Secret,
    /// The URL with its password replaced by `***`.
    pub public_url: String,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub tls: bool,
    /// How long connecting, and then each reply, may take (the target's `timeout`,
    /// default 10s).
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for RedisEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.public_url)
    }
}

impl RedisEndpoint {
    pub fn parse(url: &str) -> Result<Self> {
        use redis::IntoConnectionInfo;
        let public_url = redact_url(url);
        let info = url.into_connection_info().map_err(|e| {
            anyhow!("invalid Redis URL {public_url}: {e}; hint: write it like redis://[user:password@]host:6379[/db]")
        })?;
        let (host, port, tls) = match &info.addr {
            redis::ConnectionAddr::Tcp(h, p) => (h.clone(), *p, false),
            redis::ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), *port, true),
            redis::ConnectionAddr::Unix(_) => bail!(
                "Redis URL {public_url} names a Unix socket; hint: dr backs up Redis over TCP: use redis://host:port"
            ),
        };
        Ok(RedisEndpoint {
            url: Secret::new(url),
            public_url,
            host,
            port,
            username: info.redis.username.clone(),
            password: info.redis.password.clone().map(Secret::new),
            tls,
            connect_timeout: crate::redis_client::DEFAULT_TIMEOUT,
        })
    }

    /// The same endpoint with a target's `timeout` for connecting.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        if let Some(t) = timeout {
            self.connect_timeout = t;
        }
        self
    }

    /// The same server with other credentials (a sandbox's), for messages and tests.
    pub fn url(&self) -> &str {
        self.url.expose()
    }

    /// A connection whose every reply must arrive within `response_timeout`.
    pub async fn connect_with(&self, response_timeout: Duration) -> Result<MultiplexedConnection> {
        if self.tls {
            bail!(
                "{} uses TLS (rediss://), which this dr build cannot speak; hint: reach Redis through a TLS tunnel (stunnel) on loopback and use redis://",
                self.public_url
            );
        }
        let client = redis::Client::open(self.url.expose())
            .map_err(|e| anyhow!("invalid Redis URL {}: {e}", self.public_url))?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(self.connect_timeout)
            .set_response_timeout(response_timeout);
        tokio::time::timeout(
            self.connect_timeout,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| {
            anyhow!(
                "Redis at {} did not answer within {} (timeout); hint: check its load and network, or raise timeout in its [[redis]] table",
                self.public_url,
                crate::units::duration(self.connect_timeout)
            )
        })?
            .map_err(|e| {
                anyhow!(
                    "cannot connect to Redis at {}: {}; hint: check that redis-server runs there (redis-cli -u URL ping) and the password is right",
                    self.public_url,
                    crate::secret::scrub(&e.to_string(), &[])
                )
            })
    }

    /// Every reply, data pipelines included, must come within the target's `timeout`: a
    /// stalled server (`DEBUG SLEEP`, a stopped process, a full network buffer) fails the
    /// operation then, instead of holding a backup or a restore for minutes.
    pub async fn connect(&self) -> Result<MultiplexedConnection> {
        self.connect_with(self.connect_timeout).await
    }
}

/// A server's identity, as `INFO server` tells it.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub version: String,
    pub major: u32,
}

pub async fn server_info(con: &mut MultiplexedConnection) -> Result<ServerInfo> {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(con)
        .await
        .map_err(|e| anyhow!("INFO server failed: {e}"))?;
    let version = crate::redis_client::info_field(&info, "redis_version")
        .ok_or_else(|| anyhow!("INFO server does not report redis_version"))?
        .to_string();
    Ok(ServerInfo {
        major: version_parts(&version).0,
        version,
    })
}

fn version_parts(version: &str) -> (u32, u32, u32) {
    let mut parts = version.split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or(0)
    });
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

/// The newest RDB version a Redis of this version loads (from the Redis release history).
pub fn loads_rdb_up_to(redis_version: &str) -> u16 {
    match version_parts(redis_version) {
        (0..=2, _, _) | (3, 0..=1, _) => 6,
        (3, _, _) => 7,
        (4, _, _) => 8,
        (5 | 6, _, _) => 9,
        (7, 0..=1, _) => 10,
        (7, 2..=3, _) => 11,
        _ => 12,
    }
}

/// Whether a destination can load payloads of `rdb_version` taken from `source_version`: a
/// server loads what a server of its own version or older wrote.
pub fn can_load(destination_version: &str, source_version: &str, rdb_version: u16) -> bool {
    version_parts(destination_version) >= version_parts(source_version)
        || loads_rdb_up_to(destination_version) >= rdb_version
}

/// Keys per database, from `INFO keyspace`: db -> (keys, expires).
pub fn parse_keyspace(info: &str) -> BTreeMap<u32, (u64, u64)> {
    let mut out = BTreeMap::new();
    for line in info.lines() {
        let Some((db, fields)) = line.trim().split_once(':') else {
            continue;
        };
        let Some(Ok(db)) = db.strip_prefix("db").map(str::parse::<u32>) else {
            continue;
        };
        let field = |name: &str| {
            fields
                .split(',')
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('=')?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        out.insert(db, (field("keys"), field("expires")));
    }
    out
}

/// A request went unanswered (a stalled or lost server), as opposed to refused: nothing
/// else will get an answer either, so no fallback is tried.
#[derive(Debug)]
pub struct Unanswered(pub String);

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unanswered {}

pub async fn keyspace(con: &mut MultiplexedConnection) -> Result<BTreeMap<u32, (u64, u64)>> {
    let info: String = redis::cmd("INFO")
        .arg("keyspace")
        .query_async(con)
        .await
        .map_err(|e| {
            if e.is_timeout() || e.is_io_error() || e.is_connection_dropped() {
                anyhow!(Unanswered(format!("INFO keyspace failed: {e}")))
            } else {
                anyhow!("INFO keyspace failed: {e}")
            }
        })?;
    Ok(parse_keyspace(&info))
}

/// The server's clock in Unix milliseconds: TTLs are the server's, not this host's.
pub async fn server_time_ms(con: &mut MultiplexedConnection) -> Result<i64> {
    let (secs, micros): (i64, i64) = redis::cmd("TIME")
        .query_async(con)
        .await
        .map_err(|e| anyhow!("TIME failed: {e}"))?;
    Ok(secs * 1000 + micros / 1000)
}

/// A server error's text without the client library's framing.
pub fn server_error_text(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (None, Some(detail)) => detail.to_string(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_lines() {
        let info =
            "# Keyspace\r\ndb0:keys=12,expires=3,avg_ttl=100\r\ndb5:keys=1,expires=0,avg_ttl=0\r\n";
        let k = parse_keyspace(info);
        assert_eq!(k[&0], (12, 3));
        assert_eq!(k[&5], (1, 0));
        assert_eq!(k.len(), 2);
        assert!(parse_keyspace("# Keyspace\r\n").is_empty());
    }

    #[test]
    fn rdb_versions_by_release() {
        assert_eq!(loads_rdb_up_to("6.2.14"), 9);
        assert_eq!(loads_rdb_up_to("7.0.15"), 10);
        assert_eq!(loads_rdb_up_to("7.2.4"), 11);
        assert_eq!(loads_rdb_up_to("7.4.1"), 12);
        assert!(!can_load("6.2.14", "7.0.15", 10));
        assert!(can_load("7.2.4", "7.0.15", 10));
        assert!(can_load("7.0.15", "7.0.15", 10));
        // A newer release than this table knows still loads what its own version wrote.
        assert!(can_load("9.1.0", "9.1.0", 14));
    }

    #[test]
    fn endpoints_hide_passwords() {
        let e = RedisEndpoint::parse("redis://:s3cret-pw@127.0.0.1:6380/2").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 6380));
        assert!(!e.public_url.contains("s3cret"));
        assert!(!format!("{e:?}").contains("s3cret"));
        assert_eq!(e.password.as_ref().unwrap().expose(), "s3cret-pw");
    }
}
