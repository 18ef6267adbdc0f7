//! The manifest: the JSON document beside a dump that makes a backup complete. It is
//! written last; without it the data objects are leftovers, never a backup.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Compression;

pub const MANIFEST_FORMAT_VERSION: u32 = 1;
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

/// What a stored object of a backup holds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ObjectRole {
    /// The database, as a `pg_dump` custom-format archive.
    Dump,
    /// Roles and tablespaces, as `pg_dumpall --globals-only` SQL.
    Globals,
}

impl ObjectRole {
    /// The file name of the object once staged for a restore (decompressed).
    pub fn staged_file_name(self) -> &'static str {
        match self {
            ObjectRole::Dump => "dump.pgdump",
            ObjectRole::Globals => "globals.sql",
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
    pub database: String,
    /// The source, password removed.
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub server_version: String,
    pub server_major: u32,
    pub pg_dump_version: String,
    pub dr_version: String,
    /// Always `custom` (pg_dump -Fc).
    pub format: String,
    pub compression: Compression,
    pub compression_level: i32,
    /// Always `null` for now: encryption at rest is the storage's.
    pub encryption: Option<String>,
    /// Stored bytes of all objects.
    pub size_bytes: u64,
    /// SHA-256 of the stored dump object.
    pub sha256: String,
    pub objects: Vec<StoredObject>,
    /// The exported snapshot both the counts and pg_dump used.
    pub snapshot: String,
    pub schemas: Vec<String>,
    pub extensions: Vec<String>,
    pub tables: Vec<TableCount>,
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

    /// Parses a manifest and checks the invariants a restore relies on.
    pub fn parse(bytes: &[u8]) -> anyhow::Result<BackupManifest> {
        let m: BackupManifest = serde_json::from_slice(bytes)?;
        if m.format_version > MANIFEST_FORMAT_VERSION {
            anyhow::bail!(
                "manifest format {} is newer than this dr understands ({MANIFEST_FORMAT_VERSION}); hint: upgrade dr",
                m.format_version
            );
        }
        if m.objects
            .iter()
            .filter(|o| o.role == ObjectRole::Dump)
            .count()
            != 1
        {
            anyhow::bail!("manifest {} lists no dump object", m.id);
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
