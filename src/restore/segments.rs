//! The segments a recovery needs, checked before anything is unpacked: each stored once
//! (two contents under one name cannot be trusted), and each one this restore can open
//! (an encrypted segment needs an identity that unwraps it). PostgreSQL treats a segment it
//! cannot get as the end of the archive, so these are found here or not at all.

use futures::{StreamExt, TryStreamExt};

use anyhow::{anyhow, bail, Result};

use crate::encryption::Identities;
use crate::error::usage;
use crate::storage::Storage;
use crate::wal::continuity::Chain;
use crate::wal::{segment_name, ArchivedFile, WalKind};

/// Bytes read of an encrypted segment to check its header: the age header with its
/// recipient stanzas is far smaller.
const HEADER_BYTES: usize = 4096;
const PARALLEL_HEADER_READS: usize = 8;

/// Checks the segments `from_segno ..= to_segno` along `chain`; returns what was checked.
pub async fn check_needed(
    storage: &dyn Storage,
    files: &[ArchivedFile],
    chain: &Chain,
    from_segno: u64,
    to_segno: u64,
    segment_size: u64,
    identities: Option<&Identities>,
) -> Result<String> {
    let mut needed: Vec<&ArchivedFile> = Vec::new();
    for segno in from_segno..=to_segno {
        let name = segment_name(chain.timeline_at(segno), segno, segment_size);
        let mut copies: Vec<&ArchivedFile> = files
            .iter()
            .filter(|f| f.wal.kind == WalKind::Segment && f.wal.name == name)
            .collect();
        copies.sort_by(|a, b| a.sha256.cmp(&b.sha256));
        copies.dedup_by(|a, b| a.sha256 == b.sha256);
        match copies.as_slice() {
            [] => {}
            [one] => needed.push(one),
            many => bail!(
                "{name} is stored twice with different content ({}): recovery cannot trust either copy; nothing was changed; hint: compare the copies with the cluster's pg_wal if it still exists and remove the wrong one from storage",
                many.iter().map(|c| c.key.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }
    }
    let encrypted: Vec<&ArchivedFile> = needed.iter().copied().filter(|f| f.encrypted).collect();
    if encrypted.is_empty() {
        return Ok(format!(
            "{} segments, each stored once, none encrypted",
            needed.len()
        ));
    }
    let Some(identities) = identities else {
        return Err(usage(format!(
            "{} of the {} segments recovery needs are encrypted (the first is {}) and no identity is configured to open them; nothing was changed; hint: pass --identity FILE or set [encryption] identity_file",
            encrypted.len(),
            needed.len(),
            encrypted[0].wal.name
        )));
    };
    futures::stream::iter(encrypted.iter().map(|f| opens(storage, f, identities)))
        .buffer_unordered(PARALLEL_HEADER_READS)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(format!(
        "{} segments, each stored once; the identity {} opens all {} encrypted ones",
        needed.len(),
        identities.source,
        encrypted.len()
    ))
}

/// The identity unwraps the segment's file key (read from its header only).
async fn opens(storage: &dyn Storage, file: &ArchivedFile, identities: &Identities) -> Result<()> {
    let mut stream = storage.get(&file.key).await?;
    let mut head: Vec<u8> = Vec::with_capacity(HEADER_BYTES);
    while head.len() < HEADER_BYTES {
        match stream.next().await {
            Some(chunk) => head.extend_from_slice(&chunk?),
            None => break,
        }
    }
    drop(stream);
    identities
        .decrypt(
            &head[..],
            &["the recipients it was archived for".to_string()],
        )
        .map(|_| ())
        .map_err(|e| {
            anyhow!(
                "{} cannot be opened: {e:#}; nothing was changed",
                file.wal.name
            )
        })
}
