//! One way to write sizes, durations, ages, counts and times, everywhere `dr` shows them
//! to a person (JSON keeps plain numbers: `*_bytes`, `*_ms`, RFC 3339 times).

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Byte counts as people read them: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn bytes(n: u64) -> String {
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

/// A duration in at most two units: `250 ms`, `2.5s`, `30m`, `2h 5m`, `30d`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms < 1000 {
        return format!("{ms} ms");
    }
    if ms < 60_000 {
        return if ms % 1000 == 0 {
            format!("{}s", ms / 1000)
        } else {
            format!("{:.1}s", ms as f64 / 1000.0)
        };
    }
    let secs = d.as_secs();
    let parts = [
        (secs / 86_400, "d"),
        (secs / 3_600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
    ];
    let first = parts.iter().position(|(v, _)| *v > 0).unwrap_or(3);
    let mut out = format!("{}{}", parts[first].0, parts[first].1);
    if let Some((v, unit)) = parts.get(first + 1) {
        if *v > 0 {
            out.push_str(&format!(" {v}{unit}"));
        }
    }
    out
}

/// [`duration`] of a millisecond count.
pub fn millis(ms: u64) -> String {
    duration(Duration::from_millis(ms))
}

/// How long ago something happened; a time in the future counts as no age.
pub fn age(d: chrono::Duration) -> String {
    duration(d.to_std().unwrap_or_default())
}

/// A count with thousands separators, for tables: `1,234,567`.
pub fn count(n: impl Into<i128>) -> String {
    let n: i128 = n.into();
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A time for people: UTC, to the second (`2026-11-25T05:46:31Z`).
pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses a human duration such as `30m`, `1h`, `7d`, `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("invalid duration {text:?} ({e}); write it like \"90s\", \"30m\", \"1h\" or \"7d\"")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }

    #[test]
    fn durations_use_at_most_two_units() {
        assert_eq!(millis(250), "250 ms");
        assert_eq!(millis(2500), "2.5s");
        assert_eq!(millis(10_000), "10s");
        assert_eq!(duration(Duration::from_secs(1800)), "30m");
        assert_eq!(duration(Duration::from_secs(7500)), "2h 5m");
        assert_eq!(duration(Duration::from_secs(30 * 86_400)), "30d");
        assert_eq!(duration(Duration::from_secs(86_400 + 7200 + 5)), "1d 2h");
        assert_eq!(duration(Duration::from_secs(61)), "1m 1s");
        assert_eq!(age(chrono::Duration::seconds(-5)), "0 ms");
    }

    #[test]
    fn counts_and_times() {
        assert_eq!(count(0u32), "0");
        assert_eq!(count(999u32), "999");
        assert_eq!(count(1234567u32), "1,234,567");
        assert_eq!(count(-1000i64), "-1,000");
        let t = DateTime::parse_from_rfc3339("2026-11-25T05:46:31.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(time(t), "2026-11-25T05:46:31Z");
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert!(parse_duration("soon").unwrap_err().contains("\"30m\""));
    }
}
