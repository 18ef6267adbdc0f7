//! Runbooks: Markdown embedded in the binary (overridable by `[runbooks] dir`), filled in
//! from the live configuration and storage at render time.
//!
//! Format: front matter with `title` and `summary`, `## ` sections, and under `## Steps` a
//! numbered list whose items start with `[dr]` (exactly one `dr ...` code span: the
//! command) or `[manual]`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::config::Config;
use crate::storage::Storage;
use crate::units::duration as format_duration;

const EMBEDDED: &[(&str, &str)] = &[
    (
        "database-failure",
        include_str!("../runbooks/database-failure.md"),
    ),
    (
        "application-failure",
        include_str!("../runbooks/application-failure.md"),
    ),
    (
        "redis-failure",
        include_str!("../runbooks/redis-failure.md"),
    ),
    (
        "infrastructure-loss",
        include_str!("../runbooks/infrastructure-loss.md"),
    ),
    (
        "data-corruption",
        include_str!("../runbooks/data-corruption.md"),
    ),
    (
        "accidental-deletion",
        include_str!("../runbooks/accidental-deletion.md"),
    ),
    (
        "security-incident",
        include_str!("../runbooks/security-incident.md"),
    ),
    (
        "point-in-time-restore",
        include_str!("../runbooks/point-in-time-restore.md"),
    ),
];

pub const PLACEHOLDERS: &[&str] = &[
    "target",
    "database",
    "redis_target",
    "storage",
    "rto",
    "rpo",
    "contacts",
    "vendors",
    "latest_backup",
    "config",
];

#[derive(Debug, Clone, Serialize)]
pub struct Runbook {
    pub name: String,
    pub title: String,
    pub summary: String,
    /// `embedded`, or the override file's path.
    pub source: String,
    #[serde(skip)]
    body: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunbookStep {
    pub number: u32,
    /// `dr` or `manual`.
    pub kind: String,
    pub text: String,
    /// The `dr` command of a `[dr]` step.
    pub command: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RenderedRunbook {
    pub name: String,
    pub title: String,
    pub summary: String,
    pub source: String,
    /// Section name → rendered Markdown (Symptoms, Impact, Decision, After, ...).
    pub sections: BTreeMap<String, String>,
    pub steps: Vec<RunbookStep>,
    /// The whole rendered Markdown.
    pub markdown: String,
}

/// A placeholder's value, or why it has none (and how to give it one).
pub type Values = BTreeMap<&'static str, Result<String, String>>;

impl Runbook {
    pub fn parse(name: &str, text: &str, source: &str) -> Result<Runbook> {
        let rest = text
            .strip_prefix("---\n")
            .with_context(|| format!("runbook {name} does not start with a --- front matter"))?;
        let (front, body) = rest
            .split_once("\n---\n")
            .with_context(|| format!("runbook {name}: front matter is not closed by ---"))?;
        let mut title = None;
        let mut summary = None;
        for line in front.lines() {
            match line.split_once(':') {
                Some(("title", v)) => title = Some(v.trim().to_string()),
                Some(("summary", v)) => summary = Some(v.trim().to_string()),
                _ => bail!("runbook {name}: unexpected front matter line {line:?} (only title and summary)"),
            }
        }
        Ok(Runbook {
            name: name.to_string(),
            title: title.with_context(|| format!("runbook {name} has no title"))?,
            summary: summary.with_context(|| format!("runbook {name} has no summary"))?,
            source: source.to_string(),
            body: body.to_string(),
        })
    }

    /// Fills the placeholders. Unknown placeholders are always an error; a known one without
    /// a value is an error too, unless `lenient` (then it shows why it is missing).
    pub fn render_with(&self, values: &Values, lenient: bool) -> Result<RenderedRunbook> {
        let mut out = String::with_capacity(self.body.len());
        let mut rest = self.body.as_str();
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .with_context(|| format!("runbook {}: unclosed {{{{", self.name))?;
            let key = after[..end].trim();
            match values.iter().find(|(k, _)| **k == key) {
                None => bail!(
                    "runbook {} uses unknown placeholder {{{{{key}}}}}; known placeholders: {}",
                    self.name,
                    PLACEHOLDERS.join(", ")
                ),
                Some((_, Ok(v))) => out.push_str(v),
                Some((_, Err(why))) if lenient => out.push_str(&format!("<{key}: {why}>")),
                Some((_, Err(why))) => bail!("runbook {} needs {{{{{key}}}}}: {why}", self.name),
            }
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        let (sections, steps) = split_sections(&out)?;
        Ok(RenderedRunbook {
            name: self.name.clone(),
            title: self.title.clone(),
            summary: self.summary.clone(),
            source: self.source.clone(),
            sections,
            steps,
            markdown: format!("# {}\n\n{}", self.title, out.trim_start()),
        })
    }

    pub fn render(&self, values: &Values) -> Result<RenderedRunbook> {
        self.render_with(values, false)
    }
}

fn split_sections(markdown: &str) -> Result<(BTreeMap<String, String>, Vec<RunbookStep>)> {
    let mut sections = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in markdown.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            if let Some((name, text)) = current.take() {
                sections.insert(name, text.trim().to_string());
            }
            current = Some((heading.trim().to_string(), String::new()));
        } else if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    if let Some((name, text)) = current {
        sections.insert(name, text.trim().to_string());
    }
    let mut steps = Vec::new();
    for line in sections
        .get("Steps")
        .map(String::as_str)
        .unwrap_or("")
        .lines()
    {
        let Some((num, item)) = line.split_once(". ") else {
            continue;
        };
        let Ok(number) = num.trim().parse::<u32>() else {
            continue;
        };
        let item = item.trim();
        let (kind, text) = if let Some(t) = item.strip_prefix("[dr]") {
            ("dr", t.trim())
        } else if let Some(t) = item.strip_prefix("[manual]") {
            ("manual", t.trim())
        } else {
            bail!("step {number} is neither [dr] nor [manual]: {item:?}");
        };
        let command = if kind == "dr" {
            let spans: Vec<&str> = text.split('`').skip(1).step_by(2).collect();
            match spans.as_slice() {
                [cmd] if cmd.starts_with("dr ") => Some(cmd.to_string()),
                _ => bail!(
                    "step {number} is marked [dr] but does not hold exactly one `dr ...` command"
                ),
            }
        } else {
            None
        };
        steps.push(RunbookStep {
            number,
            kind: kind.into(),
            text: text.to_string(),
            command,
        });
    }
    Ok((sections, steps))
}

/// The embedded runbooks, then those of `[runbooks] dir` (same name replaces, new adds).
pub fn load_all(config: &Config) -> Result<Vec<Runbook>> {
    let mut all: BTreeMap<String, Runbook> = BTreeMap::new();
    for (name, text) in EMBEDDED {
        all.insert(name.to_string(), Runbook::parse(name, text, "embedded")?);
    }
    if let Some(dir) = &config.runbooks.dir {
        let dir = if dir.is_relative() {
            config.path.parent().unwrap_or(Path::new(".")).join(dir)
        } else {
            dir.clone()
        };
        let entries = std::fs::read_dir(&dir).with_context(|| {
            format!(
                "cannot read [runbooks] dir {}; hint: fix the path in dr.toml",
                dir.display()
            )
        })?;
        for entry in entries {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("md") {
                continue;
            }
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            all.insert(
                name.clone(),
                Runbook::parse(&name, &text, &path.display().to_string())?,
            );
        }
    }
    Ok(all.into_values().collect())
}

pub fn find(config: &Config, name: &str) -> Result<Runbook> {
    let all = load_all(config)?;
    let known: Vec<String> = all.iter().map(|r| r.name.clone()).collect();
    all.into_iter().find(|r| r.name == name).ok_or_else(|| {
        crate::error::usage(format!(
            "unknown runbook {name:?}; known runbooks: {}",
            known.join(", ")
        ))
    })
}

/// Values from dr.toml and, for `latest_backup`, from storage.
pub async fn placeholder_values(config: &Config, storage: Option<&dyn Storage>) -> Values {
    let mut v: Values = BTreeMap::new();
    let pg = config.postgres.first();
    v.insert(
        "target",
        pg.map(|t| t.name.clone())
            .ok_or_else(|| "no [[postgres]] target is configured".to_string()),
    );
    v.insert(
        "database",
        pg.map(|t| {
            match t
                .resolve_url()
                .and_then(|u| crate::pg::ConnTarget::parse(&u))
            {
                Ok(c) => c.database,
                Err(_) => format!(
                    "(the database named in ${})",
                    t.url_env.as_deref().unwrap_or("url")
                ),
            }
        })
        .ok_or_else(|| "no [[postgres]] target is configured".to_string()),
    );
    v.insert(
        "redis_target",
        Ok(config
            .redis
            .first()
            .map(|t| t.name.clone())
            .unwrap_or_else(|| "(no Redis target configured)".into())),
    );
    v.insert(
        "storage",
        config
            .storage
            .as_ref()
            .map(|s| s.url.to_string())
            .ok_or_else(|| "no [storage] url is configured".to_string()),
    );
    v.insert(
        "rto",
        config
            .objectives
            .rto
            .map(format_duration)
            .ok_or_else(|| "set [objectives] rto in dr.toml".to_string()),
    );
    v.insert(
        "rpo",
        config
            .objectives
            .rpo
            .map(format_duration)
            .ok_or_else(|| "set [objectives] rpo in dr.toml".to_string()),
    );
    v.insert(
        "contacts",
        if config.contacts.is_empty() {
            Err("add [[contacts]] to dr.toml".to_string())
        } else {
            Ok(config
                .contacts
                .iter()
                .map(|c| {
                    let reach = [c.phone.as_deref(), c.email.as_deref()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(", ");
                    match &c.role {
                        Some(role) => format!("{} ({role}) {reach}", c.name),
                        None => format!("{} {reach}", c.name),
                    }
                })
                .collect::<Vec<_>>()
                .join("; "))
        },
    );
    v.insert(
        "vendors",
        Ok(if config.vendors.is_empty() {
            "(no vendors configured)".to_string()
        } else {
            config
                .vendors
                .iter()
                .map(|x| {
                    let reach = [x.support_phone.as_deref(), x.support_url.as_deref()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(", ");
                    format!("{} {reach}", x.name)
                })
                .collect::<Vec<_>>()
                .join("; ")
        }),
    );
    v.insert("config", Ok(config.path.display().to_string()));
    let latest = match (storage, pg) {
        (Some(s), Some(t)) => match crate::backup::catalog::resolve(s, &t.name, "latest").await {
            Ok(m) => m.id,
            Err(_) => "(no backup yet: run dr backup first)".to_string(),
        },
        _ => "(no backup yet: configure [storage] and run dr backup)".to_string(),
    };
    v.insert("latest_backup", Ok(latest));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_values() -> Values {
        PLACEHOLDERS
            .iter()
            .map(|k| (*k, Ok(format!("<{k}>"))))
            .collect()
    }

    #[test]
    fn every_embedded_runbook_parses_and_renders() {
        for (name, text) in EMBEDDED {
            let rb = Runbook::parse(name, text, "embedded").unwrap();
            let r = rb
                .render(&full_values())
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert!(!r.markdown.contains("{{"), "{name}");
            assert!(r.steps.len() >= 5, "{name} has {} steps", r.steps.len());
            assert!(r.steps.iter().any(|s| s.command.is_some()), "{name}");
            for key in ["Symptoms", "Impact", "Decision", "Steps"] {
                assert!(r.sections.contains_key(key), "{name} lacks {key}");
            }
        }
    }

    #[test]
    fn unknown_placeholder_is_an_error() {
        let rb = Runbook::parse(
            "x",
            "---\ntitle: T\nsummary: S\n---\n## Steps\n1. [manual] call {{nobody}}\n",
            "embedded",
        )
        .unwrap();
        let err = rb.render(&full_values()).unwrap_err().to_string();
        assert!(err.contains("unknown placeholder {{nobody}}"), "{err}");
    }

    #[test]
    fn missing_value_fails_strict_and_shows_lenient() {
        let rb = Runbook::parse(
            "x",
            "---\ntitle: T\nsummary: S\n---\n## Impact\nRTO {{rto}}\n",
            "embedded",
        )
        .unwrap();
        let mut v = full_values();
        v.insert("rto", Err("set [objectives] rto".into()));
        assert!(rb
            .render(&v)
            .unwrap_err()
            .to_string()
            .contains("set [objectives] rto"));
        assert!(rb
            .render_with(&v, true)
            .unwrap()
            .markdown
            .contains("<rto: set [objectives] rto>"));
    }

    #[test]
    fn dr_steps_need_one_command() {
        let rb = Runbook::parse(
            "x",
            "---\ntitle: T\nsummary: S\n---\n## Steps\n1. [dr] nothing here\n",
            "embedded",
        )
        .unwrap();
        assert!(rb.render(&full_values()).is_err());
    }
}
