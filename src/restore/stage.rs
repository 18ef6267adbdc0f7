//! Fetching a backup's objects: each streamed once from storage, hashed while it arrives,
//! and handed on (decompressed or as stored) only when the bytes match the manifest.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::archive;
use crate::backup::catalog;
use crate::backup::manifest::{BackupManifest, StoredObject};
use crate::config::Compression;
use crate::report::{Phase, Steps};
use crate::storage::Storage;
use crate::units;

/// A blocking `Read` over chunks arriving from async code.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Streams one stored object once: hashes what arrives and hands the decompressed bytes to
/// `sink` on a blocking thread. Fails when the bytes do not match the manifest.
pub async fn stream_object<W: Write + Send + 'static>(
    storage: &dyn Storage,
    manifest: &BackupManifest,
    object: &StoredObject,
    sink: W,
    sink_may_stop_early: bool,
) -> Result<u64> {
    let key = catalog::object_key(manifest, &object.file);
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let compression = object.compression;
    let writer = tokio::task::spawn_blocking(move || -> Result<u64> {
        let mut sink = sink;
        let reader = ChannelReader {
            rx,
            current: Bytes::new(),
        };
        let mut decoder = crate::codec::decompressor(compression, reader)?;
        let n = std::io::copy(&mut decoder, &mut sink)?;
        sink.flush()?;
        Ok(n)
    });
    let mut stream = storage
        .get(&key)
        .await
        .with_context(|| format!("cannot fetch {key}"))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut sink_open = true;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("cannot read {key} from storage"))?;
        size += chunk.len() as u64;
        hasher.update(&chunk);
        if sink_open && tx.send(chunk).await.is_err() {
            sink_open = false;
        }
    }
    drop(tx);
    let sha = hex::encode(hasher.finalize());
    if sha != object.sha256 || size != object.size_bytes {
        let _ = writer.await;
        bail!(
            "checksum mismatch for {key}: the manifest says sha256 {} and {} bytes, storage returned sha256 {sha} and {size} bytes: the backup is corrupted or truncated; hint: use another backup (`dr list --target {}`)",
            object.sha256,
            object.size_bytes,
            manifest.target
        );
    }
    match writer.await? {
        Ok(n) => Ok(n),
        Err(_) if sink_may_stop_early => Ok(0),
        Err(e) => Err(e).with_context(|| format!("cannot decompress {key}")),
    }
}

/// A private staging directory (0700), removed on drop whatever happens.
pub fn staging_area(parent: &Path) -> Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("dr-staging-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a staging directory in {}", parent.display()))?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

/// Fetches an object once, checking its SHA-256 while it streams, into a 0600 file:
/// decompressed (a plain archive or SQL file), or as stored when `decompress` is false.
pub async fn stage(
    storage: &dyn Storage,
    manifest: &BackupManifest,
    object: &StoredObject,
    path: &Path,
    decompress: bool,
) -> Result<u64> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create staging file {}", path.display()))?;
    let writer = std::io::BufWriter::with_capacity(1 << 20, file);
    if decompress {
        stream_object(storage, manifest, object, writer, false).await
    } else {
        // Same hash check, no decoding: the bytes are staged as stored.
        let stored = StoredObject {
            compression: Compression::None,
            ..object.clone()
        };
        stream_object(storage, manifest, &stored, writer, false).await
    }
}

/// A dump fetched once and checksum-verified; the staging directory is removed when this
/// is dropped. `compression` is that of the staged file: `None` means a plain archive that
/// pg_restore can seek (needed for --jobs > 1); otherwise the stored bytes, decompressed
/// into pg_restore's stdin, which spares writing the whole archive to disk.
pub struct StagedDump {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub compression: Compression,
}

/// The `fetch` and `archive` steps of every restore.
pub async fn stage_dump(
    storage: &dyn Storage,
    manifest: &BackupManifest,
    pg_restore: &Path,
    staging_parent: &Path,
    seekable: bool,
    steps: &mut Steps,
) -> Result<StagedDump> {
    let dir = staging_area(staging_parent)?;
    let object = manifest.dump();
    let path = dir.path().join(object.role.staged_file_name());
    let compression = if seekable {
        Compression::None
    } else {
        object.compression
    };
    steps
        .run("fetch", Phase::Fetch, async {
            let n = stage(storage, manifest, object, &path, seekable).await?;
            Ok((
                (),
                format!(
                    "{} fetched with SHA-256 verified; {} staged in {}",
                    units::bytes(object.size_bytes),
                    units::bytes(n),
                    staging_parent.display()
                ),
            ))
        })
        .await?;
    let staged = StagedDump {
        dir,
        path,
        compression,
    };
    steps
        .run("archive", Phase::Fetch, async {
            let n = archive::list_staged(pg_restore, &staged).await?;
            Ok(((), format!("pg_restore --list reads {n} entries")))
        })
        .await?;
    Ok(staged)
}
