//! `restore_command`: one archived WAL file out of storage, decompressed, its SHA-256
//! checked against its name before it is put where PostgreSQL expects it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{ArchivedFile, WalName};
use crate::encryption::Identities;
use crate::storage::Storage;

#[derive(Debug, Clone, Serialize)]
pub struct FetchOutcome {
    pub name: String,
    pub key: String,
    pub sha256: String,
    pub raw_bytes: u64,
}

/// The archived copy of `wal` in the archive at `prefix`, if any. Two different copies
/// under one name (two pushes that raced) are an error: nobody can tell which is right.
pub async fn find(
    storage: &dyn Storage,
    prefix: &str,
    wal: &WalName,
) -> Result<Option<ArchivedFile>> {
    let dir = format!("{prefix}/{}/", wal.directory());
    let listed = storage
        .list(&dir)
        .await
        .with_context(|| format!("cannot list {dir} in {}", storage.describe()))?;
    let mut copies: Vec<ArchivedFile> = super::archived_files(listed)
        .into_iter()
        .filter(|a| a.wal.name == wal.name)
        .collect();
    copies.dedup_by(|a, b| a.sha256 == b.sha256);
    match copies.len() {
        0 => Ok(None),
        1 => Ok(copies.pop()),
        _ => bail!(
            "{} is archived twice with different content ({}); refusing to guess which is right; hint: compare the copies and remove the wrong one from storage",
            wal.name,
            copies.iter().map(|c| c.key.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Removes a half-written destination unless it was committed.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A blocking reader fed from async code through a bounded channel.
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl std::io::Read for ChunkReader {
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

/// Downloads `file`, decrypts (with `identities`) and decompresses it into a temporary
/// file beside `dest`, checks the raw SHA-256 against the object's name, and only then
/// renames it to `dest`.
pub async fn fetch_to(
    storage: &dyn Storage,
    file: &ArchivedFile,
    dest: &Path,
    identities: Option<&Arc<Identities>>,
) -> Result<FetchOutcome> {
    let identities = match (file.encrypted, identities) {
        (false, _) => None,
        (true, Some(i)) => Some(i.clone()),
        (true, None) => bail!(
            "{} is encrypted and no age identity is configured here; hint: set [encryption] identity_file or identity_env on this host, or pass --identity FILE",
            file.key
        ),
    };
    let dest_dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dest_name = dest
        .file_name()
        .ok_or_else(|| anyhow!("{} names no file", dest.display()))?
        .to_string_lossy()
        .into_owned();
    let temp_path = dest_dir.join(format!(".{dest_name}.dr-fetch-{}", std::process::id()));
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp_path)
        .with_context(|| format!("cannot write {}", temp_path.display()))?;
    let mut guard = TempFile(Some(temp_path.clone()));

    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let compression = file.compression;
    let writer = tokio::task::spawn_blocking(move || -> Result<(String, u64)> {
        let reader = ChunkReader {
            rx,
            current: Bytes::new(),
        };
        let plain: Box<dyn Read> = match &identities {
            Some(ids) => Box::new(ids.decrypt(
                reader,
                &["the [encryption] recipients of the host that pushed it".to_string()],
            )?),
            None => Box::new(reader),
        };
        let mut decoder = crate::codec::decompressor(compression, plain)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = match decoder.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("cannot decompress"),
            };
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .context("cannot write the fetched file")?;
            total += n as u64;
        }
        out.flush().context("cannot write the fetched file")?;
        Ok((hex::encode(hasher.finalize()), total))
    });
    let mut stream = storage
        .get(&file.key)
        .await
        .with_context(|| format!("cannot fetch {} from {}", file.key, storage.describe()))?;
    let mut read_error = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                if tx.send(chunk).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                read_error = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let written = writer.await?;
    if let Some(e) = read_error {
        return Err(anyhow!(e))
            .with_context(|| format!("cannot read {} from {}", file.key, storage.describe()));
    }
    let (sha, raw_bytes) = written.with_context(|| format!("{} is damaged", file.key))?;
    if sha != file.sha256 {
        bail!(
            "{} is damaged: it decompresses to sha256 {sha}, its name says {}; it was not served; hint: the archive copy is corrupt: take a new base backup (`dr backup --physical`) so recovery does not need it",
            file.key,
            file.sha256
        );
    }
    std::fs::rename(&temp_path, dest)
        .with_context(|| format!("cannot move the fetched file to {}", dest.display()))?;
    guard.0 = None;
    Ok(FetchOutcome {
        name: file.wal.name.clone(),
        key: file.key.clone(),
        sha256: sha,
        raw_bytes,
    })
}
