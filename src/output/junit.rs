//! JUnit XML for CI: one testcase per check; `fail` is a failure, `warn` is not.

use crate::checks::{CheckReport, Status};

pub fn check_report(report: &CheckReport) -> String {
    let failures = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
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
        match c.status {
            Status::Fail => xml.push_str(&format!(
                "      <failure message=\"{}\" type=\"{}\">{}</failure>\n",
                escape(&c.message),
                if c.critical {
                    "critical"
                } else {
                    "non-critical"
                },
                escape(&c.message)
            )),
            Status::Warn => xml.push_str(&format!(
                "      <system-out>warn: {}</system-out>\n",
                escape(&c.message)
            )),
            Status::Pass => xml.push_str(&format!(
                "      <system-out>{}</system-out>\n",
                escape(&c.message)
            )),
        }
        xml.push_str("    </testcase>\n");
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
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

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot; ");
    }
}
