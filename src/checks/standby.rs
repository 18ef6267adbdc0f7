//! `pg.standby`: for a target that backs up from a standby (`backup_from = "standby"`), is
//! the standby still a standby of this primary, streaming, and close enough behind that a
//! base backup from it is not older than the RPO allows?

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};

use super::{CheckContext, PlannedCheck};
use crate::backup::standby::host_port;
use crate::config::BackupFrom;
use crate::pg::{self, slots::SharedClient};
use crate::report::Finding;
use crate::units;

pub fn plan(ctx: &Arc<CheckContext>, out: &mut Vec<PlannedCheck>) {
    for target in ctx
        .config
        .postgres
        .iter()
        .filter(|t| t.backup_from == BackupFrom::Standby)
    {
        let url = target.resolve_standby_url().and_then(|u| {
            u.ok_or_else(|| anyhow!("backup_from = \"standby\" without a standby URL"))
        });
        let shared = ctx.clients.get(url);
        let rpo = ctx.config.objectives.rpo;
        out.push(PlannedCheck {
            name: "pg.standby",
            target: Some(target.name.clone()),
            critical: target.critical,
            timeout_per_read: false,
            run: Box::pin(async move { standby(&shared, rpo).await }),
        });
    }
}

/// What the standby says about itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StandbyState {
    pub server: String,
    pub in_recovery: bool,
    /// A WAL receiver runs (`pg_stat_wal_receiver` has a row).
    pub receiver: bool,
    /// Its status; `None` when this role may not see it (pg_read_all_stats).
    pub status: Option<String>,
    /// Seconds the replay is behind; `None` when unknown (nothing replayed yet).
    pub lag_s: Option<f64>,
}

const STANDBY_SQL: &str = "
SELECT pg_is_in_recovery(),
       (SELECT count(*) FROM pg_stat_wal_receiver)::int > 0,
       (SELECT status FROM pg_stat_wal_receiver LIMIT 1),
       CASE WHEN NOT pg_is_in_recovery() THEN NULL
            WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0::float8
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END";

async fn standby(shared: &SharedClient, rpo: Option<Duration>) -> Result<Finding> {
    let conn = shared.conn()?;
    let server = host_port(conn);
    let client = match shared.client().await {
        Ok(c) => c,
        Err(e) => {
            return Ok(Finding::fail(format!(
                "cannot connect to the standby at {server} ({e:#}), so base backups from it fail; hint: start the standby or point standby_url at a running one (or set backup_from = \"primary\")"
            )))
        }
    };
    let row = client
        .query_one(STANDBY_SQL, &[])
        .await
        .map_err(|e| anyhow!("{}", pg::describe_pg_error(&e)))?;
    let state = StandbyState {
        server,
        in_recovery: row.try_get(0)?,
        receiver: row.try_get(1)?,
        status: row.try_get(2)?,
        lag_s: row.try_get(3)?,
    };
    Ok(judge_standby(&state, rpo))
}

pub fn judge_standby(s: &StandbyState, rpo: Option<Duration>) -> Finding {
    let server = &s.server;
    if !s.in_recovery {
        return Finding::fail(format!(
            "the standby at {server} is not in recovery (promoted?), so it is no standby of this primary any more; hint: point standby_url at a standby, or set backup_from = \"primary\""
        ));
    }
    if !s.receiver {
        return Finding::fail(format!(
            "the standby at {server} is not streaming (no WAL receiver), so it falls behind the primary; hint: check its primary_conninfo and log, and that the primary admits its replication connection"
        ));
    }
    if let Some(status) = s.status.as_deref().filter(|st| *st != "streaming") {
        return Finding::fail(format!(
            "the standby at {server} has a WAL receiver in state {status:?}, not streaming; hint: check its log and primary_conninfo"
        ));
    }
    let lag = match s.lag_s {
        Some(l) => Duration::from_millis((l.max(0.0) * 1000.0) as u64),
        None => {
            return Finding::warn(format!(
                "the standby at {server} streams, but how far its replay is behind is unknown (it replayed no transaction yet)"
            ))
        }
    };
    let lag_text = units::duration(lag);
    let unseen = if s.status.is_none() {
        "; its WAL receiver's state is hidden from this role (GRANT pg_read_all_stats to it to see it)"
    } else {
        ""
    };
    match rpo {
        Some(rpo) if lag > rpo => Finding::fail(format!(
            "the standby at {server} replays {lag_text} behind the primary, more than the RPO of {}: a base backup from it would already be too old; hint: find why it lags (its log, pg_stat_replication on the primary) or back up from the primary{unseen}",
            units::duration(rpo)
        )),
        Some(rpo) if lag > rpo / 2 => Finding::warn(format!(
            "the standby at {server} replays {lag_text} behind the primary, over half the RPO of {}{unseen}",
            units::duration(rpo)
        )),
        Some(rpo) => Finding::pass(format!(
            "the standby at {server} streams, {lag_text} behind the primary (RPO {}){unseen}",
            units::duration(rpo)
        )),
        None => Finding::pass(format!(
            "the standby at {server} streams, {lag_text} behind the primary (no [objectives] rpo to judge the lag against){unseen}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;

    fn streaming(lag: f64) -> StandbyState {
        StandbyState {
            server: "s:5433".into(),
            in_recovery: true,
            receiver: true,
            status: Some("streaming".into()),
            lag_s: Some(lag),
        }
    }

    #[test]
    fn lag_is_judged_against_the_rpo_with_numbers() {
        let rpo = Some(Duration::from_secs(600));
        let f = judge_standby(&streaming(2.0), rpo);
        assert_eq!(f.status, Status::Pass, "{}", f.message);
        let f = judge_standby(&streaming(400.0), rpo);
        assert_eq!(f.status, Status::Warn);
        assert!(
            f.message.contains("6m 40s") && f.message.contains("10m"),
            "{}",
            f.message
        );
        let f = judge_standby(&streaming(900.0), rpo);
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.message.contains("15m") && f.message.contains("hint:"),
            "{}",
            f.message
        );
        assert_eq!(judge_standby(&streaming(900.0), None).status, Status::Pass);
    }

    #[test]
    fn a_standby_that_does_not_stream_or_was_promoted_fails() {
        let f = judge_standby(
            &StandbyState {
                receiver: false,
                ..streaming(0.0)
            },
            None,
        );
        assert!(f.status == Status::Fail && f.message.contains("not streaming"));
        let f = judge_standby(
            &StandbyState {
                in_recovery: false,
                ..streaming(0.0)
            },
            None,
        );
        assert!(f.status == Status::Fail && f.message.contains("promoted"));
        let f = judge_standby(
            &StandbyState {
                status: Some("waiting".into()),
                ..streaming(0.0)
            },
            None,
        );
        assert_eq!(f.status, Status::Fail);
    }
}
