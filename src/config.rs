//! `dr.toml`: the schema, the lookup order (`--config`, `$DR_CONFIG`, `./dr.toml`) and
//! the resolution of URLs given inline or through `url_env`.
//!
//! Every table denies unknown keys so that a typo is an error (exit 2), not a silently
//! ignored setting that is discovered during an incident.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Deserializer};

pub mod evidence;

use crate::error::usage;
use crate::secret::redact_url;

/// Target names become parts of backup ids, file names and object keys.
pub const MAX_TARGET_NAME: usize = 64;

pub const DEFAULT_DRILL_EVERY: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub objectives: Objectives,
    pub storage: Option<StorageConfig>,
    #[serde(default)]
    pub backup: BackupConfig,
    pub retention: Option<RetentionConfig>,
    #[serde(default)]
    pub postgres: Vec<PostgresTarget>,
    #[serde(default)]
    pub redis: Vec<RedisTarget>,
    #[serde(default)]
    pub contacts: Vec<Contact>,
    #[serde(default)]
    pub vendors: Vec<Vendor>,
    #[serde(default)]
    pub verify: VerifyConfig,
    #[serde(default)]
    pub runbooks: RunbooksConfig,
    /// Encryption at rest with age; absent: objects are stored as they are.
    pub encryption: Option<EncryptionConfig>,
    /// Where to tell people and monitors about outcomes (`[[notify]]`).
    #[serde(default)]
    pub notify: Vec<NotifySink>,
    /// How many connections `dr` opens to one PostgreSQL server at once.
    #[serde(default)]
    pub connections: ConnectionsConfig,
    /// How records of the evidence log are signed (`[evidence]`).
    #[serde(default)]
    pub evidence: evidence::EvidenceConfig,
    /// Where this configuration was read from.
    #[serde(skip)]
    pub path: PathBuf,
    /// Targets with `databases = ...` whose server could not list its databases, as
    /// (target, error): their databases are unknown, and commands report them as failed.
    #[serde(skip)]
    pub discovery_failures: Vec<(String, String)>,
}

/// `[connections]`: PostgreSQL connections as a shared, bounded resource.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// Connections `dr` holds open to one server (host:port) at once, over all its
    /// targets, pg_dump's included (default 10). `dr` goes lower when the server has
    /// little room: at most half of the slots free when it starts.
    pub max_per_server: Option<usize>,
}

impl ConnectionsConfig {
    pub const DEFAULT_MAX_PER_SERVER: usize = 10;
    pub const MAX_MAX_PER_SERVER: usize = 1000;

    pub fn max_per_server(&self) -> usize {
        self.max_per_server
            .unwrap_or(Self::DEFAULT_MAX_PER_SERVER)
            .max(1)
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Objectives {
    #[serde(default, deserialize_with = "opt_duration")]
    pub rpo: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub rto: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub drill_every: Option<Duration>,
}

impl Objectives {
    pub fn drill_every(&self) -> Duration {
        self.drill_every.unwrap_or(DEFAULT_DRILL_EVERY)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub url: StorageUrl,
    pub s3: Option<S3Config>,
}

/// A parsed `[storage] url`; it prints as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum StorageUrl {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl StorageUrl {
    pub fn parse(url: &str) -> Result<StorageUrl, String> {
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "{url:?} must be an absolute path such as file:///var/backups/dr"
                ));
            }
            return Ok(StorageUrl::Local(path.into()));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!(
                    "{url:?} names no bucket; write s3://bucket/optional/prefix"
                ));
            }
            return Ok(StorageUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        Err(format!(
            "{url:?} is not a supported storage URL; use file:///absolute/path or s3://bucket/prefix"
        ))
    }
}

impl TryFrom<String> for StorageUrl {
    type Error = String;
    fn try_from(url: String) -> Result<Self, String> {
        StorageUrl::parse(&url)
    }
}

impl std::fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageUrl::Local(path) => write!(f, "file://{}", path.display()),
            StorageUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StorageUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint of a non-AWS store (MinIO, R2, Garage, Ceph); AWS when absent.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Plain HTTP: only for a store on loopback or a private test network.
    #[serde(default)]
    pub allow_http: bool,
    pub access_key_id_env: Option<String>,
    pub secret_access_key_env: Option<String>,
    /// `https://bucket.endpoint/key` instead of `https://endpoint/bucket/key`.
    #[serde(default)]
    pub virtual_hosted_style: bool,
    /// Parts of a multipart upload in flight at once (memory ~ parts x part size).
    pub upload_concurrency: Option<usize>,
    /// Size of one multipart part, in MiB.
    pub part_size_mib: Option<usize>,
    /// S3 Object Lock retention, in days, set on every uploaded object.
    pub object_lock_days: Option<u32>,
    /// How long one read (or the upload of one part) may wait for the store; default 60s
    /// plus 10s per MiB of part size.
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
}

impl S3Config {
    pub const DEFAULT_PART_MIB: usize = 8;
    pub const MIN_PART_MIB: usize = 5;
    pub const MAX_PART_MIB: usize = 5 * 1024;
    pub const DEFAULT_CONCURRENCY: usize = 4;
    pub const MAX_CONCURRENCY: usize = 64;

    /// The first setting out of range, as (key, message with its fix).
    fn problem(&self) -> Option<(&'static str, String)> {
        if let Some(part) = self.part_size_mib {
            if !(Self::MIN_PART_MIB..=Self::MAX_PART_MIB).contains(&part) {
                return Some(("part_size_mib", format!(
                    "part_size_mib = {part} is out of range; hint: S3 parts must be {} to {} MiB (default {})",
                    Self::MIN_PART_MIB, Self::MAX_PART_MIB, Self::DEFAULT_PART_MIB
                )));
            }
        }
        if let Some(n) = self.upload_concurrency {
            if !(1..=Self::MAX_CONCURRENCY).contains(&n) {
                return Some(("upload_concurrency", format!(
                    "upload_concurrency = {n} is out of range; hint: use 1 to {} (default {}); memory is about part_size_mib x (upload_concurrency + 1)",
                    Self::MAX_CONCURRENCY, Self::DEFAULT_CONCURRENCY
                )));
            }
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Some((
                "timeout",
                "timeout = 0 lets no request finish; hint: set a duration such as \"60s\", or remove the key".into(),
            ));
        }
        if self.object_lock_days == Some(0) {
            return Some((
                "object_lock_days",
                "object_lock_days = 0 locks nothing; hint: set at least 1, or remove the key"
                    .into(),
            ));
        }
        if let Some(e) = self
            .endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            if !e.starts_with("https://") && !e.starts_with("http://") {
                return Some((
                    "endpoint",
                    format!(
                    "endpoint = {e:?} has no scheme; hint: write endpoint = \"https://host:port\""
                ),
                ));
            }
            if url::Url::parse(e).is_err() {
                return Some((
                    "endpoint",
                    format!(
                    "endpoint = {e:?} is not a URL; hint: write endpoint = \"https://host:port\""
                ),
                ));
            }
            if e.starts_with("http://") && !self.allow_http {
                return Some(("endpoint", format!(
                    "endpoint {e} is plain http, which is refused by default; hint: set allow_http = true in [storage.s3] (loopback or a private network only) or use https"
                )));
            }
        }
        if self.access_key_id_env.is_some() != self.secret_access_key_env.is_some() {
            return Some(("access_key_id_env", "sets only one of access_key_id_env and secret_access_key_env; hint: set both, or neither to use the standard AWS_ environment variables".into()));
        }
        if self.region.as_deref().is_some_and(|r| r.trim().is_empty()) {
            return Some((
                "region",
                "region is empty; hint: remove the key or name the region (us-east-1)".into(),
            ));
        }
        None
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zstd,
    Gzip,
    None,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
            Compression::None => "none",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Compression::Zstd => ".zst",
            Compression::Gzip => ".gz",
            Compression::None => "",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    #[serde(default)]
    pub compression: Compression,
    /// Compression level; zstd 1..=19 (default 3), gzip 0..=9 (default 6).
    pub level: Option<i32>,
    /// zstd worker threads; 0 or absent means one per core.
    pub threads: Option<u32>,
    /// Also dump roles and tablespaces with `pg_dumpall --globals-only`.
    #[serde(default)]
    pub include_globals: bool,
    /// Targets `dr backup` backs up at once (default 4; `--parallel` overrides it).
    pub parallel: Option<usize>,
    /// How old a backup's integrity verdict (its last full SHA-256 check) may grow before
    /// `dr check` and `dr prune` hash the backup again; default 7 days.
    #[serde(default, deserialize_with = "opt_duration")]
    pub rehash_after: Option<Duration>,
}

/// Default of `[backup] rehash_after`.
pub const DEFAULT_REHASH_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

impl BackupConfig {
    pub const DEFAULT_PARALLEL: usize = 4;
    pub const MAX_PARALLEL: usize = 64;

    pub fn rehash_after(&self) -> Duration {
        self.rehash_after.unwrap_or(DEFAULT_REHASH_AFTER)
    }
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    #[serde(default)]
    pub keep_last: u32,
    #[serde(default)]
    pub keep_daily: u32,
    #[serde(default)]
    pub keep_weekly: u32,
    #[serde(default)]
    pub keep_monthly: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresTarget {
    pub name: String,
    pub url: Option<String>,
    pub url_env: Option<String>,
    /// An owner or admin role for the destination side of validate, restore, verify and
    /// drill (the backup role usually may only read); defaults to `url`.
    pub restore_url: Option<String>,
    pub restore_url_env: Option<String>,
    /// A failed check of this target makes `dr check` exit 1 (default: true).
    #[serde(default = "yes")]
    pub critical: bool,
    /// Directory holding `pg_dump`, `pg_restore`, `pg_dumpall`, `psql` (and `initdb`
    /// for sandbox drills); otherwise they are looked up on PATH.
    pub pg_bin_dir: Option<PathBuf>,
    /// PostgreSQL archives its WAL with `dr wal-push`: `dr check` then runs
    /// pg.archiving, pg.replication and wal.continuity for this target.
    #[serde(default)]
    pub wal_archiving: bool,
    /// A fleet on one server: `"all"` (every connectable database that is not a template)
    /// or a list of names; each database becomes a target named `<name>/<database>`.
    pub databases: Option<DatabaseSelection>,
    /// Databases (names or globs such as `"test_*"`) left out of `databases`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// The database of a fleet member: it replaces the one in `url` and `restore_url`.
    #[serde(skip)]
    pub database: Option<String>,
}

/// `databases = "all"` or `databases = ["a", "b"]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum DatabaseSelection {
    Keyword(String),
    List(Vec<String>),
}

/// The character that joins a fleet target and its database: `shop/orders`.
pub const MEMBER_SEPARATOR: char = '/';

/// A target name as it appears in storage keys (`backups/<name>/...`, backup ids, drill
/// reports, status records): configured names (letters, digits, `-`, `_`) unchanged; in a
/// fleet member's name `/` becomes `+` and any other character `~XX` (hex of each UTF-8
/// byte), so a key keeps its shape and the name can be read back
/// ([`target_from_storage`]).
pub fn storage_name(target: &str) -> std::borrow::Cow<'_, str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if target.chars().all(plain) {
        return std::borrow::Cow::Borrowed(target);
    }
    let mut out = String::with_capacity(target.len() + 8);
    for c in target.chars() {
        if plain(c) {
            out.push(c);
        } else if c == MEMBER_SEPARATOR {
            out.push('+');
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("~{b:02X}"));
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The target name a storage key segment stands for (the inverse of [`storage_name`]).
pub fn target_from_storage(segment: &str) -> String {
    if !segment.contains(['+', '~']) {
        return segment.to_string();
    }
    let mut bytes = Vec::with_capacity(segment.len());
    let raw = segment.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => bytes.push(b'/'),
            b'~' if i + 2 < raw.len() => {
                match std::str::from_utf8(&raw[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        bytes.push(b);
                        i += 3;
                        continue;
                    }
                    None => bytes.push(b'~'),
                }
            }
            b => bytes.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Whether `pattern` holds a glob character (`*`, `?`).
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// Glob matching of target and database names: `*` is any run of characters (`/`
/// included, so `shop*` takes the members of a fleet `shop`), `?` one character.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matching with one backtrack point: linear for the patterns people write.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A target `dr backup` can back up.
#[derive(Debug, Clone, Copy)]
pub enum BackupTarget<'a> {
    Postgres(&'a PostgresTarget),
    Redis(&'a RedisTarget),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTarget {
    pub name: String,
    pub url: Option<String>,
    pub url_env: Option<String>,
    /// A failed check of this target makes `dr check` exit 1 (default: false).
    #[serde(default)]
    pub critical: bool,
    /// The data must survive a restart: warn when RDB and AOF are both off.
    #[serde(default)]
    pub persistent: bool,
    /// `dr backup` backs up this Redis's data (and `redis.backup` watches its age).
    #[serde(default)]
    pub backup: bool,
    /// How: an RDB snapshot over the replication protocol, key by key with SCAN + DUMP,
    /// or `auto` (RDB, falling back to keys when the server refuses SYNC/PSYNC).
    #[serde(default)]
    pub method: RedisBackupMethod,
    /// The `redis-server` that drills start as a throwaway sandbox (default: on PATH).
    pub redis_server: Option<PathBuf>,
    /// How long connecting and each command may take (default 10s).
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisBackupMethod {
    Rdb,
    Keys,
    #[default]
    Auto,
}

impl RedisBackupMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            RedisBackupMethod::Rdb => "rdb",
            RedisBackupMethod::Keys => "keys",
            RedisBackupMethod::Auto => "auto",
        }
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub name: String,
    pub role: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    /// When they answer: "24/7", "business", or free text.
    pub hours: Option<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Vendor {
    pub name: String,
    pub service: Option<String>,
    pub support_url: Option<String>,
    pub support_phone: Option<String>,
    pub contract: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    #[serde(default)]
    pub sql: Vec<SqlAssertion>,
    #[serde(default)]
    pub http: Vec<HttpCheck>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlAssertion {
    pub name: String,
    /// A query returning one row with one value.
    pub query: String,
    /// `">= 1"`, `"= 0"`, `"< 100"`, `"!= 0"`, or a bare value compared as text.
    pub expect: Expectation,
    /// The PostgreSQL target it applies to; all targets when absent.
    pub target: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    pub name: String,
    pub url: String,
    #[serde(default = "http_ok")]
    pub expect_status: u16,
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
}

/// What a `[[verify.sql]]` query must return: `">= 1"`, `"= 0"`, `"!= 0"`, `"< 5"`, or a
/// bare value (text equality). Parsed when the configuration loads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct Expectation {
    op: String,
    value: String,
}

impl Expectation {
    pub fn parse(text: &str) -> Result<Expectation, String> {
        let t = text.trim();
        for op in [">=", "<=", "!=", "=", ">", "<"] {
            if let Some(rest) = t.strip_prefix(op) {
                let value = rest.trim().to_string();
                if value.is_empty() {
                    return Err(format!(
                        "expectation {text:?} has no value; write it like \">= 1\" or \"= 0\""
                    ));
                }
                if op != "=" && op != "!=" && value.parse::<f64>().is_err() {
                    return Err(format!(
                        "expectation {text:?} compares with {op} but {value:?} is not a number"
                    ));
                }
                return Ok(Expectation {
                    op: op.to_string(),
                    value,
                });
            }
        }
        if t.is_empty() {
            return Err("empty expectation; write it like \">= 1\" or \"= 0\"".into());
        }
        Ok(Expectation {
            op: "=".to_string(),
            value: t.to_string(),
        })
    }

    pub fn holds(&self, actual: Option<&str>) -> bool {
        let Some(actual) = actual else { return false };
        if let (Ok(a), Ok(e)) = (actual.trim().parse::<f64>(), self.value.parse::<f64>()) {
            return match self.op.as_str() {
                ">=" => a >= e,
                "<=" => a <= e,
                ">" => a > e,
                "<" => a < e,
                "=" => a == e,
                _ => a != e,
            };
        }
        match self.op.as_str() {
            "=" => actual == self.value,
            "!=" => actual != self.value,
            _ => false,
        }
    }
}

impl TryFrom<String> for Expectation {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        Expectation::parse(&text)
    }
}

impl std::fmt::Display for Expectation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.op, self.value)
    }
}

/// `[encryption]`: who can read backups (recipients, public keys) and, on hosts that read,
/// which private key to use.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// age public keys (`age1...`); every object is encrypted to all of them.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// A file of age public keys, one per line (`#` comments), relative to dr.toml.
    pub recipients_file: Option<PathBuf>,
    /// The private key file (`AGE-SECRET-KEY-1...`) for commands that read backups.
    pub identity_file: Option<PathBuf>,
    /// The name of an environment variable holding the private key.
    pub identity_env: Option<String>,
}

impl EncryptionConfig {
    /// `identity_file` and `identity_env` name a file and a variable: a private key pasted
    /// as either is exit 2 naming the setting, never the key.
    pub fn refuse_keys_as_names(&self) -> Result<()> {
        let places = [
            (
                "identity_file",
                self.identity_file
                    .as_ref()
                    .map(|p| p.to_string_lossy().into_owned()),
                "write the key into a file only you can read (chmod 600) and set identity_file to that file's path",
            ),
            (
                "identity_env",
                self.identity_env.clone(),
                "export the key in an environment variable and set identity_env to the variable's name",
            ),
        ];
        for (key, value, fix) in places {
            if value.is_some_and(|v| crate::secret::has_age_secret_key(&v)) {
                return Err(usage(format!(
                    "[encryption] {key} holds an age SECRET key itself, not the name of where the key is; anyone who reads this file can open every backup; hint: {fix}"
                )));
            }
        }
        Ok(())
    }

    /// The recipients, parsed; any problem is a configuration error (exit 2): `dr` never
    /// stores plaintext while `[encryption]` is present.
    pub fn recipient_keys(&self, config_dir: &Path) -> Result<Vec<age::x25519::Recipient>> {
        // Each recipient with where it was written, for messages that must name the place
        // and never a value that turns out to be a private key.
        let mut texts: Vec<(String, String)> = self
            .recipients
            .iter()
            .enumerate()
            .map(|(i, r)| (r.clone(), format!("[encryption] recipients[{i}]")))
            .collect();
        if let Some(file) = &self.recipients_file {
            let path = config_dir.join(file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                usage(format!(
                    "cannot read [encryption] recipients_file {}: {e}; hint: fix the path or its permissions; dr refuses to store anything unencrypted while [encryption] is set",
                    path.display()
                ))
            })?;
            for (n, line) in text.lines().map(str::trim).enumerate() {
                if !line.is_empty() && !line.starts_with('#') {
                    texts.push((
                        line.to_string(),
                        format!(
                            "[encryption] recipients_file {} line {}",
                            path.display(),
                            n + 1
                        ),
                    ));
                }
            }
        }
        if texts.is_empty() {
            return Err(usage(
                "[encryption] names no recipient; hint: add recipients = [\"age1...\"] (age-keygen -y KEYFILE prints one) or recipients_file; dr refuses to store anything unencrypted while [encryption] is set",
            ));
        }
        let mut keys: Vec<age::x25519::Recipient> = Vec::new();
        for (text, from) in texts {
            let upper = text.to_ascii_uppercase();
            if crate::secret::has_age_secret_key(&text)
                || upper.starts_with("AGE-SECRET-KEY-")
                || upper.starts_with("AGE-PLUGIN-")
            {
                return Err(usage(format!(
                    "{from} is an age SECRET key, not a public key (age1...): anyone who reads this file can open every backup; hint: put the secret key in identity_file (or keep it off this host) and list its public key instead (`age-keygen -y KEYFILE` prints it)"
                )));
            }
            let key = text.parse::<age::x25519::Recipient>().map_err(|e| {
                usage(format!(
                    "{from} ({:?}) is not an age public key ({e}); hint: write it as age1... (age-keygen -y KEYFILE prints it)",
                    crate::secret::redact_age_keys(&text)
                ))
            })?;
            if !keys.iter().any(|k| k.to_string() == key.to_string()) {
                keys.push(key);
            }
        }
        Ok(keys)
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RunbooksConfig {
    /// A directory of Markdown runbooks that override or add to the embedded ones.
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// POST of one JSON document (schemas/notify-webhook.v1.json).
    Webhook,
    /// A Slack incoming webhook.
    Slack,
    /// PagerDuty Events API v2: trigger on failure, resolve on recovery.
    Pagerduty,
    /// A healthchecks-style ping URL: `/start`, then `/` or `/fail`.
    Heartbeat,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Webhook => "webhook",
            SinkKind::Slack => "slack",
            SinkKind::Pagerduty => "pagerduty",
            SinkKind::Heartbeat => "heartbeat",
        }
    }
}

/// Which outcomes a sink hears about.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    Failure,
    /// Every success, recoveries included.
    Success,
    /// A success whose previous run failed.
    Recovered,
}

/// The operations that produce notification events.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum NotifyEvent {
    Backup,
    Prune,
    Drill,
    Restore,
    Verify,
    Check,
}

impl NotifyEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Backup => "backup",
            NotifyEvent::Prune => "prune",
            NotifyEvent::Drill => "drill",
            NotifyEvent::Restore => "restore",
            NotifyEvent::Verify => "verify",
            NotifyEvent::Check => "check",
        }
    }
}

pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_NOTIFY_RETRIES: u32 = 2;
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySink {
    /// Shown in warnings and `dr notify test` instead of the URL (which is a secret).
    pub name: Option<String>,
    pub kind: SinkKind,
    pub url: Option<String>,
    pub url_env: Option<String>,
    /// PagerDuty integration key (Events API v2).
    pub routing_key: Option<String>,
    pub routing_key_env: Option<String>,
    /// Default: failure and recovered. Not for heartbeats, which ping on every run.
    pub on: Option<Vec<NotifyOn>>,
    /// Default: every event. Required for heartbeats.
    pub events: Option<Vec<NotifyEvent>>,
    /// Per attempt (default 5s).
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// Further attempts after a timeout, a refused connection or a 5xx/429 (default 2).
    pub retries: Option<u32>,
    /// PagerDuty severity of a failure: critical (default), error, warning or info.
    pub severity: Option<String>,
}

impl NotifySink {
    pub fn on(&self) -> Vec<NotifyOn> {
        self.on
            .clone()
            .unwrap_or_else(|| vec![NotifyOn::Failure, NotifyOn::Recovered])
    }

    pub fn hears(&self, event: NotifyEvent) -> bool {
        self.events.as_ref().is_none_or(|e| e.contains(&event))
    }

    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_NOTIFY_TIMEOUT)
    }

    pub fn retries(&self) -> u32 {
        self.retries.unwrap_or(DEFAULT_NOTIFY_RETRIES)
    }

    /// The URL to send to: inline, from `url_env`, or PagerDuty's public endpoint.
    pub fn resolve_url(&self, name: &str) -> Result<String> {
        if self.url.is_none() && self.url_env.is_none() && self.kind == SinkKind::Pagerduty {
            return Ok(PAGERDUTY_EVENTS_URL.to_string());
        }
        resolve_secret("notify", name, "url", &self.url, &self.url_env)
    }

    pub fn resolve_routing_key(&self, name: &str) -> Result<String> {
        resolve_secret(
            "notify",
            name,
            "routing_key",
            &self.routing_key,
            &self.routing_key_env,
        )
    }
}

fn resolve_secret(
    kind: &str,
    name: &str,
    key: &str,
    inline: &Option<String>,
    env: &Option<String>,
) -> Result<String> {
    if let Some(v) = inline {
        return Ok(v.clone());
    }
    let var = env.as_deref().unwrap_or_default();
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(anyhow::anyhow!(
            "[[{kind}]] {name:?}: environment variable {var} ({key}_env) is not set; hint: export {var}=<{key}> in the environment dr runs in"
        )),
    }
}

fn yes() -> bool {
    true
}

fn http_ok() -> u16 {
    200
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

pub use crate::units::parse_duration;

impl Config {
    /// Finds and loads the configuration: `--config`, then `$DR_CONFIG`, then `./dr.toml`.
    pub fn load(explicit: Option<&Path>) -> Result<Config> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => match std::env::var_os("DR_CONFIG") {
                Some(p) if !p.is_empty() => PathBuf::from(p),
                _ => PathBuf::from("dr.toml"),
            },
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            usage(format!(
                "cannot read configuration {}: {e}; hint: pass --config PATH, set DR_CONFIG, or copy dr.toml.example to ./dr.toml",
                path.display()
            ))
        })?;
        Self::parse(&text, &path)
    }

    /// Parses and validates configuration text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            usage(format!(
                "{}: {}",
                path.display(),
                describe_toml_error(text, &e)
            ))
        })?;
        config.path = path.to_path_buf();
        config.validate(text)?;
        Ok(config)
    }

    fn validate(&self, text: &str) -> Result<()> {
        let file = self.path.display();
        // A setting out of range is reported like a parse error: file, line, key, fix.
        let at = |table: &str, key: &str, message: String| {
            let location = key_line(text, table, key)
                .map(|(n, line)| format!("line {n} (`{}`): ", redact_url(line)))
                .unwrap_or_default();
            usage(format!("{file}: {location}key {table}.{key}: {message}"))
        };
        if let Some((key, message)) = self
            .storage
            .as_ref()
            .and_then(|s| s.s3.as_ref())
            .and_then(S3Config::problem)
        {
            return Err(at("storage.s3", key, message));
        }
        for (key, value) in [
            ("rpo", self.objectives.rpo),
            ("rto", self.objectives.rto),
            ("drill_every", self.objectives.drill_every),
        ] {
            if value.is_some_and(|d| d.is_zero()) {
                return Err(at(
                    "objectives",
                    key,
                    format!("{key} = 0 cannot be met; hint: set a positive duration such as \"1h\", or remove the key"),
                ));
            }
        }
        let mut names = HashSet::new();
        for (kind, name) in self
            .postgres
            .iter()
            .map(|t| ("postgres", &t.name))
            .chain(self.redis.iter().map(|t| ("redis", &t.name)))
        {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(usage(format!(
                    "{file}: [[{kind}]] name = {name:?} is not a valid target name; hint: use letters, digits, '-' and '_' only"
                )));
            }
            if name.len() > MAX_TARGET_NAME {
                return Err(usage(format!(
                    "{file}: [[{kind}]] name = {name:?} is {} characters long; hint: use at most {MAX_TARGET_NAME}, since backup ids and file names are built from it",
                    name.len()
                )));
            }
            if !names.insert(name.as_str()) {
                return Err(usage(format!(
                    "{file}: target name {name:?} is used twice (key [[{kind}]] name); hint: give every target a unique name"
                )));
            }
        }
        for t in &self.postgres {
            check_url_source(&file.to_string(), "postgres", &t.name, &t.url, &t.url_env)?;
            if t.restore_url.is_some() && t.restore_url_env.is_some() {
                return Err(usage(format!(
                    "{file}: [[postgres]] {:?} sets both restore_url and restore_url_env; hint: keep one",
                    t.name
                )));
            }
        }
        for t in &self.postgres {
            self.validate_fleet(t)?;
        }
        for t in &self.redis {
            check_url_source(&file.to_string(), "redis", &t.name, &t.url, &t.url_env)?;
        }
        if let Some(n) = self.connections.max_per_server {
            if !(1..=ConnectionsConfig::MAX_MAX_PER_SERVER).contains(&n) {
                return Err(at(
                    "connections",
                    "max_per_server",
                    format!(
                        "max_per_server = {n} is out of range; hint: use 1 to {} (default {}); dr stays below the server's max_connections on its own",
                        ConnectionsConfig::MAX_MAX_PER_SERVER,
                        ConnectionsConfig::DEFAULT_MAX_PER_SERVER
                    ),
                ));
            }
        }
        if let Some(n) = self.backup.parallel {
            if !(1..=BackupConfig::MAX_PARALLEL).contains(&n) {
                return Err(at(
                    "backup",
                    "parallel",
                    format!(
                        "parallel = {n} is out of range; hint: use 1 to {} (default {})",
                        BackupConfig::MAX_PARALLEL,
                        BackupConfig::DEFAULT_PARALLEL
                    ),
                ));
            }
        }
        if let Some(level) = self.backup.level {
            let ok = match self.backup.compression {
                Compression::Zstd => (1..=19).contains(&level),
                Compression::Gzip => (0..=9).contains(&level),
                Compression::None => true,
            };
            if !ok {
                return Err(at(
                    "backup",
                    "level",
                    format!(
                        "level = {level} is out of range for {}; hint: zstd takes 1-19, gzip 0-9",
                        self.backup.compression.as_str()
                    ),
                ));
            }
        }
        if let Some(encryption) = &self.encryption {
            encryption
                .refuse_keys_as_names()
                .and_then(|()| encryption.recipient_keys(self.dir()))
                .map_err(|e| usage(format!("{file}: {e}")))?;
        }
        if let Some(threads) = self.backup.threads {
            if threads > 256 {
                return Err(at(
                    "backup",
                    "threads",
                    format!(
                        "threads = {threads} is out of range; hint: use 0 (one per core) to 256"
                    ),
                ));
            }
        }
        for h in &self.verify.http {
            if !(100..=599).contains(&h.expect_status) {
                return Err(at(
                    "verify.http",
                    "expect_status",
                    format!(
                        "expect_status = {} in {:?} is not an HTTP status; hint: use 100 to 599 (usually 200)",
                        h.expect_status, h.name
                    ),
                ));
            }
            if h.timeout.is_some_and(|t| t.is_zero()) {
                return Err(at(
                    "verify.http",
                    "timeout",
                    format!("timeout = 0 in {:?} never lets it answer; hint: use a duration such as \"5s\"", h.name),
                ));
            }
        }
        self.validate_notify()?;
        for a in &self.verify.sql {
            if let Some(t) = &a.target {
                if !self.postgres.iter().any(|p| &p.name == t) && self.fleet_member(t).is_none() {
                    return Err(usage(format!(
                        "{file}: key verify.sql {:?} target = {t:?} names no [[postgres]] target",
                        a.name
                    )));
                }
            }
        }
        Ok(())
    }

    fn validate_fleet(&self, t: &PostgresTarget) -> Result<()> {
        let file = self.path.display();
        let at = format!("{file}: [[postgres]] {:?}", t.name);
        match &t.databases {
            None if !t.exclude.is_empty() => Err(usage(format!(
                "{at} sets exclude without databases; hint: add databases = \"all\" (or a list), or remove exclude"
            ))),
            Some(DatabaseSelection::Keyword(k)) if k != "all" => Err(usage(format!(
                "{at}: databases = {k:?} is not understood; hint: write databases = \"all\" or a list such as [\"orders\", \"users\"]"
            ))),
            Some(DatabaseSelection::List(l)) if l.is_empty() || l.iter().any(|d| d.is_empty()) => {
                Err(usage(format!(
                    "{at}: databases lists no database (or an empty name); hint: name them, or write databases = \"all\""
                )))
            }
            Some(_) if t.wal_archiving => Err(usage(format!(
                "{at} sets both databases and wal_archiving; WAL is archived for the whole server, not per database; hint: add a separate [[postgres]] target with wal_archiving = true for the server"
            ))),
            _ => Ok(()),
        }
    }

    fn validate_notify(&self) -> Result<()> {
        let file = self.path.display();
        let names = self.notify_names();
        let mut seen = HashSet::new();
        for (sink, name) in self.notify.iter().zip(&names) {
            let at = format!("{file}: [[notify]] {name:?}");
            if !seen.insert(name.as_str()) {
                return Err(usage(format!(
                    "{at}: the sink name is used twice; hint: give every [[notify]] a unique name = \"...\""
                )));
            }
            match (&sink.url, &sink.url_env) {
                (Some(_), Some(_)) => {
                    return Err(usage(format!(
                        "{at} sets both url and url_env; hint: keep one"
                    )))
                }
                (None, None) if sink.kind != SinkKind::Pagerduty => {
                    return Err(usage(format!(
                        "{at} (kind {}) has neither url nor url_env; hint: add url_env = \"ENV_VAR\" (the URL is a secret) or url = \"https://...\"",
                        sink.kind.as_str()
                    )))
                }
                _ => {}
            }
            if let Some(url) = &sink.url {
                let ok = url::Url::parse(url)
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
                if !ok {
                    // The URL is a secret: name the key, never the value.
                    return Err(usage(format!(
                        "{at}: key url is not an http(s) URL; hint: write the full URL, such as https://hooks.example.com/..."
                    )));
                }
            }
            let has_key = sink.routing_key.is_some() || sink.routing_key_env.is_some();
            if sink.kind == SinkKind::Pagerduty
                && sink.routing_key.is_some() == sink.routing_key_env.is_some()
            {
                return Err(usage(format!(
                    "{at} needs exactly one of routing_key and routing_key_env; hint: routing_key_env = \"DR_PAGERDUTY_ROUTING_KEY\" (the integration key of an Events API v2 service)"
                )));
            }
            if sink.kind != SinkKind::Pagerduty && has_key {
                return Err(usage(format!(
                    "{at}: routing_key is only for kind = \"pagerduty\"; hint: remove it"
                )));
            }
            if sink.severity.is_some() && sink.kind != SinkKind::Pagerduty {
                return Err(usage(format!(
                    "{at}: severity is only for kind = \"pagerduty\"; hint: remove it"
                )));
            }
            if let Some(sev) = &sink.severity {
                if !["critical", "error", "warning", "info"].contains(&sev.as_str()) {
                    return Err(usage(format!(
                        "{at}: severity = {sev:?} is not one of critical, error, warning, info"
                    )));
                }
            }
            if sink.kind == SinkKind::Heartbeat {
                if sink.on.is_some() {
                    return Err(usage(format!(
                        "{at}: a heartbeat pings on every run (start, then success or fail), so it takes no `on`; hint: remove on, and choose the job with events = [\"backup\"]"
                    )));
                }
                if sink.events.as_ref().is_none_or(|e| e.is_empty()) {
                    return Err(usage(format!(
                        "{at}: a heartbeat watches one job, so it needs events; hint: add events = [\"backup\"] (a ping from another command would hide a backup that stopped running)"
                    )));
                }
            }
            if sink.on.as_ref().is_some_and(|o| o.is_empty()) {
                return Err(usage(format!(
                    "{at}: on = [] would never send; hint: remove the sink, or list failure, success or recovered"
                )));
            }
            if let Some(t) = sink.timeout {
                if t < Duration::from_millis(100) || t > Duration::from_secs(60) {
                    return Err(usage(format!(
                        "{at}: key timeout = {} is out of range; hint: between 100ms and 60s (a slow sink must not hold up the operation)",
                        crate::units::duration(t)
                    )));
                }
            }
            if sink.retries.is_some_and(|r| r > 5) {
                return Err(usage(format!(
                    "{at}: key retries is out of range; hint: 0 to 5"
                )));
            }
        }
        Ok(())
    }

    /// The name of each `[[notify]]` sink, in order: its `name`, else its kind (with the
    /// position when several sinks share a kind).
    pub fn notify_names(&self) -> Vec<String> {
        self.notify
            .iter()
            .enumerate()
            .map(|(i, s)| match &s.name {
                Some(n) => n.clone(),
                None if self.notify.iter().filter(|o| o.kind == s.kind).count() > 1 => {
                    format!("{}-{}", s.kind.as_str(), i + 1)
                }
                None => s.kind.as_str().to_string(),
            })
            .collect()
    }

    pub fn postgres_target(&self, name: &str) -> Result<&PostgresTarget> {
        if is_glob(name) {
            let found: Vec<&PostgresTarget> = self
                .postgres
                .iter()
                .filter(|t| glob_matches(name, &t.name))
                .collect();
            return match found.as_slice() {
                [one] => Ok(one),
                [] => Err(self.no_match(name)),
                many => Err(usage(format!(
                    "--target {name:?} matches {} targets ({}); hint: this command works on one target: name it",
                    many.len(),
                    shorten(many.iter().map(|t| t.name.as_str()))
                ))),
            };
        }
        let members = self.members_of(name);
        if !members.is_empty() && !self.postgres.iter().any(|t| t.name == name) {
            return Err(usage(format!(
                "--target {name:?} is a fleet of {} databases and this command works on one; hint: name one, e.g. --target {} (members: {})",
                members.len(),
                members[0].name,
                shorten(members.iter().map(|t| t.name.as_str()))
            )));
        }
        self.postgres
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.postgres.iter().map(|t| t.name.as_str()).collect();
                usage(format!(
                    "unknown PostgreSQL target {name:?}; known targets: {}",
                    if known.is_empty() {
                        "none configured".to_string()
                    } else {
                        shorten(known.into_iter())
                    }
                ))
            })
    }

    /// Replaces the fleet target `fleet` by one member per database it takes (all of
    /// `databases` when they were named on the command line).
    pub fn expand_fleet(&mut self, fleet: &str, databases: &[String], named: bool) {
        let Some(at) = self
            .postgres
            .iter()
            .position(|t| t.name == fleet && t.is_fleet())
        else {
            return;
        };
        let target = self.postgres.remove(at);
        let members: Vec<PostgresTarget> = databases
            .iter()
            .filter(|d| named || target.takes_database(d))
            .map(|d| target.member(d))
            .collect();
        self.postgres.splice(at..at, members);
    }

    /// The fleet `fleet` could not list its databases: it is left out, and commands
    /// report it as failed.
    pub fn fleet_failed(&mut self, fleet: &str, error: String) {
        self.postgres.retain(|t| !(t.name == fleet && t.is_fleet()));
        self.discovery_failures.push((fleet.to_string(), error));
    }

    /// The `[[postgres]]` targets with `databases = ...` not expanded yet.
    pub fn fleets(&self) -> Vec<PostgresTarget> {
        self.postgres
            .iter()
            .filter(|t| t.is_fleet())
            .cloned()
            .collect()
    }

    /// The names `--target` selects among every target, PostgreSQL and Redis: the name
    /// itself, the members of a fleet, or every match of a glob (none is a usage error).
    pub fn selected_names(&self, wanted: &str) -> Result<Vec<String>> {
        let all = self
            .postgres
            .iter()
            .map(|t| t.name.as_str())
            .chain(self.redis.iter().map(|t| t.name.as_str()));
        let found: Vec<String> = if is_glob(wanted) {
            all.filter(|n| glob_matches(wanted, n))
                .map(str::to_string)
                .collect()
        } else {
            all.filter(|n| {
                *n == wanted
                    || n.strip_prefix(wanted)
                        .is_some_and(|rest| rest.starts_with(MEMBER_SEPARATOR))
            })
            .map(str::to_string)
            .collect()
        };
        if found.is_empty() {
            return Err(self.no_match(wanted));
        }
        Ok(found)
    }

    /// The usage error of a `--target` glob that matches nothing, listing the targets.
    pub fn no_match(&self, pattern: &str) -> anyhow::Error {
        let names = self
            .postgres
            .iter()
            .map(|t| t.name.as_str())
            .chain(self.redis.iter().map(|t| t.name.as_str()));
        usage(format!(
            "--target {pattern:?} matches no target; hint: choose among {} (globs: * any characters, ? one)",
            shorten(names)
        ))
    }

    /// The targets a command works on: the named one (a glob: every match; the name of
    /// a fleet: its databases), or all of them.
    pub fn select_postgres(&self, name: Option<&str>) -> Result<Vec<&PostgresTarget>> {
        match name {
            Some(n) if is_glob(n) => {
                let found: Vec<&PostgresTarget> = self
                    .postgres
                    .iter()
                    .filter(|t| glob_matches(n, &t.name))
                    .collect();
                if found.is_empty() {
                    return Err(self.no_match(n));
                }
                Ok(found)
            }
            Some(n) => {
                let members = self.members_of(n);
                if !members.is_empty() && !self.postgres.iter().any(|t| t.name == n) {
                    return Ok(members);
                }
                Ok(vec![self.postgres_target(n)?])
            }
            None if self.postgres.is_empty() => Err(usage(format!(
                "{}: no [[postgres]] target is configured; hint: add one (see dr.toml.example)",
                self.path.display()
            ))),
            None => Ok(self.postgres.iter().collect()),
        }
    }

    /// The members (`fleet/<database>`) of a fleet target, once its databases are known.
    fn members_of(&self, fleet: &str) -> Vec<&PostgresTarget> {
        self.postgres
            .iter()
            .filter(|t| {
                t.name
                    .strip_prefix(fleet)
                    .is_some_and(|rest| rest.starts_with(MEMBER_SEPARATOR))
            })
            .collect()
    }

    /// The member `fleet/database` of a `[[postgres]]` fleet target, made without asking
    /// the server (the database may still be missing there).
    pub fn fleet_member(&self, name: &str) -> Option<PostgresTarget> {
        let (fleet, database) = name.split_once(MEMBER_SEPARATOR)?;
        let t = self
            .postgres
            .iter()
            .find(|t| t.name == fleet && t.databases.is_some())?;
        (!database.is_empty()).then(|| t.member(database))
    }

    /// The `[[redis]]` target of that name, if there is one.
    pub fn redis_target(&self, name: &str) -> Option<&RedisTarget> {
        self.redis.iter().find(|t| t.name == name)
    }

    /// A Redis target named explicitly for a data command (restore, verify, drill): it
    /// must have `backup = true`, since only then does it have backups.
    pub fn redis_backup_target(&self, name: Option<&str>) -> Option<Result<&RedisTarget>> {
        let name = name?;
        let target = if is_glob(name) {
            let redis: Vec<&RedisTarget> = self
                .redis
                .iter()
                .filter(|t| glob_matches(name, &t.name))
                .collect();
            let postgres = self.postgres.iter().any(|t| glob_matches(name, &t.name));
            match redis.as_slice() {
                [one] if !postgres => *one,
                _ => return None,
            }
        } else {
            self.redis_target(name)?
        };
        if target.backup {
            Some(Ok(target))
        } else {
            Some(Err(usage(format!(
                "{}: Redis target {:?} is not backed up by dr (backup = false); hint: add backup = true to its [[redis]] table",
                self.path.display(),
                target.name
            ))))
        }
    }

    /// The targets `dr backup` works on: the named one, or every PostgreSQL target and
    /// every Redis target with `backup = true`.
    pub fn select_backup_targets(&self, name: Option<&str>) -> Result<Vec<BackupTarget<'_>>> {
        if let Some(pattern) = name.filter(|n| is_glob(n)) {
            let out: Vec<BackupTarget<'_>> = self
                .postgres
                .iter()
                .filter(|t| glob_matches(pattern, &t.name))
                .map(BackupTarget::Postgres)
                .chain(
                    self.redis
                        .iter()
                        .filter(|t| t.backup && glob_matches(pattern, &t.name))
                        .map(BackupTarget::Redis),
                )
                .collect();
            if out.is_empty() {
                return Err(self.no_match(pattern));
            }
            return Ok(out);
        }
        if let Some(result) = self.redis_backup_target(name) {
            return Ok(vec![BackupTarget::Redis(result?)]);
        }
        if name.is_none() && self.postgres.is_empty() {
            let redis: Vec<BackupTarget<'_>> = self
                .redis
                .iter()
                .filter(|t| t.backup)
                .map(BackupTarget::Redis)
                .collect();
            if !redis.is_empty() {
                return Ok(redis);
            }
        }
        let mut out: Vec<BackupTarget<'_>> = self
            .select_postgres(name)?
            .into_iter()
            .map(BackupTarget::Postgres)
            .collect();
        if name.is_none() {
            out.extend(
                self.redis
                    .iter()
                    .filter(|t| t.backup)
                    .map(BackupTarget::Redis),
            );
        }
        Ok(out)
    }

    /// Checks that `name` is a configured target of either kind (for list and prune).
    pub fn known_target(&self, name: &str) -> Result<()> {
        if self.redis_target(name).is_some() || self.fleet_member(name).is_some() {
            return Ok(());
        }
        self.postgres_target(name).map(|_| ())
    }

    /// Whether the file carries a password inline (in a URL or a password parameter).
    pub fn has_inline_password(&self) -> bool {
        self.postgres
            .iter()
            .flat_map(|t| [t.url.as_deref(), t.restore_url.as_deref()])
            .flatten()
            .chain(self.redis.iter().filter_map(|t| t.url.as_deref()))
            .any(|u| redact_url(u) != u)
    }

    /// The directory relative paths in the file are taken from.
    pub fn dir(&self) -> &Path {
        self.path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    }

    /// Passwords of every configured target, and the URLs (with their paths and queries,
    /// where sink tokens live) and routing keys of the `[[notify]]` sinks, for
    /// [`crate::secret::scrub`].
    pub fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (sink, name) in self.notify.iter().zip(self.notify_names()) {
            if let Ok(url) = sink.resolve_url(&name) {
                if let Ok(parsed) = url::Url::parse(&url) {
                    if parsed.path().len() > 1 {
                        out.push(parsed.path().to_string());
                    }
                    if let Some(q) = parsed.query() {
                        out.push(q.to_string());
                    }
                }
                // The public PagerDuty endpoint is no secret.
                if url != PAGERDUTY_EVENTS_URL {
                    out.push(url);
                }
            }
            if sink.kind == SinkKind::Pagerduty {
                if let Ok(key) = sink.resolve_routing_key(&name) {
                    out.push(key);
                }
            }
        }
        let urls = self
            .postgres
            .iter()
            .filter_map(|t| t.resolve_url().ok())
            .chain(
                self.postgres
                    .iter()
                    .filter_map(|t| t.resolve_restore_url().ok()),
            )
            .chain(self.redis.iter().filter_map(|t| t.resolve_url().ok()));
        for url in urls {
            if let Ok(u) = url::Url::parse(&url) {
                if let Some(p) = u.password() {
                    out.push(p.to_string());
                    // A percent-encoded password also reaches messages decoded.
                    if let Ok(decoded) = urlencoding_decode(p) {
                        out.push(decoded);
                    }
                }
                for (k, v) in u.query_pairs() {
                    if k == "password" {
                        out.push(v.into_owned());
                    }
                }
            }
        }
        // Longest first, so a whole URL is replaced before its path.
        out.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        out.dedup();
        out
    }

    pub fn storage(&self) -> Result<&StorageConfig> {
        self.storage.as_ref().ok_or_else(|| {
            usage(format!(
                "{}: no [storage] table; hint: add [storage] url = \"file:///var/backups/dr\" (or s3://bucket/prefix)",
                self.path.display()
            ))
        })
    }
}

/// Names for a message: all of them up to 12, else the first 10 and how many more.
fn shorten<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.len() <= 12 {
        return names.join(", ");
    }
    format!("{} and {} more", names[..10].join(", "), names.len() - 10)
}

/// The URL with its database replaced (percent-encoded in the path).
fn url_with_database(url: &str, database: &str) -> Option<String> {
    let mut parsed = url::Url::parse(url).ok()?;
    if !parsed.scheme().starts_with("postgres") {
        return None;
    }
    let mut path = String::from("/");
    for b in database.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
            path.push(b as char);
        } else {
            path.push_str(&format!("%{b:02X}"));
        }
    }
    parsed.set_path(&path);
    Some(parsed.to_string())
}

fn urlencoding_decode(text: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes: Vec<u8> = url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned().into_bytes())
        .unwrap_or_default();
    String::from_utf8(bytes)
}

fn check_url_source(
    file: &str,
    kind: &str,
    name: &str,
    url: &Option<String>,
    url_env: &Option<String>,
) -> Result<()> {
    match (url, url_env) {
        (Some(_), Some(_)) => Err(usage(format!(
            "{file}: [[{kind}]] {name:?} sets both url and url_env; hint: keep one"
        ))),
        (None, None) => Err(usage(format!(
            "{file}: [[{kind}]] {name:?} has neither url nor url_env; hint: add url = \"...\" or url_env = \"ENV_VAR\""
        ))),
        _ => Ok(()),
    }
}

/// Resolves a target URL given inline or through an environment variable.
pub fn resolve_url(
    kind: &str,
    name: &str,
    url: &Option<String>,
    url_env: &Option<String>,
) -> Result<String> {
    if let Some(u) = url {
        return Ok(u.clone());
    }
    let var = url_env.as_deref().unwrap_or_default();
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(usage(format!(
            "{kind} target {name:?}: environment variable {var} (its url_env) is not set; hint: export {var}=<connection URL> or set url in dr.toml"
        ))),
    }
}

impl PostgresTarget {
    pub fn resolve_url(&self) -> Result<String> {
        let url = resolve_url("postgres", &self.name, &self.url, &self.url_env)?;
        self.member_url(url)
    }

    /// A fleet member reaches its own database on the fleet's server.
    fn member_url(&self, url: String) -> Result<String> {
        let Some(database) = &self.database else {
            return Ok(url);
        };
        url_with_database(&url, database).ok_or_else(|| {
            usage(format!(
                "postgres target {:?}: the URL {} is not a postgres:// URL, so its database cannot be replaced by {database:?}; hint: write url as postgres://user@host:5432/postgres when the target sets databases",
                self.name,
                redact_url(&url)
            ))
        })
    }

    /// A target with `databases = ...`: a fleet, not a database.
    pub fn is_fleet(&self) -> bool {
        self.databases.is_some()
    }

    /// The member of this fleet for one database.
    pub fn member(&self, database: &str) -> PostgresTarget {
        let mut m = self.clone();
        m.name = format!("{}{MEMBER_SEPARATOR}{database}", self.name);
        m.database = Some(database.to_string());
        m.databases = None;
        m.exclude = Vec::new();
        m
    }

    /// Whether this fleet takes `database` (of those the server lists): named or `all`,
    /// not excluded, and not a drill's scratch database.
    pub fn takes_database(&self, database: &str) -> bool {
        let named = match &self.databases {
            None => false,
            Some(DatabaseSelection::Keyword(_)) => true,
            Some(DatabaseSelection::List(list)) => list.iter().any(|d| d == database),
        };
        named
            && !database.starts_with("dr_drill_")
            && !self.exclude.iter().any(|e| glob_matches(e, database))
    }

    /// The URL of the destination side (validate, restore, verify, drill): `restore_url`
    /// or `restore_url_env` when set, else the target's own URL.
    pub fn resolve_restore_url(&self) -> Result<String> {
        if self.restore_url.is_none() && self.restore_url_env.is_none() {
            return self.resolve_url();
        }
        resolve_url(
            "postgres",
            &self.name,
            &self.restore_url,
            &self.restore_url_env,
        )
        .and_then(|url| self.member_url(url))
        .map_err(|e| {
            usage(
                e.to_string()
                    .replace("(its url_env)", "(its restore_url_env)")
                    .replace("or set url in", "or set restore_url in"),
            )
        })
    }
}

impl RedisTarget {
    pub fn resolve_url(&self) -> Result<String> {
        resolve_url("redis", &self.name, &self.url, &self.url_env)
    }
}

/// The first line that sets `key` inside `[table]` (or `[[table]]`), numbered from 1.
fn key_line<'a>(text: &'a str, table: &str, key: &str) -> Option<(usize, &'a str)> {
    let mut in_table = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            let name = t.trim_matches(|c| c == '[' || c == ']').trim();
            in_table = name == table;
            continue;
        }
        if in_table {
            if let Some(rest) = t.strip_prefix(key) {
                if rest.trim_start().starts_with('=') {
                    return Some((i + 1, t));
                }
            }
        }
    }
    None
}

/// One line: where in the file, which key, what is wrong, and the hint.
fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim().replace('\n', " ");
    let location = err.span().map(|span| {
        let line_no = text[..span.start.min(text.len())].matches('\n').count() + 1;
        let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
        let in_notify = text
            .lines()
            .take(line_no)
            .filter(|l| l.trim_start().starts_with('['))
            .last()
            .is_some_and(|header| header.trim() == "[[notify]]");
        let shown = match line.split_once('=') {
            // Sink URLs and keys are secrets whole, not only their passwords.
            Some((key, _)) if in_notify => format!("{}= ***", key),
            _ => redact_url(line),
        };
        format!("line {line_no} (`{shown}`)")
    });
    let hint = if message.contains("unknown field") {
        "remove or rename this key; dr.toml.example lists every valid key"
    } else if message.contains("duration") {
        "fix the duration"
    } else {
        "fix the value; dr.toml.example shows the expected shape"
    };
    match location {
        Some(loc) => format!("{loc}: {message}; hint: {hint}"),
        None => format!("{message}; hint: {hint}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[objectives]
rpo = "1h"
rto = "30m"

[storage]
url = "file:///var/backups/dr"

[[postgres]]
name = "main"
url = "postgres://backup@db.internal:5432/shop"

[[redis]]
name = "cache"
url = "redis://127.0.0.1:6379"
"#;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("dr.toml"))
    }

    #[test]
    fn accepts_minimal_contract_shape() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.objectives.rpo, Some(Duration::from_secs(3600)));
        assert_eq!(c.objectives.rto, Some(Duration::from_secs(1800)));
        assert!(c.postgres[0].critical);
        assert!(!c.redis[0].critical);
        assert!(!c.has_inline_password());
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err =
            parse(&MINIMAL.replace("rto = \"30m\"", "rto = \"30m\"\nrtoo = \"1h\"")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("rtoo"), "{msg}");
        assert!(msg.contains("line 5"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        assert_eq!(crate::error::exit_code(&err), 2);
    }

    #[test]
    fn bad_duration_is_named() {
        let err = parse(&MINIMAL.replace("\"1h\"", "\"5 parsecs\"")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("rpo"), "{msg}");
        assert!(msg.contains("invalid duration"), "{msg}");
    }

    #[test]
    fn duplicate_names_refused() {
        let err = parse(&MINIMAL.replace("name = \"cache\"", "name = \"main\"")).unwrap_err();
        assert!(err.to_string().contains("\"main\" is used twice"), "{err}");
    }

    #[test]
    fn out_of_range_settings_name_file_line_and_key() {
        let text = MINIMAL.replace(
            "url = \"file:///var/backups/dr\"",
            "url = \"s3://b/p\"\n\n[storage.s3]\nregion = \"x\"\npart_size_mib = 1",
        );
        let err = parse(&text).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("dr.toml: line 11 (`part_size_mib = 1`): key storage.s3.part_size_mib"),
            "{msg}"
        );
        assert!(
            msg.contains("hint: S3 parts must be 5 to 5120 MiB"),
            "{msg}"
        );
        assert_eq!(crate::error::exit_code(&err), 2);
        let err = parse(&text.replace("part_size_mib = 1", "endpoint = \"http://127.0.0.1:9000\""))
            .unwrap_err();
        assert!(err.to_string().contains("allow_http = true"), "{err}");
        let err = parse(&MINIMAL.replace("rto = \"30m\"", "rto = \"0s\"")).unwrap_err();
        assert!(
            err.to_string()
                .contains("line 4 (`rto = \"0s\"`): key objectives.rto"),
            "{err}"
        );
    }

    #[test]
    fn bad_expectation_and_storage_url_are_config_errors_with_a_line() {
        let err = parse(&MINIMAL.replace("file:///var/backups/dr", "ftp://x")).unwrap_err();
        assert!(err.to_string().contains("line 7"), "{err}");
        let text = format!(
            "{MINIMAL}\n[[verify.sql]]\nname = \"n\"\nquery = \"SELECT 1\"\nexpect = \">= x\"\n"
        );
        let err = parse(&text).unwrap_err();
        assert!(err.to_string().contains("is not a number"), "{err}");
        assert!(err.to_string().contains("line 20"), "{err}");
    }

    #[test]
    fn expectations() {
        let e = |t: &str| Expectation::parse(t).unwrap();
        assert!(e(">= 1").holds(Some("3")));
        assert!(!e(">= 1").holds(Some("0")));
        assert!(e("= 0").holds(Some("0")));
        assert!(e("!=0").holds(Some("2")));
        assert!(e("< 2.5").holds(Some("2")));
        assert!(e("t").holds(Some("t")));
        assert!(!e("= 0").holds(None));
        assert!(Expectation::parse(">= x").is_err());
        assert!(Expectation::parse(">=").is_err());
    }

    #[test]
    fn storage_urls() {
        assert_eq!(
            StorageUrl::parse("file:///var/backups/dr").unwrap(),
            StorageUrl::Local("/var/backups/dr".into())
        );
        let s3 = StorageUrl::parse("s3://bucket/a/b/").unwrap();
        assert_eq!(
            s3,
            StorageUrl::S3 {
                bucket: "bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(s3.to_string(), "s3://bucket/a/b");
        assert!(StorageUrl::parse("file://relative").is_err());
        assert!(StorageUrl::parse("ftp://x").is_err());
        assert!(StorageUrl::parse("s3:///x").is_err());
    }

    #[test]
    fn inline_password_detected() {
        let c = parse(&MINIMAL.replace("backup@", "backup:pw@")).unwrap();
        assert!(c.has_inline_password());
    }

    #[test]
    fn restore_url_defaults_to_the_target_url() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(
            c.postgres[0].resolve_restore_url().unwrap(),
            "postgres://backup@db.internal:5432/shop"
        );
        let c = parse(&MINIMAL.replace(
            "url = \"postgres://backup@db.internal:5432/shop\"",
            "url = \"postgres://backup@db.internal:5432/shop\"\nrestore_url_env = \"DR_TEST_SURELY_UNSET_RESTORE\"",
        ))
        .unwrap();
        let err = c.postgres[0].resolve_restore_url().unwrap_err();
        assert!(
            err.to_string()
                .contains("DR_TEST_SURELY_UNSET_RESTORE (its restore_url_env)"),
            "{err}"
        );
        assert_eq!(crate::error::exit_code(&err), 2);
        let both = MINIMAL.replace(
            "url = \"postgres://backup@db.internal:5432/shop\"",
            "url = \"postgres://backup@db.internal:5432/shop\"\nrestore_url = \"postgres://owner:pw@db.internal/shop\"\nrestore_url_env = \"X\"",
        );
        assert!(parse(&both)
            .unwrap_err()
            .to_string()
            .contains("both restore_url and restore_url_env"));
        let inline = MINIMAL.replace(
            "url = \"postgres://backup@db.internal:5432/shop\"",
            "url = \"postgres://backup@db.internal:5432/shop\"\nrestore_url = \"postgres://owner:s3cret@db.internal/shop\"",
        );
        let c = parse(&inline).unwrap();
        assert!(c.has_inline_password());
        assert!(c.secrets().contains(&"s3cret".to_string()));
    }

    #[test]
    fn notify_lines_are_never_echoed() {
        let err = parse(&format!(
            "{MINIMAL}\n[[notify]]\nkind = \"slack\"\nurll = \"https://hooks.example/T/B/SeCrEt\"\n"
        ))
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("urll = ***") && !msg.contains("SeCrEt"),
            "{msg}"
        );
        let err = parse(&format!(
            "{MINIMAL}\n[[notify]]\nkind = \"heartbeat\"\nurl = \"https://hc.example/ping/x\"\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("needs events"), "{err}");
        assert_eq!(crate::error::exit_code(&err), 2);
    }

    #[test]
    fn redis_backup_keys_and_target_selection() {
        let c = parse(&MINIMAL.replace(
            "url = \"redis://127.0.0.1:6379\"",
            "url = \"redis://127.0.0.1:6379\"\nbackup = true\nmethod = \"keys\"",
        ))
        .unwrap();
        assert!(c.redis[0].backup);
        assert_eq!(c.redis[0].method, RedisBackupMethod::Keys);
        let all: Vec<String> = c
            .select_backup_targets(None)
            .unwrap()
            .iter()
            .map(|t| match t {
                BackupTarget::Postgres(p) => format!("pg:{}", p.name),
                BackupTarget::Redis(r) => format!("redis:{}", r.name),
            })
            .collect();
        assert_eq!(all, vec!["pg:main", "redis:cache"]);

        // Not backed up: named explicitly, it is a usage error that says how to turn it on.
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.redis[0].method, RedisBackupMethod::Auto);
        assert_eq!(c.select_backup_targets(None).unwrap().len(), 1);
        let err = c.select_backup_targets(Some("cache")).unwrap_err();
        assert!(err.to_string().contains("backup = true"), "{err}");
        assert_eq!(crate::error::exit_code(&err), 2);

        let err = parse(&MINIMAL.replace(
            "url = \"redis://127.0.0.1:6379\"",
            "url = \"redis://127.0.0.1:6379\"\nmethod = \"snapshot\"",
        ))
        .unwrap_err();
        assert!(err.to_string().contains("snapshot"), "{err}");
        assert_eq!(crate::error::exit_code(&err), 2);
    }

    #[test]
    fn url_env_resolution_names_variable() {
        let c = parse(&MINIMAL.replace(
            "url = \"postgres://backup@db.internal:5432/shop\"",
            "url_env = \"DR_TEST_SURELY_UNSET_VAR\"",
        ))
        .unwrap();
        let err = c.postgres[0].resolve_url().unwrap_err();
        assert!(err.to_string().contains("DR_TEST_SURELY_UNSET_VAR"));
    }
}

#[cfg(test)]
mod fleet_tests {
    use super::*;

    fn fleet_config(extra: &str) -> Config {
        Config::parse(
            &format!(
                "[storage]\nurl = \"file:///tmp/x\"\n[[postgres]]\nname = \"shop\"\nurl = \"postgres://dr@db:5432/postgres\"\n{extra}\n[[postgres]]\nname = \"billing\"\nurl = \"postgres://dr@db2/billing\"\n"
            ),
            Path::new("dr.toml"),
        )
        .unwrap()
    }

    #[test]
    fn globs_match_names_and_fleet_members() {
        assert!(glob_matches("shop-*", "shop-eu"));
        assert!(glob_matches("shop*", "shop/orders"));
        assert!(glob_matches("shop/o?ders", "shop/orders"));
        assert!(glob_matches("*", ""));
        assert!(!glob_matches("shop-*", "shop"));
        assert!(!glob_matches("a*b", "acbd"));
        assert!(glob_matches("a*b*c", "aXbYbZc"));
    }

    #[test]
    fn storage_names_are_key_safe_and_read_back() {
        for name in [
            "main",
            "shop/orders",
            "shop/Bestellungen 2024",
            "shop/a+b~c",
            "x/ü/y",
        ] {
            let stored = storage_name(name);
            assert!(!stored.contains('/'), "{stored}");
            assert!(
                stored
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-+~".contains(c)),
                "{stored}"
            );
            assert_eq!(target_from_storage(&stored), name);
        }
        assert_eq!(storage_name("main"), "main");
        assert_eq!(storage_name("shop/orders"), "shop+orders");
    }

    #[test]
    fn a_fleet_becomes_one_member_per_database_it_takes() {
        let mut config = fleet_config("databases = \"all\"\nexclude = [\"postgres\", \"test_*\"]");
        let found: Vec<String> = [
            "orders",
            "postgres",
            "test_1",
            "users",
            "dr_drill_20261125010203",
        ]
        .map(String::from)
        .to_vec();
        config.expand_fleet("shop", &found, false);
        let names: Vec<&str> = config.postgres.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["shop/orders", "shop/users", "billing"]);
        assert_eq!(
            config.postgres[1].resolve_url().unwrap(),
            "postgres://dr@db:5432/users"
        );
        // The fleet's name selects its members; a glob selects across targets.
        assert_eq!(config.select_postgres(Some("shop")).unwrap().len(), 2);
        assert_eq!(config.select_postgres(Some("*")).unwrap().len(), 3);
        assert_eq!(
            config.selected_names("shop/u*").unwrap(),
            ["shop/users".to_string()]
        );
        let none = config.selected_names("orders-*").unwrap_err().to_string();
        assert!(
            none.contains("matches no target") && none.contains("shop/orders"),
            "{none}"
        );
        let one = config.postgres_target("shop").unwrap_err().to_string();
        assert!(one.contains("is a fleet of 2 databases"), "{one}");
    }

    #[test]
    fn fleet_keys_are_checked() {
        let bad = |extra: &str| {
            Config::parse(
                &format!(
                    "[[postgres]]\nname = \"shop\"\nurl = \"postgres://dr@db/postgres\"\n{extra}\n"
                ),
                Path::new("dr.toml"),
            )
            .unwrap_err()
            .to_string()
        };
        assert!(bad("databases = \"some\"").contains("databases = \"all\""));
        assert!(bad("exclude = [\"x\"]").contains("exclude without databases"));
        assert!(bad("databases = []").contains("lists no database"));
        assert!(bad("databases = \"all\"\nwal_archiving = true").contains("wal_archiving"));
        assert!(bad("[connections]\nmax_per_server = 0").contains("max_per_server"));
        assert!(bad("[backup]\nparallel = 0").contains("parallel"));
    }
}
