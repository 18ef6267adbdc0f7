//! Where backups live: one small async trait, a local-directory backend and an
//! S3-compatible backend. Callers never know which one they talk to.
//!
//! The contract every backend keeps: `put` makes an object visible all at once or not at
//! all (temporary name + rename locally, a completed multipart upload on S3); a failed
//! `put` leaves nothing behind under the final key. The methods of `Storage` spell out the
//! rest; `contract.rs` holds the test suite that every backend passes.

#[cfg(test)]
mod contract;
pub mod local;
pub mod marker;
pub mod s3;
/// The s3s-fs server of the integration tests, shared so that there is one copy of it.
#[cfg(test)]
#[path = "../../tests/support/s3.rs"]
mod s3_test_server;

use std::pin::Pin;

use anyhow::{anyhow, bail, Result};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::Stream;

use crate::config::StorageConfig;

pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Key relative to the storage root, `/`-separated.
    pub key: String,
    pub size: u64,
    pub modified: DateTime<Utc>,
    /// What changes whenever the object's bytes may have: the ETag on S3 (a new one with
    /// every upload); locally the inode and change time (ctime), which a rewrite in place,
    /// a replacement or an mtime set back by hand all move. None when the backend has none.
    pub etag: Option<String>,
}

impl ObjectMeta {
    /// Whether `other` is the same stored version of the object: same size, modification
    /// time and ETag. Any difference means the bytes may have changed since.
    pub fn same_version(&self, other: &ObjectMeta) -> bool {
        self.size == other.size && self.modified == other.modified && self.etag == other.etag
    }
}

#[async_trait]
pub trait Storage: Send + Sync {
    /// The storage location, safe to print (no secret).
    fn describe(&self) -> String;
    /// Streams `data` into `key` and returns the bytes stored. The object becomes visible
    /// only once complete, replacing any object under `key` whole. When the stream yields
    /// an error, or the future is dropped, nothing new shows under `key` and an object
    /// already there stays as it was. `key` must pass [`check_key`].
    async fn put(&self, key: &str, data: ByteStream) -> Result<u64>;
    /// Stores the small object `data` under `key` only when no object is there; `false`,
    /// and nothing changed, when one is. Atomic against other writers (a hard link
    /// locally, `If-None-Match: *` on S3): the evidence log's records take their sequence
    /// numbers with it.
    async fn put_new(&self, key: &str, data: Bytes) -> Result<bool>;
    /// The object under `key`; an error naming `key` when there is none.
    async fn get(&self, key: &str) -> Result<ByteStream>;
    /// None when there is no object under `key`; a prefix of other keys is no object.
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>>;
    /// Every object below `prefix` (recursive), sorted by key. A prefix is whole segments
    /// (`a` lists `a/1` and `a/b/2`, not `ab/3`), its outer slashes ignored; `""` lists
    /// everything. An unfinished `put` never shows under its key, but the local backend
    /// lists its temporary file (`local::PARTIAL_MARKER`) so that `prune` can sweep those
    /// of a killed process.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;
    /// Deleting a missing object (or a prefix) is not an error.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Backend-specific readiness findings beyond read/write (e.g. S3 Object Lock).
    async fn capabilities_report(&self) -> Option<Result<String>> {
        None
    }
}

/// Set once a storage request of this process ran out of time: the storage is not
/// answering, and work that would only wait on it again (recording the failed run in the
/// evidence log) is skipped rather than doubling the wait.
static UNRESPONSIVE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn mark_unresponsive() {
    UNRESPONSIVE.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether a storage request of this process ran out of time.
pub fn was_unresponsive() -> bool {
    UNRESPONSIVE.load(std::sync::atomic::Ordering::Relaxed)
}

pub use crate::config::StorageUrl;

/// Checks that `key` names an object below the storage root: `/`-separated segments, none
/// of them empty, `.` or `..`, and no control character. Every backend accepts exactly
/// these keys, so that no key reaches outside the root or means two objects.
pub fn check_key(key: &str) -> Result<()> {
    let bad_segment = key
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..");
    if bad_segment || key.chars().any(char::is_control) {
        bail!("invalid object key {key:?}; hint: {KEY_RULE}");
    }
    Ok(())
}

/// A list prefix without its outer slashes, checked like a key; empty lists everything.
pub fn list_prefix(prefix: &str) -> Result<&str> {
    let trimmed = prefix.trim_matches('/');
    if !trimmed.is_empty() && check_key(trimmed).is_err() {
        return Err(anyhow!("invalid list prefix {prefix:?}; hint: {KEY_RULE}"));
    }
    Ok(trimmed)
}

const KEY_RULE: &str =
    "a key is names separated by single slashes, with no . or .. segment and no control character";

/// Opens the configured storage.
pub fn open(config: &StorageConfig) -> Result<Box<dyn Storage>> {
    match &config.url {
        StorageUrl::Local(path) => Ok(Box::new(local::LocalStorage::new(path.clone()))),
        StorageUrl::S3 { bucket, prefix } => Ok(Box::new(s3::S3Storage::new(
            bucket.clone(),
            prefix.clone(),
            config.s3.clone().unwrap_or_default(),
        )?)),
    }
}

/// Reads a whole (small) object into memory: manifests and reports only.
pub async fn get_bytes(storage: &dyn Storage, key: &str) -> Result<Vec<u8>> {
    use futures::StreamExt;
    let mut stream = storage.get(key).await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Stores a small in-memory object (manifest, report, probe).
pub async fn put_bytes(storage: &dyn Storage, key: &str, data: Vec<u8>) -> Result<u64> {
    let chunk: std::io::Result<Bytes> = Ok(Bytes::from(data));
    storage
        .put(key, Box::pin(futures::stream::iter([chunk])))
        .await
}
