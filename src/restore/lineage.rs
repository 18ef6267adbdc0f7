//! Which cluster and which timeline a point-in-time restore follows.
//!
//! One target name may hold several clusters (a rebuilt cluster, a second cluster with a
//! copied dr.toml) and one cluster several timelines (a promoted copy, an old primary that
//! came back). Guessing "the newest" restores the wrong data without a word, so the choice
//! comes from the target's live server when it answers, else from what the operator says
//! (`--system-id`, `--timeline`), else from the archive only when it is unambiguous.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};

use crate::config::PostgresTarget;
use crate::error::usage;
use crate::pg::ConnTarget;
use crate::storage::Storage;
use crate::wal::continuity::{Chain, TimelineHistory};
use crate::wal::{self, ArchivedFile, WalKind};

/// How long dr waits for the target's server before it decides it does not answer.
const LIVE_SERVER_TIMEOUT: Duration = Duration::from_secs(3);

/// What the target's server says about itself, when it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveServer {
    pub system_id: u64,
    pub timeline: u32,
    pub archiving: bool,
    pub in_recovery: bool,
}

/// Asks the target's server who it is; `None` when it does not answer (the usual case
/// during an incident: it is what is being restored).
pub async fn live_server(target: &PostgresTarget) -> Option<LiveServer> {
    let url = target.resolve_url().ok()?;
    let mut conn = ConnTarget::parse(&url).ok()?;
    conn.config.connect_timeout(LIVE_SERVER_TIMEOUT);
    let asked = async {
        let client = conn.connect().await?;
        let row = client
            .query_one(
                "SELECT (SELECT system_identifier::text FROM pg_control_system()), \
                        CASE WHEN pg_is_in_recovery() \
                             THEN (SELECT timeline_id FROM pg_control_checkpoint()) \
                             ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END, \
                        current_setting('archive_mode') <> 'off', \
                        pg_is_in_recovery()",
                &[],
            )
            .await?;
        let system: String = row.get(0);
        let timeline: i32 = row.get(1);
        anyhow::Ok(LiveServer {
            system_id: system.parse()?,
            timeline: u32::try_from(timeline)?,
            archiving: row.get(2),
            in_recovery: row.get(3),
        })
    };
    match tokio::time::timeout(LIVE_SERVER_TIMEOUT * 2, asked).await {
        Ok(Ok(live)) => Some(live),
        Ok(Err(e)) => {
            tracing::debug!("the server of {} does not answer: {e:#}", target.name);
            None
        }
        Err(_) => None,
    }
}

/// How the cluster was chosen, for the report.
#[derive(Debug, Clone)]
pub struct ClusterChoice {
    pub system_id: u64,
    pub why: String,
}

/// The cluster to restore: `--system-id`, else the live server's, else the only one
/// stored. Several stored and nothing to choose by is exit 2 naming them.
pub fn choose_cluster(
    target: &str,
    stored: &[(u64, String)],
    given: Option<u64>,
    live: Option<&LiveServer>,
) -> Result<ClusterChoice> {
    let list = || {
        stored
            .iter()
            .map(|(id, newest)| format!("{id} (newest base backup {newest})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(id) = given {
        if !stored.iter().any(|(s, _)| *s == id) {
            return Err(usage(format!(
                "--system-id {id}: {target} has no physical base backup of that cluster; stored: {}; hint: `dr list --target {target}` shows each cluster's window",
                list()
            )));
        }
        return Ok(ClusterChoice {
            system_id: id,
            why: format!("cluster {id} (--system-id)"),
        });
    }
    if let Some(live) = live {
        if stored.iter().any(|(s, _)| *s == live.system_id) {
            return Ok(ClusterChoice {
                system_id: live.system_id,
                why: format!(
                    "cluster {} (the system identifier of {target}'s server)",
                    live.system_id
                ),
            });
        }
        if stored.len() > 1 {
            return Err(usage(format!(
                "{target}'s server is cluster {} and none of its base backups is stored; stored clusters: {}; nothing was changed; hint: pass --system-id ID to restore one of them, or take a base backup of the live cluster (`dr backup --physical --target {target}`)",
                live.system_id,
                list()
            )));
        }
    }
    match stored {
        [] => Err(anyhow!("{target} has no physical base backup")),
        [(id, _)] => Ok(ClusterChoice {
            system_id: *id,
            why: match live {
                Some(l) => format!(
                    "cluster {id}, the only one stored (the live server is another cluster, {})",
                    l.system_id
                ),
                None => format!("cluster {id}, the only one stored"),
            },
        }),
        _ => Err(usage(format!(
            "{target} holds base backups of several clusters: {}; its server does not answer, so dr cannot tell which one it is; nothing was changed; hint: pass --system-id ID (`dr list --target {target}` shows each cluster's window)",
            list()
        ))),
    }
}

/// `--timeline`: a number, `latest` (the newest archived) or `current` (the live server's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimelineChoice {
    Number(u32),
    Latest,
    Current,
}

impl TimelineChoice {
    pub fn parse(text: &str) -> Result<TimelineChoice> {
        match text.trim() {
            "latest" => Ok(TimelineChoice::Latest),
            "current" => Ok(TimelineChoice::Current),
            n => n
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1)
                .map(TimelineChoice::Number)
                .ok_or_else(|| {
                    usage(format!(
                        "--timeline {n:?} is not a timeline; hint: pass a number (1, 2, ...), latest or current"
                    ))
                }),
        }
    }
}

/// The timelines the archive of one cluster holds, ascending.
pub fn archived_timelines(files: &[ArchivedFile]) -> Vec<u32> {
    let mut t: Vec<u32> = files
        .iter()
        .filter(|f| matches!(f.wal.kind, WalKind::Segment | WalKind::History))
        .map(|f| f.wal.timeline)
        .collect();
    t.sort_unstable();
    t.dedup();
    t
}

/// The timeline to follow, and a note when the choice deserves the operator's eye.
pub fn choose_timeline(
    choice: Option<TimelineChoice>,
    timelines: &[u32],
    live: Option<&LiveServer>,
    system_id: u64,
) -> Result<(u32, String)> {
    let newest = timelines.last().copied().unwrap_or(1);
    let live_here = live.filter(|l| l.system_id == system_id);
    let others = |chosen: u32| {
        let rest: Vec<String> = timelines
            .iter()
            .filter(|t| **t != chosen)
            .map(u32::to_string)
            .collect();
        if rest.is_empty() {
            String::new()
        } else {
            format!("; the archive also holds timeline(s) {}", rest.join(", "))
        }
    };
    let known = |t: u32| -> Result<u32> {
        if t > newest && !timelines.contains(&t) {
            return Err(usage(format!(
                "timeline {t} is not in the archive (it holds {}); nothing was changed; hint: pass one of them with --timeline",
                timelines.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(t)
    };
    match choice {
        Some(TimelineChoice::Number(n)) => {
            let t = known(n)?;
            Ok((t, format!("timeline {t} (--timeline){}", others(t))))
        }
        Some(TimelineChoice::Latest) => Ok((
            newest,
            format!("timeline {newest}, the newest archived (--timeline latest){}", others(newest)),
        )),
        Some(TimelineChoice::Current) => {
            let Some(l) = live_here else {
                return Err(usage(
                    "--timeline current needs the target's server to answer (it is another cluster, or it does not answer); nothing was changed; hint: pass the timeline number or latest",
                ));
            };
            let t = known(l.timeline)?;
            Ok((t, format!("timeline {t}, the live server's (--timeline current){}", others(t))))
        }
        None => match live_here {
            Some(l) if timelines.contains(&l.timeline) || l.timeline <= newest => Ok((
                l.timeline,
                format!("timeline {}, the live server's{}", l.timeline, others(l.timeline)),
            )),
            _ if timelines.len() > 1 => Ok((
                newest,
                format!(
                    "warning: timeline {newest}, the newest archived, because the server does not say which one it runs{}; pass --timeline to choose",
                    others(newest)
                ),
            )),
            _ => Ok((newest, format!("timeline {newest}"))),
        },
    }
}

/// The chain recovery follows to reach `timeline`: from its history file.
pub async fn chain_to(
    storage: &dyn Storage,
    files: &[ArchivedFile],
    timeline: u32,
    segment_size: u64,
) -> Result<Chain> {
    if timeline <= 1 {
        return Ok(Chain::single(timeline.max(1)));
    }
    let name = format!("{timeline:08X}.history");
    let Some(history) = files
        .iter()
        .find(|f| f.wal.kind == WalKind::History && f.wal.name == name)
    else {
        if files
            .iter()
            .any(|f| f.wal.timeline == timeline && f.wal.kind == WalKind::Segment)
        {
            bail!("timeline {timeline} has archived WAL but its history file {name} is not archived, so recovery cannot follow it; hint: push it from the server's pg_wal (`dr wal-push pg_wal/{name}`)");
        }
        return Ok(Chain::single(timeline));
    };
    let raw = wal::read_small(storage, history).await?;
    let text = String::from_utf8_lossy(&raw);
    let parsed = TimelineHistory::parse(timeline, &text)
        .map_err(|e| anyhow!("{} is corrupt: {e:#}; hint: restore the file from the cluster's pg_wal, or choose another --timeline", history.key))?;
    Ok(Chain::from_history(&parsed, segment_size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(system_id: u64, timeline: u32) -> LiveServer {
        LiveServer {
            system_id,
            timeline,
            archiving: true,
            in_recovery: false,
        }
    }

    #[test]
    fn the_cluster_comes_from_the_flag_the_server_or_the_only_one() {
        let two = vec![(1, "a".to_string()), (2, "b".to_string())];
        assert_eq!(
            choose_cluster("m", &two, Some(1), None).unwrap().system_id,
            1
        );
        assert!(choose_cluster("m", &two, Some(3), None).is_err());
        assert_eq!(
            choose_cluster("m", &two, None, Some(&live(2, 1)))
                .unwrap()
                .system_id,
            2
        );
        let e = choose_cluster("m", &two, None, None).unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 2);
        assert!(format!("{e:#}").contains("1 (newest base backup a), 2"));
        assert!(choose_cluster("m", &two, None, Some(&live(9, 1))).is_err());
        let one = vec![(1, "a".to_string())];
        assert_eq!(choose_cluster("m", &one, None, None).unwrap().system_id, 1);
    }

    #[test]
    fn the_timeline_follows_the_live_server_unless_told() {
        let tl = [1, 2];
        assert_eq!(
            choose_timeline(None, &tl, Some(&live(7, 1)), 7).unwrap().0,
            1
        );
        let (t, note) = choose_timeline(None, &tl, None, 7).unwrap();
        assert_eq!(t, 2);
        assert!(note.starts_with("warning:") && note.contains("timeline(s) 1"));
        assert_eq!(
            choose_timeline(Some(TimelineChoice::Number(1)), &tl, None, 7)
                .unwrap()
                .0,
            1
        );
        assert!(choose_timeline(Some(TimelineChoice::Number(5)), &tl, None, 7).is_err());
        assert!(choose_timeline(Some(TimelineChoice::Current), &tl, None, 7).is_err());
        assert_eq!(
            TimelineChoice::parse("latest").unwrap(),
            TimelineChoice::Latest
        );
        assert!(TimelineChoice::parse("0").is_err());
    }
}
