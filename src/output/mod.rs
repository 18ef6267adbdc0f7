//! Everything that reaches stdout goes through here. Renderers are pure functions from a
//! report to text; `emit` writes it (and survives a closed pipe, as in `dr list | head`).

pub mod backups;
pub mod check;
pub mod compact;
pub mod drill;
pub mod evidence;
pub mod junit;
pub mod manpage;
pub mod notify;
pub mod people;
pub mod pitr;
pub mod prometheus;
pub mod redis;
pub mod restore;
pub mod status;
pub mod stderr;
pub mod table;
pub mod version;

use std::io::Write;

use serde::Serialize;

/// Whether human output may use colour and symbols: a terminal, and no `NO_COLOR`.
pub fn styled() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Whether this run printed its document (or table) already: an error after it must not
/// add a second JSON document.
static EMITTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn emitted() -> bool {
    EMITTED.load(std::sync::atomic::Ordering::SeqCst)
}

/// The one JSON document of a run that ended in an error before printing its own (a usage
/// error, a refusal): `ok: false`, the exit code and the `error` (message and hint).
pub fn error_document(message: &str, exit_code: i32) -> String {
    #[derive(Serialize)]
    struct ErrorDocument<'a> {
        format_version: u32,
        ok: bool,
        exit_code: i32,
        error: ErrorObject<'a>,
    }
    let doc = ErrorDocument {
        format_version: crate::report::FORMAT_VERSION,
        ok: false,
        exit_code,
        error: error_parts(message),
    };
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// A failure in JSON: what failed, and what to do (fields in this order).
#[derive(Serialize)]
struct ErrorObject<'a> {
    message: &'a str,
    hint: Option<&'a str>,
}

/// `{message, hint}` from dr's one-line error form, `problem; hint: fix`.
fn error_parts(text: &str) -> ErrorObject<'_> {
    match text.split_once("; hint: ") {
        Some((message, hint)) => ErrorObject {
            message,
            hint: Some(hint),
        },
        None => ErrorObject {
            message: text,
            hint: None,
        },
    }
}

/// The envelope every document shares, made here once: a report that failed (`ok: false`)
/// carries `error` as `{message, hint}`, taken from the report's own error, else from its
/// first failure (a failed check, backup, step or target), so no failure is a bare `false`.
/// The text is edited, not re-serialized, so the fields keep their order.
fn envelope(text: String, doc: &serde_json::Value) -> String {
    let Some(object) = doc.as_object() else {
        return text;
    };
    let error = match object.get("error") {
        Some(serde_json::Value::String(message)) => message.clone(),
        Some(serde_json::Value::Object(_)) => return text,
        _ if object.get("ok") == Some(&serde_json::Value::Bool(false)) => first_failure(object),
        _ => return text,
    };
    let rendered = serde_json::to_string_pretty(&error_parts(&error))
        .unwrap_or_default()
        .replace('\n', "\n  ");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    // Top-level fields are the lines indented by exactly two spaces.
    if let Some(i) = lines.iter().position(|l| l.starts_with("  \"error\": ")) {
        let comma = if lines[i].ends_with(',') { "," } else { "" };
        lines[i] = format!("  \"error\": {rendered}{comma}");
    } else if lines.len() >= 2 {
        let last = lines.len() - 1;
        lines[last - 1].push(',');
        lines.insert(last, format!("  \"error\": {rendered}"));
    }
    lines.join("\n")
}

/// What failed first in a report, in words.
fn first_failure(object: &serde_json::Map<String, serde_json::Value>) -> String {
    let text =
        |v: &serde_json::Value, key: &str| v.get(key).and_then(|m| m.as_str()).map(str::to_string);
    let failed = |v: &&serde_json::Value| v.get("status").and_then(|s| s.as_str()) == Some("fail");
    let list = |key: &str| {
        object
            .get(key)
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default()
    };
    if let Some(c) = list("checks").iter().find(failed) {
        let target = text(c, "target")
            .map(|t| format!(" of {t}"))
            .unwrap_or_default();
        return format!(
            "check {}{target} failed: {}",
            text(c, "name").unwrap_or_default(),
            text(c, "message").unwrap_or_default()
        );
    }
    if let Some(f) = list("failures").first() {
        return format!(
            "{} failed: {}",
            text(f, "target").unwrap_or_default(),
            text(f, "error").unwrap_or_default()
        );
    }
    if let Some(t) = list("targets").iter().find(failed) {
        return format!(
            "{} fails: {}",
            text(t, "target").unwrap_or_default(),
            text(t, "summary").unwrap_or_default()
        );
    }
    let mut steps = list("steps");
    if let Some(v) = object
        .get("verification")
        .and_then(|v| v.get("steps"))
        .and_then(|s| s.as_array())
    {
        steps.extend(v.iter().cloned());
    }
    if let Some(s) = steps.iter().find(failed) {
        return format!(
            "{} failed: {}",
            text(s, "name").unwrap_or_default(),
            text(s, "message").unwrap_or_default()
        );
    }
    if let Some(p) = list("problems").first() {
        return p
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| p.to_string());
    }
    "the run failed; see the fields of this document".to_string()
}

pub fn emit(text: &str) {
    if text.is_empty() {
        return;
    }
    EMITTED.store(true, std::sync::atomic::Ordering::SeqCst);
    // Nothing dr prints is a private key: one that reached a report (a message quoting
    // a misplaced setting) is hidden here, tables and JSON alike.
    let text = crate::secret::redact_age_keys(text);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
}

pub fn json<T: Serialize + ?Sized>(value: &T) -> String {
    keep(value);
    // Reports are plain data (strings, numbers, maps with string keys): serde_json
    // fails only on non-string map keys or a failing Serialize impl, which they lack.
    #[allow(clippy::expect_used)]
    let text = serde_json::to_string_pretty(value).expect("reports serialize");
    let doc = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    envelope(text, &doc) + "\n"
}

/// The report this run rendered, as JSON whatever `--format` said: the evidence log
/// stores it (and its SHA-256) after a recorded command.
static REPORT: std::sync::Mutex<Option<serde_json::Value>> = std::sync::Mutex::new(None);

/// Keeps `report` as this run's report; every renderer of a recorded command calls it.
pub fn keep<T: Serialize + ?Sized>(report: &T) {
    if let (Ok(value), Ok(mut slot)) = (serde_json::to_value(report), REPORT.lock()) {
        *slot = Some(value);
    }
}

/// The report kept by the last renderer, taken out.
pub fn kept_report() -> Option<serde_json::Value> {
    REPORT.lock().ok().and_then(|mut slot| slot.take())
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    fn enveloped(doc: Value) -> Value {
        let text = serde_json::to_string_pretty(&doc).unwrap();
        serde_json::from_str(&super::envelope(text, &doc)).unwrap()
    }

    #[test]
    fn a_failed_report_carries_an_error_object_with_message_and_hint() {
        let doc = enveloped(json!({"format_version": 2, "ok": false, "checks": [
            {"name": "pg.connect", "target": "main", "status": "fail",
             "message": "refused; hint: start it"}]}));
        assert_eq!(
            doc["error"]["message"],
            "check pg.connect of main failed: refused"
        );
        assert_eq!(doc["error"]["hint"], "start it");
        let doc = enveloped(json!({"ok": false, "error": "boom", "steps": []}));
        assert_eq!(doc["error"], json!({"message": "boom", "hint": null}));
        let doc = enveloped(json!({"ok": true, "error": null}));
        assert_eq!(doc["error"], Value::Null);
        let doc = enveloped(json!({"ok": false, "error": null, "x": 1}));
        assert!(doc["error"]["message"].is_string(), "{doc}");
        let text = super::error_document("no such target; hint: `dr list`", 2);
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            doc["error"],
            json!({"message": "no such target", "hint": "`dr list`"})
        );
    }
}
