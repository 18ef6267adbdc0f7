//! The target of a point-in-time restore (a time, a WAL position, a restore point, or the
//! end of the archive): parsed from the flags, shown in reports, written as PostgreSQL's
//! recovery settings.

use anyhow::Result;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;

use super::window;
use crate::error::usage;
use crate::wal::marks::{self, RestorePoint};
use crate::wal::Lsn;

/// Where recovery stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// Every transaction committed at or before this time, none after.
    Time(DateTime<Utc>),
    Lsn(Lsn),
    /// A named restore point, with dr's record of it when there is one.
    Name(String, Option<RestorePoint>),
    /// Everything archived.
    Latest,
}

/// The target as JSON shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetSpec {
    /// `time`, `lsn`, `name` or `latest`.
    pub kind: &'static str,
    pub value: Option<String>,
}

impl RecoveryTarget {
    /// From the four flags: exactly one of them.
    pub fn from_flags(
        time: Option<&str>,
        lsn: Option<&str>,
        name: Option<&str>,
        latest: bool,
    ) -> Result<RecoveryTarget> {
        let given = [time.is_some(), lsn.is_some(), name.is_some(), latest]
            .iter()
            .filter(|g| **g)
            .count();
        if given != 1 {
            return Err(usage(
                "--pitr needs exactly one target: --to-time TIME, --to-lsn LSN, --to-name MARK or --to-latest; hint: `dr list --target NAME` shows the restorable window",
            ));
        }
        if let Some(t) = time {
            return Ok(RecoveryTarget::Time(parse_time(t)?));
        }
        if let Some(l) = lsn {
            return Ok(RecoveryTarget::Lsn(Lsn::parse(l).map_err(|e| {
                usage(format!(
                    "--to-lsn: {e:#}; hint: write it as PostgreSQL does, like 0/3000060"
                ))
            })?));
        }
        if let Some(n) = name {
            marks::check_name(n)?;
            return Ok(RecoveryTarget::Name(n.to_string(), None));
        }
        Ok(RecoveryTarget::Latest)
    }

    pub fn spec(&self) -> TargetSpec {
        match self {
            RecoveryTarget::Time(t) => TargetSpec {
                kind: "time",
                value: Some(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
            },
            RecoveryTarget::Lsn(l) => TargetSpec {
                kind: "lsn",
                value: Some(l.to_string()),
            },
            RecoveryTarget::Name(n, _) => TargetSpec {
                kind: "name",
                value: Some(n.clone()),
            },
            RecoveryTarget::Latest => TargetSpec {
                kind: "latest",
                value: None,
            },
        }
    }

    pub fn describe(&self) -> String {
        match self {
            RecoveryTarget::Time(t) => format!("time {}", window::time_text(*t)),
            RecoveryTarget::Lsn(l) => format!("WAL position {l}"),
            RecoveryTarget::Name(n, _) => format!("restore point {n:?}"),
            RecoveryTarget::Latest => "the end of the archived WAL".into(),
        }
    }

    /// The lines of postgresql.auto.conf that set the target.
    pub fn settings(&self) -> Vec<(String, String)> {
        let one = |k: &str, v: String| vec![(k.to_string(), v)];
        match self {
            RecoveryTarget::Time(t) => one(
                "recovery_target_time",
                t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
            ),
            RecoveryTarget::Lsn(l) => one("recovery_target_lsn", l.to_string()),
            RecoveryTarget::Name(n, _) => one("recovery_target_name", n.clone()),
            RecoveryTarget::Latest => Vec::new(),
        }
    }
}

/// `2026-11-25T17:40:00Z`, `2026-11-25 17:40:00.5+01`, or without a zone (UTC).
pub fn parse_time(text: &str) -> Result<DateTime<Utc>> {
    let t = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(d) = DateTime::parse_from_str(t, format) {
            return Ok(d.with_timezone(&Utc));
        }
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, format) {
            return Ok(d.and_utc());
        }
    }
    Err(usage(format!(
        "--to-time {t:?} is not a time; hint: write it like 2026-11-25T17:40:00Z or '2026-11-25 17:40:00+01' (UTC when no zone is given)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_come_from_exactly_one_flag() {
        assert!(RecoveryTarget::from_flags(None, None, None, false).is_err());
        assert!(
            RecoveryTarget::from_flags(Some("2026-11-25T17:40:00Z"), None, None, true).is_err()
        );
        assert_eq!(
            RecoveryTarget::from_flags(None, Some("0/3000060"), None, false).unwrap(),
            RecoveryTarget::Lsn(Lsn(0x3000060))
        );
        assert_eq!(
            RecoveryTarget::from_flags(None, None, None, true).unwrap(),
            RecoveryTarget::Latest
        );
        assert!(RecoveryTarget::from_flags(None, None, Some("bad name"), false).is_err());
    }

    #[test]
    fn times_parse_in_the_usual_spellings() {
        let want = "2026-11-25T17:40:00.500+00:00";
        for text in [
            "2026-11-25T17:40:00.5Z",
            "2026-11-25 17:40:00.5+00",
            "2026-11-25 18:40:00.5+01:00",
            "2026-11-25 17:40:00.5",
        ] {
            assert_eq!(
                parse_time(text)
                    .unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
                want,
                "{text}"
            );
        }
        assert!(parse_time("yesterday").is_err());
        let t = RecoveryTarget::Time(parse_time("2026-11-25T17:40:00.5Z").unwrap());
        assert_eq!(
            t.settings(),
            vec![(
                "recovery_target_time".to_string(),
                "2026-11-25 17:40:00.500000+00".to_string()
            )]
        );
    }
}
