//! Continuous WAL archiving: the names PostgreSQL gives its WAL files, where `dr` keeps
//! them in storage, and how a cluster is recognised (its system identifier).
//!
//! Storage layout, one prefix per target and cluster, so two clusters can never mix:
//!
//! ```text
//! wal/<target>/<system id>/cluster.json                           written with the first push
//! wal/<target>/<system id>/<timeline+log, 16 hex>/<wal name>.<sha256>[.zst|.gz]
//! wal/<target>/<system id>/history/<tli>.history.<sha256>[.zst|.gz]
//! ```
//!
//! The SHA-256 in the object name is the hash of the raw (uncompressed) file: it proves
//! what a fetch decompressed, and it makes a second push of the same name comparable
//! without a download. An object is only ever created complete (the storage contract), so
//! a name that parses is a whole, pushed file. With `[encryption]`, segments are encrypted
//! (`.zst.age`); timeline and backup history files hold only positions and labels and stay
//! readable without a key, so checks and base backups can follow them.

pub mod continuity;
pub mod fetch;
pub mod marks;
pub mod push;
pub mod push_ahead;
pub mod retention;
pub mod spool;
pub mod waldump;

use std::fmt;
use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::{Compression, Config, PostgresTarget};
use crate::error::usage;
use crate::storage::{self, ObjectMeta, Storage};

pub const WAL_PREFIX: &str = "wal";
pub const CLUSTER_FILE: &str = "cluster.json";
const HISTORY_DIR: &str = "history";

/// `XLP_LONG_HEADER`: the first page of every segment carries the long header.
const XLP_LONG_HEADER: u16 = 0x0002;
const LONG_HEADER_LEN: usize = 40;

/// A write-ahead log position (`16/B374D848`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    pub fn parse(text: &str) -> Result<Lsn> {
        let (hi, lo) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| anyhow!("{text:?} is not a WAL position (expected like 0/3000028)"))?;
        let hi =
            u32::from_str_radix(hi, 16).map_err(|_| anyhow!("{text:?} is not a WAL position"))?;
        let lo =
            u32::from_str_radix(lo, 16).map_err(|_| anyhow!("{text:?} is not a WAL position"))?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }

    /// The segment number holding this position.
    pub fn segno(self, segment_size: u64) -> u64 {
        self.0 / segment_size
    }

    /// The last segment WAL up to this end point needs: the one holding the byte before
    /// it. A backup from a standby can end exactly at a segment boundary (its replay
    /// stopped after a WAL switch), and the segment starting there may never be written.
    pub fn end_segno(self, segment_size: u64) -> u64 {
        self.0.saturating_sub(1) / segment_size
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// How many segments one 4 GiB "log" (the middle 8 hex digits of a name) holds.
pub fn segments_per_log(segment_size: u64) -> u64 {
    0x1_0000_0000 / segment_size
}

/// `TTTTTTTTXXXXXXXXYYYYYYYY` for timeline `tli` and segment number `segno`.
pub fn segment_name(tli: u32, segno: u64, segment_size: u64) -> String {
    let per_log = segments_per_log(segment_size);
    format!("{tli:08X}{:08X}{:08X}", segno / per_log, segno % per_log)
}

/// Whether `segment_size` is one PostgreSQL allows (a power of two, 1 MiB to 1 GiB).
pub fn valid_segment_size(segment_size: u64) -> bool {
    segment_size.is_power_of_two() && (1 << 20..=1 << 30).contains(&segment_size)
}

/// The kinds of files `archive_command` and `restore_command` are called with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WalKind {
    /// A complete segment.
    Segment,
    /// The last, incomplete segment of a timeline that ended with a promotion.
    Partial,
    /// A backup history file (`<segment>.<offset>.backup`): a base backup's start and stop.
    Backup,
    /// A timeline history file (`<tli>.history`).
    History,
}

/// A parsed WAL file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WalName {
    pub name: String,
    pub kind: WalKind,
    pub timeline: u32,
    /// `log` and `seg` as written in the name (not meaningful for history files).
    pub log: u32,
    pub seg: u32,
}

fn hex_u32(text: &str) -> Option<u32> {
    if text.len() == 8 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        u32::from_str_radix(text, 16).ok()
    } else {
        None
    }
}

impl WalName {
    pub fn parse(name: &str) -> Option<WalName> {
        let make = |kind, base: &str| {
            Some(WalName {
                name: name.to_string(),
                kind,
                timeline: hex_u32(base.get(0..8)?)?,
                log: hex_u32(base.get(8..16)?)?,
                seg: hex_u32(base.get(16..24)?)?,
            })
        };
        if name.len() == 24 {
            return make(WalKind::Segment, name);
        }
        if let Some(base) = name.strip_suffix(".partial") {
            return if base.len() == 24 {
                make(WalKind::Partial, base)
            } else {
                None
            };
        }
        if let Some(rest) = name.strip_suffix(".backup") {
            let (base, offset) = rest.split_once('.')?;
            return if base.len() == 24 && hex_u32(offset).is_some() {
                make(WalKind::Backup, base)
            } else {
                None
            };
        }
        if let Some(tli) = name.strip_suffix(".history") {
            return Some(WalName {
                name: name.to_string(),
                kind: WalKind::History,
                timeline: hex_u32(tli)?,
                log: 0,
                seg: 0,
            });
        }
        None
    }

    /// The segment number (for segments, partial segments and backup history files).
    pub fn segno(&self, segment_size: u64) -> u64 {
        u64::from(self.log) * segments_per_log(segment_size) + u64::from(self.seg)
    }

    /// The directory below the cluster's prefix that holds this file.
    pub fn directory(&self) -> String {
        match self.kind {
            WalKind::History => HISTORY_DIR.to_string(),
            _ => self.name[..16].to_string(),
        }
    }

    /// Whether a file of this kind starts with a WAL page header.
    pub fn has_page_header(&self) -> bool {
        matches!(self.kind, WalKind::Segment | WalKind::Partial)
    }
}

/// The prefix of one cluster's archive: `wal/<target>/<system id>`.
pub fn cluster_prefix(target: &str, system_id: u64) -> String {
    format!("{WAL_PREFIX}/{target}/{system_id}")
}

/// One archived file as its object name describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedFile {
    pub wal: WalName,
    /// SHA-256 (hex) of the raw file.
    pub sha256: String,
    pub compression: Compression,
    /// Encrypted with age to the configured recipients (`.age`).
    pub encrypted: bool,
    /// The object key, relative to the storage root.
    pub key: String,
    pub size: u64,
}

/// The object key of `wal` pushed with raw hash `sha256`; `extension` is the codec's
/// (`.zst`, `.zst.age`...).
pub fn object_key(prefix: &str, wal: &WalName, sha256: &str, extension: &str) -> String {
    format!(
        "{prefix}/{}/{}.{sha256}{extension}",
        wal.directory(),
        wal.name
    )
}

/// Whether files of this kind are encrypted when `[encryption]` is set: the ones that carry
/// data. History files carry positions and labels only.
pub fn encrypts(kind: WalKind) -> bool {
    matches!(kind, WalKind::Segment | WalKind::Partial)
}

/// Parses the last component of an object key: `<wal name>.<sha256>[.zst|.gz][.age]`:
/// (name, raw SHA-256, compression, encrypted). Anything else (a temporary file of a
/// write in progress, a stray file) is not an archived file.
pub fn parse_object_name(file: &str) -> Option<(WalName, String, Compression, bool)> {
    let (file, encrypted) = match file.strip_suffix(".age") {
        Some(f) => (f, true),
        None => (file, false),
    };
    let (rest, compression) = if let Some(r) = file.strip_suffix(".zst") {
        (r, Compression::Zstd)
    } else if let Some(r) = file.strip_suffix(".gz") {
        (r, Compression::Gzip)
    } else {
        (file, Compression::None)
    };
    let (name, sha) = rest.rsplit_once('.')?;
    if sha.len() != 64 || !sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    Some((
        WalName::parse(name)?,
        sha.to_string(),
        compression,
        encrypted,
    ))
}

/// Everything archived for one cluster.
pub async fn list_archive(storage: &dyn Storage, prefix: &str) -> Result<Vec<ArchivedFile>> {
    let objects = storage.list(&format!("{prefix}/")).await.with_context(|| {
        format!(
            "cannot list the WAL archive {prefix} in {}",
            storage.describe()
        )
    })?;
    Ok(archived_files(objects))
}

/// The archived files among listed objects, in name order.
pub fn archived_files(objects: Vec<ObjectMeta>) -> Vec<ArchivedFile> {
    let mut out: Vec<ArchivedFile> = objects
        .into_iter()
        .filter_map(|o| {
            let file = o.key.rsplit('/').next()?;
            let (wal, sha256, compression, encrypted) = parse_object_name(file)?;
            Some(ArchivedFile {
                wal,
                sha256,
                compression,
                encrypted,
                size: o.size,
                key: o.key.clone(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.wal.name.cmp(&b.wal.name).then(a.key.cmp(&b.key)));
    out
}

/// Reads a small archived file (history, backup history) into memory, checking its hash.
pub async fn read_small(storage: &dyn Storage, file: &ArchivedFile) -> Result<Vec<u8>> {
    use sha2::Digest;
    if file.encrypted {
        bail!(
            "{} is encrypted, but dr stores history files unencrypted: it was not written by dr",
            file.key
        );
    }
    let stored = storage::get_bytes(storage, &file.key).await?;
    let mut raw = Vec::new();
    crate::codec::decompressor(file.compression, &stored[..])?
        .read_to_end(&mut raw)
        .with_context(|| format!("{} is damaged: cannot decompress it", file.key))?;
    let sha = hex::encode(sha2::Sha256::digest(&raw));
    if sha != file.sha256 {
        bail!(
            "{} is damaged: it decompresses to sha256 {sha}, its name says {}",
            file.key,
            file.sha256
        );
    }
    Ok(raw)
}

/// What a backup history file (`<segment>.<offset>.backup`) says: where the base backup
/// started and stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupHistory {
    pub start: Lsn,
    pub stop: Lsn,
}

/// Parses the backup history file `wal` (its text): a `START WAL LOCATION` in the segment
/// and at the offset its name says, and a `STOP WAL LOCATION` not before it.
pub fn parse_backup_history(wal: &WalName, text: &str) -> Result<BackupHistory> {
    let location = |key: &str| -> Result<(Lsn, String)> {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .ok_or_else(|| anyhow!("it has no {key:?} line"))?;
        let (lsn, file) = line
            .trim()
            .split_once(" (file ")
            .ok_or_else(|| anyhow!("unreadable {key} {:?}", line.trim()))?;
        let file = file
            .strip_suffix(')')
            .ok_or_else(|| anyhow!("unreadable {key} {:?}", line.trim()))?;
        Ok((Lsn::parse(lsn)?, file.to_string()))
    };
    let (start, start_file) = location("START WAL LOCATION:")?;
    let (stop, stop_file) = location("STOP WAL LOCATION:")?;
    let (segment, offset) = wal
        .name
        .split_once('.')
        .and_then(|(seg, rest)| Some((seg, u64::from(hex_u32(rest.get(0..8)?)?))))
        .ok_or_else(|| anyhow!("{} is not a backup history file name", wal.name))?;
    if start_file != segment {
        bail!("it starts in {start_file}, its name says {segment}");
    }
    // The name holds the start segment and the offset in it: one segment size must
    // explain both (the file itself does not say which).
    let matches = (20..=30).map(|shift| 1u64 << shift).any(|size| {
        start.0 % size == offset && segment_name(wal.timeline, start.segno(size), size) == segment
    });
    if !matches {
        bail!("its start {start} is not at offset {offset:X} of {segment}, as its name says");
    }
    if stop < start || WalName::parse(&stop_file).is_none_or(|w| w.kind != WalKind::Segment) {
        bail!("its stop {stop} (file {stop_file}) does not follow its start {start}");
    }
    Ok(BackupHistory { start, stop })
}

/// What the first page of a segment says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub system_id: u64,
    pub page_address: u64,
    pub segment_size: u64,
}

/// Reads the long page header at the start of a segment (`XLogLongPageHeaderData`).
pub fn read_segment_header(path: &Path) -> Result<SegmentHeader> {
    let mut buf = [0u8; LONG_HEADER_LEN];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .with_context(|| format!("cannot read the page header of {}", path.display()))?;
    parse_segment_header(&buf).with_context(|| format!("{} is not a WAL segment", path.display()))
}

// Fixed offsets inside a fixed-size header: every slice has the length asked for.
#[allow(clippy::expect_used)]
pub fn parse_segment_header(buf: &[u8; LONG_HEADER_LEN]) -> Result<SegmentHeader> {
    let u16_at = |o: usize| u16::from_ne_bytes(buf[o..o + 2].try_into().expect("2 bytes"));
    let u32_at = |o: usize| u32::from_ne_bytes(buf[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_ne_bytes(buf[o..o + 8].try_into().expect("8 bytes"));
    let magic = u16_at(0);
    let info = u16_at(2);
    if magic & 0xF000 != 0xD000 || info & XLP_LONG_HEADER == 0 {
        bail!("its first page has no WAL long page header (magic {magic:#06x}, info {info:#06x})");
    }
    let segment_size = u64::from(u32_at(32));
    if !valid_segment_size(segment_size) {
        bail!("its page header names an impossible segment size ({segment_size} bytes)");
    }
    Ok(SegmentHeader {
        system_id: u64_at(24),
        page_address: u64_at(8),
        segment_size,
    })
}

/// The system identifier in a data directory's `global/pg_control` (its first field).
pub fn read_control_system_id(data_dir: &Path) -> Result<u64> {
    let path = data_dir.join("global").join("pg_control");
    let mut buf = [0u8; 8];
    std::fs::File::open(&path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(u64::from_ne_bytes(buf))
}

/// The data directory a WAL path points into: `<data>/pg_wal/<file>` → `<data>`; a
/// relative path (as PostgreSQL passes `%p`) is relative to the working directory, which
/// PostgreSQL sets to the data directory.
pub fn data_dir_of(wal_path: &Path) -> std::path::PathBuf {
    let dir = wal_path.parent().unwrap_or(Path::new(""));
    let data = match dir.file_name().and_then(|n| n.to_str()) {
        Some("pg_wal" | "pg_xlog") => dir.parent().unwrap_or(Path::new("")),
        _ => dir,
    };
    if data.as_os_str().is_empty() {
        std::path::PathBuf::from(".")
    } else {
        data.to_path_buf()
    }
}

/// The program an `archive_command` runs, for messages: the rest of the command may carry
/// credentials (`AWS_SECRET_ACCESS_KEY=... tool push %p`), so it is never repeated.
pub fn command_program(command: &str) -> String {
    command
        .split_whitespace()
        .find(|w| !w.contains('='))
        .map(|w| w.rsplit('/').next().unwrap_or(w).to_string())
        .unwrap_or_default()
}

/// `cluster.json`: which cluster a prefix belongs to, written with its first push.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterRecord {
    pub format_version: u32,
    pub target: String,
    /// As a string: JSON numbers lose precision above 2^53.
    pub system_identifier: String,
    pub wal_segment_size: Option<u64>,
    pub first_pushed_at: chrono::DateTime<chrono::Utc>,
    pub dr_version: String,
}

impl ClusterRecord {
    /// A stored `cluster.json` of the archive of `system_id`; the error says what is wrong.
    pub fn parse(bytes: &[u8], system_id: u64) -> Result<ClusterRecord> {
        let record: ClusterRecord =
            serde_json::from_slice(bytes).map_err(|e| anyhow!("not a cluster record: {e}"))?;
        if record.format_version != 1 {
            bail!(
                "cluster record format {} is not the 1 this dr reads",
                record.format_version
            );
        }
        if record.system_identifier != system_id.to_string() {
            bail!(
                "it names system {:?}, but sits in the archive of system {system_id}",
                record.system_identifier
            );
        }
        Ok(record)
    }
}

/// Reads and checks the `cluster.json` of `target`'s archive of `system_id`: a damaged one
/// is named with the fix, never taken as a cluster nobody can vouch for.
pub async fn read_cluster_record(
    storage: &dyn Storage,
    target: &str,
    system_id: u64,
) -> Result<ClusterRecord> {
    let key = cluster_record_key(target, system_id);
    let bytes = storage::get_bytes(storage, &key).await?;
    ClusterRecord::parse(&bytes, system_id).map_err(|e| {
        anyhow!(
            "{key} in {} is damaged ({e:#}); hint: compare it with the segments of {}, then remove it: the next wal-push of that cluster writes it again",
            storage.describe(),
            cluster_prefix(target, system_id)
        )
    })
}

pub fn cluster_record_key(target: &str, system_id: u64) -> String {
    format!("{}/{CLUSTER_FILE}", cluster_prefix(target, system_id))
}

/// The system identifiers archived for `target` (one per `cluster.json`).
pub async fn archived_systems(storage: &dyn Storage, target: &str) -> Result<Vec<u64>> {
    // cluster.json sits at depth 3; listing the whole archive would read every segment
    // name, so look for the records only.
    let objects = storage
        .list(&format!("{WAL_PREFIX}/{target}/"))
        .await
        .with_context(|| format!("cannot list the WAL archive of {target}"))?;
    let mut ids: Vec<u64> = objects
        .iter()
        .filter_map(|o| {
            let mut parts = o.key.split('/');
            let (_, _, id, file) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            (file == CLUSTER_FILE && parts.next().is_none())
                .then(|| id.parse().ok())
                .flatten()
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    for id in &ids {
        read_cluster_record(storage, target, *id).await?;
    }
    Ok(ids)
}

/// The target whose archive a `wal-push`/`wal-fetch` works on: `--target`, the only
/// PostgreSQL target, or the one target that already archives this system identifier.
pub async fn resolve_target<'a>(
    config: &'a Config,
    storage: &dyn Storage,
    explicit: Option<&str>,
    system_id: Option<u64>,
) -> Result<&'a PostgresTarget> {
    if let Some(name) = explicit {
        return config.postgres_target(name);
    }
    match config.postgres.as_slice() {
        [] => Err(usage(format!(
            "{}: no [[postgres]] target is configured; hint: add the target whose WAL this is (see dr.toml.example)",
            config.path.display()
        ))),
        [only] => Ok(only),
        many => {
            let names = many.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ");
            let Some(id) = system_id else {
                return Err(usage(format!(
                    "{} PostgreSQL targets are configured and the cluster is unknown; hint: add --target NAME ({names})",
                    many.len()
                )));
            };
            let mut matching = Vec::new();
            for t in many {
                if storage.head(&cluster_record_key(&t.name, id)).await?.is_some() {
                    matching.push(t);
                }
            }
            match matching.as_slice() {
                [one] => Ok(one),
                [] => Err(usage(format!(
                    "{} PostgreSQL targets are configured and none archives system {id} yet; hint: add --target NAME to the command ({names})",
                    many.len()
                ))),
                _ => Err(usage(format!(
                    "system {id} is archived under several targets ({}); hint: add --target NAME to the command",
                    matching.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
                ))),
            }
        }
    }
}

/// Writes `cluster.json` unless it exists.
pub async fn ensure_cluster_record(
    storage: &dyn Storage,
    target: &str,
    system_id: u64,
    segment_size: Option<u64>,
) -> Result<()> {
    let key = cluster_record_key(target, system_id);
    if storage.head(&key).await?.is_some() {
        // Archiving goes on (the segment's own header says which cluster it is), but a
        // damaged record is named in the server's log; `dr check` and prune refuse it.
        if let Err(e) = read_cluster_record(storage, target, system_id).await {
            tracing::warn!("{e:#}");
        }
        return Ok(());
    }
    let record = ClusterRecord {
        format_version: 1,
        target: target.to_string(),
        system_identifier: system_id.to_string(),
        wal_segment_size: segment_size,
        first_pushed_at: chrono::Utc::now(),
        dr_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    storage::put_bytes(storage, &key, serde_json::to_vec_pretty(&record)?).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 16 << 20;

    #[test]
    fn lsn_round_trips_and_maps_to_segments() {
        let lsn = Lsn::parse("16/B374D848").unwrap();
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!(lsn.segno(SEG), 0x16 * 256 + 0xB3);
        assert_eq!(
            segment_name(1, lsn.segno(SEG), SEG),
            "0000000100000016000000B3"
        );
        assert_eq!(segment_name(2, 0x100, SEG), "000000020000000100000000");
        // 1 GiB segments: four per log.
        assert_eq!(segment_name(1, 5, 1 << 30), "000000010000000100000001");
        assert!(Lsn::parse("nonsense").is_err());
        assert!(Lsn::parse("0/XYZ").is_err());
    }

    #[test]
    fn parses_every_kind_of_wal_name() {
        let s = WalName::parse("0000000100000002000000FE").unwrap();
        assert_eq!(
            (s.kind, s.timeline, s.log, s.seg),
            (WalKind::Segment, 1, 2, 0xFE)
        );
        assert_eq!(s.segno(SEG), 2 * 256 + 0xFE);
        assert_eq!(s.directory(), "0000000100000002");
        let p = WalName::parse("000000020000000000000005.partial").unwrap();
        assert_eq!((p.kind, p.timeline), (WalKind::Partial, 2));
        let b = WalName::parse("000000010000000000000002.00000028.backup").unwrap();
        assert_eq!((b.kind, b.seg), (WalKind::Backup, 2));
        let h = WalName::parse("0000000A.history").unwrap();
        assert_eq!(
            (h.kind, h.timeline, h.directory().as_str()),
            (WalKind::History, 10, "history")
        );
        for bad in [
            "",
            "RECOVERYXLOG",
            "00000001000000000000000",
            "0000000100000000000000GG",
            "000000010000000000000002.backup",
            "1.history",
            "000000010000000000000002.partial.x",
            "../../etc/passwd",
        ] {
            assert!(WalName::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn object_names_carry_the_hash_and_compression() {
        let sha = "ab".repeat(32);
        let wal = WalName::parse("000000010000000000000003").unwrap();
        let key = object_key("wal/main/7", &wal, &sha, ".zst");
        assert_eq!(
            key,
            format!("wal/main/7/0000000100000000/000000010000000000000003.{sha}.zst")
        );
        let file = key.rsplit('/').next().unwrap();
        assert_eq!(
            parse_object_name(file),
            Some((wal.clone(), sha.clone(), Compression::Zstd, false))
        );
        let sealed = format!("000000010000000000000003.{sha}.zst.age");
        assert_eq!(
            parse_object_name(&sealed),
            Some((wal.clone(), sha.clone(), Compression::Zstd, true))
        );
        assert!(encrypts(WalKind::Segment) && !encrypts(WalKind::History));
        let plain = format!("000000010000000000000003.{sha}");
        assert_eq!(parse_object_name(&plain).unwrap().2, Compression::None);
        let backup = format!("000000010000000000000002.00000028.backup.{sha}.gz");
        assert_eq!(parse_object_name(&backup).unwrap().0.kind, WalKind::Backup);
        // A write in progress (local storage) and short hashes are not archived files.
        assert!(parse_object_name(&format!("{file}.partial-12-0")).is_none());
        assert!(parse_object_name("000000010000000000000003.abcd.zst").is_none());
        assert!(
            parse_object_name(&format!("000000010000000000000003.{}.zst", "AB".repeat(32)))
                .is_none()
        );
    }

    fn header(magic: u16, info: u16, sysid: u64, pageaddr: u64, segsize: u32) -> [u8; 40] {
        let mut b = [0u8; 40];
        b[0..2].copy_from_slice(&magic.to_ne_bytes());
        b[2..4].copy_from_slice(&info.to_ne_bytes());
        b[4..8].copy_from_slice(&1u32.to_ne_bytes());
        b[8..16].copy_from_slice(&pageaddr.to_ne_bytes());
        b[24..32].copy_from_slice(&sysid.to_ne_bytes());
        b[32..36].copy_from_slice(&segsize.to_ne_bytes());
        b[36..40].copy_from_slice(&8192u32.to_ne_bytes());
        b
    }

    #[test]
    fn reads_the_long_page_header() {
        let h = parse_segment_header(&header(0xD110, 2, 7712118149896994337, 0x2000000, 16 << 20))
            .unwrap();
        assert_eq!(h.system_id, 7712118149896994337);
        assert_eq!(h.page_address, 0x2000000);
        assert_eq!(h.segment_size, 16 << 20);
        assert!(parse_segment_header(&header(0xD110, 0, 1, 0, 16 << 20)).is_err());
        assert!(parse_segment_header(&header(0x1234, 2, 1, 0, 16 << 20)).is_err());
        assert!(parse_segment_header(&header(0xD110, 2, 1, 0, 1000)).is_err());
    }

    #[test]
    fn backup_history_files_must_match_their_name() {
        let text = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nSTOP WAL LOCATION: 0/2000100 (file 000000010000000000000002)\n";
        let wal = WalName::parse("000000010000000000000002.00000028.backup").unwrap();
        let h = parse_backup_history(&wal, text).unwrap();
        assert_eq!((h.start, h.stop), (Lsn(0x2000028), Lsn(0x2000100)));
        // 1 MiB segments: 0/2000028 is segment 0x20, offset 0x28.
        let small = WalName::parse("000000010000000000000020.00000028.backup").unwrap();
        let text_small = text.replace("000000010000000000000002", "000000010000000000000020");
        assert!(parse_backup_history(&small, &text_small).is_ok());
        let elsewhere = WalName::parse("000000010000000000000002.00000030.backup").unwrap();
        assert!(parse_backup_history(&elsewhere, text).is_err());
        let other_file = WalName::parse("000000010000000000000003.00000028.backup").unwrap();
        assert!(parse_backup_history(&other_file, text).is_err());
        let no_stop = text.lines().next().unwrap();
        assert!(parse_backup_history(&wal, no_stop).is_err());
        let backwards = text.replace("0/2000100", "0/2000000");
        assert!(parse_backup_history(&wal, &backwards).is_err());
    }

    #[test]
    fn names_only_the_program_of_a_command() {
        assert_eq!(
            command_program(
                "AWS_SECRET_ACCESS_KEY=s3cr3t /usr/bin/pgbackrest --stanza=x archive-push %p"
            ),
            "pgbackrest"
        );
        assert_eq!(command_program("cp %p /mnt/server/archivedir/%f"), "cp");
        assert_eq!(command_program(""), "");
    }

    #[test]
    fn finds_the_data_directory_of_a_wal_path() {
        assert_eq!(
            data_dir_of(Path::new("pg_wal/000000010000000000000001")),
            Path::new(".")
        );
        assert_eq!(
            data_dir_of(Path::new("/srv/pg/data/pg_wal/x")),
            Path::new("/srv/pg/data")
        );
        assert_eq!(data_dir_of(Path::new("/tmp/x")), Path::new("/tmp"));
    }
}
