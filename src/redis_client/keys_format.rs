//! The `dr-redis-keys-1` stream: what `method = "keys"` stores (before compression).
//!
//! ```text
//! stream  = magic *record trailer
//! magic   = "DRREDISKEYS1\n"                            13 bytes
//! record  = %x01 db:u32                                  the keys that follow are in database db
//!         / %x02 expire:i64 klen:u32 key plen:u64 payload
//!                                                        one key; expire is absolute Unix time in
//!                                                        milliseconds, -1 for none; payload is the
//!                                                        key's DUMP output (RDB value, RDB version,
//!                                                        CRC-64)
//! trailer = %xFF count:u64                               the number of key records; a stream
//!                                                        without it is truncated
//! ```
//! Integers are little-endian. A key may appear twice (SCAN may return a key more than
//! once); restoring it twice with `REPLACE` is harmless.

use std::io::Read;

use anyhow::{anyhow, bail, Context, Result};

use super::rdb::{payload_version, Entry, EntryHead, EntrySource};

pub const FORMAT: &str = "dr-redis-keys-1";
pub const MAGIC: &[u8; 13] = b"DRREDISKEYS1\n";

const REC_DB: u8 = 0x01;
const REC_KEY: u8 = 0x02;
const REC_END: u8 = 0xff;

/// A payload larger than this is taken as corruption rather than allocated.
const MAX_PAYLOAD: u64 = 16 << 30;

/// Appends records to a buffer (the caller ships the buffer on when it is large enough).
#[derive(Default)]
pub struct KeysWriter {
    pub buf: Vec<u8>,
    pub records: u64,
}

impl KeysWriter {
    pub fn magic(&mut self) {
        self.buf.extend_from_slice(MAGIC);
    }

    pub fn db(&mut self, db: u32) {
        self.buf.push(REC_DB);
        self.buf.extend_from_slice(&db.to_le_bytes());
    }

    pub fn key(&mut self, key: &[u8], expire_at_ms: Option<i64>, payload: &[u8]) {
        self.buf.push(REC_KEY);
        self.buf
            .extend_from_slice(&expire_at_ms.unwrap_or(-1).to_le_bytes());
        self.buf
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(key);
        self.buf
            .extend_from_slice(&(payload.len() as u64).to_le_bytes());
        self.buf.extend_from_slice(payload);
        self.records += 1;
    }

    pub fn trailer(&mut self) {
        self.buf.push(REC_END);
        self.buf.extend_from_slice(&self.records.to_le_bytes());
    }
}

/// Reads a keys stream entry by entry.
pub struct KeysReader<R> {
    input: R,
    db: u32,
    records: u64,
    done: bool,
}

impl<R: Read> KeysReader<R> {
    pub fn new(mut input: R) -> Result<Self> {
        let mut magic = [0u8; 13];
        input
            .read_exact(&mut magic)
            .context("the keys stream is shorter than its header")?;
        if &magic != MAGIC {
            bail!("the data is not a dr keys stream (bad header)");
        }
        Ok(KeysReader {
            input,
            db: 0,
            records: 0,
            done: false,
        })
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        self.input.read_exact(&mut out).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                anyhow!(
                    "the keys stream ends early after {} key(s) (truncated)",
                    self.records
                )
            } else {
                anyhow!(e).context("cannot read the keys stream")
            }
        })?;
        Ok(out)
    }

    fn vec(&mut self, n: u64) -> Result<Vec<u8>> {
        if n > MAX_PAYLOAD {
            bail!("a record claims {n} bytes: the keys stream is corrupted");
        }
        let mut out = Vec::new();
        let got = (&mut self.input).take(n).read_to_end(&mut out)?;
        if got as u64 != n {
            bail!(
                "the keys stream ends early after {} key(s) (truncated)",
                self.records
            );
        }
        Ok(out)
    }
}

impl<R: Read> EntrySource for KeysReader<R> {
    fn next_entry(&mut self, want: &mut dyn FnMut(&EntryHead) -> bool) -> Result<Option<Entry>> {
        while !self.done {
            match self.array::<1>()?[0] {
                REC_DB => self.db = u32::from_le_bytes(self.array()?),
                REC_KEY => {
                    let expire = i64::from_le_bytes(self.array()?);
                    let klen = u32::from_le_bytes(self.array()?);
                    let key = self.vec(u64::from(klen))?;
                    let plen = u64::from_le_bytes(self.array()?);
                    let payload = self.vec(plen)?;
                    let (_, crc_ok) = payload_version(&payload)
                        .ok_or_else(|| anyhow!("the DUMP payload of a key is too short"))?;
                    if !crc_ok {
                        bail!(
                            "the DUMP payload of key {:?} fails its CRC-64: the backup is corrupted",
                            String::from_utf8_lossy(&key)
                        );
                    }
                    self.records += 1;
                    let expire_at_ms = (expire >= 0).then_some(expire);
                    let keep = want(&EntryHead {
                        db: self.db,
                        expire_at_ms,
                    });
                    return Ok(Some(Entry {
                        db: self.db,
                        key,
                        expire_at_ms,
                        rdb_type: payload[0],
                        payload: keep.then_some(payload),
                    }));
                }
                REC_END => {
                    let count = u64::from_le_bytes(self.array()?);
                    if count != self.records {
                        bail!(
                            "the keys stream's trailer counts {count} key(s) but it holds {}: the backup is corrupted",
                            self.records
                        );
                    }
                    let mut rest = [0u8; 1];
                    if self.input.read(&mut rest)? != 0 {
                        bail!("bytes follow the keys stream's trailer: the backup is corrupted");
                    }
                    self.done = true;
                }
                other => bail!(
                    "unknown record type 0x{other:02x} in the keys stream: the backup is corrupted"
                ),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::super::rdb::seal_payload;
    use super::*;

    fn stream() -> Vec<u8> {
        let mut w = KeysWriter::default();
        w.magic();
        w.db(0);
        w.key(b"a", None, &seal_payload(vec![0, 1, b'x'], 10));
        w.db(3);
        w.key(
            b"b",
            Some(1_700_000_000_000),
            &seal_payload(vec![0, 1, b'y'], 10),
        );
        w.trailer();
        w.buf
    }

    #[test]
    fn round_trip() {
        let data = stream();
        let mut r = KeysReader::new(&data[..]).unwrap();
        let a = r.next_entry(&mut |_| true).unwrap().unwrap();
        assert_eq!(
            (a.db, a.key.as_slice(), a.expire_at_ms),
            (0, &b"a"[..], None)
        );
        let b = r.next_entry(&mut |_| false).unwrap().unwrap();
        assert_eq!(
            (b.db, b.key.as_slice(), b.expire_at_ms, b.payload),
            (3, &b"b"[..], Some(1_700_000_000_000), None)
        );
        assert!(r.next_entry(&mut |_| true).unwrap().is_none());
    }

    #[test]
    fn truncated_and_corrupted_streams_fail() {
        let data = stream();
        for cut in [data.len() - 1, data.len() - 9, 20] {
            let mut r = KeysReader::new(&data[..cut]).unwrap();
            let err = std::iter::from_fn(|| Some(r.next_entry(&mut |_| true)))
                .find_map(|r| match r {
                    Err(e) => Some(e),
                    Ok(None) => panic!("a stream cut at {cut} was accepted"),
                    Ok(Some(_)) => None,
                })
                .unwrap();
            assert!(format!("{err:#}").contains("truncated"), "{err:#}");
        }
        let mut bad = data.clone();
        let at = bad.len() - 15;
        bad[at] ^= 0xff;
        let mut r = KeysReader::new(&bad[..]).unwrap();
        let result: Result<Vec<_>> =
            std::iter::from_fn(|| r.next_entry(&mut |_| true).transpose()).collect();
        assert!(result.is_err());
    }
}
