//! `--metrics-file PATH`: Prometheus text for node_exporter's textfile collector, written
//! whole or not at all (temporary file in the same directory, fsync, rename), so the
//! collector never reads half a file.
//!
//! Every family shared by several operations carries an `operation` label, so the files of
//! `backup`, `prune`, `drill` and `check` can sit in one collector directory without two
//! files exporting the same series.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::error::usage;

/// One metric family: name, help, and its samples (labels, value).
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Family {
    pub fn new(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            help,
            samples: Vec::new(),
        }
    }

    pub fn sample(&mut self, labels: &[(&'static str, &str)], value: f64) {
        self.samples.push((
            labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            value,
        ));
    }
}

pub const LAST_SUCCESS: (&str, &str) = (
    "dr_last_success_timestamp_seconds",
    "When the operation last succeeded for the target (Unix time; 0 if never).",
);
pub const LAST_DURATION: (&str, &str) = (
    "dr_last_duration_seconds",
    "How long the last run of the operation took.",
);
pub const LAST_RUN_SUCCESS: (&str, &str) = (
    "dr_last_run_success",
    "1 when the last run of the operation succeeded, 0 when it failed.",
);
pub const BACKUP_SIZE: (&str, &str) = (
    "dr_backup_size_bytes",
    "Stored bytes of the newest successful backup of the target.",
);
pub const RPO_OBJECTIVE: (&str, &str) = (
    "dr_rpo_objective_seconds",
    "The RPO objective from dr.toml: a backup must be younger than this.",
);
pub const DRILL_RTO: (&str, &str) = (
    "dr_drill_rto_seconds",
    "Recovery time measured by the last drill (restore and verify).",
);
pub const DRILL_RPO: (&str, &str) = (
    "dr_drill_rpo_seconds",
    "Age of the backup the last drill restored, at drill time.",
);
pub const RPO: (&str, &str) = (
    "dr_rpo_seconds",
    "Age of the newest complete backup when dr check ran: the data a disaster then would lose.",
);

/// The text exposition of `families`; empty families are left out.
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families.iter().filter(|f| !f.samples.is_empty()) {
        out.push_str(&format!(
            "# HELP {} {}\n# TYPE {} gauge\n",
            f.name, f.help, f.name
        ));
        for (labels, value) in &f.samples {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            if labels.is_empty() {
                out.push_str(&format!("{} {value}\n", f.name));
            } else {
                out.push_str(&format!("{}{{{}}} {value}\n", f.name, labels.join(",")));
            }
        }
    }
    out
}

/// The file to write: this run's exposition, plus the series of the previous file whose
/// target this run did not touch. A `dr backup --target a` must not drop target b's series,
/// or an alert on b stops firing (or never fires) after every run that skipped it. Series
/// without a target label are this run's alone.
pub fn merge_with_previous(previous: &str, text: &str) -> String {
    let run_targets: std::collections::BTreeSet<&str> =
        text.lines().filter_map(target_label).collect();
    // Families in order of first appearance: (name, header lines, sample lines).
    let mut families: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    let mut add = |line: &str, keep_sample: bool| {
        let (name, header) = match line
            .strip_prefix("# HELP ")
            .or(line.strip_prefix("# TYPE "))
        {
            Some(rest) => (rest.split_whitespace().next().unwrap_or(""), true),
            None => (line.split(['{', ' ']).next().unwrap_or(""), false),
        };
        if name.is_empty() {
            return;
        }
        let i = match families.iter().position(|(n, _, _)| n == name) {
            Some(i) => i,
            None => {
                families.push((name.to_string(), Vec::new(), Vec::new()));
                families.len() - 1
            }
        };
        let family = &mut families[i];
        if header {
            if !family.1.iter().any(|h| h == line) && family.1.len() < 2 {
                family.1.push(line.to_string());
            }
        } else if keep_sample && !family.2.iter().any(|l| series(l) == series(line)) {
            family.2.push(line.to_string());
        }
    };
    for line in text.lines() {
        add(line, true);
    }
    for line in previous.lines() {
        let keep = target_label(line).is_some_and(|t| !run_targets.contains(t));
        add(line, keep);
    }
    let mut out = String::new();
    for (_, headers, samples) in families.iter().filter(|f| !f.2.is_empty()) {
        for h in headers {
            out.push_str(h);
            out.push('\n');
        }
        for l in samples {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// The value of a sample line's `target` label.
fn target_label(line: &str) -> Option<&str> {
    if line.starts_with('#') {
        return None;
    }
    let rest = line.split_once("target=\"")?.1;
    rest.split_once('"').map(|(v, _)| v)
}

/// A sample line without its value: the series it is.
fn series(line: &str) -> &str {
    line.rsplit_once(' ').map_or(line, |(s, _)| s)
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Refuses, before any work, a path whose directory does not exist (exit 2).
pub fn check_path(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Err(usage(format!(
            "--metrics-file {} is a directory; hint: name a file, such as {}/dr.prom",
            path.display(),
            path.display()
        )));
    }
    let dir = parent(path);
    if !dir.is_dir() {
        return Err(usage(format!(
            "--metrics-file {}: directory {} does not exist; hint: create it, or point at the textfile collector's directory (node_exporter --collector.textfile.directory)",
            path.display(),
            dir.display()
        )));
    }
    Ok(())
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes `text` to `path` atomically: a temporary file the collector ignores (it reads
/// `*.prom` only), fsync, rename over the old file. Mode 0644: the collector runs as
/// another user.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let dir = parent(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dr.prom".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| -> Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write the metrics file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_keeps_the_series_of_targets_it_did_not_touch() {
        let previous = "# HELP dr_x X.\n# TYPE dr_x gauge\ndr_x{target=\"a\",operation=\"backup\"} 1\ndr_x{target=\"b\",operation=\"backup\"} 2\n# HELP dr_ready R.\n# TYPE dr_ready gauge\ndr_ready 0\n";
        let run = "# HELP dr_x X.\n# TYPE dr_x gauge\ndr_x{target=\"a\",operation=\"backup\"} 5\n";
        assert_eq!(
            merge_with_previous(previous, run),
            "# HELP dr_x X.\n# TYPE dr_x gauge\ndr_x{target=\"a\",operation=\"backup\"} 5\ndr_x{target=\"b\",operation=\"backup\"} 2\n"
        );
        assert_eq!(merge_with_previous("", run), run);
    }

    #[test]
    fn renders_families_with_escaped_labels() {
        let mut f = Family::new(LAST_SUCCESS.0, LAST_SUCCESS.1);
        f.sample(&[("target", "a\"b"), ("operation", "backup")], 1700000000.5);
        let empty = Family::new(DRILL_RTO.0, DRILL_RTO.1);
        let text = render(&[f, empty]);
        assert_eq!(
            text,
            "# HELP dr_last_success_timestamp_seconds When the operation last succeeded for the target (Unix time; 0 if never).\n\
             # TYPE dr_last_success_timestamp_seconds gauge\n\
             dr_last_success_timestamp_seconds{target=\"a\\\"b\",operation=\"backup\"} 1700000000.5\n"
        );
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dr.prom");
        write_atomic(&path, "a 1\n").unwrap();
        write_atomic(&path, "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 2\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert!(check_path(&dir.path().join("missing/dr.prom")).is_err());
        assert!(check_path(dir.path()).is_err());
        assert!(check_path(&path).is_ok());
    }
}
