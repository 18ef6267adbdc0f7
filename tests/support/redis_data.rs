//! Redis servers with data, for the Redis backup tests: a server started from a config
//! file (so commands can be renamed away, as managed Redis does), a sample keyspace with
//! every type, and a logical snapshot of a server to compare two of them.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::{free_port, wait_for_port, which};

pub struct DataRedis {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub password: Option<String>,
}

impl DataRedis {
    pub fn start() -> DataRedis {
        Self::with_config(&[])
    }

    /// A server whose config file also holds `lines` (e.g. `rename-command SYNC ""`).
    pub fn with_config(lines: &[&str]) -> DataRedis {
        let exe = which("redis-server")
            .expect("redis-server not installed: apt-get install redis-server (or run scripts/install-test-deps)");
        let dir = tempfile::Builder::new()
            .prefix("dr-test-redis-data-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let password = lines
            .iter()
            .find_map(|l| l.strip_prefix("requirepass "))
            .map(str::to_string);
        let conf = format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nsave \"\"\nappendonly no\nrepl-diskless-sync-delay 0\nlogfile {}\n{}\n",
            dir.path().display(),
            dir.path().join("log").display(),
            lines.join("\n")
        );
        let conf_path = dir.path().join("redis.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(exe)
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port);
        let server = DataRedis {
            child: Some(child),
            port,
            dir,
            password,
        };
        // Answering on the port is not yet answering PING (a loaded RDB, for one).
        for _ in 0..400 {
            if let Ok(mut c) = server.client().get_connection() {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return server;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("redis on {port} does not answer PING");
    }

    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).unwrap()
    }

    pub fn con(&self) -> redis::Connection {
        self.client().get_connection().unwrap()
    }

    pub fn rdb_path(&self) -> PathBuf {
        self.dir.path().join("dump.rdb")
    }

    /// Keys in every database, from INFO keyspace.
    pub fn dbsize_total(&self) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("keyspace")
            .query(&mut self.con())
            .unwrap();
        info.lines()
            .filter_map(|l| {
                l.split_once(":keys=")?
                    .1
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for DataRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn select(con: &mut redis::Connection, db: u32) {
    redis::cmd("SELECT").arg(db).query::<()>(con).unwrap();
}

/// Every type Redis has, in small and large encodings, with and without TTL, in three
/// databases. Returns the number of keys.
pub fn load_every_type(r: &DataRedis) -> u64 {
    let mut con = r.con();
    let mut p = redis::pipe();
    p.cmd("SELECT").arg(0).ignore();
    p.cmd("SET").arg("str:plain").arg("hello").ignore();
    p.cmd("SET").arg("str:int").arg("12345").ignore();
    p.cmd("SET")
        .arg("12345")
        .arg("an integer-looking key")
        .ignore();
    p.cmd("SET").arg("str:long").arg("abc".repeat(400)).ignore();
    p.cmd("SET")
        .arg("str:binary")
        .arg((0u8..=255).collect::<Vec<u8>>())
        .ignore();
    p.cmd("SET")
        .arg("str:ttl")
        .arg("expires in an hour")
        .arg("EX")
        .arg(3600)
        .ignore();
    p.cmd("HSET")
        .arg("hash:small")
        .arg("a")
        .arg("1")
        .arg("b")
        .arg("2")
        .ignore();
    for i in 0..300 {
        p.cmd("HSET")
            .arg("hash:big")
            .arg(format!("field{i}"))
            .arg(format!("value{i}"))
            .ignore();
        p.cmd("SADD")
            .arg("set:big")
            .arg(format!("member{i}"))
            .ignore();
        p.cmd("ZADD")
            .arg("zset:big")
            .arg(i as f64 * 1.5)
            .arg(format!("m{i}"))
            .ignore();
        p.cmd("RPUSH")
            .arg("list:big")
            .arg(format!("item {i} {}", "x".repeat(40)))
            .ignore();
    }
    p.cmd("RPUSH")
        .arg("list:small")
        .arg("a")
        .arg("b")
        .arg("c")
        .ignore();
    p.cmd("SADD")
        .arg("set:ints")
        .arg(1)
        .arg(2)
        .arg(3)
        .arg(100000)
        .ignore();
    p.cmd("SADD").arg("set:small").arg("x").arg("y").ignore();
    p.cmd("ZADD")
        .arg("zset:small")
        .arg(1)
        .arg("one")
        .arg(2.5)
        .arg("two and a half")
        .ignore();
    p.cmd("ZADD").arg("zset:ttl").arg(1).arg("a").ignore();
    p.cmd("PEXPIRE").arg("zset:ttl").arg(7_200_000).ignore();
    p.cmd("HSET").arg("hash:ttl").arg("f").arg("v").ignore();
    p.cmd("EXPIRE").arg("hash:ttl").arg(1800).ignore();
    for i in 0..5 {
        p.cmd("XADD")
            .arg("stream:events")
            .arg("*")
            .arg("n")
            .arg(i)
            .arg("kind")
            .arg("test")
            .ignore();
    }
    p.cmd("XGROUP")
        .arg("CREATE")
        .arg("stream:events")
        .arg("workers")
        .arg("0")
        .ignore();
    p.cmd("XREADGROUP")
        .arg("GROUP")
        .arg("workers")
        .arg("alice")
        .arg("COUNT")
        .arg(2)
        .arg("STREAMS")
        .arg("stream:events")
        .arg(">")
        .ignore();
    p.cmd("SELECT").arg(1).ignore();
    p.cmd("SET")
        .arg("db1:session")
        .arg("s1")
        .arg("EX")
        .arg(900)
        .ignore();
    p.cmd("SET").arg("db1:flag").arg("on").ignore();
    p.cmd("SELECT").arg(5).ignore();
    for i in 0..20 {
        p.cmd("SET").arg(format!("db5:k{i}")).arg(i).ignore();
    }
    p.cmd("EXPIRE").arg("db5:k0").arg(600).ignore();
    p.query::<()>(&mut con).unwrap();
    r.dbsize_total()
}

/// `count` string keys of `size` bytes in database 0, loaded in pipelines.
pub fn load_many(r: &DataRedis, count: u64, size: usize) {
    let mut con = r.con();
    let value = "v".repeat(size);
    let mut i = 0;
    while i < count {
        let mut p = redis::pipe();
        for k in i..(i + 10_000).min(count) {
            p.cmd("SET").arg(format!("key:{k}")).arg(&value).ignore();
        }
        p.query::<()>(&mut con).unwrap();
        i += 10_000;
    }
}

/// A key's type, value (read with the type's commands, order-normalized) and absolute
/// expiry in server milliseconds.
pub type KeyState = (String, Vec<Vec<u8>>, Option<i64>);

/// Everything in a server, logically: (db, key) -> state.
pub fn snapshot(r: &DataRedis) -> BTreeMap<(u32, Vec<u8>), KeyState> {
    let mut con = r.con();
    let mut out = BTreeMap::new();
    for db in 0..16 {
        select(&mut con, db);
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
        for key in keys {
            let t: String = redis::cmd("TYPE").arg(&key).query(&mut con).unwrap();
            let value: Vec<Vec<u8>> = match t.as_str() {
                "string" => vec![redis::cmd("GET").arg(&key).query(&mut con).unwrap()],
                "list" => redis::cmd("LRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query(&mut con)
                    .unwrap(),
                "set" => {
                    let mut v: Vec<Vec<u8>> =
                        redis::cmd("SMEMBERS").arg(&key).query(&mut con).unwrap();
                    v.sort();
                    v
                }
                "zset" => redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query(&mut con)
                    .unwrap(),
                "hash" => {
                    let mut v: Vec<(Vec<u8>, Vec<u8>)> =
                        redis::cmd("HGETALL").arg(&key).query(&mut con).unwrap();
                    v.sort();
                    v.into_iter().flat_map(|(a, b)| [a, b]).collect()
                }
                "stream" => {
                    let entries: redis::Value = redis::cmd("XRANGE")
                        .arg(&key)
                        .arg("-")
                        .arg("+")
                        .query(&mut con)
                        .unwrap();
                    let groups: redis::Value = redis::cmd("XINFO")
                        .arg("GROUPS")
                        .arg(&key)
                        .query(&mut con)
                        .unwrap();
                    vec![
                        format!("{entries:?}").into_bytes(),
                        format!("{groups:?}").into_bytes(),
                    ]
                }
                other => panic!("unexpected type {other}"),
            };
            let (pttl, (secs, micros)): (i64, (i64, i64)) = redis::pipe()
                .cmd("PTTL")
                .arg(&key)
                .cmd("TIME")
                .query(&mut con)
                .unwrap();
            let expire = (pttl >= 0).then(|| secs * 1000 + micros / 1000 + pttl);
            out.insert((db, key), (t, value, expire));
        }
    }
    out
}

/// Two snapshots hold the same keys, types and values, and TTLs within a second.
#[track_caller]
pub fn assert_same_data(
    source: &BTreeMap<(u32, Vec<u8>), KeyState>,
    restored: &BTreeMap<(u32, Vec<u8>), KeyState>,
) {
    let names = |m: &BTreeMap<(u32, Vec<u8>), KeyState>| {
        m.keys()
            .map(|(db, k)| format!("db{db}:{}", String::from_utf8_lossy(k)))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(source), names(restored), "the key sets differ");
    for (k, (t, v, e)) in source {
        let (t2, v2, e2) = &restored[k];
        let name = format!("db{}:{}", k.0, String::from_utf8_lossy(&k.1));
        assert_eq!(t, t2, "{name}: type");
        assert_eq!(v, v2, "{name}: value");
        match (e, e2) {
            (None, None) => {}
            (Some(a), Some(b)) => assert!((a - b).abs() <= 1000, "{name}: expiry {a} vs {b}"),
            _ => panic!("{name}: TTL {e:?} vs {e2:?}"),
        }
    }
}
