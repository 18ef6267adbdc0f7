//! Encryption at rest with age: nothing readable is stored, integrity is provable without
//! a key, the key opens everything, a wrong or missing key says so, and the manual path
//! (`age -d | zstd -d | pg_restore`) works when `dr` is not at hand.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::{files_below, sample_world, OutputLimited, World};

/// A key pair made by `age-keygen`: (identity file, public key).
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&path)
        .output_limited()
        .expect("age-keygen runs (Debian package age)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = Command::new("age-keygen")
        .arg("-y")
        .arg(&path)
        .output_limited()
        .unwrap();
    (
        path,
        String::from_utf8_lossy(&public.stdout).trim().to_string(),
    )
}

fn encrypted_world(extra_keys: &[&str]) -> (support::PgCluster, World, PathBuf, PathBuf) {
    let keys = tempfile::tempdir().unwrap().keep();
    let (team, team_pub) = keygen(&keys, "team.key");
    let (glass, glass_pub) = keygen(&keys, "break-glass.key");
    let mut recipients = vec![format!("\"{team_pub}\""), format!("\"{glass_pub}\"")];
    recipients.extend(extra_keys.iter().map(|k| format!("\"{k}\"")));
    let (pg, world) = sample_world(&format!(
        "[backup]\ninclude_globals = true\n\n[encryption]\nrecipients = [{}]\n",
        recipients.join(", ")
    ));
    (pg, world, team, glass)
}

#[test]
fn stored_objects_hold_no_plaintext_and_each_key_opens_the_backup() {
    let (pg, mut world, team, glass) = encrypted_world(&[]);
    pg.psql(
        "app",
        "INSERT INTO public.ten VALUES (999, 'needle-row-value-7f3a')",
    );
    let m = world.backup();
    assert_eq!(m["encryption"], "age");
    assert_eq!(m["recipients"].as_array().unwrap().len(), 2);
    for o in m["objects"].as_array().unwrap() {
        assert!(o["file"].as_str().unwrap().ends_with(".age"), "{o}");
        assert!(o["plaintext_sha256"].as_str().unwrap().len() == 64);
    }
    // Nothing stored reads as a row value or a table name (the manifest names tables by
    // design, so its row counts can prove a restore; the data objects must not).
    for f in files_below(&world.storage_dir()) {
        if f.file_name().unwrap() == "manifest.json" {
            continue;
        }
        let bytes = std::fs::read(&f).unwrap();
        for needle in [
            &b"needle-row-value-7f3a"[..],
            b"Quoted Table",
            b"CREATE TABLE",
        ] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds plaintext {:?}",
                f.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
    // Integrity is provable without a key.
    let check = world.dr(&["check", "--only", "backup.integrity", "--format", "json"]);
    check.expect_code(0);
    let validate = world.dr(&["validate", "--format", "json"]);
    validate.expect_code(0);
    let steps = validate.json()["steps"].as_array().unwrap().clone();
    assert!(steps
        .iter()
        .any(|s| s["name"] == "checksum" && s["status"] == "pass"));
    assert!(steps
        .iter()
        .any(|s| s["name"] == "archive" && s["status"] == "warn"));
    // The verdict says what was proven: the checksums, not the archive.
    let text = world.dr(&["validate"]);
    text.expect_code(0);
    assert!(
        text.stdout.contains("VALID (checksums only)")
            && text.stdout.contains("the archive was not read"),
        "{}",
        text.stdout
    );
    assert!(!text
        .stdout
        .contains("VALID: a restore of this backup can start"));
    // Either key opens it: validate reads the archive, restore verifies the plaintext hash.
    for key in [&team, &glass] {
        let run = world.dr(&["validate", "--identity", key.to_str().unwrap()]);
        run.expect_code(0);
        assert!(
            run.stdout.contains("pg_restore --list reads"),
            "{}",
            run.stdout
        );
    }
    pg.create_db("copy");
    world.set_env("DR_TEST_INTO", &pg.superuser_url("copy"));
    let run = world.dr(&[
        "restore",
        "--backup-id",
        "latest",
        "--into-env",
        "DR_TEST_INTO",
        "--identity",
        glass.to_str().unwrap(),
        // Two COPY sessions load the rows out of the decrypted, staged object.
        "--jobs",
        "2",
    ]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("by 2 COPY session(s)"),
        "{}",
        run.stdout
    );
    assert_eq!(
        pg.psql("copy", "SELECT label FROM public.ten WHERE id = 999")
            .trim(),
        "needle-row-value-7f3a"
    );
}

#[test]
fn wrong_and_missing_identities_fail_naming_the_recipients() {
    let (_pg, world, _team, _glass) = encrypted_world(&[]);
    let m = world.backup();
    let recipients: Vec<String> = m["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (stranger, _) = keygen(dir.path(), "stranger.key");
    let wrong = world.dr(&[
        "restore",
        "--backup-id",
        "latest",
        "--yes",
        "--identity",
        stranger.to_str().unwrap(),
    ]);
    wrong.expect_code(1);
    assert!(
        wrong.stderr.contains("cannot open this backup"),
        "{}",
        wrong.stderr
    );
    assert!(
        recipients.iter().all(|r| wrong.all().contains(r.as_str())),
        "{}",
        wrong.all()
    );
    let missing = world.dr(&["restore", "--backup-id", "latest", "--yes"]);
    missing.expect_code(2);
    assert!(
        missing.stderr.contains("no identity is configured"),
        "{}",
        missing.stderr
    );
    assert!(missing.stderr.contains(&recipients[0]));
}

#[test]
fn misconfigured_encryption_refuses_to_run_and_stores_nothing() {
    let (_pg, world) = sample_world("");
    let base = std::fs::read_to_string(world.config_path()).unwrap();
    for (table, needle) in [
        (
            "[encryption]\nrecipients = [\"age1notakey\"]\n",
            "is not an age public key",
        ),
        ("[encryption]\nrecipients = []\n", "names no recipient"),
        (
            "[encryption]\nrecipients_file = \"/nonexistent/recipients.txt\"\n",
            "recipients_file",
        ),
    ] {
        world.write_config(&format!("{base}\n{table}"));
        let run = world.dr(&["backup"]);
        run.expect_code(2);
        assert!(run.stderr.contains(needle), "{table}: {}", run.stderr);
        assert!(
            files_below(&world.storage_dir()).is_empty(),
            "{table}: nothing stored"
        );
    }
    // A recipients file that cannot be read (a directory stands in: root reads any file).
    let unreadable = world.dir.path().join("recipients.d");
    std::fs::create_dir_all(&unreadable).unwrap();
    world.write_config(&format!(
        "{base}\n[encryption]\nrecipients_file = \"{}\"\n",
        unreadable.display()
    ));
    let run = world.dr(&["backup"]);
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("cannot read [encryption] recipients_file"),
        "{}",
        run.stderr
    );
    assert!(files_below(&world.storage_dir()).is_empty());
}

#[test]
fn the_manual_path_restores_what_dr_restores() {
    let (pg, mut world, team, _glass) = encrypted_world(&[]);
    let m = world.backup();
    let dump = world.dump_path(&m);
    pg.create_db("manual");
    // Exactly the guide's command (docs/src/encryption.md), with this test's paths.
    let guide = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/src/encryption.md"
    ))
    .unwrap();
    let marker = "<!-- manual:age-dump -->\n```sh\n";
    let start = guide.find(marker).expect("the age-dump block") + marker.len();
    let line = guide[start..].lines().next().unwrap();
    assert!(line.contains("KEY dump.pgdump.zst.age"), "{line}");
    let script = line
        .replace("KEY", &team.display().to_string())
        .replace("dump.pgdump.zst.age", &dump.display().to_string())
        .replace("postgres://...", &pg.superuser_url("manual"));
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", &script])
        .stdin(Stdio::null())
        .output_limited()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pg.create_db("bydr");
    world.set_env("DR_TEST_INTO", &pg.superuser_url("bydr"));
    world
        .dr(&[
            "restore",
            "--backup-id",
            "latest",
            "--into-env",
            "DR_TEST_INTO",
            "--identity",
            team.to_str().unwrap(),
        ])
        .expect_code(0);
    assert_eq!(
        pg.dump_text("manual", &["--data-only"]),
        pg.dump_text("bydr", &["--data-only"])
    );
}

#[test]
fn drills_prove_the_key_and_keep_table_names_encrypted() {
    let (_pg, world, team, _glass) = encrypted_world(&[]);
    world.backup();
    let before = world.dr(&["check", "--only", "encryption", "--format", "json"]);
    assert_eq!(
        before.json()["checks"][0]["status"],
        "warn",
        "{}",
        before.stdout
    );
    let run = world.dr(&[
        "drill",
        "--backup-id",
        "latest",
        "--identity",
        team.to_str().unwrap(),
        "--format",
        "json",
    ]);
    run.expect_code(0);
    assert_eq!(run.json()["decrypted"], true);
    let reports = world.storage_dir().join("drills/main");
    let names: Vec<String> = std::fs::read_dir(&reports)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.ends_with(".json.age")), "{names:?}");
    let readable = names.iter().find(|n| n.ends_with(".json")).unwrap();
    let text = std::fs::read_to_string(reports.join(readable)).unwrap();
    assert!(
        !text.contains("Quoted Table") && !text.contains("public.ten"),
        "{text}"
    );
    let after = world.dr(&["check", "--only", "encryption", "--format", "json"]);
    assert_eq!(
        after.json()["checks"][0]["status"],
        "pass",
        "{}",
        after.stdout
    );
    // Rotation: a backup made only for keys no longer configured is named by validate.
    let cfg = std::fs::read_to_string(world.config_path()).unwrap();
    let start = cfg.find("recipients = [").unwrap();
    let end = cfg[start..].find(']').unwrap() + start + 1;
    let dir = tempfile::tempdir().unwrap();
    let (_new, new_pub) = keygen(dir.path(), "new.key");
    world.write_config(&format!(
        "{}recipients = [\"{new_pub}\"]{}",
        &cfg[..start],
        &cfg[end..]
    ));
    let validate = world.dr(&[
        "validate",
        "--identity",
        team.to_str().unwrap(),
        "--format",
        "json",
    ]);
    validate.expect_code(0);
    let keys = validate.json()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "keys")
        .cloned()
        .unwrap();
    assert_eq!(keys["status"], "warn", "{keys}");
}
