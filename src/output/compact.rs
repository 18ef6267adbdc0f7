//! The compact layout of `dr check`, `dr status` and `dr list` on a narrow terminal (under
//! [`COMPACT_BELOW`] columns): no borders, one row per line where it fits, the values people
//! copy (ids, names, keys) never broken, and a row's prose after its values, wrapped at spaces
//! under its own column (or on the lines below when that column would be too narrow).
//! Wider terminals get the bordered tables of `table.rs`; without a width nothing wraps.

use comfy_table::Color;

use super::table::{Layout, TableCell};

/// Terminals narrower than this get the compact layout (80 columns does, 120 does not).
pub const COMPACT_BELOW: u16 = 100;

/// Prose narrower than this goes on the lines below its row's values.
const NARROWEST_TEXT: usize = 32;

/// The indent of prose placed below its row's values.
const BELOW_INDENT: usize = 4;

/// The width to fit in the compact layout, or `None` for the wide one.
pub fn compact_width(layout: Layout) -> Option<usize> {
    layout
        .width
        .filter(|w| *w < COMPACT_BELOW)
        .map(|w| w as usize)
}

/// How a row's prose gives way when it does not fit the rest of its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    /// Wraps onto as many lines as it needs: problems and their hints.
    Wrap,
    /// Cut at a space and marked `…`: what passed (JSON and a wide terminal have it all).
    Cut,
}

/// One row: values in aligned columns, then prose.
#[derive(Debug, Clone)]
pub struct CompactRow {
    pub values: Vec<TableCell>,
    pub text: String,
    pub fold: Fold,
}

/// A compact listing: an optional header (one name per value column, and the prose's),
/// columns that may be left out (rightmost first) when the values do not fit.
#[derive(Debug, Clone, Default)]
pub struct CompactTable {
    pub header: Option<Vec<String>>,
    pub optional: Vec<usize>,
    pub rows: Vec<CompactRow>,
}

impl CompactTable {
    pub fn render(&self, width: usize, styled: bool) -> String {
        let columns = self.rows.first().map_or(0, |r| r.values.len());
        let mut hidden: Vec<usize> = Vec::new();
        let widths = |hidden: &[usize]| -> Vec<usize> {
            (0..columns)
                .map(|i| {
                    if hidden.contains(&i) {
                        return 0;
                    }
                    let head = self
                        .header
                        .as_ref()
                        .and_then(|h| h.get(i))
                        .map_or(0, |h| h.chars().count());
                    self.rows
                        .iter()
                        .map(|r| r.values[i].text.chars().count())
                        .fold(head, usize::max)
                })
                .collect()
        };
        let used = |w: &[usize]| -> usize {
            let shown: Vec<&usize> = w.iter().filter(|w| **w > 0).collect();
            shown.iter().map(|w| **w).sum::<usize>() + 2 * shown.len().saturating_sub(1)
        };
        let mut w = widths(&hidden);
        for i in self.optional.iter().rev() {
            if used(&w) <= width {
                break;
            }
            hidden.push(*i);
            w = widths(&hidden);
        }
        let mut out = String::new();
        if let Some(header) = &self.header {
            let cells: Vec<TableCell> = header
                .iter()
                .take(columns)
                .map(|h| super::table::cell(h.clone()))
                .collect();
            let text = header.get(columns).cloned().unwrap_or_default();
            out.push_str(&row_lines(&cells, &text, Fold::Cut, &w, width, false));
        }
        for r in &self.rows {
            out.push_str(&row_lines(&r.values, &r.text, r.fold, &w, width, styled));
        }
        out
    }
}

fn paint(text: &str, colour: Option<Color>, styled: bool) -> String {
    let code = match (styled, colour) {
        (true, Some(Color::Green)) => 32,
        (true, Some(Color::Yellow)) => 33,
        (true, Some(Color::Red)) => 31,
        _ => return text.to_string(),
    };
    format!("\x1b[{code}m{text}\x1b[39m")
}

fn row_lines(
    values: &[TableCell],
    text: &str,
    fold: Fold,
    widths: &[usize],
    width: usize,
    styled: bool,
) -> String {
    let mut lead = String::new();
    let mut lead_width = 0;
    for (cell, w) in values.iter().zip(widths) {
        if *w == 0 {
            continue;
        }
        if lead_width > 0 {
            lead.push_str("  ");
            lead_width += 2;
        }
        let shown = one_line(&cell.text);
        let pad = w.saturating_sub(shown.chars().count());
        lead.push_str(&paint(&shown, cell.colour, styled));
        lead.push_str(&" ".repeat(pad));
        lead_width += w;
    }
    let text = one_line(text);
    if text.trim().is_empty() {
        return format!("{}\n", lead.trim_end());
    }
    let beside = width.saturating_sub(lead_width + 2);
    let (first, indent) = if beside >= NARROWEST_TEXT {
        (format!("{lead}  "), lead_width + 2)
    } else {
        (
            format!("{}\n{}", lead.trim_end(), " ".repeat(BELOW_INDENT)),
            BELOW_INDENT,
        )
    };
    let room = width.saturating_sub(indent).max(1);
    let lines = match fold {
        Fold::Wrap => wrap(&text, room),
        Fold::Cut => vec![cut(&text, room)],
    };
    let mut out = first;
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Cell text on one line: line breaks and control characters become spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Words, with a `quoted command` as one unit when it fits a line: a hint's command is
/// copied whole, so it is not broken across lines.
fn units(text: &str, room: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut open: Option<Vec<&str>> = None;
    for word in text.split_whitespace() {
        match open.as_mut() {
            Some(span) => {
                span.push(word);
                if word.contains('`') {
                    let joined = span.join(" ");
                    if joined.chars().count() <= room {
                        out.push(joined);
                    } else {
                        out.extend(span.iter().map(|w| w.to_string()));
                    }
                    open = None;
                }
            }
            None if word.starts_with('`') && word.matches('`').count() == 1 => {
                open = Some(vec![word]);
            }
            None => out.push(word.to_string()),
        }
    }
    if let Some(span) = open {
        out.extend(span.iter().map(|w| w.to_string()));
    }
    out
}

/// Words into lines of at most `room` characters; a word longer than a line is split only
/// when nothing else can hold it (a path longer than the terminal).
pub fn wrap(text: &str, room: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in units(text, room) {
        let mut word = word;
        loop {
            let len = line.chars().count();
            let need = word.chars().count() + usize::from(len > 0);
            if len + need <= room {
                if len > 0 {
                    line.push(' ');
                }
                line.push_str(&word);
                break;
            }
            if len > 0 {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            // Longer than a whole line: the only case where a word is split.
            let head: String = word.chars().take(room).collect();
            word = word.chars().skip(room).collect();
            lines.push(head);
            if word.is_empty() {
                break;
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// The words of `text` that fit `room` characters, and `…` when some were left out.
fn cut(text: &str, room: usize) -> String {
    let whole = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if whole.chars().count() <= room {
        return whole;
    }
    let mut out = String::new();
    for word in whole.split(' ') {
        let len = out.chars().count();
        if len + usize::from(len > 0) + word.chars().count() + 1 > room {
            break;
        }
        if len > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
    out.push('…');
    out
}

/// Lines of free text (notes under a table) fitted to `width`: a longer line wraps at
/// spaces, its continuation indented four more than the line itself.
pub fn fit_lines(text: &str, width: Option<u16>) -> String {
    let Some(width) = width.map(usize::from) else {
        return text.to_string();
    };
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        if body.chars().count() <= width {
            out.push_str(line);
            continue;
        }
        let indent = body.len() - body.trim_start().len();
        for (i, part) in wrap(body.trim_start(), width.saturating_sub(indent + 4).max(1))
            .iter()
            .enumerate()
        {
            let pad = if i == 0 { indent } else { indent + 4 };
            out.push_str(&" ".repeat(pad));
            out.push_str(part);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::table::cell;
    use super::*;

    #[test]
    fn prose_wraps_beside_its_values_and_ids_stay_whole() {
        let t = CompactTable {
            header: None,
            optional: vec![],
            rows: vec![
                CompactRow {
                    values: vec![cell("warn"), cell("drill.recent"), cell("main")],
                    text: "no drill of main has ever run: the RTO is a promise, not a \
                           measurement; hint: run `dr drill --target main-20261207T223510Z`"
                        .into(),
                    fold: Fold::Wrap,
                },
                CompactRow {
                    values: vec![cell("pass"), cell("pg.connect"), cell("main")],
                    text: "connected to postgres://postgres@127.0.0.1:39733/app as postgres \
                           in 178 ms; PostgreSQL 15.18 (Debian 15.18-0+deb12u1)"
                        .into(),
                    fold: Fold::Cut,
                },
            ],
        };
        let text = t.render(70, false);
        for line in text.lines() {
            assert!(line.chars().count() <= 70, "{line:?}\n{text}");
        }
        assert!(
            text.contains("`dr drill --target main-20261207T223510Z`"),
            "a quoted command stays on one line: {text}"
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("warn  drill.recent  main  no drill"),
            "{text}"
        );
        assert!(lines[1].starts_with(&" ".repeat(26)), "{text}");
        let last = lines.last().unwrap();
        assert!(
            last.starts_with("pass  pg.connect    main  connected"),
            "{text}"
        );
        assert!(last.ends_with('…'), "{text}");
    }

    #[test]
    fn optional_columns_go_first_and_narrow_prose_goes_below() {
        let t = CompactTable {
            header: Some(vec!["id".into(), "created".into(), "size".into()]),
            optional: vec![1],
            rows: vec![CompactRow {
                values: vec![
                    cell("main-20261207T223510Z"),
                    cell("2026-12-07T22:35:09Z"),
                    cell("3.5 MiB"),
                ],
                text: "a note long enough to need its own lines below".into(),
                fold: Fold::Wrap,
            }],
        };
        let text = t.render(40, false);
        assert!(!text.contains("created"), "{text}");
        assert!(
            text.contains("main-20261207T223510Z  3.5 MiB\n    a note"),
            "{text}"
        );
        for line in text.lines() {
            assert!(line.chars().count() <= 40, "{line:?}\n{text}");
        }
    }

    #[test]
    fn notes_wrap_with_a_hanging_indent() {
        let text = fit_lines("short\n  a b c d e f g h i j k l m n o p\n", Some(12));
        assert_eq!(
            text,
            "short\n  a b c\n      d e f\n      g h i\n      j k l\n      m n o\n      p\n"
        );
        assert_eq!(fit_lines("x y\n", None), "x y\n");
    }
}
