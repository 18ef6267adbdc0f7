//! Fetching a backup's objects: each streamed once from storage, hashed while it arrives,
//! and handed on (decompressed or as stored) only when the bytes match the manifest.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::offsets::{self, ArchiveRewriter, TocOffsets};
use crate::backup::catalog;
use crate::backup::manifest::{BackupManifest, StoredObject};
use crate::codec::ChannelReader;
use crate::config::Compression;
use crate::encryption::{HashingReader, Identities};
use crate::error::usage;
use crate::leftovers;
use crate::storage::Storage;
use crate::units;

/// How an encrypted object is opened: the identity, the keys it was made for (for the
/// message when the identity is wrong), and the plaintext's expected hash and size.
struct Opening {
    identities: Arc<Identities>,
    made_for: Vec<String>,
    sha256: String,
    bytes: u64,
}

/// What it takes to read the objects of `manifest`: nothing for a plain backup, an
/// identity for an encrypted one (its absence is a usage error naming the recipients).
fn opening_for(
    manifest: &BackupManifest,
    object: &StoredObject,
    identities: Option<&Arc<Identities>>,
) -> Result<Option<Opening>> {
    if manifest.encryption.is_none() {
        return Ok(None);
    }
    let Some(identities) = identities else {
        return Err(usage(format!(
            "backup {} is encrypted (age, for {}) and no identity is configured on this host; hint: pass --identity FILE, or set [encryption] identity_file or identity_env",
            manifest.id,
            manifest.recipients.join(", ")
        )));
    };
    let opening = Opening {
        identities: identities.clone(),
        made_for: manifest.recipients.clone(),
        sha256: object.plaintext_sha256.clone().unwrap_or_default(),
        bytes: object.plaintext_bytes.unwrap_or_default(),
    };
    Ok(Some(opening))
}

impl Opening {
    /// The decrypted stream, checked against the plaintext hash at its end.
    fn open(self, input: Box<dyn Read + Send>) -> Result<Box<dyn Read + Send>> {
        let decrypted = self.identities.decrypt(input, &self.made_for)?;
        Ok(Box::new(HashingReader::new(
            decrypted,
            self.sha256,
            self.bytes,
        )))
    }
}

/// Streams one stored object once: hashes what arrives and hands the decrypted and
/// decompressed bytes to `sink` on a blocking thread. Fails when the bytes do not match
/// the manifest.
pub async fn stream_object<W: Write + Send + 'static>(
    storage: &dyn Storage,
    manifest: &BackupManifest,
    object: &StoredObject,
    identities: Option<&Arc<Identities>>,
    sink: W,
    sink_may_stop_early: bool,
) -> Result<u64> {
    let consume = move |decoded: &mut dyn Read| -> Result<u64> {
        let mut sink = UntilClosed {
            inner: sink,
            may_close: sink_may_stop_early,
            closed: false,
        };
        let n = std::io::copy(decoded, &mut sink)?;
        sink.flush()?;
        Ok(n)
    };
    stream_object_with(storage, manifest, object, identities, consume).await
}

/// A sink that may stop reading early (`pg_restore --list` once it has read the table of
/// contents): the rest of the object is still read to its end, so the plaintext hash of an
/// encrypted object and the decompressor's own checks see every byte (`validate` would
/// otherwise call VALID a dump that decrypts to bytes other than the backup's).
struct UntilClosed<W> {
    inner: W,
    may_close: bool,
    closed: bool,
}

impl<W: Write> Write for UntilClosed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.closed {
            match self.inner.write(buf) {
                Err(e) if self.may_close && e.kind() == std::io::ErrorKind::BrokenPipe => {
                    self.closed = true
                }
                other => return other,
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.closed {
            return Ok(());
        }
        match self.inner.flush() {
            Err(e) if self.may_close && e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }
}

/// [`stream_object`] with the decoded bytes read by `consume` (on the blocking thread),
/// which returns how many it took.
pub async fn stream_object_with<F>(
    storage: &dyn Storage,
    manifest: &BackupManifest,
    object: &StoredObject,
    identities: Option<&Arc<Identities>>,
    consume: F,
) -> Result<u64>
where
    F: FnOnce(&mut dyn Read) -> Result<u64> + Send + 'static,
{
    let key = catalog::object_key(manifest, &object.file);
    let open = opening_for(manifest, object, identities)?;
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let compression = object.compression;
    let writer = tokio::task::spawn_blocking(move || -> Result<u64> {
        let reader: Box<dyn Read + Send> = Box::new(ChannelReader::new(rx));
        let reader = match open {
            Some(opening) => opening.open(reader)?,
            None => reader,
        };
        let mut decoder = crate::codec::decompressor(compression, reader)?;
        consume(&mut decoder)
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
        if size > object.size_bytes {
            // Longer than the manifest says (a link to /dev/zero, an appended file):
            // reading on could take forever, and the answer is already known.
            drop(tx);
            let _ = writer.await;
            bail!(
                "{key} holds more than the {} bytes its manifest records: the backup was altered; hint: use another backup (`dr list --target {}`)",
                object.size_bytes,
                manifest.target
            );
        }
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
        // A wrong key is said as such, even to a reader that may stop early.
        Err(e) if crate::encryption::is_wrong_identity(&e) => Err(e),
        // A reader that stopped early did not stop the reading: what fails here is the
        // object itself (its plaintext hash, its compression), so it is said.
        Err(e) => Err(e).with_context(|| format!("cannot decrypt or decompress {key}")),
    }
}

/// A private staging directory (0700), removed on drop whatever happens.
pub fn staging_area(parent: &Path) -> Result<(tempfile::TempDir, leftovers::Registered)> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("dr-staging-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a staging directory in {}", parent.display()))?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
    let registered = leftovers::register(leftovers::Resource::Staging {
        dir: dir.path().to_path_buf(),
    });
    Ok((dir, registered))
}

/// Fetches an object once, checking its SHA-256 while it streams, into a 0600 file:
/// decompressed (a plain archive or SQL file), or as stored when `decompress` is false.
pub async fn stage(
    storage: &dyn Storage,
    manifest: &BackupManifest,
    object: &StoredObject,
    identities: Option<&Arc<Identities>>,
    path: &Path,
    decompress: bool,
) -> Result<u64> {
    stage_file(
        storage, manifest, object, identities, path, decompress, false,
    )
    .await
    .map(|(n, _)| n)
}

/// [`stage`], and for a decompressed custom-format archive with `record_offsets`, the data
/// offsets filled into its table of contents (see `offsets`); None when they could not be.
// The offsets' mutex is locked only to store or take them, never across a panic.
#[allow(clippy::expect_used)]
pub(super) async fn stage_file(
    storage: &dyn Storage,
    manifest: &BackupManifest,
    object: &StoredObject,
    identities: Option<&Arc<Identities>>,
    path: &Path,
    decompress: bool,
    record_offsets: bool,
) -> Result<(u64, Option<TocOffsets>)> {
    let file = create_private(path)?;
    let result = if decompress && record_offsets {
        // Rows joined into large chunks and data offsets filled in (see `offsets`).
        let found = Arc::new(std::sync::Mutex::new(None));
        let found_by_thread = found.clone();
        let staged_path = path.to_path_buf();
        let consume = move |decoded: &mut dyn Read| -> Result<u64> {
            let (n, offsets) = write_with_offsets(decoded, file, &staged_path)?;
            *found_by_thread.lock().expect("not poisoned") = offsets;
            Ok(n)
        };
        stream_object_with(storage, manifest, object, identities, consume)
            .await
            .map(|n| (n, found.lock().expect("not poisoned").take()))
    } else if decompress {
        let writer = std::io::BufWriter::with_capacity(1 << 20, file);
        stream_object(storage, manifest, object, identities, writer, false)
            .await
            .map(|n| (n, None))
    } else {
        // Same hash check, no decompression: the bytes are staged compressed (decrypted
        // when the backup is encrypted).
        let stored = StoredObject {
            compression: Compression::None,
            ..object.clone()
        };
        let writer = std::io::BufWriter::with_capacity(1 << 20, file);
        stream_object(storage, manifest, &stored, identities, writer, false)
            .await
            .map(|n| (n, None))
    };
    result.map_err(|e| {
        let needed = if decompress {
            object.raw_bytes
        } else {
            object.size_bytes
        };
        match out_of_space(&e) {
            Some(why) => anyhow::anyhow!(
                "staging {} stopped: {why}; the restore stages {} there; hint: free space, raise the limit (ulimit -f), or pass --staging-dir on a disk with room",
                path.display(),
                units::bytes(needed)
            ),
            None => e,
        }
    })
}

/// A new staging file only this user may read (0600); an existing file is an error.
pub(crate) fn create_private(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create staging file {}", path.display()))
}

/// Writes a decompressed custom-format archive into `file` with its rows joined and its
/// data offsets filled in (see `offsets`); returns its length and those offsets.
fn write_with_offsets(
    decoded: &mut dyn Read,
    file: std::fs::File,
    path: &Path,
) -> Result<(u64, Option<TocOffsets>)> {
    // The joined chunks (256 KiB) are larger than the buffer and go straight to the file;
    // the buffer gathers the small framing fields between them.
    let writer = std::io::BufWriter::with_capacity(64 << 10, file);
    let mut rewriter = ArchiveRewriter::new(writer);
    let n = offsets::copy_large(decoded, &mut rewriter)?;
    let (writer, offsets) = rewriter.finish()?;
    let file = writer.into_inner().map_err(|e| e.into_error())?;
    if let Some(o) = &offsets {
        o.write_into(&file)
            .with_context(|| format!("cannot write data offsets into {}", path.display()))?;
    }
    Ok((n, offsets))
}

/// Whether an error chain is a full disk or a file-size limit, in words.
fn out_of_space(err: &anyhow::Error) -> Option<&'static str> {
    err.chain().find_map(|cause| {
        let io = cause.downcast_ref::<std::io::Error>()?;
        match io.raw_os_error() {
            Some(28) => Some("the disk is full"),
            Some(27) => Some("the file-size limit (ulimit -f) was reached"),
            Some(122) => Some("the disk quota is exhausted"),
            _ => None,
        }
    })
}

/// A dump fetched once and checksum-verified; the staging directory is removed when this
/// is dropped. `compression` is that of the staged file: `None` means a plain archive that
/// pg_restore can seek (needed for --jobs > 1); otherwise the stored bytes, decompressed
/// into pg_restore's stdin, which spares writing the whole archive to disk.
pub struct StagedDump {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub compression: Compression,
    /// Bytes of the decompressed archive: what pg_restore consumes.
    pub raw_bytes: u64,
    /// A plain archive with its rows joined and data offsets filled in (see `offsets`),
    /// rather than the bytes as stored.
    pub with_offsets: bool,
    /// `pg_restore --list` of the archive.
    pub listing: String,
    /// Dropped after `dir`: the record goes once the directory is gone.
    pub(super) _registered: leftovers::Registered,
}

impl StagedDump {
    /// Turns a dump staged as stored into a plain archive with data offsets
    /// in the same directory, for `pg_restore --jobs N`; the compressed file is removed.
    /// Returns the entries whose offsets were filled in.
    pub async fn make_seekable(&mut self) -> Result<usize> {
        if self.with_offsets {
            return Ok(0);
        }
        let from = self.path.clone();
        let to = self.dir.path().join("seekable.pgdump");
        let compression = self.compression;
        let raw_bytes = self.raw_bytes;
        let to_in_thread = to.clone();
        let filled = tokio::task::spawn_blocking(move || -> Result<usize> {
            let input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&from)?);
            let mut decoded = crate::codec::decompressor(compression, input)?;
            let file = create_private(&to_in_thread)?;
            let (_, offsets) = write_with_offsets(&mut decoded, file, &to_in_thread).map_err(|e| {
                match out_of_space(&e) {
                    Some(why) => anyhow::anyhow!(
                        "staging {} stopped: {why}; a parallel restore of this backup stages {} there; hint: free space, or pass --staging-dir on a disk with room, or --jobs 1",
                        to_in_thread.display(),
                        units::bytes(raw_bytes)
                    ),
                    None => e,
                }
            })?;
            std::fs::remove_file(&from)?;
            Ok(offsets.map_or(0, |o| o.filled()))
        })
        .await
        .context("the staging thread stopped")??;
        self.path = to;
        self.compression = Compression::None;
        self.with_offsets = true;
        Ok(filled)
    }
}
