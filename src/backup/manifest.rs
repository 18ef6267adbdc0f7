//! The manifest: the JSON document beside a dump that makes a backup complete. It is
//! written last; without it the data objects are leftovers, never a backup.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Compression, RedisBackupMethod};

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

/// What kind of target a backup is of.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    #[default]
    Postgres,
    Redis,
}

/// Keys of one Redis database in the backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RedisDbCount {
    pub db: u32,
    pub keys: u64,
    /// Of which with a TTL.
    pub expires: u64,
}

/// What a Redis backup holds and how it was taken.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RedisDetails {
    /// `rdb` (a snapshot over the replication protocol) or `keys` (SCAN + DUMP + PTTL).
    pub method: RedisBackupMethod,
    /// The configured method: `auto` becomes `rdb` or, when the server refuses, `keys`.
    pub requested_method: RedisBackupMethod,
    /// Why `auto` fell back to keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// RDB format version of the snapshot or of the DUMP payloads: a destination must load
    /// at least this version.
    pub rdb_version: u16,
    /// Every database that holds keys, ascending.
    pub databases: Vec<RedisDbCount>,
    /// Keys in all databases.
    pub keys: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredObject {
    /// `dump` (pg_dump custom format) or `globals` (pg_dumpall --globals-only SQL).
    pub role: String,
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

/// Serialized through [`ManifestJson`]: PostgreSQL-only fields are left out of Redis
/// manifests, and a manifest without `engine` (written before Redis backups) is PostgreSQL's.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct BackupManifest {
    pub format_version: u32,
    pub id: String,
    pub target: String,
    #[serde(default)]
    pub kind: BackupKind,
    #[serde(default)]
    pub engine: Engine,
    /// PostgreSQL: the database dumped.
    #[serde(default)]
    pub database: String,
    /// The source, password removed.
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub server_version: String,
    pub server_major: u32,
    #[serde(default)]
    pub pg_dump_version: String,
    pub dr_version: String,
    /// `custom` (pg_dump -Fc), `rdb` (a Redis RDB file) or `dr-redis-keys-1` (see the README).
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
    #[serde(default)]
    pub snapshot: String,
    #[serde(default)]
    pub schemas: Vec<String>,
    #[serde(default)]
    pub extensions: Vec<String>,
    #[serde(default)]
    pub tables: Vec<TableCount>,
    #[serde(default)]
    pub redis: Option<RedisDetails>,
}

/// The JSON shape of a manifest, field for field in the order PostgreSQL manifests always had.
#[derive(Serialize)]
struct ManifestJson<'a> {
    format_version: u32,
    id: &'a str,
    target: &'a str,
    kind: BackupKind,
    engine: Engine,
    #[serde(skip_serializing_if = "Option::is_none")]
    database: Option<&'a str>,
    source: &'a str,
    created_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    duration_ms: u64,
    server_version: &'a str,
    server_major: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pg_dump_version: Option<&'a str>,
    dr_version: &'a str,
    format: &'a str,
    compression: Compression,
    compression_level: i32,
    encryption: &'a Option<String>,
    size_bytes: u64,
    sha256: &'a str,
    objects: &'a [StoredObject],
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schemas: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extensions: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tables: Option<&'a [TableCount]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redis: Option<&'a RedisDetails>,
}

impl Serialize for BackupManifest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let pg = self.engine == Engine::Postgres;
        let only_pg = |v| if pg { Some(v) } else { None };
        ManifestJson {
            format_version: self.format_version,
            id: &self.id,
            target: &self.target,
            kind: self.kind,
            engine: self.engine,
            database: only_pg(self.database.as_str()),
            source: &self.source,
            created_at: self.created_at,
            finished_at: self.finished_at,
            duration_ms: self.duration_ms,
            server_version: &self.server_version,
            server_major: self.server_major,
            pg_dump_version: only_pg(self.pg_dump_version.as_str()),
            dr_version: &self.dr_version,
            format: &self.format,
            compression: self.compression,
            compression_level: self.compression_level,
            encryption: &self.encryption,
            size_bytes: self.size_bytes,
            sha256: &self.sha256,
            objects: &self.objects,
            snapshot: only_pg(self.snapshot.as_str()),
            schemas: pg.then_some(self.schemas.as_slice()),
            extensions: pg.then_some(self.extensions.as_slice()),
            tables: pg.then_some(self.tables.as_slice()),
            redis: self.redis.as_ref(),
        }
        .serialize(serializer)
    }
}

impl BackupManifest {
    pub fn dump(&self) -> &StoredObject {
        self.objects
            .iter()
            .find(|o| o.role == "dump")
            .expect("validated: a manifest has a dump object")
    }

    pub fn globals(&self) -> Option<&StoredObject> {
        self.objects.iter().find(|o| o.role == "globals")
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
        if m.engine == Engine::Redis && m.redis.is_none() {
            anyhow::bail!(
                "manifest {} is a Redis backup without its redis section",
                m.id
            );
        }
        if m.objects.iter().filter(|o| o.role == "dump").count() != 1 {
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
