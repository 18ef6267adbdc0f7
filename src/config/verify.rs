//! `[[verify.sql]]` and `[[verify.http]]`: what a restored database must answer.

use std::time::Duration;

use serde::Deserialize;

use super::{http_ok, opt_duration};

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    #[serde(default)]
    pub sql: Vec<SqlAssertion>,
    #[serde(default)]
    pub http: Vec<HttpCheck>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlAssertion {
    pub name: String,
    /// A query returning one row with one value.
    pub query: String,
    /// `">= 1"`, `"= 0"`, `"< 100"`, `"!= 0"`, or a bare value compared as text.
    pub expect: Expectation,
    /// The PostgreSQL target it applies to; all targets when absent.
    pub target: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    pub name: String,
    pub url: String,
    #[serde(default = "http_ok")]
    pub expect_status: u16,
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
}

/// What a `[[verify.sql]]` query must return: `">= 1"`, `"= 0"`, `"!= 0"`, `"< 5"`, or a
/// bare value (text equality). Parsed when the configuration loads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct Expectation {
    op: String,
    value: String,
}

impl Expectation {
    pub fn parse(text: &str) -> Result<Expectation, String> {
        let t = text.trim();
        for op in [">=", "<=", "!=", "=", ">", "<"] {
            if let Some(rest) = t.strip_prefix(op) {
                let value = rest.trim().to_string();
                if value.is_empty() {
                    return Err(format!(
                        "expectation {text:?} has no value; write it like \">= 1\" or \"= 0\""
                    ));
                }
                if op != "=" && op != "!=" && value.parse::<f64>().is_err() {
                    return Err(format!(
                        "expectation {text:?} compares with {op} but {value:?} is not a number"
                    ));
                }
                return Ok(Expectation {
                    op: op.to_string(),
                    value,
                });
            }
        }
        if t.is_empty() {
            return Err("empty expectation; write it like \">= 1\" or \"= 0\"".into());
        }
        Ok(Expectation {
            op: "=".to_string(),
            value: t.to_string(),
        })
    }

    pub fn holds(&self, actual: Option<&str>) -> bool {
        let Some(actual) = actual else { return false };
        if let (Ok(a), Ok(e)) = (actual.trim().parse::<f64>(), self.value.parse::<f64>()) {
            return match self.op.as_str() {
                ">=" => a >= e,
                "<=" => a <= e,
                ">" => a > e,
                "<" => a < e,
                "=" => a == e,
                _ => a != e,
            };
        }
        match self.op.as_str() {
            "=" => actual == self.value,
            "!=" => actual != self.value,
            _ => false,
        }
    }
}

impl TryFrom<String> for Expectation {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        Expectation::parse(&text)
    }
}

impl std::fmt::Display for Expectation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.op, self.value)
    }
}
