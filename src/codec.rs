//! How objects are encoded in storage: compressed (zstd, gzip or none), encrypted when
//! `[encryption]` is set, and hashed as stored, in one pass and bounded memory; and decoded
//! again. Dumps, base backups and WAL files all go through here.

use std::io::{Read, Write};

use anyhow::{Context, Result};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::config::{BackupConfig, Compression};
use crate::encryption::{HashingWriter, Recipients};

const CHUNK: usize = 1 << 20;

/// Sees every raw (uncompressed) byte on its way to compression, in order.
pub type RawTap = Box<dyn FnMut(&[u8]) + Send>;
/// A borrowed [`RawTap`].
pub type RawTapRef<'a> = &'a mut dyn FnMut(&[u8]);

/// What [`compress_into`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub compression: Compression,
    /// Bytes as stored.
    pub size_bytes: u64,
    /// SHA-256 of the stored bytes.
    pub sha256: String,
    /// Bytes before compression.
    pub raw_bytes: u64,
    /// For an encrypted object: SHA-256 and size of the compressed stream before encryption.
    pub plaintext_sha256: Option<String>,
    pub plaintext_bytes: Option<u64>,
}

/// The configured compression level, or the codec's default.
pub fn level(settings: &BackupConfig) -> i32 {
    settings.level.unwrap_or(match settings.compression {
        Compression::Zstd => 3,
        Compression::Gzip => 6,
        Compression::None => 0,
    })
}

/// How stored bytes are made: compression, and encryption when `[encryption]` is set.
#[derive(Clone)]
pub struct PipelineSettings {
    pub compression: Compression,
    pub level: i32,
    pub threads: u32,
    pub recipients: Option<Recipients>,
}

impl PipelineSettings {
    pub fn new(settings: &BackupConfig, recipients: Option<Recipients>) -> Self {
        PipelineSettings {
            compression: settings.compression,
            level: level(settings),
            threads: settings.threads.unwrap_or(0),
            recipients,
        }
    }

    /// The suffix of stored file names: `.zst`, then `.age` when encrypted.
    pub fn extension(&self) -> String {
        let age = if self.recipients.is_some() {
            ".age"
        } else {
            ""
        };
        format!("{}{age}", self.compression.extension())
    }
}

/// Sends hashed, size-counted chunks of the compressed stream to the storage writer.
struct ChannelWriter {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
    hasher: Sha256,
    size: u64,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(data);
        self.size += data.len() as u64;
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "storage writer stopped")
        })
    }
}

/// Where compressed bytes go: straight to storage, or through age encryption (hashing the
/// plaintext on the way, so a restore with the key can prove what it decrypted).
enum Tail {
    Plain(ChannelWriter),
    Encrypted(HashingWriter<age::stream::StreamWriter<ChannelWriter>>),
}

impl Write for Tail {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            Tail::Plain(w) => w.write(data),
            Tail::Encrypted(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Tail::Plain(w) => w.flush(),
            Tail::Encrypted(w) => w.flush(),
        }
    }
}

impl Tail {
    /// Ends the stream: the storage writer, and the plaintext's (SHA-256, size) when encrypted.
    fn finish(self) -> Result<(ChannelWriter, Option<(String, u64)>)> {
        match self {
            Tail::Plain(w) => Ok((w, None)),
            Tail::Encrypted(w) => {
                let (stream, sha, size) = w.finish();
                let sink = stream.finish().context("cannot end the encrypted stream")?;
                Ok((sink, Some((sha, size))))
            }
        }
    }
}

/// Compresses (and encrypts, when configured) `input` into chunks for a storage writer,
/// hashing what is stored. `tap` sees the raw bytes (physical backups read their tar
/// stream, WAL pushes hash it).
pub fn compress_into<R: Read>(
    mut input: R,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    settings: &PipelineSettings,
    progress: Option<indicatif::ProgressBar>,
    mut tap: Option<RawTapRef<'_>>,
) -> Result<Encoded> {
    let mut buf = vec![0u8; CHUNK];
    compress_with(tx, settings, |w: &mut dyn Write| {
        let mut raw_bytes = 0u64;
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => return Ok(raw_bytes),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("cannot read the dump"),
            };
            raw_bytes += n as u64;
            if let Some(t) = tap.as_mut() {
                t(&buf[..n]);
            }
            if let Some(p) = &progress {
                p.set_position(raw_bytes);
            }
            w.write_all(&buf[..n])
                .context("cannot pass the dump to storage")?;
        }
    })
}

/// Compresses (and encrypts, when configured) what `fill` writes (it returns the number of
/// raw bytes it wrote), hashing and counting the stored bytes on their way to the storage
/// writer behind `tx`.
pub fn compress_with(
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    settings: &PipelineSettings,
    fill: impl FnOnce(&mut dyn Write) -> Result<u64>,
) -> Result<Encoded> {
    let (compression, level, threads) = (settings.compression, settings.level, settings.threads);
    let channel = ChannelWriter {
        tx,
        buf: Vec::with_capacity(CHUNK),
        hasher: Sha256::new(),
        size: 0,
    };
    let sink = match &settings.recipients {
        None => Tail::Plain(channel),
        Some(r) => Tail::Encrypted(HashingWriter::new(r.encrypt(channel)?)),
    };
    let raw_bytes;
    let sink = match compression {
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(sink, level)?;
            let workers = if threads == 0 {
                std::thread::available_parallelism()
                    .map(|n| n.get() as u32)
                    .unwrap_or(1)
            } else {
                threads
            };
            if workers > 1 {
                enc.multithread(workers)?;
            }
            raw_bytes = fill(&mut enc)?;
            enc.finish()?
        }
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(
                sink,
                flate2::Compression::new(level.clamp(0, 9) as u32),
            );
            raw_bytes = fill(&mut enc)?;
            enc.finish()?
        }
        Compression::None => {
            let mut sink = sink;
            raw_bytes = fill(&mut sink)?;
            sink
        }
    };
    let (mut sink, plaintext) = sink.finish()?;
    sink.send()?;
    Ok(Encoded {
        compression,
        size_bytes: sink.size,
        sha256: hex::encode(sink.hasher.finalize()),
        raw_bytes,
        plaintext_sha256: plaintext.as_ref().map(|(sha, _)| sha.clone()),
        plaintext_bytes: plaintext.map(|(_, n)| n),
    })
}

/// A reader that decompresses a stored object.
pub fn decompressor<'a, R: Read + 'a>(
    compression: Compression,
    input: R,
) -> Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(input)?),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(input)),
        Compression::None => Box::new(input),
    })
}

/// A blocking `Read` over chunks arriving from async code.
pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChannelReader {
    pub(crate) fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        ChannelReader {
            rx,
            current: Bytes::new(),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_round_trips() {
        for compression in [Compression::Zstd, Compression::Gzip, Compression::None] {
            let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
            let dir = tempfile::tempdir().unwrap();
            let input_path = dir.path().join("in");
            std::fs::write(&input_path, &data).unwrap();
            let (tx, mut rx) = mpsc::channel(1000);
            let settings = PipelineSettings {
                compression,
                level: 3,
                threads: 2,
                recipients: None,
            };
            let stats = compress_into(
                std::fs::File::open(&input_path).unwrap(),
                tx,
                &settings,
                None,
                None,
            )
            .unwrap();
            let mut stored = Vec::new();
            while let Ok(chunk) = rx.try_recv() {
                stored.extend_from_slice(&chunk.unwrap());
            }
            assert_eq!(stats.size_bytes, stored.len() as u64);
            assert_eq!(stats.raw_bytes, data.len() as u64);
            assert_eq!(stats.sha256, hex::encode(Sha256::digest(&stored)));
            let mut back = Vec::new();
            decompressor(compression, &stored[..])
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "{compression:?}");
        }
    }
}
