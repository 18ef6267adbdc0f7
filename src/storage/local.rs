//! A local directory (`file:///path`). Objects are written to `<key>.partial-<pid>-<n>`,
//! fsynced, renamed into place and the directory fsynced: a reader sees the whole object
//! or none of it. Directories are 0700 and files 0600 whatever the umask.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{check_key, list_prefix, ByteStream, ObjectMeta, Storage};

/// Marks objects still being written; never a complete object.
pub const PARTIAL_MARKER: &str = ".partial-";

static PARTIAL_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Removes a temporary file unless it was committed, including when the writing future is
/// dropped midway (Ctrl-C): no partial object outlives its writer.
struct PartialFile {
    path: Option<PathBuf>,
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    pub fn new(root: PathBuf) -> Self {
        LocalStorage { root }
    }

    fn path_of(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

fn create_private_dirs(dir: &Path) -> std::io::Result<()> {
    // Set each new directory's mode explicitly: the umask must not loosen it.
    let mut missing = Vec::new();
    let mut current = Some(dir);
    while let Some(d) = current {
        if d.exists() {
            break;
        }
        missing.push(d.to_path_buf());
        current = d.parent();
    }
    for d in missing.iter().rev() {
        match std::fs::DirBuilder::new().mode(0o700).create(d) {
            Ok(()) => {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))?;
                // A new directory is durable only once its parent's entry is: an object
                // reported stored must survive a power loss (WAL pushes rely on it).
                if let Some(parent) = d.parent() {
                    fsync_dir(parent)?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The local stand-in for an ETag: device, inode and change time. A put renames a new
/// file into place (a new inode); a rewrite in place, `touch` or a restored mtime all move
/// the ctime, which no unprivileged call can set back.
fn version_tag(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{:x}-{:x}-{}.{:09}",
        meta.dev(),
        meta.ino(),
        meta.ctime(),
        meta.ctime_nsec()
    )
}

/// An entry's metadata, through a symlink: an operator who moved a backup (or part of
/// the archive) to another volume and linked it back expects it listed like the rest. A
/// link whose target is gone is an error naming it, never a silently missing backup.
fn followed_metadata(entry: &std::fs::DirEntry) -> Result<std::fs::Metadata> {
    let meta = entry.metadata()?;
    if !meta.file_type().is_symlink() {
        return Ok(meta);
    }
    let path = entry.path();
    std::fs::metadata(&path).map_err(|e| {
        let target = std::fs::read_link(&path)
            .map(|t| t.display().to_string())
            .unwrap_or_else(|_| "?".into());
        anyhow::anyhow!(
            "{} in storage is a symlink to {target}, which cannot be opened ({e}); hint: mount or restore what it points to, or remove the link if that data is gone",
            path.display()
        )
    })
}

fn dir_identity(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl Storage for LocalStorage {
    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }

    async fn put(&self, key: &str, mut data: ByteStream) -> Result<u64> {
        let final_path = self.path_of(key)?;
        let dir = final_path
            .parent()
            .with_context(|| format!("{} names no directory", final_path.display()))?
            .to_path_buf();
        let root = self.root.display().to_string();
        let create_dir = dir.clone();
        tokio::task::spawn_blocking(move || create_private_dirs(&create_dir))
            .await?
            .with_context(|| {
                format!("cannot create directory {} in storage {root}; hint: check that the path exists and is writable by this user", dir.display())
            })?;
        let partial = dir.join(format!(
            "{}{}{}-{}",
            final_path
                .file_name()
                .with_context(|| format!("{} names no file", final_path.display()))?
                .to_string_lossy(),
            PARTIAL_MARKER,
            std::process::id(),
            PARTIAL_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let mut guard = PartialFile { path: None };
        let result: Result<u64> = async {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&partial)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot create {}: {e}; hint: check that the storage directory is writable by this user and its volume is mounted read-write",
                        partial.display()
                    )
                })?;
            guard.path = Some(partial.clone());
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            let mut file = tokio::fs::File::from_std(file);
            let mut written = 0u64;
            while let Some(chunk) = data.next().await {
                let chunk = chunk?;
                file.write_all(&chunk)
                    .await
                    .with_context(|| {
                        format!(
                            "cannot write {} (disk full, quota or file-size limit?); hint: free space on the storage volume or point [storage] url at a larger one; nothing was committed",
                            partial.display()
                        )
                    })?;
                written += chunk.len() as u64;
            }
            file.flush().await?;
            file.sync_all()
                .await
                .with_context(|| format!("cannot fsync {}", partial.display()))?;
            drop(file);
            tokio::fs::rename(&partial, &final_path)
                .await
                .with_context(|| {
                    format!(
                        "cannot rename {} to {}; nothing was committed",
                        partial.display(),
                        final_path.display()
                    )
                })?;
            guard.path = None;
            let d = dir.clone();
            tokio::task::spawn_blocking(move || fsync_dir(&d)).await??;
            Ok(written)
        }
        .await;
        drop(guard);
        result
    }

    async fn put_new(&self, key: &str, data: Bytes) -> Result<bool> {
        let final_path = self.path_of(key)?;
        let dir = final_path
            .parent()
            .with_context(|| format!("{} names no directory", final_path.display()))?
            .to_path_buf();
        let partial = dir.join(format!(
            "{}{}{}-{}",
            final_path
                .file_name()
                .with_context(|| format!("{} names no file", final_path.display()))?
                .to_string_lossy(),
            PARTIAL_MARKER,
            std::process::id(),
            PARTIAL_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        tokio::task::spawn_blocking(move || -> Result<bool> {
            use std::io::Write;
            create_private_dirs(&dir)
                .with_context(|| format!("cannot create directory {}", dir.display()))?;
            let mut guard = PartialFile { path: None };
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&partial)
                .with_context(|| format!("cannot create {}", partial.display()))?;
            guard.path = Some(partial.clone());
            file.write_all(&data)?;
            file.sync_all()
                .with_context(|| format!("cannot fsync {}", partial.display()))?;
            drop(file);
            // A link, unlike a rename, fails when the name is taken.
            let created = match std::fs::hard_link(&partial, &final_path) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                Err(e) => {
                    return Err(anyhow::anyhow!(
                        "cannot link {} to {}: {e}; nothing was committed",
                        partial.display(),
                        final_path.display()
                    ))
                }
            };
            drop(guard);
            fsync_dir(&dir)?;
            Ok(created)
        })
        .await?
    }

    async fn get(&self, key: &str) -> Result<ByteStream> {
        let path = self.path_of(key)?;
        let mut file = tokio::fs::File::open(&path)
            .await
            .with_context(|| format!("cannot open {} in storage", path.display()))?;
        // A directory is a prefix of other keys, never an object.
        if file.metadata().await?.is_dir() {
            anyhow::bail!(
                "cannot open {} in storage: a directory (a prefix of other objects), not an object",
                path.display()
            );
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
        tokio::spawn(async move {
            loop {
                let mut buf = vec![0u8; 1 << 20];
                match file.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.truncate(n);
                        if tx.send(Ok(Bytes::from(buf))).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        break;
                    }
                }
            }
        });
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let path = self.path_of(key)?;
        match tokio::fs::metadata(&path).await {
            // A directory is a prefix of other keys; below an object there is nothing.
            Ok(m) if m.is_dir() => Ok(None),
            Ok(m) => Ok(Some(ObjectMeta {
                key: key.to_string(),
                size: m.len(),
                modified: m.modified()?.into(),
                etag: Some(version_tag(&m)),
            })),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e).with_context(|| format!("cannot stat {}", path.display())),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let root = self.root.clone();
        let prefix = list_prefix(prefix)?.to_string();
        tokio::task::spawn_blocking(move || {
            let start = if prefix.is_empty() {
                root.clone()
            } else {
                root.join(&prefix)
            };
            let mut out = Vec::new();
            // Directories by device and inode: a symlink back up the tree must not list
            // forever.
            let mut listed_dirs = std::collections::HashSet::new();
            if let Ok(meta) = std::fs::metadata(&start) {
                listed_dirs.insert(dir_identity(&meta));
            }
            let mut stack = vec![start];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    // Nothing below a missing directory, nor below an object.
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                        ) =>
                    {
                        continue
                    }
                    Err(e) => {
                        return Err(e).with_context(|| format!("cannot list {}; hint: check that this user may read the storage directory (dr writes it 0700)", dir.display()))
                    }
                };
                for entry in entries {
                    let entry = entry?;
                    let meta = followed_metadata(&entry)?;
                    if meta.is_dir() {
                        if !listed_dirs.insert(dir_identity(&meta)) {
                            anyhow::bail!(
                                "{} is a symlink to a directory listed already (a loop, or a second name for the same backups); hint: replace it with the directory itself, or remove the link",
                                entry.path().display()
                            );
                        }
                        stack.push(entry.path());
                    } else if meta.is_file() {
                        let path = entry.path();
                        // read_dir below root yields paths below root (a link that leads
                        // out of it keeps its own path); anything else is never skipped
                        // silently: an object missing from a listing looks like no backup.
                        let key = path
                            .strip_prefix(&root)
                            .with_context(|| {
                                format!(
                                    "{} was listed outside the storage root {}; hint: report this, and list the directory by hand",
                                    path.display(),
                                    root.display()
                                )
                            })?
                            .to_string_lossy()
                            .into_owned();
                        out.push(ObjectMeta {
                            key,
                            size: meta.len(),
                            modified: meta.modified()?.into(),
                            etag: Some(version_tag(&meta)),
                        });
                    }
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await?
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            // Never committed (a failed put): the directories made for it may be empty.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // A directory is a prefix, and below an object there is nothing: no object to
            // delete either way.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::IsADirectory | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(())
            }
            Err(e) => return Err(e).with_context(|| format!("cannot delete {}", path.display())),
        }
        // Remove directories left empty, up to the root.
        let mut dir = path.parent().map(Path::to_path_buf);
        while let Some(d) = dir {
            if d == self.root || std::fs::remove_dir(&d).is_err() {
                break;
            }
            dir = d.parent().map(Path::to_path_buf);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many creators of one key at once: exactly one wins and its bytes stay (the test S3
    /// server checks If-None-Match before writing, not atomically, so this is local only).
    #[tokio::test]
    async fn racing_creators_of_one_key_leave_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let storage = std::sync::Arc::new(LocalStorage::new(dir.path().to_path_buf()));
        let racers: Vec<_> = (0..8u8)
            .map(|i| {
                let s = storage.clone();
                tokio::spawn(async move { (i, s.put_new("log/1", Bytes::from(vec![i; 64])).await) })
            })
            .collect();
        let mut winners = Vec::new();
        for r in racers {
            let (i, created) = r.await.unwrap();
            if created.unwrap() {
                winners.push(i);
            }
        }
        assert_eq!(winners.len(), 1, "{winners:?}");
        let stored = super::super::get_bytes(storage.as_ref(), "log/1")
            .await
            .unwrap();
        assert_eq!(stored, vec![winners[0]; 64]);
        let left: Vec<_> = std::fs::read_dir(dir.path().join("log")).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left");
    }
}
