//! `dr.toml`: the schema, the lookup order (`--config`, `$DR_CONFIG`, `./dr.toml`) and
//! the resolution of URLs given inline or through `url_env`.
//!
//! Every table denies unknown keys so that a typo is an error (exit 2), not a silently
//! ignored setting that is discovered during an incident.
//!
//! One file per section of `dr.toml`; this one holds [`Config`] itself and its loading.
//! Every type keeps its path `crate::config::Name` through the re-exports below.

mod backup;
mod connections;
mod encryption;
pub mod evidence;
mod notify;
mod objectives;
mod people;
mod retention;
mod selection;
mod storage;
mod targets;
mod validation;
mod verify;
mod wal;

pub use backup::{BackupConfig, Compression, DEFAULT_REHASH_AFTER};
pub use connections::ConnectionsConfig;
pub use encryption::EncryptionConfig;
pub use notify::{
    NotifyEvent, NotifyOn, NotifySink, SinkKind, DEFAULT_NOTIFY_RETRIES, DEFAULT_NOTIFY_TIMEOUT,
    PAGERDUTY_EVENTS_URL,
};
pub use objectives::{Objectives, DEFAULT_DRILL_EVERY};
pub use people::{Contact, RunbooksConfig, Vendor};
pub use retention::{Keeps, KindKeeps, RetentionConfig, RetentionKind};
pub use storage::{S3Config, StorageConfig, StorageUrl};
pub use targets::{
    glob_matches, is_glob, resolve_url, storage_name, target_from_storage, BackupFrom,
    BackupTarget, DatabaseSelection, PostgresTarget, RedisBackupMethod, RedisTarget,
    MAX_TARGET_NAME, MEMBER_SEPARATOR,
};
pub use verify::{Expectation, HttpCheck, SqlAssertion, VerifyConfig};
pub use wal::WalConfig;

use targets::urlencoding_decode;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Deserializer};

use crate::error::usage;
use crate::secret::redact_url;

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
    /// How fast WAL is pushed and fetched (`[wal]`).
    #[serde(default)]
    pub wal: WalConfig,
    /// Where this configuration was read from.
    #[serde(skip)]
    pub path: PathBuf,
    /// Targets with `databases = ...` whose server could not list its databases, as
    /// (target, error): their databases are unknown, and commands report them as failed.
    #[serde(skip)]
    pub discovery_failures: Vec<(String, String)>,
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

    /// Whether the file carries a password inline (in a URL or a password parameter).
    pub fn has_inline_password(&self) -> bool {
        self.postgres
            .iter()
            .flat_map(|t| {
                [
                    t.url.as_deref(),
                    t.restore_url.as_deref(),
                    t.standby_url.as_deref(),
                ]
            })
            .flatten()
            .chain(self.redis.iter().filter_map(|t| t.url.as_deref()))
            .any(|u| redact_url(u) != u)
    }

    /// The `archive_command` that archives into this configuration's storage, with the
    /// configuration's absolute path: what hints and runbooks tell an operator to set.
    pub fn archive_command(&self) -> String {
        format!("dr --config {} wal-push %p", self.absolute_path().display())
    }

    /// The `restore_command` that reads this configuration's WAL archive.
    pub fn restore_command(&self) -> String {
        format!(
            "dr --config {} wal-fetch %f %p",
            self.absolute_path().display()
        )
    }

    /// The file's absolute path: PostgreSQL runs these commands in its data directory.
    pub fn absolute_path(&self) -> PathBuf {
        std::fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone())
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
            .chain(
                self.postgres
                    .iter()
                    .filter_map(|t| t.resolve_standby_url().ok().flatten()),
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
    fn a_standby_needs_its_url_and_its_url_needs_backup_from() {
        let with = |keys: &str| {
            MINIMAL.replace(
                "url = \"postgres://backup@db.internal:5432/shop\"",
                &format!("url = \"postgres://backup@db.internal:5432/shop\"\n{keys}"),
            )
        };
        let c = parse(&with(
            "backup_from = \"standby\"\nstandby_url = \"postgres://backup:pw@db2.internal:5432/shop\"",
        ))
        .unwrap();
        assert_eq!(
            c.postgres[0].resolve_standby_url().unwrap().as_deref(),
            Some("postgres://backup:pw@db2.internal:5432/shop")
        );
        assert!(c.has_inline_password());
        assert!(c.secrets().iter().any(|s| s.contains("pw")));
        for (keys, needle) in [
            ("backup_from = \"standby\"", "without the standby's URL"),
            ("standby_url = \"postgres://b@s/x\"", "the URL is unused"),
            (
                "backup_from = \"standby\"\nstandby_url = \"postgres://b@s/x\"\nstandby_url_env = \"X\"",
                "both standby_url and standby_url_env",
            ),
            ("backup_from = \"replica\"", "backup_from"),
        ] {
            let err = parse(&with(keys)).unwrap_err();
            assert!(err.to_string().contains(needle), "{keys}: {err}");
            assert_eq!(crate::error::exit_code(&err), 2, "{keys}");
        }
        let c = parse(&with(
            "backup_from = \"standby\"\nstandby_url_env = \"DR_TEST_SURELY_UNSET_STANDBY\"",
        ))
        .unwrap();
        let err = c.postgres[0].resolve_standby_url().unwrap_err();
        assert!(err.to_string().contains("(its standby_url_env)"), "{err}");
        assert_eq!(
            parse(MINIMAL).unwrap().postgres[0]
                .resolve_standby_url()
                .unwrap(),
            None
        );
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
