//! Restaging a custom-format archive that `pg_dump` wrote into a pipe, for `pg_restore`.
//!
//! `dr backup` runs `pg_dump --format=custom --compress=0` into a pipe, which leaves two
//! things slow for `pg_restore`:
//! - pg_dump cannot seek back to fill in the table of contents with the position of each
//!   table's data: every entry says "position not set". `pg_restore --jobs N` then has no
//!   size estimate per table (so no largest-first scheduling) and each worker must read
//!   forward through other tables' data to find its own;
//! - without compression pg_dump writes one chunk per row, and pg_restore passes each chunk
//!   to the server in a call of its own.
//!
//! [`ArchiveRewriter`] follows the archive on its way to the staging file (or to
//! `pg_restore`'s stdin): it reads the header and the table of contents, then the framing
//! of the data blocks, joins each table's rows into large chunks and records where each
//! block starts. Once the file is complete, [`TocOffsets::write_into`] writes those
//! positions into the table of contents in place (every offset field has a fixed size).
//! The rows are the same bytes, for backups taken by any dr version.
//!
//! Anything unexpected (an archive version this code does not know, framing that does not
//! add up) makes the rest go through unchanged and no offsets be written: the archive is
//! then restored as pg_dump wrote it, which is correct, only slower.

use std::io::Write;

/// The format versions whose table of contents this code reads: 1.12 (PostgreSQL 9.x)
/// to 1.16 (17 and later).
const OLDEST: (u8, u8) = (1, 12);
const NEWEST: (u8, u8) = (1, 16);
/// `archCustom` in pg_backup.h.
const FORMAT_CUSTOM: u8 = 1;
/// Block types of the data area (pg_backup_custom.c).
pub(crate) const BLK_DATA: u8 = 1;
pub(crate) const BLK_BLOBS: u8 = 3;
/// Offset field states (pg_backup_archiver.h).
const OFFSET_POS_NOT_SET: u8 = 1;
const OFFSET_POS_SET: u8 = 2;
/// A table of contents larger than this is not read (the restore goes on without offsets):
/// it would all be held in memory.
const MAX_TOC_BYTES: usize = 64 << 20;

/// One entry of the table of contents: where its offset field lies and what it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TocSlot {
    pub dump_id: i64,
    /// Position of the field's flag byte in the archive.
    field_at: u64,
    flag: u8,
    /// The entry has a data block (pg_dump ran a "dumper" for it).
    pub had_dumper: bool,
    /// `TABLE DATA`, `BLOBS`, `INDEX`...
    pub desc: String,
    /// `COPY schema.table (columns) FROM stdin;` for table data.
    pub copy_stmt: Option<String>,
    /// The entry's SQL: for `ENCODING`, the `SET client_encoding` of the dump.
    pub defn: Option<String>,
}

/// Header and table of contents of a custom-format archive.
#[derive(Debug, Clone)]
pub struct Toc {
    pub int_size: usize,
    off_size: usize,
    /// The data blocks hold zlib (or lz4, zstd) streams, not plain rows.
    pub compressed: bool,
    pub slots: Vec<TocSlot>,
}

impl Toc {
    /// The client encoding the dump was written in (`SET client_encoding = 'UTF8';`).
    pub fn encoding(&self) -> Option<String> {
        let defn = self
            .slots
            .iter()
            .find(|s| s.desc == "ENCODING")?
            .defn
            .as_deref()?;
        let quoted = defn.split('\'').nth(1)?;
        Some(quoted.to_string())
    }

    /// Offsets that point each of `blocks` (dump id, position of its data block in a file
    /// that starts with this table of contents) at its block; entries not listed keep
    /// theirs. None when an id is not in the table of contents.
    pub fn offsets_for(&self, blocks: &[(i64, u64)]) -> Option<TocOffsets> {
        let mut patches = Vec::with_capacity(blocks.len());
        for (dump_id, at) in blocks {
            let slot = self.slots.iter().find(|s| s.dump_id == *dump_id)?;
            patches.push((slot.field_at, *at));
        }
        Some(TocOffsets {
            off_size: self.off_size,
            patches,
            blocks: blocks.len(),
        })
    }
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

    /// A string, kept (lossily as UTF-8: only ASCII keywords and statements are read).
    fn string(&mut self) -> Result<Option<String>, Short> {
        Ok(self
            .skip_str()?
            .map(|len| String::from_utf8_lossy(&self.bytes[self.at - len..self.at]).into_owned()))
    }
}

/// pg_dump's integer: a sign byte, then `int_size` bytes, least significant first.
pub(crate) fn decode_int(raw: &[u8]) -> i64 {
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
/// `Ok(None)` when `bytes` ends before the table of contents does; an error names what is
/// not understood.
pub fn read_head(bytes: &[u8]) -> Result<Option<(Toc, usize)>, String> {
    match parse_head(bytes) {
        Ok(found) => Ok(Some(found)),
        Err(Short::NeedMore) if bytes.len() > MAX_TOC_BYTES => Err(format!(
            "the table of contents is larger than {} MiB",
            MAX_TOC_BYTES >> 20
        )),
        Err(Short::NeedMore) => Ok(None),
        Err(Short::Unsupported(why)) => Err(why),
    }
}

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
    // Compression: an algorithm byte from 1.15, a zlib level before; 0 is none.
    let compressed = if version >= (1, 15) {
        r.byte()? != 0
    } else {
        r.int()? != 0
    };
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
        let had_dumper = r.int()? != 0;
        // tableoid, oid, tag
        for _ in 0..3 {
            r.skip_str()?;
        }
        let desc = r.string()?.unwrap_or_default();
        let _section = r.int()?;
        // The definition is kept for the one entry read later (it can be long elsewhere).
        let defn = if desc == "ENCODING" {
            r.string()?
        } else {
            r.skip_str()?;
            None
        };
        r.skip_str()?; // dropStmt
        let copy_stmt = r.string()?.filter(|s| !s.is_empty());
        r.skip_str()?; // namespace
        r.skip_str()?; // tablespace
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
            had_dumper,
            desc,
            copy_stmt,
            defn,
        });
    }
    Ok((
        Toc {
            int_size,
            off_size,
            compressed,
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
    },
    /// A chunk length; 0 ends the block (or, in a blobs block, the large object).
    ChunkLen {
        blobs: bool,
    },
    /// In a blobs block: the next large object's OID, 0 ending the block.
    BlobOid,
    /// Something unexpected: the rest goes through as it is.
    Verbatim,
}

/// Chunks of a table's data are joined up to this size. `pg_dump --compress=0` writes one
/// chunk per row, and `pg_restore` hands each chunk to the server in a call of its own
/// (`PQputCopyData`): millions of calls for millions of rows, slower than restoring the
/// zlib archive of `pg_dump -Fc`, which it inflates 4 KiB at a time. COPY data may be split
/// anywhere, so joined chunks restore the same rows.
const JOINED_CHUNK: usize = 256 << 10;

/// Rewrites a custom-format archive on its way to `out`, so that `pg_restore` reads it
/// faster: each table's rows in chunks of [`JOINED_CHUNK`] instead of one per row, and the
/// position of each data block recorded for [`TocOffsets::write_into`]. The rows are the
/// same bytes; only the framing changes. Anything it cannot follow goes through unchanged
/// from that point on, and then no offsets are written.
pub struct ArchiveRewriter<W: Write> {
    out: W,
    /// Bytes written to `out`.
    out_pos: u64,
    expect: Expect,
    head: Vec<u8>,
    next_attempt: usize,
    toc: Option<Toc>,
    /// Join chunks: the data is uncompressed and no entry has an offset already (an
    /// offset written by pg_dump would point into the old framing).
    join: bool,
    /// (dump id, position of its block in the output) in archive order.
    blocks: Vec<(i64, u64)>,
    /// Bytes of the current chunk's body still to come.
    skip: u64,
    /// A field split across writes.
    field: Vec<u8>,
    /// Rows gathered for the next joined chunk.
    joined: Vec<u8>,
    /// The current block's framing is copied as it is (large objects, or no joining).
    as_is: bool,
    stopped: Option<String>,
}

impl<W: Write> ArchiveRewriter<W> {
    pub fn new(out: W) -> Self {
        Self::with_joining(out, true)
    }

    fn with_joining(out: W, join: bool) -> Self {
        ArchiveRewriter {
            out,
            out_pos: 0,
            expect: Expect::Head,
            head: Vec::new(),
            next_attempt: 4096,
            toc: None,
            join,
            blocks: Vec::new(),
            skip: 0,
            field: Vec::with_capacity(16),
            joined: Vec::new(),
            as_is: true,
            stopped: None,
        }
    }

    fn emit(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        self.out_pos += bytes.len() as u64;
        Ok(())
    }

    fn emit_int(&mut self, value: u64) -> std::io::Result<()> {
        let int_size = self.toc.as_ref().map_or(4, |t| t.int_size);
        let mut raw = Vec::with_capacity(1 + int_size);
        raw.push(0);
        raw.extend((0..int_size).map(|i| if i < 8 { (value >> (8 * i)) as u8 } else { 0 }));
        self.emit(&raw)
    }

    /// Writes the joined rows as one chunk.
    fn flush_joined(&mut self) -> std::io::Result<()> {
        if self.joined.is_empty() {
            return Ok(());
        }
        let joined = std::mem::take(&mut self.joined);
        self.emit_int(joined.len() as u64)?;
        self.emit(&joined)?;
        self.joined = joined;
        self.joined.clear();
        Ok(())
    }

    /// From here on everything goes through unchanged; no offsets will be written.
    fn stop(&mut self, why: String) -> std::io::Result<()> {
        tracing::debug!(
            "archive passed through unchanged from byte {}: {why}",
            self.out_pos
        );
        self.stopped.get_or_insert(why);
        self.flush_joined()?;
        if !self.head.is_empty() {
            let head = std::mem::take(&mut self.head);
            self.emit(&head)?;
        }
        self.expect = Expect::Verbatim;
        Ok(())
    }

    fn try_head(&mut self) -> std::io::Result<()> {
        match parse_head(&self.head) {
            Ok((toc, data_start)) => {
                let head = std::mem::take(&mut self.head);
                self.join &= !toc.compressed && toc.slots.iter().all(|s| s.flag != OFFSET_POS_SET);
                self.toc = Some(toc);
                self.expect = Expect::BlockType;
                self.emit(&head[..data_start])?;
                self.feed(&head[data_start..])
            }
            Err(Short::NeedMore) if self.head.len() > MAX_TOC_BYTES => self.stop(format!(
                "the table of contents is larger than {} MiB",
                MAX_TOC_BYTES >> 20
            )),
            Err(Short::NeedMore) => {
                self.next_attempt = self.head.len() * 2;
                Ok(())
            }
            Err(Short::Unsupported(why)) => self.stop(why),
        }
    }

    fn int_len(&self) -> usize {
        1 + self.toc.as_ref().map_or(4, |t| t.int_size)
    }

    fn feed(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            match self.expect {
                Expect::Verbatim => return self.emit(data),
                Expect::Head => {
                    self.head.extend_from_slice(data);
                    if self.head.len() >= self.next_attempt {
                        self.try_head()?;
                    }
                    return Ok(());
                }
                _ => {}
            }
            if self.skip > 0 {
                let n = self.skip.min(data.len() as u64) as usize;
                self.skip -= n as u64;
                if self.as_is {
                    self.emit(&data[..n])?;
                } else {
                    // A long row may be split: COPY data may break anywhere.
                    self.joined.extend_from_slice(&data[..n]);
                    if self.joined.len() >= JOINED_CHUNK {
                        self.flush_joined()?;
                    }
                }
                data = &data[n..];
                continue;
            }
            if self.expect == (Expect::ChunkLen { blobs: false }) && self.field.is_empty() {
                // The hot loop: one chunk per row. Hop from length to length while they are
                // whole in `data`; anything else takes the long way below.
                let int_len = self.int_len();
                let mut at = 0usize;
                while at + int_len <= data.len() {
                    let len = decode_int(&data[at..at + int_len]);
                    if len <= 0 {
                        break;
                    }
                    let body = (len as u64).min((data.len() - at - int_len) as u64) as usize;
                    let end = at + int_len + body;
                    if self.as_is {
                        self.emit(&data[at..end])?;
                    } else {
                        self.joined.extend_from_slice(&data[at + int_len..end]);
                        if self.joined.len() >= JOINED_CHUNK {
                            self.flush_joined()?;
                        }
                    }
                    self.skip = len as u64 - body as u64;
                    at = end;
                    if self.skip > 0 {
                        break;
                    }
                }
                data = &data[at..];
                if at > 0 {
                    continue;
                }
            }
            let want = match self.expect {
                Expect::BlockType => 1,
                _ => self.int_len(),
            };
            let raw: Vec<u8>;
            let field: &[u8] = if self.field.is_empty() && data.len() >= want {
                let (f, rest) = data.split_at(want);
                data = rest;
                f
            } else {
                let n = (want - self.field.len()).min(data.len());
                self.field.extend_from_slice(&data[..n]);
                data = &data[n..];
                if self.field.len() < want {
                    return Ok(());
                }
                raw = std::mem::take(&mut self.field);
                &raw
            };
            self.advance(field)?;
        }
        Ok(())
    }

    /// Acts on one whole field of the data area: writes what belongs in the output and
    /// moves on.
    fn advance(&mut self, raw: &[u8]) -> std::io::Result<()> {
        let value = match self.expect {
            Expect::BlockType => i64::from(raw[0]),
            _ => decode_int(raw),
        };
        let next = match self.expect {
            Expect::BlockType => match raw[0] {
                BLK_DATA => {
                    self.as_is = !self.join;
                    Expect::BlockId { blobs: false }
                }
                BLK_BLOBS => {
                    self.as_is = true;
                    Expect::BlockId { blobs: true }
                }
                other => {
                    self.stop(format!("unknown block type {other}"))?;
                    return self.emit(raw);
                }
            },
            Expect::BlockId { blobs } => {
                // The block starts at its type byte, just written.
                self.blocks.push((value, self.out_pos - 1));
                if blobs {
                    Expect::BlobOid
                } else {
                    Expect::ChunkLen { blobs: false }
                }
            }
            Expect::ChunkLen { blobs } => match value {
                0 => {
                    self.flush_joined()?;
                    if blobs {
                        Expect::BlobOid
                    } else {
                        Expect::BlockType
                    }
                }
                n if n > 0 => {
                    self.skip = n as u64;
                    if !self.as_is {
                        // The length is not copied: the joined chunk gets its own.
                        return Ok(());
                    }
                    Expect::ChunkLen { blobs }
                }
                n => {
                    self.stop(format!("chunk length {n}"))?;
                    return self.emit(raw);
                }
            },
            Expect::BlobOid => match value {
                0 => Expect::BlockType,
                _ => Expect::ChunkLen { blobs: true },
            },
            Expect::Head | Expect::Verbatim => unreachable!("no fields in these states"),
        };
        self.expect = next;
        self.emit(raw)
    }

    /// Ends the archive: everything is written to the output, which is handed back with the
    /// offsets to write into it, or None (the reason logged) when the archive could not be
    /// followed to its end.
    pub fn finish(mut self) -> std::io::Result<(W, Option<TocOffsets>)> {
        if self.expect == Expect::Head {
            self.try_head()?;
            if self.expect == Expect::Head {
                self.stop("the archive ends inside its table of contents".into())?;
            }
        }
        if self.expect != Expect::Verbatim
            && (self.expect != Expect::BlockType || !self.field.is_empty() || self.skip > 0)
        {
            self.stop("the archive ends inside a data block".into())?;
        }
        if !self.field.is_empty() {
            let field = std::mem::take(&mut self.field);
            self.emit(&field)?;
        }
        self.out.flush()?;
        let offsets = match (&self.stopped, &self.toc) {
            (None, Some(toc)) => self.offsets(toc),
            _ => None,
        };
        Ok((self.out, offsets))
    }

    fn offsets(&self, toc: &Toc) -> Option<TocOffsets> {
        let mut patches = Vec::new();
        for (dump_id, at) in &self.blocks {
            let Some(slot) = toc.slots.iter().find(|s| s.dump_id == *dump_id) else {
                tracing::debug!("no offsets written: a data block for unknown entry {dump_id}");
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

impl<W: Write> Write for ArchiveRewriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.feed(buf)?;
        Ok(buf.len())
    }

    /// Flushes what is complete; the joined rows of an unfinished chunk wait for
    /// [`ArchiveRewriter::finish`].
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// `std::io::copy` with a 256 KiB buffer instead of 8 KiB: fewer passes through the
/// rewriter for the gigabytes of a large archive.
pub fn copy_large(from: &mut dyn std::io::Read, to: &mut dyn Write) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A real archive, written by pg_dump 15 with `--format=custom --compress=0` to a file
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

    /// Rewrites `archive` fed in pieces of `piece` bytes, and writes the offsets into the
    /// result as a staged file gets them.
    fn rewrite(archive: &[u8], piece: usize, join: bool) -> (Vec<u8>, Option<TocOffsets>) {
        let mut rewriter = ArchiveRewriter::with_joining(Vec::new(), join);
        for chunk in archive.chunks(piece) {
            rewriter.write_all(chunk).unwrap();
        }
        let (out, offsets) = rewriter.finish().unwrap();
        let Some(o) = &offsets else {
            return (out, offsets);
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.pgdump");
        std::fs::write(&path, &out).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        o.write_into(&file).unwrap();
        (std::fs::read(&path).unwrap(), offsets)
    }

    /// (dump id, concatenated chunk bodies) of every data block, read from the framing.
    fn block_contents(archive: &[u8]) -> Vec<(i64, Vec<u8>)> {
        let (toc, start) = parse_head(archive).unwrap();
        let int_len = 1 + toc.int_size;
        let int = |at: usize| decode_int(&archive[at..at + int_len]);
        let mut out = Vec::new();
        let mut at = start;
        while at < archive.len() {
            let blobs = archive[at] == BLK_BLOBS;
            let id = int(at + 1);
            at += 1 + int_len;
            let mut body = Vec::new();
            loop {
                if blobs {
                    let oid = int(at);
                    at += int_len;
                    if oid == 0 {
                        break;
                    }
                    body.extend_from_slice(format!("<{oid}>").as_bytes());
                }
                loop {
                    let len = int(at) as usize;
                    at += int_len;
                    if len == 0 {
                        break;
                    }
                    body.extend_from_slice(&archive[at..at + len]);
                    at += len;
                }
                if !blobs {
                    break;
                }
            }
            out.push((id, body));
        }
        out
    }

    #[test]
    fn offsets_found_in_the_stream_are_those_pg_dump_writes() {
        let piped = as_from_a_pipe(WITH_OFFSETS);
        assert_ne!(piped, WITH_OFFSETS, "the fixture has offsets to remove");
        for piece in [1, 2, 3, 7, 4096, 1 << 20] {
            let (patched, offsets) = rewrite(&piped, piece, false);
            assert!(offsets.unwrap().filled() >= 3);
            assert!(
                patched == WITH_OFFSETS,
                "pieces of {piece} bytes: the patched archive differs from pg_dump's own"
            );
        }
    }

    #[test]
    fn joined_rows_are_the_same_bytes_with_offsets_that_point_at_their_blocks() {
        let piped = as_from_a_pipe(WITH_OFFSETS);
        let original = block_contents(&piped);
        for piece in [1, 5, 4096, 1 << 20] {
            let (joined, offsets) = rewrite(&piped, piece, true);
            assert!(joined.len() < piped.len(), "fewer chunk headers");
            assert_eq!(block_contents(&joined), original, "pieces of {piece}");
            // Every offset points at the type byte of its own entry's block.
            let (toc, _) = parse_head(&joined).unwrap();
            let mut checked = 0;
            for slot in toc.slots.iter().filter(|s| s.flag == OFFSET_POS_SET) {
                let field = slot.field_at as usize + 1;
                let mut at = 0usize;
                for i in 0..toc.off_size {
                    at |= (joined[field + i] as usize) << (8 * i);
                }
                assert!(matches!(joined[at], BLK_DATA | BLK_BLOBS));
                assert_eq!(
                    decode_int(&joined[at + 1..at + 1 + 1 + toc.int_size]),
                    slot.dump_id
                );
                checked += 1;
            }
            assert_eq!(checked, offsets.unwrap().filled());
            assert!(checked >= 4);
        }
    }

    #[test]
    fn an_archive_with_offsets_goes_through_unchanged() {
        let (out, offsets) = rewrite(WITH_OFFSETS, 4096, true);
        assert_eq!(offsets.unwrap().filled(), 0);
        assert!(
            out == WITH_OFFSETS,
            "rows joined in an archive with offsets"
        );
    }

    #[test]
    fn anything_unexpected_goes_through_unchanged() {
        let piped = as_from_a_pipe(WITH_OFFSETS);
        let unchanged = |bytes: &[u8], piece: usize| {
            let (out, offsets) = rewrite(bytes, piece, true);
            assert!(offsets.is_none());
            assert!(out == bytes, "changed");
        };
        // Cut inside the table of contents, or not an archive at all.
        unchanged(&piped[..200], 64);
        unchanged(b"-- plain SQL\nSELECT 1;\n", 4096);
        // A format version this code does not know.
        let mut future = piped.clone();
        future[6] = 99;
        unchanged(&future, 4096);
        // Cut inside the data: what was read is written, and no offsets.
        let (out, offsets) = rewrite(&piped[..piped.len() - 3], 4096, true);
        assert!(offsets.is_none());
        assert!(out.len() < piped.len() - 3 && !out.is_empty());
        // A data block of an entry the TOC does not have: written, but no offsets.
        let mut extra = piped.clone();
        extra.extend_from_slice(&[BLK_DATA, 0, 0x7f, 0x7f, 0, 0, 0, 0, 0, 0, 0]);
        let (out, offsets) = rewrite(&extra, 4096, true);
        assert!(offsets.is_none());
        assert!(out.ends_with(&[BLK_DATA, 0, 0x7f, 0x7f, 0, 0, 0, 0, 0, 0, 0]));
        // An unknown block type: from there on the bytes go through as they are.
        let mut odd = piped.clone();
        odd.extend_from_slice(&[9, 1, 2, 3]);
        let (out, offsets) = rewrite(&odd, 4096, true);
        assert!(offsets.is_none());
        assert!(out.ends_with(&[9, 1, 2, 3]));
    }
}
