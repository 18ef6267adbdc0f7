//! Table building blocks (comfy-table). Colour and symbols only when [`super::styled`].

use comfy_table::{presets, Cell, Color, ContentArrangement, Table};

use crate::report::{Status, Step};
use crate::units;

pub fn new_table(header: &[&str]) -> Table {
    let mut t = Table::new();
    if super::styled() {
        t.load_style(presets::UTF8_FULL_CONDENSED);
        t.set_content_arrangement(ContentArrangement::Dynamic);
    } else {
        t.load_style(presets::ASCII_MARKDOWN);
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

/// `-` for what is not there.
pub fn or_dash(value: Option<&str>) -> Cell {
    Cell::new(value.unwrap_or("-"))
}

/// The steps of an operation: name, status, message, time.
pub fn steps(steps: &[Step]) -> String {
    let mut t = new_table(&["step", "status", "message", "time"]);
    for s in steps {
        t.add_row(vec![
            Cell::new(&s.name),
            status_cell(s.status),
            Cell::new(&s.message),
            Cell::new(units::millis(s.duration_ms)),
        ]);
    }
    format!("{t}\n")
}
