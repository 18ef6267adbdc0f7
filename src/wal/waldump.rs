//! When the last transaction in an archived segment committed, read with `pg_waldump`:
//! a time target after it cannot be reached (recovery needs a commit after the target to
//! know it has passed it), so a restore refuses it before unpacking anything.

use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDateTime, Utc};
use tokio::io::AsyncReadExt;

use crate::process::ChildCommand;

/// The time of the last commit or abort record in `segment` (a WAL file), if any.
pub async fn last_transaction_time(
    pg_waldump: &Path,
    segment: &Path,
) -> Result<Option<DateTime<Utc>>> {
    // pg_waldump prints times in the local zone of its process: make it UTC.
    let mut running = ChildCommand::new(pg_waldump, "pg_waldump")
        .arg("--rmgr=Transaction")
        .arg(segment)
        .envs(&[("TZ".to_string(), "UTC".to_string())])
        .spawn(std::process::Stdio::null(), std::process::Stdio::piped())?;
    let mut stdout = running
        .child
        .stdout
        .take()
        .context("pg_waldump's stdout was not captured")?;
    let mut text = String::new();
    stdout.read_to_string(&mut text).await?;
    // pg_waldump ends with an error where the WAL ends (a segment rarely ends exactly at a
    // record boundary); what it printed before that is all there is to read.
    let _ = running.finish().await;
    Ok(parse_last_transaction_time(&text))
}

/// The last `COMMIT <time>` / `ABORT <time>` in pg_waldump output (times in UTC).
pub fn parse_last_transaction_time(output: &str) -> Option<DateTime<Utc>> {
    output
        .lines()
        .filter_map(|line| {
            let desc = line.split("desc: ").nth(1)?;
            let rest = desc
                .strip_prefix("COMMIT ")
                .or_else(|| desc.strip_prefix("ABORT "))?;
            let mut words = rest.split_whitespace();
            let stamp = format!("{} {}", words.next()?, words.next()?);
            let stamp = stamp.trim_end_matches(';');
            NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_last_commit_time() {
        let out = "\
rmgr: Transaction len (rec/tot):     34/    34, tx:        735, lsn: 0/01000178, prev 0/01000140, desc: COMMIT 2026-11-25 17:40:01.123456 UTC
rmgr: Transaction len (rec/tot):     34/    34, tx:        736, lsn: 0/01000200, prev 0/010001A0, desc: ABORT 2026-11-25 17:40:02.5 UTC
rmgr: Transaction len (rec/tot):    130/   130, tx:        737, lsn: 0/01000300, prev 0/01000260, desc: COMMIT 2026-11-25 17:40:03.000001 UTC; inval msgs: catcache 55
pg_waldump: error: error in WAL record at 0/1000300: invalid record length
";
        let t = parse_last_transaction_time(out).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-25T17:40:03.000001+00:00");
        assert_eq!(
            parse_last_transaction_time("rmgr: XLOG desc: SWITCH\n"),
            None
        );
    }
}
