//! The user guide (docs/src, an mdBook) and README.md are held to what dr is: every shell
//! block passes `bash -n` and each `dr` command line in it parses with dr's own clap
//! definition; every TOML block holds only keys dr.toml accepts (a whole configuration
//! loads as `dr` loads it); the configuration reference describes exactly the keys of
//! dr.toml.example; every relative link and `#anchor` resolves; `mdbook build` passes.
//! (The blocks of "Restoring at 3 a.m." and "Restoring without dr" are also run, by
//! tests/restore_3am.rs and tests/manual_restore.rs.)

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::Parser;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every page of the guide, as (path relative to the repository, text).
fn documents() -> Vec<(String, String)> {
    let mut docs = vec![("README.md".to_string(), read(&root().join("README.md")))];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root().join("docs/src"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    for p in pages {
        let rel = p
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        docs.push((rel, read(&p)));
    }
    docs
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

struct Block {
    doc: String,
    line: usize,
    lang: String,
    body: String,
}

/// The fenced code blocks of a Markdown text (``` fences, possibly indented in a list).
fn blocks(doc: &str, text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<(usize, String, Vec<&str>)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match &mut open {
            None if trimmed.starts_with("```") => {
                open = Some((i + 1, trimmed[3..].trim().to_string(), Vec::new()));
            }
            None => {}
            Some(_) if trimmed.starts_with("```") => {
                let (start, lang, lines) = open.take().unwrap();
                let indent = line.len() - trimmed.len();
                let body = lines
                    .iter()
                    .map(|l| l.get(indent..).unwrap_or(l.trim_start()))
                    .collect::<Vec<_>>()
                    .join("\n");
                out.push(Block {
                    doc: doc.to_string(),
                    line: start,
                    lang,
                    body,
                });
            }
            Some((_, _, lines)) => lines.push(line),
        }
    }
    assert!(open.is_none(), "{doc}: a code block is never closed");
    out
}

fn all_blocks() -> Vec<Block> {
    documents()
        .iter()
        .flat_map(|(doc, text)| blocks(doc, text))
        .collect()
}

/// The script a shell block stands for: a console transcript's `$ ` lines, else the block.
fn script_of(block: &Block) -> String {
    if block.lang == "console" {
        let mut lines = Vec::new();
        let mut continued = false;
        for line in block.body.lines() {
            if let Some(command) = line.strip_prefix("$ ") {
                lines.push(command);
                continued = command.ends_with('\\');
            } else if continued {
                lines.push(line);
                continued = line.ends_with('\\');
            }
        }
        lines.join("\n")
    } else {
        block.body.clone()
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Op,
}

/// Splits one shell line into words and control operators the way sh does for simple
/// commands: quotes, backslashes, comments; redirections and their targets are dropped.
fn shell_tokens(line: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let mut skip_next_word = false;
    let finish =
        |word: &mut String, in_word: &mut bool, skip: &mut bool, tokens: &mut Vec<Token>| {
            if *in_word {
                if *skip {
                    *skip = false;
                } else {
                    tokens.push(Token::Word(std::mem::take(word)));
                }
            }
            word.clear();
            *in_word = false;
        };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                word.push(n);
                            }
                        }
                        _ => word.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            '#' if !in_word => break,
            '>' | '<' => {
                // `2>&1`, `>> file`, `< file`: the descriptor, the operator and the target go.
                if in_word && word.chars().all(|d| d.is_ascii_digit()) {
                    word.clear();
                    in_word = false;
                }
                finish(&mut word, &mut in_word, &mut skip_next_word, &mut tokens);
                while matches!(chars.peek(), Some('>') | Some('&')) {
                    chars.next();
                }
                skip_next_word = true;
            }
            '|' | '&' | ';' | '(' | ')' => {
                finish(&mut word, &mut in_word, &mut skip_next_word, &mut tokens);
                tokens.push(Token::Op);
            }
            c if c.is_whitespace() => {
                finish(&mut word, &mut in_word, &mut skip_next_word, &mut tokens)
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    finish(&mut word, &mut in_word, &mut skip_next_word, &mut tokens);
    tokens
}

/// The argv of every `dr` command in a script (after `VAR=value`, `sudo -u USER`,
/// `runuser -u USER --`), continuation lines joined.
fn dr_commands(script: &str) -> Vec<Vec<String>> {
    let joined = script.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let tokens = shell_tokens(line);
        for command in tokens.split(|t| *t == Token::Op) {
            let mut words: Vec<String> = command
                .iter()
                .map(|t| match t {
                    Token::Word(w) => w.clone(),
                    Token::Op => unreachable!(),
                })
                .collect();
            loop {
                let first = words.first().map(String::as_str).unwrap_or("");
                let is_assignment = first.split_once('=').is_some_and(|(k, _)| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                });
                if is_assignment || matches!(first, "do" | "then" | "exec" | "time" | "env" | "--")
                {
                    words.remove(0);
                } else if matches!(first, "sudo" | "runuser") {
                    words.remove(0);
                    if words.first().is_some_and(|w| w == "-u") {
                        words.drain(..2.min(words.len()));
                    }
                } else {
                    break;
                }
            }
            if words
                .first()
                .is_some_and(|w| w == "dr" || w.ends_with("/dr"))
            {
                words[0] = "dr".into();
                out.push(words);
            }
        }
    }
    out
}

#[test]
fn the_shell_splitter_finds_dr_commands_as_sh_would() {
    let script =
        "STORAGE=/x dr --config '/etc/dr/dr.toml' list --target \"a b\" 2>&1 | grep x  # c\n\
                  sudo -u postgres /usr/local/bin/dr init && dr check \\\n  --strict > out.txt\n\
                  echo dr is not a command here";
    assert_eq!(
        dr_commands(script),
        vec![
            vec![
                "dr",
                "--config",
                "/etc/dr/dr.toml",
                "list",
                "--target",
                "a b"
            ],
            vec!["dr", "init"],
            vec!["dr", "check", "--strict"],
        ]
    );
}

#[test]
fn every_shell_block_is_valid_shell_and_every_dr_line_parses() {
    let mut problems = Vec::new();
    let mut commands = 0;
    let mut shell_blocks = 0;
    for block in all_blocks() {
        if !matches!(block.lang.as_str(), "sh" | "bash" | "console") {
            continue;
        }
        shell_blocks += 1;
        let script = script_of(&block);
        let mut bash = Command::new("bash")
            .arg("-n")
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bash");
        bash.stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = bash.wait_with_output().unwrap();
        if !out.status.success() {
            problems.push(format!(
                "{}:{}: bash -n: {}",
                block.doc,
                block.line,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        for argv in dr_commands(&script) {
            commands += 1;
            if let Err(e) = dr::cli::Cli::try_parse_from(&argv) {
                use clap::error::ErrorKind;
                if !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                    let first = e.to_string();
                    let first = first.lines().next().unwrap_or_default().to_string();
                    problems.push(format!(
                        "{}:{}: `{}` does not parse: {first}",
                        block.doc,
                        block.line,
                        argv.join(" ")
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The guide is full of commands: finding few means the extraction broke.
    assert!(
        shell_blocks > 35 && commands > 70,
        "{shell_blocks} blocks, {commands} dr commands"
    );
}

#[test]
fn every_toml_block_holds_only_keys_dr_accepts() {
    let mut problems = Vec::new();
    let mut full = 0;
    let mut checked = 0;
    for block in all_blocks().into_iter().filter(|b| b.lang == "toml") {
        checked += 1;
        let at = format!("{}:{}", block.doc, block.line);
        // Serde with deny_unknown_fields on every section: an unknown or misplaced key, or a
        // value of the wrong type, is refused here.
        if let Err(e) = toml::from_str::<dr::config::Config>(&block.body) {
            problems.push(format!("{at}: {e}"));
            continue;
        }
        let is_whole = block.body.contains("[storage]")
            && (block.body.contains("[[postgres]]") || block.body.contains("[[redis]]"));
        if is_whole {
            full += 1;
            if let Err(e) = dr::config::Config::parse(&block.body, Path::new(&block.doc)) {
                problems.push(format!("{at}: does not load as dr.toml: {e:#}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        checked > 25 && full >= 3,
        "{checked} TOML blocks, {full} whole configurations"
    );
}

/// (section, key) of every key in dr.toml.example, commented-out ones included.
fn example_keys() -> BTreeSet<(String, String)> {
    let text = read(&root().join("dr.toml.example"));
    let mut section = String::new();
    let mut keys = BTreeSet::new();
    for line in text.lines() {
        let bare = line.strip_prefix('#').unwrap_or(line).trim();
        if let Some(name) = bare.strip_prefix('[') {
            let name = name.trim_start_matches('[');
            if let Some(end) = name.find(']') {
                section = name[..end].to_string();
                continue;
            }
        }
        // A key line: `key = value`, possibly commented out with one `# `.
        if line.starts_with("# ") && line[2..].starts_with(' ') {
            continue; // a comment's continuation, indented
        }
        if let Some((key, _)) = bare.split_once('=') {
            let key = key.trim();
            if !section.is_empty()
                && !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                keys.insert((section.clone(), key.to_string()));
            }
        }
    }
    keys
}

/// (section, key) of every key the configuration reference describes in its tables.
fn reference_keys() -> BTreeSet<(String, String)> {
    let text = read(&root().join("docs/src/configuration.md"));
    let mut section = String::new();
    let mut keys = BTreeSet::new();
    for line in text.lines() {
        let label = line.trim_start_matches('#').trim();
        let names: Vec<&str> = label
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|s| s.starts_with('['))
            .collect();
        if (line.starts_with("## ") || (line.starts_with('`') && line.ends_with("`:")))
            && !names.is_empty()
        {
            section = names[0].trim_matches(|c| c == '[' || c == ']').to_string();
            continue;
        }
        if line.starts_with("## ") {
            section.clear();
        }
        if let Some(cell) = line.strip_prefix("| `") {
            let key = &cell[..cell.find('`').unwrap()];
            if !section.is_empty() {
                keys.insert((section.clone(), key.to_string()));
            }
        }
    }
    keys
}

#[test]
fn the_configuration_reference_describes_exactly_the_keys_of_the_example() {
    let example = example_keys();
    let reference = reference_keys();
    // The parser must see every section of the example, or the comparison proves little.
    let sections: BTreeSet<&str> = example.iter().map(|(s, _)| s.as_str()).collect();
    for s in [
        "objectives",
        "storage.s3",
        "postgres",
        "redis",
        "notify",
        "encryption",
        "evidence",
    ] {
        assert!(
            sections.contains(s),
            "dr.toml.example: no keys found in [{s}]: {sections:?}"
        );
    }
    let undescribed: Vec<_> = example.difference(&reference).collect();
    let invented: Vec<_> = reference.difference(&example).collect();
    assert!(
        undescribed.is_empty() && invented.is_empty(),
        "keys of dr.toml.example missing from docs/src/configuration.md: {undescribed:?}\n\
         keys described in docs/src/configuration.md but not in dr.toml.example: {invented:?}"
    );
}

/// Text with code blocks and inline code removed: links inside them are not links.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                out.push_str(part);
            }
        }
        out.push('\n');
    }
    out
}

/// The ids mdBook gives a page's headings: the heading's text, lower-cased, alphanumerics,
/// `-` and `_` kept, white space as `-`, the rest dropped; repeats get `-1`, `-2`...
fn heading_ids(text: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for line in prose_keeping_code(text).lines() {
        let Some(title) = line.strip_prefix('#').map(|t| t.trim_start_matches('#')) else {
            continue;
        };
        if !title.starts_with(' ') {
            continue;
        }
        let rendered = strip_inline_markup(title.trim());
        let id: String = rendered
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| {
                if c.is_alphanumeric() || c == '_' || c == '-' {
                    Some(c)
                } else if c.is_whitespace() {
                    Some('-')
                } else {
                    None
                }
            })
            .collect();
        let n = seen.entry(id.clone()).or_insert(0);
        ids.insert(if *n == 0 {
            id.clone()
        } else {
            format!("{id}-{n}")
        });
        *n += 1;
    }
    ids
}

/// Lines outside code blocks, inline code kept (a heading's code is part of its id).
fn prose_keeping_code(text: &str) -> String {
    let mut fenced = false;
    text.lines()
        .filter(|l| {
            if l.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A heading's text as rendered: backticks, emphasis and link targets removed.
fn strip_inline_markup(title: &str) -> String {
    let mut out = String::new();
    let mut rest = title;
    while let Some(open) = rest.find('[') {
        match rest[open..].find("](").map(|m| open + m) {
            Some(mid) if rest[mid..].contains(')') => {
                let close = mid + rest[mid..].find(')').unwrap();
                out.push_str(&rest[..open]);
                out.push_str(&rest[open + 1..mid]);
                rest = &rest[close + 1..];
            }
            _ => break,
        }
    }
    out.push_str(rest);
    out.replace(['`', '*'], "")
}

/// Every `[text](target)` and `![alt](target)` of a page's prose.
fn links(text: &str) -> Vec<String> {
    let prose = prose(text);
    let mut out = Vec::new();
    let mut rest = prose.as_str();
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        let end = after.find(')').unwrap_or(after.len());
        out.push(after[..end].to_string());
        rest = &after[end..];
    }
    out
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let docs = documents();
    let texts: BTreeMap<PathBuf, &String> = docs.iter().map(|(p, t)| (root().join(p), t)).collect();
    let mut problems = Vec::new();
    let mut checked = 0;
    for (doc, text) in &docs {
        let here = root().join(doc);
        for link in links(text) {
            if link.is_empty() && doc.ends_with("SUMMARY.md") {
                continue; // a draft chapter: a place the lead fills in
            }
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match link.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if path.is_empty() {
                here.clone()
            } else {
                here.parent().unwrap().join(path)
            };
            if !target.exists() {
                problems.push(format!(
                    "{doc}: link {link}: {} does not exist",
                    target.display()
                ));
                continue;
            }
            if let Some(anchor) = anchor {
                let target = target.canonicalize().unwrap();
                let text = texts
                    .iter()
                    .find(|(p, _)| p.canonicalize().ok() == Some(target.clone()))
                    .map(|(_, t)| (*t).clone())
                    .unwrap_or_else(|| read(&target));
                if !heading_ids(&text).contains(anchor) {
                    problems.push(format!("{doc}: link {link}: no heading with id {anchor}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked > 50, "only {checked} links found");
}

#[test]
fn every_page_is_in_the_summary_and_the_readme_is_a_front_door() {
    let summary = read(&root().join("docs/src/SUMMARY.md"));
    let listed: BTreeSet<String> = links(&summary)
        .into_iter()
        .filter(|l| !l.is_empty())
        .collect();
    for (doc, _) in documents() {
        let Some(page) = doc.strip_prefix("docs/src/") else {
            continue;
        };
        if page != "SUMMARY.md" {
            assert!(
                listed.contains(page),
                "docs/src/{page} is not in SUMMARY.md"
            );
        }
    }
    let readme = read(&root().join("README.md"));
    let lines = readme.lines().count();
    assert!(
        lines <= 400,
        "README.md has {lines} lines; the manual belongs in docs/src"
    );
    let first = &blocks("README.md", &readme)[0];
    let commands: Vec<&str> = first
        .body
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        commands,
        ["scripts/demo", "scripts/test"],
        "README's first block"
    );
    // Sentences that once lagged the features must not come back.
    for (doc, text) in documents() {
        for stale in [
            "not part of this version",
            "not yet implemented",
            "is planned",
        ] {
            assert!(!text.contains(stale), "{doc} says {stale:?}");
        }
    }
}

fn mdbook() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("mdbook"))
                .find(|p| p.is_file())
        })
        .unwrap_or_default();
    let cargo_bin = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/mdbook"));
    on_path
        .or(cargo_bin.filter(|p| p.is_file()))
        .expect("mdbook is not installed; hint: cargo install mdbook --locked --no-default-features (scripts/install-test-deps does)")
}

#[test]
fn mdbook_builds_the_guide() {
    let dest = tempfile::tempdir().unwrap();
    let out = Command::new(mdbook())
        .arg("build")
        .arg(root().join("docs"))
        .arg("--dest-dir")
        .arg(dest.path())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "mdbook build docs failed:\n{log}");
    assert!(
        !log.contains("WARN") && !log.contains("ERROR"),
        "mdbook build docs warned:\n{log}"
    );
    for page in [
        "index.html",
        "production.html",
        "configuration.html",
        "print.html",
    ] {
        assert!(dest.path().join(page).is_file(), "the book has no {page}");
    }
}

/// The conditions a runbook's steps branch on (`{{#if NAME}}`, `{{#if !NAME}}`).
fn runbook_conditions(text: &str) -> BTreeSet<String> {
    text.split("{{#if ")
        .skip(1)
        .filter_map(|rest| rest.split_once("}}"))
        .map(|(name, _)| name.trim().trim_start_matches('!').to_string())
        .collect()
}

#[test]
fn the_incidents_page_names_every_runbook_with_its_branches() {
    let page = read(&root().join("docs/src/incidents.md"));
    let mut runbooks: Vec<PathBuf> = std::fs::read_dir(root().join("runbooks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    runbooks.sort();
    assert!(runbooks.len() >= 8, "{runbooks:?}");
    for path in runbooks {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let row = page
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("docs/src/incidents.md has no row for runbook {name}"));
        let branches_cell = row.trim_end_matches('|').rsplit('|').next().unwrap();
        let documented: BTreeSet<String> = branches_cell
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .map(str::to_string)
            .collect();
        assert_eq!(
            documented,
            runbook_conditions(&read(&path)),
            "docs/src/incidents.md: the branches of runbook {name}"
        );
    }
}
