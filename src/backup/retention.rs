//! Grandfather-father-son retention, counted in UTC on backup timestamps (never file
//! times). Pure: it decides, `dr prune` acts.

use std::collections::HashSet;

use chrono::{DateTime, Datelike, Duration, Utc};
use serde::Serialize;

use crate::config::Keeps;

/// A backup dated further ahead than this is not trusted to count as "newest".
pub const FUTURE_TOLERANCE: Duration = Duration::minutes(5);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionDecision {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub keep: bool,
    /// Why it is kept (empty when removed).
    pub reasons: Vec<String>,
}

/// Decides for one pool of complete backups (one target, one kind). Input order does not
/// matter; output is newest first.
pub fn decide(
    backups: &[(String, DateTime<Utc>)],
    policy: &Keeps,
    now: DateTime<Utc>,
) -> Vec<RetentionDecision> {
    let mut sorted: Vec<&(String, DateTime<Utc>)> = backups.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let mut decisions = Vec::with_capacity(sorted.len());
    let (mut days, mut weeks, mut months) = (HashSet::new(), HashSet::new(), HashSet::new());
    let mut counted = 0u32;
    for (id, created) in sorted {
        let mut reasons = Vec::new();
        if *created > now + FUTURE_TOLERANCE {
            reasons.push(
                "dated in the future (clock skew?): kept and not counted; check it by hand"
                    .to_string(),
            );
            decisions.push(RetentionDecision {
                id: id.clone(),
                created_at: *created,
                keep: true,
                reasons,
            });
            continue;
        }
        if counted == 0 {
            reasons.push("newest complete backup (always kept)".to_string());
        }
        let (last, last_key) = &policy.last;
        if counted < *last {
            reasons.push(format!("{last_key} {}/{last}", counted + 1));
        }
        let day = created.format("%Y-%m-%d").to_string();
        if !days.contains(&day) && (days.len() as u32) < policy.daily.0 {
            reasons.push(format!("{} {day}", policy.daily.1));
            days.insert(day);
        }
        let iso = created.iso_week();
        let week = format!("{}-W{:02}", iso.year(), iso.week());
        if !weeks.contains(&week) && (weeks.len() as u32) < policy.weekly.0 {
            reasons.push(format!("{} {week}", policy.weekly.1));
            weeks.insert(week);
        }
        let month = created.format("%Y-%m").to_string();
        if !months.contains(&month) && (months.len() as u32) < policy.monthly.0 {
            reasons.push(format!("{} {month}", policy.monthly.1));
            months.insert(month);
        }
        counted += 1;
        decisions.push(RetentionDecision {
            id: id.clone(),
            created_at: *created,
            keep: !reasons.is_empty(),
            reasons,
        });
    }
    decisions
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    fn history(times: &[DateTime<Utc>]) -> Vec<(String, DateTime<Utc>)> {
        times
            .iter()
            .map(|t| (t.format("b-%Y%m%dT%H%M%SZ").to_string(), *t))
            .collect()
    }

    fn kept(decisions: &[RetentionDecision]) -> Vec<DateTime<Utc>> {
        decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| d.created_at)
            .collect()
    }

    fn policy(last: u32, daily: u32, weekly: u32, monthly: u32) -> Keeps {
        let config = crate::config::RetentionConfig {
            keep_last: last,
            keep_daily: daily,
            keep_weekly: weekly,
            keep_monthly: monthly,
            ..Default::default()
        };
        config.keeps(crate::config::RetentionKind::Other)
    }

    #[test]
    fn daily_for_a_year() {
        let now = at(2026, 12, 31, 23);
        let times: Vec<_> = (0..365)
            .map(|i| at(2026, 1, 1, 2) + Duration::days(i))
            .collect();
        let d = decide(&history(&times), &policy(3, 7, 4, 12), now);
        let k = kept(&d);
        // 7 daily (covers the 3 last), 4 weekly (first overlaps daily), 12 monthly (first overlaps).
        assert!(k.contains(&at(2026, 12, 31, 2)));
        assert!(k.contains(&at(2026, 12, 25, 2)));
        assert!(!k.contains(&at(2026, 12, 24, 2)) || k.contains(&at(2026, 12, 20, 2)));
        assert!(
            k.contains(&at(2026, 1, 31, 2)),
            "newest of January kept as monthly"
        );
        assert!(!k.contains(&at(2026, 1, 1, 2)));
        let months: HashSet<u32> = k.iter().map(|t| t.month()).collect();
        assert_eq!(months.len(), 12);
        assert!(k.len() <= 3 + 7 + 4 + 12);
        assert!(k.len() >= 12 + 6);
    }

    #[test]
    fn several_per_day_keeps_newest_of_each_day() {
        let now = at(2026, 3, 10, 23);
        let times = vec![
            at(2026, 3, 10, 1),
            at(2026, 3, 10, 13),
            at(2026, 3, 9, 1),
            at(2026, 3, 9, 13),
            at(2026, 3, 8, 5),
        ];
        let k = kept(&decide(&history(&times), &policy(0, 2, 0, 0), now));
        assert_eq!(k, vec![at(2026, 3, 10, 13), at(2026, 3, 9, 13)]);
    }

    #[test]
    fn gaps_do_not_count_as_days() {
        let now = at(2026, 6, 30, 0);
        let times = vec![at(2026, 6, 29, 1), at(2026, 6, 1, 1), at(2026, 5, 1, 1)];
        let k = kept(&decide(&history(&times), &policy(0, 3, 0, 0), now));
        assert_eq!(
            k.len(),
            3,
            "three distinct days with backups, however far apart"
        );
    }

    #[test]
    fn zero_keeps_still_keep_the_newest() {
        let now = at(2026, 6, 30, 0);
        let times = vec![at(2026, 6, 29, 1), at(2026, 6, 28, 1)];
        let d = decide(&history(&times), &policy(0, 0, 0, 0), now);
        assert_eq!(kept(&d), vec![at(2026, 6, 29, 1)]);
        assert!(d[0].reasons[0].contains("newest"));
    }

    #[test]
    fn future_dated_backup_does_not_shadow_real_ones() {
        let now = at(2026, 6, 30, 0);
        let times = vec![
            at(2027, 6, 30, 0),
            at(2026, 6, 29, 1),
            at(2026, 6, 28, 1),
            at(2026, 6, 27, 1),
        ];
        let d = decide(&history(&times), &policy(2, 0, 0, 0), now);
        assert_eq!(
            kept(&d),
            vec![at(2027, 6, 30, 0), at(2026, 6, 29, 1), at(2026, 6, 28, 1)]
        );
        assert!(d[0].reasons[0].contains("future"));
    }

    #[test]
    fn weeks_and_months_cross_year_end_in_utc() {
        let now = at(2027, 1, 10, 0);
        // 2026-12-31 and 2027-01-01 share ISO week 2026-W53.
        let times = vec![at(2027, 1, 1, 1), at(2026, 12, 31, 23), at(2026, 12, 24, 1)];
        let k = kept(&decide(&history(&times), &policy(0, 0, 2, 0), now));
        assert_eq!(k, vec![at(2027, 1, 1, 1), at(2026, 12, 24, 1)]);
        let k = kept(&decide(&history(&times), &policy(0, 0, 0, 2), now));
        assert_eq!(k, vec![at(2027, 1, 1, 1), at(2026, 12, 31, 23)]);
    }
}
