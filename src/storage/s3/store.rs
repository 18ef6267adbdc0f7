//! The `Storage` trait on S3: a single PUT for objects up to one part, a multipart upload
//! (aborted on failure) above; get, head, list and delete below the configured prefix.

use anyhow::{anyhow, bail, Result};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use super::errors::{error_text, explain};
use super::{strip_prefix, S3Storage, MIB};
use crate::storage::{list_prefix, ByteStream, ObjectMeta, Storage};

/// S3 refuses a multipart upload of more parts than this.
const MAX_PARTS: u64 = 10_000;

/// Aborts, in the background, a multipart upload whose `put` is dropped midway (a
/// cancelled future), so that its parts do not linger unseen. When the whole process
/// stops instead, no request can go out: the bucket's lifecycle rule removes the parts.
struct AbortOnDrop(Option<WriteMultipart>);

// The upload is taken only by `disarm`, which consumes the guard, or by drop.
#[allow(clippy::expect_used)]
impl AbortOnDrop {
    fn upload(&mut self) -> &mut WriteMultipart {
        self.0.as_mut().expect("upload not yet handed back")
    }

    /// Hands the upload back, to be completed or aborted in place.
    fn disarm(mut self) -> WriteMultipart {
        self.0.take().expect("upload not yet handed back")
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(upload) = self.0.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = upload.abort().await {
                    tracing::debug!("could not abort a cancelled multipart upload: {e}");
                }
            });
        }
    }
}

impl S3Storage {
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
                    let limit = self.request_timeout
                        + std::time::Duration::from_secs(
                            super::settings::UPLOAD_SECS_PER_MIB * (buffered / MIB) as u64,
                        );
                    self.bounded(
                        limit,
                        &format!("PUT {key}"),
                        self.writer
                            .put(&path, first.into_iter().collect::<PutPayload>()),
                    )
                    .await?
                    .map_err(|e| self.explain(e, Some(key)))?;
                    return Ok(buffered as u64);
                }
            }
        }

        let upload = self
            .bounded(
                self.request_timeout,
                &format!("starting the upload of {key}"),
                self.writer.put_multipart(&path),
            )
            .await?
            .map_err(|e| self.explain(e, Some(key)))?;
        let mut guard = AbortOnDrop(Some(WriteMultipart::new_with_chunk_size(
            upload,
            self.part_size,
        )));
        let fed = self.feed(guard.upload(), first, &mut data).await;
        let mut upload = guard.disarm();
        match fed {
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

    async fn put_new(&self, key: &str, data: Bytes) -> Result<bool> {
        let path = self.path_of(key)?;
        let options = object_store::PutOptions {
            mode: object_store::PutMode::Create,
            ..Default::default()
        };
        match self
            .writer
            .put_opts(&path, PutPayload::from(data), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.explain(e, Some(key))),
        }
    }

    async fn get(&self, key: &str) -> Result<ByteStream> {
        let path = self.path_of(key)?;
        let result = self
            .bounded(
                self.request_timeout,
                &format!("GET {key}"),
                self.store.get(&path),
            )
            .await?
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
        let head = self.store.head(&path);
        match self
            .bounded(self.request_timeout, &format!("HEAD {key}"), head)
            .await?
        {
            Ok(meta) => Ok(Some(ObjectMeta {
                key: key.to_string(),
                size: meta.size,
                modified: meta.last_modified,
                etag: meta.e_tag,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.explain(e, Some(key))),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let sub = list_prefix(prefix)?;
        let full = self.full_key(sub);
        let path = if full.is_empty() {
            None
        } else {
            Some(Path::parse(&full).map_err(|e| anyhow!("invalid list prefix {prefix:?}: {e}"))?)
        };
        let mut stream = self.store.list(path.as_ref());
        let mut out = Vec::new();
        let what = format!("LIST {}", if full.is_empty() { "/" } else { &full });
        while let Some(item) = self
            .bounded(self.request_timeout, &what, async {
                Ok::<_, object_store::Error>(stream.next().await)
            })
            .await?
            .map_err(|e| self.explain(e, None))?
        {
            let meta = item.map_err(|e| self.explain(e, None))?;
            if let Some(key) = strip_prefix(&self.prefix, meta.location.as_ref()) {
                out.push(ObjectMeta {
                    key: key.to_string(),
                    size: meta.size,
                    modified: meta.last_modified,
                    etag: meta.e_tag,
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path_of(key)?;
        let delete = self.store.delete(&path);
        match self
            .bounded(self.request_timeout, &format!("DELETE {key}"), delete)
            .await?
        {
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
    use crate::storage::s3::testing::*;
    use crate::storage::{get_bytes, put_bytes};

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
        assert!(server.object_path("pre/fix/pg/main/big.dump").is_file());

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
        assert!(server.pending_uploads().is_empty());
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
        assert_eq!(server.pending_uploads(), Vec::<String>::new());

        // Fails before one part is complete: single-PUT path, nothing sent.
        let (stream, _) = pattern_stream(3 * MIB, Some(MIB));
        assert!(s.put("pg/small.dump", stream).await.is_err());
        assert!(s.list("").await.unwrap().is_empty());
    }
}
