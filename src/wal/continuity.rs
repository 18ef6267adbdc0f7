//! Whether the archive holds an unbroken run of segments: the timeline chain recovery
//! follows (from timeline history files) and the walk along it. Pure: callers list storage.

use std::collections::HashSet;

use anyhow::{anyhow, bail, Result};

use crate::storage::Storage;
use serde::Serialize;

use super::{segment_name, ArchivedFile, Lsn, WalKind};

/// A timeline history file (`<tli>.history`): the ancestors of `timeline` and where each
/// of them ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineHistory {
    pub timeline: u32,
    /// (ancestor timeline, the position where it switched to the next one), oldest first.
    pub switches: Vec<(u32, Lsn)>,
}

impl TimelineHistory {
    pub fn parse(timeline: u32, text: &str) -> Result<TimelineHistory> {
        let mut switches = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(tli), Some(lsn)) = (fields.next(), fields.next()) else {
                bail!("timeline history {timeline}: malformed line {line:?}");
            };
            let tli: u32 = tli.parse().map_err(|_| {
                anyhow::anyhow!("timeline history {timeline}: malformed line {line:?}")
            })?;
            switches.push((tli, Lsn::parse(lsn)?));
        }
        if switches
            .windows(2)
            .any(|w| w[0].0 >= w[1].0 || w[0].1 > w[1].1)
            || switches.last().is_some_and(|s| s.0 >= timeline)
        {
            bail!("timeline history {timeline} is not in ascending order");
        }
        Ok(TimelineHistory { timeline, switches })
    }
}

/// The timelines recovery follows to reach the newest one, with the first segment each
/// of them supplies. At a switch, the segment holding the switch point is read from the
/// new timeline (PostgreSQL copies it there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chain {
    /// (timeline, first segment number it supplies), ascending.
    pub steps: Vec<(u32, u64)>,
}

impl Chain {
    pub fn single(timeline: u32) -> Chain {
        Chain {
            steps: vec![(timeline, 0)],
        }
    }

    pub fn from_history(history: &TimelineHistory, segment_size: u64) -> Chain {
        let Some(first) = history.switches.first() else {
            return Chain::single(history.timeline);
        };
        let mut steps = vec![(first.0, 0)];
        for (i, (_, switch)) in history.switches.iter().enumerate() {
            let next = history
                .switches
                .get(i + 1)
                .map_or(history.timeline, |s| s.0);
            steps.push((next, switch.segno(segment_size)));
        }
        Chain { steps }
    }

    pub fn newest(&self) -> u32 {
        self.steps.last().map_or(1, |s| s.0)
    }

    /// The timeline recovery reads segment `segno` from.
    pub fn timeline_at(&self, segno: u64) -> u32 {
        self.steps
            .iter()
            .rev()
            .find(|(_, begin)| *begin <= segno)
            .map_or(self.steps[0].0, |(tli, _)| *tli)
    }

    pub fn contains(&self, timeline: u32) -> bool {
        self.steps.iter().any(|(t, _)| *t == timeline)
    }
}

/// The newest timeline the archive knows (from segment names and history files).
pub fn newest_timeline(files: &[ArchivedFile]) -> Option<u32> {
    files.iter().map(|f| f.wal.timeline).max()
}

/// The timeline chain recovery would follow to the newest archived timeline.
pub async fn archive_chain(
    storage: &dyn Storage,
    files: &[ArchivedFile],
    at_least: u32,
    segment_size: u64,
) -> Result<Chain> {
    let newest = newest_timeline(files).unwrap_or(at_least).max(at_least);
    if newest <= 1 {
        return Ok(Chain::single(newest));
    }
    let name = format!("{newest:08X}.history");
    let history = files
        .iter()
        .find(|f| f.wal.kind == WalKind::History && f.wal.name == name)
        .ok_or_else(|| {
            anyhow!("timeline {newest} has archived WAL but its history file {name} is not archived, so recovery cannot follow it; hint: push it from the server's pg_wal (`dr wal-push pg_wal/{name}`)")
        })?;
    let read = async {
        let raw = super::read_small(storage, history).await?;
        let text = String::from_utf8(raw).map_err(|_| anyhow!("it is not text"))?;
        TimelineHistory::parse(newest, &text)
    };
    let parsed = read.await.map_err(|e| {
        anyhow!(
            "the timeline history {} in {} is unreadable ({e:#}), so recovery cannot follow timeline {newest}; hint: remove the damaged copy and push the server's pg_wal/{name} again (`dr wal-push pg_wal/{name}`), or restore it from another copy",
            history.key,
            storage.describe()
        )
    })?;
    Ok(Chain::from_history(&parsed, segment_size))
}

/// The walk from a start segment to the newest archived segment along a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Walk {
    pub from: String,
    /// The last segment the walk covers (the newest archived on the chain).
    pub to: String,
    pub segments: u64,
    pub missing_count: u64,
    /// The first few missing segments, oldest first.
    pub missing: Vec<String>,
}

impl Walk {
    pub fn first_missing(&self) -> Option<&str> {
        self.missing.first().map(String::as_str)
    }
}

const MISSING_SHOWN: usize = 5;

/// Walks `from_segno ..= until` (or up to the newest segment on the chain) and names
/// every segment the archive lacks.
pub fn walk(
    files: &[ArchivedFile],
    chain: &Chain,
    from_segno: u64,
    until_segno: Option<u64>,
    segment_size: u64,
) -> Walk {
    let present: HashSet<(u32, u64)> = files
        .iter()
        .filter(|f| f.wal.kind == WalKind::Segment)
        .map(|f| (f.wal.timeline, f.wal.segno(segment_size)))
        .collect();
    let newest_on_chain = present
        .iter()
        .filter(|(tli, segno)| *segno >= from_segno && chain.timeline_at(*segno) == *tli)
        .map(|(_, segno)| *segno)
        .max();
    let end = until_segno.unwrap_or_else(|| newest_on_chain.unwrap_or(from_segno).max(from_segno));
    let name = |segno: u64| segment_name(chain.timeline_at(segno), segno, segment_size);
    let mut missing = Vec::new();
    let mut missing_count = 0;
    for segno in from_segno..=end {
        if !present.contains(&(chain.timeline_at(segno), segno)) {
            missing_count += 1;
            if missing.len() < MISSING_SHOWN {
                missing.push(name(segno));
            }
        }
    }
    Walk {
        from: name(from_segno),
        to: name(end),
        segments: end - from_segno + 1 - missing_count,
        missing_count,
        missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Compression;
    use crate::wal::WalName;

    const SEG: u64 = 16 << 20;

    fn files(names: &[&str]) -> Vec<ArchivedFile> {
        names
            .iter()
            .map(|n| ArchivedFile {
                wal: WalName::parse(n).unwrap(),
                sha256: "0".repeat(64),
                compression: Compression::Zstd,
                encrypted: false,
                key: format!("wal/x/1/{n}"),
                size: 1,
            })
            .collect()
    }

    #[test]
    fn parses_history_and_builds_the_chain() {
        let h = TimelineHistory::parse(
            3,
            "1\t0/3000100\tno recovery target specified\n\n2\t0/50000A0\tat restore point \"x\"\n",
        )
        .unwrap();
        assert_eq!(h.switches, vec![(1, Lsn(0x3000100)), (2, Lsn(0x50000A0))]);
        let chain = Chain::from_history(&h, SEG);
        assert_eq!(chain.steps, vec![(1, 0), (2, 3), (3, 5)]);
        assert_eq!(chain.timeline_at(2), 1);
        assert_eq!(chain.timeline_at(3), 2);
        assert_eq!(chain.timeline_at(4), 2);
        assert_eq!(chain.timeline_at(99), 3);
        assert!(chain.contains(2) && !chain.contains(4));
        assert!(TimelineHistory::parse(2, "garbage\n").is_err());
        assert!(TimelineHistory::parse(2, "2\t0/1000000\treason\n").is_err());
    }

    #[test]
    fn an_unbroken_run_has_no_gap() {
        let f = files(&[
            "000000010000000000000002",
            "000000010000000000000003",
            "000000010000000000000004",
            "000000010000000000000002.00000028.backup",
        ]);
        let w = walk(&f, &Chain::single(1), 2, None, SEG);
        assert_eq!(w.to, "000000010000000000000004");
        assert_eq!((w.segments, w.missing_count), (3, 0));
    }

    #[test]
    fn a_gap_names_the_first_missing_segment() {
        let f = files(&[
            "0000000100000000000000FE",
            "000000010000000100000001",
            "000000010000000100000003",
        ]);
        let w = walk(&f, &Chain::single(1), 0xFE, None, SEG);
        // 0xFF and 0x100 (the log boundary) and 0x102 are missing.
        assert_eq!(w.first_missing(), Some("0000000100000000000000FF"));
        assert_eq!(w.missing_count, 3);
        assert_eq!(w.missing[1], "000000010000000100000000");
        assert_eq!(w.to, "000000010000000100000003");
    }

    #[test]
    fn follows_a_timeline_switch() {
        let h = TimelineHistory::parse(2, "1\t0/4000100\tpromoted\n").unwrap();
        let chain = Chain::from_history(&h, SEG);
        let f = files(&[
            "000000010000000000000003",
            "000000010000000000000004.partial",
            "000000020000000000000004",
            "000000020000000000000005",
            // An abandoned branch does not count.
            "000000010000000000000005",
            "000000010000000000000006",
        ]);
        let w = walk(&f, &chain, 3, None, SEG);
        assert_eq!(
            (w.missing_count, w.to.as_str()),
            (0, "000000020000000000000005")
        );
        // Without the new timeline's copy of the switch segment there is a gap.
        let f2: Vec<_> = f
            .into_iter()
            .filter(|x| x.wal.name != "000000020000000000000004")
            .collect();
        let w = walk(&f2, &chain, 3, None, SEG);
        assert_eq!(w.first_missing(), Some("000000020000000000000004"));
    }

    #[test]
    fn a_missing_start_is_a_gap() {
        let w = walk(&files(&[]), &Chain::single(1), 7, None, SEG);
        assert_eq!(w.first_missing(), Some("000000010000000000000007"));
        let w = walk(
            &files(&["000000010000000000000007"]),
            &Chain::single(1),
            7,
            Some(8),
            SEG,
        );
        assert_eq!(w.first_missing(), Some("000000010000000000000008"));
    }
}
