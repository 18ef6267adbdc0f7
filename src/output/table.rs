//! Tables that fit where they are printed. The width comes from the terminal, else from
//! `COLUMNS`, else there is none and nothing wraps (grep and log collectors read whole
//! lines). Columns say how they give way on a narrow screen: ids, names, times and numbers
//! never wrap, messages wrap at spaces, details are left out (JSON always has everything).
//! Cell text cannot break a table: line breaks and control characters become spaces, and
//! `|` is escaped in the Markdown-style tables printed when not on a terminal.

use comfy_table::{presets, Cell, Color, ColumnConstraint, ContentArrangement, Table};

use crate::report::{Status, Step};
use crate::units;

/// How a column gives way when the table is wider than the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Never wraps: ids, names, times, sizes, statuses; values people copy or compare.
    Whole,
    /// Wraps at spaces: messages and prose.
    Wrap,
    /// Left out first when the table does not fit; still in `--format json`.
    Detail,
}

/// One cell: its text, and a colour used only on a styled terminal.
#[derive(Debug, Clone)]
pub struct TableCell {
    pub(super) text: String,
    pub(super) colour: Option<Color>,
}

pub fn cell(text: impl Into<String>) -> TableCell {
    TableCell {
        text: text.into(),
        colour: None,
    }
}

/// `-` for what is not there.
pub fn or_dash(value: Option<&str>) -> TableCell {
    cell(value.unwrap_or("-"))
}

pub fn status_cell(status: Status) -> TableCell {
    if !super::styled() {
        return cell(status.as_str());
    }
    let (text, colour) = match status {
        Status::Pass => ("✔ pass", Color::Green),
        Status::Warn => ("▲ warn", Color::Yellow),
        Status::Fail => ("✘ fail", Color::Red),
    };
    TableCell {
        text: text.into(),
        colour: Some(colour),
    }
}

/// Where a table is printed: styled (a terminal without `NO_COLOR`) or Markdown, and the
/// width to fit, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub styled: bool,
    pub width: Option<u16>,
}

impl Layout {
    pub fn stdout() -> Layout {
        use std::io::IsTerminal;
        // The columns alone: a pty may report its rows as 0 (some CI runners, `script`
        // without a size) while its width is real.
        let terminal = if std::io::stdout().is_terminal() {
            rustix::termios::tcgetwinsize(std::io::stdout())
                .ok()
                .map(|size| size.ws_col)
        } else {
            None
        };
        Layout {
            styled: super::styled(),
            width: fit_width(terminal, std::env::var("COLUMNS").ok().as_deref()),
        }
    }
}

/// The terminal's width when it reports one, else `COLUMNS`, else none. A pty that
/// reports 0 columns counts as no width, never as a width of 0.
pub fn fit_width(terminal: Option<u16>, columns_env: Option<&str>) -> Option<u16> {
    terminal
        .filter(|w| *w > 0)
        .or_else(|| columns_env?.trim().parse::<u16>().ok().filter(|w| *w > 0))
}

/// A table with a fit for each column and an optional heading (for commands that print
/// more than one table).
#[derive(Debug, Clone)]
pub struct ReportTable {
    heading: Option<String>,
    columns: Vec<(String, Fit)>,
    rows: Vec<Vec<TableCell>>,
}

/// A table whose columns never wrap; mark the ones that may with [`ReportTable::fit`].
pub fn new_table(header: &[&str]) -> ReportTable {
    ReportTable {
        heading: None,
        columns: header.iter().map(|h| (h.to_string(), Fit::Whole)).collect(),
        rows: Vec::new(),
    }
}

impl ReportTable {
    /// Sets how the named columns give way.
    pub fn fit(mut self, fit: Fit, names: &[&str]) -> Self {
        for name in names {
            let column = self
                .columns
                .iter_mut()
                .find(|(h, _)| h == name)
                .unwrap_or_else(|| panic!("no column {name:?} in this table"));
            column.1 = fit;
        }
        self
    }

    pub fn heading(mut self, heading: &str) -> Self {
        self.heading = Some(heading.to_string());
        self
    }

    pub fn add_row(&mut self, row: Vec<TableCell>) {
        debug_assert_eq!(row.len(), self.columns.len(), "one cell per column");
        self.rows.push(row);
    }

    /// The table for stdout, with its heading, ending in a newline.
    pub fn render(&self) -> String {
        self.render_for(Layout::stdout())
    }

    pub fn render_for(&self, layout: Layout) -> String {
        let markdown = !layout.styled;
        let mut t = Table::new();
        // Width and styling are decided here, from `layout`, not by comfy-table's own probe.
        t.force_no_tty();
        if layout.styled {
            t.load_style(presets::UTF8_FULL_CONDENSED);
            t.enforce_styling();
        } else {
            t.load_style(presets::ASCII_MARKDOWN);
        }
        t.set_header(
            self.columns
                .iter()
                .map(|(h, _)| Cell::new(clean(h, markdown)))
                .collect::<Vec<_>>(),
        );
        for row in &self.rows {
            t.add_row(
                row.iter()
                    .map(|c| {
                        let mut content = Cell::new(clean(&c.text, markdown));
                        if let (true, Some(colour)) = (layout.styled, c.colour) {
                            content = content.fg(colour);
                        }
                        content
                    })
                    .collect::<Vec<_>>(),
            );
        }
        match layout.width {
            None => {
                t.set_content_arrangement(ContentArrangement::Disabled);
            }
            Some(width) => {
                t.set_content_arrangement(ContentArrangement::Dynamic);
                t.set_width(width);
                let hidden = self.details_to_hide(&t.column_max_content_widths(), width);
                for (i, (_, fit)) in self.columns.iter().enumerate() {
                    // The table was built with one column per entry of self.columns.
                    #[allow(clippy::expect_used)]
                    let column = t.column_mut(i).expect("a column per header");
                    if hidden.contains(&i) {
                        column.set_constraint(ColumnConstraint::Hidden);
                    } else if *fit != Fit::Wrap {
                        column.set_constraint(ColumnConstraint::ContentWidth);
                    }
                }
            }
        }
        let mut text = String::new();
        if let Some(h) = &self.heading {
            text.push_str(h);
            text.push('\n');
        }
        text.push_str(&t.to_string());
        text.push('\n');
        text
    }

    /// Detail columns to leave out, rightmost first, until the table fits `width`.
    fn details_to_hide(&self, content_widths: &[u16], width: u16) -> Vec<usize> {
        // Each column: its content, one space either side, one border; plus the last border.
        let mut total: usize = content_widths
            .iter()
            .map(|w| *w as usize + 3)
            .sum::<usize>()
            + 1;
        let mut hidden = Vec::new();
        for (i, (_, fit)) in self.columns.iter().enumerate().rev() {
            if total <= width as usize {
                break;
            }
            if *fit == Fit::Detail {
                total -= content_widths[i] as usize + 3;
                hidden.push(i);
            }
        }
        hidden
    }
}

/// Cell text that cannot break a table: one line, no control characters, and in Markdown
/// no unescaped `|`.
fn clean(text: &str, markdown: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '|' if markdown => out.push_str("\\|"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The steps of an operation: name, status, message, time.
pub fn steps(steps: &[Step]) -> ReportTable {
    let mut t = new_table(&["step", "status", "message", "time"]).fit(Fit::Wrap, &["message"]);
    for s in steps {
        t.add_row(vec![
            cell(&s.name),
            status_cell(s.status),
            cell(&s.message),
            cell(units::millis(s.duration_ms)),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ReportTable {
        let mut t = new_table(&["backup id", "message", "sha256"])
            .fit(Fit::Wrap, &["message"])
            .fit(Fit::Detail, &["sha256"]);
        t.add_row(vec![
            cell("main-20261125T054631Z-safety"),
            cell("a rather long message that has to wrap | with a pipe\nand a newline"),
            cell("0c1479107884"),
        ]);
        t
    }

    #[test]
    fn width_comes_from_the_terminal_then_columns_then_nowhere() {
        assert_eq!(fit_width(Some(120), Some("80")), Some(120));
        assert_eq!(fit_width(Some(0), Some("80")), Some(80));
        assert_eq!(fit_width(None, Some(" 100 ")), Some(100));
        assert_eq!(fit_width(None, Some("0")), None);
        assert_eq!(fit_width(None, Some("wide")), None);
        assert_eq!(fit_width(None, None), None);
    }

    #[test]
    fn without_a_width_nothing_wraps_and_a_pipe_cannot_break_a_row() {
        let text = sample().render_for(Layout {
            styled: false,
            width: None,
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[2].contains("wrap \\| with a pipe and a newline"),
            "{text}"
        );
        // Every row has exactly as many unescaped separators as the header.
        let separators = |l: &str| l.replace("\\|", "").matches('|').count();
        assert_eq!(separators(lines[0]), separators(lines[2]), "{text}");
    }

    #[test]
    fn on_a_narrow_screen_ids_stay_whole_messages_wrap_details_go() {
        let text = sample().render_for(Layout {
            styled: true,
            width: Some(50),
        });
        assert!(text.contains("main-20261125T054631Z-safety"), "{text}");
        assert!(
            !text.contains("sha256"),
            "the detail column is left out: {text}"
        );
        assert!(text.lines().count() > 5, "the message wraps: {text}");
        for line in text.lines() {
            assert!(
                line.chars().count() <= 50,
                "{line:?} is wider than 50\n{text}"
            );
        }
        // Wide enough: everything is shown on one line per row.
        let wide = sample().render_for(Layout {
            styled: true,
            width: Some(200),
        });
        assert!(
            wide.contains("sha256") && wide.lines().count() == 5,
            "{wide}"
        );
    }

    #[test]
    fn headings_come_first() {
        let text = new_table(&["a"])
            .heading("Verification")
            .render_for(Layout {
                styled: false,
                width: None,
            });
        assert!(text.starts_with("Verification\n| a |"), "{text}");
    }
}
