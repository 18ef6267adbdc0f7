//! `[[postgres]]` and `[[redis]]` targets: their names (and how names become storage
//! keys), fleets of databases, globs, and the URLs given inline or through `url_env`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use serde::Deserialize;

use super::{opt_duration, yes};
use crate::error::usage;
use crate::secret::redact_url;

/// Target names become parts of backup ids, file names and object keys.
pub const MAX_TARGET_NAME: usize = 64;

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
    /// This target takes incremental base backups (`dr backup --physical --incremental`,
    /// PostgreSQL 17+): `dr check` then runs pg.summarize_wal for it.
    #[serde(default)]
    pub incremental: bool,
    /// A fleet on one server: `"all"` (every connectable database that is not a template)
    /// or a list of names; each database becomes a target named `<name>/<database>`.
    pub databases: Option<DatabaseSelection>,
    /// Databases (names or globs such as `"test_*"`) left out of `databases`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// The database of a fleet member: it replaces the one in `url` and `restore_url`.
    #[serde(skip)]
    pub database: Option<String>,
    /// Which server `dr backup --physical` streams the base backup from; the WAL comes
    /// from the primary's archive either way.
    #[serde(default)]
    pub backup_from: BackupFrom,
    /// The standby's URL (with `backup_from = "standby"`), like `url`/`url_env`.
    pub standby_url: Option<String>,
    pub standby_url_env: Option<String>,
}

/// `backup_from = "primary"` (the default) or `"standby"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupFrom {
    #[default]
    Primary,
    Standby,
}

impl BackupFrom {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupFrom::Primary => "primary",
            BackupFrom::Standby => "standby",
        }
    }
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

pub(super) fn urlencoding_decode(text: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes: Vec<u8> = url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned().into_bytes())
        .unwrap_or_default();
    String::from_utf8(bytes)
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

impl PostgresTarget {
    /// The standby's URL, when `backup_from = "standby"` (`None` otherwise).
    pub fn resolve_standby_url(&self) -> Result<Option<String>> {
        if self.backup_from != BackupFrom::Standby {
            return Ok(None);
        }
        resolve_url(
            "postgres",
            &self.name,
            &self.standby_url,
            &self.standby_url_env,
        )
        .map(Some)
        .map_err(|e| {
            usage(
                e.to_string()
                    .replace("(its url_env)", "(its standby_url_env)")
                    .replace("or set url in", "or set standby_url in"),
            )
        })
    }
}

impl RedisTarget {
    pub fn resolve_url(&self) -> Result<String> {
        resolve_url("redis", &self.name, &self.url, &self.url_env)
    }
}
