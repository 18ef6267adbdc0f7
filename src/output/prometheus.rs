//! Prometheus text exposition of a check report (for node_exporter's textfile collector
//! or a Pushgateway).

use crate::checks::{CheckReport, Status};

pub fn check_report(report: &CheckReport) -> String {
    let mut out = String::new();
    out.push_str(
        "# HELP dr_check_status Result of a dr readiness check: 0 pass, 1 warn, 2 fail.\n",
    );
    out.push_str("# TYPE dr_check_status gauge\n");
    for c in &report.checks {
        let value = match c.status {
            Status::Pass => 0,
            Status::Warn => 1,
            Status::Fail => 2,
        };
        out.push_str(&format!(
            "dr_check_status{{{}}} {value}\n",
            labels(&c.name, c.target.as_deref(), c.critical)
        ));
    }
    out.push_str("# HELP dr_check_duration_seconds How long a dr readiness check took.\n");
    out.push_str("# TYPE dr_check_duration_seconds gauge\n");
    for c in &report.checks {
        out.push_str(&format!(
            "dr_check_duration_seconds{{{}}} {:.3}\n",
            labels(&c.name, c.target.as_deref(), c.critical),
            c.duration_ms as f64 / 1000.0
        ));
    }
    out.push_str(
        "# HELP dr_ready 1 when dr check found the system ready (no critical failure), else 0.\n",
    );
    out.push_str("# TYPE dr_ready gauge\n");
    out.push_str(&format!("dr_ready {}\n", u8::from(report.ready)));
    out
}

fn labels(check: &str, target: Option<&str>, critical: bool) -> String {
    format!(
        "check=\"{}\",target=\"{}\",critical=\"{critical}\"",
        escape(check),
        escape(target.unwrap_or(""))
    )
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
