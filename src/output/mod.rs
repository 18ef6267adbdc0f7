//! Everything that reaches stdout goes through here. Renderers are pure functions from a
//! report to text; `emit` writes it (and survives a closed pipe, as in `dr list | head`).

pub mod backups;
pub mod check;
pub mod drill;
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

pub fn emit(text: &str) {
    if text.is_empty() {
        return;
    }
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
    serde_json::to_string_pretty(value).expect("reports serialize") + "\n"
}
