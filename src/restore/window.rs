//! The restorable window of a cluster: from a physical base backup's consistency point to
//! the last WAL archived without a gap after it. Pure but for [`list_archive`]. What a
//! point-in-time restore checks before it unpacks anything, and what `dr list` shows.

use std::collections::HashMap;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::backup::manifest::BackupManifest;
use crate::wal::continuity::{self, Chain};
use crate::wal::{segment_name, ArchivedFile, Lsn, WalKind, WalName};

/// What a physical base backup contributes to the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasePoint {
    pub id: String,
    pub system_id: u64,
    pub timeline: u32,
    pub start_segno: u64,
    /// Where the copy is consistent: no target before it.
    pub stop_lsn: Lsn,
    /// When it was consistent at the latest: dr's manifest is written after the server
    /// finished the backup and its WAL was archived.
    pub consistent_by: DateTime<Utc>,
    pub segment_size: u64,
}

impl BasePoint {
    pub fn of(m: &BackupManifest) -> Result<Option<BasePoint>> {
        let Some(p) = &m.physical else {
            return Ok(None);
        };
        Ok(Some(BasePoint {
            id: m.id.clone(),
            system_id: p.system_identifier.parse()?,
            timeline: p.timeline,
            start_segno: Lsn::parse(&p.start_lsn)?.segno(p.wal_segment_size),
            stop_lsn: Lsn::parse(&p.stop_lsn)?,
            consistent_by: m.finished_at,
            segment_size: p.wal_segment_size,
        }))
    }
}

/// How far one base backup can be rolled forward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reach {
    pub backup_id: String,
    pub from_lsn: String,
    pub from_time: DateTime<Utc>,
    /// The last segment of the unbroken run after the backup's start.
    pub to_wal: String,
    /// The end of that segment: no LSN target after it.
    pub to_lsn: String,
    /// When that segment was archived (an upper bound of the last commit in it).
    pub to_time: DateTime<Utc>,
    /// The first segment the archive lacks after the run, when WAL exists beyond it.
    pub gap: Option<String>,
    /// The timeline the run ends on.
    pub timeline: u32,
}

impl Reach {
    // `to_lsn` is only ever written from an Lsn's own Display.
    #[allow(clippy::expect_used)]
    pub fn to_lsn(&self) -> Lsn {
        Lsn::parse(&self.to_lsn).expect("formatted by Reach")
    }

    /// The span this backup restores, in the words of every window message.
    pub fn describe(&self) -> String {
        span_text(
            self.from_time,
            &self.backup_id,
            &self.from_lsn,
            self.to_time,
            &format!("WAL archived up to {}, {}", self.to_lsn, self.to_wal),
        )
    }

    /// The same span ending at the last archived transaction (`last`), when a time target
    /// needs a commit after it.
    pub fn describe_to_last_commit(&self, last: DateTime<Utc>) -> String {
        span_text(
            self.from_time,
            &self.backup_id,
            &self.from_lsn,
            last,
            &format!(
                "the last archived transaction; WAL archived up to {}, {}",
                self.to_lsn, self.to_wal
            ),
        )
    }
}

/// One span of a restorable window: `FROM (backup ID consistent at LSN) to TO (END)`.
fn span_text(
    from: DateTime<Utc>,
    backup: &str,
    from_lsn: &str,
    to: DateTime<Utc>,
    end: &str,
) -> String {
    format!(
        "{} (backup {backup} consistent at {from_lsn}) to {} ({end})",
        time_text(from),
        time_text(to)
    )
}

/// Which side of the window a refused target is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outside {
    Before,
    After,
}

/// The one wording of a target outside the window, for every refusal: `TARGET lies
/// before|after the restorable window of NAME: the window is SPANS`.
pub fn outside_text(target: &str, side: Outside, name: &str, spans: &str) -> String {
    let side = match side {
        Outside::Before => "before",
        Outside::After => "after",
    };
    format!("{target} lies {side} the restorable window of {name}: the window is {spans}")
}

/// Why a backup cannot be rolled forward at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable {
    pub backup_id: String,
    pub missing: String,
}

/// How far `base` reaches along `chain`: `Err` when the archive lacks a segment it needs
/// to become consistent.
pub fn reach(
    base: &BasePoint,
    files: &[ArchivedFile],
    archived_at: &HashMap<String, DateTime<Utc>>,
    chain: &Chain,
) -> std::result::Result<Reach, Unusable> {
    let size = base.segment_size;
    let walk = continuity::walk(files, chain, base.start_segno, None, size);
    let stop_segno = base.stop_lsn.end_segno(size);
    let first_missing = walk
        .first_missing()
        .and_then(WalName::parse)
        .map(|w| w.segno(size));
    let last = match first_missing {
        Some(m) if m <= stop_segno => {
            return Err(Unusable {
                backup_id: base.id.clone(),
                missing: segment_name(chain.timeline_at(m), m, size),
            })
        }
        Some(m) => m - 1,
        None => WalName::parse(&walk.to).map_or(stop_segno, |w| w.segno(size)),
    };
    let to_wal = segment_name(chain.timeline_at(last), last, size);
    let to_time = archived_at
        .get(&to_wal)
        .copied()
        .unwrap_or(base.consistent_by)
        .max(base.consistent_by);
    Ok(Reach {
        backup_id: base.id.clone(),
        from_lsn: base.stop_lsn.to_string(),
        from_time: base.consistent_by,
        to_lsn: Lsn((last + 1) * size).to_string(),
        to_wal,
        to_time,
        gap: first_missing.map(|m| segment_name(chain.timeline_at(m), m, size)),
        timeline: chain.timeline_at(last),
    })
}

/// One cluster's WAL archive as listed: its files and when each segment was stored.
pub struct ArchiveListing {
    pub files: Vec<ArchivedFile>,
    pub archived_at: HashMap<String, DateTime<Utc>>,
}

/// Lists the WAL archive of cluster `system_id` of `target`.
pub async fn list_archive(
    storage: &dyn crate::storage::Storage,
    target: &str,
    system_id: u64,
) -> Result<ArchiveListing> {
    let prefix = crate::wal::cluster_prefix(target, system_id);
    let objects = storage.list(&format!("{prefix}/")).await.with_context(|| {
        format!(
            "cannot list the WAL archive {prefix} in {}",
            storage.describe()
        )
    })?;
    let modified: HashMap<String, DateTime<Utc>> = objects
        .iter()
        .map(|o| (o.key.clone(), o.modified))
        .collect();
    let files = crate::wal::archived_files(objects);
    let archived_at = archived_times(&files, &modified);
    Ok(ArchiveListing { files, archived_at })
}

/// When each archived segment was stored, by WAL name (the object's modification time).
pub fn archived_times(
    files: &[ArchivedFile],
    modified: &HashMap<String, DateTime<Utc>>,
) -> HashMap<String, DateTime<Utc>> {
    files
        .iter()
        .filter(|f| f.wal.kind == WalKind::Segment)
        .filter_map(|f| Some((f.wal.name.clone(), *modified.get(&f.key)?)))
        .collect()
}

/// One unbroken stretch of restorable time: from the consistency point of the oldest
/// backup that reaches into it to the last segment archived without a gap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Span {
    pub from_time: DateTime<Utc>,
    pub from_lsn: String,
    pub from_backup: String,
    pub to_time: DateTime<Utc>,
    pub to_lsn: String,
    pub to_wal: String,
}

/// The restorable window of one cluster: its spans (oldest first), and what breaks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestorableWindow {
    pub target: String,
    pub system_identifier: String,
    pub timeline: u32,
    pub spans: Vec<Span>,
    /// Missing segments that end a span while newer WAL exists (first of each gap).
    pub gaps: Vec<String>,
    /// Base backups the archive cannot make consistent (it lacks WAL they need).
    pub unusable_backups: Vec<String>,
    /// Every timeline the cluster archived, with where it forked and how far it goes.
    pub timelines: Vec<TimelineBranch>,
    /// Why the window could not be worked out (a corrupt history file, storage errors).
    pub problem: Option<String>,
}

/// One archived timeline of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimelineBranch {
    pub timeline: u32,
    /// The timeline it forked from, and where (from its history file).
    pub parent: Option<u32>,
    pub forked_at: Option<String>,
    /// Its newest archived segment.
    pub last_wal: Option<String>,
}

/// Merges the reach of every backup of one cluster into spans.
pub fn window(
    target: &str,
    system_id: u64,
    chain: &Chain,
    reaches: &[Reach],
    unusable: &[Unusable],
) -> RestorableWindow {
    let mut sorted: Vec<&Reach> = reaches.iter().collect();
    sorted.sort_by_key(|r| r.from_time);
    let mut spans: Vec<Span> = Vec::new();
    for r in sorted {
        let joins = spans.last().is_some_and(|s| {
            r.from_time <= s.to_time && Lsn::parse(&r.from_lsn).ok() <= Lsn::parse(&s.to_lsn).ok()
        });
        if let Some(s) = spans.last_mut().filter(|_| joins) {
            if Some(r.to_lsn()) > Lsn::parse(&s.to_lsn).ok() {
                s.to_lsn = r.to_lsn.clone();
                s.to_wal = r.to_wal.clone();
                s.to_time = r.to_time.max(s.to_time);
            }
        } else {
            spans.push(Span {
                from_time: r.from_time,
                from_lsn: r.from_lsn.clone(),
                from_backup: r.backup_id.clone(),
                to_time: r.to_time,
                to_lsn: r.to_lsn.clone(),
                to_wal: r.to_wal.clone(),
            });
        }
    }
    let mut gaps: Vec<String> = reaches.iter().filter_map(|r| r.gap.clone()).collect();
    gaps.extend(unusable.iter().map(|u| u.missing.clone()));
    gaps.sort();
    gaps.dedup();
    RestorableWindow {
        target: target.to_string(),
        system_identifier: system_id.to_string(),
        timeline: chain.newest(),
        spans,
        gaps,
        unusable_backups: unusable.iter().map(|u| u.backup_id.clone()).collect(),
        timelines: Vec::new(),
        problem: None,
    }
}

/// `2026-11-25 17:40:01 UTC`: how windows are named in messages.
pub fn time_text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string()
}

impl RestorableWindow {
    /// `from … to …` for messages, each span.
    pub fn describe(&self) -> String {
        if self.spans.is_empty() {
            return "nothing is restorable".into();
        }
        self.spans
            .iter()
            .map(|s| {
                span_text(
                    s.from_time,
                    &s.from_backup,
                    &s.from_lsn,
                    s.to_time,
                    &format!("WAL archived up to {}, {}", s.to_lsn, s.to_wal),
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Compression;
    use chrono::TimeZone;

    const SEG: u64 = 1 << 20;

    fn files(segnos: &[u64]) -> Vec<ArchivedFile> {
        segnos
            .iter()
            .map(|s| {
                let name = segment_name(1, *s, SEG);
                ArchivedFile {
                    wal: WalName::parse(&name).unwrap(),
                    sha256: "0".repeat(64),
                    compression: Compression::Zstd,
                    encrypted: false,
                    key: format!("wal/main/1/{name}"),
                    size: 1,
                }
            })
            .collect()
    }

    fn at(min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 17, min, 0).unwrap()
    }

    fn base(id: &str, start: u64, stop: u64, min: u32) -> BasePoint {
        BasePoint {
            id: id.into(),
            system_id: 1,
            timeline: 1,
            start_segno: start,
            stop_lsn: Lsn(stop * SEG + 0x100),
            consistent_by: at(min),
            segment_size: SEG,
        }
    }

    fn times(segnos: &[u64]) -> HashMap<String, DateTime<Utc>> {
        segnos
            .iter()
            .map(|s| (segment_name(1, *s, SEG), at(10 + *s as u32)))
            .collect()
    }

    #[test]
    fn a_backup_reaches_the_newest_segment_without_a_gap() {
        let f = files(&[2, 3, 4, 5]);
        let r = reach(
            &base("b1", 2, 3, 12),
            &f,
            &times(&[2, 3, 4, 5]),
            &Chain::single(1),
        )
        .unwrap();
        assert_eq!(r.to_wal, segment_name(1, 5, SEG));
        assert_eq!(r.to_lsn, Lsn(6 * SEG).to_string());
        assert_eq!(r.to_time, at(15));
        assert_eq!(r.gap, None);
    }

    #[test]
    fn a_gap_ends_the_reach_and_one_before_consistency_makes_it_unusable() {
        let f = files(&[2, 3, 4, 6, 7]);
        let t = times(&[2, 3, 4, 6, 7]);
        let r = reach(&base("b1", 2, 3, 12), &f, &t, &Chain::single(1)).unwrap();
        assert_eq!(r.to_wal, segment_name(1, 4, SEG));
        assert_eq!(r.gap.as_deref(), Some(segment_name(1, 5, SEG).as_str()));
        let u = reach(&base("b0", 2, 5, 11), &f, &t, &Chain::single(1)).unwrap_err();
        assert_eq!(u.missing, segment_name(1, 5, SEG));
        // A newer backup after the gap opens a second span.
        let r2 = reach(&base("b2", 6, 6, 16), &f, &t, &Chain::single(1)).unwrap();
        let w = window("main", 1, &Chain::single(1), &[r.clone(), r2], &[u]);
        assert_eq!(w.spans.len(), 2);
        assert_eq!(w.spans[0].from_backup, "b1");
        assert_eq!(w.spans[1].from_backup, "b2");
        assert_eq!(w.spans[1].to_wal, segment_name(1, 7, SEG));
        assert_eq!(w.gaps, vec![segment_name(1, 5, SEG)]);
        assert_eq!(w.unusable_backups, vec!["b0".to_string()]);
        assert!(w.describe().contains("backup b1 consistent at"));
    }

    #[test]
    fn overlapping_backups_make_one_span() {
        let f = files(&[2, 3, 4, 5, 6]);
        let t = times(&[2, 3, 4, 5, 6]);
        let r1 = reach(&base("b1", 2, 2, 12), &f, &t, &Chain::single(1)).unwrap();
        let r2 = reach(&base("b2", 4, 4, 14), &f, &t, &Chain::single(1)).unwrap();
        let w = window("main", 1, &Chain::single(1), &[r2, r1], &[]);
        assert_eq!(w.spans.len(), 1);
        assert_eq!(w.spans[0].from_backup, "b1");
        assert_eq!(w.spans[0].to_wal, segment_name(1, 6, SEG));
        assert!(w.gaps.is_empty());
    }
}
