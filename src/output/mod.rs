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
/// error, a refusal): `ok: false`, the message and its hint.
pub fn error_document(message: &str, exit_code: i32) -> String {
    let (head, hint) = match message.split_once("; hint: ") {
        Some((h, hint)) => (h, Some(hint)),
        None => (message, None),
    };
    let doc = serde_json::json!({
        "format_version": crate::report::FORMAT_VERSION,
        "ok": false,
        "exit_code": exit_code,
        "error": head,
        "hint": hint,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
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
    text + "\n"
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
