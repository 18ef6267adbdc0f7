//! Checks the s3s-fs test helper itself (the S3 backend is tested in src/storage/s3/ and,
//! with the local one, by the contract suite in src/storage/contract.rs).

#[path = "support/s3.rs"]
mod s3_support;

use std::net::TcpStream;

use s3_support::S3Server;

#[test]
fn server_starts_stops_restarts_and_cleans_up() {
    let mut server = S3Server::start();
    assert!(server.dir.join("dr-test").is_dir());
    assert!(TcpStream::connect(("127.0.0.1", server.port)).is_ok());
    std::fs::write(server.object_path("kept"), b"data").unwrap();

    let toml = server.config_toml("/team/prod/");
    assert!(toml.contains("url = \"s3://dr-test/team/prod\""), "{toml}");
    assert!(
        toml.contains(&format!("endpoint = \"{}\"", server.endpoint)),
        "{toml}"
    );
    assert!(
        toml.contains("access_key_id_env = \"DR_TEST_S3_KEY\""),
        "{toml}"
    );
    let env = server.env();
    assert!(env.contains(&("DR_TEST_S3_SECRET".to_string(), server.secret_key.clone())));

    server.stop();
    assert!(TcpStream::connect(("127.0.0.1", server.port)).is_err());
    server.restart();
    assert!(TcpStream::connect(("127.0.0.1", server.port)).is_ok());
    assert_eq!(std::fs::read(server.object_path("kept")).unwrap(), b"data");
    assert!(server.pending_uploads().is_empty());

    let dir = server.dir.clone();
    drop(server);
    assert!(!dir.exists());
}
