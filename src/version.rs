//! What this binary is (version, git commit, build date, platform) and which PostgreSQL
//! client programs it would run: what a bug report or a support ticket needs first.

use std::path::Path;

use serde::Serialize;

use crate::pg::tools;

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit the binary was built from (`unknown` from a source tarball).
pub const COMMIT: &str = env!("DR_GIT_COMMIT");
/// The UTC date of the build (`SOURCE_DATE_EPOCH` when set).
pub const BUILD_DATE: &str = env!("DR_BUILD_DATE");
/// The platform the binary was built for.
pub const TARGET: &str = env!("DR_BUILD_TARGET");
/// One line: `0.1.0 (commit 9c853c9a1b2c, built 2026-11-25)`.
pub const LINE: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("DR_GIT_COMMIT"),
    ", built ",
    env!("DR_BUILD_DATE"),
    ")"
);

/// The client programs `dr` starts: dumps, restores, globals and role checks.
pub const CLIENT_PROGRAMS: [&str; 4] = ["pg_dump", "pg_restore", "pg_dumpall", "psql"];

/// One client program as found on this machine.
#[derive(Debug, Clone, Serialize)]
pub struct ClientTool {
    pub program: String,
    /// Where it was found; `null` when it was not.
    pub path: Option<String>,
    /// Its version (`15.18`); `null` when not found or unreadable.
    pub version: Option<String>,
    /// Why there is no path or version, with the fix.
    pub error: Option<String>,
}

/// `dr version`.
#[derive(Debug, Clone, Serialize)]
pub struct VersionReport {
    pub format_version: u32,
    pub ok: bool,
    pub version: String,
    pub commit: String,
    pub build_date: String,
    pub target: String,
    pub tools: Vec<ClientTool>,
}

/// Finds each client program on PATH (or in `bin_dir`) and reads its version. A missing
/// program is reported, not an error: `dr version` must work on any machine.
pub async fn report(bin_dir: Option<&Path>) -> VersionReport {
    let mut found = Vec::new();
    for program in CLIENT_PROGRAMS {
        found.push(probe(program, bin_dir).await);
    }
    VersionReport {
        format_version: crate::report::FORMAT_VERSION,
        ok: true,
        version: VERSION.to_string(),
        commit: COMMIT.to_string(),
        build_date: BUILD_DATE.to_string(),
        target: TARGET.to_string(),
        tools: found,
    }
}

async fn probe(program: &str, bin_dir: Option<&Path>) -> ClientTool {
    let mut tool = ClientTool {
        program: program.to_string(),
        path: None,
        version: None,
        error: None,
    };
    match tools::find(program, bin_dir) {
        Err(e) => tool.error = Some(format!("{e:#}")),
        Ok(path) => {
            tool.path = Some(path.display().to_string());
            match tools::version(&path).await {
                Ok((_, version)) => tool.version = Some(version),
                Err(e) => tool.error = Some(format!("{e:#}")),
            }
        }
    }
    tool
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_facts_are_filled_in() {
        assert!(LINE.starts_with(VERSION));
        assert!(!COMMIT.is_empty() && !COMMIT.contains(char::is_whitespace));
        // YYYY-MM-DD from the build script's own calendar arithmetic.
        let parsed = chrono::NaiveDate::parse_from_str(BUILD_DATE, "%Y-%m-%d");
        assert!(parsed.is_ok(), "{BUILD_DATE}");
        assert!(parsed.unwrap() > chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap());
    }

    #[tokio::test]
    async fn a_missing_program_is_reported_not_fatal() {
        let report = report(Some(Path::new("/nonexistent-dr-bin"))).await;
        assert_eq!(report.tools.len(), CLIENT_PROGRAMS.len());
        for t in &report.tools {
            assert!(t.path.is_none() && t.version.is_none());
            assert!(t.error.as_deref().unwrap().contains("pg_bin_dir"), "{t:?}");
        }
    }
}
