//! S3-compatible object storage (being written; see issue 5).

use anyhow::{bail, Result};
use async_trait::async_trait;

use super::{ByteStream, ObjectMeta, Storage};
use crate::config::S3Config;

pub struct S3Storage {
    bucket: String,
}

impl S3Storage {
    pub fn new(bucket: String, _prefix: String, _config: S3Config) -> Result<Self> {
        Ok(S3Storage { bucket })
    }
}

#[async_trait]
impl Storage for S3Storage {
    fn describe(&self) -> String {
        format!("s3://{}", self.bucket)
    }
    async fn put(&self, _key: &str, _data: ByteStream) -> Result<u64> {
        bail!("s3 storage is not available in this build")
    }
    async fn get(&self, _key: &str) -> Result<ByteStream> {
        bail!("s3 storage is not available in this build")
    }
    async fn head(&self, _key: &str) -> Result<Option<ObjectMeta>> {
        bail!("s3 storage is not available in this build")
    }
    async fn list(&self, _prefix: &str) -> Result<Vec<ObjectMeta>> {
        bail!("s3 storage is not available in this build")
    }
    async fn delete(&self, _key: &str) -> Result<()> {
        bail!("s3 storage is not available in this build")
    }
}
