//! Every incident, end to end: each scenario follows `dr runbook show NAME --format json`
//! literally, as rendered for a target with WAL archiving, encryption (the identity
//! readable by the server's OS user), a least-privilege backup role and a Redis target with
//! data backups. Every `[dr]` step runs as written (with TIME, DIR, PORT, NAME, SCHEMA.TABLE
//! filled in as the operator would); the manual steps a scenario needs are done by the test.
//! Each ends with the data exactly as expected and `dr check` READY.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use support::pitr::{psql_port, restore_dir, time_between_writes, RestoredServer};
use support::redis_data::{load_many, snapshot, DataRedis};
use support::wal::{age_keygen, archiving_cluster, ArchiveSetup};
use support::{free_port, PgCluster, Run, World, SUPERUSER_PASSWORD};

const BACKUP_PW: &str = "backup-Secret-7";

/// The production the incidents happen to.
struct Incident {
    pg: PgCluster,
    world: World,
    redis: DataRedis,
}

/// An archiving cluster (1 MiB segments) with `app.orders`, backed up by `dr_backup`
/// (LOGIN REPLICATION, pg_read_all_data, the `dr mark` grants), encrypted to an age key that
/// the server's OS user can read, a Redis target with data backups; one dump and one base
/// backup taken, and `dr check` READY.
fn production() -> Incident {
    let redis = DataRedis::start();
    load_many(&redis, 1_500, 32);
    let (pg, mut world) = archiving_cluster(ArchiveSetup {
        initdb_args: &["--wal-segsize=1"],
        ..Default::default()
    });
    pg.psql(
        "postgres",
        &format!(
            "CREATE ROLE dr_backup LOGIN REPLICATION PASSWORD '{BACKUP_PW}' IN ROLE pg_read_all_data"
        ),
    );
    // Function grants are per database: the target's, and postgres for a dropped target.
    for db in ["app", "postgres"] {
        pg.psql(
            db,
            "GRANT EXECUTE ON FUNCTION pg_create_restore_point(text), pg_switch_wal() TO dr_backup",
        );
    }
    pg.psql(
        "app",
        "CREATE TABLE orders (id int PRIMARY KEY, note text NOT NULL);
         INSERT INTO orders SELECT i, 'order ' || i FROM generate_series(1, 500) i;",
    );
    let (identity, public) = age_keygen(world.dir.path(), "team.key");
    if support::is_root() {
        let st = std::process::Command::new("chgrp")
            .arg("postgres")
            .arg(&identity)
            .status()
            .unwrap();
        assert!(st.success());
    }
    std::fs::set_permissions(
        &identity,
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    // The same file, rewritten in place: it stays the server's OS user's to read.
    world.write_config(&format!(
        r#"
[objectives]
rpo = "1h"
rto = "10m"

[storage]
url = "file://{storage}"

[encryption]
recipients = ["{public}"]
identity_file = "team.key"

[[postgres]]
name = "main"
url_env = "DR_TEST_PG_URL"
restore_url_env = "DR_RESTORE_URL"
wal_archiving = true

[[redis]]
name = "cache"
url_env = "DR_TEST_REDIS_URL"
persistent = true
backup = true

[[contacts]]
name = "Test On-Call"
role = "primary"
phone = "+1-555-0100"
"#,
        storage = world.storage_dir().display()
    ));
    point_at(&mut world, pg.port);
    world.env.push(("DR_TEST_REDIS_URL".into(), redis.url()));
    world
        .dr(&["backup", "--physical", "--target", "main"])
        .expect_code(0);
    world.dr(&["backup"]).expect_code(0);
    let incident = Incident { pg, world, redis };
    ready(&incident.world, "before the incident");
    incident
}

/// Points the target at a server on `port`: the backup role for backups, the superuser for
/// restores.
fn point_at(world: &mut World, port: u16) {
    set_env(
        world,
        "DR_TEST_PG_URL",
        &format!("postgres://dr_backup:{BACKUP_PW}@127.0.0.1:{port}/app"),
    );
    set_env(
        world,
        "DR_RESTORE_URL",
        &format!("postgres://postgres:{SUPERUSER_PASSWORD}@127.0.0.1:{port}/app"),
    );
}

fn set_env(world: &mut World, key: &str, value: &str) {
    world.env.retain(|(k, _)| k != key);
    world.env.push((key.into(), value.into()));
}

#[track_caller]
fn ready(world: &World, when: &str) {
    let check = world.dr(&["check"]);
    assert_eq!(
        check.code, 0,
        "dr check is not READY {when}:\n{}{}",
        check.stdout, check.stderr
    );
    assert!(check.stdout.contains("READY"), "{}", check.stdout);
}

/// The ids of `app.orders` (or of another database's `orders`).
fn order_ids(sql: impl Fn(&str) -> String) -> BTreeSet<i64> {
    sql("SELECT coalesce(string_agg(id::text, ' ' ORDER BY id), '') FROM orders")
        .split_whitespace()
        .map(|id| id.parse().unwrap())
        .collect()
}

fn range(from: i64, to: i64) -> BTreeSet<i64> {
    (from..=to).collect()
}

/// One `[dr]` step as run.
struct Ran {
    number: u64,
    command: String,
    run: Run,
}

/// Follows a runbook as `dr runbook show NAME [ARGS] --format json` renders it: every
/// `[dr]` step's command with `words` replaced, `manual(number, text, world)` for each
/// manual step. A `[dr]` step must exit 0 unless its number is in `may_fail` (what the
/// runbook announces, such as the diagnosis of step 1).
fn follow(
    world: &mut World,
    show: &[&str],
    words: &[(&str, String)],
    may_fail: &[u64],
    mut manual: impl FnMut(u64, &str, &mut World),
) -> Vec<Ran> {
    let mut args = vec!["runbook", "show"];
    args.extend_from_slice(show);
    args.extend(["--format", "json"]);
    let shown = world.dr(&args);
    shown.expect_code(0);
    let doc = shown.json();
    assert_eq!(doc["branches"]["encryption"], true, "{}", doc["branches"]);
    let mut ran = Vec::new();
    for step in doc["steps"].as_array().unwrap() {
        let number = step["number"].as_u64().unwrap();
        if step["kind"] == "manual" {
            manual(number, step["text"].as_str().unwrap(), world);
            continue;
        }
        let mut command = step["command"].as_str().unwrap().to_string();
        for (word, value) in words {
            command = command.replace(word, value);
        }
        let argv: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(argv[0], "dr", "{command}");
        let run = world.dr(&argv[1..]);
        eprintln!(
            "[{} step {number}] {command} -> exit {}\n{}{}",
            show[0], run.code, run.stdout, run.stderr
        );
        assert!(
            run.code == 0 || may_fail.contains(&number),
            "{} step {number} failed: {command}\n{}{}",
            show[0],
            run.stdout,
            run.stderr
        );
        ran.push(Ran {
            number,
            command,
            run,
        });
    }
    ran
}

fn step_running<'a>(ran: &'a [Ran], needle: &str) -> &'a Ran {
    ran.iter()
        .find(|r| r.command.contains(needle))
        .unwrap_or_else(|| panic!("no step ran {needle:?}"))
}

/// Copies the rows of `recovery`'s orders that production lacks into production, in one
/// statement: what the runbook's manual \copy steps do.
fn copy_back(pg: &PgCluster, recovery: &str) {
    let have = order_ids(|sql| pg.psql("app", sql));
    let rows = pg.psql(
        recovery,
        "SELECT coalesce(string_agg(format('(%s, %L)', id, note), ', ' ORDER BY id), '') FROM orders",
    );
    let missing: Vec<&str> = rows
        .split("), ")
        .filter(|r| {
            let id: i64 = r
                .trim_start_matches('(')
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            !have.contains(&id)
        })
        .collect();
    assert!(!missing.is_empty(), "the copy brings nothing back");
    let values = missing
        .iter()
        .map(|r| format!("{})", r.trim_end_matches(')')))
        .collect::<Vec<_>>()
        .join(", ");
    pg.psql("app", &format!("INSERT INTO orders VALUES {values}"));
}

/// Rows deleted at a known time, on a target that archives WAL: the runbook's default route
/// replays to just before the DELETE in a sandbox and copies the table out; rows written
/// after the last dump and base backup come back too.
#[test]
fn rows_deleted_come_back_by_point_in_time_for_one_table() {
    let Incident {
        pg,
        mut world,
        redis: _redis,
    } = production();
    pg.psql(
        "app",
        "INSERT INTO orders SELECT i, 'late ' || i FROM generate_series(501, 600) i",
    );
    let time = time_between_writes(&pg);
    pg.psql("app", "DELETE FROM orders WHERE id > 450"); // the incident
    let recovery_url = pg.superuser_url("app_recovery");
    let ran = follow(
        &mut world,
        &["accidental-deletion"],
        &[
            ("TIME", time),
            ("SCHEMA.TABLE", "public.orders".into()),
            ("NAME", "4711".into()),
        ],
        &[],
        |_, text, world| {
            if text.contains("export RECOVERY_URL") {
                set_env(world, "RECOVERY_URL", &recovery_url);
            } else if text.contains("Load them into production") {
                copy_back(&pg, "app_recovery");
            } else if text.contains("Drop the recovery database") {
                pg.psql("postgres", "DROP DATABASE app_recovery");
            }
        },
    );
    assert!(ran.iter().any(|r| r.command.contains("--pitr")));
    assert_eq!(order_ids(|sql| pg.psql("app", sql)), range(1, 600));
    // verify after the copy: production holds more than the newest dump, said as a warning.
    let verify = step_running(&ran, "dr verify");
    assert!(
        verify.run.all().contains("written since"),
        "{}",
        verify.run.all()
    );
    ready(&world, "after the table came back");
}

/// The same deletion by the dump route (`--route dump`): the rows the newest dump holds
/// come back; the runbook says rows written after it cannot.
#[test]
fn rows_deleted_come_back_from_the_dump() {
    let Incident {
        pg,
        mut world,
        redis: _redis,
    } = production();
    pg.psql("app", "DELETE FROM orders WHERE id > 450"); // the incident
    let recovery_url = pg.superuser_url("app_recovery");
    follow(
        &mut world,
        &["accidental-deletion", "--route", "dump"],
        &[("SCHEMA.TABLE", "public.orders".into())],
        &[],
        |_, text, world| {
            if text.contains("export RECOVERY_URL") {
                set_env(world, "RECOVERY_URL", &recovery_url);
            } else if text.contains("Load them into production") {
                copy_back(&pg, "app_recovery");
            } else if text.contains("Drop the recovery database") {
                pg.psql("postgres", "DROP DATABASE app_recovery");
            }
        },
    );
    assert_eq!(order_ids(|sql| pg.psql("app", sql)), range(1, 500));
    ready(&world, "after the table came back");
}

/// A database dropped: the point-in-time runbook brings the cluster back as of just before
/// the DROP on a new data directory, which becomes the new primary (archiving on, a base
/// backup of its timeline).
#[test]
fn a_dropped_database_comes_back_by_point_in_time() {
    let Incident {
        pg,
        mut world,
        redis: _redis,
    } = production();
    pg.psql(
        "app",
        "INSERT INTO orders SELECT i, 'late ' || i FROM generate_series(501, 550) i",
    );
    let time = time_between_writes(&pg);
    // Other databases keep committing, as a production server does (without any commit
    // between the target and the DROP, PostgreSQL replays the drop's own records: see
    // a_drop_with_no_commit_after_the_target_is_refused_unpromoted).
    pg.psql("postgres", "CREATE TABLE traffic AS SELECT 1 AS x");
    pg.psql("postgres", "DROP DATABASE app WITH (FORCE)"); // the incident
    let dir = restore_dir(&world, "new-primary");
    let port = free_port();
    let _server = RestoredServer {
        dir: dir.clone(),
        port,
    };
    follow(
        &mut world,
        &["point-in-time-restore"],
        &[
            ("TIME", time),
            ("DIR", dir.display().to_string()),
            ("PORT", port.to_string()),
            ("NAME", "4711".into()),
        ],
        &[],
        |_, text, world| {
            if text.contains("stop the damaged server") {
                pg.stop_server();
            } else if text.contains("point the application and the target's url") {
                point_at(world, port);
            }
        },
    );
    assert_eq!(order_ids(|sql| psql_port(port, "app", sql)), range(1, 550));
    ready(&world, "on the new primary");
}

/// The same drop by the dump route (`database-failure --route dump`): the database is
/// created again from the newest dump, on the running server.
#[test]
fn a_dropped_database_comes_back_from_the_dump() {
    let Incident {
        pg,
        mut world,
        redis: _redis,
    } = production();
    pg.psql("postgres", "DROP DATABASE app WITH (FORCE)"); // the incident
    let ran = follow(
        &mut world,
        &["database-failure", "--route", "dump"],
        &[],
        // Step 1 is the diagnosis: dr check names the missing database.
        &[1],
        |_, _, _| {},
    );
    let diagnosis = &ran[0];
    assert_eq!(diagnosis.number, 1);
    assert!(
        diagnosis.run.all().contains("dr restore --create"),
        "{}",
        diagnosis.run.all()
    );
    assert_eq!(order_ids(|sql| pg.psql("app", sql)), range(1, 500));
    ready(&world, "after the database came back");
}

/// The whole cluster lost with its disk: infrastructure-loss on a new host restores the
/// newest base backup and every archived segment, the server archives again, a base backup
/// of the new timeline is taken, and `dr check` is READY.
#[test]
fn a_lost_cluster_comes_back_to_its_latest_archived_transaction() {
    let Incident {
        pg,
        mut world,
        redis: _redis,
    } = production();
    pg.psql(
        "app",
        "INSERT INTO orders SELECT i, 'late ' || i FROM generate_series(501, 580) i",
    );
    let segment = support::wal::switch_wal(&pg);
    support::wal::wait_archived(&pg, &segment);
    // The incident: the host and its disk are gone.
    pg.stop_server();
    let data: PathBuf = pg.data_dir();
    std::fs::remove_dir_all(&data).unwrap();
    let dir = restore_dir(&world, "new-host");
    let port = free_port();
    let _server = RestoredServer {
        dir: dir.clone(),
        port,
    };
    follow(
        &mut world,
        &["infrastructure-loss"],
        &[
            ("DIR", dir.display().to_string()),
            ("PORT", port.to_string()),
        ],
        &[],
        |_, text, world| {
            if text.contains("Fetch the off-site copy") {
                point_at(world, port);
            }
        },
    );
    assert_eq!(order_ids(|sql| psql_port(port, "app", sql)), range(1, 580));
    let list = world
        .dr(&["list", "--target", "main", "--format", "json"])
        .json();
    let newest_base = list["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["method"] == "physical")
        .unwrap();
    assert_eq!(newest_base["physical"]["timeline"], 2, "{list}");
    ready(&world, "on the new host");
}

/// Redis flushed: `redis.backup` fails the check (0 keys against the backup's), the
/// redis-failure runbook loads the newest backup, and every key is back.
#[test]
fn a_flushed_redis_comes_back_from_its_backup() {
    let Incident {
        pg: _pg,
        mut world,
        redis,
    } = production();
    let before = snapshot(&redis);
    redis::cmd("FLUSHALL").exec(&mut redis.con()).unwrap(); // the incident
    let ran = follow(&mut world, &["redis-failure"], &[], &[1], |_, _, _| {});
    let diagnosis = &ran[0];
    assert_ne!(diagnosis.run.code, 0, "the flush is seen");
    assert!(
        diagnosis.run.all().contains("redis.backup"),
        "{}",
        diagnosis.run.all()
    );
    assert_eq!(redis.dbsize_total(), 1_500);
    assert_eq!(snapshot(&redis), before);
    ready(&world, "after Redis came back");
}

/// A DROP DATABASE with no other commit between the target time and it: PostgreSQL stops
/// a time target only at a commit, so it replays the drop's own records (database marked
/// invalid, files removed) first. dr finds the invalid database before promoting, and fails
/// loudly with the server stopped, never "RESTORED" without the database.
#[test]
fn a_drop_with_no_commit_after_the_target_is_refused_unpromoted() {
    let Incident {
        pg,
        world,
        redis: _redis,
    } = production();
    let time = time_between_writes(&pg);
    pg.psql("postgres", "DROP DATABASE app WITH (FORCE)");
    let segment = support::wal::switch_wal(&pg);
    support::wal::wait_archived(&pg, &segment);
    let dir = restore_dir(&world, "too-late");
    let port = free_port();
    let _server = RestoredServer {
        dir: dir.clone(),
        port,
    };
    let run = world.dr(&[
        "restore",
        "--target",
        "main",
        "--pitr",
        "--to-time",
        &time,
        "--pgdata",
        &dir.display().to_string(),
        "--start",
        "--port",
        &port.to_string(),
    ]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("left database(s) app invalid")
            && run.stderr.contains("stopped before it was promoted"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("RESTORED"), "{}", run.stdout);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing serves on {port}"
    );
    assert!(!dir.join("postmaster.pid").exists());
}
