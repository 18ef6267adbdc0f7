//! S3-compatible object storage (AWS S3, MinIO, R2, Garage, Ceph) through `object_store`.
//!
//! Objects larger than one part are streamed through a multipart upload with bounded
//! memory (about `part_size x (upload_concurrency + 1)`); a failed upload is aborted so
//! that neither an object nor orphan parts are left behind. Every error names the bucket
//! and the endpoint and says what to fix; none carries a secret.
//!
//! One file per concern: `settings` builds the clients from `[storage.s3]` and the
//! environment, `store` implements the `Storage` trait, `errors` turns `object_store`
//! errors into one-line explanations, `object_lock` probes whether retention is in effect.

mod errors;
mod object_lock;
mod settings;
mod store;
#[cfg(test)]
pub(super) mod testing;

use std::sync::Arc;

use anyhow::{anyhow, Result};
use object_store::aws::AmazonS3;
use object_store::path::Path;

use crate::secret::Secret;
use crate::storage::check_key;
use object_lock::ObjectLock;

const MIB: usize = 1024 * 1024;

/// What error messages may name: never a secret (the secret is kept only to redact it).
#[derive(Clone)]
struct Target {
    bucket: String,
    /// `s3://bucket/prefix`
    location: String,
    endpoint: String,
    region: String,
    credentials: String,
    secret: Option<Secret>,
}

pub struct S3Storage {
    /// Reads, lists, deletes.
    store: Arc<AmazonS3>,
    /// Uploads: `store` plus the Object Lock headers when `object_lock_days` is set.
    writer: Arc<AmazonS3>,
    prefix: String,
    target: Target,
    part_size: usize,
    concurrency: usize,
    lock: Option<ObjectLock>,
    /// `[storage.s3] timeout`: how long one request that carries no object data (HEAD,
    /// LIST page, DELETE, a GET until its first byte) may take, retries included.
    request_timeout: std::time::Duration,
}

impl S3Storage {
    /// The full object name of `key`: `prefix/key`.
    fn full_key(&self, key: &str) -> String {
        join_prefix(&self.prefix, key)
    }

    fn path_of(&self, key: &str) -> Result<Path> {
        check_key(key)?;
        Path::parse(self.full_key(key)).map_err(|e| anyhow!("invalid object key {key:?}: {e}"))
    }

    fn explain(&self, err: object_store::Error, key: Option<&str>) -> anyhow::Error {
        errors::explain(err, &self.target, key)
    }

    /// `request` given `limit` in all (its retries included): a silent endpoint fails the
    /// command in seconds, not after the archiver or a restore waited minutes per file.
    async fn bounded<T>(
        &self,
        limit: std::time::Duration,
        what: &str,
        request: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> Result<object_store::Result<T>> {
        tokio::time::timeout(limit, request).await.map_err(|_| {
            super::mark_unresponsive();
            anyhow!(
                "endpoint {} did not answer within {} for bucket {} ({what}; timeout); hint: check [storage.s3] endpoint and network, or raise timeout in [storage.s3] (default {})",
                self.target.endpoint,
                crate::units::duration(limit),
                self.target.bucket,
                crate::units::duration(settings::DEFAULT_REQUEST_TIMEOUT),
            )
        })
    }
}

fn join_prefix(prefix: &str, key: &str) -> String {
    match (prefix.is_empty(), key.is_empty()) {
        (true, _) => key.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}/{key}"),
    }
}

/// `full` relative to `prefix`; None when it is not below it.
fn strip_prefix<'a>(prefix: &str, full: &'a str) -> Option<&'a str> {
    if prefix.is_empty() {
        return Some(full);
    }
    full.strip_prefix(prefix)?.strip_prefix('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_and_stripped() {
        assert_eq!(join_prefix("", "a/b"), "a/b");
        assert_eq!(join_prefix("p/q", "a/b"), "p/q/a/b");
        assert_eq!(join_prefix("p", ""), "p");
        assert_eq!(strip_prefix("p/q", "p/q/a/b"), Some("a/b"));
        assert_eq!(strip_prefix("p/q", "p/qa/b"), None);
        assert_eq!(strip_prefix("", "a/b"), Some("a/b"));
    }
}
