//! `dr` where operators live: shell completions, man pages, help, `dr version`, tables on
//! real terminals (a pty through util-linux `script`), and the JUnit report in CI.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::OutputLimited;
use support::World;

const DR: &str = env!("CARGO_BIN_EXE_dr");
const LIMIT: Duration = Duration::from_secs(60);

/// `cmd` with stdin closed, under a time limit (a hang fails the test, naming the command).
fn limited(cmd: &mut Command, limit: Duration) -> std::process::Output {
    cmd.stdin(Stdio::null())
        .output_within(limit)
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `dr` with no configuration around it.
fn dr(args: &[&str]) -> std::process::Output {
    limited(
        Command::new(DR)
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("COLUMNS")
            .env_remove("DR_CONFIG"),
        LIMIT,
    )
}

fn require(program: &str, package: &str) -> std::path::PathBuf {
    support::which(program).unwrap_or_else(|| {
        panic!("{program} not found: install {package} (scripts/install-test-deps does)")
    })
}

/// The subcommands `dr --help` lists (without clap's `help`).
fn subcommands() -> Vec<String> {
    let help = stdout(&dr(&["--help"]));
    let list = help
        .split("Commands:\n")
        .nth(1)
        .expect("dr --help lists commands");
    let names: Vec<String> = list
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect();
    assert!(names.len() >= 14, "{names:?}");
    names
}

#[test]
fn bash_completion_loads_and_offers_every_subcommand() {
    let bash = require("bash", "bash");
    let script = format!(
        r#"set -e
source <("{DR}" completions bash)
complete -p dr
COMP_WORDS=(dr ''); COMP_CWORD=1; COMP_LINE='dr '; COMP_POINT=3
_dr dr '' dr
printf 'offer %s\n' "${{COMPREPLY[@]}}"
COMP_WORDS=(dr check --f); COMP_CWORD=2; COMP_LINE='dr check --f'; COMP_POINT=12
_dr dr --f check
printf 'flag %s\n' "${{COMPREPLY[@]}}"
"#
    );
    let out = limited(Command::new(bash).arg("-c").arg(script), LIMIT);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.lines().next().unwrap().starts_with("complete ") && text.contains(" dr\n"),
        "complete -p dr: {text}"
    );
    for name in subcommands() {
        assert!(
            text.contains(&format!("offer {name}\n")),
            "completion does not offer {name}: {text}"
        );
    }
    assert!(text.contains("flag --format\n"), "{text}");
    // The other shells get a script that names the commands too.
    for shell in ["zsh", "fish", "powershell"] {
        let out = dr(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = stdout(&out);
        assert!(
            script.contains("restore") && script.contains("backup-id"),
            "{shell}: {script}"
        );
    }
    assert_eq!(dr(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn man_pages_render_with_man() {
    let man = require("man", "man-db and groff-base");
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("dr.1");
    let out = dr(&["man"]);
    assert!(out.status.success());
    std::fs::write(&page, &out.stdout).unwrap();
    let render = |path: &Path| {
        let out = limited(
            Command::new(&man)
                .arg("-l")
                .arg(path)
                .env("MANPAGER", "cat")
                .env("PAGER", "cat")
                .env("MANWIDTH", "100")
                .env("LC_ALL", "C.UTF-8"),
            LIMIT,
        );
        let text = stdout(&out);
        assert!(
            out.status.success() && !text.is_empty(),
            "man -l {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        // man formats with groff; unformatted roff would show its requests.
        assert!(!text.contains(".SH") && !text.contains("\\-"), "{text}");
        text
    };
    let text = render(&page);
    for section in [
        "NAME",
        "SYNOPSIS",
        "OPTIONS",
        "EXAMPLES",
        "EXIT STATUS",
        "VERSION",
    ] {
        assert!(text.contains(section), "dr(1) has no {section}:\n{text}");
    }
    assert!(text.contains("dr-restore(1)"), "{text}");
    assert!(text.contains("130  interrupted"), "kept as written: {text}");

    let pages = dir.path().join("man1");
    let out = dr(&["man", "--dir", pages.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in subcommands() {
        let file = pages.join(format!("dr-{name}.1"));
        assert!(file.exists(), "no page {}", file.display());
    }
    let check = render(&pages.join("dr-check.1"));
    assert!(
        check.contains("--strict") && check.contains("pg.connect") && check.contains("junit"),
        "{check}"
    );
    assert!(render(&pages.join("dr-runbook-show.1")).contains("database-failure"));
}

#[test]
fn every_help_ends_with_examples_and_the_exit_status() {
    let mut commands: Vec<Vec<String>> = subcommands().into_iter().map(|name| vec![name]).collect();
    commands.push(vec!["runbook".into(), "show".into()]);
    for command in commands {
        let mut args: Vec<&str> = command.iter().map(String::as_str).collect();
        args.push("--help");
        let help = stdout(&dr(&args));
        let examples = help
            .split("Examples:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("`dr {}` --help has no examples", command.join(" ")));
        let invocation = format!("  dr {}", command.join(" "));
        let runs = examples
            .lines()
            .take_while(|l| !l.is_empty())
            .filter(|l| l.starts_with(&invocation))
            .count();
        assert!(
            runs >= 2,
            "`{invocation}`: fewer than two examples:\n{help}"
        );
        assert!(
            help.contains("Exit status:\n  0 ") && help.contains("\n  2 "),
            "{help}"
        );
    }
    // Defaults are shown once; runbook text is not called a table.
    let verify = stdout(&dr(&["verify", "--help"]));
    assert_eq!(verify.matches("[default: latest]").count(), 1, "{verify}");
    // Help says what each flag does in that command: verify compares, it does not restore.
    assert!(!verify.contains("into an empty database"), "{verify}");
    assert!(
        verify.contains("Compare only this table's rows"),
        "{verify}"
    );
    for command in ["backup", "list", "verify", "drill", "restore", "prune"] {
        let help = stdout(&dr(&[command, "--help"]));
        assert!(
            !help.contains("PostgreSQL target"),
            "`dr {command} --help` says PostgreSQL where Redis works too:\n{help}"
        );
    }
    let show = stdout(&dr(&["runbook", "show", "--help"]));
    assert!(show.contains("[possible values: text, json]"), "{show}");
    assert!(!show.contains("table"), "{show}");
}

#[test]
fn runbook_show_still_accepts_the_old_format_name() {
    let world = World::new();
    world.write_config(&format!(
        "[storage]\nurl = \"file://{}\"\n\n[[contacts]]\nname = \"On-Call\"\nphone = \"+1-555-0100\"\n",
        world.storage_dir().display()
    ));
    let text = world.dr(&["runbook", "show", "database-failure", "--format", "text"]);
    text.expect_code(0);
    assert!(
        text.stdout.starts_with("# Database failure"),
        "{}",
        text.stdout
    );
    let old = world.dr(&["runbook", "show", "database-failure", "--format", "table"]);
    old.expect_code(0);
    assert_eq!(old.stdout, text.stdout);
}

#[test]
fn version_names_the_commit_the_build_date_and_the_client_tools() {
    let out = dr(&["--version"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert_eq!(stdout(&dr(&["-V"])), text);
    assert_eq!(stdout(&dr(&["version"])), text);
    assert!(
        text.starts_with(&format!("dr {}\n", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&dr(&["version", "--format", "json"]).stdout).unwrap();
    assert_eq!(doc["format_version"], 2);
    assert_eq!(doc["ok"], true);
    // The commit is the checkout's, or `unknown` outside a git checkout (a tarball).
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| stdout(&o).trim().to_string());
    let commit = doc["commit"].as_str().unwrap();
    assert_eq!(commit, head.as_deref().unwrap_or("unknown"));
    assert!(text.contains(&format!("commit      {commit}\n")), "{text}");
    let today = chrono::Utc::now().date_naive();
    let built = chrono::NaiveDate::parse_from_str(doc["build_date"].as_str().unwrap(), "%Y-%m-%d")
        .expect("build_date is YYYY-MM-DD");
    assert!(built <= today, "built {built}, today {today}");
    // The client tools: the same pg_dump and version the shell finds.
    let pg_dump = require("pg_dump", "postgresql-client");
    let own = stdout(&limited(Command::new(&pg_dump).arg("--version"), LIMIT));
    let tool = doc["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["program"] == "pg_dump")
        .expect("pg_dump listed");
    assert_eq!(tool["path"], pg_dump.display().to_string());
    let version = tool["version"].as_str().unwrap();
    assert!(own.contains(version), "{own} vs {version}");
    assert!(
        text.contains(&format!("pg_dump     {version} ({})", pg_dump.display())),
        "{text}"
    );
    // Not found is reported, not fatal.
    let bare = limited(
        Command::new(DR).arg("version").env("PATH", "/nonexistent"),
        LIMIT,
    );
    assert!(bare.status.success());
    assert!(
        stdout(&bare)
            .contains("pg_restore  not usable: pg_restore not found on PATH; hint: install"),
        "{}",
        stdout(&bare)
    );
}

/// Text without terminal escape sequences (colours).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters, then a final letter.
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else if c != '\r' {
            out.push(c);
        }
    }
    out
}

/// `dr ARGS` on a pseudo-terminal of `cols` columns (util-linux `script`), as shown there.
fn on_pty(world: &World, cols: u16, args: &str) -> String {
    on_pty_sized(world, 40, cols, args)
}

/// [`on_pty`] with the rows the pty reports, too.
fn on_pty_sized(world: &World, rows: u16, cols: u16, args: &str) -> String {
    let script = require("script", "bsdutils");
    let mut cmd = Command::new(script);
    cmd.arg("-qec")
        .arg(format!(
            "stty rows {rows} cols {cols}; exec {DR} --config {} {args}",
            world.config_path().display()
        ))
        .arg("/dev/null")
        .env_remove("NO_COLOR")
        .env_remove("COLUMNS")
        .env_remove("DR_CONFIG");
    for (k, v) in &world.env {
        cmd.env(k, v);
    }
    let out = limited(&mut cmd, LIMIT);
    assert!(out.status.success(), "{}", stdout(&out));
    let text = plain(&stdout(&out));
    // Under 100 columns a terminal gets the compact layout, without borders.
    assert!(
        text.contains('┆') || (1..100).contains(&cols),
        "a terminal gets the styled table: {text}"
    );
    text
}

fn widest(text: &str) -> usize {
    text.lines().map(|l| l.chars().count()).max().unwrap_or(0)
}

#[test]
fn tables_fit_the_terminal_and_keep_ids_whole() {
    let (_pg, world) = support::sample_world("");
    let first = world.backup();
    let second = world.backup();
    let ids = [
        first["id"].as_str().unwrap().to_string(),
        second["id"].as_str().unwrap().to_string(),
    ];
    let id_lines = |text: &str| -> usize {
        ids.iter()
            .map(|id| text.lines().filter(|l| l.contains(id.as_str())).count())
            .sum()
    };

    // A pty that reports 0 columns: no width, so nothing wraps (not one-letter columns).
    let zero = on_pty(&world, 0, "list");
    assert_eq!(id_lines(&zero), 2, "{zero}");
    assert!(zero.lines().count() <= 8, "{zero}");
    assert!(zero.contains("sha256") && zero.contains("┆ age "), "{zero}");

    // 80 columns: ids whole, every line within 80, details left out.
    let narrow = on_pty(&world, 80, "list");
    assert_eq!(id_lines(&narrow), 2, "{narrow}");
    assert!(widest(&narrow) <= 80, "{narrow}");
    assert!(!narrow.contains("sha256"), "{narrow}");
    assert!(narrow.contains(" age "), "{narrow}");
    // A pty that reports 0 rows and 80 columns (some CI runners): its width still counts.
    let no_rows = on_pty_sized(&world, 0, 80, "list");
    assert!(widest(&no_rows) <= 80, "{no_rows}");
    assert_eq!(id_lines(&no_rows), 2, "{no_rows}");

    // Not a terminal: COLUMNS decides; without it nothing wraps.
    let mut piped = world.command(&["list"]);
    let wide = limited(piped.env_remove("COLUMNS"), LIMIT);
    let wide = stdout(&wide);
    assert_eq!(id_lines(&wide), 2);
    assert!(widest(&wide) > 80 && wide.contains("sha256"), "{wide}");
    let mut piped = world.command(&["check"]);
    let fitted = stdout(&limited(piped.env("COLUMNS", "72"), LIMIT));
    assert!(widest(&fitted) <= 72, "{fitted}");
    let mut piped = world.command(&["check"]);
    let unwrapped = stdout(&limited(piped.env_remove("COLUMNS"), LIMIT));
    assert!(widest(&unwrapped) > 72, "{unwrapped}");
    assert!(
        fitted.lines().count() > unwrapped.lines().count(),
        "messages wrap"
    );
}

#[test]
fn a_pipe_in_a_cell_cannot_break_the_table_and_each_table_has_a_heading() {
    let world = World::new();
    world.write_config(&format!(
        r#"
[storage]
url = "file://{}"

[[contacts]]
name = "Ops | night shift"
role = "primary\non-call"
phone = "+1-555-0100"

[[vendors]]
name = "Cloud | provider"
support_url = "https://support.example.com"
"#,
        world.storage_dir().display()
    ));
    let run = world.dr(&["contacts"]);
    run.expect_code(0);
    let text = &run.stdout;
    assert!(text.starts_with("Contacts\n|"), "{text}");
    assert!(text.contains("\nVendors\n|"), "{text}");
    let separators = |l: &str| l.replace("\\|", "").matches('|').count();
    let tables: Vec<Vec<&str>> = text
        .split("\n\n")
        .map(|t| t.lines().filter(|l| l.starts_with('|')).collect())
        .collect();
    for rows in tables {
        for row in &rows {
            assert_eq!(separators(row), separators(rows[0]), "{text}");
        }
    }
    assert!(text.contains("Ops \\| night shift"), "{text}");
    assert!(
        text.contains("primary on-call"),
        "a line break is a space: {text}"
    );
    // JSON keeps the text as it is.
    let json = world.dr(&["contacts", "--format", "json"]).json();
    assert_eq!(json["contacts"][0]["name"], "Ops | night shift");
}

#[test]
fn under_strict_junit_failures_and_the_exit_status_agree() {
    let (_pg, world) = support::sample_world("");
    world.backup();
    // No drill has run (drill.recent and rto.predicted warn) and the evidence log is
    // unsigned (evidence.chain warns); everything else passes.
    let relaxed = world.dr(&["check", "--format", "junit"]);
    relaxed.expect_code(0);
    assert!(
        relaxed.stdout.contains("failures=\"0\""),
        "{}",
        relaxed.stdout
    );
    let strict = world.dr(&["check", "--strict", "--format", "junit"]);
    strict.expect_code(1);
    assert!(
        strict.stdout.contains("failures=\"3\""),
        "{}",
        strict.stdout
    );
    assert!(
        strict.stdout.contains("type=\"warn (strict)\""),
        "{}",
        strict.stdout
    );
    let path = world.dir.path().join("strict.xml");
    std::fs::write(&path, &strict.stdout).unwrap();
    let parsed = limited(
        Command::new("python3").arg("-c").arg(
            "import sys\nfrom junitparser import JUnitXml, Failure\nxml = JUnitXml.fromfile(sys.argv[1])\nprint(','.join(c.name for s in xml for c in s if any(isinstance(r, Failure) for r in c.result)))",
        )
        .arg(&path),
        LIMIT,
    );
    assert!(
        parsed.status.success(),
        "junitparser (pip install junitparser): {}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    assert_eq!(
        stdout(&parsed).trim(),
        "drill.recent [main],evidence.chain [global],rto.predicted [main]"
    );

    // Each check's own duration, the same in every format.
    let json = world.dr(&["check", "--format", "json"]).json();
    let checks = json["checks"].as_array().unwrap();
    assert!(checks.iter().all(|c| c["duration_ms"].is_u64()));
    let prom = world.dr(&["check", "--format", "prometheus"]);
    assert!(
        prom.stdout
            .contains("dr_check_duration_seconds{check=\"pg.connect\""),
        "{}",
        prom.stdout
    );
}

/// Every command's help at 80 columns: example lines are not wrapped by clap (each is a
/// command, a comment, or the continuation of a line ending in `\`), and `dr status`
/// ends with its own exit status table.
#[test]
fn examples_do_not_wrap_at_80_columns_and_status_has_its_own_exit_table() {
    let mut commands: Vec<Vec<String>> = subcommands().into_iter().map(|name| vec![name]).collect();
    for sub in [
        ["runbook", "show"],
        ["evidence", "verify"],
        ["evidence", "export"],
    ] {
        commands.push(sub.iter().map(|s| s.to_string()).collect());
    }
    commands.push(vec!["evidence".into(), "keygen".into()]);
    commands.push(vec![]);
    for command in commands {
        let mut args: Vec<&str> = command.iter().map(String::as_str).collect();
        args.push("--help");
        let out = limited(Command::new(DR).args(&args).env("COLUMNS", "80"), LIMIT);
        let help = stdout(&out);
        let Some(examples) = help.split("Examples:\n").nth(1) else {
            continue;
        };
        let mut continued = false;
        for line in examples.lines().take_while(|l| !l.is_empty()) {
            assert!(
                line.chars().count() <= 80,
                "`dr {}`: {line:?}",
                command.join(" ")
            );
            let starts = ["  dr ", "  # ", "  sudo "]
                .iter()
                .any(|p| line.starts_with(p))
                || line == format!("  dr {}", command.join(" ")).trim_end();
            assert!(
                starts || (continued && line.starts_with("      ")),
                "`dr {} --help` wraps an example mid-command at 80 columns: {line:?}\n{help}",
                command.join(" ")
            );
            continued = line.ends_with('\\');
        }
    }
    let status = stdout(&dr(&["status", "--help"]));
    let exit = status.split("Exit status:\n").nth(1).unwrap_or("");
    assert!(
        exit.contains("at least one target fails") && !exit.contains("the operation failed"),
        "dr status --help shows the generic exit table:\n{status}"
    );
}
