//! `[wal]`: how fast `dr wal-push` and `dr wal-fetch` go: segments stored at once when
//! PostgreSQL has several ready, and segments fetched ahead of recovery.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WalConfig {
    /// Segments `wal-push` stores at once (the one asked for and the others PostgreSQL
    /// marked ready); 1 pushes only the one asked for. Default 4.
    pub push_parallel: Option<usize>,
    /// Segments of the timeline `wal-fetch` fetches ahead of recovery into a spool in the
    /// data directory; 0 fetches only the one asked for. Default 8.
    pub fetch_ahead: Option<usize>,
}

impl WalConfig {
    pub const DEFAULT_PUSH_PARALLEL: usize = 4;
    pub const MAX_PUSH_PARALLEL: usize = 32;
    pub const DEFAULT_FETCH_AHEAD: usize = 8;
    pub const MAX_FETCH_AHEAD: usize = 64;

    pub fn push_parallel(&self) -> usize {
        self.push_parallel.unwrap_or(Self::DEFAULT_PUSH_PARALLEL)
    }

    pub fn fetch_ahead(&self) -> usize {
        self.fetch_ahead.unwrap_or(Self::DEFAULT_FETCH_AHEAD)
    }

    /// The key and message of a value out of range.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if let Some(n) = self.push_parallel {
            if !(1..=Self::MAX_PUSH_PARALLEL).contains(&n) {
                return Some((
                    "push_parallel",
                    format!(
                        "push_parallel = {n} is out of range; hint: use 1 to {} (default {}; 1 pushes one segment per call)",
                        Self::MAX_PUSH_PARALLEL,
                        Self::DEFAULT_PUSH_PARALLEL
                    ),
                ));
            }
        }
        if let Some(n) = self.fetch_ahead {
            if n > Self::MAX_FETCH_AHEAD {
                return Some((
                    "fetch_ahead",
                    format!(
                        "fetch_ahead = {n} is out of range; hint: use 0 to {} (default {}; 0 turns prefetching off)",
                        Self::MAX_FETCH_AHEAD,
                        Self::DEFAULT_FETCH_AHEAD
                    ),
                ));
            }
        }
        None
    }
}
