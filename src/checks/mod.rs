//! The readiness engine behind `dr check`. A check is a named future that returns a
//! [`Finding`]; the engine runs them all concurrently, each under a timeout, and turns them
//! into [`CheckResult`]s. Adding a check is one function and one `push` in its family.

pub mod backup;
pub mod config;
pub mod drill;
pub mod encryption;
pub mod evidence;
pub mod incremental;
pub mod notify;
pub mod postgres;
pub mod redis;
pub mod runbooks;
pub mod standby;
pub mod storage;
pub mod wal;
pub mod wal_fetch;
mod wal_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::Serialize;

use crate::config::Config;
use crate::storage::Storage;

pub use crate::report::{Finding, Status};

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub target: Option<String>,
    pub status: Status,
    pub critical: bool,
    pub message: String,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub format_version: u32,
    /// Ready: the same as `ready`, under the name every report uses for success.
    pub ok: bool,
    pub ready: bool,
    pub strict: bool,
    pub checks: Vec<CheckResult>,
}

impl CheckReport {
    /// Ready unless a critical check failed; under `--strict`, unless anything is not a pass.
    pub fn new(checks: Vec<CheckResult>, strict: bool) -> Self {
        let ready = checks.iter().all(|c| match c.status {
            Status::Pass => true,
            Status::Warn => !strict,
            Status::Fail => !strict && !c.critical,
        });
        CheckReport {
            format_version: crate::report::FORMAT_VERSION,
            ok: ready,
            ready,
            strict,
            checks,
        }
    }
}

/// Everything checks may look at; passed explicitly, never global.
pub struct CheckContext {
    pub config: Config,
    pub storage: Option<Arc<dyn Storage>>,
    /// Passwords found in the configuration, scrubbed from every message.
    pub secrets: Vec<String>,
    /// `--timeout`, for checks that apply it per read.
    pub timeout: Duration,
    /// What dead `dr` runs left on this host, found (and removed) before the checks ran.
    pub leftovers: Vec<crate::leftovers::Leftover>,
    /// PostgreSQL connections, one per URL while its checks run, bounded per server.
    pub clients: crate::pg::slots::SharedClients,
    /// Client tool versions, asked once per `pg_bin_dir`.
    pub tools: Arc<postgres::ToolVersions>,
}

pub type CheckFuture = BoxFuture<'static, anyhow::Result<Finding>>;

pub struct PlannedCheck {
    pub name: &'static str,
    pub target: Option<String>,
    pub critical: bool,
    /// The check reads data proportional to a backup's size: the timeout then bounds each
    /// read (inside the check), not the whole check, so a large backup is not a "hang".
    pub timeout_per_read: bool,
    pub run: CheckFuture,
}

/// Every check the configuration calls for.
pub fn plan(ctx: &Arc<CheckContext>) -> Vec<PlannedCheck> {
    let mut checks = Vec::new();
    config::plan(ctx, &mut checks);
    postgres::plan(ctx, &mut checks);
    redis::plan(ctx, &mut checks);
    storage::plan(ctx, &mut checks);
    backup::plan(ctx, &mut checks);
    wal::plan(ctx, &mut checks);
    incremental::plan(ctx, &mut checks);
    standby::plan(ctx, &mut checks);
    drill::plan(ctx, &mut checks);
    encryption::plan(ctx, &mut checks);
    evidence::plan(ctx, &mut checks);
    runbooks::plan(ctx, &mut checks);
    notify::plan(ctx, &mut checks);
    checks
}

/// Runs the checks concurrently; a check that outlives `timeout` fails. Each check's
/// duration is its own: timed inside its task, not from the batch's start to the moment
/// its result is collected.
pub async fn run(
    checks: Vec<PlannedCheck>,
    timeout: Duration,
    secrets: &[String],
) -> Vec<CheckResult> {
    let handles: Vec<_> = checks
        .into_iter()
        .map(|check| {
            let limit = if check.timeout_per_read {
                Duration::MAX
            } else {
                timeout
            };
            let run = check.run;
            let handle = tokio::spawn(async move {
                let started = Instant::now();
                let outcome = tokio::time::timeout(limit, run).await;
                (outcome, started.elapsed())
            });
            (check.name, check.target, check.critical, handle)
        })
        .collect();
    let mut results = Vec::with_capacity(handles.len());
    for (name, target, critical, handle) in handles {
        let (finding, took) = match handle.await {
            Ok((Ok(Ok(finding)), took)) => (finding, took),
            Ok((Ok(Err(e)), took)) => (Finding::fail(format!("{e:#}")), took),
            Ok((Err(_elapsed), took)) => (Finding::fail(format!(
                "timed out after {}; hint: the server accepted the connection but did not answer: check its load and network, or raise --timeout",
                crate::units::duration(timeout)
            )), took),
            Err(join_error) => (
                Finding::fail(format!("check crashed: {join_error}")),
                Duration::ZERO,
            ),
        };
        results.push(CheckResult {
            name: name.to_string(),
            target,
            status: finding.status,
            critical,
            message: crate::secret::scrub(&finding.message, secrets),
            duration_ms: took.as_millis() as u64,
        });
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(status: Status, critical: bool) -> CheckResult {
        CheckResult {
            name: "x".into(),
            target: None,
            status,
            critical,
            message: String::new(),
            duration_ms: 0,
        }
    }

    #[test]
    fn readiness_follows_critical_failures() {
        assert!(
            CheckReport::new(
                vec![result(Status::Pass, true), result(Status::Warn, true)],
                false
            )
            .ready
        );
        assert!(CheckReport::new(vec![result(Status::Fail, false)], false).ready);
        assert!(!CheckReport::new(vec![result(Status::Fail, true)], false).ready);
        assert!(!CheckReport::new(vec![result(Status::Warn, false)], true).ready);
        assert!(!CheckReport::new(vec![result(Status::Fail, false)], true).ready);
        assert!(CheckReport::new(vec![result(Status::Pass, false)], true).ready);
    }

    #[tokio::test]
    async fn hung_check_times_out() {
        let checks = vec![PlannedCheck {
            name: "hang",
            target: None,
            critical: true,
            timeout_per_read: false,
            run: Box::pin(async {
                futures::future::pending::<()>().await;
                Ok(Finding::pass("never"))
            }),
        }];
        let results = run(checks, Duration::from_millis(50), &[]).await;
        assert_eq!(results[0].status, Status::Fail);
        assert!(
            results[0].message.contains("timed out"),
            "{}",
            results[0].message
        );
    }

    #[tokio::test]
    async fn per_read_checks_may_outlast_the_timeout() {
        let checks = vec![PlannedCheck {
            name: "slow but steady",
            target: None,
            critical: true,
            timeout_per_read: true,
            run: Box::pin(async {
                tokio::time::sleep(Duration::from_millis(120)).await;
                Ok(Finding::pass("hashed"))
            }),
        }];
        let results = run(checks, Duration::from_millis(30), &[]).await;
        assert_eq!(results[0].status, Status::Pass, "{}", results[0].message);
    }

    #[tokio::test]
    async fn each_check_reports_its_own_duration() {
        let sleeper = |name: &'static str, ms: u64| PlannedCheck {
            name,
            target: None,
            critical: true,
            timeout_per_read: false,
            run: Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(Finding::pass("done"))
            }),
        };
        // The slow check comes first: collecting results in order must not charge its
        // time to the quick one.
        let results = run(
            vec![sleeper("slow", 400), sleeper("quick", 0)],
            Duration::from_secs(10),
            &[],
        )
        .await;
        assert!(results[0].duration_ms >= 400, "{results:?}");
        assert!(
            results[1].duration_ms < 200,
            "the quick check took {} ms: measured from the batch start?",
            results[1].duration_ms
        );
    }
}
