//! `[[notify]]`: sinks (webhook, Slack, PagerDuty, heartbeat), what they hear, and their
//! validation.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Result;
use serde::Deserialize;

use super::{opt_duration, Config};
use crate::error::usage;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// POST of one JSON document (schemas/notify-webhook.v1.json).
    Webhook,
    /// A Slack incoming webhook.
    Slack,
    /// PagerDuty Events API v2: trigger on failure, resolve on recovery.
    Pagerduty,
    /// A healthchecks-style ping URL: `/start`, then `/` or `/fail`.
    Heartbeat,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Webhook => "webhook",
            SinkKind::Slack => "slack",
            SinkKind::Pagerduty => "pagerduty",
            SinkKind::Heartbeat => "heartbeat",
        }
    }
}

/// Which outcomes a sink hears about.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    Failure,
    /// Every success, recoveries included.
    Success,
    /// A success whose previous run failed.
    Recovered,
}

/// The operations that produce notification events.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum NotifyEvent {
    Backup,
    Prune,
    Drill,
    Restore,
    Verify,
    Check,
}

impl NotifyEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Backup => "backup",
            NotifyEvent::Prune => "prune",
            NotifyEvent::Drill => "drill",
            NotifyEvent::Restore => "restore",
            NotifyEvent::Verify => "verify",
            NotifyEvent::Check => "check",
        }
    }
}

pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_NOTIFY_RETRIES: u32 = 2;
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySink {
    /// Shown in warnings and `dr notify test` instead of the URL (which is a secret).
    pub name: Option<String>,
    pub kind: SinkKind,
    pub url: Option<String>,
    pub url_env: Option<String>,
    /// PagerDuty integration key (Events API v2).
    pub routing_key: Option<String>,
    pub routing_key_env: Option<String>,
    /// Default: failure and recovered. Not for heartbeats, which ping on every run.
    pub on: Option<Vec<NotifyOn>>,
    /// Default: every event. Required for heartbeats.
    pub events: Option<Vec<NotifyEvent>>,
    /// Per attempt (default 5s).
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// Further attempts after a timeout, a refused connection or a 5xx/429 (default 2).
    pub retries: Option<u32>,
    /// PagerDuty severity of a failure: critical (default), error, warning or info.
    pub severity: Option<String>,
}

impl NotifySink {
    pub fn on(&self) -> Vec<NotifyOn> {
        self.on
            .clone()
            .unwrap_or_else(|| vec![NotifyOn::Failure, NotifyOn::Recovered])
    }

    pub fn hears(&self, event: NotifyEvent) -> bool {
        self.events.as_ref().is_none_or(|e| e.contains(&event))
    }

    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_NOTIFY_TIMEOUT)
    }

    pub fn retries(&self) -> u32 {
        self.retries.unwrap_or(DEFAULT_NOTIFY_RETRIES)
    }

    /// The URL to send to: inline, from `url_env`, or PagerDuty's public endpoint.
    pub fn resolve_url(&self, name: &str) -> Result<String> {
        if self.url.is_none() && self.url_env.is_none() && self.kind == SinkKind::Pagerduty {
            return Ok(PAGERDUTY_EVENTS_URL.to_string());
        }
        resolve_secret("notify", name, "url", &self.url, &self.url_env)
    }

    pub fn resolve_routing_key(&self, name: &str) -> Result<String> {
        resolve_secret(
            "notify",
            name,
            "routing_key",
            &self.routing_key,
            &self.routing_key_env,
        )
    }
}

fn resolve_secret(
    kind: &str,
    name: &str,
    key: &str,
    inline: &Option<String>,
    env: &Option<String>,
) -> Result<String> {
    if let Some(v) = inline {
        return Ok(v.clone());
    }
    let var = env.as_deref().unwrap_or_default();
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(anyhow::anyhow!(
            "[[{kind}]] {name:?}: environment variable {var} ({key}_env) is not set; hint: export {var}=<{key}> in the environment dr runs in"
        )),
    }
}

impl Config {
    pub(super) fn validate_notify(&self) -> Result<()> {
        let file = self.path.display();
        let names = self.notify_names();
        let mut seen = HashSet::new();
        for (sink, name) in self.notify.iter().zip(&names) {
            let at = format!("{file}: [[notify]] {name:?}");
            if !seen.insert(name.as_str()) {
                return Err(usage(format!(
                    "{at}: the sink name is used twice; hint: give every [[notify]] a unique name = \"...\""
                )));
            }
            match (&sink.url, &sink.url_env) {
                (Some(_), Some(_)) => {
                    return Err(usage(format!(
                        "{at} sets both url and url_env; hint: keep one"
                    )))
                }
                (None, None) if sink.kind != SinkKind::Pagerduty => {
                    return Err(usage(format!(
                        "{at} (kind {}) has neither url nor url_env; hint: add url_env = \"ENV_VAR\" (the URL is a secret) or url = \"https://...\"",
                        sink.kind.as_str()
                    )))
                }
                _ => {}
            }
            if let Some(url) = &sink.url {
                let ok = url::Url::parse(url)
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
                if !ok {
                    // The URL is a secret: name the key, never the value.
                    return Err(usage(format!(
                        "{at}: key url is not an http(s) URL; hint: write the full URL, such as https://hooks.example.com/..."
                    )));
                }
            }
            let has_key = sink.routing_key.is_some() || sink.routing_key_env.is_some();
            if sink.kind == SinkKind::Pagerduty
                && sink.routing_key.is_some() == sink.routing_key_env.is_some()
            {
                return Err(usage(format!(
                    "{at} needs exactly one of routing_key and routing_key_env; hint: routing_key_env = \"DR_PAGERDUTY_ROUTING_KEY\" (the integration key of an Events API v2 service)"
                )));
            }
            if sink.kind != SinkKind::Pagerduty && has_key {
                return Err(usage(format!(
                    "{at}: routing_key is only for kind = \"pagerduty\"; hint: remove it"
                )));
            }
            if sink.severity.is_some() && sink.kind != SinkKind::Pagerduty {
                return Err(usage(format!(
                    "{at}: severity is only for kind = \"pagerduty\"; hint: remove it"
                )));
            }
            if let Some(sev) = &sink.severity {
                if !["critical", "error", "warning", "info"].contains(&sev.as_str()) {
                    return Err(usage(format!(
                        "{at}: severity = {sev:?} is not one of critical, error, warning, info"
                    )));
                }
            }
            if sink.kind == SinkKind::Heartbeat {
                if sink.on.is_some() {
                    return Err(usage(format!(
                        "{at}: a heartbeat pings on every run (start, then success or fail), so it takes no `on`; hint: remove on, and choose the job with events = [\"backup\"]"
                    )));
                }
                if sink.events.as_ref().is_none_or(|e| e.is_empty()) {
                    return Err(usage(format!(
                        "{at}: a heartbeat watches one job, so it needs events; hint: add events = [\"backup\"] (a ping from another command would hide a backup that stopped running)"
                    )));
                }
            }
            if sink.on.as_ref().is_some_and(|o| o.is_empty()) {
                return Err(usage(format!(
                    "{at}: on = [] would never send; hint: remove the sink, or list failure, success or recovered"
                )));
            }
            if let Some(t) = sink.timeout {
                if t < Duration::from_millis(100) || t > Duration::from_secs(60) {
                    return Err(usage(format!(
                        "{at}: key timeout = {} is out of range; hint: between 100ms and 60s (a slow sink must not hold up the operation)",
                        crate::units::duration(t)
                    )));
                }
            }
            if sink.retries.is_some_and(|r| r > 5) {
                return Err(usage(format!(
                    "{at}: key retries is out of range; hint: 0 to 5"
                )));
            }
        }
        Ok(())
    }

    /// The name of each `[[notify]]` sink, in order: its `name`, else its kind (with the
    /// position when several sinks share a kind).
    pub fn notify_names(&self) -> Vec<String> {
        self.notify
            .iter()
            .enumerate()
            .map(|(i, s)| match &s.name {
                Some(n) => n.clone(),
                None if self.notify.iter().filter(|o| o.kind == s.kind).count() > 1 => {
                    format!("{}-{}", s.kind.as_str(), i + 1)
                }
                None => s.kind.as_str().to_string(),
            })
            .collect()
    }
}
