//! Test helpers: S3 storages on a real S3 server (s3s-fs checks signatures), and test data.

use bytes::Bytes;

use super::S3Storage;
use crate::config::S3Config;
use crate::storage::ByteStream;

pub(super) use super::MIB;
pub(in crate::storage) use crate::storage::s3_test_server::S3Server;

/// The credentials `S3Server::start` gives s3s-fs.
pub(super) const ACCESS: &str = "dr-test-access";
pub(super) const SECRET: &str = "dr-test-secret-4Kq7Wz";
/// The bucket `S3Server::start` creates.
pub(super) const BUCKET: &str = "dr-test";

pub(in crate::storage) fn start_server() -> S3Server {
    let server = S3Server::start();
    assert_eq!(
        (
            server.access_key.as_str(),
            server.secret_key.as_str(),
            server.bucket.as_str()
        ),
        (ACCESS, SECRET, BUCKET)
    );
    server
}

pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A storage on `endpoint`, credentials through uniquely named env variables.
pub(in crate::storage) fn storage_at(
    endpoint: &str,
    bucket: &str,
    prefix: &str,
    secret: &str,
    f: impl FnOnce(&mut S3Config),
) -> S3Storage {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (kv, sv) = (
        format!("DR_UNIT_S3_KEY_{n}"),
        format!("DR_UNIT_S3_SECRET_{n}"),
    );
    std::env::set_var(&kv, ACCESS);
    std::env::set_var(&sv, secret);
    let mut config = S3Config {
        endpoint: Some(endpoint.to_string()),
        allow_http: true,
        access_key_id_env: Some(kv),
        secret_access_key_env: Some(sv),
        part_size_mib: Some(5),
        upload_concurrency: Some(2),
        ..Default::default()
    };
    f(&mut config);
    S3Storage::new(bucket.into(), prefix.into(), config).unwrap()
}

pub(in crate::storage) fn storage(server: &S3Server, prefix: &str) -> S3Storage {
    storage_at(&server.endpoint, BUCKET, prefix, SECRET, |_| {})
}

/// `total` bytes of a pattern in 1 MiB-ish chunks, failing after `fail_after` if set.
pub(super) fn pattern_stream(total: usize, fail_after: Option<usize>) -> (ByteStream, Vec<u8>) {
    let data: Vec<u8> = (0..total).map(|i| (i * 7 + i / 4093) as u8).collect();
    let mut items: Vec<std::io::Result<Bytes>> = Vec::new();
    let mut sent = 0;
    for chunk in data.chunks(1_000_003) {
        if fail_after.is_some_and(|f| sent >= f) {
            items.push(Err(std::io::Error::other("source failed midway")));
            break;
        }
        items.push(Ok(Bytes::copy_from_slice(chunk)));
        sent += chunk.len();
    }
    (Box::pin(futures::stream::iter(items)), data)
}
