//! Fleets: a hundred databases on one real PostgreSQL server at its default
//! `max_connections = 100`, found with `databases = "all"`, backed up in parallel and
//! checked without ever taking more connections than `[connections] max_per_server`.

mod support;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{PgCluster, World};

const DATABASES: usize = 100;
const LIMIT: i64 = 6;

/// Creates `fleet_000` ... `fleet_099`, each with a small table, in one psql session.
fn create_fleet(pg: &PgCluster) {
    // A throwaway server: durability buys nothing here, and copying the template's files
    // (FILE_COPY) writes far less than logging them (WAL_LOG, 7 MB of WAL per database).
    pg.psql("postgres", "ALTER SYSTEM SET fsync = off");
    pg.psql("postgres", "ALTER SYSTEM SET full_page_writes = off");
    pg.psql("postgres", "SELECT pg_reload_conf()");
    let mut sql = String::new();
    for i in 0..DATABASES {
        sql.push_str(&format!(
            "CREATE DATABASE fleet_{i:03} STRATEGY = FILE_COPY;\n\\c fleet_{i:03}\nCREATE TABLE orders AS SELECT g AS id, 'order ' || g AS note FROM generate_series(1, {}) g;\n",
            10 + i
        ));
    }
    let file = pg.dir.path().join("fleet.sql");
    std::fs::write(&file, sql).unwrap();
    let out = std::process::Command::new(pg.bin("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg(pg.socket_dir())
        .args([
            "-p",
            &pg.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-f",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stops the server with a (quick, since fsync is off) shutdown checkpoint: an immediate
/// stop of a server with a hundred fresh databases can outlast pg_ctl's wait.
fn stop_fast(pg: &PgCluster) {
    let mut cmd = if support::is_root() {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(pg.bin("pg_ctl"));
        c
    } else {
        std::process::Command::new(pg.bin("pg_ctl"))
    };
    let out = cmd
        .arg("-D")
        .arg(pg.data_dir())
        .args(["-m", "fast", "-w", "stop"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Samples, from a connection of its own, how many client connections are open on the
/// server besides itself; keeps the highest count until stopped.
struct ConnectionSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicI64>,
    samples: Arc<AtomicI64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ConnectionSampler {
    fn start(url: String) -> ConnectionSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicI64::new(0));
        let samples = Arc::new(AtomicI64::new(0));
        let (s, p, n) = (stop.clone(), peak.clone(), samples.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                ready_tx.send(()).unwrap();
                while !s.load(Ordering::SeqCst) {
                    let row = client
                        .query_one(
                            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                            &[],
                        )
                        .await
                        .unwrap();
                    p.fetch_max(row.get::<_, i64>(0), Ordering::SeqCst);
                    n.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        ConnectionSampler {
            stop,
            peak,
            samples,
            thread: Some(thread),
        }
    }

    /// (highest count seen, samples taken)
    fn finish(mut self) -> (i64, i64) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        (
            self.peak.load(Ordering::SeqCst),
            self.samples.load(Ordering::SeqCst),
        )
    }
}

fn fleet_config(world: &mut World, pg: &PgCluster, databases: &str) {
    world
        .env
        .push(("DR_TEST_PG_URL".into(), pg.superuser_url("postgres")));
    world.write_config(&format!(
        r#"
[objectives]
rpo = "1h"
rto = "10m"

[storage]
url = "file://{}"

[connections]
max_per_server = {LIMIT}

[[postgres]]
name = "shop"
url_env = "DR_TEST_PG_URL"
databases = {databases}
exclude = ["postgres"]
"#,
        world.storage_dir().display()
    ));
}

#[test]
fn a_hundred_databases_on_one_server_are_found_backed_up_and_checked_within_the_connection_limit() {
    let started = std::time::Instant::now();
    let pg = PgCluster::start();
    assert_eq!(pg.psql("postgres", "SHOW max_connections"), "100");
    create_fleet(&pg);
    eprintln!("{DATABASES} databases made in {:?}", started.elapsed());
    let mut world = World::new();
    fleet_config(&mut world, &pg, r#""all""#);
    let sampler_url = pg.superuser_url("postgres");

    // Backup of all, default parallelism: discovery finds every database.
    let sampler = ConnectionSampler::start(sampler_url.clone());
    let backup = world.dr(&["backup", "--format", "json"]);
    let (peak, samples) = sampler.finish();
    eprintln!(
        "backup of {DATABASES}: {:?}, peak {peak} connections",
        backup.elapsed
    );
    backup.expect_code(0);
    let backups = backup.json()["backups"].as_array().unwrap().clone();
    assert_eq!(backups.len(), DATABASES, "{}", backup.stderr);
    let mut names: Vec<String> = backups
        .iter()
        .map(|b| b["target"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names[0], "shop/fleet_000");
    assert_eq!(names[DATABASES - 1], "shop/fleet_099");
    assert!(samples > 10, "the sampler took only {samples} samples");
    assert!(
        peak <= LIMIT,
        "dr backup held {peak} connections at once, over max_per_server = {LIMIT}"
    );
    // Stored under a key-safe name, and each backup holds its own database.
    assert!(world.storage_dir().join("backups/shop+fleet_042").is_dir());
    let b42 = backups
        .iter()
        .find(|b| b["target"] == "shop/fleet_042")
        .unwrap();
    assert_eq!(b42["database"], "fleet_042");

    // The readiness gate on the whole fleet: READY, never "too many clients".
    let sampler = ConnectionSampler::start(sampler_url.clone());
    let check = world.dr(&["check", "--format", "json"]);
    let (peak, samples) = sampler.finish();
    eprintln!(
        "check of {DATABASES}: {:?}, peak {peak} connections",
        check.elapsed
    );
    assert!(!check.all().contains("too many clients"), "{}", check.all());
    check.expect_code(0);
    let report = check.json();
    assert_eq!(report["ready"], true);
    let connects: Vec<&serde_json::Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "pg.connect")
        .collect();
    assert_eq!(connects.len(), DATABASES);
    assert!(connects.iter().all(|c| c["status"] == "pass"));
    assert!(samples > 3, "the sampler took only {samples} samples");
    assert!(
        peak <= LIMIT,
        "dr check held {peak} connections at once, over max_per_server = {LIMIT}"
    );

    // The scorecard: one row per database, from storage alone (the server may be down).
    // Nothing listens where the fleet's URL points now: status does not need the server.
    let at_work = world.env.clone();
    world.env.retain(|(k, _)| k != "DR_TEST_PG_URL");
    world.env.push((
        "DR_TEST_PG_URL".into(),
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            support::free_port()
        ),
    ));
    let status = world.dr(&["status", "--format", "json"]);
    status.expect_code(0);
    let rows = status.json()["targets"].as_array().unwrap().clone();
    assert_eq!(rows.len(), DATABASES, "{}", status.stdout);
    // Backups are fresh but nothing was ever drilled: every row warns, none fails.
    assert!(rows.iter().all(|r| r["status"] == "warn"), "{rows:?}");
    assert!(rows[0]["summary"]
        .as_str()
        .unwrap()
        .contains("never drilled"));
    assert!(rows[0]["last_backup"]["rpo_met"] == true);
    let table = world.dr(&["status"]);
    assert!(
        table
            .stdout
            .contains("100 target(s) (RPO 1h): 0 fail, 100 warn, 0 pass"),
        "{}",
        table.stdout
    );

    // Globs select among the members; one that matches nothing is a usage error.
    let list = world.dr(&["list", "--target", "shop/fleet_00*", "--format", "json"]);
    list.expect_code(0);
    assert_eq!(list.json()["backups"].as_array().unwrap().len(), 10);
    let none = world.dr(&["status", "--target", "orders-*"]);
    none.expect_code(2);
    assert!(
        none.stderr.contains("matches no target") && none.stderr.contains("shop/fleet_000"),
        "{}",
        none.stderr
    );
    world.env = at_work;

    // A database among them fails: it is named, and the others complete.
    pg.psql(
        "postgres",
        "ALTER DATABASE fleet_050 WITH ALLOW_CONNECTIONS false",
    );
    // Twenty of them named in a list (to keep the test short), one refusing connections.
    let all: Vec<String> = (40..60).map(|i| format!("\"fleet_{i:03}\"")).collect();
    fleet_config(&mut world, &pg, &format!("[{}]", all.join(", ")));
    // With a metrics file (or a [[notify]] sink) dr keeps status records: `dr status`
    // names the last failure from them.
    let metrics = world.dir.path().join("dr.prom");
    let backup = world.dr(&[
        "backup",
        "--format",
        "json",
        "--metrics-file",
        metrics.to_str().unwrap(),
    ]);
    backup.expect_code(1);
    let report = backup.json();
    assert_eq!(
        report["backups"].as_array().unwrap().len(),
        19,
        "{}",
        backup.stderr
    );
    let failures = report["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["target"], "shop/fleet_050");
    assert!(
        backup
            .stderr
            .contains("1 of 20 backup(s) failed: shop/fleet_050"),
        "{}",
        backup.stderr
    );
    let status = world.dr(&["status", "--format", "json"]);
    status.expect_code(1);
    let worst = &status.json()["targets"][0];
    assert_eq!(worst["target"], "shop/fleet_050");
    assert_eq!(worst["status"], "fail");
    assert_eq!(worst["last_failure"]["operation"], "backup");
    stop_fast(&pg);
}

#[test]
fn a_fleet_whose_server_cannot_be_asked_fails_loudly_and_the_other_targets_still_run() {
    let pg = PgCluster::start();
    pg.create_db("billing");
    let mut world = World::new();
    world.env.push((
        "DR_TEST_FLEET_URL".into(),
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?connect_timeout=2",
            support::free_port()
        ),
    ));
    world
        .env
        .push(("DR_TEST_PG_URL".into(), pg.superuser_url("billing")));
    world.write_config(&format!(
        r#"
[storage]
url = "file://{}"

[[postgres]]
name = "shop"
url_env = "DR_TEST_FLEET_URL"
databases = "all"

[[postgres]]
name = "billing"
url_env = "DR_TEST_PG_URL"
"#,
        world.storage_dir().display()
    ));
    let check = world.dr(&["check", "--only", "pg.connect", "--format", "json"]);
    check.expect_code(1);
    let report = check.json();
    let shop = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["target"] == "shop")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(shop["status"], "fail");
    assert!(
        shop["message"]
            .as_str()
            .unwrap()
            .contains("cannot list the databases of fleet shop"),
        "{shop}"
    );
    let backup = world.dr(&["backup", "--format", "json"]);
    backup.expect_code(1);
    let report = backup.json();
    assert_eq!(report["backups"][0]["target"], "billing");
    assert_eq!(report["failures"][0]["target"], "shop");
    assert!(
        backup.stderr.contains("1 of 2 backup(s) failed: shop"),
        "{}",
        backup.stderr
    );
    // Members named on the command line need nobody to list them.
    let list = world.dr(&["list", "--target", "shop/orders"]);
    list.expect_code(0);
}
