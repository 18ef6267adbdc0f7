//! What a drill restored and how fast, kept in its report; the predicted RTO of a restore
//! of what storage holds now, for `dr check`.

use chrono::{DateTime, Utc};

use super::DrillReport;
use crate::backup::catalog;
use crate::backup::manifest::{BackupKind, BackupManifest, BackupMethod};
use crate::evidence::prediction::{self, Sample};
use crate::storage::{self, Storage};

/// Bytes of WAL archived for `target` in (since, until]: what a point-in-time restore from
/// a base backup taken at `since` replays up to `until`.
pub async fn wal_bytes_between(
    storage: &dyn Storage,
    target: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> u64 {
    let prefix = format!(
        "{}/{}/",
        crate::wal::WAL_PREFIX,
        crate::config::storage_name(target)
    );
    storage
        .list(&prefix)
        .await
        .map(|objects| {
            objects
                .iter()
                .filter(|o| o.modified > since && o.modified <= until)
                .map(|o| o.size)
                .sum()
        })
        .unwrap_or(0)
}

/// Successful drills of `target` of one kind (point-in-time or not) that measured what
/// they restored, newest first.
pub fn samples(reports: &[DrillReport], pitr: bool) -> Vec<Sample> {
    reports
        .iter()
        .filter(|r| r.ok && r.pitr.is_some() == pitr)
        .filter_map(|r| {
            Some(Sample {
                restored_bytes: r.restored_bytes?,
                rto_ms: r.rto_ms,
            })
        })
        .collect()
}

/// Fills in what the drill restored, what earlier drills predicted for it, and the
/// prediction's error; before the report is stored. Missing figures stay None.
pub(crate) async fn annotate(storage: &dyn Storage, report: &mut DrillReport) {
    let Some(id) = report.backup_id.clone() else {
        return;
    };
    let key = catalog::manifest_key(&report.target, &id);
    let Ok(manifest) = storage::get_bytes(storage, &key)
        .await
        .and_then(|b| BackupManifest::parse(&b))
    else {
        return;
    };
    let mut bytes = manifest.size_bytes;
    if report.pitr.is_some() {
        bytes += wal_bytes_between(
            storage,
            &report.target,
            manifest.created_at,
            report.started_at,
        )
        .await;
    }
    report.restored_bytes = Some(bytes);
    let earlier = super::list_reports(storage, &report.target)
        .await
        .unwrap_or_default();
    let earlier: Vec<DrillReport> = earlier.into_iter().filter(|r| r.id != report.id).collect();
    report.predicted_rto_ms =
        prediction::predict_ms(bytes, &samples(&earlier, report.pitr.is_some()));
    if report.ok {
        report.prediction_error_pct = report
            .predicted_rto_ms
            .and_then(|p| prediction::error_pct(p, report.rto_ms));
    }
}

/// What a restore of `target` needs now, in the way its newest measured drill restored:
/// (bytes, what they are, point-in-time). None when storage holds no such backup.
pub async fn needed_now(
    storage: &dyn Storage,
    target: &str,
    pitr: bool,
) -> anyhow::Result<Option<(u64, String)>> {
    let (manifests, _) = catalog::list_complete(storage, Some(target)).await?;
    let want = if pitr {
        BackupMethod::Physical
    } else {
        BackupMethod::Dump
    };
    let Some(newest) = manifests
        .iter()
        .find(|m| m.kind == BackupKind::Regular && m.method == want)
    else {
        return Ok(None);
    };
    if !pitr {
        return Ok(Some((
            newest.size_bytes,
            format!(
                "backup {} ({})",
                newest.id,
                crate::units::bytes(newest.size_bytes)
            ),
        )));
    }
    let wal = wal_bytes_between(storage, target, newest.created_at, Utc::now()).await;
    Ok(Some((
        newest.size_bytes + wal,
        format!(
            "base backup {} ({}) and the WAL archived since ({})",
            newest.id,
            crate::units::bytes(newest.size_bytes),
            crate::units::bytes(wal)
        ),
    )))
}
