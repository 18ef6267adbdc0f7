//! JUnit XML for CI: one testcase per check. A `fail` is a `<failure>`; under `--strict` a
//! `warn` is one too, because it fails the run: the report and the exit status agree
//! (exit 1 always comes with failures > 0).

use crate::checks::{CheckReport, CheckResult, Status};

pub fn check_report(report: &CheckReport) -> String {
    let failures = report
        .checks
        .iter()
        .filter(|c| is_failure(report, c))
        .count();
    let total_secs: f64 = report
        .checks
        .iter()
        .map(|c| c.duration_ms as f64 / 1000.0)
        .sum();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml.push_str(&format!(
        "<testsuites name=\"dr check\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{total_secs:.3}\">\n",
        report.checks.len()
    ));
    xml.push_str(&format!(
        "  <testsuite name=\"dr check\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{total_secs:.3}\">\n",
        report.checks.len()
    ));
    for c in &report.checks {
        let target = c.target.as_deref().unwrap_or("global");
        xml.push_str(&format!(
            "    <testcase classname=\"dr.{}\" name=\"{} [{}]\" time=\"{:.3}\">\n",
            escape(target),
            escape(&c.name),
            escape(target),
            c.duration_ms as f64 / 1000.0
        ));
        if is_failure(report, c) {
            xml.push_str(&format!(
                "      <failure message=\"{}\" type=\"{}\">{}</failure>\n",
                escape(&c.message),
                match (c.status, c.critical) {
                    (Status::Warn, _) => "warn (strict)",
                    (_, true) => "critical",
                    (_, false) => "non-critical",
                },
                escape(&c.message)
            ));
        } else {
            let prefix = if c.status == Status::Warn {
                "warn: "
            } else {
                ""
            };
            xml.push_str(&format!(
                "      <system-out>{prefix}{}</system-out>\n",
                escape(&c.message)
            ));
        }
        xml.push_str("    </testcase>\n");
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

/// A fail always; a warn when `--strict` makes it fail the run.
fn is_failure(report: &CheckReport, check: &CheckResult) -> bool {
    match check.status {
        Status::Fail => true,
        Status::Warn => report.strict,
        Status::Pass => false,
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, status: Status) -> CheckResult {
        CheckResult {
            name: name.into(),
            target: Some("main".into()),
            status,
            critical: false,
            message: format!("{name} says so"),
            duration_ms: 1234,
        }
    }

    #[test]
    fn under_strict_a_warn_is_a_failure_so_report_and_exit_agree() {
        let checks = vec![check("a", Status::Pass), check("b", Status::Warn)];
        let relaxed = check_report(&CheckReport::new(checks.clone(), false));
        assert!(relaxed.contains("failures=\"0\""), "{relaxed}");
        assert!(relaxed.contains("<system-out>warn: b says so"), "{relaxed}");
        let strict_report = CheckReport::new(checks, true);
        assert!(
            !strict_report.ready,
            "strict: a warn makes the run fail (exit 1)"
        );
        let strict = check_report(&strict_report);
        assert!(strict.contains("failures=\"1\""), "{strict}");
        assert!(
            strict.contains("<failure message=\"b says so\" type=\"warn (strict)\">"),
            "{strict}"
        );
        assert!(
            strict.contains("name=\"a [main]\" time=\"1.234\""),
            "{strict}"
        );
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot; ");
    }
}
