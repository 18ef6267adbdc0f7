//! `dr restore --jobs N` into a database without objects: the rows loaded by N COPY sessions
//! of dr's own, with `pg_restore` before them for the schema and after them for the indexes.
//!
//! Why not `pg_restore --jobs N` alone: it gives each table's data to one job, so a large
//! table is one COPY, one server process, one core, however many jobs run. In the
//! benchmark's database the load of the largest table is three quarters of the data phase,
//! and `pg_restore -j 2` is only 5 % faster than one job. dr reads the archive once, cuts
//! each table's rows into pieces of whole rows, and hands each piece to whichever session
//! is free: a large table loads on as many server processes as there are jobs.
//!
//! The restore follows the partition of pg_restore's own `--section` option:
//! 1. `pg_restore --section=pre-data` on the table of contents alone: schemas, types,
//!    tables, functions (no data needed, so no staged copy of the archive);
//! 2. the data area streamed from the staged object: table rows into the COPY sessions,
//!    large objects appended to that table-of-contents file, with their offsets;
//! 3. `pg_restore --jobs N --section=data --section=post-data` with the table data left
//!    out of its list: sequence values, large objects, indexes, constraints, triggers,
//!    grants.
//!
//! Rows of one table then sit in the heap in pieces of [`PIECE_BYTES`] in the order the
//! sessions wrote them, not in dump order: a table is a set of rows, but a physical order
//! a `CLUSTER` gave it is not kept (as it is not by any logical restore that runs in
//! parallel).

use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::SinkExt;
use tokio::sync::{mpsc, Mutex};

use super::offsets::{self, Toc};
use super::stage::StagedDump;
use crate::pg::{describe_pg_error, ConnTarget};

/// The rows of a table are cut into pieces of about this size, at a row's end; each piece
/// goes to the next free session.
const PIECE_BYTES: usize = 256 << 10;

/// One table whose rows dr loads.
#[derive(Debug, Clone)]
struct Table {
    /// `schema.table`, for messages.
    name: String,
    copy_stmt: String,
}

/// What the archive's table of contents says, and where that table of contents now lives
/// on its own for `pg_restore`.
#[derive(Debug)]
pub struct Plan {
    toc: Toc,
    /// Bytes of header and table of contents in the archive: the data area starts there.
    data_start: usize,
    /// The header and table of contents alone, a valid archive for pg_restore's schema
    /// parts; large objects are appended to it.
    pub toc_path: PathBuf,
    tables: Vec<Table>,
    /// Dump id → index in `tables`.
    by_dump_id: HashMap<i64, usize>,
}

impl Plan {
    /// The dump ids of the table data dr loads (left out of pg_restore's list).
    pub fn loaded_entries(&self) -> impl Iterator<Item = i64> + '_ {
        self.by_dump_id.keys().copied()
    }
}

/// What the data phase did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub tables: usize,
    pub rows: u64,
    pub sessions: u32,
    /// Blocks of large objects handed on to pg_restore.
    pub large_object_blocks: usize,
}

/// Reads the staged archive's table of contents and writes it on its own beside it. The
/// inner `Err` says why this archive is restored by pg_restore alone instead.
pub fn plan(staged: &StagedDump) -> Result<std::result::Result<Plan, String>> {
    let file = std::fs::File::open(&staged.path)
        .with_context(|| format!("cannot open the staged dump {}", staged.path.display()))?;
    let mut input = crate::codec::decompressor(staged.compression, file)?;
    let mut head = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let (toc, data_start) = loop {
        let n = input
            .read(&mut buf)
            .context("cannot read the staged dump")?;
        head.extend_from_slice(&buf[..n]);
        match offsets::read_head(&head) {
            Ok(Some(found)) => break found,
            Ok(None) if n == 0 => {
                return Ok(Err("the archive ends inside its table of contents".into()))
            }
            Ok(None) => {}
            Err(why) => return Ok(Err(why)),
        }
    };
    if let Some(why) = unsupported(&toc) {
        return Ok(Err(why));
    }
    let mut tables = Vec::new();
    let mut by_dump_id = HashMap::new();
    for slot in toc.slots.iter().filter(|s| s.had_dumper) {
        if let (true, Some(stmt)) = (slot.desc == "TABLE DATA", &slot.copy_stmt) {
            by_dump_id.insert(slot.dump_id, tables.len());
            tables.push(Table {
                name: table_name(stmt),
                copy_stmt: stmt.trim_end().trim_end_matches(';').to_string(),
            });
        }
    }
    let toc_path = staged.dir.path().join("toc.pgdump");
    write_private(&toc_path, &head[..data_start])?;
    Ok(Ok(Plan {
        toc,
        data_start,
        toc_path,
        tables,
        by_dump_id,
    }))
}

/// Why dr's sessions cannot load this archive's rows, if they cannot.
fn unsupported(toc: &Toc) -> Option<String> {
    if toc.compressed {
        return Some("its data blocks are compressed".into());
    }
    match toc.encoding() {
        Some(e) if e.eq_ignore_ascii_case("UTF8") => {}
        Some(e) => return Some(format!("it was dumped in encoding {e}, not UTF8")),
        None => return Some("it does not say its encoding".into()),
    }
    toc.slots
        .iter()
        .filter(|s| s.had_dumper)
        .find(|s| !(s.desc == "BLOBS" || (s.desc == "TABLE DATA" && s.copy_stmt.is_some())))
        .map(|s| format!("it holds data of kind {}", s.desc))
}

/// `public.accounts` out of `COPY public.accounts (id, ...) FROM stdin;`.
fn table_name(copy_stmt: &str) -> String {
    let rest = copy_stmt.strip_prefix("COPY ").unwrap_or(copy_stmt);
    let end = rest
        .find(" (")
        .or_else(|| rest.find(" FROM"))
        .unwrap_or(rest.len());
    rest[..end].trim().to_string()
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    super::stage::create_private(path)?
        .write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Session settings of the COPY sessions, those pg_restore gives its own. No `SET ROLE`:
/// pg_restore loads rows as the connecting role too.
const SESSION_SETUP: &str = "SET statement_timeout = 0; SET lock_timeout = 0; \
    SET idle_in_transaction_session_timeout = 0; SET synchronous_commit = off; \
    SET standard_conforming_strings = on; SELECT pg_catalog.set_config('search_path', '', false); \
    SET xmloption = content; SET client_min_messages = warning; SET row_security = off";

/// A piece of one table's rows: whole rows, in COPY text format.
struct Piece {
    table: usize,
    rows: Bytes,
}

/// Loads every table's rows of the staged archive into `destination` with `jobs`
/// sessions. Commits are asynchronous (`synchronous_commit = off`): the caller makes the
/// restore durable at its end.
pub async fn load(
    plan: &Plan,
    staged: &StagedDump,
    destination: &ConnTarget,
    jobs: u32,
    bar: Option<indicatif::ProgressBar>,
) -> Result<Loaded> {
    let sessions = jobs.max(1);
    let mut clients = Vec::with_capacity(sessions as usize);
    for _ in 0..sessions {
        let client = destination.connect().await?;
        client.batch_execute(SESSION_SETUP).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot set up a COPY session on {}: {}",
                destination.public_url,
                describe_pg_error(&e)
            )
        })?;
        clients.push(client);
    }
    let tables = Arc::new(plan.tables.clone());
    let failed = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Piece>(sessions as usize + 1);
    let queue = Arc::new(Mutex::new(rx));
    let workers: Vec<_> = clients
        .into_iter()
        .map(|client| {
            tokio::spawn(copy_worker(
                client,
                queue.clone(),
                tables.clone(),
                failed.clone(),
            ))
        })
        .collect();
    drop(queue);

    let reader = {
        let source = (staged.path.clone(), staged.compression);
        let toc_path = plan.toc_path.clone();
        let by_dump_id = plan.by_dump_id.clone();
        let (data_start, int_size) = (plan.data_start as u64, plan.toc.int_size);
        let failed = failed.clone();
        tokio::task::spawn_blocking(move || -> Result<DataRead> {
            let file = std::fs::File::open(&source.0)?;
            let decoded = crate::codec::decompressor(source.1, file)?;
            let mut input = std::io::BufReader::with_capacity(
                1 << 20,
                CountedRead {
                    inner: decoded,
                    bar,
                },
            );
            std::io::copy(&mut (&mut input).take(data_start), &mut std::io::sink())?;
            let mut blobs_to = std::fs::OpenOptions::new().append(true).open(&toc_path)?;
            let mut area = DataArea {
                int_size,
                by_dump_id: &by_dump_id,
                tx,
                failed: &failed,
                seen: vec![false; by_dump_id.len()],
                blobs: Vec::new(),
                blobs_end: data_start,
            };
            area.read(&mut input, &mut blobs_to)?;
            blobs_to.sync_all()?;
            Ok(area.into_owned())
        })
    };
    let read = reader.await.context("the archive reader stopped")?;
    let mut rows = 0u64;
    let mut first_error = None;
    for worker in workers {
        match worker.await.context("a COPY session stopped")? {
            Ok(n) => rows += n,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    // A session's error is the cause; the reader then only stopped.
    if let Some(e) = first_error {
        return Err(e);
    }
    let read = read.context("cannot read the rows out of the staged dump")?;
    if let Some(missing) = read.seen.iter().position(|seen| !seen) {
        anyhow::bail!(
            "the archive ends before the rows of {}; hint: the backup is incomplete: restore an older one (`dr list`)",
            plan.tables[missing].name
        );
    }
    if !read.blobs.is_empty() {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&plan.toc_path)?;
        let offsets = plan.toc.offsets_for(&read.blobs).context(
            "the archive has large objects for an entry its table of contents does not list",
        )?;
        offsets.write_into(&file)?;
        file.sync_all()?;
    }
    Ok(Loaded {
        tables: plan.tables.len(),
        rows,
        sessions,
        large_object_blocks: read.blobs.len(),
    })
}

/// A reader that counts what it reads onto a progress bar.
struct CountedRead<R> {
    inner: R,
    bar: Option<indicatif::ProgressBar>,
}

impl<R: Read> Read for CountedRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(bar) = &self.bar {
            bar.inc(n as u64);
        }
        Ok(n)
    }
}

/// What the reader found in the data area.
struct DataRead {
    /// Per table: whether its data block was there.
    seen: Vec<bool>,
    /// (dump id, position in the table-of-contents file) of each large-object block.
    blobs: Vec<(i64, u64)>,
}

/// Walks the data area: `[type byte][dump id]` then length-prefixed chunks up to a zero
/// length (pg_backup_custom.c). Table rows become pieces on the queue; large-object blocks
/// are copied as they are to the end of the table-of-contents file.
struct DataArea<'a> {
    int_size: usize,
    by_dump_id: &'a HashMap<i64, usize>,
    tx: mpsc::Sender<Piece>,
    failed: &'a AtomicBool,
    seen: Vec<bool>,
    blobs: Vec<(i64, u64)>,
    /// Length of the table-of-contents file.
    blobs_end: u64,
}

impl DataArea<'_> {
    fn into_owned(self) -> DataRead {
        DataRead {
            seen: self.seen,
            blobs: self.blobs,
        }
    }

    /// One integer field: its raw bytes and value.
    fn int(&self, input: &mut impl Read) -> Result<([u8; 9], usize, i64)> {
        let len = 1 + self.int_size;
        let mut raw = [0u8; 9];
        input
            .read_exact(&mut raw[..len])
            .context("the archive ends inside a data block")?;
        Ok((raw, len, offsets::decode_int(&raw[..len])))
    }

    fn read(&mut self, input: &mut impl BufRead, blobs_to: &mut std::fs::File) -> Result<()> {
        loop {
            if input.fill_buf()?.is_empty() {
                return Ok(());
            }
            let mut block_type = [0u8; 1];
            input.read_exact(&mut block_type)?;
            let (raw_id, id_len, dump_id) = self.int(input)?;
            match block_type[0] {
                offsets::BLK_DATA => {
                    let Some(&table) = self.by_dump_id.get(&dump_id) else {
                        anyhow::bail!(
                            "the archive has a data block for entry {dump_id}, which its table of contents does not list as table data"
                        );
                    };
                    self.seen[table] = true;
                    self.table_rows(input, table)?;
                }
                offsets::BLK_BLOBS => {
                    let at = self.blobs_end;
                    let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut *blobs_to);
                    out.write_all(&block_type)?;
                    out.write_all(&raw_id[..id_len])?;
                    let mut written = 1 + id_len as u64;
                    written += self.copy_blobs(input, &mut out)?;
                    out.flush()?;
                    self.blobs_end += written;
                    self.blobs.push((dump_id, at));
                }
                other => anyhow::bail!("the archive has a data block of unknown type {other}"),
            }
        }
    }

    /// Reads one table's chunks up to the zero length, and queues its rows in pieces.
    fn table_rows(&mut self, input: &mut impl Read, table: usize) -> Result<()> {
        let mut pending: Vec<u8> = Vec::with_capacity(PIECE_BYTES + (64 << 10));
        loop {
            let (_, _, len) = self.int(input)?;
            if len == 0 {
                break;
            }
            let len = usize::try_from(len).context("a negative chunk length in the archive")?;
            let at = pending.len();
            pending.resize(at + len, 0);
            input
                .read_exact(&mut pending[at..])
                .context("the archive ends inside a table's rows")?;
            if pending.len() >= PIECE_BYTES {
                // Whole rows only: the rest of a row that goes on in the next chunk waits.
                if let Some(end) = pending.iter().rposition(|b| *b == b'\n') {
                    let rest = pending.split_off(end + 1);
                    let rows = std::mem::replace(&mut pending, rest);
                    pending.reserve(PIECE_BYTES + (64 << 10));
                    self.send(table, rows)?;
                }
            }
        }
        if !pending.is_empty() {
            self.send(table, pending)?;
        }
        Ok(())
    }

    fn send(&self, table: usize, rows: Vec<u8>) -> Result<()> {
        if self.failed.load(Ordering::Relaxed) {
            anyhow::bail!("stopped: a COPY session failed");
        }
        self.tx
            .blocking_send(Piece {
                table,
                rows: Bytes::from(rows),
            })
            .map_err(|_| anyhow::anyhow!("stopped: every COPY session has ended"))
    }

    /// Copies a large-object block's body (after its id) as it is; returns its length.
    fn copy_blobs(&self, input: &mut impl Read, out: &mut impl Write) -> Result<u64> {
        let mut written = 0u64;
        loop {
            let (raw, n, oid) = self.int(input)?;
            out.write_all(&raw[..n])?;
            written += n as u64;
            if oid == 0 {
                return Ok(written);
            }
            loop {
                let (raw, n, len) = self.int(input)?;
                out.write_all(&raw[..n])?;
                written += n as u64;
                if len == 0 {
                    break;
                }
                let len = u64::try_from(len).context("a negative chunk length in the archive")?;
                let copied = std::io::copy(&mut input.take(len), out)?;
                if copied != len {
                    anyhow::bail!("the archive ends inside a large object");
                }
                written += len;
            }
        }
    }
}

/// One COPY session: takes pieces off the queue, keeps a COPY open while the pieces are
/// of the same table, and commits it when the next piece is of another table or the
/// queue ends. Returns the rows it loaded.
async fn copy_worker(
    client: tokio_postgres::Client,
    queue: Arc<Mutex<mpsc::Receiver<Piece>>>,
    tables: Arc<Vec<Table>>,
    failed: Arc<AtomicBool>,
) -> Result<u64> {
    type Sink = std::pin::Pin<Box<tokio_postgres::CopyInSink<Bytes>>>;
    async fn commit(open: Option<(usize, Sink)>, tables: &[Table]) -> Result<u64> {
        let Some((table, mut sink)) = open else {
            return Ok(0);
        };
        sink.as_mut()
            .finish()
            .await
            .map_err(|e| copy_error(&tables[table], &e))
    }
    let result = async {
        let mut open: Option<(usize, Sink)> = None;
        let mut rows = 0u64;
        loop {
            let next = queue.lock().await.recv().await;
            let Some(piece) = next else { break };
            if open.as_ref().map(|(t, _)| *t) != Some(piece.table) {
                rows += commit(open.take(), &tables).await?;
                let table = &tables[piece.table];
                let sink = client
                    .copy_in::<_, Bytes>(table.copy_stmt.as_str())
                    .await
                    .map_err(|e| copy_error(table, &e))?;
                open = Some((piece.table, Box::pin(sink)));
            }
            if let Some((table, sink)) = open.as_mut() {
                sink.send(piece.rows)
                    .await
                    .map_err(|e| copy_error(&tables[*table], &e))?;
            }
        }
        rows += commit(open.take(), &tables).await?;
        Ok(rows)
    }
    .await;
    if result.is_err() {
        failed.store(true, Ordering::Relaxed);
        // The others stop at their next piece; this one's share is no longer taken.
        queue.lock().await.close();
    }
    result
}

fn copy_error(table: &Table, e: &tokio_postgres::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot load the rows of {}: {}",
        table.name,
        describe_pg_error(e)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pg_dump's integer with 4-byte ints: a sign byte, then least significant first.
    fn int(v: i64) -> Vec<u8> {
        let mut out = vec![u8::from(v < 0)];
        out.extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
        out
    }

    fn data_block(dump_id: i64, chunks: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![offsets::BLK_DATA];
        out.extend(int(dump_id));
        for c in chunks {
            out.extend(int(c.len() as i64));
            out.extend_from_slice(c);
        }
        out.extend(int(0));
        out
    }

    /// What [`read_area`] gives: the pieces (table index, rows), what was found, and the
    /// file large objects went to.
    type AreaRead = (Vec<(usize, Vec<u8>)>, Result<DataRead>, Vec<u8>);

    /// Reads `area` as the data area of an archive with tables 7 and 9.
    fn read_area(area: &[u8]) -> AreaRead {
        let by_dump_id = HashMap::from([(7, 0), (9, 1)]);
        let (tx, mut rx) = mpsc::channel(1 << 16);
        let failed = AtomicBool::new(false);
        let dir = tempfile::tempdir().unwrap();
        let blobs_path = dir.path().join("toc");
        std::fs::write(&blobs_path, b"TOC").unwrap();
        let mut blobs_to = std::fs::OpenOptions::new()
            .append(true)
            .open(&blobs_path)
            .unwrap();
        let mut reader = DataArea {
            int_size: 4,
            by_dump_id: &by_dump_id,
            tx,
            failed: &failed,
            seen: vec![false; 2],
            blobs: Vec::new(),
            blobs_end: 3,
        };
        let result = reader.read(&mut &area[..], &mut blobs_to);
        let result = result.map(|()| reader.into_owned());
        let mut pieces = Vec::new();
        while let Ok(p) = rx.try_recv() {
            pieces.push((p.table, p.rows.to_vec()));
        }
        (pieces, result, std::fs::read(&blobs_path).unwrap())
    }

    #[test]
    fn rows_go_out_in_pieces_of_whole_rows() {
        // Rows of every size, one longer than a piece, one split over two chunks (as a
        // compressed archive's chunks would be).
        let rows: Vec<Vec<u8>> = (0..3000)
            .map(|i| {
                let len = if i == 1500 { PIECE_BYTES + 10 } else { i % 700 };
                let mut row = format!("{i}\t").into_bytes();
                row.extend(std::iter::repeat_n(b'x', len));
                row.push(b'\n');
                row
            })
            .collect();
        let mut chunks: Vec<&[u8]> = rows.iter().map(|r| r.as_slice()).collect();
        let split = rows[10].split_at(3);
        chunks.splice(10..11, [split.0, split.1]);
        let mut area = data_block(7, &chunks);
        area.extend(data_block(9, &[]));
        area.extend(data_block(7, &[b"last\n"]));

        let (pieces, read, _) = read_area(&area);
        let read = read.unwrap();
        assert_eq!(read.seen, [true, true]);
        assert!(pieces.len() >= 4, "{} pieces", pieces.len());
        let mut table7 = Vec::new();
        for (table, piece) in &pieces {
            assert_eq!(*table, 0, "the empty table has no piece");
            assert_eq!(piece.last(), Some(&b'\n'), "a piece ends at a row's end");
            assert!(piece.len() < 2 * PIECE_BYTES + 1024);
            table7.extend_from_slice(piece);
        }
        let mut expected = rows.concat();
        expected.extend_from_slice(b"last\n");
        assert!(table7 == expected, "the pieces are the rows, in order");
    }

    #[test]
    fn large_objects_are_copied_as_they_are_and_strange_blocks_stop_the_read() {
        let mut blobs = vec![offsets::BLK_BLOBS];
        blobs.extend(int(12));
        for (oid, body) in [(16400, &b"first"[..]), (16401, &b"second object"[..])] {
            blobs.extend(int(oid));
            blobs.extend(int(body.len() as i64));
            blobs.extend_from_slice(body);
            blobs.extend(int(0));
        }
        blobs.extend(int(0));
        let mut area = data_block(7, &[b"1\n"]);
        area.extend_from_slice(&blobs);
        let (pieces, read, toc_file) = read_area(&area);
        assert_eq!(read.unwrap().blobs, [(12, 3)]);
        assert_eq!(&toc_file[3..], &blobs[..]);
        assert_eq!(pieces, [(0, b"1\n".to_vec())]);

        // Table 8 is not table data in the table of contents; the archive ends early.
        let (_, read, _) = read_area(&data_block(8, &[b"1\n"]));
        assert!(format!("{:#}", read.err().unwrap()).contains("entry 8"));
        let whole = data_block(7, &[b"1\n2\n"]);
        let (_, read, _) = read_area(&whole[..whole.len() - 3]);
        assert!(format!("{:#}", read.err().unwrap()).contains("ends inside"));
    }

    #[test]
    fn archives_dr_cannot_load_go_to_pg_restore() {
        let archive = include_bytes!("testdata/offsets.pgdump");
        let (toc, _) = offsets::read_head(archive).unwrap().unwrap();
        // Tables, an empty one and large objects in UTF8: dr loads it.
        assert_eq!(toc.encoding().as_deref(), Some("UTF8"));
        assert_eq!(unsupported(&toc), None);

        let mut compressed = toc.clone();
        compressed.compressed = true;
        assert!(unsupported(&compressed).unwrap().contains("compressed"));
        let mut latin1 = toc.clone();
        for slot in latin1.slots.iter_mut().filter(|s| s.desc == "ENCODING") {
            slot.defn = Some("SET client_encoding = 'LATIN1';\n".into());
        }
        assert!(unsupported(&latin1).unwrap().contains("LATIN1"));
        let mut inserts = toc;
        for slot in inserts.slots.iter_mut().filter(|s| s.desc == "TABLE DATA") {
            slot.copy_stmt = None;
        }
        assert!(unsupported(&inserts).unwrap().contains("TABLE DATA"));
    }

    #[test]
    fn table_names_come_from_the_copy_statement() {
        assert_eq!(
            table_name("COPY public.accounts (id, name) FROM stdin;\n"),
            "public.accounts"
        );
        assert_eq!(
            table_name("COPY \"Mixed Case\".\"Quoted Table\" (k) FROM stdin;"),
            "\"Mixed Case\".\"Quoted Table\""
        );
        assert_eq!(table_name("COPY public.empty  FROM stdin;"), "public.empty");
    }
}
