//! The Object Lock probe: with `object_lock_days` set, every upload asks for retention,
//! and `dr check` uploads a probe object and reads its retention back, because a bucket
//! without Object Lock accepts the request and silently keeps nothing locked.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{HeaderMap, HeaderValue, ObjectStoreExt, PutPayload};

use super::S3Storage;

/// Retention mode requested when `object_lock_days` is set.
const LOCK_MODE: &str = "GOVERNANCE";
/// Written (and deleted) by the Object Lock probe of `capabilities_report`.
const LOCK_PROBE_KEY: &str = ".dr-object-lock-probe";

pub(super) struct ObjectLock {
    days: u32,
    retain_until: String,
}

impl ObjectLock {
    pub(super) fn new(days: u32) -> ObjectLock {
        ObjectLock {
            days,
            retain_until: (chrono::Utc::now() + chrono::Duration::days(i64::from(days)))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }

    /// The headers that ask for retention on an upload.
    pub(super) fn headers(&self) -> Result<HeaderMap> {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amz-object-lock-mode",
            HeaderValue::from_static(LOCK_MODE),
        );
        headers.insert(
            "x-amz-object-lock-retain-until-date",
            HeaderValue::from_str(&self.retain_until)?,
        );
        Ok(headers)
    }
}

impl S3Storage {
    pub(super) async fn probe_object_lock(&self, lock: &ObjectLock) -> Result<String> {
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

#[cfg(test)]
mod tests {
    use crate::storage::s3::testing::*;
    use crate::storage::{get_bytes, Storage};

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
