//! Human tables (comfy-table). Colour and symbols only when [`super::styled`].

use comfy_table::{presets, Cell, Color, ContentArrangement, Table};

use crate::checks::{CheckReport, Status};

pub fn new_table(header: &[&str]) -> Table {
    let mut t = Table::new();
    if super::styled() {
        t.load_style(presets::UTF8_FULL_CONDENSED);
    } else {
        t.load_style(presets::ASCII_MARKDOWN);
    }
    t.set_content_arrangement(ContentArrangement::Dynamic);
    if !super::styled() {
        // Never wrap lines when piped: grep and log collectors read whole lines.
        t.set_content_arrangement(ContentArrangement::Disabled);
    }
    t.set_header(header.to_vec());
    t
}

pub fn status_cell(status: Status) -> Cell {
    if !super::styled() {
        return Cell::new(status.as_str());
    }
    match status {
        Status::Pass => Cell::new("✔ pass").fg(Color::Green),
        Status::Warn => Cell::new("▲ warn").fg(Color::Yellow),
        Status::Fail => Cell::new("✘ fail").fg(Color::Red),
    }
}

pub fn check_report(report: &CheckReport) -> String {
    let mut t = new_table(&["check", "target", "status", "critical", "message", "ms"]);
    for c in &report.checks {
        t.add_row(vec![
            Cell::new(&c.name),
            Cell::new(c.target.as_deref().unwrap_or("-")),
            status_cell(c.status),
            Cell::new(if c.critical { "yes" } else { "no" }),
            Cell::new(&c.message),
            Cell::new(c.duration_ms),
        ]);
    }
    let count = |s| report.checks.iter().filter(|c| c.status == s).count();
    format!(
        "{t}\n{}: {} pass, {} warn, {} fail{}\n",
        if report.ready { "READY" } else { "NOT READY" },
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail),
        if report.strict { " (strict)" } else { "" }
    )
}

/// Byte counts as people read them.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub fn millis(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_millis() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(millis(250), "250 ms");
        assert_eq!(millis(2500), "2.5 s");
    }
}
