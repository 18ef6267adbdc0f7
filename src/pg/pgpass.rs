//! The password file, read the way libpq reads it, so that `dr`'s own connections find
//! the same password `psql` would: `$PGPASSFILE`, else `~/.pgpass`; lines
//! `hostname:port:database:username:password` where `*` matches anything and `\` escapes
//! `:` and `\`; the first matching line wins; a file that group or others can read is
//! ignored with a warning, as libpq does. No other `PG*` variable of the caller is read.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::secret::Secret;

/// What a connection is matched on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassKey<'a> {
    pub host: &'a str,
    pub port: u16,
    pub database: &'a str,
    pub user: &'a str,
}

/// The password file libpq would read: `$PGPASSFILE`, else `~/.pgpass`.
pub fn default_path() -> Option<PathBuf> {
    match std::env::var_os("PGPASSFILE") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => home_dir().map(|h| h.join(".pgpass")),
    }
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::Uid::effective())
                .ok()
                .flatten()
                .map(|u| u.dir)
        })
}

/// The password for `key` from the file at `path`, if the file exists, is private, and
/// has a matching line.
pub fn lookup(path: &Path, key: &PassKey<'_>) -> Option<Secret> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "password file {} has group or world access and is ignored (as libpq does); hint: chmod 0600 {}",
            path.display(),
            path.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let found = find(&text, key);
    if found.is_some() {
        tracing::debug!(
            "password for {}@{}:{}/{} from {}",
            key.user,
            key.host,
            key.port,
            key.database,
            path.display()
        );
    }
    found
}

/// The first line of a password file's text that matches `key`.
pub fn find(text: &str, key: &PassKey<'_>) -> Option<Secret> {
    // libpq matches a socket connection in the default directory as `localhost`.
    let host = match key.host {
        "" | "/var/run/postgresql" | "/run/postgresql" | "/tmp" => "localhost",
        h => h,
    };
    let port = key.port.to_string();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_fields(line);
        if fields.len() < 5 {
            continue;
        }
        let matches = |field: &str, value: &str| field == "*" || field == value;
        if matches(&fields[0], host)
            && matches(&fields[1], &port)
            && matches(&fields[2], key.database)
            && matches(&fields[3], key.user)
        {
            if fields[4].is_empty() {
                continue;
            }
            return Some(Secret::new(fields[4].clone()));
        }
    }
    None
}

/// Splits on unescaped `:`; `\x` stands for `x`. The fifth field ends at the next
/// unescaped `:`, as in libpq.
fn split_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    // `fields` starts with one entry and only grows.
                    #[allow(clippy::expect_used)]
                    fields.last_mut().expect("one field").push(next);
                }
            }
            ':' => fields.push(String::new()),
            // `fields` starts with one entry and only grows.
            #[allow(clippy::expect_used)]
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(host: &'a str, port: u16, database: &'a str, user: &'a str) -> PassKey<'a> {
        PassKey {
            host,
            port,
            database,
            user,
        }
    }

    #[test]
    fn first_matching_line_wins_and_stars_match_anything() {
        let text = "# comment\n\
                    db.internal:5432:shop:app:app-pw\n\
                    db.internal:*:*:admin:admin-pw\n\
                    *:*:*:admin:fallback\n";
        let pw = |k: PassKey<'_>| find(text, &k).map(|s| s.expose().to_string());
        assert_eq!(
            pw(key("db.internal", 5432, "shop", "app")).as_deref(),
            Some("app-pw")
        );
        assert_eq!(pw(key("db.internal", 5433, "shop", "app")), None);
        assert_eq!(pw(key("db.internal", 5432, "other", "app")), None);
        assert_eq!(
            pw(key("db.internal", 6000, "postgres", "admin")).as_deref(),
            Some("admin-pw")
        );
        assert_eq!(
            pw(key("elsewhere", 5432, "x", "admin")).as_deref(),
            Some("fallback")
        );
    }

    #[test]
    fn escapes_and_the_default_socket() {
        let text = "localhost:5432:*:u:pa\\:ss\\\\word:ignored\n";
        let got = find(text, &key("/var/run/postgresql", 5432, "db", "u")).unwrap();
        assert_eq!(got.expose(), "pa:ss\\word");
        assert!(find(text, &key("/srv/sockets", 5432, "db", "u")).is_none());
        let escaped_host = "h\\:x:5432:*:u:pw\n";
        assert_eq!(
            find(escaped_host, &key("h:x", 5432, "db", "u"))
                .unwrap()
                .expose(),
            "pw"
        );
    }

    #[test]
    fn short_lines_and_empty_passwords_are_skipped() {
        let text = "h:5432:db\nh:5432:db:u:\nh:5432:db:u:real\n";
        assert_eq!(
            find(text, &key("h", 5432, "db", "u")).unwrap().expose(),
            "real"
        );
    }

    #[test]
    fn a_readable_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(&path, "*:*:*:*:pw\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let k = key("h", 1, "d", "u");
        assert!(lookup(&path, &k).is_none());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(lookup(&path, &k).unwrap().expose(), "pw");
        assert!(lookup(&dir.path().join("missing"), &k).is_none());
    }
}
