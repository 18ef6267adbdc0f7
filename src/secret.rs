//! Secrets never reach argv, logs, manifests, JSON or errors. This is the one place that
//! removes them: every URL that is shown passes through [`redact_url`], URLs handed to
//! children through [`strip_password`], any text leaving `dr` through [`scrub`], and
//! passwords travel inside [`Secret`].

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

/// Replaces the password of a `scheme://user:password@host/...` URL, and any
/// `password=` query or keyword parameter, with `***`.
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
    redact_password_params(&out)
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
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
    }
}
