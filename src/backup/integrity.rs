//! Integrity verdicts: the outcome of a full SHA-256 check of a backup, kept beside it as
//! `integrity.json` together with the identity of every object hashed (size, modification
//! time, ETag). While every object still shows that identity, the verdict stands: `dr
//! check` confirms a backup with one small read and a metadata call per object instead of
//! reading it whole, so it stays fast at any backup size.
//!
//! Verdicts are written by `dr backup` (its own hash, taken while the bytes streamed), by
//! `dr validate` (a full re-hash), and by `dr check` and `dr prune` when a verdict is
//! missing, older than `[backup] rehash_after`, or its objects changed since. A verdict is
//! evidence of change, not a signature: whoever may rewrite objects may rewrite it too, as
//! they may the manifest.

use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::catalog;
use super::manifest::BackupManifest;
use crate::storage::{self, ObjectMeta, Storage};

pub const VERDICT_FILE: &str = "integrity.json";
pub const VERDICT_FORMAT_VERSION: u32 = 1;

/// Who took the hash a verdict records.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CheckedBy {
    /// `dr backup`, hashing the bytes while it stored them.
    Backup,
    Validate,
    Check,
    Prune,
}

impl CheckedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckedBy::Backup => "dr backup",
            CheckedBy::Validate => "dr validate",
            CheckedBy::Check => "dr check",
            CheckedBy::Prune => "dr prune",
        }
    }
}

/// One stored object as it was when it was hashed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectIdentity {
    /// File name inside the backup's directory, as in the manifest.
    pub file: String,
    pub size: u64,
    pub modified: DateTime<Utc>,
    #[serde(default)]
    pub etag: Option<String>,
}

impl ObjectIdentity {
    fn of(file: &str, meta: &ObjectMeta) -> Self {
        ObjectIdentity {
            file: file.to_string(),
            size: meta.size,
            modified: meta.modified,
            etag: meta.etag.clone(),
        }
    }

    /// What differs in `now` from this identity, in words; None when it is the same version.
    fn change(&self, now: &ObjectMeta) -> Option<String> {
        let mut what = Vec::new();
        if now.size != self.size {
            what.push(format!("size {} -> {} bytes", self.size, now.size));
        }
        if now.modified != self.modified {
            what.push(format!(
                "modified {} -> {}",
                self.modified.to_rfc3339(),
                now.modified.to_rfc3339()
            ));
        }
        if now.etag != self.etag {
            what.push(format!(
                "ETag {} -> {}",
                self.etag.as_deref().unwrap_or("none"),
                now.etag.as_deref().unwrap_or("none")
            ));
        }
        (!what.is_empty()).then(|| what.join(", "))
    }
}

/// The record of a full SHA-256 check of one backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IntegrityVerdict {
    pub format_version: u32,
    pub backup_id: String,
    pub checked_at: DateTime<Utc>,
    pub checked_by: CheckedBy,
    /// Every object matched the SHA-256 and size of the manifest.
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub objects: Vec<ObjectIdentity>,
}

impl IntegrityVerdict {
    /// A stored verdict; the error says what is wrong with the bytes.
    pub fn parse(bytes: &[u8]) -> Result<IntegrityVerdict> {
        let verdict: IntegrityVerdict = serde_json::from_slice(bytes)
            .map_err(|e| anyhow::anyhow!("not an integrity verdict: {e}"))?;
        if verdict.format_version != VERDICT_FORMAT_VERSION {
            anyhow::bail!(
                "integrity verdict format {} is not the {VERDICT_FORMAT_VERSION} this dr reads",
                verdict.format_version
            );
        }
        Ok(verdict)
    }
}

pub fn verdict_key(manifest: &BackupManifest) -> String {
    catalog::object_key(manifest, VERDICT_FILE)
}

/// Where a backup stands with respect to its last full check.
#[derive(Debug, Clone)]
pub enum Standing {
    /// A passing verdict younger than the re-hash interval, every object unchanged since.
    Confirmed(IntegrityVerdict),
    /// The last full check failed, and the objects are as they were then.
    Failed(IntegrityVerdict),
    /// An object is not the version that was hashed: its bytes may have changed.
    Changed {
        verdict: IntegrityVerdict,
        key: String,
        detail: String,
    },
    /// A passing verdict older than the re-hash interval, objects unchanged.
    Stale(IntegrityVerdict),
    /// No (readable) verdict covering every object: a backup from before verdicts existed.
    Missing,
}

/// The identity of every object of `manifest` now, one metadata call each.
pub async fn identities(
    storage: &dyn Storage,
    manifest: &BackupManifest,
) -> Result<Vec<(String, ObjectMeta)>> {
    let heads = manifest.objects.iter().map(|object| async move {
        let key = catalog::object_key(manifest, &object.file);
        let meta = storage
            .head(&key)
            .await
            .with_context(|| format!("cannot read the metadata of {key}"))?
            .with_context(|| {
                format!(
                    "object {key} of backup {} is missing; hint: use another backup (`dr list --target {}`)",
                    manifest.id, manifest.target
                )
            })?;
        anyhow::Ok((object.file.clone(), meta))
    });
    futures::future::try_join_all(heads).await
}

/// The verdict stored beside `manifest`; None when there is none or it cannot be used (a
/// damaged one is logged and then treated as missing: the backup is hashed again).
pub async fn load(
    storage: &dyn Storage,
    manifest: &BackupManifest,
) -> Result<Option<IntegrityVerdict>> {
    let key = verdict_key(manifest);
    if storage.head(&key).await?.is_none() {
        return Ok(None);
    }
    let bytes = storage::get_bytes(storage, &key).await?;
    match IntegrityVerdict::parse(&bytes) {
        Ok(v) if v.backup_id == manifest.id => Ok(Some(v)),
        Ok(_) => {
            tracing::warn!("{key} belongs to another backup; it is ignored");
            Ok(None)
        }
        Err(e) => {
            tracing::warn!("{key} is unreadable ({e:#}); it is ignored");
            Ok(None)
        }
    }
}

/// Judges the stored verdict against the objects as they are now (metadata calls only).
pub async fn standing(
    storage: &dyn Storage,
    manifest: &BackupManifest,
    now: DateTime<Utc>,
    rehash_after: Duration,
) -> Result<Standing> {
    let Some(verdict) = load(storage, manifest).await? else {
        return Ok(Standing::Missing);
    };
    let current = identities(storage, manifest).await?;
    Ok(judge(manifest, verdict, &current, now, rehash_after))
}

/// The pure part of [`standing`].
fn judge(
    manifest: &BackupManifest,
    verdict: IntegrityVerdict,
    current: &[(String, ObjectMeta)],
    now: DateTime<Utc>,
    rehash_after: Duration,
) -> Standing {
    for (file, meta) in current {
        let Some(recorded) = verdict.objects.iter().find(|o| &o.file == file) else {
            return Standing::Missing;
        };
        if let Some(detail) = recorded.change(meta) {
            return Standing::Changed {
                verdict,
                key: catalog::object_key(manifest, file),
                detail,
            };
        }
    }
    if !verdict.ok {
        return Standing::Failed(verdict);
    }
    let age = (now - verdict.checked_at).to_std().unwrap_or_default();
    if age > rehash_after {
        Standing::Stale(verdict)
    } else {
        Standing::Confirmed(verdict)
    }
}

/// Stores a verdict; a failure to store it is logged, never fatal: the hash itself was
/// taken, and without a verdict the next check simply hashes again.
async fn store(storage: &dyn Storage, manifest: &BackupManifest, verdict: &IntegrityVerdict) {
    let key = verdict_key(manifest);
    let json = match serde_json::to_vec_pretty(verdict) {
        Ok(j) => j,
        Err(e) => {
            tracing::warn!(
                "cannot encode the integrity verdict of {}: {e}",
                manifest.id
            );
            return;
        }
    };
    if let Err(e) = storage::put_bytes(storage, &key, json).await {
        tracing::warn!(
            "cannot store the integrity verdict {key} ({e:#}); the next `dr check` hashes backup {} in full again",
            manifest.id
        );
    }
}

fn verdict(
    manifest: &BackupManifest,
    by: CheckedBy,
    checked_at: DateTime<Utc>,
    error: Option<String>,
    objects: &[(String, ObjectMeta)],
) -> IntegrityVerdict {
    IntegrityVerdict {
        format_version: VERDICT_FORMAT_VERSION,
        backup_id: manifest.id.clone(),
        checked_at,
        checked_by: by,
        ok: error.is_none(),
        error,
        objects: objects
            .iter()
            .map(|(file, meta)| ObjectIdentity::of(file, meta))
            .collect(),
    }
}

/// After `dr backup` committed `manifest`: its objects were hashed on their way into
/// storage, so a passing verdict needs only their identities.
pub async fn record_after_backup(storage: &dyn Storage, manifest: &BackupManifest) {
    match identities(storage, manifest).await {
        Ok(current) => {
            let v = verdict(manifest, CheckedBy::Backup, Utc::now(), None, &current);
            store(storage, manifest, &v).await;
        }
        Err(e) => tracing::warn!(
            "cannot record the integrity verdict of backup {} ({e:#}); the next `dr check` hashes it in full",
            manifest.id
        ),
    }
}

/// Records the outcome of a full hash that `hash` performs. The identities are read
/// before and after it: a verdict is stored only when no object changed in between, so
/// it always describes the bytes that were hashed. A failure records a failing verdict only
/// when it is one of the bytes (a checksum or size mismatch), not of something else `hash`
/// did (a pg_restore that could not run, a connection that broke). Returns `hash`'s result.
pub async fn hash_and_record<T, F>(
    storage: &dyn Storage,
    manifest: &BackupManifest,
    by: CheckedBy,
    hash: F,
) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
{
    let before = identities(storage, manifest).await?;
    let checked_at = Utc::now();
    let result = hash.await;
    let error = match &result {
        Ok(_) => None,
        Err(e) if is_mismatch(e) => Some(format!("{e:#}")),
        Err(_) => return result,
    };
    match identities(storage, manifest).await {
        Ok(after)
            if before.len() == after.len()
                && before
                    .iter()
                    .zip(&after)
                    .all(|((_, a), (_, b))| a.same_version(b)) =>
        {
            store(
                storage,
                manifest,
                &verdict(manifest, by, checked_at, error, &after),
            )
            .await;
        }
        _ => tracing::warn!(
            "an object of backup {} changed while it was hashed; no integrity verdict recorded",
            manifest.id
        ),
    }
    result
}

/// Whether an error says the stored bytes differ from the manifest (the wording of
/// `catalog::verify_checksums` and `restore::stage`).
fn is_mismatch(err: &anyhow::Error) -> bool {
    let text = format!("{err:#}");
    text.contains("checksum mismatch") || text.contains("bytes its manifest records")
}

/// A full SHA-256 check of every object against the manifest, recorded as a verdict.
pub async fn rehash(
    storage: &dyn Storage,
    manifest: &BackupManifest,
    by: CheckedBy,
    idle_timeout: Option<Duration>,
) -> Result<()> {
    hash_and_record(
        storage,
        manifest,
        by,
        catalog::verify_checksums(storage, manifest, idle_timeout),
    )
    .await
}

/// Whether a backup's bytes match its manifest, hashing only when needed: a standing
/// passing verdict whose objects are unchanged is trusted; a failed one fails again; a
/// missing, stale or outdated one (an object changed since) leads to a full re-hash.
pub async fn confirm_or_rehash(
    storage: &dyn Storage,
    manifest: &BackupManifest,
    by: CheckedBy,
    rehash_after: Duration,
) -> Result<()> {
    match standing(storage, manifest, Utc::now(), rehash_after).await? {
        Standing::Confirmed(_) => Ok(()),
        Standing::Failed(v) => Err(anyhow::anyhow!(
            "{}",
            v.error
                .unwrap_or_else(|| format!("backup {} failed its last check", manifest.id))
        )),
        Standing::Changed { .. } | Standing::Stale(_) | Standing::Missing => {
            rehash(storage, manifest, by, None).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::manifest::{ObjectRole, StoredObject};
    use crate::config::Compression;

    fn manifest() -> BackupManifest {
        let mut m: BackupManifest = serde_json::from_str(
            r#"{"format_version":1,"id":"main-20250101T000000Z","target":"main","source":"postgres://h/db",
            "created_at":"2025-01-01T00:00:00Z","finished_at":"2025-01-01T00:00:01Z","duration_ms":1,
            "server_version":"15","server_major":15,"dr_version":"0","format":"custom","compression":"zstd",
            "compression_level":3,"encryption":null,"size_bytes":10,"sha256":"ab","objects":[]}"#,
        )
        .unwrap();
        m.objects.push(StoredObject {
            role: ObjectRole::Dump,
            file: "dump.pgdump.zst".into(),
            compression: Compression::Zstd,
            size_bytes: 10,
            sha256: "ab".into(),
            raw_bytes: 20,
            plaintext_sha256: None,
            plaintext_bytes: None,
        });
        m
    }

    fn meta(size: u64, secs: i64, etag: &str) -> ObjectMeta {
        ObjectMeta {
            key: "backups/main/main-20250101T000000Z/dump.pgdump.zst".into(),
            size,
            modified: DateTime::from_timestamp(secs, 0).unwrap(),
            etag: Some(etag.into()),
        }
    }

    fn recorded(ok: bool, at: i64, m: &ObjectMeta) -> IntegrityVerdict {
        let current = [("dump.pgdump.zst".to_string(), m.clone())];
        verdict(
            &manifest(),
            CheckedBy::Backup,
            DateTime::from_timestamp(at, 0).unwrap(),
            (!ok).then(|| "checksum mismatch".to_string()),
            &current,
        )
    }

    #[test]
    fn verdicts_stand_until_an_object_changes_or_they_age() {
        let m = manifest();
        let day = Duration::from_secs(86_400);
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let hashed = meta(10, 500, "\"e1\"");
        let same = [("dump.pgdump.zst".to_string(), hashed.clone())];
        let judged = |v, current: &[(String, ObjectMeta)]| judge(&m, v, current, now, day);

        assert!(matches!(
            judged(recorded(true, 999_000, &hashed), &same),
            Standing::Confirmed(_)
        ));
        assert!(matches!(
            judged(recorded(true, 1_000_000 - 86_401, &hashed), &same),
            Standing::Stale(_)
        ));
        assert!(matches!(
            judged(recorded(false, 999_000, &hashed), &same),
            Standing::Failed(_)
        ));
        // Same size, another version: a tampered or rewritten object.
        for changed in [meta(10, 500, "\"e2\""), meta(10, 501, "\"e1\"")] {
            let current = [("dump.pgdump.zst".to_string(), changed)];
            match judged(recorded(true, 999_000, &hashed), &current) {
                Standing::Changed { key, detail, .. } => {
                    assert!(key.ends_with("/dump.pgdump.zst"), "{key}");
                    assert!(detail.contains("->"), "{detail}");
                }
                other => panic!("{other:?}"),
            }
        }
        // A changed object outranks an old failure: it must be hashed again.
        let current = [("dump.pgdump.zst".to_string(), meta(10, 500, "\"e3\""))];
        assert!(matches!(
            judged(recorded(false, 999_000, &hashed), &current),
            Standing::Changed { .. }
        ));
        // A verdict that does not cover an object of the manifest counts for nothing.
        let other = [("globals.sql.zst".to_string(), hashed.clone())];
        assert!(matches!(
            judged(recorded(true, 999_000, &hashed), &other),
            Standing::Missing
        ));
    }

    #[test]
    fn verdict_json_round_trips() {
        let v = recorded(true, 999_000, &meta(10, 500, "\"e1\""));
        let json = serde_json::to_string(&v).unwrap();
        assert!(json.contains("\"checked_by\":\"backup\""), "{json}");
        assert!(!json.contains("\"error\""), "{json}");
        assert_eq!(serde_json::from_str::<IntegrityVerdict>(&json).unwrap(), v);
    }
}
