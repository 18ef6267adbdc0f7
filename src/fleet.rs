//! Fleet scheduling: how an operation over many targets shares one run. At most
//! `parallel` targets run at once; one operation per database at a time, even when two
//! targets name the same database; and every connection to a PostgreSQL server first
//! takes one of that server's slots ([`ServerSlots`]), so a fleet never takes the
//! connections the application needs. `dr backup` schedules its targets here, `dr drill`
//! holds its fresh backup here ([`Fleet::hold_for_backup`]), and `dr check` bounds its
//! connections with the same slots ([`server_slots`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use futures::StreamExt;

use crate::config::Config;
use crate::pg::slots::{ServerSlots, SlotPermit};
use crate::pg::ConnTarget;

/// The connection slots of every server this run talks to, sized by `[connections]`.
pub fn server_slots(config: &Config) -> Arc<ServerSlots> {
    ServerSlots::new(config.connections.max_per_server())
}

/// One run over a fleet: its parallelism, its database locks and its server slots.
pub struct Fleet {
    slots: Arc<ServerSlots>,
    databases: DatabaseLocks,
    parallel: usize,
}

impl Fleet {
    pub fn new(config: &Config, parallel: usize) -> Fleet {
        Fleet {
            slots: server_slots(config),
            databases: DatabaseLocks::default(),
            parallel,
        }
    }

    /// Waits until no other work of this run holds `database` (`server/database`, or
    /// `redis NAME`); held until the guard is dropped.
    pub async fn lock(&self, database: String) -> tokio::sync::OwnedMutexGuard<()> {
        self.databases.lock(database).await
    }

    /// Waits for `n` connection slots of `conn`'s server.
    pub async fn acquire(&self, conn: &ConnTarget, n: usize) -> Result<SlotPermit> {
        self.slots.acquire(conn, n).await
    }

    /// What one backup of `conn`'s database holds while it runs: the database (no second
    /// operation of this run on it) and its server's slots (a dump two, a base backup one
    /// besides its replication connection), given back once the server let go of them.
    pub async fn hold_for_backup(&self, conn: &ConnTarget, physical: bool) -> Result<BackupHold> {
        let database = self
            .lock(format!("{}/{}", conn.server(), conn.database))
            .await;
        let needed = if physical { 1 } else { DUMP_CONNECTIONS };
        let mut slots = self.acquire(conn, needed).await?;
        slots.release_after_database(&conn.database);
        Ok(BackupHold {
            _slots: slots,
            _database: database,
        })
    }

    /// Runs `work` for every item, `parallel` at once; the results in the items' order.
    pub async fn run<T, R, Fut>(&self, items: Vec<T>, work: impl Fn(T) -> Fut) -> Vec<R>
    where
        Fut: Future<Output = R>,
    {
        let mut done: Vec<(usize, R)> =
            futures::stream::iter(items.into_iter().enumerate().map(|(i, item)| {
                let running = work(item);
                async move { (i, running.await) }
            }))
            .buffer_unordered(self.parallel)
            .collect()
            .await;
        done.sort_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, result)| result).collect()
    }
}

/// Connections one pg_dump backup holds at once: the session with the lock and the
/// snapshot, and pg_dump's (pg_dumpall's, with include_globals, comes after it).
pub const DUMP_CONNECTIONS: usize = 2;

/// A backup's hold on its database and its server's slots; dropped when it ends.
pub struct BackupHold {
    // Dropped first: the slots go back before another backup of the database may start.
    _slots: SlotPermit,
    _database: tokio::sync::OwnedMutexGuard<()>,
}

/// One backup per database at a time, even when two targets name the same database.
#[derive(Default)]
struct DatabaseLocks {
    held: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl DatabaseLocks {
    // Nothing panics while the map is locked, so the lock cannot be poisoned.
    #[allow(clippy::expect_used)]
    async fn lock(&self, database: String) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .held
            .lock()
            .expect("database locks")
            .entry(database)
            .or_default()
            .clone();
        lock.lock_owned().await
    }
}
