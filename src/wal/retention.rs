//! Which archived WAL `dr prune` may remove: only what no kept base backup needs. A base
//! backup needs every segment from its start to reach consistency and every later one to
//! recover to a later point; which of those stay is decided in `backup::pitr_window`
//! as runs of segment numbers. Pure: it decides, `dr prune` acts.

use super::{ArchivedFile, WalKind};

/// The files strictly older than `oldest_start_segno` (segments, partial segments and
/// backup history files). Timeline history files are always kept: they are tiny and
/// recovery needs every one of them to follow a timeline switch.
pub fn removable(
    files: &[ArchivedFile],
    oldest_start_segno: u64,
    segment_size: u64,
) -> Vec<ArchivedFile> {
    removable_outside(files, &[(oldest_start_segno, None)], segment_size)
}

/// The files in none of the `needed` runs of segment numbers (`from..=to`, `to` `None`
/// for "to the end"); timeline history files always stay.
pub fn removable_outside(
    files: &[ArchivedFile],
    needed: &[(u64, Option<u64>)],
    segment_size: u64,
) -> Vec<ArchivedFile> {
    files
        .iter()
        .filter(|f| {
            let segno = f.wal.segno(segment_size);
            f.wal.kind != WalKind::History
                && !needed
                    .iter()
                    .any(|(from, to)| segno >= *from && to.is_none_or(|to| segno <= to))
        })
        .cloned()
        .collect()
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
                key: n.to_string(),
                size: 1,
            })
            .collect()
    }

    #[test]
    fn keeps_everything_from_the_oldest_kept_start_on() {
        let f = files(&[
            "000000010000000000000003",
            "000000010000000000000004.00000028.backup",
            "000000010000000000000004",
            "000000010000000000000005",
            "000000010000000000000005.00000060.backup",
            "000000020000000000000005",
            "000000010000000000000006.partial",
            "00000002.history",
        ]);
        let gone: Vec<String> = removable(&f, 5, SEG)
            .into_iter()
            .map(|f| f.wal.name)
            .collect();
        assert_eq!(
            gone,
            vec![
                "000000010000000000000003",
                "000000010000000000000004.00000028.backup",
                "000000010000000000000004",
            ]
        );
        assert!(removable(&f, 0, SEG).is_empty());
        // Runs: 3 and from 5 on stay, so only segment 4 and its history file go.
        let gone: Vec<String> = removable_outside(&f, &[(5, None), (3, Some(3))], SEG)
            .into_iter()
            .map(|f| f.wal.name)
            .collect();
        assert_eq!(
            gone,
            vec![
                "000000010000000000000004.00000028.backup",
                "000000010000000000000004",
            ]
        );
        // History files stay whatever the cut.
        assert!(removable(&f, u64::MAX, SEG)
            .iter()
            .all(|f| f.wal.kind != WalKind::History));
    }
}
