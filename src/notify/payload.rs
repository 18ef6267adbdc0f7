//! What each kind of sink receives: pure functions from one [`EventDocument`] to bytes.
//!
//! The webhook document is a contract (`schemas/notify-webhook.v1.json`, docs/src/notifications.md): any
//! change to its fields bumps [`WEBHOOK_FORMAT_VERSION`] and the schema file with it.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::json;

use super::{NotifyStatus, RunStatus};
use crate::units::{bytes as human_bytes, millis};

pub const WEBHOOK_FORMAT_VERSION: u32 = 1;
/// PagerDuty refuses a longer summary.
const PAGERDUTY_SUMMARY_MAX: usize = 1024;

/// One event as the webhook receives it, and the source of every other sink's message.
#[derive(Debug, Clone, Serialize)]
pub struct EventDocument {
    pub format_version: u32,
    /// `backup`, `prune`, `drill`, `restore`, `verify`, `check`, or `test`.
    pub event: &'static str,
    pub status: NotifyStatus,
    /// The outcome of the run before this one, when it is known.
    pub previous_status: Option<RunStatus>,
    /// The PostgreSQL target; `null` for `check` and `test`.
    pub target: Option<String>,
    /// One line: what happened, or what failed and the hint.
    pub message: String,
    pub backup_id: Option<String>,
    /// When the operation finished (RFC 3339, UTC).
    pub time: String,
    pub duration_ms: u64,
    pub size_bytes: Option<u64>,
    pub rto_ms: Option<u64>,
    pub rpo_ms: Option<u64>,
    pub host: String,
    pub dr_version: &'static str,
    /// Stable per target and event: the PagerDuty dedup key, usable to group events.
    pub dedup_key: String,
}

pub fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `dr/<target>/<event>`, or `dr/<event>` for events without a target: one incident per
/// target and event kind, opened by a failure and closed by the recovery.
pub fn dedup_key(event: &str, target: Option<&str>) -> String {
    match target {
        Some(t) => format!("dr/{t}/{event}"),
        None => format!("dr/{event}"),
    }
}

pub fn webhook_body(doc: &EventDocument) -> Vec<u8> {
    json_bytes(doc)
}

// Event documents and the JSON built here are plain data (strings, numbers, maps with
// string keys): serde_json cannot fail on them.
#[allow(clippy::expect_used)]
fn json_bytes<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("plain data serializes")
}

/// What the event is about, as people say it: `backup of main`, `check`.
fn subject(doc: &EventDocument) -> String {
    match (&doc.target, doc.event) {
        (_, "check") => "readiness check".to_string(),
        (Some(t), event) => format!("{event} of {t}"),
        (None, event) => event.to_string(),
    }
}

fn headline(doc: &EventDocument) -> String {
    let subject = subject(doc);
    match (doc.event, doc.status) {
        ("test", _) => format!("test notification from dr on {}", doc.host),
        ("check", NotifyStatus::Failure) => format!("dr: NOT READY on {}", doc.host),
        ("check", _) => format!("dr: ready again on {}", doc.host),
        (_, NotifyStatus::Failure) => format!("dr {subject} FAILED on {}", doc.host),
        (_, NotifyStatus::Recovered) => format!("dr {subject} recovered on {}", doc.host),
        (_, NotifyStatus::Success) => format!("dr {subject} succeeded on {}", doc.host),
    }
}

/// The facts after the message: backup id, size, durations, version.
fn facts(doc: &EventDocument) -> String {
    let mut parts = Vec::new();
    if let Some(id) = &doc.backup_id {
        parts.push(format!("backup {id}"));
    }
    if let Some(size) = doc.size_bytes {
        parts.push(human_bytes(size));
    }
    parts.push(format!("took {}", millis(doc.duration_ms)));
    if let Some(rto) = doc.rto_ms {
        parts.push(format!("RTO {}", millis(rto)));
    }
    if let Some(rpo) = doc.rpo_ms {
        parts.push(format!("RPO {}", millis(rpo)));
    }
    parts.push(format!("dr {}", doc.dr_version));
    parts.join(" · ")
}

/// Slack's three characters with a meaning in message text.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One message a person reads in one glance: icon and headline, the message, the facts.
pub fn slack_body(doc: &EventDocument) -> Vec<u8> {
    let icon = match doc.status {
        _ if doc.event == "test" => ":information_source:",
        NotifyStatus::Failure => ":red_circle:",
        NotifyStatus::Recovered => ":large_green_circle:",
        NotifyStatus::Success => ":white_check_mark:",
    };
    let text = format!(
        "{icon} *{}*\n{}\n_{}_",
        slack_escape(&headline(doc)),
        slack_escape(&doc.message),
        slack_escape(&facts(doc))
    );
    json_bytes(&json!({ "text": text }))
}

/// PagerDuty Events API v2: `trigger` for a failure, `resolve` otherwise, one dedup key.
pub fn pagerduty_body(doc: &EventDocument, routing_key: &str, severity: &str) -> Vec<u8> {
    let body = if doc.status == NotifyStatus::Failure {
        let mut summary = format!("{}: {}", headline(doc), doc.message);
        if summary.len() > PAGERDUTY_SUMMARY_MAX {
            let mut cut = PAGERDUTY_SUMMARY_MAX - 3;
            while !summary.is_char_boundary(cut) {
                cut -= 1;
            }
            summary.truncate(cut);
            summary.push_str("...");
        }
        json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": doc.dedup_key,
            "client": "dr",
            "payload": {
                "summary": summary,
                "source": doc.host,
                "severity": severity,
                "timestamp": doc.time,
                "component": doc.target,
                "group": doc.event,
                "class": "dr",
                "custom_details": doc,
            },
        })
    } else {
        json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": doc.dedup_key,
        })
    };
    json_bytes(&body)
}

/// The PagerDuty action a document turns into.
pub fn pagerduty_action(doc: &EventDocument) -> &'static str {
    if doc.status == NotifyStatus::Failure {
        "trigger"
    } else {
        "resolve"
    }
}

/// The text a heartbeat ping carries (healthchecks shows it in the check's log).
pub fn heartbeat_body(docs: &[EventDocument]) -> Vec<u8> {
    docs.iter()
        .map(|d| format!("{}: {}", headline(d), d.message))
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

/// `base` with `suffix` (`/start`, `/fail`, `/log`, or nothing) appended to its path,
/// keeping any query string: healthchecks' URL scheme.
pub fn heartbeat_url(base: &str, suffix: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(base)
        .map_err(|_| anyhow::anyhow!("the heartbeat URL is not a valid URL"))?;
    if !suffix.is_empty() {
        let path = format!("{}{suffix}", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(status: NotifyStatus) -> EventDocument {
        EventDocument {
            format_version: WEBHOOK_FORMAT_VERSION,
            event: "backup",
            status,
            previous_status: None,
            target: Some("main".into()),
            message: "pg_dump failed: <connection refused> & more".into(),
            backup_id: None,
            time: "2025-01-02T03:04:05.000Z".into(),
            duration_ms: 1500,
            size_bytes: None,
            rto_ms: None,
            rpo_ms: None,
            host: "db1".into(),
            dr_version: "0.1.0",
            dedup_key: dedup_key("backup", Some("main")),
        }
    }

    #[test]
    fn heartbeat_urls_keep_the_query() {
        assert_eq!(
            heartbeat_url("https://hc.example/ping/abc", "/fail").unwrap(),
            "https://hc.example/ping/abc/fail"
        );
        assert_eq!(
            heartbeat_url("https://hc.example/ping/abc/?create=1", "/start").unwrap(),
            "https://hc.example/ping/abc/start?create=1"
        );
        assert_eq!(
            heartbeat_url("https://hc.example/ping/abc", "").unwrap(),
            "https://hc.example/ping/abc"
        );
    }

    #[test]
    fn slack_text_is_escaped_and_says_what_failed() {
        let body: serde_json::Value =
            serde_json::from_slice(&slack_body(&doc(NotifyStatus::Failure))).unwrap();
        let text = body["text"].as_str().unwrap();
        assert!(text.starts_with(":red_circle: *dr backup of main FAILED on db1*"));
        assert!(
            text.contains("&lt;connection refused&gt; &amp; more"),
            "{text}"
        );
        assert!(text.contains("took 1.5s"), "{text}");
    }

    #[test]
    fn pagerduty_trigger_and_resolve_share_the_key() {
        let trigger: serde_json::Value = serde_json::from_slice(&pagerduty_body(
            &doc(NotifyStatus::Failure),
            "KEY",
            "critical",
        ))
        .unwrap();
        let resolve: serde_json::Value = serde_json::from_slice(&pagerduty_body(
            &doc(NotifyStatus::Recovered),
            "KEY",
            "critical",
        ))
        .unwrap();
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(resolve["event_action"], "resolve");
        assert_eq!(trigger["dedup_key"], "dr/main/backup");
        assert_eq!(trigger["dedup_key"], resolve["dedup_key"]);
        assert_eq!(trigger["payload"]["severity"], "critical");
        assert!(resolve.get("payload").is_none());
    }

    #[test]
    fn long_pagerduty_summaries_are_cut_on_a_char_boundary() {
        let mut d = doc(NotifyStatus::Failure);
        d.message = "é".repeat(2000);
        let body: serde_json::Value =
            serde_json::from_slice(&pagerduty_body(&d, "KEY", "error")).unwrap();
        let summary = body["payload"]["summary"].as_str().unwrap();
        assert!(summary.len() <= PAGERDUTY_SUMMARY_MAX && summary.ends_with("..."));
    }
}
