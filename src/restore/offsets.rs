//! Data offsets for a custom-format archive that `pg_dump` wrote into a pipe.
//!
//! `dr backup` runs `pg_dump --format=custom` into a pipe, so pg_dump cannot seek back to
//! fill in the table of contents with the position of each table's data: every entry says
//! "position not set". `pg_restore --jobs N` then has no size estimate per table (so no
//! largest-first scheduling) and each worker must read forward through other tables' data
//! to find its own. While a restore stages the archive, [`OffsetRecorder`] follows the
//! bytes on their way to disk: it reads the header and the table of contents, then the
//! framing of the data blocks (block type, dump id, chunk lengths; chunk contents are
//! skipped), and records where each block starts. Once the file is complete,
//! [`TocOffsets::write_into`] writes those positions into the table of contents in place:
//! every offset field has a fixed size, so nothing moves. The result is what `pg_dump -Fc
//! -f FILE` would have written, for old backups as well as new ones.
//!
//! Anything unexpected (an archive version this code does not know, framing that does not
//! add up) stops the recording: the archive is then restored as pg_dump wrote it, which is
//! correct, only slower in parallel.

use std::io::Write;

/// The format versions whose table of contents this code reads: 1.12 (PostgreSQL 9.x)
/// to 1.16 (17 and later).
const OLDEST: (u8, u8) = (1, 12);
const NEWEST: (u8, u8) = (1, 16);
/// `archCustom` in pg_backup.h.
const FORMAT_CUSTOM: u8 = 1;
/// Block types of the data area (pg_backup_custom.c).
const BLK_DATA: u8 = 1;
const BLK_BLOBS: u8 = 3;
/// Offset field states (pg_backup_archiver.h).
const OFFSET_POS_NOT_SET: u8 = 1;
const OFFSET_POS_SET: u8 = 2;
/// A table of contents larger than this is not read (the restore goes on without offsets):
/// it would all be held in memory.
const MAX_TOC_BYTES: usize = 64 << 20;

/// One entry of the table of contents: where its offset field lies and what it said.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TocSlot {
    dump_id: i64,
    /// Position of the field's flag byte in the archive.
    field_at: u64,
    flag: u8,
}

#[derive(Debug, Clone)]
struct Toc {
    int_size: usize,
    off_size: usize,
    slots: Vec<TocSlot>,
}

/// A parse that ran out of bytes, or found something it cannot follow.
#[derive(Debug)]
enum Short {
    NeedMore,
    Unsupported(String),
}

/// Reads header and table of contents from the start of an archive.
struct HeadReader<'a> {
    bytes: &'a [u8],
    at: usize,
    int_size: usize,
}

impl HeadReader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Short> {
        let end = self.at.checked_add(n).ok_or(Short::NeedMore)?;
        if end > self.bytes.len() {
            return Err(Short::NeedMore);
        }
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, Short> {
        Ok(self.take(1)?[0])
    }

    fn int(&mut self) -> Result<i64, Short> {
        let n = self.int_size;
        let raw = self.take(1 + n)?;
        Ok(decode_int(raw))
    }

    /// A string; its length only matters (None for pg_dump's NULL).
    fn skip_str(&mut self) -> Result<Option<usize>, Short> {
        let len = self.int()?;
        if len < 0 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| Short::Unsupported("string length".into()))?;
        if len > MAX_TOC_BYTES {
            return Err(Short::Unsupported(format!("a {len}-byte string")));
        }
        self.take(len)?;
        Ok(Some(len))
    }
}

/// pg_dump's integer: a sign byte, then `int_size` bytes, least significant first.
fn decode_int(raw: &[u8]) -> i64 {
    let mut value: i64 = 0;
    for (i, b) in raw[1..].iter().enumerate().take(8) {
        value |= i64::from(*b) << (8 * i);
    }
    if raw[0] != 0 {
        -value
    } else {
        value
    }
}

/// Parses header and table of contents; returns them and the position where data begins.
fn parse_head(bytes: &[u8]) -> Result<(Toc, usize), Short> {
    let mut r = HeadReader {
        bytes,
        at: 0,
        int_size: 4,
    };
    if r.take(5)? != b"PGDMP" {
        return Err(Short::Unsupported("no PGDMP magic".into()));
    }
    let version = (r.byte()?, r.byte()?);
    let _revision = r.byte()?;
    if version < OLDEST || version > NEWEST {
        return Err(Short::Unsupported(format!(
            "archive format {}.{}",
            version.0, version.1
        )));
    }
    let int_size = r.byte()? as usize;
    let off_size = r.byte()? as usize;
    if !(1..=8).contains(&int_size) || !(1..=8).contains(&off_size) {
        return Err(Short::Unsupported(format!(
            "integer size {int_size}, offset size {off_size}"
        )));
    }
    r.int_size = int_size;
    if r.byte()? != FORMAT_CUSTOM {
        return Err(Short::Unsupported("not the custom format".into()));
    }
    // Compression: an algorithm byte from 1.15, a zlib level before.
    if version >= (1, 15) {
        r.byte()?;
    } else {
        r.int()?;
    }
    // Creation time (7 integers), database name, server and pg_dump versions.
    for _ in 0..7 {
        r.int()?;
    }
    for _ in 0..3 {
        r.skip_str()?;
    }
    let count = r.int()?;
    if !(0..=10_000_000).contains(&count) {
        return Err(Short::Unsupported(format!("{count} TOC entries")));
    }
    let mut slots = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let dump_id = r.int()?;
        if dump_id <= 0 {
            return Err(Short::Unsupported(format!("TOC entry id {dump_id}")));
        }
        let _had_dumper = r.int()?;
        // tableoid, oid, tag, desc
        for _ in 0..4 {
            r.skip_str()?;
        }
        let _section = r.int()?;
        // defn, dropStmt, copyStmt, namespace, tablespace
        for _ in 0..5 {
            r.skip_str()?;
        }
        if version >= (1, 14) {
            r.skip_str()?; // tableam
        }
        if version >= (1, 16) {
            r.int()?; // relkind
        }
        r.skip_str()?; // owner
        r.skip_str()?; // "false" (WITH OIDS, long gone)
        while r.skip_str()?.is_some() {} // dependencies, up to a NULL
        let field_at = r.at as u64;
        let flag = r.byte()?;
        if !(1..=3).contains(&flag) {
            return Err(Short::Unsupported(format!(
                "offset flag {flag} in TOC entry {dump_id}"
            )));
        }
        r.take(off_size)?;
        slots.push(TocSlot {
            dump_id,
            field_at,
            flag,
        });
    }
    Ok((
        Toc {
            int_size,
            off_size,
            slots,
        },
        r.at,
    ))
}

/// What the data-area reader expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The table of contents is still arriving.
    Head,
    /// A block type byte, or the end of the archive.
    BlockType,
    BlockId {
        blobs: bool,
        started_at: u64,
    },
    /// A chunk length; 0 ends the block (or, in a blobs block, the large object).
    ChunkLen {
        blobs: bool,
    },
    /// In a blobs block: the next large object's OID, 0 ending the block.
    BlobOid,
    Stopped,
}

/// Follows an archive's bytes in order and records where each data block starts.
pub struct OffsetScanner {
    pos: u64,
    expect: Expect,
    head: Vec<u8>,
    next_attempt: usize,
    toc: Option<Toc>,
    /// (dump id, position of its block) in archive order.
    blocks: Vec<(i64, u64)>,
    /// Bytes of a chunk still to pass over.
    skip: u64,
    /// A field split across writes.
    field: Vec<u8>,
    stopped: Option<String>,
}

impl Default for OffsetScanner {
    fn default() -> Self {
        OffsetScanner {
            pos: 0,
            expect: Expect::Head,
            head: Vec::new(),
            next_attempt: 4096,
            toc: None,
            blocks: Vec::new(),
            skip: 0,
            field: Vec::with_capacity(16),
            stopped: None,
        }
    }
}

impl OffsetScanner {
    fn stop(&mut self, why: String) {
        if self.stopped.is_none() {
            tracing::debug!("data offsets not recorded: {why}");
            self.stopped = Some(why);
        }
        self.expect = Expect::Stopped;
        self.head = Vec::new();
    }

    /// Takes the next bytes of the archive.
    pub fn feed(&mut self, data: &[u8]) {
        if self.expect == Expect::Head {
            self.head.extend_from_slice(data);
            if self.head.len() < self.next_attempt {
                return;
            }
            self.try_head();
            return;
        }
        self.feed_data(data);
    }

    fn try_head(&mut self) {
        match parse_head(&self.head) {
            Ok((toc, data_start)) => {
                let head = std::mem::take(&mut self.head);
                self.toc = Some(toc);
                self.expect = Expect::BlockType;
                self.pos = data_start as u64;
                self.feed_data(&head[data_start..]);
            }
            Err(Short::NeedMore) if self.head.len() > MAX_TOC_BYTES => self.stop(format!(
                "the table of contents is larger than {} MiB",
                MAX_TOC_BYTES >> 20
            )),
            Err(Short::NeedMore) => self.next_attempt = self.head.len() * 2,
            Err(Short::Unsupported(why)) => self.stop(why),
        }
    }

    fn int_len(&self) -> usize {
        1 + self.toc.as_ref().map_or(4, |t| t.int_size)
    }

    fn feed_data(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.expect == Expect::Stopped {
                return;
            }
            if self.skip > 0 {
                let n = self.skip.min(data.len() as u64);
                self.skip -= n;
                self.pos += n;
                data = &data[n as usize..];
                continue;
            }
            if self.expect == (Expect::ChunkLen { blobs: false }) && self.field.is_empty() {
                // The hot loop: one chunk per row of COPY data. Hop from length to length
                // while the lengths are whole in `data`; anything else takes the long way.
                let int_len = self.int_len();
                let mut at = 0usize;
                while at + int_len <= data.len() {
                    let len = decode_int(&data[at..at + int_len]);
                    if len <= 0 {
                        break;
                    }
                    at += int_len;
                    let body = (len as u64).min((data.len() - at) as u64) as usize;
                    self.skip = len as u64 - body as u64;
                    at += body;
                    if self.skip > 0 {
                        break;
                    }
                }
                self.pos += at as u64;
                data = &data[at..];
                if at > 0 {
                    continue;
                }
            }
            let want = match self.expect {
                Expect::BlockType => 1,
                _ => self.int_len(),
            };
            // Fast path: the whole field is here and none is pending.
            let field_start = self.pos - self.field.len() as u64;
            let taken;
            let value: i64;
            if self.field.is_empty() && data.len() >= want {
                value = field_value(&data[..want], self.expect);
                taken = want;
            } else {
                let n = (want - self.field.len()).min(data.len());
                self.field.extend_from_slice(&data[..n]);
                taken = n;
                if self.field.len() < want {
                    self.pos += n as u64;
                    return;
                }
                value = field_value(&self.field, self.expect);
                self.field.clear();
            }
            self.pos += taken as u64;
            data = &data[taken..];
            self.advance(value, field_start);
        }
    }

    fn advance(&mut self, value: i64, field_start: u64) {
        self.expect = match self.expect {
            Expect::BlockType => match value as u8 {
                BLK_DATA => Expect::BlockId {
                    blobs: false,
                    started_at: field_start,
                },
                BLK_BLOBS => Expect::BlockId {
                    blobs: true,
                    started_at: field_start,
                },
                other => return self.stop(format!("unknown block type {other}")),
            },
            Expect::BlockId { blobs, started_at } => {
                self.blocks.push((value, started_at));
                if blobs {
                    Expect::BlobOid
                } else {
                    Expect::ChunkLen { blobs: false }
                }
            }
            Expect::ChunkLen { blobs } => match value {
                0 if blobs => Expect::BlobOid,
                0 => Expect::BlockType,
                n if n > 0 => {
                    self.skip = n as u64;
                    Expect::ChunkLen { blobs }
                }
                n => return self.stop(format!("chunk length {n}")),
            },
            Expect::BlobOid => match value {
                0 => Expect::BlockType,
                _ => Expect::ChunkLen { blobs: true },
            },
            Expect::Head | Expect::Stopped => Expect::Stopped,
        };
    }

    /// Called at the end of the archive: the offsets to write, or None (with the reason
    /// logged) when the archive could not be followed to its end.
    pub fn finish(mut self) -> Option<TocOffsets> {
        if self.expect == Expect::Head {
            self.try_head();
        }
        if self.stopped.is_some() {
            return None;
        }
        if self.expect != Expect::BlockType || !self.field.is_empty() || self.skip > 0 {
            self.stop("the archive ends inside a data block".into());
            return None;
        }
        let toc = self.toc.take()?;
        let mut patches = Vec::new();
        for (dump_id, at) in &self.blocks {
            let Some(slot) = toc.slots.iter().find(|s| s.dump_id == *dump_id) else {
                self.stop(format!("a data block for unknown entry {dump_id}"));
                return None;
            };
            if slot.flag == OFFSET_POS_NOT_SET {
                patches.push((slot.field_at, *at));
            }
        }
        Some(TocOffsets {
            off_size: toc.off_size,
            patches,
            blocks: self.blocks.len(),
        })
    }
}

fn field_value(raw: &[u8], expect: Expect) -> i64 {
    match expect {
        Expect::BlockType => i64::from(raw[0]),
        _ => decode_int(raw),
    }
}

/// The offsets to write into a staged archive's table of contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TocOffsets {
    off_size: usize,
    /// (position of the offset field, position of the data block)
    patches: Vec<(u64, u64)>,
    /// Data blocks seen.
    pub blocks: usize,
}

impl TocOffsets {
    /// Entries whose offset this fills in (0 for an archive that had them already).
    pub fn filled(&self) -> usize {
        self.patches.len()
    }

    /// Writes the offsets into the archive at `file`, in place.
    pub fn write_into(&self, file: &std::fs::File) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        for (field_at, block_at) in &self.patches {
            file.write_all_at(&self.field(*block_at), *field_at)?;
        }
        Ok(())
    }

    /// A set offset field: the flag, then the position least significant byte first.
    fn field(&self, block_at: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.off_size);
        out.push(OFFSET_POS_SET);
        out.extend((0..self.off_size).map(|i| {
            if i < 8 {
                (block_at >> (8 * i)) as u8
            } else {
                0
            }
        }));
        out
    }
}

/// A writer that passes everything to `inner` and records the data offsets on the way;
/// the scanner is shared, so it can be taken back once the writer was handed off and dropped.
pub struct OffsetRecorder<W> {
    inner: W,
    scanner: std::sync::Arc<std::sync::Mutex<OffsetScanner>>,
}

impl<W: Write> OffsetRecorder<W> {
    pub fn new(inner: W) -> Self {
        OffsetRecorder {
            inner,
            scanner: Default::default(),
        }
    }

    /// The scanner, to be finished once every byte was written.
    pub fn scanner(&self) -> std::sync::Arc<std::sync::Mutex<OffsetScanner>> {
        self.scanner.clone()
    }
}

impl<W: Write> Write for OffsetRecorder<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.scanner
            .lock()
            .expect("the scanner lock is never poisoned")
            .feed(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Takes the scanner out of its shared handle (leaving an empty one) and finishes it.
pub fn finish_shared(
    scanner: &std::sync::Arc<std::sync::Mutex<OffsetScanner>>,
) -> Option<TocOffsets> {
    let taken = std::mem::take(&mut *scanner.lock().expect("not poisoned"));
    taken.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real archives, written by pg_dump 15 with `--format=custom --compress=0` to a file
    /// (so with offsets): a few tables, an empty one, and two large objects.
    const WITH_OFFSETS: &[u8] = include_bytes!("testdata/offsets.pgdump");

    /// The archive with every set offset turned back into "not set", as a pipe leaves it.
    fn as_from_a_pipe(archive: &[u8]) -> Vec<u8> {
        let (toc, _) = parse_head(archive).expect("a readable TOC");
        let mut out = archive.to_vec();
        for slot in &toc.slots {
            if slot.flag == OFFSET_POS_SET {
                let at = slot.field_at as usize;
                out[at] = OFFSET_POS_NOT_SET;
                out[at + 1..at + 1 + toc.off_size].fill(0);
            }
        }
        out
    }

    fn scan_in_pieces(archive: &[u8], piece: usize) -> Option<TocOffsets> {
        let mut scanner = OffsetScanner::default();
        for chunk in archive.chunks(piece) {
            scanner.feed(chunk);
        }
        scanner.finish()
    }

    #[test]
    fn offsets_found_in_the_stream_are_those_pg_dump_writes() {
        let piped = as_from_a_pipe(WITH_OFFSETS);
        assert_ne!(piped, WITH_OFFSETS, "the fixture has offsets to remove");
        for piece in [1, 2, 3, 7, 4096, 1 << 20] {
            let offsets = scan_in_pieces(&piped, piece).expect("offsets");
            assert!(offsets.filled() >= 3, "{offsets:?}");
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("a.pgdump");
            std::fs::write(&path, &piped).unwrap();
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            offsets.write_into(&file).unwrap();
            assert!(
                std::fs::read(&path).unwrap() == WITH_OFFSETS,
                "pieces of {piece} bytes: the patched archive differs from pg_dump's own"
            );
        }
    }

    #[test]
    fn an_archive_with_offsets_needs_none() {
        let offsets = scan_in_pieces(WITH_OFFSETS, 4096).expect("offsets");
        assert_eq!(offsets.filled(), 0);
        assert!(offsets.blocks >= 3);
    }

    #[test]
    fn anything_unexpected_records_nothing() {
        let piped = as_from_a_pipe(WITH_OFFSETS);
        // Cut short inside the data.
        assert!(scan_in_pieces(&piped[..piped.len() - 3], 4096).is_none());
        // Cut inside the table of contents.
        assert!(scan_in_pieces(&piped[..200], 64).is_none());
        // Not an archive.
        assert!(scan_in_pieces(b"-- plain SQL\nSELECT 1;\n", 4096).is_none());
        // A format version this code does not know.
        let mut future = piped.clone();
        future[6] = 99;
        assert!(scan_in_pieces(&future, 4096).is_none());
        // A data block of an entry the TOC does not have.
        let mut recorder = OffsetRecorder::new(Vec::new());
        let scanner = recorder.scanner();
        recorder.write_all(&piped).unwrap();
        assert!(finish_shared(&scanner).is_some());
        let mut recorder = OffsetRecorder::new(Vec::new());
        let scanner = recorder.scanner();
        recorder.write_all(&piped).unwrap();
        recorder
            .write_all(&[BLK_DATA, 0, 0x7f, 0x7f, 0, 0, 0, 0, 0, 0, 0])
            .unwrap();
        assert_eq!(recorder.inner.len(), piped.len() + 11);
        assert!(finish_shared(&scanner).is_none());
    }
}
