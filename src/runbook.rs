//! Runbooks: Markdown embedded in the binary (overridable by `[runbooks] dir`), filled in
//! from the live configuration and storage at render time.
//!
//! Format: front matter with `title` and `summary`, `## ` sections, and under `## Steps` a
//! numbered list whose items start with `[dr]` (exactly one `dr ...` code span: the
//! command) or `[manual]`. Lines between `{{#if NAME}}` (or `{{#if !NAME}}`), `{{else}}`
//! and `{{/if}}`, each alone on its line, are kept only when the condition holds for the
//! chosen target (see [`CONDITIONS`]); steps are numbered again after that, so a rendered
//! runbook is one straight path an operator can follow.

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
    "host",
    "port",
    "archive_command",
    "identity",
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

/// The conditions a runbook's `{{#if NAME}}` blocks may test.
pub const CONDITIONS: &[&str] = &["pitr", "wal", "encrypted", "redis_data", "globals"];

/// How a runbook brings data back for the chosen target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// From a base backup and the archived WAL (targets with `wal_archiving = true`).
    Pitr,
    /// From a logical dump.
    Dump,
}

/// What the chosen target has, which decides the branches a runbook shows.
#[derive(Debug, Clone, Serialize)]
pub struct Branches {
    /// The PostgreSQL target the runbook is rendered for.
    pub target: Option<String>,
    /// The Redis target (`{{redis_target}}`).
    pub redis_target: Option<String>,
    pub route: Route,
    pub wal_archiving: bool,
    pub encryption: bool,
    pub redis_data: bool,
    pub include_globals: bool,
}

impl Branches {
    /// The branches for `--target NAME` (a PostgreSQL or a Redis target; default: the first
    /// of each, a Redis target with data backups first) and `--route` (default: `pitr` when
    /// the target archives its WAL, else `dump`).
    pub fn choose(config: &Config, target: Option<&str>, route: Option<Route>) -> Result<Branches> {
        let redis_named = target.and_then(|n| config.redis.iter().find(|r| r.name == n));
        let pg = match target {
            Some(n) if redis_named.is_none() => Some(config.postgres_target(n)?),
            _ => config.postgres.first(),
        };
        let redis = redis_named
            .or_else(|| config.redis.iter().find(|r| r.backup))
            .or_else(|| config.redis.first());
        let wal_archiving = pg.is_some_and(|t| t.wal_archiving);
        let route = match route {
            Some(Route::Pitr) if !wal_archiving => {
                return Err(crate::error::usage(format!(
                    "--route pitr: target {} does not archive its WAL (wal_archiving = false), so only the dump route applies; hint: leave out --route, or switch WAL archiving on (see docs/src/wal.md)",
                    pg.map(|t| t.name.as_str()).unwrap_or("(none)")
                )))
            }
            Some(r) => r,
            None if wal_archiving => Route::Pitr,
            None => Route::Dump,
        };
        Ok(Branches {
            target: pg.map(|t| t.name.clone()),
            redis_target: redis.map(|r| r.name.clone()),
            route,
            wal_archiving,
            encryption: config.encryption.is_some(),
            redis_data: redis.is_some_and(|r| r.backup),
            include_globals: config.backup.include_globals,
        })
    }

    fn condition(&self, name: &str) -> Option<bool> {
        Some(match name {
            "pitr" => self.route == Route::Pitr,
            "wal" => self.wal_archiving,
            "encrypted" => self.encryption,
            "redis_data" => self.redis_data,
            "globals" => self.include_globals,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RenderedRunbook {
    pub name: String,
    pub title: String,
    pub summary: String,
    pub source: String,
    /// What the branches were chosen from.
    pub branches: Branches,
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

    /// Keeps the branches that apply and fills the placeholders. Unknown placeholders and
    /// conditions are always an error; a known placeholder without a value is an error too,
    /// unless `lenient` (then it shows why it is missing).
    pub fn render_with(
        &self,
        values: &Values,
        branches: &Branches,
        lenient: bool,
    ) -> Result<RenderedRunbook> {
        let body = select_branches(&self.name, &self.body, branches)?;
        let mut out = String::with_capacity(body.len());
        let mut rest = body.as_str();
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
            branches: branches.clone(),
            sections,
            steps,
            markdown: format!("# {}\n\n{}", self.title, out.trim_start()),
        })
    }

    pub fn render(&self, values: &Values, branches: &Branches) -> Result<RenderedRunbook> {
        self.render_with(values, branches, false)
    }
}

/// The lines whose `{{#if}}` conditions hold, with the steps numbered again.
fn select_branches(name: &str, body: &str, branches: &Branches) -> Result<String> {
    let mut out = String::with_capacity(body.len());
    // One entry per open `{{#if}}`: whether its current arm is shown.
    let mut open: Vec<bool> = Vec::new();
    let mut in_steps = false;
    let mut next_step = 1;
    for (index, line) in body.lines().enumerate() {
        let trimmed = line.trim();
        let at = || format!("runbook {name}, line {} of its body", index + 1);
        if let Some(cond) = trimmed
            .strip_prefix("{{#if ")
            .and_then(|c| c.strip_suffix("}}"))
        {
            let cond = cond.trim();
            let (negated, key) = match cond.strip_prefix('!') {
                Some(key) => (true, key.trim()),
                None => (false, cond),
            };
            let holds = branches.condition(key).with_context(|| {
                format!(
                    "{}: unknown condition {key:?}; known conditions: {}",
                    at(),
                    CONDITIONS.join(", ")
                )
            })?;
            open.push(holds != negated);
            continue;
        }
        if trimmed == "{{else}}" {
            let arm = open
                .last_mut()
                .with_context(|| format!("{}: {{{{else}}}} without {{{{#if}}}}", at()))?;
            *arm = !*arm;
            continue;
        }
        if trimmed == "{{/if}}" {
            open.pop()
                .with_context(|| format!("{}: {{{{/if}}}} without {{{{#if}}}}", at()))?;
            continue;
        }
        if open.iter().any(|shown| !shown) {
            continue;
        }
        if let Some(heading) = line.strip_prefix("## ") {
            in_steps = heading.trim() == "Steps";
        }
        let numbered = line
            .split_once(". ")
            .filter(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        match numbered {
            Some((_, item)) if in_steps => {
                out.push_str(&format!("{next_step}. {item}\n"));
                next_step += 1;
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if !open.is_empty() {
        bail!("runbook {name}: an {{{{#if}}}} is not closed by {{{{/if}}}}");
    }
    Ok(out)
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
            let Some(stem) = path.file_stem() else {
                continue;
            };
            let name = stem.to_string_lossy().into_owned();
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

/// Values from dr.toml and, for `latest_backup`, from storage, for the targets `branches`
/// chose.
pub async fn placeholder_values(
    config: &Config,
    storage: Option<&dyn Storage>,
    branches: &Branches,
) -> Values {
    let mut v: Values = BTreeMap::new();
    let pg = branches
        .target
        .as_deref()
        .and_then(|n| config.postgres.iter().find(|t| t.name == n));
    let none = || "no [[postgres]] target is configured".to_string();
    v.insert("target", pg.map(|t| t.name.clone()).ok_or_else(none));
    let conn = pg.map(|t| {
        t.resolve_url()
            .and_then(|u| crate::pg::ConnTarget::parse(&u))
    });
    let from_url = |what: &str| {
        format!(
            "(the {what} in ${})",
            pg.and_then(|t| t.url_env.as_deref()).unwrap_or("url")
        )
    };
    v.insert(
        "database",
        match &conn {
            Some(Ok(c)) => Ok(c.database.clone()),
            Some(Err(_)) => Ok(from_url("database")),
            None => Err(none()),
        },
    );
    v.insert(
        "host",
        match &conn {
            Some(Ok(c)) => Ok(c
                .server()
                .rsplit_once(':')
                .map(|(h, _)| h.to_string())
                .unwrap_or_default()),
            Some(Err(_)) => Ok(from_url("host")),
            None => Err(none()),
        },
    );
    v.insert(
        "port",
        match &conn {
            Some(Ok(c)) => Ok(c
                .config
                .get_ports()
                .first()
                .copied()
                .unwrap_or(5432)
                .to_string()),
            Some(Err(_)) => Ok(from_url("port")),
            None => Err(none()),
        },
    );
    // The path PostgreSQL's archiver is given must not depend on its working directory.
    let config_path = config.absolute_path();
    v.insert("archive_command", Ok(config.archive_command()));
    v.insert(
        "identity",
        Ok(match &config.encryption {
            Some(e) => match (&e.identity_file, &e.identity_env) {
                (Some(file), _) => config.dir().join(file).display().to_string(),
                (None, Some(var)) => format!("the key in ${var}"),
                (None, None) => {
                    "(no identity configured: set [encryption] identity_file on this host)".into()
                }
            },
            None => "(backups are not encrypted)".into(),
        }),
    );
    v.insert(
        "redis_target",
        Ok(branches
            .redis_target
            .clone()
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
    v.insert("config", Ok(config_path.display().to_string()));
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

    fn branches(route: Route, on: bool) -> Branches {
        Branches {
            target: Some("main".into()),
            redis_target: Some("cache".into()),
            route,
            wal_archiving: route == Route::Pitr || on,
            encryption: on,
            redis_data: on,
            include_globals: on,
        }
    }

    fn all_branches() -> Vec<Branches> {
        vec![
            branches(Route::Pitr, true),
            branches(Route::Pitr, false),
            branches(Route::Dump, true),
            branches(Route::Dump, false),
        ]
    }

    fn render_steps(body: &str, b: &Branches) -> Vec<String> {
        let text = format!("---\ntitle: T\nsummary: S\n---\n## Steps\n{body}");
        Runbook::parse("x", &text, "embedded")
            .unwrap()
            .render(&full_values(), b)
            .unwrap()
            .steps
            .iter()
            .map(|s| format!("{} {}", s.number, s.text))
            .collect()
    }

    #[test]
    fn branches_keep_what_applies_and_steps_are_numbered_again() {
        let body = "1. [manual] always\n{{#if pitr}}\n2. [manual] replay\n{{#if encrypted}}\n3. [manual] key\n{{/if}}\n{{else}}\n4. [manual] dump\n{{/if}}\n{{#if !globals}}\n5. [manual] roles by hand\n{{/if}}\n6. [manual] end\n";
        assert_eq!(
            render_steps(body, &branches(Route::Pitr, true)),
            ["1 always", "2 replay", "3 key", "4 end"]
        );
        assert_eq!(
            render_steps(body, &branches(Route::Pitr, false)),
            ["1 always", "2 replay", "3 roles by hand", "4 end"]
        );
        assert_eq!(
            render_steps(body, &branches(Route::Dump, false)),
            ["1 always", "2 dump", "3 roles by hand", "4 end"]
        );
    }

    #[test]
    fn unknown_or_unbalanced_conditions_are_errors() {
        for (body, needle) in [
            (
                "{{#if sunny}}\n1. [manual] x\n{{/if}}\n",
                "unknown condition \"sunny\"",
            ),
            ("{{#if wal}}\n1. [manual] x\n", "not closed"),
            ("1. [manual] x\n{{/if}}\n", "without"),
            ("{{else}}\n", "without"),
        ] {
            let text = format!("---\ntitle: T\nsummary: S\n---\n## Steps\n{body}");
            let err = Runbook::parse("x", &text, "embedded")
                .unwrap()
                .render(&full_values(), &branches(Route::Dump, false))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{body:?}: {err}");
        }
    }

    #[test]
    fn every_embedded_runbook_parses_and_renders() {
        for ((name, text), b) in EMBEDDED
            .iter()
            .flat_map(|e| all_branches().into_iter().map(move |b| (e, b)))
        {
            let rb = Runbook::parse(name, text, "embedded").unwrap();
            let r = rb
                .render(&full_values(), &b)
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
            let numbers: Vec<u32> = r.steps.iter().map(|s| s.number).collect();
            assert_eq!(
                numbers,
                (1..=numbers.len() as u32).collect::<Vec<_>>(),
                "{name}"
            );
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
        let err = rb
            .render(&full_values(), &branches(Route::Dump, false))
            .unwrap_err()
            .to_string();
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
        let b = branches(Route::Dump, false);
        assert!(rb
            .render(&v, &b)
            .unwrap_err()
            .to_string()
            .contains("set [objectives] rto"));
        assert!(rb
            .render_with(&v, &b, true)
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
        assert!(rb
            .render(&full_values(), &branches(Route::Dump, false))
            .is_err());
    }
}
