//! The 3 a.m. restore, for real: the `[dr]` steps of the runbooks, taken literally from
//! `dr runbook show NAME --format json`, against real clusters, with the setup the guide
//! recommends: a least-privilege backup role (`pg_read_all_data`, its password in the
//! variable named by `url_env`) and restore credentials of their own (`restore_url_env`).
//! Each scenario ends verified, with the application's role able to log in, and its
//! commands are exactly what the guide's "Restoring at 3 a.m." (docs/src/restore.md) shows.

mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;

use support::roles::{psql_as, query_as};
use support::{PgCluster, Run, World, SUPERUSER_PASSWORD};

const APP_PW: &str = "app-Secret-1";
const BACKUP_PW: &str = "backup-Secret-2";
const RESTORE_PW: &str = "restore-Secret-3";
const LIMITED_PW: &str = "limited-Secret-4";

/// A shop owned by the application's role, read by a least-privilege backup role, with a
/// restore role that may create databases and is a member of the owner; database-level
/// grants and settings of its own.
fn build_shop(pg: &PgCluster) {
    pg.psql(
        "postgres",
        &format!(
            "CREATE ROLE app LOGIN PASSWORD '{APP_PW}';
             CREATE ROLE dr_backup LOGIN PASSWORD '{BACKUP_PW}' IN ROLE pg_read_all_data;
             CREATE ROLE dr_restore LOGIN PASSWORD '{RESTORE_PW}' CREATEDB IN ROLE app;
             CREATE ROLE dr_limited LOGIN PASSWORD '{LIMITED_PW}' CREATEDB;
             CREATE ROLE reporting NOLOGIN;"
        ),
    );
    pg.psql("postgres", "CREATE DATABASE shop OWNER app");
    pg.psql(
        "postgres",
        "REVOKE CONNECT ON DATABASE shop FROM PUBLIC;
         GRANT CONNECT ON DATABASE shop TO dr_backup, dr_restore;
         ALTER DATABASE shop SET statement_timeout = '5min';",
    );
    pg.psql(
        "shop",
        "SET ROLE app;
         CREATE SCHEMA shop;
         CREATE TYPE shop.status AS ENUM ('new', 'paid', 'shipped');
         CREATE TABLE shop.customers (id serial PRIMARY KEY, name text NOT NULL);
         CREATE TABLE shop.orders (id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES shop.customers(id), status shop.status NOT NULL, total numeric(10,2));
         CREATE INDEX orders_customer ON shop.orders (customer_id);
         INSERT INTO shop.customers (name) SELECT 'customer ' || i FROM generate_series(1, 200) i;
         INSERT INTO shop.orders (customer_id, status, total) SELECT 1 + i % 200, (ARRAY['new','paid','shipped'])[1 + i % 3]::shop.status, i * 1.25 FROM generate_series(1, 1000) i;
         GRANT SELECT ON shop.orders TO reporting;",
    );
}

/// How the backup role reads the server.
#[derive(Clone, Copy, PartialEq)]
enum BackupRole {
    /// `dr_backup`: pg_read_all_data, cannot read role passwords.
    LeastPrivilege,
    /// The superuser: the globals hold the roles' passwords.
    Superuser,
}

/// The configuration the guide recommends: backup URL and restore URL in variables,
/// globals in every backup. The restore role's password is in a password file.
fn shop_world(pg: &PgCluster, backup_role: BackupRole) -> World {
    let mut world = World::new();
    world.write_config(&format!(
        r#"
[objectives]
rpo = "1h"
rto = "10m"

[storage]
url = "file://{}"

[backup]
include_globals = true

[[postgres]]
name = "main"
url_env = "DR_BACKUP_URL"
restore_url_env = "DR_RESTORE_URL"

[[contacts]]
name = "Test On-Call"
role = "primary"
phone = "+1-555-0100"

[[verify.sql]]
name = "every order has a customer"
query = "SELECT count(*) FROM shop.orders o LEFT JOIN shop.customers c ON c.id = o.customer_id WHERE c.id IS NULL"
expect = "= 0"
"#,
        world.storage_dir().display()
    ));
    let backup_url = match backup_role {
        BackupRole::LeastPrivilege => pg.url("dr_backup", BACKUP_PW, "shop"),
        BackupRole::Superuser => pg.superuser_url("shop"),
    };
    let passfile = world.dir.path().join("pgpass");
    std::fs::write(
        &passfile,
        format!("127.0.0.1:{}:*:dr_restore:{RESTORE_PW}\n", pg.port),
    )
    .unwrap();
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    world.env = vec![
        ("DR_BACKUP_URL".into(), backup_url),
        (
            // No password here: dr finds it in the password file, as psql would.
            "DR_RESTORE_URL".into(),
            format!("postgres://dr_restore@127.0.0.1:{}/shop", pg.port),
        ),
        ("PGPASSFILE".into(), passfile.display().to_string()),
    ];
    world
}

fn set_env(world: &mut World, key: &str, value: &str) {
    world.env.retain(|(k, _)| k != key);
    world.env.push((key.into(), value.into()));
}

/// Row counts of the shop's tables.
fn counts(pg: &PgCluster, db: &str) -> String {
    pg.psql(
        db,
        "SELECT (SELECT count(*) FROM shop.customers) || ' ' || (SELECT count(*) FROM shop.orders)",
    )
}

/// One `[dr]` step as run: the command as the runbook gave it (the backup id written
/// `ID`), and how it ended.
struct Ran {
    number: u32,
    command: String,
    run: Run,
}

/// Follows a runbook: every `[dr]` step's command is run as rendered (`words` replaces
/// what the operator fills in, such as SCHEMA.TABLE), and `manual` does each manual step
/// the scenario needs, in order.
fn follow(
    world: &mut World,
    runbook: &str,
    words: &[(&str, &str)],
    mut manual: impl FnMut(u32, &mut World, &[Ran]),
) -> Vec<Ran> {
    let shown = world.dr(&["runbook", "show", runbook, "--format", "json"]);
    shown.expect_code(0);
    let doc = shown.json();
    let backup_id = world.dr(&["list", "--format", "json"]).json()["backups"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut ran: Vec<Ran> = Vec::new();
    for step in doc["steps"].as_array().unwrap() {
        let number = step["number"].as_u64().unwrap() as u32;
        if step["kind"] == "manual" {
            manual(number, world, &ran);
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
            "[{runbook} step {number}] {command} -> exit {}\n{}{}",
            run.code, run.stdout, run.stderr
        );
        ran.push(Ran {
            number,
            command: command.replace(&backup_id, "ID"),
            run,
        });
    }
    ran
}

/// The `dr` lines of docs/src/restore.md's block for a scenario (`<!-- 3am:NAME -->`).
fn guide_commands(scenario: &str) -> Vec<String> {
    let guide =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/src/restore.md"))
            .unwrap();
    let marker = format!("<!-- 3am:{scenario} -->");
    let start = guide
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/src/restore.md has no {marker}"));
    let block = &guide[start..];
    let open = block.find("```").unwrap();
    let body = &block[open + 3..];
    let body = &body[body.find('\n').unwrap() + 1..];
    let body = &body[..body.find("```").unwrap()];
    body.lines()
        .map(|l| l.split("  #").next().unwrap().trim())
        .filter(|l| l.starts_with("dr "))
        .map(str::to_string)
        .collect()
}

/// The commands a scenario ran are exactly the guide's, and all of them but `allowed`
/// exited 0.
fn check_commands(scenario: &str, ran: &[Ran], allowed_failures: &[&str]) {
    let commands: Vec<String> = ran.iter().map(|r| r.command.clone()).collect();
    assert_eq!(
        commands,
        guide_commands(scenario),
        "docs/src/restore.md's {scenario} block must be what the test runs"
    );
    for r in ran {
        if allowed_failures.contains(&r.command.as_str()) {
            continue;
        }
        assert_eq!(
            r.run.code,
            0,
            "step {} `{}` failed:\n{}",
            r.number,
            r.command,
            r.run.all()
        );
    }
    let failed = ran.iter().filter(|r| r.run.code != 0).count();
    eprintln!(
        "SCENARIO {scenario}: {} dr command(s), {failed} non-zero exit(s)",
        ran.len()
    );
}

fn step(ran: &[Ran], number: u32) -> &Ran {
    ran.iter().find(|r| r.number == number).unwrap()
}

/// The application can log in with its own password and sees the data.
fn app_logs_in(pg: &PgCluster, expected_counts: &str) {
    assert_eq!(
        query_as(
            pg,
            "app",
            APP_PW,
            "shop",
            "SELECT (SELECT count(*) FROM shop.customers) || ' ' || (SELECT count(*) FROM shop.orders)"
        ),
        expected_counts
    );
}

#[test]
fn database_dropped() {
    let pg = PgCluster::start();
    build_shop(&pg);
    let mut world = shop_world(&pg, BackupRole::LeastPrivilege);
    let manifest = world.backup();
    assert_eq!(manifest["database_owner"], "app");
    assert_eq!(manifest["globals_role_passwords"], false);
    let before = counts(&pg, "shop");

    pg.psql("postgres", "DROP DATABASE shop WITH (FORCE)");

    let ran = follow(&mut world, "database-failure", &[], |_, _, _| {});
    check_commands("database-dropped", &ran, &["dr check"]);
    // Step 1 is the diagnosis: it fails, naming the cause and the way back.
    let diagnosis = step(&ran, 1);
    assert_eq!(diagnosis.run.code, 1);
    assert!(
        diagnosis.run.all().contains("database shop does not exist")
            && diagnosis.run.all().contains("--create"),
        "{}",
        diagnosis.run.all()
    );
    let restore = &step(&ran, 9).run;
    assert!(
        restore
            .stdout
            .contains("created database shop owned by app"),
        "{}",
        restore.stdout
    );
    assert!(restore.stdout.contains("VERIFIED"), "{}", restore.stdout);
    assert!(!restore.all().contains(RESTORE_PW) && !restore.all().contains(BACKUP_PW));

    assert_eq!(counts(&pg, "shop"), before);
    app_logs_in(&pg, &before);
    assert_eq!(
        pg.psql(
            "shop",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'orders'"
        ),
        "app"
    );
    // The database's own grants and settings came back with it.
    let acl = pg.psql(
        "postgres",
        "SELECT datacl::text FROM pg_database WHERE datname = 'shop'",
    );
    assert!(acl.contains("dr_backup=c/app"), "{acl}");
    assert!(
        acl.contains("=T/app") && !acl.contains("=Tc/app"),
        "CONNECT for PUBLIC stays revoked: {acl}"
    );
    assert_eq!(
        pg.psql("postgres", "SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = 'shop' AND s.setrole = 0"),
        "statement_timeout=5min"
    );
}

/// A lost cluster, re-initialised: only its bootstrap superuser exists.
fn lost_cluster(backup_role: BackupRole, same_port: bool) -> (PgCluster, World, Vec<Ran>, String) {
    let old = PgCluster::start();
    build_shop(&old);
    let mut world = shop_world(&old, backup_role);
    let manifest = world.backup();
    assert_eq!(
        manifest["globals_role_passwords"],
        backup_role == BackupRole::Superuser
    );
    let before = counts(&old, "shop");
    let port = old.port;
    drop(old);
    let new = if same_port {
        PgCluster::start_on(port)
    } else {
        PgCluster::start()
    };
    assert_eq!(
        new.psql(
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname !~ '^pg_'"
        ),
        "1",
        "a fresh cluster has only its superuser"
    );
    let new_port = new.port;
    let ran = follow(
        &mut world,
        "infrastructure-loss",
        &[],
        |number, world, ran| {
            match number {
                // Point the target at the new server; restore as its superuser.
                4 => {
                    let backup_url = match backup_role {
                        BackupRole::LeastPrivilege => {
                            format!("postgres://dr_backup:{BACKUP_PW}@127.0.0.1:{new_port}/shop")
                        }
                        BackupRole::Superuser => format!(
                            "postgres://postgres:{SUPERUSER_PASSWORD}@127.0.0.1:{new_port}/shop"
                        ),
                    };
                    set_env(world, "DR_BACKUP_URL", &backup_url);
                    set_env(
                        world,
                        "DR_RESTORE_URL",
                        &format!(
                            "postgres://postgres:{SUPERUSER_PASSWORD}@127.0.0.1:{new_port}/shop"
                        ),
                    );
                }
                // Each role the restore named gets its password from the password store.
                8 => {
                    let restored = &step(ran, 7).run;
                    let named: BTreeSet<String> = restored
                        .stdout
                        .lines()
                        .filter_map(|l| l.split("-c '\\password ").nth(1))
                        .map(|r| r.trim_end_matches('\'').to_string())
                        .collect();
                    let store = [
                        ("app", APP_PW),
                        ("dr_backup", BACKUP_PW),
                        ("dr_restore", RESTORE_PW),
                        ("dr_limited", LIMITED_PW),
                    ];
                    let expected: BTreeSet<String> = match backup_role {
                        BackupRole::LeastPrivilege => {
                            store.iter().map(|(r, _)| r.to_string()).collect()
                        }
                        BackupRole::Superuser => BTreeSet::new(),
                    };
                    assert_eq!(named, expected, "{}", restored.stdout);
                    for (role, password) in store.iter().filter(|(r, _)| named.contains(*r)) {
                        let out = std::process::Command::new(support::pg_bin_dir().join("psql"))
                            .args(["-X", "-q", "-h", "127.0.0.1", "-p", &new_port.to_string()])
                            .args(["-U", "postgres", "-d", "postgres", "-c"])
                            .arg(format!("ALTER ROLE {role} PASSWORD '{password}'"))
                            .env("PGPASSWORD", SUPERUSER_PASSWORD)
                            .output()
                            .unwrap();
                        assert!(
                            out.status.success(),
                            "{}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                    }
                }
                _ => {}
            }
        },
    );
    (new, world, ran, before)
}

#[test]
fn cluster_lost_and_reinitialised() {
    let (pg, _world, ran, before) = lost_cluster(BackupRole::LeastPrivilege, false);
    check_commands("cluster-lost", &ran, &[]);
    let restore = &step(&ran, 7).run;
    assert!(
        restore.stdout.contains("WITHOUT A PASSWORD"),
        "{}",
        restore.stdout
    );
    assert!(!restore.all().contains(BACKUP_PW) && !restore.all().contains(SUPERUSER_PASSWORD));
    assert_eq!(counts(&pg, "shop"), before);
    app_logs_in(&pg, &before);
    // Roles, memberships, grants and the database's own settings are back.
    assert_eq!(
        pg.psql("postgres", "SELECT pg_has_role('dr_backup', 'pg_read_all_data', 'USAGE') AND pg_has_role('dr_restore', 'app', 'MEMBER')"),
        "t"
    );
    assert_eq!(
        pg.psql(
            "shop",
            "SELECT has_table_privilege('reporting', 'shop.orders', 'SELECT')"
        ),
        "t"
    );
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT has_database_privilege('dr_limited', 'shop', 'CONNECT')"
        ),
        "f",
        "CONNECT stays revoked from PUBLIC"
    );
    // The backup role works again: the final dr check (step 13) passed, and it reads.
    assert_eq!(
        query_as(
            &pg,
            "dr_backup",
            BACKUP_PW,
            "shop",
            "SELECT count(*) FROM shop.customers"
        ),
        before.split(' ').next().unwrap()
    );
}

#[test]
fn cluster_lost_on_the_same_port_keeps_passwords_read_by_a_superuser_backup() {
    let (pg, _world, ran, before) = lost_cluster(BackupRole::Superuser, true);
    let restore = &step(&ran, 7).run;
    assert_eq!(restore.code, 0, "{}", restore.all());
    assert!(
        !restore.stdout.contains("WITHOUT A PASSWORD"),
        "{}",
        restore.stdout
    );
    assert!(
        restore.stdout.contains("passwords restored"),
        "{}",
        restore.stdout
    );
    for r in &ran {
        r.run.expect_code(0);
    }
    // Old passwords log in; the restoring superuser kept the new cluster's own.
    app_logs_in(&pg, &before);
    assert_eq!(
        query_as(&pg, "dr_restore", RESTORE_PW, "shop", "SELECT current_user"),
        "dr_restore"
    );
    assert_eq!(
        query_as(
            &pg,
            "postgres",
            SUPERUSER_PASSWORD,
            "postgres",
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        ),
        "t"
    );
}

#[test]
fn one_table_rows_deleted() {
    let pg = PgCluster::start();
    build_shop(&pg);
    let mut world = shop_world(&pg, BackupRole::LeastPrivilege);
    world.backup();
    let before = counts(&pg, "shop");
    pg.psql("shop", "DELETE FROM shop.orders WHERE id % 3 = 0");
    let customers_before = pg.psql("shop", "SELECT count(*) FROM shop.customers");
    let lost_rows = world.dir.path().join("lost_rows.csv");
    let port = pg.port;

    let ran = follow(
        &mut world,
        "accidental-deletion",
        &[("SCHEMA.TABLE", "shop.orders")],
        |number, world, _| match number {
            6 => set_env(
                world,
                "RECOVERY_URL",
                &format!("postgres://dr_restore@127.0.0.1:{port}/shop_recovery"),
            ),
            10 => {
                pg.psql(
                    "shop_recovery",
                    &format!(
                        "\\copy (SELECT * FROM shop.orders WHERE id % 3 = 0) TO '{}' CSV HEADER",
                        lost_rows.display()
                    ),
                );
            }
            11 => {
                pg.psql(
                    "shop",
                    &format!(
                        "\\copy shop.orders FROM '{}' CSV HEADER",
                        lost_rows.display()
                    ),
                );
            }
            _ => {}
        },
    );
    check_commands("table-rows-deleted", &ran, &[]);
    let restore = &step(&ran, 8).run;
    assert!(
        restore.stdout.contains("rows of --only-table shop.orders"),
        "{}",
        restore.stdout
    );
    assert!(
        restore
            .stdout
            .contains("all 1 table(s) of --only-table shop.orders hold the row counts"),
        "verify is limited to what was restored: {}",
        restore.stdout
    );
    // The copy has the schema and only the chosen rows, without foreign keys.
    assert_eq!(
        pg.psql("shop_recovery", "SELECT count(*) FROM shop.customers"),
        "0"
    );
    assert_eq!(
        pg.psql(
            "shop_recovery",
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f'"
        ),
        "0"
    );
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shop_recovery'"
        ),
        "app"
    );
    // Production was never touched by the restore, and has every row back.
    assert_eq!(
        pg.psql("shop", "SELECT count(*) FROM shop.customers"),
        customers_before
    );
    assert_eq!(counts(&pg, "shop"), before);
    app_logs_in(&pg, &before);
}

#[test]
fn failures_say_what_to_do_next() {
    let pg = PgCluster::start();
    build_shop(&pg);
    let mut world = shop_world(&pg, BackupRole::LeastPrivilege);
    world.backup();

    // A password on the command line is refused before anything is touched.
    let run = world.dr(&[
        "validate",
        "--into",
        &pg.url("dr_restore", RESTORE_PW, "shop"),
    ]);
    run.expect_code(2);
    assert!(run.stderr.contains("--into-env"), "{}", run.stderr);
    assert!(!run.all().contains(RESTORE_PW));
    // Without a password in it, the password file supplies one.
    world
        .dr(&[
            "validate",
            "--into",
            &format!("postgres://dr_restore@127.0.0.1:{}/shop", pg.port),
        ])
        .expect_code(0);

    // An unreachable destination: every source-side step is still checked and reported.
    let dead = support::free_port();
    set_env(
        &mut world,
        "DEAD_URL",
        &format!("postgres://x:y@127.0.0.1:{dead}/shop"),
    );
    let table = world.dr(&["validate", "--into-env", "DEAD_URL"]);
    eprintln!("{}", table.all());
    table.expect_code(1);
    let run = world.dr(&["validate", "--into-env", "DEAD_URL", "--format", "json"]);
    run.expect_code(1);
    let steps: Vec<(String, String)> = run.json()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().into(),
                s["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    let names: Vec<&str> = steps.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "storage",
            "manifest",
            "tools",
            "destination",
            "disk",
            "checksum+archive"
        ],
        "{steps:?}"
    );
    assert!(
        steps
            .iter()
            .all(|(n, s)| (n == "destination") == (s == "fail")),
        "{steps:?}"
    );

    // A missing database: --create is the way.
    set_env(
        &mut world,
        "GONE_URL",
        &format!("postgres://dr_restore@127.0.0.1:{}/gone", pg.port),
    );
    let run = world.dr(&["validate", "--into-env", "GONE_URL"]);
    run.expect_code(1);
    assert!(
        run.all().contains("database gone does not exist") && run.all().contains("add --create"),
        "{}",
        run.all()
    );
    world
        .dr(&["validate", "--into-env", "GONE_URL", "--create"])
        .expect_code(0);
    // A role without CREATEDB is told which privilege is missing, and how to grant it.
    pg.psql(
        "postgres",
        &format!("CREATE ROLE weak LOGIN PASSWORD '{LIMITED_PW}'"),
    );
    set_env(
        &mut world,
        "WEAK_URL",
        &format!("postgres://weak:{LIMITED_PW}@127.0.0.1:{}/gone", pg.port),
    );
    let run = world.dr(&[
        "validate",
        "--into-env",
        "WEAK_URL",
        "--create",
        "--with-globals",
    ]);
    run.expect_code(1);
    assert!(
        run.all().contains("lacks CREATEDB")
            && run.all().contains("ALTER ROLE weak CREATEDB")
            && run.all().contains("CREATEROLE"),
        "{}",
        run.all()
    );

    // Usage mistakes of a partial restore are exit 2, before anything is fetched.
    let run = world.dr(&[
        "validate",
        "--create",
        "--into-env",
        "GONE_URL",
        "--only-table",
        "shop.nope",
    ]);
    run.expect_code(2);
    assert!(
        run.all().contains("holds no table shop.nope"),
        "{}",
        run.all()
    );
    pg.create_db("busy");
    pg.psql("busy", "CREATE TABLE t (i int)");
    set_env(
        &mut world,
        "BUSY_URL",
        &format!(
            "postgres://postgres:{SUPERUSER_PASSWORD}@127.0.0.1:{}/busy",
            pg.port
        ),
    );
    let run = world.dr(&[
        "restore",
        "--backup-id",
        "latest",
        "--into-env",
        "BUSY_URL",
        "--only-table",
        "shop.orders",
        "--yes",
    ]);
    run.expect_code(2);
    assert!(
        run.all().contains("needs an empty database"),
        "{}",
        run.all()
    );
    assert_eq!(pg.psql("busy", "SELECT count(*) FROM t"), "0");

    // A restore role that is no member of the owners is told to use --no-owner.
    set_env(
        &mut world,
        "LIMITED_URL",
        &format!(
            "postgres://dr_limited:{LIMITED_PW}@127.0.0.1:{}/shop_limited",
            pg.port
        ),
    );
    let run = world.dr(&["validate", "--into-env", "LIMITED_URL", "--create"]);
    run.expect_code(1);
    assert!(
        run.all().contains("not a member of app") && run.all().contains("use --no-owner"),
        "{}",
        run.all()
    );
    let run = world.dr(&[
        "restore",
        "--backup-id",
        "latest",
        "--into-env",
        "LIMITED_URL",
        "--create",
        "--no-owner",
    ]);
    run.expect_code(0);
    assert!(run.stdout.contains("owned by dr_limited (the backup's owner app exists, but dr_limited is not a member of it)"), "{}", run.stdout);
    assert_eq!(
        pg.psql(
            "shop_limited",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'orders'"
        ),
        "dr_limited"
    );

    // A fresh cluster without the roles: ownership is caught before anything is touched;
    // a restore that fails half-way (a grant to a missing role) says what it left and how
    // to retry.
    let fresh = PgCluster::start();
    set_env(&mut world, "COPY_URL", &fresh.superuser_url("shop_copy"));
    let run = world.dr(&[
        "validate",
        "--into-env",
        "COPY_URL",
        "--create",
        "--format",
        "json",
    ]);
    run.expect_code(1);
    let doc = run.json();
    let error = format!(
        "{}; hint: {}",
        doc["error"]["message"], doc["error"]["hint"]
    );
    assert!(
        error.contains("role app does not exist there")
            && error.contains("--no-owner")
            && error.contains("--with-globals"),
        "{error}"
    );
    let run = world.dr(&[
        "restore",
        "--backup-id",
        "latest",
        "--into-env",
        "COPY_URL",
        "--create",
        "--no-owner",
    ]);
    eprintln!("{}", run.all());
    run.expect_code(1);
    let said = run.all();
    assert!(said.contains("role \"reporting\" does not exist"), "{said}");
    assert!(said.contains("--with-globals"), "{said}");
    assert!(
        said.contains("database shop_copy was created by this restore and is now partly restored"),
        "{said}"
    );
    assert!(said.contains("DROP DATABASE \"shop_copy\""), "{said}");
    assert!(!said.contains(";;"), "{said}");
    assert!(!said.contains(SUPERUSER_PASSWORD));
    let error = run
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap();
    assert_eq!(error.matches("hint:").count(), 1, "one hint: {error}");
    assert!(
        error.starts_with("error: step pg_restore failed: ")
            && error.contains(
                "; hint: create the backup's roles first with --with-globals; then drop it"
            ),
        "the cause, the state, then the fix and the retry: {error}"
    );
    // The retry it names, run as written, finishes over the half-restored database.
    let retry = said
        .split("finish it over what is there with `")
        .nth(1)
        .and_then(|r| r.split('`').next())
        .unwrap_or_else(|| panic!("no retry command in: {said}"))
        .to_string();
    assert!(
        retry.ends_with(
            "--into-env COPY_URL --with-globals --no-owner --create --clean --yes --no-safety-backup"
        ),
        "{retry}"
    );
    let argv: Vec<&str> = retry.split_whitespace().skip(1).collect();
    let run = world.dr(&argv);
    run.expect_code(0);
    assert!(run.stdout.contains("VERIFIED"), "{}", run.stdout);
    assert!(
        run.stdout.contains("WITHOUT A PASSWORD (the backup role could not read passwords): app, dr_backup, dr_limited, dr_restore"),
        "{}",
        run.stdout
    );
    assert_eq!(
        fresh.psql("shop_copy", "SELECT count(*) FROM shop.orders"),
        "1000"
    );
}

#[test]
fn drills_restore_roles_in_a_sandbox_and_use_the_restore_credentials() {
    let pg = PgCluster::start();
    build_shop(&pg);
    let world = shop_world(&pg, BackupRole::LeastPrivilege);
    world.backup();
    let run = world.dr(&[
        "drill",
        "--sandbox",
        "--backup-id",
        "latest",
        "--format",
        "json",
    ]);
    run.expect_code(0);
    let steps: Vec<String> = run.json()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert!(steps.contains(&"globals".to_string()), "{steps:?}");
    world
        .dr(&["drill", "--sandbox", "--backup-id", "latest", "--no-owner"])
        .expect_code(0);
    // The scratch database is made by the restore role (the backup role cannot).
    let run = world.dr(&["drill", "--backup-id", "latest"]);
    run.expect_code(0);
    let run = world.dr(&["drill", "--with-globals"]);
    run.expect_code(2);
    assert!(run.stderr.contains("--sandbox"), "{}", run.stderr);
}

#[test]
fn a_terminal_is_asked_after_the_preflight_and_sees_progress() {
    let pg = PgCluster::start();
    build_shop(&pg);
    let mut world = shop_world(&pg, BackupRole::LeastPrivilege);
    let id = world.backup()["id"].as_str().unwrap().to_string();
    // Piped: no prompt (refused without --yes), no progress.
    let run = world.dr(&["restore", "--backup-id", "latest"]);
    run.expect_code(2);
    assert!(
        run.all().contains("--yes") && !run.all().contains("of the archive"),
        "{}",
        run.all()
    );
    let piped = world.dr(&[
        "restore",
        "--backup-id",
        "latest",
        "--yes",
        "--no-safety-backup",
    ]);
    piped.expect_code(0);
    assert!(!piped.all().contains("of the archive"), "{}", piped.all());

    // On a terminal (script(1) gives dr a pseudo-terminal): the question names the
    // backup, its age and size, the destination and what is replaced; then progress.
    set_env(&mut world, "NO_COLOR", "1");
    let dr = env!("CARGO_BIN_EXE_dr");
    let inner = format!(
        "{dr} --config {} restore --backup-id latest --jobs 2",
        world.config_path().display()
    );
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-q", "-e", "-c", &inner, "/dev/null"]);
    cmd.env("TMPDIR", world.tmp_dir());
    for (k, v) in &world.env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux");
    use std::io::Write;
    child.stdin.as_mut().unwrap().write_all(b"shop\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{text}");
    assert!(out.status.success(), "{text}");
    for part in [
        format!("about to restore backup {id}"),
        " ago, ".to_string(),
        format!(
            "into postgres://dr_restore@127.0.0.1:{}/shop (database shop)",
            pg.port
        ),
        "tables replaced: ".to_string(),
        "shop.orders".to_string(),
        "a safety backup of the destination is taken first".to_string(),
        "type the database name (shop) to confirm".to_string(),
        "of the archive (100%)".to_string(),
        "VERIFIED".to_string(),
    ] {
        assert!(text.contains(&part), "{part:?} missing from:\n{text}");
    }
    let prompt = text.find("about to restore").unwrap();
    let preflight = text.find("extensions").unwrap_or(usize::MAX);
    assert!(
        prompt < preflight,
        "the table comes at the end; the prompt before it"
    );
    let psql_ok = psql_as(&pg, "app", APP_PW, "shop", "SELECT 1");
    assert!(psql_ok.status.success());
}
