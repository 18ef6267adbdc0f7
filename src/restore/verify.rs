//! Post-recovery verification: the restored database holds what the backup held (exact
//! row counts from the dump's own snapshot), and the configured assertions hold.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::backup::manifest::BackupManifest;
use crate::checks::Status;
use crate::config::{Config, HttpCheck, SqlAssertion};
use crate::pg::{self, ConnTarget};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyItem {
    pub name: String,
    pub status: Status,
    pub message: String,
}

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
    pub items: Vec<VerifyItem>,
    pub duration_ms: u64,
}

/// What to verify: a database (the target's or `--into`), against a manifest when known.
pub struct VerifyRequest<'a> {
    pub config: &'a Config,
    pub target: &'a str,
    pub conn: &'a ConnTarget,
    pub manifest: Option<&'a BackupManifest>,
    /// Redis targets and HTTP endpoints belong to production: drills skip them.
    pub include_services: bool,
}

pub async fn verify(req: VerifyRequest<'_>) -> VerifyReport {
    let started = Instant::now();
    let mut items = Vec::new();
    let mut mismatches = Vec::new();
    let mut tables_checked = 0;
    match req.conn.connect().await {
        Err(e) => items.push(VerifyItem {
            name: "database".into(),
            status: Status::Fail,
            message: format!("{e:#}"),
        }),
        Ok(client) => {
            items.push(VerifyItem {
                name: "database".into(),
                status: Status::Pass,
                message: format!("{} answers", req.conn.public_url),
            });
            if let Some(manifest) = req.manifest {
                for table in &manifest.tables {
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
                let status = if mismatches.is_empty() {
                    Status::Pass
                } else {
                    Status::Fail
                };
                let message = if mismatches.is_empty() {
                    format!(
                        "all {tables_checked} table(s) hold the row counts recorded in backup {}",
                        manifest.id
                    )
                } else {
                    mismatches
                        .iter()
                        .map(|m| match m.found {
                            Some(found) => {
                                format!("{}: {} rows expected, {found} found", m.table, m.expected)
                            }
                            None => {
                                format!("{}: table missing ({} rows expected)", m.table, m.expected)
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                items.push(VerifyItem {
                    name: "row counts".into(),
                    status,
                    message,
                });
            }
            for assertion in req
                .config
                .verify
                .sql
                .iter()
                .filter(|a| a.target.as_deref().is_none_or(|t| t == req.target))
            {
                items.push(sql_assertion(&client, assertion).await);
            }
        }
    }
    if req.include_services {
        for check in &req.config.verify.http {
            items.push(http_check(check).await);
        }
        for redis in &req.config.redis {
            items.push(redis_round_trip(redis).await);
        }
    }
    VerifyReport {
        format_version: 1,
        ok: items.iter().all(|i| i.status != Status::Fail),
        target: req.target.to_string(),
        database: req.conn.public_url.clone(),
        backup_id: req.manifest.map(|m| m.id.clone()),
        tables_checked,
        mismatches,
        items,
        duration_ms: started.elapsed().as_millis() as u64,
    }
}

async fn sql_assertion(client: &tokio_postgres::Client, a: &SqlAssertion) -> VerifyItem {
    let name = format!("sql: {}", a.name);
    let expectation = match Expectation::parse(&a.expect) {
        Ok(e) => e,
        Err(e) => {
            return VerifyItem {
                name,
                status: Status::Fail,
                message: e.to_string(),
            }
        }
    };
    // simple_query returns every value as text, whatever its type.
    let value = match client.simple_query(&a.query).await {
        Ok(messages) => messages.into_iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_string)),
            _ => None,
        }),
        Err(e) => {
            return VerifyItem {
                name,
                status: Status::Fail,
                message: format!("query failed: {}", pg::describe_pg_error(&e)),
            }
        }
    };
    let Some(value) = value else {
        return VerifyItem {
            name,
            status: Status::Fail,
            message: format!("query returned no row; expected a value {}", a.expect),
        };
    };
    let shown = value.clone().unwrap_or_else(|| "NULL".into());
    if expectation.holds(value.as_deref()) {
        VerifyItem {
            name,
            status: Status::Pass,
            message: format!("{shown} {}", a.expect),
        }
    } else {
        VerifyItem {
            name,
            status: Status::Fail,
            message: format!("got {shown}, expected {}", a.expect),
        }
    }
}

async fn http_check(check: &HttpCheck) -> VerifyItem {
    let name = format!("http: {}", check.name);
    let timeout = check.timeout.unwrap_or(Duration::from_secs(5));
    let client = match reqwest::Client::builder().timeout(timeout).build() {
        Ok(c) => c,
        Err(e) => {
            return VerifyItem {
                name,
                status: Status::Fail,
                message: e.to_string(),
            }
        }
    };
    let url = crate::secret::redact_url(&check.url);
    match client.get(&check.url).send().await {
        Ok(resp) if resp.status().as_u16() == check.expect_status => VerifyItem {
            name,
            status: Status::Pass,
            message: format!("{url} answered {}", resp.status().as_u16()),
        },
        Ok(resp) => VerifyItem {
            name,
            status: Status::Fail,
            message: format!(
                "{url} answered {}, expected {}",
                resp.status().as_u16(),
                check.expect_status
            ),
        },
        Err(e) if e.is_timeout() => VerifyItem {
            name,
            status: Status::Fail,
            message: format!(
                "{url} did not answer within {}",
                crate::config::format_duration(timeout)
            ),
        },
        Err(e) => VerifyItem {
            name,
            status: Status::Fail,
            message: format!("{url}: {}", crate::checks::scrub(&e.to_string(), &[])),
        },
    }
}

async fn redis_round_trip(target: &crate::config::RedisTarget) -> VerifyItem {
    let name = format!("redis: {}", target.name);
    let result: Result<()> = async {
        let mut con = crate::checks::redis::open(target).await?;
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
        Ok(()) => VerifyItem {
            name,
            status: Status::Pass,
            message: "PING and SET/GET/DEL on a scratch key work".into(),
        },
        Err(e) => VerifyItem {
            name,
            status: Status::Fail,
            message: format!("{e:#}"),
        },
    }
}

/// `">= 1"`, `"= 0"`, `"!= 0"`, `"< 5"`, or a bare value (text equality).
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    op: &'static str,
    value: String,
}

impl Expectation {
    pub fn parse(text: &str) -> Result<Expectation> {
        let t = text.trim();
        for op in [">=", "<=", "!=", "=", ">", "<"] {
            if let Some(rest) = t.strip_prefix(op) {
                let value = rest.trim().to_string();
                if value.is_empty() {
                    bail!("expectation {text:?} has no value; write it like \">= 1\" or \"= 0\"");
                }
                if op != "=" && op != "!=" && value.parse::<f64>().is_err() {
                    bail!("expectation {text:?} compares with {op} but {value:?} is not a number");
                }
                return Ok(Expectation { op, value });
            }
        }
        if t.is_empty() {
            bail!("empty expectation; write it like \">= 1\" or \"= 0\"");
        }
        Ok(Expectation {
            op: "=",
            value: t.to_string(),
        })
    }

    pub fn holds(&self, actual: Option<&str>) -> bool {
        let Some(actual) = actual else { return false };
        if let (Ok(a), Ok(e)) = (actual.trim().parse::<f64>(), self.value.parse::<f64>()) {
            return match self.op {
                ">=" => a >= e,
                "<=" => a <= e,
                ">" => a > e,
                "<" => a < e,
                "=" => a == e,
                _ => a != e,
            };
        }
        match self.op {
            "=" => actual == self.value,
            "!=" => actual != self.value,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations() {
        assert!(Expectation::parse(">= 1").unwrap().holds(Some("3")));
        assert!(!Expectation::parse(">= 1").unwrap().holds(Some("0")));
        assert!(Expectation::parse("= 0").unwrap().holds(Some("0")));
        assert!(Expectation::parse("!=0").unwrap().holds(Some("2")));
        assert!(Expectation::parse("< 2.5").unwrap().holds(Some("2")));
        assert!(Expectation::parse("t").unwrap().holds(Some("t")));
        assert!(!Expectation::parse("= 0").unwrap().holds(None));
        assert!(Expectation::parse(">= x").is_err());
        assert!(Expectation::parse(">=").is_err());
    }
}
