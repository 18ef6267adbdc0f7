//! `[retention] pitr_window`: every point in time of the last stretch stays restorable.
//! A restore to a point needs a base backup consistent by then and every WAL segment
//! from that backup's start to the point, so the window keeps the newest base backup
//! consistent at or before its start (its anchor), every later one, and the WAL from the
//! anchor's start on. Older base backups kept by the other rules keep only the WAL that
//! makes them consistent: they restore to their own end point, not to any time (that is
//! the tier: "PITR for 14 days, a base backup a week for 3 months"). Pure: prune acts.

use chrono::{DateTime, Duration, Utc};

use super::retention::RetentionDecision;

fn window_text(window: Duration) -> String {
    crate::units::duration(window.to_std().unwrap_or_default())
}

/// Where the window starts; a window longer than the calendar starts at its beginning.
fn window_start(now: DateTime<Utc>, window: Duration) -> DateTime<Utc> {
    now.checked_sub_signed(window)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn time_text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Marks kept the base backups of one cluster that a restore to any point of the window
/// needs, with the rule as the reason. `consistent_by` gives each backup's end (when it
/// became restorable); a decision without one is left alone.
pub fn keep_window(
    decisions: &mut [RetentionDecision],
    consistent_by: &[(String, DateTime<Utc>)],
    window: Duration,
    now: DateTime<Utc>,
) {
    let start = window_start(now, window);
    let end_of = |id: &str| {
        consistent_by
            .iter()
            .find(|(b, _)| b == id)
            .map(|(_, at)| *at)
    };
    let anchor = decisions
        .iter()
        .filter_map(|d| Some((d.id.clone(), end_of(&d.id)?)))
        .filter(|(_, at)| *at <= start)
        .max_by_key(|(id, at)| (*at, id.clone()))
        .map(|(id, _)| id);
    let w = window_text(window);
    for d in decisions.iter_mut() {
        let Some(at) = end_of(&d.id) else { continue };
        let reason = if Some(&d.id) == anchor.as_ref() {
            format!(
                "pitr_window {w}: the newest base backup consistent by the window's start {}",
                time_text(start)
            )
        } else if at > start {
            format!("pitr_window {w}: inside the window")
        } else {
            continue;
        };
        d.keep = true;
        d.reasons.push(reason);
    }
}

/// A kept base backup, as far as its WAL goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptBase {
    pub id: String,
    pub start_segno: u64,
    pub stop_segno: u64,
    pub consistent_by: DateTime<Utc>,
}

/// A run of archived WAL that stays, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalNeed {
    pub from_segno: u64,
    /// `None`: up to the newest archived segment.
    pub to_segno: Option<u64>,
    pub reason: String,
}

/// The WAL the kept base backups of one cluster need. Without a window, everything from
/// the oldest kept start on (any point after any kept backup restores). With one,
/// everything from the anchor's start on, and for each older kept backup only its own
/// start to end. No kept backup, no need: the caller keeps everything then.
pub fn wal_needs(kept: &[KeptBase], window: Option<Duration>, now: DateTime<Utc>) -> Vec<WalNeed> {
    let Some(oldest) = kept.iter().min_by_key(|b| (b.start_segno, b.consistent_by)) else {
        return vec![];
    };
    let Some(window) = window else {
        return vec![WalNeed {
            from_segno: oldest.start_segno,
            to_segno: None,
            reason: format!(
                "base backup {} (the oldest kept) needs them to become consistent, and every later one to recover to now",
                oldest.id
            ),
        }];
    };
    let start = window_start(now, window);
    let anchor = kept
        .iter()
        .filter(|b| b.consistent_by <= start)
        .max_by_key(|b| (b.consistent_by, b.start_segno))
        .unwrap_or(oldest);
    let mut needs = vec![WalNeed {
        from_segno: anchor.start_segno,
        to_segno: None,
        reason: format!(
            "pitr_window {}: any point since {} restores from base backup {} with them",
            window_text(window),
            time_text(start),
            anchor.id
        ),
    }];
    let mut older: Vec<&KeptBase> = kept
        .iter()
        .filter(|b| b.start_segno < anchor.start_segno)
        .collect();
    older.sort_by_key(|b| b.start_segno);
    for b in older {
        needs.push(WalNeed {
            from_segno: b.start_segno,
            to_segno: Some(b.stop_segno),
            reason: format!(
                "base backup {} (kept, outside the pitr_window) needs them to become consistent",
                b.id
            ),
        });
    }
    needs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::retention::decide;
    use crate::config::{RetentionConfig, RetentionKind};
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    /// Daily base backups at 02:00 (consistent by 02:30) and the decisions of a policy
    /// that keeps only the newest, then the window on top.
    fn decided(
        days: &[DateTime<Utc>],
        window: Duration,
        now: DateTime<Utc>,
        weekly: u32,
    ) -> Vec<RetentionDecision> {
        let pool: Vec<(String, DateTime<Utc>)> = days
            .iter()
            .map(|t| (t.format("b-%Y%m%d").to_string(), *t))
            .collect();
        let ends: Vec<(String, DateTime<Utc>)> = pool
            .iter()
            .map(|(id, t)| (id.clone(), *t + Duration::minutes(30)))
            .collect();
        let policy = RetentionConfig {
            keep_weekly: weekly,
            ..Default::default()
        };
        let mut d = decide(&pool, &policy.keeps(RetentionKind::Physical), now);
        keep_window(&mut d, &ends, window, now);
        d
    }

    fn kept_ids(d: &[RetentionDecision]) -> Vec<&str> {
        d.iter().filter(|d| d.keep).map(|d| d.id.as_str()).collect()
    }

    #[test]
    fn the_window_keeps_its_anchor_and_everything_after_across_a_month_end() {
        let days: Vec<_> = (0..20)
            .map(|i| at(2026, 2, 20, 2) + Duration::days(i))
            .collect();
        // Now is 2026-03-05 12:00; a 7-day window starts 2026-02-26 12:00: the backup of
        // 02-26 (consistent 02:30) is the anchor, 02-25 is not needed, February's end and
        // March's start are inside.
        let now = at(2026, 3, 5, 12);
        let d = decided(&days, Duration::days(7), now, 0);
        let kept = kept_ids(&d);
        assert_eq!(kept.first(), Some(&"b-20260311"), "future-dated kept too");
        assert!(kept.contains(&"b-20260226") && kept.contains(&"b-20260305"));
        assert!(kept.contains(&"b-20260228") && kept.contains(&"b-20260301"));
        assert!(!kept.contains(&"b-20260225"), "{kept:?}");
        let anchor = d.iter().find(|d| d.id == "b-20260226").unwrap();
        assert!(anchor.reasons[0].contains("consistent by the window's start 2026-02-26 12:00:00"));
        let inside = d.iter().find(|d| d.id == "b-20260301").unwrap();
        assert_eq!(inside.reasons, vec!["pitr_window 7d: inside the window"]);
        // Every day from the anchor to now: 8 base backups, plus the 6 dated after now.
        assert_eq!(kept.len(), 8 + 6, "{kept:?}");
    }

    #[test]
    fn a_backup_still_running_at_the_window_start_is_not_its_anchor() {
        // Started 02:00, consistent 02:30: the window's start 02:15 is before its end, so
        // the day before has to stay.
        let days = vec![at(2026, 3, 3, 2), at(2026, 3, 4, 2), at(2026, 3, 5, 2)];
        let now = at(2026, 3, 6, 2) + Duration::minutes(15);
        let d = decided(&days, Duration::days(1), now, 0);
        assert_eq!(kept_ids(&d), vec!["b-20260305", "b-20260304"]);
    }

    #[test]
    fn other_rules_still_keep_older_backups_and_the_newest_is_always_kept() {
        let days: Vec<_> = (0..60)
            .map(|i| at(2026, 1, 1, 2) + Duration::days(i))
            .collect();
        let now = at(2026, 3, 1, 12);
        let d = decided(&days, Duration::days(3), now, 4);
        let kept = kept_ids(&d);
        assert!(kept.contains(&"b-20260301"), "newest");
        for weekly in ["b-20260222", "b-20260215", "b-20260208"] {
            assert!(kept.contains(&weekly), "{weekly} kept weekly: {kept:?}");
        }
        assert!(!kept.contains(&"b-20260221"));
        // A window longer than the history keeps everything and anchors nothing.
        let d = decided(&days[..3], Duration::days(30), at(2026, 1, 4, 0), 0);
        assert_eq!(kept_ids(&d).len(), 3);
        assert!(d
            .iter()
            .all(|d| !d.reasons.iter().any(|r| r.contains("window's start"))));
    }

    fn base(id: &str, start: u64, stop: u64, end: DateTime<Utc>) -> KeptBase {
        KeptBase {
            id: id.into(),
            start_segno: start,
            stop_segno: stop,
            consistent_by: end,
        }
    }

    #[test]
    fn wal_outside_the_window_is_only_what_makes_older_backups_consistent() {
        let kept = vec![
            base("weekly-1", 10, 11, at(2026, 1, 5, 2)),
            base("weekly-2", 40, 41, at(2026, 1, 12, 2)),
            base("anchor", 70, 70, at(2026, 1, 19, 2)),
            base("inside", 90, 91, at(2026, 1, 22, 2)),
        ];
        let now = at(2026, 1, 24, 0);
        let needs = wal_needs(&kept, Some(Duration::days(3)), now);
        let ranges: Vec<(u64, Option<u64>)> =
            needs.iter().map(|n| (n.from_segno, n.to_segno)).collect();
        assert_eq!(ranges, vec![(70, None), (10, Some(11)), (40, Some(41))]);
        assert!(needs[0].reason.contains("pitr_window 3d") && needs[0].reason.contains("anchor"));
        assert!(needs[1].reason.contains("weekly-1"));
        // Without a window: from the oldest kept on, as before.
        let needs = wal_needs(&kept, None, now);
        assert_eq!((needs[0].from_segno, needs[0].to_segno), (10, None));
        assert_eq!(needs.len(), 1);
        // A window reaching before every backup: from the oldest on.
        let needs = wal_needs(&kept, Some(Duration::days(60)), now);
        assert_eq!((needs[0].from_segno, needs[0].to_segno), (10, None));
        assert!(wal_needs(&[], Some(Duration::days(1)), now).is_empty());
    }
}
