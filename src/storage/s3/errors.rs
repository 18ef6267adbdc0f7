//! Turns `object_store` errors into one line that names the bucket and the endpoint, says
//! what is wrong (missing bucket, access denied, wrong region, unreachable, ...) and how to
//! fix it, with any secret redacted.

use anyhow::anyhow;
use object_store::client::{HttpError, HttpErrorKind};

use super::Target;
use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    NoSuchBucket,
    NoSuchKey,
    AccessDenied,
    WrongRegion,
    Unreachable,
    TimedOut,
    HttpRefused,
    NoCredentials,
    Other,
}

/// What went wrong, from the error variant, its HTTP error kind and its text.
fn classify(err: &object_store::Error, text: &str, kind: Option<HttpErrorKind>) -> Problem {
    use object_store::Error as E;
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    if has(&["NoSuchBucket"]) {
        Problem::NoSuchBucket
    } else if has(&[
        "PermanentRedirect",
        "AuthorizationHeaderMalformed",
        "IncorrectEndpoint",
        "incorrectly configured region",
        "301 Moved Permanently",
    ]) {
        Problem::WrongRegion
    } else if matches!(err, E::PermissionDenied { .. } | E::Unauthenticated { .. })
        || has(&[
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
            "403 Forbidden",
        ])
    {
        Problem::AccessDenied
    } else if kind == Some(HttpErrorKind::Connect)
        || has(&[
            "error trying to connect",
            "Connection refused",
            "dns error",
            "tcp connect error",
        ])
    {
        Problem::Unreachable
    } else if kind == Some(HttpErrorKind::Timeout) || has(&["timed out", "TimedOut"]) {
        Problem::TimedOut
    } else if has(&["BadScheme", "URL scheme is not allowed"]) {
        Problem::HttpRefused
    } else if matches!(err, E::NotFound { .. }) {
        Problem::NoSuchKey
    } else if has(&["credential", "Credential", "instance metadata"]) {
        Problem::NoCredentials
    } else {
        Problem::Other
    }
}

/// An error flattened for matching and for messages: one line each, secret redacted.
pub(super) struct ErrorText {
    /// The error and all its sources, for matching.
    pub(super) all: String,
    /// The error's own message (which usually repeats its sources).
    top: String,
    /// The innermost source, e.g. "Connection refused (os error 111)".
    root: String,
    kind: Option<HttpErrorKind>,
}

pub(super) fn error_text(
    err: &(dyn std::error::Error + 'static),
    secret: Option<&Secret>,
) -> ErrorText {
    let clean = |text: String| {
        let mut text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Some(s) = secret.map(Secret::expose).filter(|s| s.len() >= 4) {
            text = text.replace(s, "***");
        }
        text
    };
    let mut parts = Vec::new();
    let mut kind = None;
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(h) = e.downcast_ref::<HttpError>() {
            kind.get_or_insert(h.kind());
        }
        parts.push(e.to_string());
        current = e.source();
    }
    ErrorText {
        all: clean(parts.join(": ")),
        top: clean(parts.first().cloned().unwrap_or_default()),
        root: clean(parts.last().cloned().unwrap_or_default()),
        kind,
    }
}

/// `Code: Message` of an S3 XML error body, when the text carries one.
fn s3_code(text: &str) -> Option<String> {
    let tag = |name: &str| {
        let start = text.find(&format!("<{name}>"))? + name.len() + 2;
        let end = start + text[start..].find(&format!("</{name}>"))?;
        Some(text[start..end].trim().to_string())
    };
    let code = tag("Code")?;
    Some(match tag("Message").filter(|m| !m.is_empty()) {
        Some(message) => format!("{code}: {message}"),
        None => code,
    })
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}...")
}

/// Turns an `object_store` error into one line naming the bucket and the endpoint, with
/// a hint; never the secret.
pub(super) fn explain(
    err: object_store::Error,
    target: &Target,
    key: Option<&str>,
) -> anyhow::Error {
    let text = error_text(&err, target.secret.as_ref());
    let problem = classify(&err, &text.all, text.kind);
    let detail = match problem {
        Problem::Unreachable | Problem::TimedOut => shorten(&text.root, 200),
        _ => s3_code(&text.all).unwrap_or_else(|| shorten(&text.top, 400)),
    };
    let Target {
        bucket,
        endpoint,
        region,
        credentials,
        location,
        ..
    } = target;
    let message = match problem {
        Problem::NoSuchBucket => format!(
            "bucket {bucket} does not exist at endpoint {endpoint}; hint: create it or fix storage.url"
        ),
        Problem::NoSuchKey => match key {
            Some(key) => format!("object {key} not found in {location} at endpoint {endpoint}"),
            None => format!("not found in {location} at endpoint {endpoint} ({detail})"),
        },
        Problem::AccessDenied => format!(
            "access denied to bucket {bucket} at {endpoint} ({detail}); hint: check the credentials in {credentials}, and that they may read and write this bucket"
        ),
        Problem::WrongRegion => format!(
            "bucket {bucket} at {endpoint} is not in region {region} ({detail}); hint: set [storage.s3] region to the bucket's region"
        ),
        Problem::Unreachable => format!(
            "cannot reach endpoint {endpoint} for bucket {bucket} ({detail}); hint: check [storage.s3] endpoint and network"
        ),
        Problem::TimedOut => format!(
            "endpoint {endpoint} did not answer in time for bucket {bucket} ({detail}); hint: check [storage.s3] endpoint and network, or raise timeout in [storage.s3]"
        ),
        Problem::HttpRefused => format!(
            "endpoint {endpoint} is plain http, which is refused; hint: set allow_http = true in [storage.s3] (loopback or a private network only) or use https"
        ),
        Problem::NoCredentials => format!(
            "no usable credentials for bucket {bucket} at {endpoint} ({detail}); hint: set {credentials}, or access_key_id_env and secret_access_key_env in [storage.s3]"
        ),
        Problem::Other => format!("S3 request to bucket {bucket} at {endpoint} failed: {detail}"),
    };
    anyhow!(message)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::storage::put_bytes;
    use crate::storage::s3::testing::*;
    use crate::storage::Storage;

    fn target() -> Target {
        Target {
            bucket: "backups".into(),
            location: "s3://backups/prod".into(),
            endpoint: "https://s3.example.net".into(),
            region: "us-east-1".into(),
            credentials: "$MY_KEY and $MY_SECRET".into(),
            secret: Some(Secret::new("sUp3rS3cr3t")),
        }
    }

    fn generic(text: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: text.to_string().into(),
        }
    }

    #[test]
    fn explains_errors() {
        let t = target();
        let msg = |e: object_store::Error| explain(e, &t, Some("k/1")).to_string();

        let m = msg(generic("Server returned non-2xx status code: 404 Not Found: <Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>"));
        assert!(
            m.contains("bucket backups does not exist at endpoint https://s3.example.net"),
            "{m}"
        );
        assert!(m.contains("hint: create it or fix storage.url"), "{m}");

        let m = msg(object_store::Error::PermissionDenied {
            path: "k".into(),
            source: "403 Forbidden: <Code>SignatureDoesNotMatch</Code> sUp3rS3cr3t".into(),
        });
        assert!(
            m.contains("access denied to bucket backups at https://s3.example.net"),
            "{m}"
        );
        assert!(m.contains("$MY_KEY"), "{m}");
        assert!(!m.contains("sUp3rS3cr3t"), "{m}");

        let m = msg(generic("<Code>InvalidAccessKeyId</Code>"));
        assert!(m.contains("access denied"), "{m}");

        let m = msg(generic("<Error><Code>AuthorizationHeaderMalformed</Code><Message>the region 'us-east-1' is wrong; expecting 'eu-west-1'</Message></Error>"));
        assert!(
            m.contains("not in region us-east-1") && m.contains("eu-west-1"),
            "{m}"
        );
        let m = msg(generic("Received redirect without LOCATION, this normally indicates an incorrectly configured region"));
        assert!(m.contains("region"), "{m}");

        let m = msg(generic("HTTP error: error sending request: tcp connect error: Connection refused (os error 111)"));
        assert!(
            m.contains("cannot reach endpoint https://s3.example.net"),
            "{m}"
        );

        let m = msg(object_store::Error::NotFound {
            path: "x".into(),
            source: "404".into(),
        });
        assert!(
            m.contains("object k/1 not found in s3://backups/prod"),
            "{m}"
        );

        let m = msg(generic("something odd\n  happened sUp3rS3cr3t"));
        assert!(
            m.contains("bucket backups") && m.contains("something odd happened"),
            "{m}"
        );
        assert!(!m.contains("sUp3rS3cr3t") && !m.contains('\n'), "{m}");
    }

    #[tokio::test]
    async fn s3s_wrong_secret_is_access_denied() {
        let server = start_server();
        let s = storage_at(&server.endpoint, BUCKET, "p", "wrong-secret-Xy77", |_| {});
        let err = put_bytes(&s, "k", b"x".to_vec())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("access denied to bucket dr-test"), "{err}");
        assert!(
            err.contains(&server.endpoint) && err.contains("DR_UNIT_S3_SECRET_"),
            "{err}"
        );
        assert!(
            !err.contains("wrong-secret-Xy77") && !err.contains(SECRET),
            "{err}"
        );
        let err = format!("{:#}", s.list("").await.unwrap_err());
        assert!(
            err.contains("access denied") && !err.contains("wrong-secret-Xy77"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn s3s_missing_bucket_is_named() {
        let server = start_server();
        let s = storage_at(&server.endpoint, "no-such-bucket", "", SECRET, |_| {});
        // s3s-fs creates a missing bucket on PUT and answers NoSuchKey to GET, unlike real
        // stores: test LIST and DELETE.
        let expected = format!(
            "bucket no-such-bucket does not exist at endpoint {}",
            server.endpoint
        );
        let err = s.list("").await.unwrap_err().to_string();
        assert!(
            err.contains(&expected) && err.contains("hint: create it or fix storage.url"),
            "{err}"
        );
        let err = s.delete("k").await.unwrap_err().to_string();
        assert!(err.contains(&expected), "{err}");
    }

    #[tokio::test]
    async fn s3s_unreachable_endpoint_is_named() {
        let endpoint = format!("http://127.0.0.1:{}", free_port());
        let s = storage_at(&endpoint, BUCKET, "", SECRET, |_| {});
        let started = std::time::Instant::now();
        let err = put_bytes(&s, "k", b"x".to_vec())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("cannot reach endpoint {endpoint}")),
            "{err}"
        );
        assert!(err.contains("hint: check [storage.s3] endpoint"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }
}
