//! The vocabulary every report shares: a [`Status`], a [`Finding`] (status + message), and a
//! [`Step`] (a named, timed finding in a [`Phase`] of an operation). Checks, validate,
//! restore, verify, drill and prune all speak it, and `output/` renders it.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// `format_version` of every JSON document `dr` prints. 2: every document is an object
/// with `ok`; lists of steps are `steps`; drill `phases`/`passed` became `steps`/`ok`;
/// verify `items` became `steps`; `list`, `backup`, `prune` and `runbook` wrap their lists.
pub const FORMAT_VERSION: u32 = 2;

/// A line for the operator on stderr that is neither a warning nor a log (the id of a
/// safety backup, say). `-q` silences it like every warning.
pub fn notice(message: &str) {
    tracing::info!(target: "notice", "{message}");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// What one check found: a status and a message that says what to do.
#[derive(Debug, Clone)]
pub struct Finding {
    pub status: Status,
    pub message: String,
}

impl Finding {
    pub fn pass(message: impl Into<String>) -> Self {
        Finding {
            status: Status::Pass,
            message: message.into(),
        }
    }
    pub fn warn(message: impl Into<String>) -> Self {
        Finding {
            status: Status::Warn,
            message: message.into(),
        }
    }
    pub fn fail(message: impl Into<String>) -> Self {
        Finding {
            status: Status::Fail,
            message: message.into(),
        }
    }
}

/// Where a step belongs in a recovery. The measured RTO of a drill is the time of the
/// phases a real recovery goes through: preflight, fetch, restore and verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Setting up what a real recovery would not need (a drill's backup or sandbox).
    Prepare,
    /// Proving the restore can start: storage, manifest, tools, destination, disk.
    #[default]
    Preflight,
    /// Fetching and checking the stored bytes.
    Fetch,
    /// Changing the destination.
    Restore,
    /// Proving the result.
    Verify,
    /// Removing what the operation made for itself.
    Cleanup,
}

impl Phase {
    /// Whether the phase is part of the recovery time a drill measures.
    pub fn counts_toward_rto(self) -> bool {
        matches!(
            self,
            Phase::Preflight | Phase::Fetch | Phase::Restore | Phase::Verify
        )
    }
}

/// One named, timed step of an operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    #[serde(default)]
    pub phase: Phase,
    pub status: Status,
    pub message: String,
    pub duration_ms: u64,
}

impl Step {
    pub fn new(name: &str, phase: Phase, finding: Finding, duration_ms: u64) -> Step {
        Step {
            name: name.into(),
            phase,
            status: finding.status,
            message: finding.message,
            duration_ms,
        }
    }
}

/// Records steps as they run; the first failure stops the caller.
#[derive(Debug, Default, Serialize)]
pub struct Steps(pub Vec<Step>);

impl Steps {
    /// Runs `fut` as step `name`: its message on success, its error on failure.
    pub async fn run<T, F>(&mut self, name: &str, phase: Phase, fut: F) -> anyhow::Result<T>
    where
        F: std::future::Future<Output = anyhow::Result<(T, String)>>,
    {
        let started = Instant::now();
        let result = fut.await;
        let duration_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok((value, message)) => {
                self.push(name, phase, Finding::pass(message), duration_ms);
                Ok(value)
            }
            Err(e) => {
                self.push(name, phase, Finding::fail(format!("{e:#}")), duration_ms);
                Err(e.context(format!("step {name} failed")))
            }
        }
    }

    pub fn push(&mut self, name: &str, phase: Phase, finding: Finding, duration_ms: u64) {
        self.0.push(Step::new(name, phase, finding, duration_ms));
    }

    pub fn total_ms(&self) -> u64 {
        self.0.iter().map(|s| s.duration_ms).sum()
    }

    /// The time of the phases a real recovery goes through.
    pub fn recovery_ms(&self) -> u64 {
        self.0
            .iter()
            .filter(|s| s.phase.counts_toward_rto())
            .map(|s| s.duration_ms)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn steps_record_passes_and_the_first_failure() {
        let mut steps = Steps::default();
        let v = steps
            .run("a", Phase::Prepare, async { Ok((7, "fine".to_string())) })
            .await
            .unwrap();
        assert_eq!(v, 7);
        let err = steps
            .run("b", Phase::Fetch, async {
                Err::<((), String), _>(anyhow::anyhow!("broken"))
            })
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("step b failed: broken"));
        assert_eq!(steps.0[0].status, Status::Pass);
        assert_eq!(steps.0[1].status, Status::Fail);
        assert_eq!(steps.0[1].message, "broken");
        steps.push("c", Phase::Verify, Finding::pass("x"), 5);
        steps.push("d", Phase::Cleanup, Finding::pass("y"), 100);
        assert_eq!(steps.recovery_ms(), steps.0[1].duration_ms + 5);
    }
}
