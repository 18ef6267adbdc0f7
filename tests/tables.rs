//! `dr check`, `dr status` and `dr list` on real ptys (util-linux `script`) at 80 and 120
//! columns, against an archiving cluster with a dump and a base backup: no line is wider
//! than the terminal, no backup id or check name is split, problems come first at 80, and
//! dumps and base backups stay apart (the method column is kept).

mod support;

use support::World;

/// `dr ARGS` on a pty of `cols` columns (`stty cols N rows 0`: the rows=0 case counts
/// the width alone); returns the text the terminal received, without carriage returns.
fn on_pty(world: &World, cols: u16, args: &str) -> String {
    let dr = env!("CARGO_BIN_EXE_dr");
    let inner = format!(
        "stty cols {cols} rows 0; {dr} --config {} {args}",
        world.config_path().display()
    );
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-q", "-e", "-c", &inner, "/dev/null"]);
    cmd.env("PATH", support::dr_path())
        .env("TMPDIR", world.tmp_dir())
        .env_remove("COLUMNS")
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG");
    for (k, v) in &world.env {
        cmd.env(k, v);
    }
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script(1) from util-linux");
    String::from_utf8_lossy(&out.stdout).replace('\r', "")
}

/// The text as a reader sees it: ANSI colour codes removed.
fn plain(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn assert_fits(text: &str, cols: usize, whole: &[&str], what: &str) {
    for line in text.lines() {
        assert!(
            line.chars().count() <= cols,
            "{what}: a line of {} characters at {cols} columns: {line:?}\n{text}",
            line.chars().count()
        );
    }
    for token in whole {
        assert!(
            text.contains(token),
            "{what}: {token:?} is not on one line at {cols} columns\n{text}"
        );
    }
}

#[test]
fn check_status_and_list_fit_80_and_120_columns() {
    let (pg, world) = support::pitr::cluster();
    support::pitr::write_rows(&pg, 3, "before");
    world.dr(&["backup", "--target", "main"]).expect_code(0);
    support::pitr::base_backup(&world);
    let list = world.dr(&["list", "--format", "json"]).json();
    let ids: Vec<String> = list["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{list}");
    let check = world.dr(&["check", "--format", "json"]).json();
    let names: Vec<String> = check["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    let ids_whole: Vec<&str> = ids.iter().map(String::as_str).collect();
    let names_whole: Vec<&str> = names.iter().map(String::as_str).collect();
    for cols in [80usize, 120] {
        let check = plain(&on_pty(&world, cols as u16, "check"));
        eprintln!("=== dr check at {cols} ===\n{check}");
        assert_fits(&check, cols, &names_whole, "dr check");
        let rows: Vec<&str> = check
            .lines()
            .filter(|l| names.iter().any(|n| l.contains(n.as_str())))
            .collect();
        assert!(rows.len() >= names.len() - 1, "{check}");
        let status = plain(&on_pty(&world, cols as u16, "status"));
        eprintln!("=== dr status at {cols} ===\n{status}");
        assert_fits(
            &status,
            cols,
            &["main", "drill --target main`"],
            "dr status",
        );
        let listed = plain(&on_pty(&world, cols as u16, "list"));
        eprintln!("=== dr list at {cols} ===\n{listed}");
        assert_fits(&listed, cols, &ids_whole, "dr list");
        // Dumps and base backups look different: the method column is kept.
        for (id, method) in ids.iter().zip(["physical", "dump"]) {
            let row = listed.lines().find(|l| l.contains(id.as_str())).unwrap();
            assert!(
                row.contains(method),
                "{id} is not shown as {method}:\n{listed}"
            );
        }
        if cols == 80 {
            // Compact: problems first, one line per check that passed.
            let first_pass = rows.iter().position(|l| l.contains("pass")).unwrap();
            assert!(
                rows[..first_pass]
                    .iter()
                    .all(|l| l.contains("warn") || l.contains("fail"))
                    && rows[first_pass..].iter().all(|l| l.contains("pass")),
                "problems come first:\n{check}"
            );
            assert!(
                check.lines().count() < names.len() + 16,
                "{} lines for {} checks:\n{check}",
                check.lines().count(),
                names.len()
            );
            assert!(status.lines().count() <= 4, "{status}");
        } else {
            assert!(
                check.contains("┌") && listed.contains("database"),
                "wide:\n{check}{listed}"
            );
        }
    }
}
