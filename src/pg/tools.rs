//! Finding the PostgreSQL client programs and their versions.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::process::ChildCommand;

/// Finds `program` in `bin_dir` when configured, else on PATH.
pub fn find(program: &str, bin_dir: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = bin_dir {
        let p = dir.join(program);
        if is_executable(&p) {
            return Ok(p);
        }
        bail!(
            "{program} not found in pg_bin_dir {}; hint: fix pg_bin_dir in dr.toml or install the PostgreSQL client there",
            dir.display()
        );
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(program);
            if is_executable(&p) {
                return Ok(p);
            }
        }
    }
    bail!(
        "{program} not found on PATH; hint: install the PostgreSQL client (Debian/Ubuntu: apt-get install postgresql-client) or set pg_bin_dir in dr.toml"
    )
}

/// A program Debian installs only under `/usr/lib/postgresql/<major>/bin` (such as
/// `pg_verifybackup`): `pg_bin_dir`, PATH, then the newest versioned directory of at least
/// `min_major`.
pub fn find_versioned(program: &str, bin_dir: Option<&Path>, min_major: u32) -> Result<PathBuf> {
    if bin_dir.is_some() {
        return find(program, bin_dir);
    }
    if let Ok(p) = find(program, None) {
        return Ok(p);
    }
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((v, e.path().join("bin").join(program)))
        })
        .filter(|(v, p)| *v >= min_major && is_executable(p))
        .collect();
    versioned.sort();
    versioned.pop().map(|(_, p)| p).ok_or_else(|| {
        anyhow::anyhow!(
            "{program} not found (pg_bin_dir, PATH, /usr/lib/postgresql/*/bin); hint: install {} or set pg_bin_dir",
            client_package(min_major)
        )
    })
}

/// Server-side programs (`initdb`, `pg_ctl`) for sandbox clusters: `pg_bin_dir`, then
/// `pg_config --bindir`, then the newest `/usr/lib/postgresql/*/bin`, then PATH.
pub fn find_server_bin_dir(bin_dir: Option<&Path>) -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(d) = bin_dir {
        candidates.push(d.to_path_buf());
    }
    if let Ok(out) = ChildCommand::new("pg_config", "pg_config")
        .arg("--bindir")
        .output_blocking()
    {
        candidates.push(PathBuf::from(out.stdout.trim()));
    }
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    versioned.sort();
    candidates.extend(versioned.into_iter().rev().map(|(_, p)| p));
    for c in &candidates {
        if is_executable(&c.join("initdb")) && is_executable(&c.join("pg_ctl")) {
            return Ok(c.clone());
        }
    }
    if let Ok(initdb) = find("initdb", None) {
        if let Some(dir) = initdb.parent() {
            return Ok(dir.to_path_buf());
        }
    }
    bail!(
        "initdb and pg_ctl not found (looked in pg_bin_dir, pg_config --bindir, /usr/lib/postgresql/*/bin, PATH); hint: install the PostgreSQL server (Debian/Ubuntu: apt-get install postgresql)"
    )
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A program's version: `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` → (15, "15.18").
pub async fn version(program: &Path) -> Result<(u32, String)> {
    let line = crate::process::version_line(program).await?;
    parse_version(&line).with_context(|| {
        format!(
            "cannot read the version of {} from {line:?}",
            program.display()
        )
    })
}

pub fn parse_version(text: &str) -> Result<(u32, String)> {
    let word = text
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .context("no version number")?;
    let number: String = word
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let major = number
        .split('.')
        .next()
        .unwrap_or("")
        .parse::<u32>()
        .context("no major version")?;
    Ok((major, number))
}

/// The Debian/Ubuntu package that brings a client of this major version.
pub fn client_package(major: u32) -> String {
    format!("postgresql-client-{major}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(
            parse_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n").unwrap(),
            (15, "15.18".into())
        );
        assert_eq!(
            parse_version("pg_restore (PostgreSQL) 17beta1").unwrap(),
            (17, "17".into())
        );
        assert_eq!(
            parse_version("psql (PostgreSQL) 9.6.24").unwrap(),
            (9, "9.6.24".into())
        );
        assert!(parse_version("nonsense").is_err());
    }

    #[test]
    fn missing_program_names_the_fix() {
        let err = find("surely-not-a-program-dr", Some(Path::new("/nonexistent"))).unwrap_err();
        assert!(err.to_string().contains("pg_bin_dir"));
    }
}
