//! The layering of `src/`, held by a test: a module may use modules of lower layers only.
//! Arrows point down, so there is no import cycle between modules. A new module must be
//! placed in a layer here, or this test fails.

use std::collections::BTreeSet;
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
    // How stored objects are encoded: compression, encryption, hashing.
    &["codec"],
    &["evidence"],
    // The WAL archive: names, layout, push and fetch of single files.
    &["wal"],
    // Domain: backups and throwaway clusters, then restores on top of them.
    &["backup", "sandbox"],
    &["restore"],
    // Redis data: backups, restores and verification of what a Redis holds.
    &["redis_backup"],
    &["drill", "prune", "runbook", "version", "demo"],
    &["checks"],
    // Telling people and monitors: sinks, status records, metrics of an operation.
    &["notify"],
    // The fleet scorecard (`dr status`): what storage and status records say per target.
    &["scorecard"],
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
