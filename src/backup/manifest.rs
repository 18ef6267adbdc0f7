//! The manifest: the JSON document beside a dump that makes a backup complete. It is
//! written last; without it the data objects are leftovers, never a backup.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Compression;

/// Dump manifests are still written as format 1 (readable by every dr); format 2 adds
/// physical base backups (`method`, `physical`), which an older dr must not mistake for
/// a dump.
pub const MANIFEST_FORMAT_VERSION: u32 = 2;
pub const DUMP_FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    /// Taken by `dr backup` (or a drill).
    #[default]
    Regular,
    /// Taken by `dr restore` of the destination before overwriting it.
    Safety,
}

impl BackupKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupKind::Regular => "regular",
            BackupKind::Safety => "safety",
        }
    }
}

/// How a backup was taken.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "lowercase")]
pub enum BackupMethod {
    /// `pg_dump` (one database, logical); every manifest before format 2.
    #[default]
    Dump,
    /// `pg_basebackup` (the whole cluster, physical); restored with archived WAL.
    Physical,
}

impl BackupMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupMethod::Dump => "dump",
            BackupMethod::Physical => "physical",
        }
    }
}

/// A tablespace outside the data directory, as the server reported it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tablespace {
    pub oid: u32,
    pub name: String,
    pub location: String,
}

/// What a physical base backup needs to be restored: where its WAL starts and where the
/// copy becomes consistent, on which timeline of which cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PhysicalInfo {
    /// As a string: JSON numbers lose precision above 2^53.
    pub system_identifier: String,
    pub timeline: u32,
    /// `START WAL LOCATION` of backup_label: recovery replays from here.
    pub start_lsn: String,
    pub start_wal: String,
    pub checkpoint_lsn: String,
    /// Where the copy is consistent: no recovery target before this point is possible.
    pub stop_lsn: String,
    pub stop_wal: String,
    pub wal_segment_size: u64,
    pub data_checksums: bool,
    pub tablespaces: Vec<Tablespace>,
    pub pg_basebackup_version: String,
    /// The tar holds pg_basebackup's `backup_manifest` (so pg_verifybackup can check it).
    pub backup_manifest: bool,
    /// The backup history file (`<segment>.<offset>.backup`) in the WAL archive.
    pub backup_history_file: String,
}

/// What a stored object of a backup holds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ObjectRole {
    /// The database, as a `pg_dump` custom-format archive.
    Dump,
    /// Roles and tablespaces, as `pg_dumpall --globals-only` SQL.
    Globals,
    /// The whole cluster, as the tar `pg_basebackup` writes (physical backups).
    Base,
}

impl ObjectRole {
    /// The file name of the object once staged for a restore (decompressed).
    pub fn staged_file_name(self) -> &'static str {
        match self {
            ObjectRole::Dump => "dump.pgdump",
            ObjectRole::Globals => "globals.sql",
            ObjectRole::Base => "base.tar",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredObject {
    pub role: ObjectRole,
    /// File name inside the backup's directory.
    pub file: String,
    pub compression: Compression,
    /// Bytes as stored (after compression).
    pub size_bytes: u64,
    /// SHA-256 of the stored bytes.
    pub sha256: String,
    /// Bytes before compression: what staging a restore needs on disk.
    pub raw_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableCount {
    pub schema: String,
    pub name: String,
    /// Exact `count(*)` in the dump's snapshot.
    pub rows: i64,
}

impl TableCount {
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackupManifest {
    pub format_version: u32,
    pub id: String,
    pub target: String,
    #[serde(default)]
    pub kind: BackupKind,
    /// Absent in format 1 manifests, which are all dumps.
    #[serde(default)]
    pub method: BackupMethod,
    pub database: String,
    /// The source, password removed.
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub server_version: String,
    pub server_major: u32,
    /// Empty for physical backups.
    #[serde(default)]
    pub pg_dump_version: String,
    pub dr_version: String,
    /// `custom` (pg_dump -Fc) for dumps, `tar` for physical backups.
    pub format: String,
    pub compression: Compression,
    pub compression_level: i32,
    /// Always `null` for now: encryption at rest is the storage's.
    pub encryption: Option<String>,
    /// Stored bytes of all objects.
    pub size_bytes: u64,
    /// SHA-256 of the stored dump object (of the base tar for physical backups).
    pub sha256: String,
    pub objects: Vec<StoredObject>,
    /// The exported snapshot both the counts and pg_dump used (dumps only).
    #[serde(default)]
    pub snapshot: String,
    #[serde(default)]
    pub schemas: Vec<String>,
    #[serde(default)]
    pub extensions: Vec<String>,
    #[serde(default)]
    pub tables: Vec<TableCount>,
    /// Physical backups only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical: Option<PhysicalInfo>,
}

impl BackupManifest {
    pub fn dump(&self) -> &StoredObject {
        self.objects
            .iter()
            .find(|o| o.role == ObjectRole::Dump)
            .expect("validated: a manifest has a dump object")
    }

    pub fn globals(&self) -> Option<&StoredObject> {
        self.objects.iter().find(|o| o.role == ObjectRole::Globals)
    }

    /// The base tar of a physical backup.
    pub fn base(&self) -> Option<&StoredObject> {
        self.objects.iter().find(|o| o.role == ObjectRole::Base)
    }

    /// Parses a manifest and checks the invariants a restore relies on.
    pub fn parse(bytes: &[u8]) -> anyhow::Result<BackupManifest> {
        let m: BackupManifest = serde_json::from_slice(bytes)?;
        if m.format_version > MANIFEST_FORMAT_VERSION {
            anyhow::bail!(
                "manifest format {} is newer than this dr understands ({MANIFEST_FORMAT_VERSION}); hint: upgrade dr",
                m.format_version
            );
        }
        match m.method {
            BackupMethod::Dump => {
                if m.objects
                    .iter()
                    .filter(|o| o.role == ObjectRole::Dump)
                    .count()
                    != 1
                {
                    anyhow::bail!("manifest {} lists no dump object", m.id);
                }
            }
            BackupMethod::Physical => {
                if m.objects
                    .iter()
                    .filter(|o| o.role == ObjectRole::Base)
                    .count()
                    != 1
                    || m.physical.is_none()
                {
                    anyhow::bail!(
                        "manifest {} of a physical backup lists no base tar or no WAL positions",
                        m.id
                    );
                }
            }
        }
        if m.objects
            .iter()
            .any(|o| o.file.contains('/') || o.sha256.len() != 64)
        {
            anyhow::bail!("manifest {} has a malformed object entry", m.id);
        }
        Ok(m)
    }
}

/// `<target>-<UTC yyyymmddThhmmssZ>`, with `-safety` appended for safety copies: ids sort by
/// time within a target.
pub fn backup_id(target: &str, at: DateTime<Utc>, kind: BackupKind) -> String {
    let stamp = at.format("%Y%m%dT%H%M%SZ");
    match kind {
        BackupKind::Regular => format!("{target}-{stamp}"),
        BackupKind::Safety => format!("{target}-{stamp}-safety"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// A manifest as dr 0.1 wrote it, before physical backups existed.
    const FORMAT_1: &str = r#"{"format_version":1,"id":"main-20260102T030405Z","target":"main","kind":"regular",
      "database":"shop","source":"postgres://u@h/shop","created_at":"2026-01-02T03:04:05Z",
      "finished_at":"2026-01-02T03:04:09Z","duration_ms":4000,"server_version":"15.8","server_major":15,
      "pg_dump_version":"15.8","dr_version":"0.1.0","format":"custom","compression":"zstd",
      "compression_level":3,"encryption":null,"size_bytes":10,"sha256":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
      "objects":[{"role":"dump","file":"dump.pgdump.zst","compression":"zstd","size_bytes":10,
        "sha256":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","raw_bytes":20}],
      "snapshot":"00000003-0000001B-1","schemas":["public"],"extensions":["plpgsql"],"tables":[]}"#;

    #[test]
    fn format_1_manifests_still_parse_as_dumps() {
        let m = BackupManifest::parse(FORMAT_1.as_bytes()).unwrap();
        assert_eq!(m.method, BackupMethod::Dump);
        assert!(m.physical.is_none());
        assert_eq!(m.dump().file, "dump.pgdump.zst");
        // Written back, a dump manifest carries no physical section.
        let again = serde_json::to_value(&m).unwrap();
        assert!(again.get("physical").is_none());
        assert_eq!(again["method"], "dump");
    }

    #[test]
    fn a_physical_manifest_needs_its_base_and_positions() {
        let mut v: serde_json::Value = serde_json::from_str(FORMAT_1).unwrap();
        v["format_version"] = 2.into();
        v["method"] = "physical".into();
        v["objects"][0]["role"] = "base".into();
        assert!(BackupManifest::parse(v.to_string().as_bytes()).is_err());
        v["physical"] = serde_json::json!({
            "system_identifier": "7712118149896994337", "timeline": 1,
            "start_lsn": "0/2000028", "start_wal": "000000010000000000000002",
            "checkpoint_lsn": "0/2000060", "stop_lsn": "0/2000100",
            "stop_wal": "000000010000000000000002", "wal_segment_size": 16777216,
            "data_checksums": false, "tablespaces": [], "pg_basebackup_version": "15.8",
            "backup_manifest": true,
            "backup_history_file": "000000010000000000000002.00000028.backup"
        });
        let m = BackupManifest::parse(v.to_string().as_bytes()).unwrap();
        assert_eq!(m.method, BackupMethod::Physical);
        assert_eq!(m.base().unwrap().role, ObjectRole::Base);
        v["format_version"] = 3.into();
        assert!(BackupManifest::parse(v.to_string().as_bytes())
            .unwrap_err()
            .to_string()
            .contains("upgrade dr"));
    }

    #[test]
    fn ids_sort_by_time() {
        let a = backup_id(
            "main",
            Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
            BackupKind::Regular,
        );
        let b = backup_id(
            "main",
            Utc.with_ymd_and_hms(2026, 11, 2, 3, 4, 5).unwrap(),
            BackupKind::Regular,
        );
        assert_eq!(a, "main-20260102T030405Z");
        assert!(a < b);
        assert!(backup_id("main", Utc::now(), BackupKind::Safety).ends_with("-safety"));
    }
}
