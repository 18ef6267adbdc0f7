//! `[storage]` and `[storage.s3]`: where backups live and how the S3 client behaves.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use serde::Deserialize;

use super::opt_duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub url: StorageUrl,
    pub s3: Option<S3Config>,
}

/// A parsed `[storage] url`; it prints as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum StorageUrl {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl StorageUrl {
    pub fn parse(url: &str) -> Result<StorageUrl, String> {
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "{url:?} must be an absolute path such as file:///var/backups/dr"
                ));
            }
            return Ok(StorageUrl::Local(path.into()));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!(
                    "{url:?} names no bucket; write s3://bucket/optional/prefix"
                ));
            }
            return Ok(StorageUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        Err(format!(
            "{url:?} is not a supported storage URL; use file:///absolute/path or s3://bucket/prefix"
        ))
    }
}

impl TryFrom<String> for StorageUrl {
    type Error = String;
    fn try_from(url: String) -> Result<Self, String> {
        StorageUrl::parse(&url)
    }
}

impl std::fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageUrl::Local(path) => write!(f, "file://{}", path.display()),
            StorageUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StorageUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint of a non-AWS store (MinIO, R2, Garage, Ceph); AWS when absent.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Plain HTTP: only for a store on loopback or a private test network.
    #[serde(default)]
    pub allow_http: bool,
    pub access_key_id_env: Option<String>,
    pub secret_access_key_env: Option<String>,
    /// `https://bucket.endpoint/key` instead of `https://endpoint/bucket/key`.
    #[serde(default)]
    pub virtual_hosted_style: bool,
    /// Parts of a multipart upload in flight at once (memory ~ parts x part size).
    pub upload_concurrency: Option<usize>,
    /// Size of one multipart part, in MiB.
    pub part_size_mib: Option<usize>,
    /// S3 Object Lock retention, in days, set on every uploaded object.
    pub object_lock_days: Option<u32>,
    /// How long one read (or the upload of one part) may wait for the store; default 60s
    /// plus 10s per MiB of part size.
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
}

impl S3Config {
    pub const DEFAULT_PART_MIB: usize = 8;
    pub const MIN_PART_MIB: usize = 5;
    pub const MAX_PART_MIB: usize = 5 * 1024;
    pub const DEFAULT_CONCURRENCY: usize = 4;
    pub const MAX_CONCURRENCY: usize = 64;

    /// The first setting out of range, as (key, message with its fix).
    pub(super) fn problem(&self) -> Option<(&'static str, String)> {
        if let Some(part) = self.part_size_mib {
            if !(Self::MIN_PART_MIB..=Self::MAX_PART_MIB).contains(&part) {
                return Some(("part_size_mib", format!(
                    "part_size_mib = {part} is out of range; hint: S3 parts must be {} to {} MiB (default {})",
                    Self::MIN_PART_MIB, Self::MAX_PART_MIB, Self::DEFAULT_PART_MIB
                )));
            }
        }
        if let Some(n) = self.upload_concurrency {
            if !(1..=Self::MAX_CONCURRENCY).contains(&n) {
                return Some(("upload_concurrency", format!(
                    "upload_concurrency = {n} is out of range; hint: use 1 to {} (default {}); memory is about part_size_mib x (upload_concurrency + 1)",
                    Self::MAX_CONCURRENCY, Self::DEFAULT_CONCURRENCY
                )));
            }
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Some((
                "timeout",
                "timeout = 0 lets no request finish; hint: set a duration such as \"60s\", or remove the key".into(),
            ));
        }
        if self.object_lock_days == Some(0) {
            return Some((
                "object_lock_days",
                "object_lock_days = 0 locks nothing; hint: set at least 1, or remove the key"
                    .into(),
            ));
        }
        if let Some(e) = self
            .endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            if !e.starts_with("https://") && !e.starts_with("http://") {
                return Some((
                    "endpoint",
                    format!(
                    "endpoint = {e:?} has no scheme; hint: write endpoint = \"https://host:port\""
                ),
                ));
            }
            if url::Url::parse(e).is_err() {
                return Some((
                    "endpoint",
                    format!(
                    "endpoint = {e:?} is not a URL; hint: write endpoint = \"https://host:port\""
                ),
                ));
            }
            if e.starts_with("http://") && !self.allow_http {
                return Some(("endpoint", format!(
                    "endpoint {e} is plain http, which is refused by default; hint: set allow_http = true in [storage.s3] (loopback or a private network only) or use https"
                )));
            }
        }
        if self.access_key_id_env.is_some() != self.secret_access_key_env.is_some() {
            return Some(("access_key_id_env", "sets only one of access_key_id_env and secret_access_key_env; hint: set both, or neither to use the standard AWS_ environment variables".into()));
        }
        if self.region.as_deref().is_some_and(|r| r.trim().is_empty()) {
            return Some((
                "region",
                "region is empty; hint: remove the key or name the region (us-east-1)".into(),
            ));
        }
        None
    }
}
