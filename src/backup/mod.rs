//! The dump pipeline: `pg_dump` child → compression → SHA-256 → storage, in one pass and
//! bounded memory, with row counts taken in the same exported snapshot. The manifest is
//! written only after every object is stored and every child exited successfully.

pub mod catalog;
pub mod incremental;
pub mod integrity;
pub mod manifest;
pub mod physical;
pub mod pins;
pub mod pitr_window;
pub mod redis;
pub mod retention;
pub mod standby;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use chrono::Utc;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use crate::config::{BackupConfig, Config, PostgresTarget};
use crate::encryption::Recipients;
use crate::pg::{self, tools, ConnTarget};
use crate::process::ChildCommand;
use crate::storage::{self, ByteStream, Storage};
use manifest::{
    BackupKind, BackupManifest, BackupMethod, ObjectRole, StoredObject, TableCount,
    DUMP_FORMAT_VERSION,
};

/// Advisory lock key (classid, objid) held for the whole backup of a database. Advisory
/// locks live on the server, so they exclude a second `dr backup` on any host, and the
/// server releases them when the holder's connection dies.
pub const LOCK_KEY: (i32, i32) = (0x6472, 1);

/// What to back up and how.
pub struct BackupPlan<'a> {
    pub target_name: &'a str,
    pub conn: ConnTarget,
    pub kind: BackupKind,
    pub settings: &'a BackupConfig,
    /// Set when `[encryption]` is: every stored object is encrypted to them.
    pub recipients: Option<Recipients>,
    pub pg_bin_dir: Option<&'a Path>,
    pub show_progress: bool,
    /// This configuration's archive_command, for hints.
    pub archive_command: String,
    /// Physical only: an incremental base backup against the newest one of the cluster.
    pub incremental: bool,
    /// Opens an encrypted parent's `backup_manifest` for an incremental backup.
    pub identities: Option<std::sync::Arc<crate::encryption::Identities>>,
    /// `backup_from = "standby"`: the standby a physical base backup streams from.
    pub standby: Option<ConnTarget>,
}

impl<'a> BackupPlan<'a> {
    /// A backup of `conn` filed under `target`, with the configured settings (and
    /// encryption, when configured).
    pub fn new(
        target: &'a PostgresTarget,
        conn: ConnTarget,
        kind: BackupKind,
        config: &'a Config,
        show_progress: bool,
    ) -> Result<Self> {
        Ok(BackupPlan {
            target_name: &target.name,
            conn,
            kind,
            settings: &config.backup,
            recipients: crate::encryption::configured_recipients(config)?,
            pg_bin_dir: target.pg_bin_dir.as_deref(),
            show_progress,
            archive_command: config.archive_command(),
            incremental: false,
            identities: None,
            standby: None,
        })
    }
}

/// The pg_dump command line: no password, ever (it comes from the passfile).
pub fn pg_dump_args(public_url: &str, snapshot: &str) -> Vec<String> {
    vec![
        "--format=custom".into(),
        // dr compresses (multithreaded zstd); pg_dump's own compression would be slower.
        "--compress=0".into(),
        format!("--snapshot={snapshot}"),
        "--no-password".into(),
        format!("--dbname={public_url}"),
    ]
}

pub fn pg_dumpall_args(public_url: &str, superuser: bool) -> Vec<String> {
    let mut args = vec![
        "--globals-only".into(),
        "--no-password".into(),
        format!("--dbname={public_url}"),
    ];
    if !superuser {
        // pg_authid is superuser-only; without it role passwords cannot be read.
        args.push("--no-role-passwords".into());
    }
    args
}

/// Takes one backup. On any failure nothing is left that looks like a backup: the objects
/// written so far are removed and no manifest exists.
pub async fn run(storage: &dyn Storage, plan: BackupPlan<'_>) -> Result<BackupManifest> {
    let conn = &plan.conn;
    let pg_dump = tools::find("pg_dump", plan.pg_bin_dir)?;
    let (dump_major, pg_dump_version) = tools::version(&pg_dump).await?;

    // One session holds the backup lock and the exported snapshot: a backup costs the
    // server two connections (this one and pg_dump's), which matters on a fleet.
    let snap_client = conn.connect().await?;
    acquire_lock(&snap_client, plan.target_name, &conn.database).await?;

    let (server_major, server_version) = pg::server_version(&snap_client).await?;
    if dump_major < server_major {
        bail!(
            "pg_dump {pg_dump_version} ({}) is older than the server (PostgreSQL {server_version}) and cannot dump it; hint: install {} and set pg_bin_dir",
            pg_dump.display(),
            tools::client_package(server_major)
        );
    }
    snap_client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(|e| {
            anyhow!(
                "cannot open the snapshot transaction: {}",
                pg::describe_pg_error(&e)
            )
        })?;
    let snapshot: String = snap_client
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(|e| anyhow!("cannot export a snapshot: {}", pg::describe_pg_error(&e)))?
        .get(0);
    let catalog_info = read_catalog(&snap_client).await?;

    let created_at = Utc::now();
    let id = unique_id(storage, plan.target_name, plan.kind).await?;
    let started = Instant::now();
    tracing::info!(target = plan.target_name, id = %id, snapshot = %snapshot, "backup started");

    let settings = plan.settings;
    let pipeline = PipelineSettings::new(settings, plan.recipients.clone());
    let dump_file = format!("dump.pgdump{}", pipeline.extension());
    let dump_key = catalog::backup_dir(plan.target_name, &id) + "/" + &dump_file;
    let mut stored = StoredSoFar::new(storage, dump_key.clone());

    let result: Result<BackupManifest> = async {
        let auth = conn.child_env()?;
        let cmd = ChildCommand::new(&pg_dump, "pg_dump")
            .args(pg_dump_args(&conn.public_url, &snapshot))
            .envs(auth.env());
        let progress = progress_bar(plan.show_progress, plan.target_name);
        let dump = stream_child(storage, &dump_key, cmd, &pipeline, progress.clone(), None);
        let counts = count_rows(&snap_client, &catalog_info.tables);
        let (dump, counts) = tokio::join!(dump, counts);
        if let Some(p) = &progress {
            p.finish_and_clear();
        }
        // A failed count aborts the snapshot transaction, and pg_dump then fails to import the
        // snapshot: the count's error is the cause, so it comes first.
        let (dump, tables) = match (dump, counts) {
            (Ok(d), Ok(t)) => (d, t),
            (Err(d), Err(c)) => bail!("{c:#}; as a consequence {d:#}"),
            (Err(d), Ok(_)) => return Err(d),
            (Ok(_), Err(c)) => return Err(c),
        };
        let mut objects = vec![StoredObject {
            role: ObjectRole::Dump,
            file: dump_file.clone(),
            ..dump
        }];
        snap_client.batch_execute("COMMIT").await.ok();

        if settings.include_globals {
            let dumpall = tools::find("pg_dumpall", plan.pg_bin_dir)?;
            let globals_file = format!("globals.sql{}", pipeline.extension());
            let globals_key = catalog::backup_dir(plan.target_name, &id) + "/" + &globals_file;
            stored.keys.push(globals_key.clone());
            let cmd = ChildCommand::new(dumpall, "pg_dumpall")
                .args(pg_dumpall_args(&conn.public_url, catalog_info.superuser))
                .envs(auth.env());
            let globals = stream_child(storage, &globals_key, cmd, &pipeline, None, None).await?;
            objects.push(StoredObject {
                role: ObjectRole::Globals,
                file: globals_file,
                ..globals
            });
        }
        let finished_at = Utc::now();
        let manifest = BackupManifest {
            format_version: DUMP_FORMAT_VERSION,
            id: id.clone(),
            target: plan.target_name.to_string(),
            kind: plan.kind,
            engine: manifest::Engine::Postgres,
            method: BackupMethod::Dump,
            database: conn.database.clone(),
            source: conn.public_url.clone(),
            created_at,
            finished_at,
            duration_ms: started.elapsed().as_millis() as u64,
            server_version: server_version.clone(),
            server_major,
            pg_dump_version: pg_dump_version.clone(),
            dr_version: env!("CARGO_PKG_VERSION").to_string(),
            format: "custom".into(),
            compression: settings.compression,
            compression_level: crate::codec::level(settings),
            encryption: plan.recipients.as_ref().map(|_| "age".to_string()),
            recipients: plan
                .recipients
                .as_ref()
                .map(|r| r.public_keys())
                .unwrap_or_default(),
            size_bytes: objects.iter().map(|o| o.size_bytes).sum(),
            sha256: objects[0].sha256.clone(),
            objects,
            snapshot: snapshot.clone(),
            schemas: catalog_info.schemas.clone(),
            extensions: catalog_info.extensions.clone(),
            tables,
            redis: None,
            database_owner: Some(catalog_info.database_owner.clone()),
            globals_role_passwords: settings.include_globals.then_some(catalog_info.superuser),
            physical: None,
        };
        let json = serde_json::to_vec_pretty(&manifest)?;
        // The commit point: before this line there is no backup, after it there is one.
        storage::put_bytes(storage, &catalog::manifest_key(plan.target_name, &id), json)
            .await
            .context("cannot write the manifest")?;
        // The bytes were hashed as they went in: that is the first full check.
        integrity::record_after_backup(storage, &manifest).await;
        Ok(manifest)
    }
    .await;

    match &result {
        Ok(_) => stored.committed(),
        Err(_) => stored.remove().await,
    }
    // The lock goes with the session, once the failed backup's objects are removed.
    drop(snap_client);
    result
}

/// The objects a backup has started to store, removed unless its manifest was written:
/// after an error, and when the backup's future is dropped midway (Ctrl-C, SIGTERM), so
/// that neither an object nor (in local storage) its directory outlives a backup that
/// does not exist.
pub(crate) struct StoredSoFar<'a> {
    storage: &'a dyn Storage,
    pub keys: Vec<String>,
}

impl<'a> StoredSoFar<'a> {
    pub fn new(storage: &'a dyn Storage, first: String) -> Self {
        StoredSoFar {
            storage,
            keys: vec![first],
        }
    }

    /// The manifest is written: the objects belong to a backup now.
    pub fn committed(&mut self) {
        self.keys.clear();
    }

    /// Removes every object (deleting a key never written is no error).
    pub async fn remove(&mut self) {
        remove_keys(self.storage, std::mem::take(&mut self.keys)).await;
    }
}

async fn remove_keys(storage: &dyn Storage, keys: Vec<String>) {
    for key in keys {
        if let Err(e) = storage.delete(&key).await {
            tracing::warn!(
                "cannot remove {key} after a failed backup ({e:#}); `dr prune` will sweep it"
            );
        }
    }
}

impl Drop for StoredSoFar<'_> {
    fn drop(&mut self) {
        let keys = std::mem::take(&mut self.keys);
        if keys.is_empty() {
            return;
        }
        // Interrupted: this runs while the command's future is dropped, so it cannot
        // await. A helper thread removes the objects and this one waits for it: on the
        // multi-threaded runtime through its handle (its workers still drive the I/O),
        // else on a runtime of its own.
        let storage = self.storage;
        let handle = tokio::runtime::Handle::try_current().ok();
        std::thread::scope(|scope| {
            scope.spawn(move || match handle {
                Some(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                    h.block_on(remove_keys(storage, keys))
                }
                _ => {
                    if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        rt.block_on(remove_keys(storage, keys));
                    }
                }
            });
        });
    }
}

/// The `application_name` of the session holding the backup lock: `dr/<target>`, so a
/// refused backup can name the target that holds it (two targets may share a database).
pub(crate) const LOCK_HOLDER_PREFIX: &str = "dr/";

pub(crate) async fn acquire_lock(client: &Client, target: &str, database: &str) -> Result<()> {
    // Named before the lock is tried: whoever is refused reads the holder's target here.
    client
        .query_one(
            "SELECT set_config('application_name', $1, false)",
            &[&format!("{LOCK_HOLDER_PREFIX}{target}")],
        )
        .await
        .map_err(|e| {
            anyhow!(
                "cannot name the backup session: {}",
                pg::describe_pg_error(&e)
            )
        })?;
    let got: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock($1, $2)",
            &[&LOCK_KEY.0, &LOCK_KEY.1],
        )
        .await
        .map_err(|e| anyhow!("cannot take the backup lock: {}", pg::describe_pg_error(&e)))?
        .get(0);
    if got {
        return Ok(());
    }
    let holder: Option<(String, Option<String>)> = client
        .query_opt(
            "SELECT format('pid %s from %s', l.pid, coalesce(a.client_addr::text, 'local socket')), a.application_name FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.classid = $1::int::oid AND l.objid = $2::int::oid AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[&LOCK_KEY.0, &LOCK_KEY.1],
        )
        .await
        .ok()
        .flatten()
        .map(|r| (r.get(0), r.get(1)));
    let (session, application) = holder.unwrap_or_else(|| ("another session".into(), None));
    bail!(
        "{} is running: the backup lock (PostgreSQL advisory lock {}/{} on database {database}) is held by {session}, so this backup of target {target} cannot start; hint: wait for it to finish; the lock is released automatically when that backup ends or its connection dies",
        lock_holder(application.as_deref()),
        LOCK_KEY.0,
        LOCK_KEY.1,
    )
}

/// Who holds the backup lock, from its session's `application_name`.
fn lock_holder(application_name: Option<&str>) -> String {
    match application_name.and_then(|a| a.strip_prefix(LOCK_HOLDER_PREFIX)) {
        Some(holder) if !holder.is_empty() => format!("another dr backup of target {holder}"),
        _ => "another dr backup (of a target not named by its session)".into(),
    }
}

pub(crate) async fn unique_id(
    storage: &dyn Storage,
    target: &str,
    kind: BackupKind,
) -> Result<String> {
    loop {
        let id = manifest::backup_id(target, Utc::now(), kind);
        if storage
            .list(&format!("{}/", catalog::backup_dir(target, &id)))
            .await?
            .is_empty()
        {
            return Ok(id);
        }
        // Ids have one-second resolution and must be unique: wait for the next second.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

struct CatalogInfo {
    schemas: Vec<String>,
    extensions: Vec<String>,
    tables: Vec<(String, String)>,
    superuser: bool,
    database_owner: String,
}

async fn read_catalog(client: &Client) -> Result<CatalogInfo> {
    let schemas = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT IN ('pg_catalog','information_schema') AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp%' ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let extensions = client
        .query("SELECT extname FROM pg_extension ORDER BY 1", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Ordinary tables and leaf partitions whose data pg_dump dumps (not extension members).
    let tables = client
        .query(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r' AND c.relpersistence <> 't'
               AND n.nspname NOT IN ('pg_catalog','information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
             ORDER BY 1, 2",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let superuser: bool = client
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?
        .get(0);
    let database_owner: String = client
        .query_one(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()",
            &[],
        )
        .await?
        .get(0);
    Ok(CatalogInfo {
        schemas,
        extensions,
        tables,
        superuser,
        database_owner,
    })
}

async fn count_rows(client: &Client, tables: &[(String, String)]) -> Result<Vec<TableCount>> {
    let mut out = Vec::with_capacity(tables.len());
    for (schema, name) in tables {
        let sql = format!(
            "SELECT count(*) FROM {}.{}",
            pg::quote_ident(schema),
            pg::quote_ident(name)
        );
        let rows: i64 = client
            .query_one(&sql, &[])
            .await
            .map_err(|e| {
                anyhow!(
                    "cannot count rows of {schema}.{name}: {}",
                    pg::describe_pg_error(&e)
                )
            })?
            .get(0);
        out.push(TableCount {
            schema: schema.clone(),
            name: name.clone(),
            rows,
        });
    }
    Ok(out)
}

pub(crate) fn progress_bar(show: bool, target: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !show || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    // A constant template, drawn by every test that shows progress.
    #[allow(clippy::expect_used)]
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {prefix}: {bytes} dumped, {bytes_per_sec}, {elapsed}",
        )
        .expect("valid template"),
    );
    bar.set_prefix(target.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    Some(bar)
}

/// Runs a dump child and streams its stdout, compressed and hashed, into `key`. The object
/// becomes visible only if the child exits 0; otherwise the error carries its stderr.
/// `tap` sees the raw stream on its way (physical backups read their tar headers).
pub(crate) async fn stream_child(
    storage: &dyn Storage,
    key: &str,
    cmd: ChildCommand,
    settings: &PipelineSettings,
    progress: Option<indicatif::ProgressBar>,
    mut tap: Option<crate::codec::RawTap>,
) -> Result<StoredObject> {
    let program = cmd.what().to_string();
    let child_name = program.clone();
    let mut child = cmd.spawn(Stdio::null(), Stdio::piped())?;
    let stdout: std::fs::File = child
        .child
        .stdout
        .take()
        .context("the dump's stdout was not captured")?
        .into_owned_fd()?
        .into();

    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(8);
    let settings = settings.clone();
    let producer_tx = tx.clone();
    let producer = tokio::task::spawn_blocking(move || {
        let result = crate::codec::compress_into(
            stdout,
            producer_tx.clone(),
            &settings,
            progress,
            tap.as_mut()
                .map(|t| t.as_mut() as crate::codec::RawTapRef<'_>),
        );
        if let Err(e) = &result {
            // An error must reach the storage writer so it discards the object.
            let _ = producer_tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
        result
    });
    let data: ByteStream = Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let put = storage.put(key, data);
    let finish = async move {
        let produced = producer
            .await
            .map_err(|e| anyhow!("compression thread failed: {e}"));
        let finished = child.finish().await;
        let failure = match (&finished, &produced) {
            (Err(e), _) => Some(format!("{e:#}")),
            (Ok(_), Ok(Err(e))) => Some(format!("{e:#}")),
            (Ok(_), Err(e)) => Some(format!("{e:#}")),
            (Ok(_), Ok(Ok(_))) => None,
        };
        if let Some(message) = failure {
            let _ = tx.send(Err(std::io::Error::other(message.clone()))).await;
            bail!("{message}");
        }
        if let Ok(said) = &finished {
            let said = said.trim();
            if said.lines().all(|l| l.trim_start().starts_with("NOTICE:")) {
                // pg_basebackup's "all required WAL segments have been archived".
                if !said.is_empty() {
                    tracing::info!("{} said: {}", child_name, said);
                }
            } else {
                tracing::warn!("{} said: {}", child_name, said);
            }
        }
        drop(tx);
        produced?
    };
    let (put_result, finish_result) = tokio::join!(put, finish);
    match (put_result, finish_result) {
        (Ok(size), Ok(encoded)) => {
            debug_assert_eq!(size, encoded.size_bytes);
            // The caller names the object.
            Ok(StoredObject::from_encoded(
                ObjectRole::Dump,
                String::new(),
                encoded,
            ))
        }
        (Ok(_), Err(child_err)) => Err(child_err),
        // The child's failure travels into the writer, so the writer reports it too: then the
        // child is the cause. Otherwise storage failed first and the child only died of the
        // closed pipe (SIGPIPE): the storage error is the cause.
        (Err(put_err), Err(child_err))
            if format!("{put_err:#}").contains(&format!("{child_err:#}")) =>
        {
            Err(child_err)
        }
        (Err(put_err), child) => {
            let mut err = put_err.context(format!("cannot store {key} in {}", storage.describe()));
            if child.is_err() {
                err = err.context(format!("{program} was stopped because storage failed"));
            }
            Err(err)
        }
    }
}

pub use crate::codec::PipelineSettings;

/// Where temporary files of this run live (staging, passfiles): `$TMPDIR` by default.
pub fn default_staging_dir() -> PathBuf {
    std::env::temp_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_dump_argv_has_no_password() {
        let args = pg_dump_args("postgres://u@h:5432/db", "00000003-0000001B-1");
        assert!(args.contains(&"--snapshot=00000003-0000001B-1".to_string()));
        assert!(args.contains(&"--format=custom".to_string()));
        assert!(args.contains(&"--no-password".to_string()));
        assert!(args.iter().all(|a| !a.contains("password=")));
    }

    #[test]
    fn the_lock_refusal_names_the_holders_target() {
        assert_eq!(
            lock_holder(Some("dr/orders")),
            "another dr backup of target orders"
        );
        assert!(lock_holder(Some("dr")).contains("not named"));
        assert!(lock_holder(None).contains("not named"));
    }

    #[test]
    fn dumpall_skips_role_passwords_without_superuser() {
        assert!(pg_dumpall_args("postgres://u@h/db", false)
            .contains(&"--no-role-passwords".to_string()));
        assert!(!pg_dumpall_args("postgres://u@h/db", true)
            .contains(&"--no-role-passwords".to_string()));
    }
}
