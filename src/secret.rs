//! Secrets never reach argv, logs, manifests, JSON or errors. This is the one place that
//! removes them: every URL that is shown passes through [`redact_url`] (which also hides
//! anything shaped like an age secret key, see [`redact_age_keys`]), URLs handed to
//! children through [`strip_password`], any text leaving `dr` through [`scrub`], and
//! passwords and private keys travel inside [`Secret`].

use std::fmt;

/// A string whose `Debug` and `Display` print `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Replaces the password of a `scheme://user:password@host/...` URL, any `password=`
/// query or keyword parameter, and any age secret key with `***`.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?'])
            .map(|i| rest_start + i)
            .unwrap_or(out.len());
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let pass_start = rest_start + colon + 1;
                let pass_end = rest_start + at;
                out.replace_range(pass_start..pass_end, "***");
            }
        }
    }
    redact_age_keys(&redact_password_params(&out))
}

/// The OS group the PostgreSQL server runs as: its `restore_command` (`dr wal-fetch`)
/// reads dr.toml and the identity file, so that group may read them.
pub const SERVER_GROUP: &str = "postgres";

/// Who besides the owner can read the secret file at `path`: `(mode, "every user of this
/// host")` when others can, `(mode, "group NAME")` when a group other than the
/// PostgreSQL server's can; `None` when nobody else can, or the file cannot be inspected.
pub fn readers_beyond_owner(path: &std::path::Path) -> Option<(u32, String)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let mode = meta.mode() & 0o777;
    if mode & 0o004 != 0 {
        return Some((mode, "every user of this host".into()));
    }
    if mode & 0o040 != 0 && !server_groups().contains(&meta.gid()) {
        let name = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(meta.gid()))
            .ok()
            .flatten()
            .map_or_else(|| meta.gid().to_string(), |g| g.name);
        return Some((mode, format!("group {name}")));
    }
    None
}

/// The group named `postgres` and the primary group of the user `postgres`.
fn server_groups() -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(Some(g)) = nix::unistd::Group::from_name(SERVER_GROUP) {
        out.push(g.gid.as_raw());
    }
    if let Ok(Some(u)) = nix::unistd::User::from_name(SERVER_GROUP) {
        out.push(u.gid.as_raw());
    }
    out
}

/// The prefixes of age private keys: native X25519 identities and plugin identities.
const AGE_SECRET_PREFIXES: [&str; 2] = ["AGE-SECRET-KEY-", "AGE-PLUGIN-"];

/// A key's bech32 body is much longer than this; shorter runs are placeholders such as
/// `AGE-SECRET-KEY-1...` in a hint, which stay readable.
const AGE_KEY_MIN_BODY: usize = 20;

/// Where age private keys are in `text` (byte ranges of prefix and body), in any letter
/// case: bech32 is case-insensitive, so a lower-cased key is still the key.
fn age_key_spans(text: &str) -> Vec<(usize, usize)> {
    let upper = text.to_ascii_uppercase();
    let mut spans = Vec::new();
    let mut pos = 0;
    while let Some((start, prefix)) = AGE_SECRET_PREFIXES
        .iter()
        .filter_map(|p| upper[pos..].find(p).map(|i| (pos + i, *p)))
        .min_by_key(|(i, _)| *i)
    {
        let body = start + prefix.len();
        let end = text[body..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .map(|i| body + i)
            .unwrap_or(text.len());
        if end - body >= AGE_KEY_MIN_BODY {
            spans.push((start, end));
        }
        pos = end.max(body);
    }
    spans
}

/// Whether `text` holds something shaped like an age private key.
pub fn has_age_secret_key(text: &str) -> bool {
    !age_key_spans(text).is_empty()
}

/// Replaces every age private key in `text` (its prefix and the bech32 run after it)
/// with `AGE-SECRET-KEY-***`: pasted into the wrong setting, a key must not be echoed.
pub fn redact_age_keys(text: &str) -> String {
    let spans = age_key_spans(text);
    if spans.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for (start, end) in spans {
        out.push_str(&text[pos..start]);
        out.push_str("AGE-SECRET-KEY-***");
        pos = end;
    }
    out.push_str(&text[pos..]);
    out
}

/// Removes the password from a PostgreSQL URL (userinfo and `password=` parameter), for
/// argv and manifests where even `***` has no place.
pub fn strip_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.scheme().starts_with("postgres") => {
            let _ = parsed.set_password(None);
            let pairs: Vec<(String, String)> = parsed
                .query_pairs()
                .filter(|(k, _)| k != "password")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if pairs.is_empty() {
                parsed.set_query(None);
            } else {
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        // Keyword/value strings: remove the password word.
        _ => url
            .split_whitespace()
            .filter(|w| !w.starts_with("password="))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Redacts URLs in `text` and replaces every known secret with `***`: the last line of
/// defence before a message leaves `dr`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = redact_url(text);
    for s in secrets.iter().filter(|s| s.len() >= 3) {
        out = out.replace(s.as_str(), "***");
    }
    out
}

fn redact_password_params(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(found) = lower[pos..].find("password=") {
        let value_start = pos + found + "password=".len();
        out.push_str(&text[pos..value_start]);
        let value_end = text[value_start..]
            .find(['&', ' ', ';'])
            .map(|i| value_start + i)
            .unwrap_or(text.len());
        out.push_str("***");
        pos = value_end;
    }
    out.push_str(&text[pos..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo_password() {
        assert_eq!(
            redact_url("postgres://backup:s3cr%40t@db:5432/shop"),
            "postgres://backup:***@db:5432/shop"
        );
    }

    #[test]
    fn keeps_url_without_password() {
        assert_eq!(
            redact_url("postgres://backup@db/shop?sslmode=require"),
            "postgres://backup@db/shop?sslmode=require"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }

    #[test]
    fn redacts_password_parameter() {
        assert_eq!(
            redact_url("postgres://u@h/db?password=hunter2&sslmode=disable"),
            "postgres://u@h/db?password=***&sslmode=disable"
        );
        assert_eq!(
            redact_url("host=h password=x user=u"),
            "host=h password=*** user=u"
        );
    }

    #[test]
    fn redacts_redis_password_only_url() {
        assert_eq!(
            redact_url("redis://:pw@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
    }

    #[test]
    fn strips_password_for_children() {
        assert_eq!(
            strip_password("postgres://u:pw@h:5432/db?password=x&sslmode=require"),
            "postgres://u@h:5432/db?sslmode=require"
        );
        assert_eq!(strip_password("host=h password=x user=u"), "host=h user=u");
    }

    #[test]
    fn scrub_removes_known_secrets() {
        assert_eq!(
            scrub("auth failed for hunter2!", &["hunter2".into()]),
            "auth failed for ***!"
        );
    }

    #[test]
    fn age_secret_keys_are_redacted_wherever_they_appear() {
        let key = "AGE-SECRET-KEY-1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQS3SSYQP";
        let text = format!("recipient \"{key}\" in x; and {} too", key.to_lowercase());
        let shown = redact_url(&text);
        assert!(
            !shown.contains("QYQSZ") && !shown.contains("qyqsz"),
            "{shown}"
        );
        assert_eq!(shown.matches("AGE-SECRET-KEY-***").count(), 2, "{shown}");
        assert!(shown.ends_with(" too"), "{shown}");
        assert_eq!(
            redact_age_keys("use AGE-PLUGIN-YUBIKEY-1QQQQQQQQQQQQQQQQQQQQQQ, not age1abc"),
            "use AGE-SECRET-KEY-***, not age1abc"
        );
        assert!(has_age_secret_key(key) && !has_age_secret_key("age1qqqq"));
        // A placeholder in a hint is no key.
        let hint = "export VAR with the AGE-SECRET-KEY-1... line";
        assert_eq!(redact_url(hint), hint);
        assert!(!has_age_secret_key(hint));
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
    }
}
