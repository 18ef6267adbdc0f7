//! Incremental base backups (PostgreSQL 17+, `dr backup --physical --incremental`):
//! `pg_basebackup --incremental=FILE` sends only the blocks changed since the backup whose
//! `backup_manifest` FILE is, which the server finds through its WAL summaries
//! (`summarize_wal`). Every physical backup stores its `backup_manifest` as an object of
//! its own, so a child reads its parent's without fetching the parent's tar.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::catalog;
use super::manifest::{BackupKind, BackupManifest, ObjectRole, StoredObject};
use crate::codec::{self, PipelineSettings};
use crate::encryption::Identities;
use crate::error::usage;
use crate::storage::{ByteStream, Storage};

/// The first PostgreSQL major with `pg_basebackup --incremental`.
pub const FIRST_MAJOR: u32 = 17;

/// What the server must offer before an incremental backup is tried: PostgreSQL 17 or
/// later, and WAL summaries (`summarize_wal`), without which the server cannot tell which
/// blocks changed.
pub fn require_support(
    target: &str,
    server_major: u32,
    server_version: &str,
    summarize_wal: Option<bool>,
) -> Result<()> {
    if server_major < FIRST_MAJOR {
        return Err(usage(format!(
            "--incremental needs PostgreSQL {FIRST_MAJOR} or later, and target {target} runs PostgreSQL {server_major} ({server_version}); nothing was stored; hint: take a full `dr backup --physical --target {target}`, or upgrade the server to {FIRST_MAJOR}+"
        )));
    }
    if summarize_wal != Some(true) {
        return Err(usage(format!(
            "summarize_wal is off on target {target}: without WAL summaries the server cannot send only the changed blocks; nothing was stored; hint: ALTER SYSTEM SET summarize_wal = on; SELECT pg_reload_conf(); then take a full `dr backup --physical --target {target}` to build on"
        )));
    }
    Ok(())
}

/// The newest complete base backup of the cluster and timeline an incremental builds on;
/// none, or one without its `backup_manifest` object, is a refusal.
pub async fn choose_parent(
    storage: &dyn Storage,
    target: &str,
    system_id: u64,
    timeline: u32,
) -> Result<BackupManifest> {
    let (all, _) = catalog::list_complete(storage, Some(target)).await?;
    let now = chrono::Utc::now();
    let parent = all
        .into_iter()
        .filter(|m| m.kind == BackupKind::Regular && !catalog::is_future_dated(m, now))
        .filter(|m| {
            m.physical.as_ref().is_some_and(|p| {
                p.system_identifier == system_id.to_string() && p.timeline == timeline
            })
        })
        .max_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    let Some(parent) = parent else {
        return Err(usage(format!(
            "target {target} has no complete base backup of cluster {system_id} on timeline {timeline} in {} for an incremental to build on; nothing was stored; hint: take a full `dr backup --physical --target {target}` first",
            storage.describe()
        )));
    };
    if parent.backup_manifest().is_none() {
        return Err(usage(format!(
            "the newest base backup of {target}, {}, was taken without storing its backup_manifest on its own (by an older dr), so no incremental can build on it; nothing was stored; hint: take a full `dr backup --physical --target {target}`",
            parent.id
        )));
    }
    Ok(parent)
}

/// The ids a child of `parent` depends on, the full backup first and `parent` last.
pub fn chain_of_child(parent: &BackupManifest) -> Vec<String> {
    let mut chain = parent
        .physical
        .as_ref()
        .map(|p| p.chain.clone())
        .unwrap_or_default();
    chain.push(parent.id.clone());
    chain
}

/// Fetches `parent`'s `backup_manifest` into `dest`: its stored bytes checked against the
/// manifest's SHA-256, then decrypted (with `identities`) and decompressed.
pub async fn fetch_backup_manifest(
    storage: &dyn Storage,
    parent: &BackupManifest,
    identities: Option<&Arc<Identities>>,
    dest: &Path,
) -> Result<()> {
    let object = parent
        .backup_manifest()
        .ok_or_else(|| anyhow!("backup {} stores no backup_manifest", parent.id))?
        .clone();
    let key = catalog::object_key(parent, &object.file);
    let opening = match (&parent.encryption, identities) {
        (None, _) => None,
        (Some(_), Some(i)) => Some(i.clone()),
        (Some(_), None) => {
            return Err(usage(format!(
                "the parent backup {} is encrypted, and reading its backup_manifest for an incremental needs an identity, which is not configured here; nothing was stored; hint: set [encryption] identity_file (or identity_env) on this host, or take a full `dr backup --physical`",
                parent.id
            )))
        }
    };
    let stored = dest.with_extension("stored");
    let mut stream = storage
        .get(&key)
        .await
        .with_context(|| format!("cannot fetch {key}"))?;
    let mut file = std::fs::File::create(&stored)
        .with_context(|| format!("cannot create {}", stored.display()))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("cannot read {key}"))?;
        size += chunk.len() as u64;
        if size > object.size_bytes {
            break;
        }
        hasher.update(&chunk);
        file.write_all(&chunk)?;
    }
    drop(file);
    let sha = hex::encode(hasher.finalize());
    if sha != object.sha256 || size != object.size_bytes {
        anyhow::bail!(
            "checksum mismatch for {key} (the backup_manifest of parent {}): the manifest says sha256 {} and {} bytes, storage holds sha256 {sha} and {size} bytes; nothing was stored; hint: take a full `dr backup --physical --target {}`",
            parent.id,
            object.sha256,
            object.size_bytes,
            parent.target
        );
    }
    let (compression, made_for, dest) = (
        object.compression,
        parent.recipients.clone(),
        dest.to_path_buf(),
    );
    tokio::task::spawn_blocking(move || -> Result<()> {
        let input = std::fs::File::open(&stored)?;
        let plain: Box<dyn std::io::Read> = match opening {
            Some(i) => Box::new(i.decrypt(input, &made_for)?),
            None => Box::new(input),
        };
        let mut decoded = codec::decompressor(compression, plain)?;
        let mut out = std::fs::File::create(&dest)
            .with_context(|| format!("cannot create {}", dest.display()))?;
        std::io::copy(&mut decoded, &mut out)
            .context("cannot decode the parent's backup_manifest")?;
        out.sync_all()?;
        let _ = std::fs::remove_file(&stored);
        Ok(())
    })
    .await?
}

/// Stores the local file `path` as object `file` of a backup (compressed, and encrypted
/// when configured, like the backup's other objects).
pub async fn store_file(
    storage: &dyn Storage,
    key: &str,
    file: String,
    path: &Path,
    pipeline: &PipelineSettings,
) -> Result<StoredObject> {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
    let (path, pipeline) = (path.to_path_buf(), pipeline.clone());
    let producer = tokio::task::spawn_blocking(move || -> Result<codec::Encoded> {
        let input = std::fs::File::open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let result = codec::compress_into(input, tx.clone(), &pipeline, None, None);
        if let Err(e) = &result {
            // The writer must see the failure before the stream ends, so it commits nothing.
            let _ = tx.blocking_send(Err(std::io::Error::other(format!("{e:#}"))));
        }
        result
    });
    let data: ByteStream = Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let (stored, produced) = tokio::join!(storage.put(key, data), producer);
    let encoded = produced.map_err(|e| anyhow!("compression thread failed: {e}"))??;
    stored.with_context(|| format!("cannot store {key}"))?;
    Ok(StoredObject::from_encoded(
        ObjectRole::BackupManifest,
        file,
        encoded,
    ))
}
