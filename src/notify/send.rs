//! Sending one request to a sink: a short timeout per attempt, a few retries with backoff,
//! and an answer that never carries the URL or a key (they are secrets).

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::NotifySink;

/// How one notification fared.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// The sink's name (never its URL).
    pub sink: String,
    pub kind: &'static str,
    pub event: &'static str,
    /// What was sent: `failure`, `success`, `recovered`, `test`; `trigger` or `resolve`
    /// for PagerDuty; `start`, `success`, `fail` or `log` for a heartbeat.
    pub action: &'static str,
    pub target: Option<String>,
    pub delivered: bool,
    pub attempts: u32,
    pub duration_ms: u64,
    /// `HTTP 202`, or what went wrong and the hint.
    pub message: String,
}

/// A POST ready to go; `url` is a secret and only ever reaches reqwest.
pub struct Post {
    pub url: String,
    pub body: Vec<u8>,
    pub content_type: &'static str,
}

/// Who the request is for, for the [`Delivery`] record.
#[derive(Clone)]
pub struct Label {
    pub sink: String,
    pub kind: &'static str,
    pub event: &'static str,
    pub action: &'static str,
    pub target: Option<String>,
}

impl Label {
    pub fn failed(self, message: String) -> Delivery {
        Delivery {
            sink: self.sink,
            kind: self.kind,
            event: self.event,
            action: self.action,
            target: self.target,
            delivered: false,
            attempts: 0,
            duration_ms: 0,
            message,
        }
    }
}

/// Pause before attempt `n` (1-based retries): 0.25 s, 0.5 s, 1 s, ... at most 2 s.
pub fn backoff(retry: u32) -> Duration {
    Duration::from_millis((250u64 << retry.saturating_sub(1).min(3)).min(2000))
}

/// Sends `post`, retrying timeouts, transport errors, 429 and 5xx. Never longer than
/// `(retries + 1) * timeout` plus the pauses between attempts.
pub async fn deliver(sink: &NotifySink, label: Label, post: Post, secrets: &[String]) -> Delivery {
    let timeout = sink.timeout();
    let started = Instant::now();
    let client = match reqwest::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(concat!("dr/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => return label.failed(format!("cannot build an HTTP client: {e}")),
    };
    let mut attempts = 0;
    let mut last_error = String::new();
    for retry in 0..=sink.retries() {
        if retry > 0 {
            tokio::time::sleep(backoff(retry)).await;
        }
        attempts += 1;
        let attempt = async {
            let response = client
                .post(&post.url)
                .header(reqwest::header::CONTENT_TYPE, post.content_type)
                .body(post.body.clone())
                .send()
                .await?;
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            Ok::<_, reqwest::Error>((status, text))
        };
        let (status, text) = match tokio::time::timeout(timeout, attempt).await {
            Err(_) => {
                last_error = no_answer(timeout);
                continue;
            }
            Ok(Err(e)) if e.is_timeout() => {
                last_error = no_answer(timeout);
                continue;
            }
            Ok(Err(e)) => {
                last_error = format!(
                    "{}; hint: check the sink's host, port and the network path to it",
                    transport_error(e)
                );
                continue;
            }
            Ok(Ok(answer)) => answer,
        };
        let code = status.as_u16();
        let detail = answer_excerpt(&text, secrets);
        if status.is_success() {
            return finished(label, true, attempts, started, format!("HTTP {code}"));
        }
        let refused = format!("refused with HTTP {code}{detail}");
        if code == 429 || status.is_server_error() {
            last_error = format!("{refused}; hint: the service is overloaded or down");
            continue;
        }
        // A 4xx other than 429 will not change on a retry: a wrong URL or key.
        return finished(
            label,
            false,
            attempts,
            started,
            format!("{refused}; hint: check the sink's URL (and routing key) in dr.toml or its *_env variable"),
        );
    }
    finished(label, false, attempts, started, last_error)
}

fn finished(
    label: Label,
    delivered: bool,
    attempts: u32,
    started: Instant,
    message: String,
) -> Delivery {
    Delivery {
        attempts,
        delivered,
        duration_ms: started.elapsed().as_millis() as u64,
        message,
        ..label.failed(String::new())
    }
}

fn no_answer(timeout: Duration) -> String {
    format!(
        "no answer within {}; hint: the sink accepted no request or hung; check the service, or raise timeout in its [[notify]] entry",
        crate::units::duration(timeout)
    )
}

/// What went wrong, in a few words: the innermost cause (`Connection refused`,
/// `dns error: ...`), without the URL reqwest puts in its own message.
fn transport_error(e: reqwest::Error) -> String {
    let e = e.without_url();
    let what = if e.is_connect() {
        "cannot connect"
    } else {
        "the request failed"
    };
    let mut innermost = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        innermost = cause.to_string();
        source = cause.source();
    }
    format!("{what}: {innermost}")
}

/// The start of the sink's answer (Slack and PagerDuty say what they disliked), on one
/// line, without secrets.
fn answer_excerpt(text: &str, secrets: &[String]) -> String {
    let line: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(200)
        .collect();
    if line.is_empty() {
        String::new()
    } else {
        format!(": {}", crate::secret::scrub(&line, secrets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(3), Duration::from_millis(1000));
        assert_eq!(backoff(9), Duration::from_millis(2000));
    }

    #[test]
    fn answers_are_one_line_and_scrubbed() {
        assert_eq!(
            answer_excerpt("invalid\n token KEY123", &["KEY123".into()]),
            ": invalid token ***"
        );
        assert_eq!(answer_excerpt("  ", &[]), "");
    }
}
