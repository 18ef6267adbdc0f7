//! Progress of `pg_restore` on a terminal: how much of the archive it has consumed, and an
//! estimate of the time left. Counted from the bytes `dr` feeds into its stdin (one job),
//! or from what it and its workers have read of the staged file (several jobs). Nothing
//! is drawn when stderr is not a terminal.

use std::io::Write;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `total` archive bytes, or `None` when progress is not wanted or stderr is
/// not a terminal.
pub fn bar(show: bool, total: u64) -> Option<ProgressBar> {
    use std::io::IsTerminal;
    if !show || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(total.max(1));
    // A constant template, checked by every test that draws the bar.
    #[allow(clippy::expect_used)]
    bar.set_style(
        ProgressStyle::with_template(
            "pg_restore: [{bar:30}] {bytes} of {total_bytes} of the archive ({percent}%), about {eta} left",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(500));
    Some(bar)
}

/// Leaves the bar's last state on the terminal, at 100 % when the restore succeeded.
pub fn finish(bar: Option<ProgressBar>, ok: bool) {
    if let Some(bar) = bar {
        if ok {
            bar.set_position(bar.length().unwrap_or(0));
            bar.finish();
        } else {
            bar.abandon();
        }
    }
}

/// A writer that counts what passes through it onto a bar.
pub struct Counted<W> {
    inner: W,
    bar: Option<ProgressBar>,
}

impl<W> Counted<W> {
    pub fn new(inner: W, bar: Option<ProgressBar>) -> Self {
        Counted { inner, bar }
    }
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(bar) = &self.bar {
            bar.inc(n as u64);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Polls what a child and its workers have read (`rchar` in `/proc/PID/io`) onto the bar,
/// until aborted.
pub fn watch_reads(pid: u32, bar: ProgressBar) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let total = bar.length().unwrap_or(u64::MAX);
        loop {
            let read: u64 = process_tree(pid).into_iter().map(read_chars).sum();
            // What it reads besides the archive (its own libraries, server answers) is
            // small; never claim more than the archive.
            bar.set_position(read.min(total.saturating_sub(1)));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}

/// A process and its children (parallel pg_restore forks its workers).
fn process_tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    out.extend(
        children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok()),
    );
    out
}

fn read_chars(pid: u32) -> u64 {
    parse_rchar(&std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default())
}

fn parse_rchar(io: &str) -> u64 {
    io.lines()
        .find_map(|l| l.strip_prefix("rchar:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rchar() {
        assert_eq!(parse_rchar("rchar: 4096\nwchar: 12\n"), 4096);
        assert_eq!(parse_rchar(""), 0);
        // This process has read something (at least its own binary's pages do not count,
        // but the test harness read files).
        assert!(read_chars(std::process::id()) > 0);
        assert!(process_tree(std::process::id()).contains(&std::process::id()));
    }

    #[test]
    fn counted_writer_passes_bytes_through() {
        let mut out = Counted::new(Vec::new(), None);
        out.write_all(b"abc").unwrap();
        assert_eq!(out.inner, b"abc");
    }
}
