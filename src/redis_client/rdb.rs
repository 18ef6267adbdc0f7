//! A streaming reader of the RDB format (Redis 2.6 to 7.4, RDB versions 6 to 12).
//!
//! It walks every opcode and value without building Redis objects, so a snapshot of any
//! size passes in constant memory. What it yields: each key with its database and
//! expiry, optionally with its value as a DUMP payload (the RDB value bytes followed by
//! the RDB version and a CRC-64, exactly what `DUMP` returns and `RESTORE` accepts), the
//! key counts per database, and a check of the file's own CRC-64 trailer.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{anyhow, bail, Result};

/// The newest RDB version this reader understands (Redis 7.4).
pub const NEWEST_RDB_VERSION: u16 = 12;

const OP_SLOT_INFO: u8 = 244;
const OP_FUNCTION2: u8 = 245;
const OP_FUNCTION_PRE_GA: u8 = 246;
const OP_MODULE_AUX: u8 = 247;
const OP_IDLE: u8 = 248;
const OP_FREQ: u8 = 249;
const OP_AUX: u8 = 250;
const OP_RESIZEDB: u8 = 251;
const OP_EXPIRETIME_MS: u8 = 252;
const OP_EXPIRETIME: u8 = 253;
const OP_SELECTDB: u8 = 254;
const OP_EOF: u8 = 255;

/// One key of a backup, from an RDB snapshot or a keys stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub db: u32,
    pub key: Vec<u8>,
    /// Absolute expiry, Unix milliseconds.
    pub expire_at_ms: Option<i64>,
    /// The RDB type byte of the value (the first byte of its DUMP payload).
    pub rdb_type: u8,
    /// The value as a DUMP payload, when the caller asked for it.
    pub payload: Option<Vec<u8>>,
}

/// What a reader knows about an entry before reading its value.
pub struct EntryHead {
    pub db: u32,
    pub expire_at_ms: Option<i64>,
}

/// A sequence of backup entries: an RDB snapshot or a dr keys stream.
pub trait EntrySource {
    /// The next entry; `want` decides whether its payload is kept. `None` at the end, after
    /// the stream's own integrity checks passed.
    fn next_entry(&mut self, want: &mut dyn FnMut(&EntryHead) -> bool) -> Result<Option<Entry>>;
}

/// Keys of one database, as counted while reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DbTally {
    pub keys: u64,
    pub expires: u64,
}

/// CRC-64 as Redis computes it (Jones polynomial, reflected), for RDB files and DUMP payloads.
pub fn crc64(data: &[u8]) -> u64 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Redis, data)
}

/// Appends the RDB version and CRC-64 trailer that turn an RDB value into a DUMP payload.
pub fn seal_payload(mut value: Vec<u8>, rdb_version: u16) -> Vec<u8> {
    value.extend_from_slice(&rdb_version.to_le_bytes());
    let crc = crc64(&value);
    value.extend_from_slice(&crc.to_le_bytes());
    value
}

/// The RDB version a DUMP payload was written with, and whether its CRC-64 is right.
pub fn payload_version(payload: &[u8]) -> Option<(u16, bool)> {
    if payload.len() < 11 {
        return None;
    }
    let body = payload.len() - 8;
    let version = u16::from_le_bytes([payload[body - 2], payload[body - 1]]);
    let stored = u64::from_le_bytes(payload[body..].try_into().ok()?);
    Some((version, stored == 0 || stored == crc64(&payload[..body])))
}

/// Buffered input that keeps a running CRC-64 of what was consumed and can copy the
/// consumed bytes into a capture buffer (to lift a value out as a DUMP payload).
struct Source<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    /// Bytes of `buf` before this index are already in `crc`.
    hashed: usize,
    crc: crc_fast::Digest,
    consumed: u64,
    capture: Option<Vec<u8>>,
}

impl<R: Read> Source<R> {
    fn new(inner: R) -> Self {
        Source {
            inner,
            buf: vec![0u8; 256 * 1024].into_boxed_slice(),
            pos: 0,
            end: 0,
            hashed: 0,
            crc: crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Redis),
            consumed: 0,
            capture: None,
        }
    }

    fn fill(&mut self) -> Result<()> {
        self.crc.update(&self.buf[self.hashed..self.pos]);
        self.pos = 0;
        self.hashed = 0;
        self.end = 0;
        loop {
            match self.inner.read(&mut self.buf) {
                Ok(0) => bail!(
                    "the RDB data ends early, after {} bytes (truncated)",
                    self.consumed
                ),
                Ok(n) => {
                    self.end = n;
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(anyhow!(e).context("cannot read the RDB data")),
            }
        }
    }

    /// Consumes `n` bytes, handing each piece to `sink` (and to the capture buffer).
    fn take(&mut self, mut n: u64, mut sink: impl FnMut(&[u8])) -> Result<()> {
        while n > 0 {
            if self.pos == self.end {
                self.fill()?;
            }
            let k = (self.end - self.pos).min(usize::try_from(n).unwrap_or(usize::MAX));
            let piece = &self.buf[self.pos..self.pos + k];
            sink(piece);
            if let Some(c) = &mut self.capture {
                c.extend_from_slice(piece);
            }
            self.pos += k;
            self.consumed += k as u64;
            n -= k as u64;
        }
        Ok(())
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        self.take(n, |_| {})
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        let mut at = 0;
        self.take(N as u64, |p| {
            out[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        })?;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.bytes::<1>()?[0])
    }

    fn vec(&mut self, n: u64) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(usize::try_from(n.min(1 << 20)).unwrap_or(0));
        self.take(n, |p| out.extend_from_slice(p))?;
        Ok(out)
    }

    /// The CRC-64 of everything consumed so far.
    fn crc_so_far(&mut self) -> u64 {
        self.crc.update(&self.buf[self.hashed..self.pos]);
        self.hashed = self.pos;
        self.crc.finalize()
    }

    /// Reads to the end; true if nothing was left.
    fn at_end(&mut self) -> Result<bool> {
        if self.pos < self.end {
            return Ok(false);
        }
        let mut probe = [0u8; 1];
        loop {
            match self.inner.read(&mut probe) {
                Ok(0) => return Ok(true),
                Ok(_) => return Ok(false),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A length, or (when `encoded`) the kind of a specially encoded string.
struct Length {
    value: u64,
    encoded: bool,
}

/// Reads an RDB stream entry by entry.
pub struct RdbReader<R> {
    src: Source<R>,
    version: u16,
    db: u32,
    done: bool,
    tallies: BTreeMap<u32, DbTally>,
    /// `redis-ver` and the other AUX fields (short strings only).
    aux: Vec<(String, String)>,
    functions: u64,
}

impl<R: Read> RdbReader<R> {
    /// Reads and checks the header (`REDIS` and a 4-digit version this reader supports).
    pub fn new(inner: R) -> Result<Self> {
        let mut src = Source::new(inner);
        let header = src.bytes::<9>().map_err(|_| {
            anyhow!("the data is not an RDB file: it is shorter than the 9-byte header")
        })?;
        if &header[..5] != b"REDIS" {
            bail!(
                "the data is not an RDB file: it starts with {:?} instead of \"REDIS\"",
                String::from_utf8_lossy(&header[..5])
            );
        }
        let version: u16 = std::str::from_utf8(&header[5..])
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("the RDB header has no version number"))?;
        if version > NEWEST_RDB_VERSION {
            bail!(
                "the RDB is version {version}, newer than this dr reads (up to {NEWEST_RDB_VERSION}); hint: upgrade dr, or use method = \"keys\" for this target"
            );
        }
        Ok(RdbReader {
            src,
            version,
            db: 0,
            done: false,
            tallies: BTreeMap::new(),
            aux: Vec::new(),
            functions: 0,
        })
    }

    pub fn version(&self) -> u16 {
        self.version
    }

    /// Keys per database counted so far (all of them once the reader reached the end).
    pub fn tallies(&self) -> &BTreeMap<u32, DbTally> {
        &self.tallies
    }

    #[cfg(test)]
    fn aux(&self, name: &str) -> Option<&str> {
        self.aux
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Function libraries in the snapshot (restored only by loading the file in a server).
    pub fn functions(&self) -> u64 {
        self.functions
    }

    pub fn bytes_read(&self) -> u64 {
        self.src.consumed
    }

    /// Reads the whole stream, counting keys and checking the trailer.
    pub fn read_to_end(&mut self) -> Result<()> {
        while self.next_entry(&mut |_| false)?.is_some() {}
        Ok(())
    }

    fn length(&mut self) -> Result<Length> {
        let first = self.src.byte()?;
        Ok(match first >> 6 {
            0 => Length {
                value: u64::from(first & 0x3f),
                encoded: false,
            },
            1 => Length {
                value: (u64::from(first & 0x3f) << 8) | u64::from(self.src.byte()?),
                encoded: false,
            },
            2 => match first {
                0x80 => Length {
                    value: u64::from(u32::from_be_bytes(self.src.bytes()?)),
                    encoded: false,
                },
                0x81 => Length {
                    value: u64::from_be_bytes(self.src.bytes()?),
                    encoded: false,
                },
                other => bail!(
                    "unknown length encoding 0x{other:02x} at byte {}",
                    self.src.consumed
                ),
            },
            _ => Length {
                value: u64::from(first & 0x3f),
                encoded: true,
            },
        })
    }

    fn len(&mut self) -> Result<u64> {
        let l = self.length()?;
        if l.encoded {
            bail!(
                "an encoded value where a length belongs, at byte {}",
                self.src.consumed
            );
        }
        Ok(l.value)
    }

    /// A string, decoded (integer and LZF encodings expanded).
    fn string(&mut self) -> Result<Vec<u8>> {
        let l = self.length()?;
        if !l.encoded {
            return self.src.vec(l.value);
        }
        match l.value {
            0 => Ok((self.src.byte()? as i8).to_string().into_bytes()),
            1 => Ok(i16::from_le_bytes(self.src.bytes()?)
                .to_string()
                .into_bytes()),
            2 => Ok(i32::from_le_bytes(self.src.bytes()?)
                .to_string()
                .into_bytes()),
            3 => {
                let compressed_len = self.len()?;
                let plain_len = self.len()?;
                let compressed = self.src.vec(compressed_len)?;
                lzf_decompress(&compressed, plain_len)
            }
            other => bail!("unknown string encoding {other}"),
        }
    }

    fn skip_string(&mut self) -> Result<()> {
        let l = self.length()?;
        if !l.encoded {
            return self.src.skip(l.value);
        }
        match l.value {
            0 => self.src.skip(1),
            1 => self.src.skip(2),
            2 => self.src.skip(4),
            3 => {
                let compressed_len = self.len()?;
                self.len()?;
                self.src.skip(compressed_len)
            }
            other => bail!("unknown string encoding {other}"),
        }
    }

    fn skip_strings(&mut self, n: u64) -> Result<()> {
        for _ in 0..n {
            self.skip_string()?;
        }
        Ok(())
    }

    /// A module's self-describing value: typed opcodes up to an EOF opcode.
    fn skip_module_value(&mut self) -> Result<()> {
        loop {
            match self.len()? {
                0 => return Ok(()),
                1 | 2 => {
                    self.len()?;
                }
                3 => self.src.skip(4)?,
                4 => self.src.skip(8)?,
                5 => self.skip_string()?,
                other => bail!("unknown module opcode {other} in a module value"),
            }
        }
    }

    fn skip_value(&mut self, rdb_type: u8) -> Result<()> {
        match rdb_type {
            0 | 9..=13 | 16 | 17 | 20 | 23 => self.skip_string(),
            1 | 2 | 14 => {
                let n = self.len()?;
                self.skip_strings(n)
            }
            3 => {
                let n = self.len()?;
                for _ in 0..n {
                    self.skip_string()?;
                    // A score as text: one length byte (253-255 are NaN and infinities).
                    let l = self.src.byte()?;
                    if l < 253 {
                        self.src.skip(u64::from(l))?;
                    }
                }
                Ok(())
            }
            4 => {
                let n = self.len()?;
                self.skip_strings(n * 2)
            }
            5 => {
                let n = self.len()?;
                for _ in 0..n {
                    self.skip_string()?;
                    self.src.skip(8)?;
                }
                Ok(())
            }
            7 => {
                self.len()?;
                self.skip_module_value()
            }
            15 | 19 | 21 => self.skip_stream(rdb_type),
            18 => {
                let n = self.len()?;
                for _ in 0..n {
                    self.len()?;
                    self.skip_string()?;
                }
                Ok(())
            }
            22 | 24 => {
                if rdb_type == 24 {
                    self.src.skip(8)?;
                }
                let n = self.len()?;
                for _ in 0..n {
                    self.len()?;
                    self.skip_strings(2)?;
                }
                Ok(())
            }
            25 => {
                self.src.skip(8)?;
                self.skip_string()
            }
            6 => bail!("a module value from a Redis 4.0 release candidate (RDB type 6), which Redis itself no longer loads"),
            other => bail!("unknown RDB value type {other}"),
        }
    }

    fn skip_stream(&mut self, rdb_type: u8) -> Result<()> {
        let nodes = self.len()?;
        self.skip_strings(nodes * 2)?;
        // length, last id (ms, seq)
        for _ in 0..3 {
            self.len()?;
        }
        if rdb_type >= 19 {
            // first id, max deleted id, entries added
            for _ in 0..5 {
                self.len()?;
            }
        }
        let groups = self.len()?;
        for _ in 0..groups {
            self.skip_string()?;
            self.len()?;
            self.len()?;
            if rdb_type >= 19 {
                self.len()?;
            }
            let pending = self.len()?;
            for _ in 0..pending {
                self.src.skip(16 + 8)?;
                self.len()?;
            }
            let consumers = self.len()?;
            for _ in 0..consumers {
                self.skip_string()?;
                self.src.skip(if rdb_type >= 21 { 16 } else { 8 })?;
                let owned = self.len()?;
                self.src.skip(owned * 16)?;
            }
        }
        Ok(())
    }

    fn context(&self, e: anyhow::Error) -> anyhow::Error {
        e.context(format!(
            "cannot read the RDB (version {}) at byte {}",
            self.version, self.src.consumed
        ))
    }

    fn step(&mut self, want: &mut dyn FnMut(&EntryHead) -> bool) -> Result<Option<Entry>> {
        let mut expire_at_ms = None;
        loop {
            let op = self.src.byte()?;
            match op {
                OP_EOF => {
                    self.done = true;
                    if self.version >= 5 {
                        let computed = self.src.crc_so_far();
                        let stored = u64::from_le_bytes(self.src.bytes()?);
                        // Zero means the server ran with rdbchecksum no.
                        if stored != 0 && stored != computed {
                            bail!(
                                "the RDB's CRC-64 trailer is {stored:016x} but its content hashes to {computed:016x}: the snapshot is corrupted"
                            );
                        }
                    }
                    if !self.src.at_end()? {
                        bail!("bytes follow the RDB's end marker: the stream is not one RDB file");
                    }
                    return Ok(None);
                }
                OP_SELECTDB => {
                    self.db = u32::try_from(self.len()?)
                        .map_err(|_| anyhow!("database number out of range"))?;
                }
                OP_RESIZEDB => {
                    self.len()?;
                    self.len()?;
                }
                OP_AUX => {
                    let k = self.string()?;
                    let v = self.string()?;
                    if k.len() < 64 && v.len() < 256 {
                        self.aux.push((
                            String::from_utf8_lossy(&k).into_owned(),
                            String::from_utf8_lossy(&v).into_owned(),
                        ));
                    }
                }
                OP_EXPIRETIME_MS => expire_at_ms = Some(i64::from_le_bytes(self.src.bytes()?)),
                OP_EXPIRETIME => {
                    expire_at_ms = Some(i64::from(i32::from_le_bytes(self.src.bytes()?)) * 1000)
                }
                OP_IDLE => {
                    self.len()?;
                }
                OP_FREQ => self.src.skip(1)?,
                OP_MODULE_AUX => {
                    self.len()?;
                    self.skip_module_value()?;
                }
                OP_FUNCTION2 => {
                    self.functions += 1;
                    self.skip_string()?;
                }
                OP_FUNCTION_PRE_GA => bail!("functions from a Redis 7.0 release candidate (opcode 246), which Redis itself no longer loads"),
                OP_SLOT_INFO => {
                    for _ in 0..3 {
                        self.len()?;
                    }
                }
                rdb_type => {
                    let key = self.string()?;
                    let head = EntryHead {
                        db: self.db,
                        expire_at_ms,
                    };
                    let keep = want(&head);
                    if keep {
                        self.src.capture = Some(vec![rdb_type]);
                    }
                    let skipped = self.skip_value(rdb_type);
                    let captured = self.src.capture.take();
                    skipped?;
                    let tally = self.tallies.entry(self.db).or_default();
                    tally.keys += 1;
                    tally.expires += u64::from(expire_at_ms.is_some());
                    return Ok(Some(Entry {
                        db: self.db,
                        key,
                        expire_at_ms,
                        rdb_type,
                        payload: captured.map(|v| seal_payload(v, self.version)),
                    }));
                }
            }
        }
    }
}

impl<R: Read> EntrySource for RdbReader<R> {
    fn next_entry(&mut self, want: &mut dyn FnMut(&EntryHead) -> bool) -> Result<Option<Entry>> {
        if self.done {
            return Ok(None);
        }
        self.step(want).map_err(|e| self.context(e))
    }
}

/// LZF decompression (the format Redis uses for long strings in RDB files).
pub fn lzf_decompress(input: &[u8], plain_len: u64) -> Result<Vec<u8>> {
    let corrupt = || anyhow!("an LZF-compressed string is corrupted");
    let expected = usize::try_from(plain_len).map_err(|_| corrupt())?;
    let mut out: Vec<u8> = Vec::with_capacity(expected.min(1 << 26));
    let mut i = 0;
    while i < input.len() {
        let ctrl = usize::from(input[i]);
        i += 1;
        if ctrl < 32 {
            let run = ctrl + 1;
            let literal = input.get(i..i + run).ok_or_else(corrupt)?;
            out.extend_from_slice(literal);
            i += run;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += usize::from(*input.get(i).ok_or_else(corrupt)?);
                i += 1;
            }
            let low = usize::from(*input.get(i).ok_or_else(corrupt)?);
            i += 1;
            let back = ((ctrl & 0x1f) << 8) + low + 1;
            let start = out.len().checked_sub(back).ok_or_else(corrupt)?;
            // The copy may overlap what it produces: byte by byte.
            for k in 0..len + 2 {
                let b = out[start + k];
                out.push(b);
            }
        }
        if out.len() > expected {
            return Err(corrupt());
        }
    }
    if out.len() != expected {
        return Err(corrupt());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `SAVE` of a Redis 7.0.15 holding: k = "abcabc..." (120 bytes, LZF), L = [a, b, c]
    /// (quicklist of one listpack) and 12345 = "v" (an integer-encoded key).
    const SAMPLE_RDB: &str = "524544495330303130fa0972656469732d76657206372e302e3135fa0a72656469732d62697473c040fa056374696d65c2a2f4066bfa08757365642d6d656dc2c0160f00fa08616f662d62617365c000fe00fb030000016bc30b40780361626361e0690201626312014c010210100000000300816102816202816302ff00c139300176ff7fd19bdad03b56d2";

    fn sample() -> Vec<u8> {
        hex::decode(SAMPLE_RDB).unwrap()
    }

    #[test]
    fn crc64_is_redis_s() {
        assert_eq!(crc64(b"123456789"), 0xe9c6d914c4b8d9ca);
    }

    #[test]
    fn reads_keys_counts_and_checks_the_trailer() {
        let data = sample();
        let mut r = RdbReader::new(&data[..]).unwrap();
        assert_eq!(r.version(), 10);
        let mut keys = vec![];
        while let Some(e) = r.next_entry(&mut |_| true).unwrap() {
            keys.push((e.db, e.key.clone(), e.payload.unwrap()));
        }
        assert_eq!(r.aux("redis-ver"), Some("7.0.15"));
        assert_eq!(
            r.tallies()[&0],
            DbTally {
                keys: 3,
                expires: 0
            }
        );
        assert_eq!(keys[0].1, b"k");
        assert_eq!(keys[1].1, b"L");
        assert_eq!(keys[2].1, b"12345");
        // The value of k, lifted out, is exactly what DUMP k returned on that server.
        let dump_k = b"\x00\xc3\x0b@x\x03abca\xe0i\x02\x01bc\n\x00\xc4\x94\xa1p*\xe2>\x06";
        assert_eq!(keys[0].2, dump_k.to_vec());
        assert_eq!(payload_version(&keys[0].2), Some((10, true)));
    }

    #[test]
    fn lzf_strings_decode() {
        let data = sample();
        let mut r = RdbReader::new(&data[..]).unwrap();
        let e = r.next_entry(&mut |_| true).unwrap().unwrap();
        let payload = e.payload.unwrap();
        // Decode the value string of k from its payload.
        let mut inner = RdbReader {
            src: Source::new(&payload[1..]),
            version: 10,
            db: 0,
            done: false,
            tallies: BTreeMap::new(),
            aux: vec![],
            functions: 0,
        };
        assert_eq!(inner.string().unwrap(), b"abc".repeat(40));
    }

    #[test]
    fn a_flipped_byte_fails_the_crc() {
        let mut data = sample();
        let at = data.len() - 20;
        data[at] ^= 0x01;
        let mut r = RdbReader::new(&data[..]).unwrap();
        let err = r.read_to_end().unwrap_err();
        assert!(format!("{err:#}").contains("CRC-64"), "{err:#}");
    }

    #[test]
    fn truncation_is_an_error() {
        let data = sample();
        let mut r = RdbReader::new(&data[..data.len() - 9]).unwrap();
        let err = r.read_to_end().unwrap_err();
        assert!(format!("{err:#}").contains("truncated"), "{err:#}");
    }

    #[test]
    fn not_an_rdb() {
        assert!(RdbReader::new(&b"hello world"[..]).is_err());
        assert!(RdbReader::new(&b"REDIS0099"[..]).is_err());
    }

    #[test]
    fn sealed_payloads_verify() {
        let p = seal_payload(vec![0, 1, b'x'], 10);
        assert_eq!(payload_version(&p), Some((10, true)));
        let mut bad = p.clone();
        bad[2] = b'y';
        assert_eq!(payload_version(&bad), Some((10, false)));
    }
}
