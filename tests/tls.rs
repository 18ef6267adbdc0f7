//! TLS to PostgreSQL, as libpq's sslmode defines it, for dr and for its pg_dump/pg_restore
//! children, against a server that refuses unencrypted connections.

mod support;

use support::{load_sample, PgCluster, World, SUPERUSER_PASSWORD};

fn world_for(pg: &PgCluster, query: &str) -> World {
    let mut world = World::new();
    world.standard_config(pg, "app", "");
    world.env.retain(|(k, _)| k != "DR_TEST_PG_URL");
    world.env.push((
        "DR_TEST_PG_URL".into(),
        format!("{}?{query}", pg.superuser_url("app")),
    ));
    // No ~/.postgresql/root.crt of the machine may make verification pass by accident.
    world
        .env
        .push(("HOME".into(), world.dir.path().display().to_string()));
    world
}

fn connect_check(world: &World) -> serde_json::Value {
    world
        .dr(&["check", "--only", "pg.connect", "--format", "json"])
        .json()["checks"][0]
        .clone()
}

#[test]
fn sslmodes_behave_like_libpq_for_dr_and_its_children() {
    let pg = PgCluster::start();
    pg.create_db("app");
    load_sample(&pg, "app");
    let ca = pg.require_tls();

    let plain = connect_check(&world_for(&pg, "sslmode=disable"));
    assert_eq!(
        plain["status"], "fail",
        "the server refuses unencrypted connections: {plain}"
    );
    assert!(
        plain["message"].as_str().unwrap().contains("no encryption"),
        "{plain}"
    );

    for mode in ["sslmode=prefer", "sslmode=require"] {
        let c = connect_check(&world_for(&pg, mode));
        assert_eq!(c["status"], "pass", "{mode}: {c}");
    }

    let unknown_ca = connect_check(&world_for(&pg, "sslmode=verify-full"));
    assert_eq!(unknown_ca["status"], "fail", "{unknown_ca}");
    let msg = unknown_ca["message"].as_str().unwrap().to_lowercase();
    assert!(
        msg.contains("certificate") || msg.contains("ca certificate"),
        "{msg}"
    );

    // Trusted CA: dr verifies, and pg_dump/pg_restore get the same sslmode and sslrootcert.
    let world = world_for(
        &pg,
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    );
    assert_eq!(connect_check(&world)["status"], "pass");
    let m = world.backup();
    assert_eq!(m["tables"].as_array().unwrap().len(), 3);
    pg.create_db("copy");
    let into = format!(
        "{}?sslmode=verify-ca&sslrootcert={}",
        pg.superuser_url("copy"),
        ca.display()
    );
    let mut world = world;
    world.set_env("DR_TEST_INTO", &into);
    let run = world.dr(&[
        "restore",
        "--backup-id",
        "latest",
        "--into-env",
        "DR_TEST_INTO",
    ]);
    run.expect_code(0);
    assert_eq!(pg.psql("copy", "SELECT count(*) FROM public.ten"), "10");
    assert!(!run.all().contains(SUPERUSER_PASSWORD));
}
