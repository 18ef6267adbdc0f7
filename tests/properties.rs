//! Property tests over every parser of bytes `dr` reads back from storage (issue 29): a
//! manifest, an integrity verdict, `cluster.json`, timeline history and backup history
//! files, WAL object names and segment headers, the Redis keys stream and RDB snapshots,
//! and the table of contents of a custom-format dump. Random bytes, and valid samples with
//! bytes flipped, cut, inserted or removed, never panic: each parser returns its value or
//! an error with words in it.
//!
//! Cases are bounded (`PROPTEST_CASES` overrides) so that each property runs in a few
//! seconds in CI.

use std::io::Cursor;

use dr::backup::integrity::IntegrityVerdict;
use dr::backup::manifest::BackupManifest;
use dr::redis_client::keys_format::{KeysReader, KeysWriter};
use dr::redis_client::rdb::{EntrySource, RdbReader};
use dr::restore::offsets::{read_head, ArchiveRewriter};
use dr::wal::continuity::TimelineHistory;
use dr::wal::{parse_backup_history, parse_object_name, parse_segment_header, ClusterRecord};
use dr::wal::{Lsn, WalName};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 1024,
        // A failing case is printed; no regression files are written into the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One change to a valid sample.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, xor: u8 },
    Truncate { at: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
    Overwrite { at: usize, bytes: Vec<u8> },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Remove { at, len }),
        // Lengths and counts are little- or big-endian integers: overwrite with extremes.
        (
            any::<usize>(),
            prop_oneof![
                Just(vec![0xff; 8]),
                Just(vec![0x7f, 0xff, 0xff, 0xff]),
                Just(vec![0x80, 0, 0, 0, 0, 0, 0, 0]),
                Just(vec![0; 8]),
                prop::collection::vec(any::<u8>(), 1..9),
            ]
        )
            .prop_map(|(at, bytes)| Mutation::Overwrite { at, bytes }),
    ]
}

fn mutate(sample: &[u8], changes: &[Mutation]) -> Vec<u8> {
    let mut out = sample.to_vec();
    for m in changes {
        if out.is_empty() {
            break;
        }
        let len = out.len();
        match m {
            Mutation::Flip { at, xor } => out[at % len] ^= xor,
            Mutation::Truncate { at } => out.truncate(at % len),
            Mutation::Insert { at, bytes } => {
                let at = at % (len + 1);
                out.splice(at..at, bytes.iter().copied());
            }
            Mutation::Remove { at, len: n } => {
                let at = at % len;
                let end = (at + n).min(len);
                out.drain(at..end);
            }
            Mutation::Overwrite { at, bytes } => {
                let at = at % len;
                for (i, b) in bytes.iter().enumerate() {
                    if let Some(slot) = out.get_mut(at + i) {
                        *slot = *b;
                    }
                }
            }
        }
    }
    out
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..4)
}

/// An error must say something: a message of a few words, not an empty string.
fn assert_says_something(err: &str) {
    assert!(
        err.trim().len() >= 8 && err.chars().any(char::is_alphabetic),
        "unhelpful error {err:?}"
    );
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---- samples -----------------------------------------------------------------------------

fn manifest_sample() -> Vec<u8> {
    let sha = "a".repeat(64);
    let sha2 = "b".repeat(64);
    format!(
        r#"{{"format_version": 1, "id": "main-20260102T030405Z", "target": "main", "kind": "regular",
        "database": "app", "source": "postgres://u@h/app",
        "created_at": "2026-01-02T03:04:05Z", "finished_at": "2026-01-02T03:04:06Z",
        "duration_ms": 1000, "server_version": "15.18 (Debian)", "server_major": 15,
        "pg_dump_version": "15.18", "dr_version": "0.1.0", "format": "custom",
        "compression": "zstd", "compression_level": 3, "encryption": null,
        "size_bytes": 30, "sha256": "{sha}",
        "objects": [
            {{"role": "dump", "file": "dump.pgdump.zst", "compression": "zstd", "size_bytes": 10, "sha256": "{sha}", "raw_bytes": 100}},
            {{"role": "globals", "file": "globals.sql.zst", "compression": "zstd", "size_bytes": 20, "sha256": "{sha2}", "raw_bytes": 50}}
        ],
        "snapshot": "s", "schemas": ["public"], "extensions": [], "tables": [{{"schema": "public", "name": "t", "rows": 3}}]}}"#
    )
    .into_bytes()
}

fn verdict_sample() -> Vec<u8> {
    br#"{"format_version": 1, "backup_id": "main-20260102T030405Z",
        "checked_at": "2026-01-02T03:05:00Z", "checked_by": "backup", "ok": true,
        "objects": [{"file": "dump.pgdump.zst", "size": 10, "modified": "2026-01-02T03:04:06Z", "etag": "\"e1\""}]}"#
        .to_vec()
}

const SYSTEM_ID: u64 = 7_300_000_000_000_000_001;

fn cluster_sample() -> Vec<u8> {
    format!(
        r#"{{"format_version": 1, "target": "main", "system_identifier": "{SYSTEM_ID}",
        "wal_segment_size": 16777216, "first_pushed_at": "2026-01-02T03:04:05Z", "dr_version": "0.1.0"}}"#
    )
    .into_bytes()
}

const HISTORY_SAMPLE: &str =
    "1\t0/3000100\tno recovery target specified\n\n2\t0/50000A0\tat restore point \"x\"\n";

const BACKUP_HISTORY_NAME: &str = "000000010000000000000002.00000028.backup";
const BACKUP_HISTORY_SAMPLE: &str = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
STOP WAL LOCATION: 0/2000100 (file 000000010000000000000002)
CHECKPOINT LOCATION: 0/2000060
BACKUP METHOD: streamed
BACKUP FROM: primary
START TIME: 2026-01-02 03:04:05 UTC
LABEL: dr
START TIMELINE: 1
STOP TIME: 2026-01-02 03:04:06 UTC
STOP TIMELINE: 1
";

/// `SAVE` of a Redis 7.0.15 holding three keys (the sample of `src/redis_client/rdb.rs`).
const RDB_SAMPLE: &str = "524544495330303130fa0972656469732d76657206372e302e3135fa0a72656469732d62697473c040fa056374696d65c2a2f4066bfa08757365642d6d656dc2c0160f00fa08616f662d62617365c000fe00fb030000016bc30b40780361626361e0690201626312014c010210100000000300816102816202816302ff00c139300176ff7fd19bdad03b56d2";

fn rdb_sample() -> Vec<u8> {
    hex::decode(RDB_SAMPLE).unwrap()
}

/// A keys stream of two databases; payloads are real DUMP outputs (RDB 10, CRC-64).
fn keys_sample() -> Vec<u8> {
    let dump_k = b"\x00\xc3\x0b@x\x03abca\xe0i\x02\x01bc\n\x00\xc4\x94\xa1p*\xe2>\x06";
    let mut w = KeysWriter::default();
    w.magic();
    w.db(0);
    w.key(b"k", None, dump_k);
    w.key(b"k2", Some(1_900_000_000_000), dump_k);
    w.db(3);
    w.key(b"other", None, dump_k);
    w.trailer();
    w.buf
}

/// A custom-format archive written by pg_dump 15 (`--compress=0`, with offsets).
const DUMP_SAMPLE: &[u8] = include_bytes!("../src/restore/testdata/offsets.pgdump");

// ---- drivers: each parser, whole, on arbitrary bytes ------------------------------------

fn manifest(bytes: &[u8]) {
    if let Err(e) = BackupManifest::parse(bytes) {
        assert_says_something(&format!("{e:#}"));
    }
}

fn verdict(bytes: &[u8]) {
    if let Err(e) = IntegrityVerdict::parse(bytes) {
        assert_says_something(&format!("{e:#}"));
    }
}

fn cluster(bytes: &[u8]) {
    if let Err(e) = ClusterRecord::parse(bytes, SYSTEM_ID) {
        assert_says_something(&format!("{e:#}"));
    }
}

fn history(bytes: &[u8]) {
    if let Err(e) = TimelineHistory::parse(3, &text(bytes)) {
        assert_says_something(&format!("{e:#}"));
    }
}

fn backup_history(bytes: &[u8]) {
    let name = WalName::parse(BACKUP_HISTORY_NAME).unwrap();
    if let Err(e) = parse_backup_history(&name, &text(bytes)) {
        assert_says_something(&format!("{e:#}"));
    }
}

/// Reads every entry, payloads included, then the trailer.
fn entries(source: &mut dyn EntrySource) -> Result<u64, String> {
    let mut n = 0;
    while let Some(_entry) = source
        .next_entry(&mut |_| true)
        .map_err(|e| format!("{e:#}"))?
    {
        n += 1;
    }
    Ok(n)
}

fn keys_stream(bytes: &[u8]) {
    let result = KeysReader::new(Cursor::new(bytes))
        .map_err(|e| format!("{e:#}"))
        .and_then(|mut r| entries(&mut r));
    if let Err(e) = result {
        assert_says_something(&e);
    }
}

fn rdb(bytes: &[u8]) {
    let result = RdbReader::new(Cursor::new(bytes))
        .map_err(|e| format!("{e:#}"))
        .and_then(|mut r| entries(&mut r));
    if let Err(e) = result {
        assert_says_something(&e);
    }
}

/// The table of contents, and the rewriter `restore` streams a dump through, fed in odd
/// pieces: it passes what it cannot follow through unchanged, byte for byte.
fn dump_toc(bytes: &[u8], piece: usize) {
    if let Err(e) = read_head(bytes) {
        assert_says_something(&e);
    }
    let mut rewriter = ArchiveRewriter::new(Vec::new());
    for chunk in bytes.chunks(piece.max(1)) {
        std::io::Write::write_all(&mut rewriter, chunk).unwrap();
    }
    let (out, _offsets) = rewriter.finish().unwrap();
    if read_head(bytes).ok().flatten().is_none() {
        assert_eq!(out, bytes, "an archive it cannot read must pass unchanged");
    }
}

fn wal_names(bytes: &[u8]) {
    let name = text(bytes);
    let _ = WalName::parse(&name);
    let _ = parse_object_name(&name);
    if let Err(e) = Lsn::parse(&name) {
        assert_says_something(&format!("{e:#}"));
    }
    let mut header = [0u8; 40];
    for (slot, b) in header.iter_mut().zip(bytes) {
        *slot = *b;
    }
    if let Err(e) = parse_segment_header(&header) {
        assert_says_something(&format!("{e:#}"));
    }
}

// ---- the samples are valid, so the mutations start from something that parses ----------

#[test]
fn the_samples_parse() {
    BackupManifest::parse(&manifest_sample()).unwrap();
    IntegrityVerdict::parse(&verdict_sample()).unwrap();
    ClusterRecord::parse(&cluster_sample(), SYSTEM_ID).unwrap();
    TimelineHistory::parse(3, HISTORY_SAMPLE).unwrap();
    parse_backup_history(
        &WalName::parse(BACKUP_HISTORY_NAME).unwrap(),
        BACKUP_HISTORY_SAMPLE,
    )
    .unwrap();
    assert_eq!(
        entries(&mut KeysReader::new(Cursor::new(keys_sample())).unwrap()),
        Ok(3)
    );
    assert_eq!(
        entries(&mut RdbReader::new(Cursor::new(rdb_sample())).unwrap()),
        Ok(3)
    );
    assert!(read_head(DUMP_SAMPLE).unwrap().is_some());
}

#[test]
fn a_cluster_record_of_another_system_is_refused() {
    let err = ClusterRecord::parse(&cluster_sample(), SYSTEM_ID + 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&SYSTEM_ID.to_string()), "{err}");
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn manifests_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), m in mutations()) {
        manifest(&bytes);
        manifest(&mutate(&manifest_sample(), &m));
    }

    #[test]
    fn integrity_verdicts_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), m in mutations()) {
        verdict(&bytes);
        verdict(&mutate(&verdict_sample(), &m));
    }

    #[test]
    fn cluster_records_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), m in mutations()) {
        cluster(&bytes);
        cluster(&mutate(&cluster_sample(), &m));
    }

    #[test]
    fn timeline_histories_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256), m in mutations()) {
        history(&bytes);
        history(&mutate(HISTORY_SAMPLE.as_bytes(), &m));
    }

    #[test]
    fn backup_history_files_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256), m in mutations()) {
        backup_history(&bytes);
        backup_history(&mutate(BACKUP_HISTORY_SAMPLE.as_bytes(), &m));
    }

    #[test]
    fn wal_names_and_segment_headers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64), m in mutations()) {
        wal_names(&bytes);
        wal_names(&mutate(b"000000010000000A000000FF.00000028.backup", &m));
        wal_names(&mutate(b"000000010000000000000010.sha256-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.zst.age", &m));
    }

    #[test]
    fn redis_keys_streams_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), m in mutations()) {
        keys_stream(&bytes);
        keys_stream(&mutate(&keys_sample(), &m));
    }

    #[test]
    fn rdb_snapshots_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), m in mutations()) {
        rdb(&bytes);
        let mut headed = b"REDIS0010".to_vec();
        headed.extend_from_slice(&bytes);
        rdb(&headed);
        rdb(&mutate(&rdb_sample(), &m));
    }

    #[test]
    fn dump_tables_of_contents_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), m in mutations(), piece in 1usize..5000) {
        dump_toc(&bytes, piece);
        let mut headed = b"PGDMP".to_vec();
        headed.extend_from_slice(&bytes);
        dump_toc(&headed, piece);
        dump_toc(&mutate(DUMP_SAMPLE, &m), piece);
    }
}
