//! Connections to a PostgreSQL server as a shared, bounded resource. A fleet of targets
//! on one server must never take the connections the application needs: every
//! connection `dr` opens (its own and those of its `pg_dump` children) first takes a slot
//! of its server (`host:port`), and a server has at most `[connections] max_per_server`
//! slots, fewer when it has little room (half of what is free when `dr` first looks).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use anyhow::{anyhow, Result};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};
use tokio_postgres::Client;

use super::ConnTarget;

/// What `dr` learnt about a server's room when it first connected to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRoom {
    pub max_connections: i64,
    /// Slots kept for superusers and `pg_use_reserved_connections`.
    pub reserved: i64,
    pub in_use: i64,
}

impl ServerRoom {
    /// The slots `dr` may use: the configured limit, but never more than half of what is
    /// free, so the application always keeps the larger part; at least one.
    pub fn slots(&self, configured: usize) -> usize {
        let free = (self.max_connections - self.reserved - self.in_use).max(0) as usize;
        configured.min(free / 2).max(1)
    }
}

const ROOM_SQL: &str = "
SELECT current_setting('max_connections')::int8,
       current_setting('superuser_reserved_connections')::int8
         + coalesce(current_setting('reserved_connections', true)::int8, 0),
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int8";

struct ServerGate {
    semaphore: Arc<Semaphore>,
    /// Set once the server was asked for its room (or could not be asked): the slots for
    /// work, and the connection that asked, kept to watch the server.
    sized: OnceCell<(usize, Option<Client>)>,
}

/// dr's own connections as the server sees them (the watching one left out). A backend
/// whose client has closed stays listed (and keeps its slot of `max_connections`) until
/// its process is gone, a few milliseconds later.
const OURS_SQL: &str = "
SELECT count(*)::int8 FROM pg_stat_activity
 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
   AND usename = current_user
   AND (application_name IN ('dr', 'pg_dump', 'pg_dumpall') OR application_name LIKE 'dr/%')";

/// How often dr looks again while closed connections are still leaving.
const LEAVING_POLL: std::time::Duration = std::time::Duration::from_millis(2);
/// How long the first caller waits for dr's earlier connections (fleet discovery) to
/// leave before slots are handed out: longer, the server is slow to tidy up, and the
/// slots still bound what dr opens.
const LEAVING_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// The slots of every server `dr` talks to in this run.
pub struct ServerSlots {
    configured: usize,
    servers: Mutex<HashMap<String, Arc<ServerGate>>>,
}

/// Slots held; given back on drop, but only once the server has let go of the
/// connections made under them (see [`Leaving`]).
pub struct SlotPermit {
    permit: Option<OwnedSemaphorePermit>,
    gate: Arc<ServerGate>,
    leaving: Leaving,
}

/// What the server must no longer show before the slots of a dropped permit go back. A
/// closed connection's backend stays in `pg_stat_activity` (and in `max_connections`)
/// until its process exits; a slot handed on before then lets `dr` hold one connection
/// more than its bound. Checking this once per waiter when taking a slot is not enough:
/// two waiters could each see room for one and both go ahead.
enum Leaving {
    /// Nothing known: the slots go back at once.
    Nothing,
    /// The backend of one connection (`pg_backend_pid()`).
    Backend(i32),
    /// Every connection of dr's (its own and `pg_dump`'s) to one database.
    Database(String),
}

/// How long a dropped permit waits for the server to let go of its connections; longer
/// means the server is stuck, and holding slots forever would stop dr.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

const BACKEND_GONE_SQL: &str = "SELECT count(*)::int8 FROM pg_stat_activity WHERE pid = $1";

const DATABASE_LEFT_SQL: &str = "
SELECT count(*)::int8 FROM pg_stat_activity
 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
   AND usename = current_user AND datname = $1
   AND (application_name IN ('dr', 'pg_dump', 'pg_dumpall') OR application_name LIKE 'dr/%')";

impl SlotPermit {
    /// The slots go back once the backend with this pid has exited.
    pub fn release_after_backend(&mut self, pid: i32) {
        self.leaving = Leaving::Backend(pid);
    }

    /// The slots go back once no connection of dr's to `database` is left.
    pub fn release_after_database(&mut self, database: &str) {
        self.leaving = Leaving::Database(database.to_string());
    }
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let leaving = std::mem::replace(&mut self.leaving, Leaving::Nothing);
        if matches!(leaving, Leaving::Nothing) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let gate = self.gate.clone();
        runtime.spawn(async move {
            let Some((_, Some(watcher))) = gate.sized.get() else {
                return;
            };
            let started = std::time::Instant::now();
            while started.elapsed() < RELEASE_WAIT {
                let left = match &leaving {
                    Leaving::Nothing => break,
                    Leaving::Backend(pid) => watcher.query_one(BACKEND_GONE_SQL, &[pid]).await,
                    Leaving::Database(db) => watcher.query_one(DATABASE_LEFT_SQL, &[db]).await,
                };
                match left {
                    Ok(row) if row.get::<_, i64>(0) > 0 => tokio::time::sleep(LEAVING_POLL).await,
                    _ => break,
                }
            }
            tracing::debug!(
                waited_ms = started.elapsed().as_millis() as u64,
                "slot given back"
            );
            drop(permit);
        });
    }
}

impl ServerSlots {
    pub fn new(configured: usize) -> Arc<ServerSlots> {
        Arc::new(ServerSlots {
            configured: configured.max(1),
            servers: Mutex::new(HashMap::new()),
        })
    }

    // The map is locked only to look up or insert a gate: nothing panics while it is held.
    #[allow(clippy::expect_used)]
    fn gate(&self, server: &str) -> Arc<ServerGate> {
        let mut servers = self.servers.lock().expect("slots lock");
        servers
            .entry(server.to_string())
            .or_insert_with(|| {
                Arc::new(ServerGate {
                    semaphore: Arc::new(Semaphore::new(0)),
                    sized: OnceCell::new(),
                })
            })
            .clone()
    }

    /// Waits for `n` slots of `conn`'s server (fewer if the server has fewer in all, so a
    /// caller that needs several never waits forever). The first caller for a server asks
    /// it how much room it has, over one short connection.
    pub async fn acquire(&self, conn: &ConnTarget, n: usize) -> Result<SlotPermit> {
        let gate = self.gate(&conn.server());
        let (total, _watcher) = gate
            .sized
            .get_or_init(|| async {
                let (slots, watcher) = match room(conn).await {
                    Ok((room, client)) => {
                        let slots = room.slots(self.configured);
                        tracing::debug!(
                            server = %conn.server(),
                            max_connections = room.max_connections,
                            in_use = room.in_use,
                            slots,
                            "connection slots"
                        );
                        // The connection that asked stays to watch the server, and takes
                        // one of the slots; with a single slot it goes.
                        if slots > 1 {
                            // dr's connections from before the slots existed (the one that
                            // listed a fleet's databases) may still be leaving: no slot is
                            // handed out until they are gone.
                            wait_until_ours_left(&client).await;
                            (slots - 1, Some(client))
                        } else {
                            (1, None)
                        }
                    }
                    // The connection that follows reports why; until then, the configuration.
                    Err(_) => (self.configured, None),
                };
                gate.semaphore.add_permits(slots);
                (slots, watcher)
            })
            .await;
        let want = n.clamp(1, *total) as u32;
        // A slot comes back only once the server let go of the connection made under it
        // (see `SlotPermit`'s drop), so a permit is room on the server.
        let permit = gate
            .semaphore
            .clone()
            .acquire_many_owned(want)
            .await
            .map_err(|_| anyhow!("connection slots closed"))?;
        Ok(SlotPermit {
            permit: Some(permit),
            gate,
            leaving: Leaving::Nothing,
        })
    }

    /// The slots of a server, once `dr` has looked at it.
    #[cfg(test)]
    pub fn slots_of(&self, server: &str) -> Option<usize> {
        self.servers
            .lock()
            .expect("slots lock")
            .get(server)
            .and_then(|g| g.sized.get().map(|(slots, _)| *slots))
    }
}

/// Waits (at most [`LEAVING_WAIT`]) until the server shows none of dr's connections
/// besides `watcher`.
async fn wait_until_ours_left(watcher: &Client) {
    let started = std::time::Instant::now();
    while started.elapsed() < LEAVING_WAIT {
        match watcher.query_one(OURS_SQL, &[]).await {
            Ok(row) if row.get::<_, i64>(0) > 0 => tokio::time::sleep(LEAVING_POLL).await,
            _ => break,
        }
    }
}

async fn room(conn: &ConnTarget) -> Result<(ServerRoom, Client)> {
    let client = conn.connect().await?;
    let row = client.query_one(ROOM_SQL, &[]).await?;
    let room = ServerRoom {
        max_connections: row.get(0),
        reserved: row.get(1),
        in_use: row.get(2),
    };
    Ok((room, client))
}

/// One connection to one database, opened on first use and shared by every check of its
/// target; it closes (and gives its slot back) when the last check holding it is done.
pub struct SharedClient {
    conn: std::result::Result<ConnTarget, String>,
    slots: Arc<ServerSlots>,
    client: OnceCell<std::result::Result<(Client, SlotPermit), String>>,
}

impl SharedClient {
    /// The connection details, or why the URL cannot be used.
    pub fn conn(&self) -> Result<&ConnTarget> {
        self.conn.as_ref().map_err(|e| anyhow!("{e}"))
    }

    /// The connected client; every caller gets the same one, and the same error when
    /// connecting failed.
    pub async fn client(&self) -> Result<&Client> {
        let conn = self.conn()?;
        let held = self
            .client
            .get_or_init(|| async {
                let mut permit = self
                    .slots
                    .acquire(conn, 1)
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                let client = conn.connect().await.map_err(|e| format!("{e:#}"))?;
                if let Ok(row) = client.query_one("SELECT pg_backend_pid()", &[]).await {
                    permit.release_after_backend(row.get(0));
                }
                Ok((client, permit))
            })
            .await;
        match held {
            Ok((client, _)) => Ok(client),
            Err(e) => Err(anyhow!("{e}")),
        }
    }
}

/// Hands out [`SharedClient`]s by URL: callers asking for the same URL while an earlier
/// one is still held get the same client. Only weak references are kept here, so the
/// connection lives exactly as long as the work that holds it.
pub struct SharedClients {
    slots: Arc<ServerSlots>,
    clients: Mutex<HashMap<String, Weak<SharedClient>>>,
}

impl SharedClients {
    pub fn new(slots: Arc<ServerSlots>) -> SharedClients {
        SharedClients {
            slots,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The shared client of `url` (a URL that could not be resolved gives a client whose
    /// every use fails with that error).
    // The map is locked only to look up or insert a client: nothing panics while held.
    #[allow(clippy::expect_used)]
    pub fn get(&self, url: Result<String>) -> Arc<SharedClient> {
        let (key, conn) = match url {
            Ok(url) => {
                let conn = ConnTarget::parse(&url).map_err(|e| format!("{e:#}"));
                (Some(url), conn)
            }
            Err(e) => (None, Err(format!("{e:#}"))),
        };
        let make = |conn| {
            Arc::new(SharedClient {
                conn,
                slots: self.slots.clone(),
                client: OnceCell::new(),
            })
        };
        let Some(key) = key else {
            return make(conn);
        };
        let mut clients = self.clients.lock().expect("clients lock");
        if let Some(found) = clients.get(&key).and_then(Weak::upgrade) {
            return found;
        }
        let shared = make(conn);
        clients.insert(key, Arc::downgrade(&shared));
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_leave_the_larger_part_of_the_free_room_to_the_application() {
        let room = |max, reserved, in_use| ServerRoom {
            max_connections: max,
            reserved,
            in_use,
        };
        // A quiet default server: the configured limit holds.
        assert_eq!(room(100, 3, 1).slots(8), 8);
        // A busy one: half of what is free.
        assert_eq!(room(100, 3, 87).slots(8), 5);
        // A full one: still one, so dr can report what it finds.
        assert_eq!(room(100, 3, 97).slots(8), 1);
        assert_eq!(room(100, 3, 120).slots(8), 1);
    }

    #[test]
    fn one_url_one_client_while_held() {
        let clients = SharedClients::new(ServerSlots::new(4));
        let a = clients.get(Ok("postgres://u@127.0.0.1:1/a".into()));
        let b = clients.get(Ok("postgres://u@127.0.0.1:1/a".into()));
        let c = clients.get(Ok("postgres://u@127.0.0.1:1/c".into()));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        drop((a, b));
        // Nobody holds it any more: the next one is new (its connection was closed).
        let d = clients.get(Ok("postgres://u@127.0.0.1:1/a".into()));
        assert_eq!(Arc::strong_count(&d), 1);
    }

    #[tokio::test]
    async fn a_caller_needing_more_slots_than_exist_gets_all_of_them() {
        let slots = ServerSlots::new(2);
        // Nothing listens on port 1: the room is unknown and the configured 2 hold.
        let conn = ConnTarget::parse("postgres://u@127.0.0.1:1/a?connect_timeout=1").unwrap();
        let first = slots.acquire(&conn, 5).await.unwrap();
        assert_eq!(slots.slots_of("127.0.0.1:1"), Some(2));
        let second = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            slots.acquire(&conn, 1),
        )
        .await;
        assert!(second.is_err(), "both slots are held, the second must wait");
        drop(first);
        slots.acquire(&conn, 1).await.unwrap();
    }
}
