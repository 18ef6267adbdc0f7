//! The storage contract: one suite of cases, each run against every backend, in the manner
//! of restic's backend tests. A case gets a fresh, empty backend and checks promises that
//! callers of `Storage` rely on: what a put makes visible and when, what a failed or
//! interrupted put leaves behind, how a list is bounded by its prefix, what head, get and
//! delete do with a missing key, which keys are accepted.
//!
//! `local` runs every case on a temp directory, `s3` on a real s3s-fs server (SigV4
//! checked) below the prefix `team/prod`, with 5 MiB parts so that large cases go through
//! multipart uploads. These are unit tests, not an integration test, because `dr` is a
//! binary crate: only code inside it can call the `Storage` trait.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};

use super::local::{LocalStorage, PARTIAL_MARKER};
use super::s3::testing as s3_testing;
use super::{get_bytes, put_bytes, ByteStream, ObjectMeta, Storage};

const MIB: usize = 1024 * 1024;

/// One backend under test, fresh and empty.
struct Backend {
    storage: Box<dyn Storage>,
    /// A storage beside `storage` whose name starts with the same text (root `store` and
    /// `store-old`, prefix `team/prod` and `team/prod-old`): none of its objects may show
    /// through `storage`, and no key of `storage` may reach it.
    neighbour: Box<dyn Storage>,
    /// Leftovers of unfinished puts: temporary files (local), pending multipart uploads
    /// (S3). Owns the temp directory or the server, so it is dropped last.
    debris: Box<dyn Fn() -> Vec<String>>,
    /// Objects larger than this go up in several parts (S3).
    part_size: usize,
}

fn local() -> Backend {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("store");
    let storage = Box::new(LocalStorage::new(root.clone()));
    let neighbour = Box::new(LocalStorage::new(dir.path().join("store-old")));
    Backend {
        storage,
        neighbour,
        debris: Box::new(move || {
            let _owned = &dir;
            partial_files(&root)
        }),
        part_size: 5 * MIB,
    }
}

fn s3() -> Backend {
    let server = s3_testing::start_server();
    let storage = Box::new(s3_testing::storage(&server, "team/prod"));
    let neighbour = Box::new(s3_testing::storage(&server, "team/prod-old"));
    Backend {
        storage,
        neighbour,
        debris: Box::new(move || server.pending_uploads()),
        part_size: 5 * MIB,
    }
}

/// Every case, once per backend: `storage::contract::local::<case>` and
/// `storage::contract::s3::<case>`.
macro_rules! every_case {
    ($backend:ident) => {
        every_case!(@cases $backend;
            put_then_get_head_and_list,
            empty_object,
            missing_key,
            overwrite_replaces_the_whole_object,
            failed_put_leaves_nothing,
            failed_put_keeps_the_previous_object,
            put_in_flight_is_invisible,
            interrupted_put_leaves_nothing_visible,
            concurrent_puts_to_one_key_leave_one_whole_object,
            list_is_recursive_and_bounded_by_its_prefix,
            delete_removes_only_its_object,
            large_objects_round_trip_with_the_same_sha256,
            keys_with_odd_characters_round_trip,
            invalid_keys_are_refused,
            head_tells_one_version_from_the_next,
            put_new_creates_once_and_never_replaces,
        );
    };
    (@cases $backend:ident; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let backend = super::$backend();
                super::$case(&backend).await;
                let debris = (backend.debris)();
                assert!(debris.is_empty(), "debris left: {debris:?}");
            }
        )*
    };
}

mod local {
    every_case!(local);
    // Not run on S3: S3 keys are flat, so a prefix there is no object by construction,
    // but s3s-fs keeps objects as files and answers 500, not 404, for a directory.
    every_case!(@cases local; a_prefix_is_not_an_object);
}

mod s3 {
    every_case!(s3);
}

// ---- test data ----

/// `len` bytes that differ with `seed`: a block of 4093 bytes (a prime, so that no part
/// or chunk boundary lines up with it) repeated, so that parts out of order show.
fn data(len: usize, seed: u8) -> Vec<u8> {
    let block: Vec<u8> = (0..4093u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
        .collect();
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let take = block.len().min(len - out.len());
        out.extend_from_slice(&block[..take]);
    }
    out
}

/// Uneven chunk sizes, an empty chunk among them: boundaries never line up with parts.
const CHUNK_SIZES: [usize; 6] = [1, 4096, 65_537, 0, 1_000_003, 333_333];

/// `bytes` as a stream of uneven chunks; with `fail_after`, the stream yields an error
/// once that many bytes went out.
fn stream_of(bytes: &[u8], fail_after: Option<usize>) -> ByteStream {
    let mut items: Vec<std::io::Result<Bytes>> = Vec::new();
    let mut sent = 0;
    for size in CHUNK_SIZES.iter().cycle() {
        if fail_after.is_some_and(|limit| sent >= limit) {
            items.push(Err(std::io::Error::other("source failed midway")));
            break;
        }
        if sent == bytes.len() {
            break;
        }
        let end = (sent + size).min(bytes.len());
        items.push(Ok(Bytes::copy_from_slice(&bytes[sent..end])));
        sent = end;
    }
    Box::pin(futures::stream::iter(items))
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// SHA-256 and length of an object, hashed while streaming.
async fn stored_sha256(storage: &dyn Storage, key: &str) -> (String, u64) {
    let mut stream = storage.get(key).await.unwrap();
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        len += chunk.len() as u64;
        hasher.update(&chunk);
    }
    (hex::encode(hasher.finalize()), len)
}

/// The object under `key` holds exactly `expected`; on a mismatch, says where.
async fn assert_stored(storage: &dyn Storage, key: &str, expected: &[u8]) {
    let mut stream = storage.get(key).await.unwrap();
    let mut offset = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        let end = offset + chunk.len();
        assert!(
            end <= expected.len() && chunk[..] == expected[offset..end],
            "{key}: bytes {offset}..{end} differ from the {} bytes put",
            expected.len()
        );
        offset = end;
    }
    assert_eq!(offset, expected.len(), "{key}: length");
}

async fn keys(storage: &dyn Storage, prefix: &str) -> Vec<String> {
    let listed = storage.list(prefix).await.unwrap();
    listed.into_iter().map(|m| m.key).collect()
}

fn error_text<T>(result: Result<T>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

/// `modified` lies between `before` and `after`, give or take the second S3 rounds to.
fn assert_modified_between(meta: &ObjectMeta, before: DateTime<Utc>, after: DateTime<Utc>) {
    let slack = chrono::Duration::seconds(2);
    assert!(
        meta.modified >= before - slack && meta.modified <= after + slack,
        "{} modified at {}, put between {before} and {after}",
        meta.key,
        meta.modified
    );
}

/// Files below `root` whose name marks an unfinished write.
fn partial_files(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.map(|e| e.expect("directory entry")) {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if entry.file_name().to_string_lossy().contains(PARTIAL_MARKER) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

// ---- the cases ----

async fn put_then_get_head_and_list(b: &Backend) {
    let s = &*b.storage;
    let bytes = data(200_000, 1);
    let before = Utc::now();
    let written = s
        .put("pg/main/dump", stream_of(&bytes, None))
        .await
        .unwrap();
    let after = Utc::now();
    assert_eq!(written, 200_000);
    assert_eq!(get_bytes(s, "pg/main/dump").await.unwrap(), bytes);

    let head = s
        .head("pg/main/dump")
        .await
        .unwrap()
        .expect("a stored object");
    assert_eq!((head.key.as_str(), head.size), ("pg/main/dump", 200_000));
    assert_modified_between(&head, before, after);

    let listed = s.list("").await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].key.as_str(), listed[0].size),
        ("pg/main/dump", 200_000)
    );
    assert!(
        (listed[0].modified - head.modified).abs() <= chrono::Duration::seconds(1),
        "list says {}, head says {}",
        listed[0].modified,
        head.modified
    );
    assert!(keys(&*b.neighbour, "").await.is_empty());
}

async fn empty_object(b: &Backend) {
    let s = &*b.storage;
    assert_eq!(
        s.put("a/none", Box::pin(futures::stream::empty()))
            .await
            .unwrap(),
        0
    );
    let only_empty_chunks: Vec<std::io::Result<Bytes>> = vec![Ok(Bytes::new()), Ok(Bytes::new())];
    let stream = Box::pin(futures::stream::iter(only_empty_chunks));
    assert_eq!(s.put("a/blank", stream).await.unwrap(), 0);
    for key in ["a/none", "a/blank"] {
        assert_eq!(get_bytes(s, key).await.unwrap(), Vec::<u8>::new());
        assert_eq!(s.head(key).await.unwrap().map(|m| m.size), Some(0));
    }
    let listed = s.list("a").await.unwrap();
    let sizes: Vec<(&str, u64)> = listed.iter().map(|m| (m.key.as_str(), m.size)).collect();
    assert_eq!(sizes, [("a/blank", 0), ("a/none", 0)]);
}

async fn missing_key(b: &Backend) {
    let s = &*b.storage;
    assert!(keys(s, "").await.is_empty());
    assert!(s.head("pg/none").await.unwrap().is_none());
    let err = error_text(s.get("pg/none").await);
    assert!(err.contains("pg/none"), "{err}");
    s.delete("pg/none").await.unwrap();
    assert!(keys(s, "pg").await.is_empty());

    // The same once other objects exist.
    put_bytes(s, "pg/other", b"x".to_vec()).await.unwrap();
    assert!(s.head("pg/none").await.unwrap().is_none());
    assert!(s.get("pg/none").await.is_err());
    s.delete("pg/none").await.unwrap();
    // Below an object there is nothing (locally: below a file).
    assert!(s.head("pg/other/deeper").await.unwrap().is_none());
    assert!(s.get("pg/other/deeper").await.is_err());
    s.delete("pg/other/deeper").await.unwrap();
    assert_eq!(keys(s, "").await, ["pg/other"]);
}

/// `a/b` holding an object makes `a` a prefix, not an object (a directory, locally).
async fn a_prefix_is_not_an_object(b: &Backend) {
    let s = &*b.storage;
    put_bytes(s, "a/b/c", b"kept".to_vec()).await.unwrap();
    for prefix in ["a", "a/b"] {
        assert!(s.head(prefix).await.unwrap().is_none(), "head {prefix}");
        assert!(s.get(prefix).await.is_err(), "get {prefix}");
        s.delete(prefix).await.unwrap();
    }
    assert_eq!(get_bytes(s, "a/b/c").await.unwrap(), b"kept");
}

async fn overwrite_replaces_the_whole_object(b: &Backend) {
    let s = &*b.storage;
    let versions = [
        data(300_000, 1),
        data(100, 2),
        data(2 * b.part_size + 777, 3),
        data(10, 4),
    ];
    for version in &versions {
        let written = s
            .put("pg/main/dump", stream_of(version, None))
            .await
            .unwrap();
        assert_eq!(written, version.len() as u64);
        assert_stored(s, "pg/main/dump", version).await;
        let head = s.head("pg/main/dump").await.unwrap().unwrap();
        assert_eq!(head.size, version.len() as u64);
        let listed = s.list("").await.unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].size, version.len() as u64);
    }
}

async fn failed_put_leaves_nothing(b: &Backend) {
    let s = &*b.storage;
    // Fails within the first part (a single PUT on S3), then after two parts went out.
    let cases = [
        (b.part_size / 2, 100_000),
        (3 * b.part_size, 2 * b.part_size + 1),
    ];
    for (len, fail_after) in cases {
        let bytes = data(len, 5);
        let err = error_text(
            s.put("pg/broken", stream_of(&bytes, Some(fail_after)))
                .await,
        );
        assert!(err.contains("source failed midway"), "{err}");
        assert!(s.head("pg/broken").await.unwrap().is_none());
        assert!(s.get("pg/broken").await.is_err());
        let listed = s.list("").await.unwrap();
        assert!(listed.is_empty(), "after a failed put: {listed:?}");
        assert!(keys(&*b.neighbour, "").await.is_empty());
        let debris = (b.debris)();
        assert!(debris.is_empty(), "after a failed put: {debris:?}");
    }
}

async fn failed_put_keeps_the_previous_object(b: &Backend) {
    let s = &*b.storage;
    let old = data(b.part_size + 5, 6);
    s.put("pg/main/dump", stream_of(&old, None)).await.unwrap();
    for fail_after in [10, 2 * b.part_size + 1] {
        let new = data(3 * b.part_size, 7);
        assert!(s
            .put("pg/main/dump", stream_of(&new, Some(fail_after)))
            .await
            .is_err());
        assert_stored(s, "pg/main/dump", &old).await;
        assert_eq!(keys(s, "").await, ["pg/main/dump"]);
    }
}

/// While the source is still open (more than two parts handed over), the key shows no
/// object; once it ends, the whole object does.
async fn put_in_flight_is_invisible(b: &Backend) {
    let s = &*b.storage;
    let bytes = data(3 * b.part_size + 1234, 8);
    let (mut tx, rx) = futures::channel::mpsc::channel::<std::io::Result<Bytes>>(1);
    let put = s.put("pg/main/dump", Box::pin(rx));
    let observe = async {
        let (first, rest) = bytes.split_at(2 * b.part_size + 999);
        for chunk in first.chunks(MIB) {
            tx.send(Ok(Bytes::copy_from_slice(chunk))).await.unwrap();
        }
        // Let the parts handed over reach the store.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(s.head("pg/main/dump").await.unwrap().is_none());
        assert!(s.get("pg/main/dump").await.is_err());
        let listed = keys(s, "").await;
        assert!(!listed.contains(&"pg/main/dump".to_string()), "{listed:?}");
        for chunk in rest.chunks(MIB) {
            tx.send(Ok(Bytes::copy_from_slice(chunk))).await.unwrap();
        }
        drop(tx);
    };
    let (written, ()) = tokio::join!(put, observe);
    assert_eq!(written.unwrap(), bytes.len() as u64);
    assert_stored(s, "pg/main/dump", &bytes).await;
}

/// A put whose future is dropped midway, as on Ctrl-C.
async fn interrupted_put_leaves_nothing_visible(b: &Backend) {
    let s = &*b.storage;
    let bytes = data(2 * b.part_size + 4321, 9);
    let (mut tx, rx) = futures::channel::mpsc::channel::<std::io::Result<Bytes>>(1);
    let put = s.put("pg/cut", Box::pin(rx));
    let feed = async {
        for chunk in bytes.chunks(MIB) {
            tx.send(Ok(Bytes::copy_from_slice(chunk))).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    tokio::select! {
        result = put => panic!("the put ended with its source still open: {:?}", result.map_err(|e| format!("{e:#}"))),
        () = feed => {}
    }
    assert!(s.head("pg/cut").await.unwrap().is_none());
    assert!(s.get("pg/cut").await.is_err());
    let listed = s.list("").await.unwrap();
    assert!(listed.is_empty(), "after an interrupted put: {listed:?}");
    // Locally a drop guard removes the temporary file at once; on S3 the abort of the
    // multipart upload goes out in the background.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let debris = (b.debris)();
        if debris.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "10 s after an interrupted put: {debris:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn concurrent_puts_to_one_key_leave_one_whole_object(b: &Backend) {
    let s = &*b.storage;
    let one = data(b.part_size + b.part_size / 2, 10);
    let two = data(b.part_size + b.part_size / 3, 11);
    let (r1, r2) = tokio::join!(
        s.put("pg/main/dump", stream_of(&one, None)),
        s.put("pg/main/dump", stream_of(&two, None))
    );
    assert_eq!(r1.unwrap(), one.len() as u64);
    assert_eq!(r2.unwrap(), two.len() as u64);
    let stored = get_bytes(s, "pg/main/dump").await.unwrap();
    assert!(
        stored == one || stored == two,
        "the object ({} bytes) is neither whole version",
        stored.len()
    );
    assert_eq!(keys(s, "").await, ["pg/main/dump"]);
}

async fn put_new_creates_once_and_never_replaces(b: &Backend) {
    let s = &*b.storage;
    assert!(s
        .put_new("log/1", Bytes::from_static(b"first"))
        .await
        .unwrap());
    assert!(!s
        .put_new("log/1", Bytes::from_static(b"second"))
        .await
        .unwrap());
    assert_stored(s, "log/1", b"first").await;
    assert_eq!(keys(s, "log").await, ["log/1"]);
}

async fn list_is_recursive_and_bounded_by_its_prefix(b: &Backend) {
    let s = &*b.storage;
    let all = ["a-b/5", "a/1", "a/b/2", "a/b/c/3", "ab/4", "b/6", "top"];
    for (i, key) in all.iter().enumerate() {
        put_bytes(s, key, vec![b'x'; i + 1]).await.unwrap();
    }
    put_bytes(&*b.neighbour, "a/1", b"neighbour".to_vec())
        .await
        .unwrap();

    let listed = s.list("").await.unwrap();
    assert_eq!(
        listed.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(),
        all
    );
    for (i, meta) in listed.iter().enumerate() {
        assert_eq!(meta.size, i as u64 + 1, "{meta:?}");
    }

    let under_a = ["a/1", "a/b/2", "a/b/c/3"];
    for prefix in ["a", "a/", "/a", "/a/"] {
        assert_eq!(keys(s, prefix).await, under_a, "list {prefix:?}");
    }
    assert_eq!(keys(s, "a/b").await, ["a/b/2", "a/b/c/3"]);
    assert_eq!(keys(s, "a/b/c/").await, ["a/b/c/3"]);
    // A prefix is whole segments: `a/b` is not below `a/` nor `ab/4` below `a`.
    assert!(keys(s, "a/b/c/3").await.is_empty());
    assert!(keys(s, "top").await.is_empty());
    assert!(keys(s, "missing").await.is_empty());
    assert!(keys(s, "a/missing/deeper").await.is_empty());

    assert_eq!(keys(&*b.neighbour, "").await, ["a/1"]);
    assert_eq!(get_bytes(s, "a/1").await.unwrap(), b"xx");
}

async fn delete_removes_only_its_object(b: &Backend) {
    let s = &*b.storage;
    for key in ["a/1", "a/2", "b/3"] {
        put_bytes(s, key, key.as_bytes().to_vec()).await.unwrap();
    }
    s.delete("a/1").await.unwrap();
    assert!(s.head("a/1").await.unwrap().is_none());
    assert_eq!(keys(s, "").await, ["a/2", "b/3"]);
    s.delete("a/1").await.unwrap();
    s.delete("a/2").await.unwrap();
    s.delete("b/3").await.unwrap();
    assert!(keys(s, "").await.is_empty());
    // A prefix emptied by deletes takes new objects again.
    put_bytes(s, "a/1", b"again".to_vec()).await.unwrap();
    assert_eq!(get_bytes(s, "a/1").await.unwrap(), b"again");
}

async fn large_objects_round_trip_with_the_same_sha256(b: &Backend) {
    let s = &*b.storage;
    let part = b.part_size;
    let sizes = [part - 1, part, part + 1, 2 * part + 12_345];
    for (i, size) in sizes.into_iter().enumerate() {
        let bytes = data(size, 12 + i as u8);
        let key = format!("big/{size}.dump");
        assert_eq!(
            s.put(&key, stream_of(&bytes, None)).await.unwrap(),
            size as u64
        );
        assert_eq!(stored_sha256(s, &key).await, (sha256(&bytes), size as u64));
        assert_eq!(s.head(&key).await.unwrap().unwrap().size, size as u64);
    }
    let listed = s.list("big").await.unwrap();
    let sizes_listed: BTreeSet<u64> = listed.iter().map(|m| m.size).collect();
    assert_eq!(sizes_listed, sizes.iter().map(|&n| n as u64).collect());
}

/// Keys the code accepts: anything but control characters and empty, `.` or `..` segments.
const ODD_KEYS: [&str; 9] = [
    "with space/file name.dump",
    "unicode/ünïcødé-日本語.json",
    "punctuation/a+b=c@d,e;f:g!h$i&j'k(l)m",
    "percent/100%25 done%",
    "reserved/a#b?c[d]{e}^f|g`h~i\"j<k>l*m\\n",
    "dots/.hidden",
    "dots/..double",
    "dots/trailing.",
    "-dash/_under/0",
];

async fn keys_with_odd_characters_round_trip(b: &Backend) {
    let s = &*b.storage;
    for key in ODD_KEYS {
        put_bytes(s, key, key.as_bytes().to_vec()).await.unwrap();
        assert_eq!(get_bytes(s, key).await.unwrap(), key.as_bytes(), "{key}");
        let head = s
            .head(key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("head {key}"));
        assert_eq!((head.key.as_str(), head.size), (key, key.len() as u64));
    }
    let mut expected = ODD_KEYS.to_vec();
    expected.sort();
    assert_eq!(keys(s, "").await, expected);
    assert_eq!(
        keys(s, "dots").await,
        ["dots/..double", "dots/.hidden", "dots/trailing."]
    );
    for key in ODD_KEYS {
        s.delete(key).await.unwrap();
    }
    assert!(keys(s, "").await.is_empty());
}

async fn invalid_keys_are_refused(b: &Backend) {
    let s = &*b.storage;
    let invalid = [
        "",
        "/a",
        "a/",
        "a//b",
        ".",
        "a/./b",
        "..",
        "a/../b",
        // Into the neighbour, for each backend's layout.
        "../store-old/x",
        "../prod-old/x",
        "line\nbreak",
        "nul\0byte",
        "tab\there",
    ];
    for key in invalid {
        let err = error_text(put_bytes(s, key, b"x".to_vec()).await);
        assert!(err.contains("invalid object key"), "put {key:?}: {err}");
        assert!(s.head(key).await.is_err(), "head {key:?}");
        assert!(s.get(key).await.is_err(), "get {key:?}");
        assert!(s.delete(key).await.is_err(), "delete {key:?}");
    }
    for prefix in [
        "..",
        "../store-old",
        "../prod-old",
        "a/../..",
        "a//b",
        "a\nb",
    ] {
        assert!(s.list(prefix).await.is_err(), "list {prefix:?}");
    }
    assert!(keys(s, "").await.is_empty());
    assert!(keys(&*b.neighbour, "").await.is_empty());
}

/// What integrity verdicts rely on: `head` describes the same stored version the same way
/// every time, and any new version of the object, even of the same
/// size, put within the same second, looks different.
async fn head_tells_one_version_from_the_next(b: &Backend) {
    let s = &*b.storage;
    let first = data(b.part_size + 3, 21);
    s.put("pg/main/dump", stream_of(&first, None))
        .await
        .unwrap();
    let head = s.head("pg/main/dump").await.unwrap().unwrap();
    assert!(head.etag.is_some(), "no version tag: {head:?}");
    let again = s.head("pg/main/dump").await.unwrap().unwrap();
    assert!(head.same_version(&again), "{head:?} then {again:?}");
    // Reading the object does not make it another version.
    assert_stored(s, "pg/main/dump", &first).await;
    // (Only `head` is compared with `head`: S3 lists round times differently and may
    // leave out the ETag.)

    // Same size, other bytes, at once: a tampered copy must not pass for the original.
    let mut second = first.clone();
    second[7] ^= 0xff;
    s.put("pg/main/dump", stream_of(&second, None))
        .await
        .unwrap();
    let after = s.head("pg/main/dump").await.unwrap().unwrap();
    assert_eq!(after.size, head.size);
    assert!(
        !head.same_version(&after),
        "overwritten, yet {head:?} = {after:?}"
    );
}
