//! Integrity verdicts, end to end with the real binary, a real PostgreSQL, local storage and
//! a real S3 server: `dr backup` records the first verdict, `dr check` confirms it from
//! metadata alone, and a tampered object (same size, other bytes) fails the check on both
//! backends; `dr validate` renews or condemns a verdict; a missing or old verdict makes
//! `dr check` hash in full; `dr prune` still re-hashes a kept backup whose object changed.

mod support;

use std::path::{Path, PathBuf};

use support::s3::S3Server;
use support::{sample_world, PgCluster, World};

fn integrity_finding(world: &World) -> (i32, serde_json::Value) {
    let run = world.dr(&["check", "--only", "backup.integrity", "--format", "json"]);
    let json = run.json();
    let finding = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "backup.integrity")
        .unwrap_or_else(|| panic!("no backup.integrity in {json}"))
        .clone();
    (run.code, finding)
}

fn message(finding: &serde_json::Value) -> String {
    finding["message"].as_str().unwrap().to_string()
}

fn verdict_path(world: &World, manifest: &serde_json::Value) -> PathBuf {
    world.dump_path(manifest).with_file_name("integrity.json")
}

fn read_verdict(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Same size, one byte different: what bit rot or a careless rewrite leaves.
fn rewrite_with_one_byte_flipped(path: &Path) -> Vec<u8> {
    let original = std::fs::read(path).unwrap();
    let mut bytes = original.clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(path, &bytes).unwrap();
    original
}

#[test]
fn local_verdicts_confirm_cheaply_and_catch_a_tampered_object() {
    let (_pg, world) = sample_world("");
    let manifest = world.backup();
    let id = manifest["id"].as_str().unwrap().to_string();

    // dr backup recorded the first verdict from the hash it took while storing.
    let verdict_file = verdict_path(&world, &manifest);
    let verdict = read_verdict(&verdict_file);
    assert_eq!(verdict["backup_id"], id.as_str());
    assert_eq!(verdict["checked_by"], "backup");
    assert_eq!(verdict["ok"], true);
    let dump = world.dump_path(&manifest);
    let recorded = &verdict["objects"][0];
    assert_eq!(
        recorded["size"].as_u64().unwrap(),
        std::fs::metadata(&dump).unwrap().len()
    );

    // dr check trusts it: the dump is not read (its access time is not what shows this, the
    // message is: it names the verdict and who took the hash).
    let (code, finding) = integrity_finding(&world);
    assert_eq!(code, 0, "{finding}");
    let text = message(&finding);
    assert!(
        text.contains("unchanged since their full SHA-256 check") && text.contains("by dr backup"),
        "{text}"
    );

    // Same size, other bytes: the check fails without hashing, and says what to do.
    let original = rewrite_with_one_byte_flipped(&dump);
    let (code, finding) = integrity_finding(&world);
    assert_eq!(code, 1, "{finding}");
    assert_eq!(finding["status"], "fail");
    let text = message(&finding);
    assert!(
        text.contains("changed since its full SHA-256 check"),
        "{text}"
    );
    assert!(
        text.contains(&format!("dr validate --target main --backup-id {id}")),
        "{text}"
    );

    // dr validate hashes it, finds the mismatch and records a failing verdict: the check
    // now fails on that, still without reading the dump.
    world.dr(&["validate", "--backup-id", &id]).expect_code(1);
    let verdict = read_verdict(&verdict_file);
    assert_eq!(
        (verdict["ok"].clone(), verdict["checked_by"].clone()),
        (false.into(), "validate".into())
    );
    let (code, finding) = integrity_finding(&world);
    assert_eq!(code, 1);
    let text = message(&finding);
    assert!(
        text.contains("failed its full SHA-256 check") && text.contains("checksum mismatch"),
        "{text}"
    );

    // Put back, validated again: a passing verdict by validate, and the check passes.
    std::fs::write(&dump, &original).unwrap();
    world.dr(&["validate", "--backup-id", &id]).expect_code(0);
    let verdict = read_verdict(&verdict_file);
    assert_eq!(
        (verdict["ok"].clone(), verdict["checked_by"].clone()),
        (true.into(), "validate".into())
    );
    let (code, finding) = integrity_finding(&world);
    assert_eq!(code, 0, "{finding}");
    assert!(message(&finding).contains("by dr validate"), "{finding}");

    // A backup without a verdict (taken before verdicts existed): hashed in full once,
    // then confirmed from the verdict that check recorded.
    std::fs::remove_file(&verdict_file).unwrap();
    let (code, finding) = integrity_finding(&world);
    assert_eq!(code, 0, "{finding}");
    assert!(
        message(&finding).contains("hashed in full: no integrity verdict recorded yet"),
        "{finding}"
    );
    assert_eq!(read_verdict(&verdict_file)["checked_by"], "check");
    let (_, finding) = integrity_finding(&world);
    assert!(message(&finding).contains("by dr check"), "{finding}");

    // Tampered while there is no verdict: the full hash catches it.
    std::fs::remove_file(&verdict_file).unwrap();
    rewrite_with_one_byte_flipped(&dump);
    let (code, finding) = integrity_finding(&world);
    assert_eq!(code, 1);
    assert!(message(&finding).contains("checksum mismatch"), "{finding}");
    std::fs::write(&dump, &original).unwrap();
}

#[test]
fn an_old_verdict_is_renewed_by_a_full_hash() {
    let (_pg, world) = sample_world("[backup]\nrehash_after = \"1s\"\n");
    let manifest = world.backup();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (code, finding) = integrity_finding(&world);
    assert_eq!(code, 0, "{finding}");
    let text = message(&finding);
    assert!(
        text.contains("hashed in full: the last one,") && text.contains("is too old"),
        "{text}"
    );
    let verdict = read_verdict(&verdict_path(&world, &manifest));
    assert_eq!(verdict["checked_by"], "check");
}

#[test]
fn prune_rehashes_a_kept_backup_whose_object_changed() {
    // keep_last = 2: both backups are kept, both have verdicts from dr backup.
    let (_pg, world) = sample_world("");
    let first = world.backup();
    let second = world.backup();
    let plan = world.dr(&["prune", "--dry-run", "--format", "json"]);
    plan.expect_code(0);
    assert!(!plan.stdout.contains("CORRUPT"), "{}", plan.stdout);

    // The older backup's dump changes in place, same size: its verdict no longer stands,
    // prune hashes it and reports it instead of counting it as kept.
    rewrite_with_one_byte_flipped(&world.dump_path(&first));
    let plan = world.dr(&["prune", "--dry-run", "--format", "json"]);
    let json = plan.json();
    let entry = json["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["backup_id"] == first["id"])
        .unwrap()
        .clone();
    assert!(
        entry["reason"].as_str().unwrap().contains("CORRUPT"),
        "{entry}"
    );
    assert!(
        entry["reason"]
            .as_str()
            .unwrap()
            .contains("checksum mismatch"),
        "{entry}"
    );
    let kept = json["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["backup_id"] == second["id"])
        .unwrap()
        .clone();
    assert_eq!(kept["action"], "keep", "{kept}");
}

/// Overwrites an object through the S3 API, as anyone with write access could: a new
/// version with a new ETag and Last-Modified, of the same size.
fn overwrite_on_s3(server: &S3Server, key: &str, bytes: Vec<u8>) {
    use object_store::aws::AmazonS3Builder;
    use object_store::{path::Path as ObjectPath, ObjectStoreExt, PutPayload};
    let store = AmazonS3Builder::new()
        .with_bucket_name(&server.bucket)
        .with_endpoint(&server.endpoint)
        .with_region("us-east-1")
        .with_allow_http(true)
        .with_access_key_id(&server.access_key)
        .with_secret_access_key(&server.secret_key)
        .build()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(store.put(&ObjectPath::from(key), PutPayload::from(bytes)))
        .unwrap();
}

#[test]
fn s3_verdicts_catch_an_object_overwritten_through_the_api() {
    let pg = PgCluster::start();
    pg.create_db("app");
    support::load_sample(&pg, "app");
    let server = S3Server::start();
    let mut world = World::new();
    world.env.extend(server.env());
    world.standard_config(&pg, "app", "");
    // The same world, its storage on S3.
    let config = std::fs::read_to_string(world.config_path()).unwrap();
    let local = format!(
        "[storage]\nurl = \"file://{}\"\n",
        world.storage_dir().display()
    );
    assert!(config.contains(&local), "{config}");
    world.write_config(&config.replace(&local, &server.config_toml("team/prod")));

    let manifest = world.backup();
    let id = manifest["id"].as_str().unwrap();
    let dir = format!("team/prod/backups/main/{id}");
    assert!(server
        .object_path(&format!("{dir}/integrity.json"))
        .is_file());
    let (code, finding) = integrity_finding(&world);
    assert_eq!(code, 0, "{finding}");
    assert!(
        message(&finding).contains("unchanged since their full SHA-256 check"),
        "{finding}"
    );

    let dump_file = manifest["objects"][0]["file"].as_str().unwrap();
    let key = format!("{dir}/{dump_file}");
    let mut bytes = std::fs::read(server.object_path(&key)).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    overwrite_on_s3(&server, &key, bytes);

    let (code, finding) = integrity_finding(&world);
    assert_eq!(code, 1, "{finding}");
    let text = message(&finding);
    assert!(
        text.contains("changed since its full SHA-256 check") && text.contains("ETag"),
        "{text}"
    );
    // validate hashes it and records the failure for the next checks.
    world.dr(&["validate", "--backup-id", id]).expect_code(1);
    let (code, finding) = integrity_finding(&world);
    assert_eq!(code, 1);
    assert!(message(&finding).contains("checksum mismatch"), "{finding}");
}
