//! The manifest: the JSON document beside a dump that makes a backup complete. It is
//! written last; without it the data objects are leftovers, never a backup.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Compression, RedisBackupMethod};

/// Dump and Redis manifests are still written as format 1 (readable by every dr); format 2 adds
/// physical base backups (`method`, `physical`), which an older dr must not mistake for
/// a dump.
pub const MANIFEST_FORMAT_VERSION: u32 = 2;
pub const DUMP_FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Default)]
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
#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Default, Hash,
)]
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
    /// The backup history file (`<segment>.<offset>.backup`) in the WAL archive; empty
    /// for a backup from a standby (which writes none: `stop_lsn` comes from
    /// `backup_manifest` then).
    pub backup_history_file: String,
    /// An incremental base backup (`--incremental`): the backup it builds on. Absent for a
    /// full one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// An incremental's ancestry, the full base backup first and `parent_id` last: every
    /// link a restore needs besides this one. Empty for a full one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    /// Which server streamed it (`primary` for every backup before this field).
    #[serde(default)]
    pub backup_from: crate::config::BackupFrom,
    /// `host:port` of that server (no user, no password); empty before this field.
    #[serde(default)]
    pub server: String,
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
    /// pg_basebackup's `backup_manifest` of a physical backup, also stored on its own so an
    /// incremental child (`pg_basebackup --incremental`) reads it without the parent's tar.
    #[serde(rename = "backup_manifest")]
    BackupManifest,
}

impl ObjectRole {
    /// The file name of the object once staged for a restore (decompressed).
    pub fn staged_file_name(self) -> &'static str {
        match self {
            ObjectRole::Dump => "dump.pgdump",
            ObjectRole::Globals => "globals.sql",
            ObjectRole::Base => "base.tar",
            ObjectRole::BackupManifest => "backup_manifest",
        }
    }
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
    /// For an encrypted object: SHA-256 and size of the bytes before encryption (the
    /// compressed stream), which a restore with the key checks after decrypting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plaintext_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plaintext_bytes: Option<u64>,
}

impl StoredObject {
    /// The manifest entry of an object the codec stored as `file`.
    pub fn from_encoded(role: ObjectRole, file: String, encoded: crate::codec::Encoded) -> Self {
        StoredObject {
            role,
            file,
            compression: encoded.compression,
            size_bytes: encoded.size_bytes,
            sha256: encoded.sha256,
            raw_bytes: encoded.raw_bytes,
            plaintext_sha256: encoded.plaintext_sha256,
            plaintext_bytes: encoded.plaintext_bytes,
        }
    }
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
    /// Absent in format 1 manifests, which are all dumps.
    #[serde(default)]
    pub method: BackupMethod,
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
    /// Empty for physical backups and Redis.
    #[serde(default)]
    pub pg_dump_version: String,
    pub dr_version: String,
    /// `custom` (pg_dump -Fc), `tar` (a physical base backup), `rdb` (a Redis RDB file) or
    /// `dr-redis-keys-1` (see docs/src/redis.md).
    pub format: String,
    pub compression: Compression,
    pub compression_level: i32,
    /// `age` when the objects are encrypted; `null`: encryption at rest is the storage's.
    pub encryption: Option<String>,
    /// The age public keys the objects were encrypted to: any of their identities opens them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
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
    #[serde(default)]
    pub redis: Option<RedisDetails>,
    /// The role that owned the database: `restore --create` gives the new database to it
    /// when it exists there. Absent in manifests of older versions.
    #[serde(default)]
    pub database_owner: Option<String>,
    /// Whether the globals object holds the roles' passwords (only a superuser can read
    /// them); `null` without globals or in manifests of older versions.
    #[serde(default)]
    pub globals_role_passwords: Option<bool>,
    /// Physical backups only.
    #[serde(default)]
    pub physical: Option<PhysicalInfo>,
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
    method: Option<BackupMethod>,
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
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    recipients: &'a [String],
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
    #[serde(skip_serializing_if = "Option::is_none")]
    database_owner: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    globals_role_passwords: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    physical: Option<&'a PhysicalInfo>,
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
            method: pg.then_some(self.method),
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
            recipients: &self.recipients,
            size_bytes: self.size_bytes,
            sha256: &self.sha256,
            objects: &self.objects,
            snapshot: only_pg(self.snapshot.as_str()),
            schemas: pg.then_some(self.schemas.as_slice()),
            extensions: pg.then_some(self.extensions.as_slice()),
            tables: pg.then_some(self.tables.as_slice()),
            redis: self.redis.as_ref(),
            database_owner: self.database_owner.as_deref(),
            globals_role_passwords: self.globals_role_passwords,
            physical: self.physical.as_ref(),
        }
        .serialize(serializer)
    }
}

impl BackupManifest {
    /// The dump object; for a physical backup (which has none) the base tar, the object
    /// the manifest's `sha256` describes. A parsed manifest always holds one of them
    /// (`parse` refuses it otherwise), so readers of any kind of backup get the object that
    /// holds the data instead of a crash.
    pub fn dump(&self) -> &StoredObject {
        self.primary()
            .or_else(|| self.objects.first())
            .unwrap_or(&NO_OBJECT)
    }

    /// The object holding the data: the dump (a Redis snapshot too), or the base tar of a
    /// physical backup; None only for a manifest `parse` would refuse.
    pub fn primary(&self) -> Option<&StoredObject> {
        let role = self.primary_role();
        self.objects.iter().find(|o| o.role == role)
    }

    pub fn globals(&self) -> Option<&StoredObject> {
        self.objects.iter().find(|o| o.role == ObjectRole::Globals)
    }

    /// The base tar of a physical backup.
    pub fn base(&self) -> Option<&StoredObject> {
        self.objects.iter().find(|o| o.role == ObjectRole::Base)
    }

    /// pg_basebackup's `backup_manifest`, stored on its own (physical backups since
    /// incremental backups exist).
    pub fn backup_manifest(&self) -> Option<&StoredObject> {
        self.objects
            .iter()
            .find(|o| o.role == ObjectRole::BackupManifest)
    }

    /// The backup an incremental base backup builds on (None for a full one and a dump).
    pub fn parent_id(&self) -> Option<&str> {
        self.physical.as_ref().and_then(|p| p.parent_id.as_deref())
    }

    /// The object the manifest's `sha256` and `compression` describe: the dump, or the
    /// base tar of a physical backup.
    fn primary_role(&self) -> ObjectRole {
        match self.method {
            BackupMethod::Dump => ObjectRole::Dump,
            BackupMethod::Physical => ObjectRole::Base,
        }
    }

    /// Parses a manifest and checks every field a reader relies on: an edited or
    /// inconsistent manifest is refused, never trusted.
    pub fn parse(bytes: &[u8]) -> anyhow::Result<BackupManifest> {
        let m: BackupManifest = serde_json::from_slice(bytes)?;
        if m.format_version > MANIFEST_FORMAT_VERSION {
            anyhow::bail!(
                "manifest format {} is newer than this dr understands ({MANIFEST_FORMAT_VERSION}); hint: upgrade dr",
                m.format_version
            );
        }
        if let Some(problem) = m.inconsistency() {
            anyhow::bail!("manifest {} is inconsistent: {problem}; it was edited or damaged, so the backup cannot be trusted", m.id);
        }
        Ok(m)
    }

    /// The first field that contradicts another, if any.
    fn inconsistency(&self) -> Option<String> {
        let primary = self.primary_role();
        let count = |role| self.objects.iter().filter(|o| o.role == role).count();
        let primaries = count(primary);
        if primaries != 1 {
            let what = match primary {
                ObjectRole::Base => "base tar",
                _ => "dump",
            };
            return Some(format!("it lists {primaries} {what} objects, not one"));
        }
        match self.method {
            BackupMethod::Physical
                if self.physical.is_none()
                    || self.format_version < 2
                    || count(ObjectRole::Dump) + count(ObjectRole::Globals) > 0 =>
            {
                return Some(
                    "a physical backup without its WAL positions, or with dump objects".into(),
                );
            }
            BackupMethod::Physical if count(ObjectRole::BackupManifest) > 1 => {
                return Some("it lists more than one backup_manifest object".into());
            }
            BackupMethod::Physical
                if self.physical.as_ref().is_some_and(|p| {
                    p.parent_id.as_ref() != p.chain.last() || p.chain.contains(&self.id)
                }) =>
            {
                return Some("its parent_id is not the last link of its chain".into());
            }
            BackupMethod::Dump
                if self.physical.is_some()
                    || count(ObjectRole::Base) + count(ObjectRole::BackupManifest) > 0 =>
            {
                return Some("a dump with physical backup fields".into());
            }
            _ => {}
        }
        let mut files = std::collections::HashSet::new();
        for o in &self.objects {
            if o.file.is_empty()
                || o.file.contains('/')
                || o.file == MANIFEST_FILE
                || !files.insert(o.file.as_str())
            {
                return Some(format!("object file name {:?} is not allowed", o.file));
            }
            if o.sha256.len() != 64 || !o.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Some(format!("object {} has no valid SHA-256", o.file));
            }
        }
        let Some(dump) = self.primary() else {
            return Some("it lists no dump object".into());
        };
        if self.sha256 != dump.sha256 {
            return Some(format!(
                "its sha256 {} differs from its dump object's {}",
                self.sha256, dump.sha256
            ));
        }
        let total: u64 = self.objects.iter().map(|o| o.size_bytes).sum();
        if self.size_bytes != total {
            return Some(format!(
                "its size_bytes {} differs from the sum of its objects, {total}",
                self.size_bytes
            ));
        }
        if self.compression != dump.compression {
            return Some(format!(
                "its compression {} differs from its dump object's {}",
                self.compression.as_str(),
                dump.compression.as_str()
            ));
        }
        let encrypted = self.encryption.as_deref() == Some("age");
        if let Some(other) = self.encryption.as_deref().filter(|e| *e != "age") {
            return Some(format!("encryption {other:?} is unknown"));
        }
        if encrypted
            && (self.recipients.is_empty()
                || self
                    .objects
                    .iter()
                    .any(|o| o.plaintext_sha256.is_none() || o.plaintext_bytes.is_none()))
        {
            return Some("it is encrypted but names no recipient or no plaintext hash".into());
        }
        if self.finished_at < self.created_at {
            return Some("it finished before it started".into());
        }
        let version_major = self
            .server_version
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|v| v.parse::<u32>().ok());
        if version_major != Some(self.server_major) {
            return Some(format!(
                "server_major {} does not match server_version {:?}",
                self.server_major, self.server_version
            ));
        }
        if self.globals_role_passwords.is_some() && self.globals().is_none() {
            return Some("it records globals_role_passwords but holds no globals object".into());
        }
        if let Some(t) = self.tables.iter().find(|t| t.rows < 0) {
            return Some(format!("table {} has a negative row count", t.qualified()));
        }
        if (self.engine == Engine::Redis) != self.redis.is_some() {
            return Some(format!(
                "engine {:?} does not match its redis section",
                self.engine
            ));
        }
        if let Some(r) = &self.redis {
            let total: u64 = r.databases.iter().map(|d| d.keys).sum();
            if r.keys != total || r.databases.iter().any(|d| d.expires > d.keys) {
                return Some(format!(
                    "its redis key count {} differs from the sum of its databases, {total}",
                    r.keys
                ));
            }
        }
        if !self
            .id
            .starts_with(&format!("{}-", crate::config::storage_name(&self.target)))
            || (self.kind == BackupKind::Safety) != self.id.ends_with("-safety")
        {
            return Some(format!(
                "its id does not match its target {} and kind {}",
                self.target,
                self.kind.as_str()
            ));
        }
        None
    }
}

/// What [`BackupManifest::dump`] returns for a manifest without objects (never one that
/// `parse` accepted): an empty name no storage key ends in, so reading it fails loudly.
static NO_OBJECT: StoredObject = StoredObject {
    role: ObjectRole::Dump,
    file: String::new(),
    compression: Compression::None,
    size_bytes: 0,
    sha256: String::new(),
    raw_bytes: 0,
    plaintext_sha256: None,
    plaintext_bytes: None,
};

/// `<target>-<UTC yyyymmddThhmmssZ>`, with `-safety` appended for safety copies: ids sort by
/// time within a target.
pub fn backup_id(target: &str, at: DateTime<Utc>, kind: BackupKind) -> String {
    let stamp = at.format("%Y%m%dT%H%M%SZ");
    let target = crate::config::storage_name(target);
    match kind {
        BackupKind::Regular => format!("{target}-{stamp}"),
        BackupKind::Safety => format!("{target}-{stamp}-safety"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sample() -> serde_json::Value {
        serde_json::json!({
            "format_version": 1, "id": "main-20260102T030405Z", "target": "main", "kind": "regular",
            "database": "app", "source": "postgres://u@h/app",
            "created_at": "2026-01-02T03:04:05Z", "finished_at": "2026-01-02T03:04:06Z",
            "duration_ms": 1000, "server_version": "15.18 (Debian)", "server_major": 15,
            "pg_dump_version": "15.18", "dr_version": "0.1.0", "format": "custom",
            "compression": "zstd", "compression_level": 3, "encryption": null,
            "size_bytes": 30, "sha256": "a".repeat(64),
            "objects": [
                {"role": "dump", "file": "dump.pgdump.zst", "compression": "zstd", "size_bytes": 10, "sha256": "a".repeat(64), "raw_bytes": 100},
                {"role": "globals", "file": "globals.sql.zst", "compression": "zstd", "size_bytes": 20, "sha256": "b".repeat(64), "raw_bytes": 50}
            ],
            "snapshot": "s", "schemas": ["public"], "extensions": [], "tables": [{"schema": "public", "name": "t", "rows": 3}]
        })
    }

    #[test]
    fn every_field_a_reader_relies_on_is_checked() {
        let parse = |v: &serde_json::Value| BackupManifest::parse(&serde_json::to_vec(v).unwrap());
        parse(&sample()).unwrap();
        let edits: [(&str, serde_json::Value); 8] = [
            ("sha256", serde_json::json!("c".repeat(64))),
            ("size_bytes", serde_json::json!(31)),
            ("compression", serde_json::json!("gzip")),
            ("finished_at", serde_json::json!("2026-01-02T03:04:04Z")),
            ("server_major", serde_json::json!(16)),
            ("id", serde_json::json!("other-20260102T030405Z")),
            ("kind", serde_json::json!("safety")),
            (
                "tables",
                serde_json::json!([{"schema": "public", "name": "t", "rows": -1}]),
            ),
        ];
        for (field, value) in edits {
            let mut m = sample();
            m[field] = value;
            let err = parse(&m).unwrap_err().to_string();
            assert!(err.contains("inconsistent"), "{field}: {err}");
        }
        let mut m = sample();
        m["objects"][1]["file"] = serde_json::json!("dump.pgdump.zst");
        assert!(parse(&m).is_err(), "duplicate file names");
        let mut m = sample();
        m["globals_role_passwords"] = serde_json::json!(false);
        m["database_owner"] = serde_json::json!("app");
        assert_eq!(parse(&m).unwrap().database_owner.as_deref(), Some("app"));
        m["objects"].as_array_mut().unwrap().pop();
        m["size_bytes"] = serde_json::json!(10);
        let err = parse(&m).unwrap_err().to_string();
        assert!(err.contains("globals_role_passwords"), "{err}");
    }

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
        // Readers that ask any backup for its data object get the base tar, not a panic.
        assert_eq!(m.dump().role, ObjectRole::Base);
        assert_eq!(m.primary().unwrap().file, "dump.pgdump.zst");
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
