//! Checks of a parsed configuration that serde cannot express: ranges, unique names,
//! one URL source per target; each error names the file, the line and the fix.

use std::collections::HashSet;

use anyhow::Result;

use super::{
    BackupConfig, BackupFrom, Compression, Config, ConnectionsConfig, DatabaseSelection,
    PostgresTarget, S3Config, MAX_TARGET_NAME,
};
use crate::error::usage;
use crate::secret::redact_url;

impl Config {
    pub(super) fn validate(&self, text: &str) -> Result<()> {
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
            self.validate_standby(t)?;
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
        if let Some((key, message)) = self.wal.problem() {
            return Err(at("wal", key, message));
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

    /// `backup_from = "standby"` needs the standby's URL (one way of giving it), and a
    /// standby URL without it would be silently unused.
    fn validate_standby(&self, t: &PostgresTarget) -> Result<()> {
        let file = self.path.display();
        let name = &t.name;
        let given = t.standby_url.is_some() || t.standby_url_env.is_some();
        let problem = match t.backup_from {
            _ if t.standby_url.is_some() && t.standby_url_env.is_some() => {
                "sets both standby_url and standby_url_env; hint: keep one"
            }
            BackupFrom::Standby if !given => {
                "sets backup_from = \"standby\" without the standby's URL; hint: add standby_url = \"postgres://user@standby:5432/postgres\" or standby_url_env = \"ENV_VAR\""
            }
            BackupFrom::Standby if t.databases.is_some() => {
                "sets backup_from = \"standby\" on a fleet (databases); base backups are of the whole server; hint: put backup_from on a [[postgres]] target without databases"
            }
            BackupFrom::Primary if given => {
                "sets a standby URL but backs up from the primary, so the URL is unused; hint: add backup_from = \"standby\" or remove standby_url"
            }
            _ => return Ok(()),
        };
        Err(usage(format!("{file}: [[postgres]] {name:?} {problem}")))
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
            _ if t.incremental && !t.wal_archiving => Err(usage(format!(
                "{at} sets incremental without wal_archiving; base backups (full and incremental) are restored with archived WAL; hint: add wal_archiving = true (README: WAL archiving)"
            ))),
            Some(_) if t.wal_archiving => Err(usage(format!(
                "{at} sets both databases and wal_archiving; WAL is archived for the whole server, not per database; hint: add a separate [[postgres]] target with wal_archiving = true for the server"
            ))),
            _ => Ok(()),
        }
    }
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
