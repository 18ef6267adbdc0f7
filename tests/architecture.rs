//! The layering of `src/`, held by a test: a module may use modules of lower layers only.
//! Arrows point down, so there is no import cycle between modules. A new module must be
//! placed in a layer here, or this test fails. Within a module, no two files import each
//! other (through any chain); no source file is over 1,000 lines, and no command file
//! (`src/commands/`, `mod.rs` aside) over 90: commands parse, call the library, render.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom first. Modules in one layer do not use each other.
const LAYERS: &[&[&str]] = &[
    // Words everything speaks: exit codes, units, secrets, the report vocabulary.
    &["error", "units"],
    &["secret", "report"],
    // The configuration and how children are started; leftovers of dead runs; the metrics
    // file writer.
    &["config", "process", "leftovers", "metrics"],
    // Talking to the outside: storage, PostgreSQL, Redis; encryption of what is stored.
    &["storage", "pg", "redis_client", "encryption"],
    // How stored objects are encoded: compression, encryption, hashing. Fleet scheduling:
    // parallel targets, one operation per database, connection slots per server.
    &["codec", "fleet"],
    &["evidence"],
    // The WAL archive: names, layout, push and fetch of single files.
    &["wal"],
    // Domain: backups and throwaway clusters, then restores on top of them.
    &["backup", "sandbox"],
    &["restore"],
    &["drill", "prune", "runbook", "version", "demo"],
    &["checks"],
    // Telling people and monitors: sinks, status records, metrics of an operation.
    &["notify"],
    // The fleet scorecard (`dr status`): what storage and status records say per target.
    &["scorecard"],
    // What each command does, as a library: setup, the steps of one command, its report.
    &["operations"],
    // Presentation, then the CLI surface.
    &["output"],
    &["cli"],
    &["commands"],
    // The library root (modules, the run loop) and the binary that calls it.
    &["lib", "main"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The top-level module a file belongs to: `src/restore/stage.rs` → `restore`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Every `crate::NAME` a file refers to, including `use crate::{a, b::{c, d}}` groups
/// that span lines.
fn crate_references(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // The top-level items of the group: split on commas at depth 0.
            let mut depth = 0;
            let mut item_start = 0;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.insert(ident(&group[item_start..j]));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident(&group[item_start..j]));
                        item_start = j + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(after));
        }
        rest = after;
    }
    out.remove("");
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Imports that point up or sideways, and modules missing from [`LAYERS`].
fn check(files: &[(String, String, String)]) -> (Vec<String>, BTreeSet<String>) {
    let mut violations = Vec::new();
    let mut unplaced = BTreeSet::new();
    for (path, module, text) in files {
        let Some(own) = layer_of(module) else {
            unplaced.insert(module.clone());
            continue;
        };
        for used in crate_references(text) {
            if &used == module {
                continue;
            }
            match layer_of(&used) {
                Some(layer) if layer < own => {}
                Some(layer) => violations.push(format!(
                    "{path} (layer {own}, {module}) uses crate::{used} (layer {layer})"
                )),
                None => {
                    unplaced.insert(used);
                }
            }
        }
    }
    (violations, unplaced)
}

#[test]
fn every_module_uses_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    let files: Vec<(String, String, String)> = paths
        .iter()
        .map(|p| {
            (
                p.strip_prefix(&src).unwrap().display().to_string(),
                module_of(&src, p),
                std::fs::read_to_string(p).unwrap(),
            )
        })
        .collect();
    assert!(files.len() > 20, "found the sources");
    let (violations, unplaced) = check(&files);
    assert!(
        unplaced.is_empty(),
        "modules not placed in LAYERS of tests/architecture.rs: {unplaced:?}"
    );
    assert!(
        violations.is_empty(),
        "imports that point up or sideways:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_reference_scanner_sees_groups_and_paths() {
    let refs = crate_references(
        "use crate::{\n    config::{Config, S3Config},\n    report,\n};\nlet x = crate::units::bytes(1); // crate::cli\n",
    );
    assert_eq!(
        refs.into_iter().collect::<Vec<_>>(),
        vec!["config", "report", "units"]
    );
}

#[test]
fn upward_sideways_and_unplaced_imports_are_caught() {
    let file =
        |module: &str, text: &str| (format!("{module}.rs"), module.to_string(), text.to_string());
    let (violations, unplaced) = check(&[
        file("checks", "use crate::output::table;"),
        file("storage", "use crate::pg::ConnTarget;"),
        file("restore", "use crate::{report::Step, backup};"),
        file("newthing", "use crate::config;"),
        file("backup", "use crate::mystery::X;"),
    ]);
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(violations[0].contains("uses crate::output"));
    assert!(violations[1].contains("uses crate::pg"));
    assert_eq!(
        unplaced.into_iter().collect::<Vec<_>>(),
        vec!["mystery", "newthing"]
    );
}

/// Longest a source file may be: past it, a file holds more than one concern.
const MAX_FILE_LINES: usize = 1000;
/// Longest a command file may be: it parses, calls one library function, renders.
const MAX_COMMAND_LINES: usize = 90;

fn sources() -> (std::path::PathBuf, Vec<std::path::PathBuf>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    paths.sort();
    (src, paths)
}

/// Files over `max` lines, as "path: N lines".
fn too_long(src: &Path, paths: &[std::path::PathBuf], max: usize) -> Vec<String> {
    paths
        .iter()
        .filter_map(|p| {
            let n = std::fs::read_to_string(p).unwrap().lines().count();
            (n > max).then(|| format!("{}: {n} lines", p.strip_prefix(src).unwrap().display()))
        })
        .collect()
}

#[test]
fn no_source_file_is_over_1000_lines() {
    let (src, paths) = sources();
    let long = too_long(&src, &paths, MAX_FILE_LINES);
    assert!(
        long.is_empty(),
        "files over {MAX_FILE_LINES} lines (split them by concern):\n{}",
        long.join("\n")
    );
}

#[test]
fn command_files_only_parse_call_and_render() {
    let (src, paths) = sources();
    let commands: Vec<_> = paths
        .into_iter()
        .filter(|p| {
            p.strip_prefix(&src).unwrap().starts_with("commands")
                && p.file_name().is_some_and(|n| n != "mod.rs")
        })
        .collect();
    assert!(commands.len() > 10, "found the command files");
    let long = too_long(&src, &commands, MAX_COMMAND_LINES);
    assert!(
        long.is_empty(),
        "command files over {MAX_COMMAND_LINES} lines (move the work into the library, e.g. src/operations/):\n{}",
        long.join("\n")
    );
}

/// The module path of a file: `src/restore/stage.rs` → `["restore", "stage"]`,
/// `src/restore/mod.rs` → `["restore"]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    if last != "mod.rs" && last != "lib.rs" && last != "main.rs" {
        parts.push(last.trim_end_matches(".rs").to_string());
    }
    parts
}

/// Every path that starts with `crate::`, `super::` or `self::`, made absolute from the
/// module `own` (groups such as `use super::{a, b::{c, d}}` give one path each). Test
/// modules at the end of a file are left out: their `super` is the file itself.
fn file_references(own: &[String], text: &str) -> Vec<Vec<String>> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let code = match code.find("\n#[cfg(test)]\nmod ") {
        Some(i) => &code[..i],
        None => &code[..],
    };
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let starts_path = i == 0 || {
            let c = bytes[i - 1] as char;
            !(c.is_alphanumeric() || c == '_' || c == ':')
        };
        let rest = &code[i..];
        let base: Option<(Vec<String>, &str)> = if !starts_path {
            None
        } else if let Some(r) = rest.strip_prefix("crate::") {
            Some((Vec::new(), r))
        } else if rest.starts_with("super::") {
            let mut base = own.to_vec();
            let mut r = rest;
            while let Some(after) = r.strip_prefix("super::") {
                base.pop();
                r = after;
            }
            Some((base, r))
        } else {
            rest.strip_prefix("self::").map(|r| (own.to_vec(), r))
        };
        match base {
            Some((base, r)) => {
                expand_tree(&base, r, &mut out);
                i = code.len() - r.len();
            }
            None => i += code[i..].chars().next().map_or(1, char::len_utf8),
        }
    }
    out
}

/// The paths of one use tree: `a::b::{c, d::e}` → `a::b::c`, `a::b::d::e`.
fn expand_tree(base: &[String], text: &str, out: &mut Vec<Vec<String>>) {
    let mut path = base.to_vec();
    let mut rest = text.trim_start();
    loop {
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = 0;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        expand_tree(&path, &group[start..j], out);
                        return;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand_tree(&path, &group[start..j], out);
                        start = j + 1;
                    }
                    _ => {}
                }
            }
            return;
        }
        let ident: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() || ident == "self" {
            break;
        }
        path.push(ident.clone());
        rest = &rest[ident.len()..];
        match rest.strip_prefix("::") {
            Some(r) => rest = r.trim_start(),
            None => break,
        }
    }
    out.push(path);
}

/// The file a module path lives in: the longest prefix that is a file of `src/`.
fn file_of(files: &BTreeMap<Vec<String>, String>, path: &[String]) -> Option<String> {
    (1..=path.len())
        .rev()
        .find_map(|n| files.get(&path[..n]).cloned())
}

/// Cycles among files, each as "a.rs -> b.rs -> a.rs". A module's root (`mod.rs`, or
/// `x.rs` beside `x/`) declares its files and they use its types: it is not a node.
fn file_cycles(files: &[(String, String)]) -> Vec<String> {
    let by_module: BTreeMap<Vec<String>, String> = files
        .iter()
        .map(|(rel, _)| (module_path(Path::new(rel)), rel.clone()))
        .collect();
    // A module's root (`mod.rs`, or `x.rs` beside `x/`) declares its files: not a node.
    let is_node = |rel: &str| {
        let own = module_path(Path::new(rel));
        !own.is_empty()
            && !rel.ends_with("mod.rs")
            && !by_module
                .keys()
                .any(|m| m.len() > own.len() && m.starts_with(&own))
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in files {
        if !is_node(rel) {
            continue;
        }
        let own = module_path(Path::new(rel));
        for path in file_references(&own, text) {
            if let Some(to) = file_of(&by_module, &path) {
                if &to != rel && is_node(&to) {
                    edges.entry(rel.clone()).or_default().insert(to);
                }
            }
        }
    }
    // Depth-first search; a file met again on the current path closes a cycle.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        cycles: &mut Vec<String>,
    ) {
        if let Some(at) = stack.iter().position(|s| s == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            cycles.push(cycle.join(" -> "));
            return;
        }
        if !done.insert(node.to_string()) {
            return;
        }
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, stack, done, cycles);
        }
        stack.pop();
    }
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        visit(node, &edges, &mut Vec::new(), &mut done, &mut cycles);
    }
    cycles
}

#[test]
fn no_two_files_import_each_other() {
    let (src, paths) = sources();
    let files: Vec<(String, String)> = paths
        .iter()
        .map(|p| {
            (
                p.strip_prefix(&src).unwrap().display().to_string(),
                std::fs::read_to_string(p).unwrap(),
            )
        })
        .collect();
    let cycles = file_cycles(&files);
    assert!(
        cycles.is_empty(),
        "files that import each other (move what both need into one of them, or a third file):\n{}",
        cycles.join("\n")
    );
}

#[test]
fn file_cycles_are_found_through_super_crate_and_groups() {
    let file = |rel: &str, text: &str| (rel.to_string(), text.to_string());
    let cycles = file_cycles(&[
        file("restore/mod.rs", "pub mod archive;\npub mod stage;\nuse stage::x;"),
        file("restore/archive.rs", "use super::{stage::{self, Staged}, Outcome};"),
        file("restore/stage.rs", "fn f() { crate::restore::archive::list(); }"),
        file("restore/load.rs", "use super::stage::Staged;\n#[cfg(test)]\nmod tests {\n    use super::super::archive;\n}"),
        file("backup/mod.rs", "use crate::restore::load;"),
    ]);
    assert_eq!(
        cycles,
        vec!["restore/archive.rs -> restore/stage.rs -> restore/archive.rs"]
    );
    let none = file_cycles(&[
        file("restore/archive.rs", "use super::stage::Staged;"),
        file("restore/stage.rs", "use super::Outcome; // super::archive"),
    ]);
    assert!(none.is_empty(), "{none:?}");
}
