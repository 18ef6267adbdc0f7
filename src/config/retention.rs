//! `[retention]`: which backups `dr prune` keeps. The top-level keeps apply to every kind;
//! `[retention.physical]` (base backups) and `[retention.dump]` (pg_dump backups) override
//! them key by key for their kind, so "a base backup a week for 3 months, a dump a month
//! for a year" is two small tables. `pitr_window` keeps every point in time of the last
//! stretch restorable (base backups and WAL).

use std::time::Duration;

use serde::Deserialize;

use super::opt_duration;

#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    #[serde(default)]
    pub keep_last: u32,
    #[serde(default)]
    pub keep_daily: u32,
    #[serde(default)]
    pub keep_weekly: u32,
    #[serde(default)]
    pub keep_monthly: u32,
    /// Any point of this last stretch can be restored: the newest base backup at or
    /// before its start, every later one, and the WAL from that backup's start on.
    #[serde(default, deserialize_with = "opt_duration")]
    pub pitr_window: Option<Duration>,
    /// Overrides for physical base backups (`dr backup --physical`).
    pub physical: Option<KindKeeps>,
    /// Overrides for dumps (`dr backup`, pg_dump).
    pub dump: Option<KindKeeps>,
}

/// The keeps of one kind; a key left out falls back to the top-level one.
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KindKeeps {
    pub keep_last: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
}

/// Which kind's table applies to a pool of backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionKind {
    Physical,
    Dump,
    /// Redis backups and safety copies: only the top-level keeps.
    Other,
}

/// The keeps that apply to one kind, each with the key that set it (for `dr prune`'s
/// reasons: `keep_weekly` or `physical.keep_weekly`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keeps {
    pub last: (u32, String),
    pub daily: (u32, String),
    pub weekly: (u32, String),
    pub monthly: (u32, String),
}

impl RetentionConfig {
    pub fn keeps(&self, kind: RetentionKind) -> Keeps {
        let (table, prefix) = match kind {
            RetentionKind::Physical => (self.physical.as_ref(), "physical."),
            RetentionKind::Dump => (self.dump.as_ref(), "dump."),
            RetentionKind::Other => (None, ""),
        };
        let pick = |own: Option<u32>, top: u32, key: &str| match own {
            Some(n) => (n, format!("{prefix}{key}")),
            None => (top, key.to_string()),
        };
        let t = table.cloned().unwrap_or_default();
        Keeps {
            last: pick(t.keep_last, self.keep_last, "keep_last"),
            daily: pick(t.keep_daily, self.keep_daily, "keep_daily"),
            weekly: pick(t.keep_weekly, self.keep_weekly, "keep_weekly"),
            monthly: pick(t.keep_monthly, self.keep_monthly, "keep_monthly"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_table_overrides_key_by_key() {
        let c: RetentionConfig = toml::from_str(
            "keep_last = 2\nkeep_daily = 7\npitr_window = \"14d\"\n[physical]\nkeep_weekly = 12\nkeep_daily = 0\n[dump]\nkeep_monthly = 12\n",
        )
        .unwrap();
        assert_eq!(c.pitr_window, Some(Duration::from_secs(14 * 86_400)));
        let p = c.keeps(RetentionKind::Physical);
        assert_eq!(p.last, (2, "keep_last".into()));
        assert_eq!(p.daily, (0, "physical.keep_daily".into()));
        assert_eq!(p.weekly, (12, "physical.keep_weekly".into()));
        let d = c.keeps(RetentionKind::Dump);
        assert_eq!(d.daily, (7, "keep_daily".into()));
        assert_eq!(d.monthly, (12, "dump.keep_monthly".into()));
        assert_eq!(
            c.keeps(RetentionKind::Other).weekly,
            (0, "keep_weekly".into())
        );
        assert!(toml::from_str::<RetentionConfig>("[physical]\nkeep_yearly = 1\n").is_err());
        assert!(toml::from_str::<RetentionConfig>("pitr_window = \"two weeks\"\n").is_err());
    }
}
