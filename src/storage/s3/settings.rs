//! Builds the S3 clients from `[storage.s3]` and the environment: part size and upload
//! concurrency, credentials (named variables or the standard AWS_ ones), region, endpoint,
//! timeouts and retries.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use object_store::aws::{AmazonS3Builder, Checksum};
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use super::errors::explain;
use super::object_lock::ObjectLock;
use super::{S3Storage, Target, MIB};
use crate::config::S3Config;
use crate::secret::Secret;

/// How long one request without object data may take, retries included, when
/// `[storage.s3] timeout` is not set.
pub(super) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What an upload adds to `timeout` per MiB of one part: the store answers a part only
/// once it has all of it, so a slow link needs this long per MiB.
pub(super) const UPLOAD_SECS_PER_MIB: u64 = 10;

impl S3Storage {
    /// Builds the clients from a `[storage.s3]` table that passed the range checks of
    /// config loading (part size, concurrency, Object Lock days, endpoint scheme and
    /// allow_http, both or neither credential variable); what only the environment can
    /// tell is checked here.
    pub fn new(bucket: String, prefix: String, config: S3Config) -> Result<Self> {
        let prefix = prefix.trim_matches('/').to_string();
        let part_mib = config.part_size_mib.unwrap_or(S3Config::DEFAULT_PART_MIB);
        let concurrency = config
            .upload_concurrency
            .unwrap_or(S3Config::DEFAULT_CONCURRENCY);

        let env_nonempty = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (builder, credentials, secret, region) =
            match (&config.access_key_id_env, &config.secret_access_key_env) {
                (Some(key_var), Some(secret_var)) => {
                    let key = read_credential_env(key_var, "access_key_id_env", "access key id")?;
                    let secret = read_credential_env(
                        secret_var,
                        "secret_access_key_env",
                        "secret access key",
                    )?;
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
                // Config loading refuses one variable without the other.
                _ => {
                    let region = config
                        .region
                        .clone()
                        .filter(|r| !r.is_empty())
                        .or_else(|| env_nonempty("AWS_REGION"))
                        .or_else(|| env_nonempty("AWS_DEFAULT_REGION"))
                        .unwrap_or_else(|| "us-east-1".to_string());
                    (
                        AmazonS3Builder::from_env(),
                        "$AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY (or the instance role)"
                            .to_string(),
                        env_nonempty("AWS_SECRET_ACCESS_KEY").map(Secret::new),
                        region,
                    )
                }
            };

        let endpoint_cfg = config
            .endpoint
            .as_deref()
            .map(|e| e.trim().trim_end_matches('/').to_string())
            .filter(|e| !e.is_empty());
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
        // long as it takes); the read timeout bounds a silence while data flows, and the
        // upload of one part. Requests without data are bounded by `request_timeout`.
        let request_timeout = config.timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        let options = ClientOptions::new()
            .with_allow_http(config.allow_http)
            .with_connect_timeout(Duration::from_secs(3).min(request_timeout))
            .with_timeout_disabled()
            .with_read_timeout(
                request_timeout + Duration::from_secs(UPLOAD_SECS_PER_MIB * part_mib as u64),
            );
        // A few retries, none started once `timeout` has passed since the first attempt.
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(3),
                base: 3.0,
            },
            max_retries: 3,
            retry_timeout: request_timeout,
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

        let lock = config.object_lock_days.map(ObjectLock::new);
        let writer = match &lock {
            None => store.clone(),
            // object_store has no per-request Object Lock option: the headers go on every
            // request of a store used for uploads only. AWS requires a checksum on uploads
            // with retention.
            Some(lock) => Arc::new(
                builder
                    .with_client_options(options.with_default_headers(lock.headers()?))
                    .with_checksum_algorithm(Checksum::SHA256)
                    .build()
                    .map_err(|e| explain(e, &target, None))?,
            ),
        };

        Ok(S3Storage {
            store,
            writer,
            prefix,
            target,
            part_size: part_mib * MIB,
            concurrency,
            lock,
            request_timeout,
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Storage;

    /// What `new` trusts: config loading refuses each setting it cannot use.
    #[test]
    fn config_loading_refuses_what_the_clients_cannot_use() {
        let load = |settings: &str| {
            let text = format!(
                "[storage]\nurl = \"s3://b/p\"\n\n[storage.s3]\nendpoint = \"http://127.0.0.1:9\"\n{settings}\n"
            );
            crate::config::Config::parse(&text, std::path::Path::new("dr.toml"))
        };
        assert!(load("allow_http = true").is_ok());
        for (settings, expected) in [
            (
                "allow_http = true\npart_size_mib = 4",
                "key storage.s3.part_size_mib",
            ),
            (
                "allow_http = true\nupload_concurrency = 0",
                "key storage.s3.upload_concurrency",
            ),
            (
                "allow_http = true\nobject_lock_days = 0",
                "key storage.s3.object_lock_days",
            ),
            (
                "allow_http = true\naccess_key_id_env = \"X\"",
                "key storage.s3.access_key_id_env",
            ),
            ("allow_http = false", "allow_http = true"),
        ] {
            match load(settings) {
                Ok(_) => panic!("{settings:?} was accepted"),
                Err(e) => assert!(e.to_string().contains(expected), "{settings:?}: {e}"),
            }
        }
    }

    #[test]
    fn names_a_missing_credential_variable() {
        let err = S3Storage::new(
            "b".into(),
            "".into(),
            S3Config {
                endpoint: Some("http://127.0.0.1:9".into()),
                allow_http: true,
                access_key_id_env: Some("DR_UNIT_SURELY_UNSET_KEY".into()),
                secret_access_key_env: Some("DR_UNIT_SURELY_UNSET_SECRET".into()),
                ..Default::default()
            },
        )
        .err()
        .expect("an unset credential variable")
        .to_string();
        assert!(
            err.contains("DR_UNIT_SURELY_UNSET_KEY") && err.contains("hint"),
            "{err}"
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
}
