//! `[backup]`: compression, threads, parallel targets and how often integrity is re-hashed.

use std::time::Duration;

use serde::Deserialize;

use super::opt_duration;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zstd,
    Gzip,
    None,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
            Compression::None => "none",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Compression::Zstd => ".zst",
            Compression::Gzip => ".gz",
            Compression::None => "",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    #[serde(default)]
    pub compression: Compression,
    /// Compression level; zstd 1..=19 (default 3), gzip 0..=9 (default 6).
    pub level: Option<i32>,
    /// zstd worker threads; 0 or absent means one per core.
    pub threads: Option<u32>,
    /// Also dump roles and tablespaces with `pg_dumpall --globals-only`. On by default:
    /// without them a cluster rebuilt from dumps has no roles to own or read its data.
    #[serde(default = "default_true")]
    pub include_globals: bool,
    /// Targets `dr backup` backs up at once (default 4; `--parallel` overrides it).
    pub parallel: Option<usize>,
    /// How old a backup's integrity verdict (its last full SHA-256 check) may grow before
    /// `dr check` and `dr prune` hash the backup again; default 7 days.
    #[serde(default, deserialize_with = "opt_duration")]
    pub rehash_after: Option<Duration>,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            compression: Compression::default(),
            level: None,
            threads: None,
            include_globals: true,
            parallel: None,
            rehash_after: None,
        }
    }
}

fn default_true() -> bool {
    true
}

/// Default of `[backup] rehash_after`.
pub const DEFAULT_REHASH_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

impl BackupConfig {
    pub const DEFAULT_PARALLEL: usize = 4;
    pub const MAX_PARALLEL: usize = 64;

    pub fn rehash_after(&self) -> Duration {
        self.rehash_after.unwrap_or(DEFAULT_REHASH_AFTER)
    }
}
