//! PostgreSQL access: connections from `dr` itself, and the connection details handed to
//! `pg_dump`/`pg_restore`/`psql` children (password in a 0600 passfile, never in argv).

pub mod fleet;
pub mod pgpass;
pub mod slots;
pub mod tls;
pub mod tools;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio_postgres::Client;

use crate::secret::{redact_url, strip_password, Secret};

/// How long connecting may take when the URL does not say (`connect_timeout`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A PostgreSQL connection URL split into what children may see and the password.
#[derive(Debug, Clone)]
pub struct ConnTarget {
    /// The URL without its password: safe for argv and messages.
    pub public_url: String,
    pub password: Option<Secret>,
    /// The password file the password came from, when the URL has none.
    pub password_file: Option<std::path::PathBuf>,
    pub database: String,
    pub user: String,
    pub config: tokio_postgres::Config,
    pub tls: tls::TlsSettings,
}

impl ConnTarget {
    pub fn parse(url: &str) -> Result<ConnTarget> {
        let (tokio_url, tls) = tls::split(url)
            .map_err(|e| anyhow::anyhow!("invalid PostgreSQL URL {}: {e}", redact_url(url)))?;
        let config = tokio_postgres::Config::from_str(&tokio_url).map_err(|e| {
            anyhow::anyhow!(
                "invalid PostgreSQL URL {}: {e}; hint: write it as postgres://user@host:5432/database",
                redact_url(url)
            )
        })?;
        let mut config = config;
        let mut password = config
            .get_password()
            .map(|p| Secret::new(String::from_utf8_lossy(p).into_owned()));
        let public_url = strip_password(url);
        // libpq's default when the URL names no user; children start without the
        // caller's PG* variables, so PGUSER is not consulted here either.
        let user = config
            .get_user()
            .map(str::to_string)
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "postgres".into());
        let database = config
            .get_dbname()
            .map(str::to_string)
            .unwrap_or_else(|| user.clone());
        if config.get_user().is_none() {
            config.user(&user);
        }
        let mut password_file = None;
        if password.is_none() {
            // As libpq: no password in the URL, so the password file may have one.
            if let Some(path) = pgpass::default_path() {
                let host = match config.get_hosts().first() {
                    Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
                    Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
                    None => String::new(),
                };
                let key = pgpass::PassKey {
                    host: &host,
                    port: config.get_ports().first().copied().unwrap_or(5432),
                    database: &database,
                    user: &user,
                };
                if let Some(found) = pgpass::lookup(&path, &key) {
                    config.password(found.expose());
                    password = Some(found);
                    password_file = Some(path);
                }
            }
        }
        Ok(ConnTarget {
            public_url,
            password,
            password_file,
            database,
            user,
            config,
            tls,
        })
    }

    /// The same server, another database (drills restore into a scratch database).
    pub fn with_database(&self, database: &str) -> Result<ConnTarget> {
        let mut url =
            url::Url::parse(&self.public_url).context("cannot rewrite the database of this URL")?;
        url.set_path(&format!("/{database}"));
        let mut target = ConnTarget::parse(url.as_str())?;
        // A password written in the URL holds for every database of the server; one from
        // the password file may be per database, and is looked up again unless none is found.
        let url_password = self.password.is_some() && self.password_file.is_none();
        if url_password || target.password.is_none() {
            target.password = self.password.clone();
            target.password_file = self.password_file.clone();
            if let Some(p) = &self.password {
                target.config.password(p.expose());
            }
        }
        Ok(target)
    }

    /// Connects to the server's maintenance database with the same role, as `createdb`
    /// does: `postgres`, else `template1`. That is where databases are created and roles
    /// applied while the destination database does not exist.
    pub async fn connect_maintenance(&self) -> Result<(ConnTarget, Client)> {
        let postgres = self.with_database("postgres")?;
        match postgres.connect().await {
            Err(e) if is_missing_database(&e) => {
                let template1 = self.with_database("template1")?;
                let client = template1.connect().await?;
                Ok((template1, client))
            }
            other => other.map(|client| (postgres, client)),
        }
    }

    /// `host:port` of the server, for messages.
    pub fn server(&self) -> String {
        let host = self.config.get_hosts().first().map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        });
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{}:{port}", host.unwrap_or_else(|| "localhost".into()))
    }

    /// How long connecting may take, TLS and authentication included: the URL's
    /// `connect_timeout` (seconds, as libpq reads it), else [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn connect_timeout(&self) -> Duration {
        self.config
            .get_connect_timeout()
            .copied()
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
    }

    /// Connects within [`ConnTarget::connect_timeout`]: a server that accepts the TCP
    /// connection and never answers is an error, not a hang. The connection task runs in
    /// the background.
    pub async fn connect(&self) -> Result<Client> {
        let mut config = self.config.clone();
        config.application_name("dr");
        let limit = self.connect_timeout();
        config.connect_timeout(limit);
        let connector =
            tokio_postgres_rustls::MakeRustlsConnect::new(tls::client_config(&self.tls)?);
        let connected = tokio::time::timeout(limit, config.connect(connector))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "cannot connect to {}: no answer within {} (connect_timeout); hint: the server accepted the connection but did not answer: check its load and network, or raise it with ?connect_timeout=SECONDS in the URL",
                    self.public_url,
                    crate::units::duration(limit)
                )
            })?;
        let (client, connection) = connected.map_err(|e| {
            if e.code() == Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME) {
                return anyhow::Error::new(MissingDatabase {
                    database: self.database.clone(),
                    server: self.server(),
                });
            }
            anyhow::anyhow!(
                "cannot connect to {}: {}; {}",
                self.public_url,
                describe_pg_error(&e),
                self.connect_hint(&e)
            )
        })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("postgres connection closed: {e}");
            }
        });
        Ok(client)
    }

    fn connect_hint(&self, e: &tokio_postgres::Error) -> String {
        if self.password.is_none() && describe_pg_error(e).contains("password missing") {
            return format!(
                "hint: no password for role {}: give it in the URL's environment variable (url_env, restore_url_env, --into-env) or in the password file ({})",
                self.user,
                pgpass::default_path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "~/.pgpass".into())
            );
        }
        let host = self.config.get_hosts().first().map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        });
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "hint: check that the server runs and accepts connections (pg_isready -h {} -p {port}), that the user and password are right, and the sslmode the server requires",
            host.unwrap_or_else(|| "localhost".into())
        )
    }

    /// Environment for a child process: a private 0600 passfile when there is a password,
    /// and libpq's connect timeout, so a child cannot hang on a silent server either.
    pub fn child_env(&self) -> Result<ChildAuth> {
        let mut auth = ChildAuth::new(self.password.as_ref())?;
        auth.env.push((
            "PGCONNECT_TIMEOUT".into(),
            self.connect_timeout().as_secs().max(2).to_string(),
        ));
        Ok(auth)
    }
}

/// The destination database does not exist on a server that answers: it was dropped, or
/// never created. Callers that can create it (`restore --create`) look for this error.
#[derive(Debug)]
pub struct MissingDatabase {
    pub database: String,
    pub server: String,
}

impl std::fmt::Display for MissingDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "database {} does not exist on {}; hint: if it was dropped, `dr restore --create` brings it back (see `dr runbook show database-failure`)",
            self.database, self.server
        )
    }
}

impl std::error::Error for MissingDatabase {}

/// Whether an error chain says the database does not exist.
pub fn is_missing_database(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|c| c.downcast_ref::<MissingDatabase>().is_some())
}

/// How a child authenticates: a private 0600 passfile named by `PGPASSFILE`, kept while
/// the child runs and removed on drop. Children start from a clean environment
/// ([`crate::process`]), so this is the only libpq setting they receive besides their URL.
pub struct ChildAuth {
    _dir: Option<tempfile::TempDir>,
    /// Dropped after `_dir`: the record goes once the passfile is gone.
    _registered: Option<crate::leftovers::Registered>,
    env: Vec<(String, String)>,
}

impl ChildAuth {
    /// The variables to give the child.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    fn new(password: Option<&Secret>) -> Result<ChildAuth> {
        let Some(password) = password else {
            return Ok(ChildAuth {
                _dir: None,
                _registered: None,
                env: vec![],
            });
        };
        let dir = tempfile::Builder::new()
            .prefix("dr-auth-")
            .tempdir()
            .context("cannot create a private directory for the passfile")?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        let registered = crate::leftovers::register(crate::leftovers::Resource::Passfile {
            dir: dir.path().to_path_buf(),
        });
        let path = dir.path().join("pgpass");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        writeln!(file, "*:*:*:*:{}", escape_passfile(password.expose()))?;
        Ok(ChildAuth {
            env: vec![("PGPASSFILE".into(), path.display().to_string())],
            _dir: Some(dir),
            _registered: Some(registered),
        })
    }
}

fn escape_passfile(value: &str) -> String {
    value.replace('\\', "\\\\").replace(':', "\\:")
}

/// The server's words, without the noise tokio-postgres adds.
pub fn describe_pg_error(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = db.message().to_string();
        if let Some(hint) = db.hint() {
            s.push_str(&format!(" (server hint: {hint})"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    s
}

/// Quotes an identifier for SQL (`"Mixed Case"."t"`).
/// The URL of a server reached on a private Unix socket (a sandbox, a recovering copy):
/// user, database and socket directory percent-encoded, no password (local trust).
pub fn socket_url(user: &str, database: &str, socket_dir: &std::path::Path, port: u16) -> String {
    let escape = |text: &str| -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!(
        "postgresql://{}@/{}?host={}&port={port}",
        escape(user),
        escape(database),
        escape(&socket_dir.display().to_string())
    )
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Server major version (`SHOW server_version_num` 150018 → 15).
pub async fn server_version(client: &Client) -> Result<(u32, String)> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int, current_setting('server_version')",
            &[],
        )
        .await
        .context("cannot read the server version")?;
    let num: i32 = row.get(0);
    let text: String = row.get(1);
    Ok(((num / 10000) as u32, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_parts() {
        let t = ConnTarget::parse("postgres://backup:pw@127.0.0.1:5433/shop").unwrap();
        assert_eq!(t.database, "shop");
        assert_eq!(t.user, "backup");
        assert_eq!(t.password.unwrap().expose(), "pw");
        assert!(!t.public_url.contains("pw"));
    }

    #[test]
    fn passfile_escapes_separators() {
        assert_eq!(escape_passfile(r"a:b\c"), r"a\:b\\c");
    }

    #[test]
    fn scratch_database_keeps_password() {
        let t = ConnTarget::parse("postgres://u:pw@h:1/shop").unwrap();
        let d = t.with_database("dr_drill_1").unwrap();
        assert_eq!(d.database, "dr_drill_1");
        assert_eq!(d.password.unwrap().expose(), "pw");
        assert_eq!(d.public_url, "postgres://u@h:1/dr_drill_1");
    }

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("Mixed \"Case\""), "\"Mixed \"\"Case\"\"\"");
    }
}
