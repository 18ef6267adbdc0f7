//! S3-compatible object storage (AWS S3, MinIO, R2, Garage, Ceph) through `object_store`.
//!
//! Objects larger than one part are streamed through a multipart upload with bounded
//! memory (about `part_size x (upload_concurrency + 1)`); a failed upload is aborted so
//! that neither an object nor orphan parts are left behind. Every error names the bucket
//! and the endpoint and says what to fix; none carries a secret.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, Checksum};
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    BackoffConfig, ClientOptions, HeaderMap, HeaderValue, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig, WriteMultipart,
};

use super::{ByteStream, ObjectMeta, Storage};
use crate::config::S3Config;
use crate::secret::Secret;

const MIB: usize = 1024 * 1024;
const DEFAULT_PART_MIB: usize = 8;
const MIN_PART_MIB: usize = 5;
const MAX_PART_MIB: usize = 5 * 1024;
const DEFAULT_CONCURRENCY: usize = 4;
const MAX_CONCURRENCY: usize = 64;
/// S3 refuses a multipart upload of more parts than this.
const MAX_PARTS: u64 = 10_000;
/// Retention mode requested when `object_lock_days` is set.
const LOCK_MODE: &str = "GOVERNANCE";
/// Written (and deleted) by the Object Lock probe of `capabilities_report`.
const LOCK_PROBE_KEY: &str = ".dr-object-lock-probe";

/// What error messages may name: never a secret (the secret is kept only to redact it).
#[derive(Clone)]
struct Target {
    bucket: String,
    /// `s3://bucket/prefix`
    location: String,
    endpoint: String,
    region: String,
    credentials: String,
    secret: Option<Secret>,
}

struct ObjectLock {
    days: u32,
    retain_until: String,
}

pub struct S3Storage {
    /// Reads, lists, deletes.
    store: Arc<AmazonS3>,
    /// Uploads: `store` plus the Object Lock headers when `object_lock_days` is set.
    writer: Arc<AmazonS3>,
    prefix: String,
    target: Target,
    part_size: usize,
    concurrency: usize,
    lock: Option<ObjectLock>,
}

impl S3Storage {
    pub fn new(bucket: String, prefix: String, config: S3Config) -> Result<Self> {
        let prefix = prefix.trim_matches('/').to_string();
        let part_mib = config.part_size_mib.unwrap_or(DEFAULT_PART_MIB);
        if !(MIN_PART_MIB..=MAX_PART_MIB).contains(&part_mib) {
            bail!(
                "[storage.s3] part_size_mib = {part_mib} is out of range; hint: S3 parts must be {MIN_PART_MIB} to {MAX_PART_MIB} MiB (default {DEFAULT_PART_MIB})"
            );
        }
        let concurrency = config.upload_concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
            bail!(
                "[storage.s3] upload_concurrency = {concurrency} is out of range; hint: use 1 to {MAX_CONCURRENCY} (default {DEFAULT_CONCURRENCY}); memory is about part_size_mib x (upload_concurrency + 1)"
            );
        }
        if config.object_lock_days == Some(0) {
            bail!("[storage.s3] object_lock_days = 0 locks nothing; hint: set at least 1, or remove the key");
        }

        let env_nonempty = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (builder, credentials, secret, region) =
            match (&config.access_key_id_env, &config.secret_access_key_env) {
                (Some(key_var), Some(secret_var)) => {
                    let key = read_credential_env(key_var, "access_key_id_env", "access key id")?;
                    let secret =
                        read_credential_env(secret_var, "secret_access_key_env", "secret access key")?;
                    let region = config.region.clone().filter(|r| !r.is_empty());
                    (
                        AmazonS3Builder::new()
                            .with_access_key_id(key)
                            .with_secret_access_key(secret.clone()),
                        format!("${key_var} and ${secret_var}"),
                        Some(Secret::new(secret)),
                        region.unwrap_or_else(|| "us-east-1".to_string()),
                    )
                }
                (None, None) => {
                    let region = config
                        .region
                        .clone()
                        .filter(|r| !r.is_empty())
                        .or_else(|| env_nonempty("AWS_REGION"))
                        .or_else(|| env_nonempty("AWS_DEFAULT_REGION"))
                        .unwrap_or_else(|| "us-east-1".to_string());
                    (
                        AmazonS3Builder::from_env(),
                        "$AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY (or the instance role)".to_string(),
                        env_nonempty("AWS_SECRET_ACCESS_KEY").map(Secret::new),
                        region,
                    )
                }
                _ => bail!(
                    "[storage.s3] sets only one of access_key_id_env and secret_access_key_env; hint: set both, or neither to use the standard AWS_ environment variables"
                ),
            };

        let endpoint_cfg = config
            .endpoint
            .as_deref()
            .map(|e| e.trim().trim_end_matches('/').to_string())
            .filter(|e| !e.is_empty());
        if let Some(e) = &endpoint_cfg {
            if !e.starts_with("https://") && !e.starts_with("http://") {
                bail!("[storage.s3] endpoint = {e:?} has no scheme; hint: write endpoint = \"https://host:port\"");
            }
            if e.starts_with("http://") && !config.allow_http {
                bail!(
                    "[storage.s3] endpoint {e} is plain http, which is refused by default; hint: set allow_http = true in [storage.s3] (loopback or a private network only) or use https"
                );
            }
        }
        let endpoint = endpoint_cfg
            .clone()
            .or_else(|| {
                if config.access_key_id_env.is_none() {
                    env_nonempty("AWS_ENDPOINT").or_else(|| env_nonempty("AWS_ENDPOINT_URL"))
                } else {
                    None
                }
            })
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));

        let target = Target {
            location: if prefix.is_empty() {
                format!("s3://{bucket}")
            } else {
                format!("s3://{bucket}/{prefix}")
            },
            bucket: bucket.clone(),
            endpoint,
            region: region.clone(),
            credentials,
            secret,
        };

        // allow_http lives inside the ClientOptions: with_client_options would otherwise
        // reset an earlier with_allow_http. No total timeout (a large download takes as
        // long as it takes); the read timeout also bounds the upload of one part.
        let options = ClientOptions::new()
            .with_allow_http(config.allow_http)
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout_disabled()
            .with_read_timeout(Duration::from_secs(60 + 10 * part_mib as u64));
        // A few retries, bounded so that an unreachable endpoint fails within ~15 s.
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(3),
                base: 3.0,
            },
            max_retries: 3,
            retry_timeout: Duration::from_secs(15),
        };
        let mut builder = builder
            .with_bucket_name(&bucket)
            .with_region(&region)
            .with_virtual_hosted_style_request(config.virtual_hosted_style)
            .with_retry(retry)
            // Single DeleteObject requests: the bulk API is missing from some stores.
            .with_disable_bulk_delete(true);
        if let Some(e) = &endpoint_cfg {
            builder = builder.with_endpoint(e);
        }

        let store = Arc::new(
            builder
                .clone()
                .with_client_options(options.clone())
                .build()
                .map_err(|e| explain(e, &target, None))?,
        );

        let lock = config.object_lock_days.map(|days| ObjectLock {
            days,
            retain_until: (chrono::Utc::now() + chrono::Duration::days(i64::from(days)))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        let writer = match &lock {
            None => store.clone(),
            Some(lock) => {
                // object_store has no per-request Object Lock option: send the headers on
                // every request of a store used for uploads only. AWS requires a checksum
                // on uploads with retention.
                let mut headers = HeaderMap::new();
                headers.insert(
                    "x-amz-object-lock-mode",
                    HeaderValue::from_static(LOCK_MODE),
                );
                headers.insert(
                    "x-amz-object-lock-retain-until-date",
                    HeaderValue::from_str(&lock.retain_until)?,
                );
                Arc::new(
                    builder
                        .with_client_options(options.with_default_headers(headers))
                        .with_checksum_algorithm(Checksum::SHA256)
                        .build()
                        .map_err(|e| explain(e, &target, None))?,
                )
            }
        };

        Ok(S3Storage {
            store,
            writer,
            prefix,
            target,
            part_size: part_mib * MIB,
            concurrency,
            lock,
        })
    }

    /// The full object name of `key`: `prefix/key`.
    fn full_key(&self, key: &str) -> String {
        join_prefix(&self.prefix, key)
    }

    fn path_of(&self, key: &str) -> Result<Path> {
        if key
            .split('/')
            .any(|part| part == ".." || part == "." || part.is_empty())
        {
            bail!("invalid object key {key:?}");
        }
        Path::parse(self.full_key(key)).map_err(|e| anyhow!("invalid object key {key:?}: {e}"))
    }

    fn explain(&self, err: object_store::Error, key: Option<&str>) -> anyhow::Error {
        explain(err, &self.target, key)
    }

    /// Streams everything after `first` into `upload`, keeping at most `concurrency`
    /// parts in flight. Returns the bytes handed over.
    async fn feed(
        &self,
        upload: &mut WriteMultipart,
        first: Vec<Bytes>,
        data: &mut ByteStream,
    ) -> Result<u64> {
        let limit = MAX_PARTS * self.part_size as u64;
        let mut written = 0u64;
        for chunk in first {
            written += chunk.len() as u64;
            upload.put(chunk);
        }
        loop {
            upload
                .wait_for_capacity(self.concurrency)
                .await
                .map_err(|e| self.explain(e, None))?;
            let Some(chunk) = data.next().await else {
                return Ok(written);
            };
            let chunk = chunk?;
            written += chunk.len() as u64;
            if written > limit {
                bail!(
                    "object is larger than {MAX_PARTS} parts of {} MiB, the most S3 accepts in one upload; hint: raise [storage.s3] part_size_mib",
                    self.part_size / MIB
                );
            }
            upload.put(chunk);
        }
    }

    async fn probe_object_lock(&self, lock: &ObjectLock) -> Result<String> {
        let t = &self.target;
        let path = self.path_of(LOCK_PROBE_KEY)?;
        let payload = PutPayload::from(Bytes::from_static(b"dr object lock probe\n"));
        if let Err(e) = self.writer.put(&path, payload).await {
            return Err(anyhow!(
                "Object Lock: the store refused an upload with {LOCK_MODE} retention ({}); hint: use a bucket created with Object Lock enabled, or remove object_lock_days from [storage.s3]",
                self.explain(e, Some(LOCK_PROBE_KEY))
            ));
        }
        let checked = self.read_back_retention(&path).await;
        // A locked version stays until its retention ends; on a versioned bucket this only
        // adds a delete marker, which is fine for a probe.
        let _ = self.store.delete(&path).await;
        match checked? {
            Some((mode, until)) => Ok(format!(
                "Object Lock in effect on bucket {} at {}: the store confirmed {mode} retention until {until} on a probe object; every upload asks for {} days ({LOCK_MODE})",
                t.bucket, t.endpoint, lock.days
            )),
            None => Err(anyhow!(
                "Object Lock is NOT in effect: bucket {} at {} accepted an upload with {LOCK_MODE} retention but reports no retention on it (Object Lock is not enabled on the bucket, or the store does not support it), so backups can be deleted; hint: use a bucket created with Object Lock enabled, or remove object_lock_days from [storage.s3]",
                t.bucket, t.endpoint
            )),
        }
    }

    /// Retention (mode, retain-until) the store reports for `path`, through a presigned
    /// HEAD: `object_store` does not expose these response headers.
    async fn read_back_retention(&self, path: &Path) -> Result<Option<(String, String)>> {
        let t = &self.target;
        let url = self
            .store
            .signed_url(reqwest::Method::HEAD, path, Duration::from_secs(300))
            .await
            .map_err(|e| self.explain(e, Some(LOCK_PROBE_KEY)))?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(30))
            .build()?;
        // The presigned URL is a short-lived credential: keep it out of messages.
        let response = client.head(url).send().await.map_err(|e| {
            anyhow!(
                "cannot read back the Object Lock probe from bucket {} at {}: {}; hint: check [storage.s3] endpoint and network",
                t.bucket,
                t.endpoint,
                e.without_url()
            )
        })?;
        if !response.status().is_success() {
            bail!(
                "cannot read back the Object Lock probe from bucket {} at {}: HTTP {}; hint: the credentials in {} need s3:GetObject and s3:GetObjectRetention",
                t.bucket,
                t.endpoint,
                response.status(),
                t.credentials
            );
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Ok(header("x-amz-object-lock-mode").zip(header("x-amz-object-lock-retain-until-date")))
    }
}

fn read_credential_env(var: &str, key: &str, what: &str) -> Result<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => bail!(
            "environment variable {var} (named by [storage.s3] {key}) is not set; hint: export {var}=<{what}>, or remove {key} to use the standard AWS_ environment variables"
        ),
    }
}

fn join_prefix(prefix: &str, key: &str) -> String {
    match (prefix.is_empty(), key.is_empty()) {
        (true, _) => key.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}/{key}"),
    }
}

/// `full` relative to `prefix`; None when it is not below it.
fn strip_prefix<'a>(prefix: &str, full: &'a str) -> Option<&'a str> {
    if prefix.is_empty() {
        return Some(full);
    }
    full.strip_prefix(prefix)?.strip_prefix('/')
}

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
struct ErrorText {
    /// The error and all its sources, for matching.
    all: String,
    /// The error's own message (which usually repeats its sources).
    top: String,
    /// The innermost source, e.g. "Connection refused (os error 111)".
    root: String,
    kind: Option<HttpErrorKind>,
}

fn error_text(err: &(dyn std::error::Error + 'static), secret: Option<&Secret>) -> ErrorText {
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
fn explain(err: object_store::Error, target: &Target, key: Option<&str>) -> anyhow::Error {
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
            "endpoint {endpoint} did not answer in time for bucket {bucket} ({detail}); hint: check [storage.s3] endpoint and network"
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

#[async_trait]
impl Storage for S3Storage {
    fn describe(&self) -> String {
        format!(
            "{} (endpoint {})",
            self.target.location, self.target.endpoint
        )
    }

    async fn put(&self, key: &str, mut data: ByteStream) -> Result<u64> {
        let path = self.path_of(key)?;
        // Read up to one part: a smaller object takes a single PUT.
        let mut first = Vec::new();
        let mut buffered = 0usize;
        while buffered < self.part_size {
            match data.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    buffered += chunk.len();
                    if !chunk.is_empty() {
                        first.push(chunk);
                    }
                }
                None => {
                    self.writer
                        .put(&path, first.into_iter().collect::<PutPayload>())
                        .await
                        .map_err(|e| self.explain(e, Some(key)))?;
                    return Ok(buffered as u64);
                }
            }
        }

        let upload = self
            .writer
            .put_multipart(&path)
            .await
            .map_err(|e| self.explain(e, Some(key)))?;
        let mut upload = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        match self.feed(&mut upload, first, &mut data).await {
            Ok(written) => {
                // On failure, finish() aborts the upload itself.
                upload
                    .finish()
                    .await
                    .map_err(|e| self.explain(e, Some(key)))?;
                Ok(written)
            }
            Err(err) => {
                // Let the parts in flight end first, so that none lands after the abort.
                let _ = upload.wait_for_capacity(0).await;
                if let Err(e) = upload.abort().await {
                    tracing::warn!(
                        "could not abort the multipart upload of {key}: {}; the bucket may keep orphan parts until a lifecycle rule removes them",
                        self.explain(e, Some(key))
                    );
                }
                Err(err)
            }
        }
    }

    async fn get(&self, key: &str) -> Result<ByteStream> {
        let path = self.path_of(key)?;
        let result = self
            .store
            .get(&path)
            .await
            .map_err(|e| self.explain(e, Some(key)))?;
        let target = self.target.clone();
        let key = key.to_string();
        Ok(Box::pin(result.into_stream().map_err(move |e| {
            std::io::Error::other(format!(
                "reading {key}: {}",
                explain(e, &target, Some(&key))
            ))
        })))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let path = self.path_of(key)?;
        match self.store.head(&path).await {
            Ok(meta) => Ok(Some(ObjectMeta {
                key: key.to_string(),
                size: meta.size,
                modified: meta.last_modified,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.explain(e, Some(key))),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let sub = prefix.trim_matches('/');
        let full = self.full_key(sub);
        let path = if full.is_empty() {
            None
        } else {
            Some(Path::parse(&full).map_err(|e| anyhow!("invalid list prefix {prefix:?}: {e}"))?)
        };
        let mut stream = self.store.list(path.as_ref());
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            let meta = item.map_err(|e| self.explain(e, None))?;
            if let Some(key) = strip_prefix(&self.prefix, meta.location.as_ref()) {
                out.push(ObjectMeta {
                    key: key.to_string(),
                    size: meta.size,
                    modified: meta.last_modified,
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path_of(key)?;
        match self.store.delete(&path).await {
            Ok(()) => Ok(()),
            Err(e @ object_store::Error::NotFound { .. }) => {
                if error_text(&e, self.target.secret.as_ref())
                    .all
                    .contains("NoSuchBucket")
                {
                    Err(self.explain(e, Some(key)))
                } else {
                    Ok(())
                }
            }
            Err(e) => Err(self.explain(e, Some(key))),
        }
    }

    async fn capabilities_report(&self) -> Option<Result<String>> {
        let lock = self.lock.as_ref()?;
        Some(self.probe_object_lock(lock).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{get_bytes, put_bytes};

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
    fn keys_are_prefixed_and_stripped() {
        assert_eq!(join_prefix("", "a/b"), "a/b");
        assert_eq!(join_prefix("p/q", "a/b"), "p/q/a/b");
        assert_eq!(join_prefix("p", ""), "p");
        assert_eq!(strip_prefix("p/q", "p/q/a/b"), Some("a/b"));
        assert_eq!(strip_prefix("p/q", "p/qa/b"), None);
        assert_eq!(strip_prefix("", "a/b"), Some("a/b"));
    }

    #[test]
    fn rejects_bad_config() {
        let cfg = |f: fn(&mut S3Config)| {
            let mut c = S3Config {
                endpoint: Some("http://127.0.0.1:9".into()),
                allow_http: true,
                ..Default::default()
            };
            f(&mut c);
            S3Storage::new("b".into(), "".into(), c)
                .err()
                .map(|e| e.to_string())
        };
        assert!(cfg(|c| c.part_size_mib = Some(4))
            .unwrap()
            .contains("part_size_mib"));
        assert!(cfg(|c| c.upload_concurrency = Some(0))
            .unwrap()
            .contains("upload_concurrency"));
        assert!(cfg(|c| c.allow_http = false)
            .unwrap()
            .contains("allow_http = true"));
        assert!(cfg(|c| c.access_key_id_env = Some("X".into()))
            .unwrap()
            .contains("both"));
        let missing = cfg(|c| {
            c.access_key_id_env = Some("DR_UNIT_SURELY_UNSET_KEY".into());
            c.secret_access_key_env = Some("DR_UNIT_SURELY_UNSET_SECRET".into());
        })
        .unwrap();
        assert!(
            missing.contains("DR_UNIT_SURELY_UNSET_KEY") && missing.contains("hint"),
            "{missing}"
        );
    }

    #[test]
    fn describe_names_bucket_prefix_endpoint() {
        let s = S3Storage::new(
            "bk".into(),
            "a/b".into(),
            S3Config {
                endpoint: Some("http://127.0.0.1:9/".into()),
                allow_http: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.describe(), "s3://bk/a/b (endpoint http://127.0.0.1:9)");
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

    // ---- against a real S3 server (s3s-fs checks signatures) ----

    const ACCESS: &str = "dr-unit-access";
    const SECRET: &str = "dr-unit-secret-Zq93";
    const BUCKET: &str = "dr-test";

    struct Server {
        child: std::process::Child,
        dir: tempfile::TempDir,
        endpoint: String,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn s3s_fs() -> std::path::PathBuf {
        let on_path = std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("s3s-fs"))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let home =
            std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo/bin/s3s-fs"));
        on_path.into_iter().chain(home).find(|p| p.is_file()).unwrap_or_else(|| {
            panic!("s3s-fs is not installed (needed by the S3 storage tests); install it with: cargo install s3s-fs@0.14.1 --features binary --locked")
        })
    }

    fn start_server() -> Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(BUCKET)).unwrap();
        let port = free_port();
        let child = std::process::Command::new(s3s_fs())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS, "--secret-key", SECRET])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "s3s-fs did not listen on port {port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Server {
            child,
            dir,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A storage on `endpoint`, credentials through uniquely named env variables.
    fn storage_at(
        endpoint: &str,
        bucket: &str,
        prefix: &str,
        secret: &str,
        f: impl FnOnce(&mut S3Config),
    ) -> S3Storage {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (kv, sv) = (
            format!("DR_UNIT_S3_KEY_{n}"),
            format!("DR_UNIT_S3_SECRET_{n}"),
        );
        std::env::set_var(&kv, ACCESS);
        std::env::set_var(&sv, secret);
        let mut config = S3Config {
            endpoint: Some(endpoint.to_string()),
            allow_http: true,
            access_key_id_env: Some(kv),
            secret_access_key_env: Some(sv),
            part_size_mib: Some(5),
            upload_concurrency: Some(2),
            ..Default::default()
        };
        f(&mut config);
        S3Storage::new(bucket.into(), prefix.into(), config).unwrap()
    }

    fn storage(server: &Server, prefix: &str) -> S3Storage {
        storage_at(&server.endpoint, BUCKET, prefix, SECRET, |_| {})
    }

    /// `total` bytes of a pattern in 1 MiB-ish chunks, failing after `fail_after` if set.
    fn pattern_stream(total: usize, fail_after: Option<usize>) -> (ByteStream, Vec<u8>) {
        let data: Vec<u8> = (0..total).map(|i| (i * 7 + i / 4093) as u8).collect();
        let mut items: Vec<std::io::Result<Bytes>> = Vec::new();
        let mut sent = 0;
        for chunk in data.chunks(1_000_003) {
            if fail_after.is_some_and(|f| sent >= f) {
                items.push(Err(std::io::Error::other("source failed midway")));
                break;
            }
            items.push(Ok(Bytes::copy_from_slice(chunk)));
            sent += chunk.len();
        }
        (Box::pin(futures::stream::iter(items)), data)
    }

    fn leftover_uploads(server: &Server) -> Vec<String> {
        std::fs::read_dir(server.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".upload"))
            .collect()
    }

    #[tokio::test]
    async fn s3s_roundtrip_multipart_head_list_delete() {
        let server = start_server();
        let s = storage(&server, "pre/fix");
        let (stream, data) = pattern_stream(20 * MIB + 12345, None);
        assert_eq!(
            s.put("pg/main/big.dump", stream).await.unwrap(),
            data.len() as u64
        );
        assert_eq!(get_bytes(&s, "pg/main/big.dump").await.unwrap(), data);
        // Stored under the prefix on the server.
        assert!(server
            .dir
            .path()
            .join(BUCKET)
            .join("pre/fix/pg/main/big.dump")
            .is_file());

        assert_eq!(
            put_bytes(&s, "pg/main/manifest.json", b"{}".to_vec())
                .await
                .unwrap(),
            2
        );
        assert_eq!(put_bytes(&s, "redis/empty", Vec::new()).await.unwrap(), 0);
        assert_eq!(
            get_bytes(&s, "redis/empty").await.unwrap(),
            Vec::<u8>::new()
        );

        let meta = s.head("pg/main/big.dump").await.unwrap().unwrap();
        assert_eq!(
            (meta.key.as_str(), meta.size),
            ("pg/main/big.dump", data.len() as u64)
        );
        assert!(s.head("pg/main/missing").await.unwrap().is_none());

        let keys = |v: Vec<ObjectMeta>| v.into_iter().map(|m| m.key).collect::<Vec<_>>();
        assert_eq!(
            keys(s.list("").await.unwrap()),
            ["pg/main/big.dump", "pg/main/manifest.json", "redis/empty"]
        );
        assert_eq!(
            keys(s.list("pg/").await.unwrap()),
            ["pg/main/big.dump", "pg/main/manifest.json"]
        );
        assert!(s.list("nothing").await.unwrap().is_empty());

        let err = match s.get("pg/main/missing").await {
            Ok(_) => panic!("got a missing object"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("pg/main/missing") && err.contains("not found"),
            "{err}"
        );

        s.delete("pg/main/big.dump").await.unwrap();
        s.delete("pg/main/big.dump").await.unwrap();
        assert_eq!(keys(s.list("pg").await.unwrap()), ["pg/main/manifest.json"]);
        assert!(leftover_uploads(&server).is_empty());
        assert!(s.capabilities_report().await.is_none());
        assert!(s.describe().contains(&server.endpoint));
    }

    #[tokio::test]
    async fn s3s_failed_stream_leaves_nothing() {
        let server = start_server();
        let s = storage(&server, "");
        // Fails after two parts went out.
        let (stream, _) = pattern_stream(30 * MIB, Some(12 * MIB));
        let err = s.put("pg/broken.dump", stream).await.unwrap_err();
        assert!(err.to_string().contains("source failed midway"), "{err}");
        assert!(s.list("").await.unwrap().is_empty());
        assert!(s.head("pg/broken.dump").await.unwrap().is_none());
        assert_eq!(leftover_uploads(&server), Vec::<String>::new());

        // Fails before one part is complete: single-PUT path, nothing sent.
        let (stream, _) = pattern_stream(3 * MIB, Some(MIB));
        assert!(s.put("pg/small.dump", stream).await.is_err());
        assert!(s.list("").await.unwrap().is_empty());
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

    #[tokio::test]
    async fn s3s_object_lock_is_reported_missing() {
        let server = start_server();
        let s = storage_at(&server.endpoint, BUCKET, "locked", SECRET, |c| {
            c.object_lock_days = Some(7)
        });
        // Uploads still work with the lock headers (s3s-fs ignores them).
        let (stream, data) = pattern_stream(11 * MIB, None);
        assert_eq!(s.put("big", stream).await.unwrap(), data.len() as u64);
        assert_eq!(get_bytes(&s, "big").await.unwrap(), data);
        let report = s
            .capabilities_report()
            .await
            .expect("a report when object_lock_days is set");
        let err = report.unwrap_err().to_string();
        assert!(
            err.contains("Object Lock is NOT in effect") && err.contains("dr-test"),
            "{err}"
        );
        // The probe is cleaned up.
        assert_eq!(s.list("").await.unwrap().len(), 1);
    }
}
