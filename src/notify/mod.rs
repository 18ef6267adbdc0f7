//! Telling people and monitors about outcomes: `[[notify]]` sinks (webhook, Slack,
//! PagerDuty, heartbeat), the last outcome per operation kept in storage, and the
//! `--metrics-file` of an operation.
//!
//! The rule everything here keeps: sending never changes the outcome. A sink that hangs
//! or refuses, storage that cannot keep the status, a metrics file that cannot be written:
//! each becomes a warning (stderr and the JSON output), never an error or an exit code.
//!
//! A command uses it in two calls: [`OperationRun::start`] before the work (heartbeats
//! ping `/start`), [`OperationRun::finish`] with the outcomes once they are decided.

pub mod payload;
pub mod send;
pub mod state;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::checks::CheckReport;
use crate::config::{Config, NotifyEvent, NotifyOn, NotifySink, SinkKind};
use crate::metrics::{self, Family};
use crate::storage::Storage;
pub use payload::EventDocument;
pub use send::Delivery;
use send::{Label, Post};
use state::LastRun;

/// How one run of an operation ended, per target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Success,
    Failure,
}

/// What a notification says about an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyStatus {
    Failure,
    Success,
    /// A success whose previous run failed.
    Recovered,
}

impl NotifyStatus {
    fn as_str(self) -> &'static str {
        match self {
            NotifyStatus::Failure => "failure",
            NotifyStatus::Success => "success",
            NotifyStatus::Recovered => "recovered",
        }
    }
}

/// The outcome of an operation for one target (or for the whole run: `target: None`).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub target: Option<String>,
    pub status: RunStatus,
    pub message: String,
    pub backup_id: Option<String>,
    pub duration_ms: u64,
    pub size_bytes: Option<u64>,
    pub rto_ms: Option<u64>,
    pub rpo_ms: Option<u64>,
}

impl Outcome {
    pub fn new(target: Option<&str>, ok: bool, message: impl Into<String>) -> Outcome {
        Outcome {
            target: target.map(str::to_string),
            status: if ok {
                RunStatus::Success
            } else {
                RunStatus::Failure
            },
            message: message.into(),
            backup_id: None,
            duration_ms: 0,
            size_bytes: None,
            rto_ms: None,
            rpo_ms: None,
        }
    }
}

impl Outcome {
    /// A backup that was made: its id, duration and stored size.
    pub fn backup_made(target: &str, id: &str, duration_ms: u64, size_bytes: u64) -> Outcome {
        Outcome {
            backup_id: Some(id.to_string()),
            duration_ms,
            size_bytes: Some(size_bytes),
            ..Outcome::new(Some(target), true, format!("backup {id} complete"))
        }
    }
}

/// What sending did, for the command's output: every delivery, and the warnings (failed
/// deliveries, status or metrics that could not be written) also printed on stderr.
#[derive(Debug, Default, Serialize)]
pub struct NotifyReport {
    pub notifications: Vec<Delivery>,
    pub warnings: Vec<String>,
}

/// A configured sink with its display name.
#[derive(Clone)]
pub struct Sink {
    pub name: String,
    pub config: NotifySink,
}

pub fn sinks(config: &Config) -> Vec<Sink> {
    config
        .notify
        .iter()
        .cloned()
        .zip(config.notify_names())
        .map(|(config, name)| Sink { name, config })
        .collect()
}

/// The notification side of one run of an operation.
pub struct OperationRun {
    event: NotifyEvent,
    sinks: Vec<Sink>,
    storage: Option<Arc<dyn Storage>>,
    metrics_file: Option<PathBuf>,
    rpo_objective: Option<std::time::Duration>,
    secrets: Vec<String>,
    host: String,
    started: Instant,
    heartbeat_starts: Vec<JoinHandle<Delivery>>,
}

impl OperationRun {
    /// Before the work: refuses a `--metrics-file` that cannot be written (exit 2, nothing
    /// done) and pings every heartbeat of this event at `/start`, in the background.
    pub fn start(
        config: &Config,
        event: NotifyEvent,
        metrics_file: Option<PathBuf>,
    ) -> Result<OperationRun> {
        Self::start_inner(config, event, true, metrics_file)
    }

    /// `dr check`: sinks hear it only with `--notify`, and only about changes.
    pub fn start_check(
        config: &Config,
        notify: bool,
        metrics_file: Option<PathBuf>,
    ) -> Result<OperationRun> {
        Self::start_inner(config, NotifyEvent::Check, notify, metrics_file)
    }

    fn start_inner(
        config: &Config,
        event: NotifyEvent,
        send: bool,
        metrics_file: Option<PathBuf>,
    ) -> Result<OperationRun> {
        if let Some(path) = &metrics_file {
            metrics::check_path(path)?;
        }
        let sinks: Vec<Sink> = if send {
            sinks(config)
                .into_iter()
                .filter(|s| s.config.hears(event))
                .collect()
        } else {
            Vec::new()
        };
        // Only kept when someone will read it: sinks, or a metrics file.
        let storage = if sinks.is_empty() && metrics_file.is_none() {
            None
        } else {
            config
                .storage
                .as_ref()
                .and_then(|s| crate::storage::open(s).ok())
                .map(Arc::from)
        };
        let mut run = OperationRun {
            event,
            sinks,
            storage,
            metrics_file,
            rpo_objective: config.objectives.rpo,
            secrets: config.secrets(),
            host: host_name(),
            started: Instant::now(),
            heartbeat_starts: Vec::new(),
        };
        let starts: Vec<Sink> = run.heartbeats().into_iter().cloned().collect();
        for sink in starts {
            let (secrets, event) = (run.secrets.clone(), event.as_str());
            run.heartbeat_starts.push(tokio::spawn(async move {
                heartbeat(&sink, event, "start", "/start", Vec::new(), &secrets).await
            }));
        }
        Ok(run)
    }

    fn heartbeats(&self) -> Vec<&Sink> {
        self.sinks
            .iter()
            .filter(|s| s.config.kind == SinkKind::Heartbeat)
            .collect()
    }

    /// After the outcome is decided: status records, sinks, heartbeats, metrics file.
    /// Never fails; what went wrong is in the returned warnings (also on stderr).
    pub async fn finish(mut self, outcomes: Vec<Outcome>) -> NotifyReport {
        let mut report = self.started_pings().await;
        let records = self.remember(&outcomes, &mut report).await;
        let documents: Vec<EventDocument> = outcomes
            .iter()
            .zip(&records)
            .map(|(o, (previous, _))| self.document(o, previous.as_ref()))
            .collect();
        self.send_all(&documents, &mut report).await;
        if let Some(path) = &self.metrics_file {
            let families = self.operation_families(&outcomes, &records).await;
            let text = metrics::render(&families);
            if let Err(e) = write_metrics(path.clone(), text).await {
                report.warnings.push(format!("{e:#}"));
            }
        }
        self.warn(report)
    }

    /// [`Notifier::finish`] after a command that returned `result`; nothing is announced
    /// after a usage error (see [`attempted`]).
    pub async fn finish_after<T>(self, result: &Result<T>, outcomes: Vec<Outcome>) -> NotifyReport {
        if attempted(result) {
            self.finish(outcomes).await
        } else {
            NotifyReport::default()
        }
    }

    /// `dr check`: one outcome (ready or not); with `--notify`, a notification only when
    /// readiness changed since the stored previous check. `exposition` is the check report
    /// as Prometheus text, which the metrics file starts with.
    pub async fn finish_check(mut self, check: &CheckReport, exposition: String) -> NotifyReport {
        let mut report = self.started_pings().await;
        let failed: Vec<String> = check
            .checks
            .iter()
            .filter(|c| c.status == crate::report::Status::Fail)
            .map(|c| match &c.target {
                Some(t) => format!("{} [{t}]: {}", c.name, c.message),
                None => format!("{}: {}", c.name, c.message),
            })
            .collect();
        let mut outcome = Outcome::new(
            None,
            check.ready,
            if check.ready {
                format!("ready: {} check(s) ran", check.checks.len())
            } else {
                format!("not ready: {}", failed.join("; "))
            },
        );
        outcome.duration_ms = self.started.elapsed().as_millis() as u64;
        let outcomes = vec![outcome];
        let records = self.remember(&outcomes, &mut report).await;
        let previous = records[0].0.as_ref().map(|r| r.status);
        let changed = match (previous, outcomes[0].status) {
            (Some(p), now) => p != now,
            // No record yet: a failure is news, readiness is not.
            (None, now) => now == RunStatus::Failure,
        };
        if changed {
            let doc = self.document(&outcomes[0], records[0].0.as_ref());
            self.send_all(&[doc], &mut report).await;
        } else {
            // Heartbeats still hear that the check ran.
            self.send_heartbeats(&[], outcomes[0].status, &mut report)
                .await;
        }
        if let Some(path) = &self.metrics_file {
            let mut text = exposition;
            let mut families = self.operation_families(&outcomes, &records).await;
            families.push(self.rpo_family().await);
            text.push_str(&metrics::render(&families));
            if let Err(e) = write_metrics(path.clone(), text).await {
                report.warnings.push(format!("{e:#}"));
            }
        }
        self.warn(report)
    }

    /// Waits for the `/start` pings (long done, usually), so a monitor never hears the end
    /// of a run before its start.
    async fn started_pings(&mut self) -> NotifyReport {
        let mut report = NotifyReport::default();
        for handle in std::mem::take(&mut self.heartbeat_starts) {
            if let Ok(delivery) = handle.await {
                report.notifications.push(delivery);
            }
        }
        report
    }

    /// Reads each outcome's previous record and stores the new one. Without storage (or
    /// when nobody reads it) the previous outcome is unknown.
    async fn remember(
        &self,
        outcomes: &[Outcome],
        report: &mut NotifyReport,
    ) -> Vec<(Option<LastRun>, Option<LastRun>)> {
        let mut records = Vec::new();
        let op = self.event.as_str();
        for o in outcomes {
            let Some(storage) = &self.storage else {
                records.push((None, None));
                continue;
            };
            let target = o.target.as_deref();
            let previous = match state::read(storage.as_ref(), op, target).await {
                Ok(p) => p,
                Err(e) => {
                    report.warnings.push(format!(
                        "cannot read the previous {op} status: {e:#}; a recovery will not be recognised this time"
                    ));
                    None
                }
            };
            let next = LastRun::next(
                previous.as_ref(),
                op,
                target,
                o.status,
                Utc::now(),
                &crate::secret::scrub(&o.message, &self.secrets),
                o.size_bytes,
            );
            if let Err(e) = state::write(storage.as_ref(), &next).await {
                report.warnings.push(format!(
                    "cannot keep the {op} status: {e:#}; the next run cannot tell a recovery"
                ));
            }
            records.push((previous, Some(next)));
        }
        records
    }

    fn document(&self, o: &Outcome, previous: Option<&LastRun>) -> EventDocument {
        let previous_status = previous.map(|p| p.status);
        let status = match (o.status, previous_status) {
            (RunStatus::Failure, _) => NotifyStatus::Failure,
            (RunStatus::Success, Some(RunStatus::Failure)) => NotifyStatus::Recovered,
            (RunStatus::Success, _) => NotifyStatus::Success,
        };
        let event = self.event.as_str();
        EventDocument {
            format_version: payload::WEBHOOK_FORMAT_VERSION,
            event,
            status,
            previous_status,
            target: o.target.clone(),
            message: crate::secret::scrub(&o.message, &self.secrets),
            backup_id: o.backup_id.clone(),
            time: payload::time_text(Utc::now()),
            duration_ms: o.duration_ms,
            size_bytes: o.size_bytes,
            rto_ms: o.rto_ms,
            rpo_ms: o.rpo_ms,
            host: self.host.clone(),
            dr_version: env!("CARGO_PKG_VERSION"),
            dedup_key: payload::dedup_key(event, o.target.as_deref()),
        }
    }

    /// Every event sink that wants a document gets it; then the heartbeats hear how the
    /// whole run ended. All at once: the slowest sink bounds the wait.
    async fn send_all(&self, documents: &[EventDocument], report: &mut NotifyReport) {
        let mut sends = Vec::new();
        for sink in self
            .sinks
            .iter()
            .filter(|s| s.config.kind != SinkKind::Heartbeat)
        {
            for doc in documents.iter().filter(|d| wants(&sink.config, d.status)) {
                sends.push(send_document(sink, doc, &self.secrets));
            }
        }
        report
            .notifications
            .extend(futures::future::join_all(sends).await);
        let run_status = if documents.iter().all(|d| d.status != NotifyStatus::Failure) {
            RunStatus::Success
        } else {
            RunStatus::Failure
        };
        self.send_heartbeats(documents, run_status, report).await;
    }

    async fn send_heartbeats(
        &self,
        documents: &[EventDocument],
        status: RunStatus,
        report: &mut NotifyReport,
    ) {
        let event = self.event.as_str();
        let (action, suffix) = match status {
            RunStatus::Success => ("success", ""),
            RunStatus::Failure => ("fail", "/fail"),
        };
        let body = payload::heartbeat_body(documents);
        let pings = self
            .heartbeats()
            .into_iter()
            .map(|sink| heartbeat(sink, event, action, suffix, body.clone(), &self.secrets));
        let finished = futures::future::join_all(pings).await;
        report.notifications.extend(finished);
    }

    /// `dr_last_success_timestamp_seconds`, `dr_last_duration_seconds`,
    /// `dr_last_run_success`, and the operation's own families.
    async fn operation_families(
        &self,
        outcomes: &[Outcome],
        records: &[(Option<LastRun>, Option<LastRun>)],
    ) -> Vec<Family> {
        let op = self.event.as_str();
        let mut last_success = Family::new(metrics::LAST_SUCCESS.0, metrics::LAST_SUCCESS.1);
        let mut duration = Family::new(metrics::LAST_DURATION.0, metrics::LAST_DURATION.1);
        let mut run_ok = Family::new(metrics::LAST_RUN_SUCCESS.0, metrics::LAST_RUN_SUCCESS.1);
        let mut size = Family::new(metrics::BACKUP_SIZE.0, metrics::BACKUP_SIZE.1);
        let mut rpo_objective = Family::new(metrics::RPO_OBJECTIVE.0, metrics::RPO_OBJECTIVE.1);
        let mut drill_rto = Family::new(metrics::DRILL_RTO.0, metrics::DRILL_RTO.1);
        let mut drill_rpo = Family::new(metrics::DRILL_RPO.0, metrics::DRILL_RPO.1);
        for (o, (_, record)) in outcomes.iter().zip(records) {
            let target = o.target.as_deref().unwrap_or("");
            let labels = [("target", target), ("operation", op)];
            let mut success_at = record.as_ref().and_then(|r| r.last_success_at);
            let mut success_size = record.as_ref().and_then(|r| r.last_success_size_bytes);
            if o.status == RunStatus::Success {
                success_size = o.size_bytes.or(success_size);
            }
            if self.event == NotifyEvent::Backup && success_at.is_none() {
                // No record yet (storage unreadable, or first run with a metrics file):
                // the newest complete backup in storage is the last success.
                if let Some(m) = self.newest_backup(target).await {
                    success_at = Some(m.finished_at);
                    success_size = success_size.or(Some(m.size_bytes));
                }
            }
            last_success.sample(&labels, success_at.map(unix_seconds).unwrap_or(0.0));
            duration.sample(&labels, o.duration_ms as f64 / 1000.0);
            run_ok.sample(&labels, f64::from(u8::from(o.status == RunStatus::Success)));
            match self.event {
                NotifyEvent::Backup => {
                    if let Some(bytes) = success_size {
                        size.sample(&[("target", target)], bytes as f64);
                    }
                    if let Some(rpo) = self.rpo_objective {
                        rpo_objective.sample(&[("target", target)], rpo.as_secs_f64());
                    }
                }
                NotifyEvent::Drill => {
                    if let Some(rto) = o.rto_ms {
                        drill_rto.sample(&[("target", target)], rto as f64 / 1000.0);
                    }
                    if let Some(rpo) = o.rpo_ms {
                        drill_rpo.sample(&[("target", target)], rpo as f64 / 1000.0);
                    }
                }
                _ => {}
            }
        }
        vec![
            last_success,
            duration,
            run_ok,
            size,
            rpo_objective,
            drill_rto,
            drill_rpo,
        ]
    }

    async fn newest_backup(&self, target: &str) -> Option<crate::backup::manifest::BackupManifest> {
        let storage = self.storage.as_ref()?;
        let (all, _) = crate::backup::catalog::list_complete(storage.as_ref(), Some(target))
            .await
            .ok()?;
        all.into_iter()
            .find(|m| m.kind == crate::backup::manifest::BackupKind::Regular)
    }

    /// `dr_rpo_seconds` per PostgreSQL target with a backup: for `dr check`.
    async fn rpo_family(&self) -> Family {
        let mut family = Family::new(metrics::RPO.0, metrics::RPO.1);
        let Some(storage) = &self.storage else {
            return family;
        };
        let Ok((all, _)) = crate::backup::catalog::list_complete(storage.as_ref(), None).await
        else {
            return family;
        };
        let now = Utc::now();
        let mut seen = std::collections::HashSet::new();
        // Newest first: the first regular backup of each target is its newest.
        for m in all
            .iter()
            .filter(|m| m.kind == crate::backup::manifest::BackupKind::Regular)
        {
            if seen.insert(m.target.clone()) {
                let age = (now - m.created_at).num_milliseconds().max(0) as f64 / 1000.0;
                family.sample(&[("target", &m.target)], age);
            }
        }
        family
    }

    fn warn(&self, mut report: NotifyReport) -> NotifyReport {
        for d in report.notifications.iter().filter(|d| !d.delivered) {
            report.warnings.push(format!(
                "notification to {} sink {:?} ({} {}) failed after {} attempt(s): {}",
                d.kind, d.sink, d.event, d.action, d.attempts, d.message
            ));
        }
        report.warnings = report
            .warnings
            .iter()
            .map(|w| crate::secret::scrub(w, &self.secrets))
            .collect();
        for w in &report.warnings {
            tracing::warn!(
                "{w}; the outcome of the {} is unchanged",
                self.event.as_str()
            );
        }
        report
    }
}

/// False for a usage error (exit 2): nothing was attempted, so nothing is announced (a
/// heartbeat that got `/start` then hears no end, which its monitor reports).
fn attempted<T>(result: &Result<T>) -> bool {
    result
        .as_ref()
        .err()
        .is_none_or(|e| crate::error::exit_code(e) != crate::error::EXIT_USAGE)
}

/// Whether a sink's `on` wants a document of this status.
fn wants(sink: &NotifySink, status: NotifyStatus) -> bool {
    let on = sink.on();
    match status {
        NotifyStatus::Failure => on.contains(&NotifyOn::Failure),
        NotifyStatus::Success => on.contains(&NotifyOn::Success),
        NotifyStatus::Recovered => {
            on.contains(&NotifyOn::Success) || on.contains(&NotifyOn::Recovered)
        }
    }
}

/// One document to one (non-heartbeat) sink.
async fn send_document(sink: &Sink, doc: &EventDocument, secrets: &[String]) -> Delivery {
    let kind = sink.config.kind;
    let label = Label {
        sink: sink.name.clone(),
        kind: kind.as_str(),
        event: doc.event,
        action: match kind {
            SinkKind::Pagerduty => payload::pagerduty_action(doc),
            _ if doc.event == "test" => "test",
            _ => doc.status.as_str(),
        },
        target: doc.target.clone(),
    };
    let url = match sink.config.resolve_url(&sink.name) {
        Ok(u) => u,
        Err(e) => return label.failed(format!("{e:#}")),
    };
    let body = match kind {
        SinkKind::Webhook => payload::webhook_body(doc),
        SinkKind::Slack => payload::slack_body(doc),
        SinkKind::Pagerduty => match sink.config.resolve_routing_key(&sink.name) {
            Ok(key) => payload::pagerduty_body(
                doc,
                &key,
                if doc.event == "test" {
                    "info"
                } else {
                    sink.config.severity.as_deref().unwrap_or("critical")
                },
            ),
            Err(e) => return label.failed(format!("{e:#}")),
        },
        SinkKind::Heartbeat => payload::heartbeat_body(std::slice::from_ref(doc)),
    };
    let post = Post {
        url,
        body,
        content_type: "application/json",
    };
    send::deliver(&sink.config, label, post, secrets).await
}

/// One heartbeat ping: `suffix` is `/start`, `` (success), `/fail` or `/log`.
async fn heartbeat(
    sink: &Sink,
    event: &'static str,
    action: &'static str,
    suffix: &str,
    body: Vec<u8>,
    secrets: &[String],
) -> Delivery {
    let label = Label {
        sink: sink.name.clone(),
        kind: SinkKind::Heartbeat.as_str(),
        event,
        action,
        target: None,
    };
    let url = match sink
        .config
        .resolve_url(&sink.name)
        .and_then(|base| payload::heartbeat_url(&base, suffix))
    {
        Ok(u) => u,
        Err(e) => return label.failed(format!("{e:#}")),
    };
    let post = Post {
        url,
        body,
        content_type: "text/plain; charset=utf-8",
    };
    send::deliver(&sink.config, label, post, secrets).await
}

/// `dr notify test`: one test event to each sink (or the named one), whatever its `on`
/// and `events`. PagerDuty gets a trigger and its resolve, so the test incident closes;
/// a heartbeat gets `/log`, which healthchecks records without changing the check's state.
pub async fn send_test(config: &Config, only: Option<&str>) -> Result<Vec<Delivery>> {
    let all = sinks(config);
    if all.is_empty() {
        return Err(crate::error::usage(format!(
            "{}: no [[notify]] sink is configured; hint: add one (see dr.toml.example)",
            config.path.display()
        )));
    }
    let chosen: Vec<Sink> = match only {
        Some(name) => {
            let found: Vec<Sink> = all.iter().filter(|s| s.name == name).cloned().collect();
            if found.is_empty() {
                return Err(crate::error::usage(format!(
                    "no [[notify]] sink is named {name:?}; sinks: {}",
                    all.iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            found
        }
        None => all,
    };
    let secrets = config.secrets();
    let host = host_name();
    let doc = |status| EventDocument {
        format_version: payload::WEBHOOK_FORMAT_VERSION,
        event: "test",
        status,
        previous_status: None,
        target: None,
        message: "test notification sent by `dr notify test`; no action needed".into(),
        backup_id: None,
        time: payload::time_text(Utc::now()),
        duration_ms: 0,
        size_bytes: None,
        rto_ms: None,
        rpo_ms: None,
        host: host.clone(),
        dr_version: env!("CARGO_PKG_VERSION"),
        dedup_key: payload::dedup_key("test", Some(&host)),
    };
    let sends = chosen.iter().map(|sink| {
        let (secrets, doc) = (&secrets, &doc);
        async move {
            match sink.config.kind {
                SinkKind::Heartbeat => {
                    let body = payload::heartbeat_body(&[doc(NotifyStatus::Success)]);
                    vec![heartbeat(sink, "test", "log", "/log", body, secrets).await]
                }
                SinkKind::Pagerduty => {
                    let trigger = send_document(sink, &doc(NotifyStatus::Failure), secrets).await;
                    if !trigger.delivered {
                        return vec![trigger];
                    }
                    let resolve = send_document(sink, &doc(NotifyStatus::Recovered), secrets).await;
                    vec![trigger, resolve]
                }
                _ => vec![send_document(sink, &doc(NotifyStatus::Success), secrets).await],
            }
        }
    });
    Ok(futures::future::join_all(sends)
        .await
        .into_iter()
        .flatten()
        .collect())
}

async fn write_metrics(path: PathBuf, text: String) -> Result<()> {
    tokio::task::spawn_blocking(move || {
        let previous = std::fs::read_to_string(&path).unwrap_or_default();
        metrics::write_atomic(&path, &metrics::merge_with_previous(&previous, &text))
    })
    .await?
}

fn unix_seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// This machine's name, for the `host` of every event.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(on: Option<Vec<NotifyOn>>) -> NotifySink {
        let mut s: NotifySink = toml::from_str("kind = \"webhook\"\nurl = \"http://x/\"").unwrap();
        s.on = on;
        s
    }

    #[test]
    fn default_on_is_failure_and_recovered() {
        let s = sink(None);
        assert!(wants(&s, NotifyStatus::Failure));
        assert!(wants(&s, NotifyStatus::Recovered));
        assert!(!wants(&s, NotifyStatus::Success));
        let s = sink(Some(vec![NotifyOn::Success]));
        assert!(
            wants(&s, NotifyStatus::Recovered),
            "a recovery is a success"
        );
        assert!(!wants(&s, NotifyStatus::Failure));
    }
}
