//! Which archived WAL `dr prune` may remove: only what no kept base backup needs. A base
//! backup needs every segment from its start to reach consistency and every later one to
//! recover to now, so everything from the oldest kept backup's start segment on stays.
//! Pure: it decides, `dr prune` acts.

use super::{ArchivedFile, WalKind};

/// The files strictly older than `oldest_start_segno` (segments, partial segments and
/// backup history files). Timeline history files are always kept: they are tiny and
/// recovery needs every one of them to follow a timeline switch.
pub fn removable(
    files: &[ArchivedFile],
    oldest_start_segno: u64,
    segment_size: u64,
) -> Vec<ArchivedFile> {
    files
        .iter()
        .filter(|f| {
            f.wal.kind != WalKind::History && f.wal.segno(segment_size) < oldest_start_segno
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
        // History files stay whatever the cut.
        assert!(removable(&f, u64::MAX, SEG)
            .iter()
            .all(|f| f.wal.kind != WalKind::History));
    }
}
