//! Post-recovery verification: the restored database holds what the backup held (exact
//! row counts from the dump's own snapshot), and the configured assertions hold.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::units;

use crate::secret::scrub;
use serde::{Deserialize, Serialize};

use crate::backup::manifest::BackupManifest;
use crate::config::{Config, HttpCheck, RedisTarget, SqlAssertion};
use crate::pg::{self, ConnTarget};
use crate::report::{Finding, Phase, Status, Step};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RowMismatch {
    pub table: String,
    pub expected: i64,
    /// `None` when the table is missing.
    pub found: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyReport {
    pub format_version: u32,
    pub ok: bool,
    pub target: String,
    pub database: String,
    pub backup_id: Option<String>,
    pub tables_checked: usize,
    pub mismatches: Vec<RowMismatch>,
    /// Every verification, in order.
    #[serde(alias = "items")]
    pub steps: Vec<Step>,
    pub duration_ms: u64,
}

impl VerifyReport {
    /// One line: what passed, or every failure.
    pub fn summary(&self) -> String {
        let failed: Vec<String> = self
            .steps
            .iter()
            .filter(|s| s.status == Status::Fail)
            .map(|s| format!("{}: {}", s.name, s.message))
            .collect();
        if failed.is_empty() {
            format!(
                "{} check(s) passed, {} table(s) match",
                self.steps.len(),
                self.tables_checked
            )
        } else {
            failed.join("; ")
        }
    }
}

/// What to verify: a database (the target's or `--into`), against a manifest when known.
pub struct VerifyRequest<'a> {
    pub config: &'a Config,
    pub target: &'a str,
    pub conn: &'a ConnTarget,
    pub manifest: Option<&'a BackupManifest>,
    /// Redis targets and HTTP endpoints belong to production: drills skip them.
    pub include_services: bool,
    /// A partial restore: only these tables' rows are compared, and the `[[verify.sql]]`
    /// assertions (which speak of the whole database) are skipped.
    pub selection: &'a super::selection::Selection,
}

pub async fn verify(req: VerifyRequest<'_>) -> VerifyReport {
    let started = Instant::now();
    let mut items = Vec::new();
    let mut mismatches = Vec::new();
    let mut tables_checked = 0;
    match req.conn.connect().await {
        Err(e) => items.push(step("database", Finding::fail(format!("{e:#}")), started)),
        Ok(client) => {
            items.push(step(
                "database",
                Finding::pass(format!("{} answers", req.conn.public_url)),
                started,
            ));
            if let Some(manifest) = req.manifest {
                let counted = Instant::now();
                for table in req.selection.tables_of(manifest) {
                    tables_checked += 1;
                    let sql = format!(
                        "SELECT count(*) FROM {}.{}",
                        pg::quote_ident(&table.schema),
                        pg::quote_ident(&table.name)
                    );
                    let found = client
                        .query_one(&sql, &[])
                        .await
                        .ok()
                        .map(|r| r.get::<_, i64>(0));
                    if found != Some(table.rows) {
                        mismatches.push(RowMismatch {
                            table: table.qualified(),
                            expected: table.rows,
                            found,
                        });
                    }
                }
                // Fewer rows (or no table) is data the backup had and the database lacks;
                // more rows were written since: worth a look, not a loss.
                let lost = mismatches
                    .iter()
                    .any(|m| m.found.is_none_or(|found| found < m.expected));
                let status = if lost {
                    Status::Fail
                } else if mismatches.is_empty() {
                    Status::Pass
                } else {
                    Status::Warn
                };
                let message = if mismatches.is_empty() && !req.selection.is_empty() {
                    format!(
                        "all {tables_checked} table(s) of {} hold the row counts recorded in backup {}",
                        req.selection.flags(),
                        manifest.id
                    )
                } else if mismatches.is_empty() {
                    format!(
                        "all {tables_checked} table(s) hold the row counts recorded in backup {}",
                        manifest.id
                    )
                } else {
                    mismatches
                        .iter()
                        .map(|m| match m.found {
                            Some(found) if found > m.expected => format!(
                                "{}: {} rows, {} more than the backup's {} (written since)",
                                m.table,
                                units::count(found),
                                units::count(found - m.expected),
                                units::count(m.expected)
                            ),
                            Some(found) => {
                                format!(
                                    "{}: {} rows expected, {} found",
                                    m.table,
                                    units::count(m.expected),
                                    units::count(found)
                                )
                            }
                            None => {
                                format!(
                                    "{}: table missing ({} rows expected)",
                                    m.table,
                                    units::count(m.expected)
                                )
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                items.push(step("row counts", Finding { status, message }, counted));
            }
            for assertion in req
                .config
                .verify
                .sql
                .iter()
                .filter(|a| a.target.as_deref().is_none_or(|t| t == req.target))
                .filter(|_| req.selection.is_empty())
            {
                let began = Instant::now();
                let name = format!("sql: {}", assertion.name);
                items.push(step(&name, sql_assertion(&client, assertion).await, began));
            }
        }
    }
    if req.include_services {
        for check in &req.config.verify.http {
            let began = Instant::now();
            let name = format!("http: {}", check.name);
            items.push(step(&name, http_check(check).await, began));
        }
        for redis in &req.config.redis {
            let began = Instant::now();
            let name = format!("redis: {}", redis.name);
            items.push(step(&name, redis_round_trip(redis).await, began));
        }
    }
    VerifyReport {
        format_version: crate::report::FORMAT_VERSION,
        ok: items.iter().all(|s| s.status != Status::Fail),
        target: req.target.to_string(),
        database: req.conn.public_url.clone(),
        backup_id: req.manifest.map(|m| m.id.clone()),
        tables_checked,
        mismatches,
        steps: items,
        duration_ms: started.elapsed().as_millis() as u64,
    }
}

async fn sql_assertion(client: &tokio_postgres::Client, a: &SqlAssertion) -> Finding {
    // simple_query returns every value as text, whatever its type.
    let value = match client.simple_query(&a.query).await {
        Ok(messages) => messages.into_iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_string)),
            _ => None,
        }),
        Err(e) => return Finding::fail(format!("query failed: {}", pg::describe_pg_error(&e))),
    };
    let Some(value) = value else {
        return Finding::fail(format!(
            "query returned no row; expected a value {}",
            a.expect
        ));
    };
    let shown = value.clone().unwrap_or_else(|| "NULL".into());
    if a.expect.holds(value.as_deref()) {
        Finding::pass(format!("{shown} {}", a.expect))
    } else {
        Finding::fail(format!("got {shown}, expected {}", a.expect))
    }
}

async fn http_check(check: &HttpCheck) -> Finding {
    let timeout = check.timeout.unwrap_or(Duration::from_secs(5));
    let client = match reqwest::Client::builder().timeout(timeout).build() {
        Ok(c) => c,
        Err(e) => return Finding::fail(e.to_string()),
    };
    let url = crate::secret::redact_url(&check.url);
    match client.get(&check.url).send().await {
        Ok(resp) if resp.status().as_u16() == check.expect_status => {
            Finding::pass(format!("{url} answered {}", resp.status().as_u16()))
        }
        Ok(resp) => Finding::fail(format!(
            "{url} answered {}, expected {}",
            resp.status().as_u16(),
            check.expect_status
        )),
        Err(e) if e.is_timeout() => Finding::fail(format!(
            "{url} did not answer within {}",
            crate::units::duration(timeout)
        )),
        Err(e) => Finding::fail(format!("{url}: {}", scrub(&e.to_string(), &[]))),
    }
}

async fn redis_round_trip(target: &RedisTarget) -> Finding {
    let result: Result<()> = async {
        let mut con = crate::redis_client::open(target).await?;
        let key = format!(
            "dr:verify:{}:{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
        );
        let pong: String = redis::cmd("PING").query_async(&mut con).await?;
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg("dr")
            .arg("EX")
            .arg(60)
            .query_async(&mut con)
            .await?;
        let got: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut con).await?;
        let _: i64 = redis::cmd("DEL").arg(&key).query_async(&mut con).await?;
        if pong != "PONG" || got.as_deref() != Some("dr") {
            bail!("round trip on a scratch key returned {got:?}");
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Finding::pass("PING and SET/GET/DEL on a scratch key work"),
        Err(e) => Finding::fail(format!("{e:#}")),
    }
}

fn step(name: &str, finding: Finding, started: Instant) -> Step {
    Step::new(
        name,
        Phase::Verify,
        finding,
        started.elapsed().as_millis() as u64,
    )
}
