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

const DEFAULT_PART_MIB: usize = 8;
const MIN_PART_MIB: usize = 5;
const MAX_PART_MIB: usize = 5 * 1024;
const DEFAULT_CONCURRENCY: usize = 4;
const MAX_CONCURRENCY: usize = 64;

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
}
