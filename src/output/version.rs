//! `dr version` and `dr --version` as text: one fact a line, aligned, easy to paste.

use crate::version::VersionReport;

pub fn text(report: &VersionReport) -> String {
    let mut lines = vec![
        format!("dr {}", report.version),
        format!("{:<12}{}", "commit", report.commit),
        format!("{:<12}{}", "built", report.build_date),
        format!("{:<12}{}", "platform", report.target),
    ];
    for t in &report.tools {
        let found = match (&t.path, &t.version, &t.error) {
            (Some(path), Some(version), _) => format!("{version} ({path})"),
            (_, _, Some(error)) => format!("not usable: {error}"),
            _ => "not found".to_string(),
        };
        lines.push(format!("{:<12}{found}", t.program));
    }
    lines.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::ClientTool;

    #[test]
    fn one_fact_a_line() {
        let report = VersionReport {
            format_version: 2,
            ok: true,
            version: "0.1.0".into(),
            commit: "abc123".into(),
            build_date: "2026-11-25".into(),
            target: "x86_64-unknown-linux-gnu".into(),
            tools: vec![
                ClientTool {
                    program: "pg_dump".into(),
                    path: Some("/usr/bin/pg_dump".into()),
                    version: Some("15.18".into()),
                    error: None,
                },
                ClientTool {
                    program: "psql".into(),
                    path: None,
                    version: None,
                    error: Some("psql not found on PATH; hint: install".into()),
                },
            ],
        };
        let text = text(&report);
        assert!(text.starts_with("dr 0.1.0\ncommit      abc123\n"), "{text}");
        assert!(
            text.contains("pg_dump     15.18 (/usr/bin/pg_dump)\n"),
            "{text}"
        );
        assert!(
            text.contains("psql        not usable: psql not found"),
            "{text}"
        );
    }
}
