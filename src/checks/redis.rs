//! `redis.connect` and `redis.persistence`.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};

use super::{CheckContext, Finding, PlannedCheck};
use crate::config::RedisTarget;
use crate::redis_client;

pub fn plan(ctx: &Arc<CheckContext>, out: &mut Vec<PlannedCheck>) {
    for target in &ctx.config.redis {
        let t = target.clone();
        out.push(PlannedCheck {
            name: "redis.connect",
            target: Some(t.name.clone()),
            critical: t.critical,
            timeout_per_read: false,
            run: Box::pin(async move { connect(&t).await }),
        });
        let t = target.clone();
        out.push(PlannedCheck {
            name: "redis.persistence",
            target: Some(t.name.clone()),
            critical: t.critical,
            timeout_per_read: false,
            run: Box::pin(async move { persistence(&t).await }),
        });
        if let (true, Some(store)) = (target.backup, ctx.storage.clone()) {
            let (t, rpo) = (target.clone(), ctx.config.objectives.rpo);
            out.push(PlannedCheck {
                name: "redis.backup",
                target: Some(target.name.clone()),
                // Its data is backed up because someone wants it back: a missed RPO or an
                // emptied server is not ready, as for a PostgreSQL target.
                critical: true,
                timeout_per_read: false,
                run: Box::pin(async move { backup(store.as_ref(), &t, rpo).await }),
            });
        }
    }
}

/// `redis.backup`: the newest backup is young enough, and the live server still holds
/// about what it holds. A Redis that came back empty (FLUSHALL, a restart that loaded an
/// empty RDB) answers PING like a healthy one; only the key count tells.
async fn backup(
    storage: &dyn crate::storage::Storage,
    target: &RedisTarget,
    rpo: Option<std::time::Duration>,
) -> Result<Finding> {
    let (age, newest) = super::backup::latest_redis(storage, &target.name, rpo).await?;
    let Some((id, backed_up)) = newest else {
        return Ok(age);
    };
    let live = match redis_client::open(target).await {
        Ok(mut con) => crate::redis_client::conn::keyspace(&mut con)
            .await
            .map(|k| k.values().map(|(keys, _)| keys).sum::<u64>())
            .ok(),
        Err(_) => None,
    };
    let Some(live) = live else {
        return Ok(age);
    };
    let counts = format!("the server holds {live} keys, backup {id} {backed_up}");
    if backed_up > 0 && live == 0 {
        return Ok(Finding::fail(format!(
            "{}; {counts}: the data is gone (a FLUSHALL, or a restart that loaded an empty RDB); hint: `dr restore --target {} --backup-id {id}` (see `dr runbook show redis-failure`)",
            age.message, target.name
        )));
    }
    if live * 2 < backed_up {
        return Ok(Finding::warn(format!(
            "{}; {counts}: fewer than half; hint: find out where the keys went before the next backup replaces this one",
            age.message
        )));
    }
    Ok(Finding {
        status: age.status,
        message: format!("{}; {counts}", age.message),
    })
}

async fn connect(target: &RedisTarget) -> Result<Finding> {
    let started = Instant::now();
    let mut con = match redis_client::open(target).await {
        Ok(c) => c,
        Err(e) => return Ok(Finding::fail(format!("{e:#}"))),
    };
    let pong: String = redis::cmd("PING")
        .query_async(&mut con)
        .await
        .context("PING failed")?;
    if pong != "PONG" {
        return Ok(Finding::fail(format!(
            "PING answered {pong:?} instead of PONG"
        )));
    }
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut con)
        .await
        .unwrap_or_default();
    let version = redis_client::info_field(&info, "redis_version").unwrap_or("unknown");
    Ok(Finding::pass(format!(
        "PING answered in {}; Redis {version}",
        crate::units::duration(started.elapsed())
    )))
}

async fn persistence(target: &RedisTarget) -> Result<Finding> {
    let mut con = match redis_client::open(target).await {
        Ok(c) => c,
        Err(_) => {
            return Ok(Finding::fail(
                "cannot connect (see redis.connect), so persistence is unknown",
            ))
        }
    };
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query_async(&mut con)
        .await
        .context("INFO persistence failed")?;
    // CONFIG may be renamed or forbidden on managed Redis: then persistence settings are unknown.
    let save_rules: Option<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("save")
        .query_async::<Vec<String>>(&mut con)
        .await
        .ok()
        .and_then(|v| v.get(1).cloned());
    Ok(judge_persistence(
        &info,
        save_rules.as_deref(),
        target.persistent,
        chrono::Utc::now().timestamp(),
    ))
}

/// The verdict on `INFO persistence` (pure, so it is unit-tested).
pub fn judge_persistence(
    info: &str,
    save_rules: Option<&str>,
    must_persist: bool,
    now: i64,
) -> Finding {
    let field = |k| redis_client::info_field(info, k);
    if field("rdb_last_bgsave_status") == Some("err") {
        return Finding::warn(
            "the last RDB save (BGSAVE) failed: data written since the last good save would be lost on restart; hint: check the Redis log, free disk space and permissions of the Redis dir, then run BGSAVE",
        );
    }
    let aof_on = field("aof_enabled") == Some("1");
    if aof_on && field("aof_last_write_status") == Some("err") {
        return Finding::warn(
            "the last AOF write failed; hint: check the Redis log and the disk holding the AOF, then run BGREWRITEAOF",
        );
    }
    let rdb_on = save_rules.map(|s| !s.trim().is_empty());
    let last_save = field("rdb_last_save_time").and_then(|v| v.parse::<i64>().ok());
    let age = last_save
        .map(|t| crate::units::duration(std::time::Duration::from_secs((now - t).max(0) as u64)));
    match (must_persist, aof_on, rdb_on) {
        (true, false, Some(false)) => Finding::warn(
            "persistence is off (no RDB save rules, AOF disabled) but this target is persistent = true: a restart loses every key; hint: CONFIG SET appendonly yes (and persist it in redis.conf), or set save rules",
        ),
        (_, true, _) => Finding::pass(format!("AOF on, last write ok; last RDB save {} ago", age.unwrap_or_else(|| "unknown".into()))),
        (_, false, Some(true)) => Finding::pass(format!("RDB snapshots on, last save ok {} ago", age.unwrap_or_else(|| "unknown".into()))),
        (true, false, None) => Finding::warn(
            "persistence settings are unknown (CONFIG GET is not allowed) and AOF is off; hint: confirm the RDB save schedule with your provider",
        ),
        (false, false, _) => Finding::pass("persistence off; this target is not marked persistent (a cache)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;

    const OK: &str = "# Persistence\r\nrdb_changes_since_last_save:0\r\nrdb_last_save_time:1000\r\nrdb_last_bgsave_status:ok\r\naof_enabled:0\r\naof_last_write_status:ok\r\n";

    #[test]
    fn failed_bgsave_warns() {
        let info = OK.replace("rdb_last_bgsave_status:ok", "rdb_last_bgsave_status:err");
        let f = judge_persistence(&info, Some("3600 1"), false, 2000);
        assert_eq!(f.status, Status::Warn);
        assert!(f.message.contains("BGSAVE"));
    }

    #[test]
    fn persistence_off_warns_only_when_required() {
        assert_eq!(
            judge_persistence(OK, Some(""), true, 2000).status,
            Status::Warn
        );
        assert_eq!(
            judge_persistence(OK, Some(""), false, 2000).status,
            Status::Pass
        );
        assert_eq!(
            judge_persistence(OK, Some("3600 1"), true, 2000).status,
            Status::Pass
        );
    }

    #[test]
    fn failed_aof_write_warns() {
        let info = OK
            .replace("aof_enabled:0", "aof_enabled:1")
            .replace("aof_last_write_status:ok", "aof_last_write_status:err");
        assert_eq!(
            judge_persistence(&info, Some(""), true, 2000).status,
            Status::Warn
        );
    }
}
