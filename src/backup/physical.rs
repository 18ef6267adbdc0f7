//! Physical base backups: `pg_basebackup` writes one tar to its stdout, which flows
//! through compression and hashing into storage (no local copy). A scanner reads the tar
//! headers on the way to pick up `backup_label` (start position, timeline) and the tail of
//! `backup_manifest` (end position). `--wal-method=none`: the WAL comes from the archive,
//! and the server only ends the backup once `archive_command` stored the last segment
//! and the backup history file, which `dr` then finds in its own archive: proof that the
//! backup can be restored from this storage. The manifest is written last.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use chrono::Utc;
use serde::Deserialize;

use super::manifest::{
    BackupKind, BackupManifest, BackupMethod, ObjectRole, PhysicalInfo, StoredObject, Tablespace,
    MANIFEST_FORMAT_VERSION,
};
use super::{catalog, incremental, progress_bar, standby, stream_child, BackupPlan};
use crate::codec;
use crate::config::BackupFrom;
use crate::pg::{self, tools};
use crate::process::ChildCommand;
use crate::storage::{self, Storage};
use crate::wal::{self, continuity, Lsn, WalName};

const TAR_BLOCK: usize = 512;
/// `backup_label` is a few hundred bytes; anything larger is not pg_basebackup's.
const LABEL_LIMIT: usize = 64 * 1024;
/// The WAL ranges sit at the very end of `backup_manifest`.
const MANIFEST_TAIL: usize = 256 * 1024;

/// The pg_basebackup command line: no password, ever (it comes from the passfile).
pub fn pg_basebackup_args(
    public_url: &str,
    label: &str,
    incremental_from: Option<&std::path::Path>,
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        // One tar on stdout; dr compresses (multithreaded zstd) while hashing.
        "--pgdata=-".into(),
        "--format=tar".into(),
        // The archive supplies the WAL; the server waits until it is archived.
        "--wal-method=none".into(),
        "--checkpoint=fast".into(),
        "--no-password".into(),
        format!("--label={label}"),
        format!("--dbname={public_url}"),
    ];
    if let Some(parent_manifest) = incremental_from {
        args.push(format!("--incremental={}", parent_manifest.display()));
    }
    args
}

/// Follows a tar stream block by block and keeps the two members a restore needs to know
/// about. Anything it cannot parse only disables what it reports, never the backup.
#[derive(Debug, Default)]
pub struct TarScanner {
    header: Vec<u8>,
    remaining: u64,
    padding: u64,
    capturing: Option<Member>,
    label: Vec<u8>,
    manifest_tail: Vec<u8>,
    pub members: u64,
    pub saw_label: bool,
    pub saw_manifest: bool,
    /// Where the whole `backup_manifest` member is copied (a local file: it can be large).
    manifest_spool: Option<std::fs::File>,
    finished: bool,
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    Label,
    Manifest,
}

fn octal(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        // GNU base-256 for sizes beyond 8 GiB.
        let mut v: u64 = u64::from(field[0] & 0x7F);
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(v);
    }
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

impl TarScanner {
    /// A scanner that also copies `backup_manifest` into `spool`.
    pub fn spooling_manifest_to(spool: std::fs::File) -> Self {
        TarScanner {
            manifest_spool: Some(spool),
            ..TarScanner::default()
        }
    }

    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.finished && self.problem.is_none() {
            if self.remaining > 0 {
                let n = (self.remaining as usize).min(data.len());
                self.capture(&data[..n]);
                self.remaining -= n as u64;
                data = &data[n..];
                continue;
            }
            if self.padding > 0 {
                let n = (self.padding as usize).min(data.len());
                self.padding -= n as u64;
                data = &data[n..];
                continue;
            }
            let n = (TAR_BLOCK - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.header.len() == TAR_BLOCK {
                self.start_member();
            }
        }
    }

    fn capture(&mut self, bytes: &[u8]) {
        match self.capturing {
            Some(Member::Label) => {
                if self.label.len() + bytes.len() > LABEL_LIMIT {
                    self.problem = Some("backup_label is implausibly large".into());
                } else {
                    self.label.extend_from_slice(bytes);
                }
            }
            Some(Member::Manifest) => {
                if let Some(spool) = &mut self.manifest_spool {
                    use std::io::Write;
                    if let Err(e) = spool.write_all(bytes) {
                        self.problem = Some(format!("cannot keep backup_manifest aside: {e}"));
                    }
                }
                self.manifest_tail.extend_from_slice(bytes);
                if self.manifest_tail.len() > 2 * MANIFEST_TAIL {
                    let cut = self.manifest_tail.len() - MANIFEST_TAIL;
                    self.manifest_tail.drain(..cut);
                }
            }
            None => {}
        }
    }

    fn start_member(&mut self) {
        let header = std::mem::take(&mut self.header);
        if header.iter().all(|b| *b == 0) {
            // The end-of-archive marker.
            self.finished = true;
            return;
        }
        let Some(size) = octal(&header[124..136]) else {
            self.problem = Some(format!(
                "tar member {} has no readable size",
                self.members + 1
            ));
            return;
        };
        let name_end = header[..100].iter().position(|b| *b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&header[..name_end]).into_owned();
        let ustar_prefix = if &header[257..262] == b"ustar" {
            let end = header[345..500].iter().position(|b| *b == 0).unwrap_or(155);
            String::from_utf8_lossy(&header[345..345 + end]).into_owned()
        } else {
            String::new()
        };
        let regular = matches!(header[156], b'0' | 0);
        self.members += 1;
        self.capturing = match (regular, ustar_prefix.is_empty(), name.as_str()) {
            (true, true, "backup_label") => {
                self.saw_label = true;
                Some(Member::Label)
            }
            (true, true, "backup_manifest") => {
                self.saw_manifest = true;
                Some(Member::Manifest)
            }
            _ => None,
        };
        self.remaining = size;
        self.padding = (TAR_BLOCK as u64 - size % TAR_BLOCK as u64) % TAR_BLOCK as u64;
    }

    pub fn label_text(&self) -> Option<String> {
        self.saw_label
            .then(|| String::from_utf8_lossy(&self.label).into_owned())
    }

    /// The WAL ranges at the end of `backup_manifest`.
    pub fn wal_ranges(&self) -> Option<Vec<WalRange>> {
        if !self.saw_manifest {
            return None;
        }
        parse_wal_ranges(&String::from_utf8_lossy(&self.manifest_tail))
    }
}

/// One entry of `WAL-Ranges` in `backup_manifest`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WalRange {
    #[serde(rename = "Timeline")]
    pub timeline: u32,
    #[serde(rename = "Start-LSN")]
    pub start_lsn: String,
    #[serde(rename = "End-LSN")]
    pub end_lsn: String,
}

pub fn parse_wal_ranges(manifest_tail: &str) -> Option<Vec<WalRange>> {
    let at = manifest_tail.rfind("\"WAL-Ranges\"")?;
    let rest = &manifest_tail[at..];
    let open = rest.find('[')?;
    let close = rest.find(']')?;
    serde_json::from_str(&rest[open..=close]).ok()
}

/// What `backup_label` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupLabel {
    pub start_lsn: Lsn,
    pub start_wal: String,
    pub checkpoint_lsn: Lsn,
    pub timeline: u32,
}

pub fn parse_backup_label(text: &str) -> Result<BackupLabel> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .ok_or_else(|| anyhow!("backup_label has no {key:?} line"))
    };
    let start = field("START WAL LOCATION:")?;
    let (lsn, file) = start
        .split_once(" (file ")
        .ok_or_else(|| anyhow!("backup_label: unreadable START WAL LOCATION {start:?}"))?;
    Ok(BackupLabel {
        start_lsn: Lsn::parse(lsn)?,
        start_wal: file.trim_end_matches(')').to_string(),
        checkpoint_lsn: Lsn::parse(field("CHECKPOINT LOCATION:")?)?,
        timeline: field("START TIMELINE:")?
            .parse()
            .context("backup_label: unreadable START TIMELINE")?,
    })
}

/// `STOP WAL LOCATION` of a backup history file.
pub fn parse_stop_location(history: &str) -> Result<(Lsn, String)> {
    let line = history
        .lines()
        .find_map(|l| l.strip_prefix("STOP WAL LOCATION:"))
        .ok_or_else(|| anyhow!("the backup history file has no STOP WAL LOCATION"))?;
    let (lsn, file) = line
        .trim()
        .split_once(" (file ")
        .ok_or_else(|| anyhow!("unreadable STOP WAL LOCATION {line:?}"))?;
    Ok((Lsn::parse(lsn)?, file.trim_end_matches(')').to_string()))
}

/// What the server says about the cluster before a base backup.
#[derive(Clone)]
struct ClusterFacts {
    system_id: u64,
    segment_size: u64,
    archive_mode: String,
    archive_command: Option<String>,
    archive_library: String,
    may_replicate: bool,
    in_recovery: bool,
    data_checksums: bool,
    tablespaces: Vec<Tablespace>,
    /// `summarize_wal` (None before PostgreSQL 17, which has no such setting).
    summarize_wal: Option<bool>,
    /// The timeline of the latest checkpoint: an incremental's parent must be on it.
    timeline: u32,
}

impl ClusterFacts {
    fn server_facts(&self) -> standby::ServerFacts {
        standby::ServerFacts {
            system_id: self.system_id,
            in_recovery: self.in_recovery,
            may_replicate: self.may_replicate,
            has_tablespaces: !self.tablespaces.is_empty(),
        }
    }
}

async fn read_facts(client: &tokio_postgres::Client) -> Result<ClusterFacts> {
    let q = |e: tokio_postgres::Error| anyhow!("{}", pg::describe_pg_error(&e));
    let row = client
        .query_one(
            "SELECT (SELECT system_identifier::text FROM pg_control_system()),
                    (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'),
                    current_setting('archive_mode'),
                    coalesce(current_setting('archive_library', true), ''),
                    (SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user),
                    pg_is_in_recovery(),
                    current_setting('data_checksums') = 'on',
                    current_setting('summarize_wal', true),
                    (SELECT timeline_id FROM pg_control_checkpoint())",
            &[],
        )
        .await
        .map_err(q)?;
    let system_id: String = row.get(0);
    // archive_command is hidden from roles without pg_read_all_settings.
    let archive_command = client
        .query_one("SELECT current_setting('archive_command')", &[])
        .await
        .ok()
        .map(|r| r.get(0));
    let tablespaces = client
        .query(
            "SELECT oid::int8, spcname::text, pg_tablespace_location(oid) FROM pg_tablespace
             WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY 1",
            &[],
        )
        .await
        .map_err(q)?
        .iter()
        .map(|r| Tablespace {
            oid: r.get::<_, i64>(0) as u32,
            name: r.get(1),
            location: r.get(2),
        })
        .collect();
    Ok(ClusterFacts {
        system_id: system_id.parse().context("unreadable system identifier")?,
        segment_size: row.get::<_, i64>(1) as u64,
        archive_mode: row.get(2),
        archive_library: row.get(3),
        archive_command,
        may_replicate: row.get::<_, Option<bool>>(4).unwrap_or(false),
        in_recovery: row.get(5),
        data_checksums: row.get(6),
        summarize_wal: row.get::<_, Option<String>>(7).map(|v| v == "on"),
        timeline: row.get::<_, i32>(8) as u32,
        tablespaces,
    })
}

/// Refuses a base backup that could not be restored from this storage.
fn check_preconditions(
    facts: &ClusterFacts,
    target: &str,
    user: &str,
    suggested: &str,
) -> Result<()> {
    if facts.in_recovery {
        bail!("target {target} is a standby (in recovery): its url must reach the primary, whose archive holds the WAL; hint: point url at the primary, and to stream the backup from this standby set backup_from = \"standby\" with standby_url");
    }
    if facts.archive_mode == "off" {
        bail!(
            "archive_mode is off on target {target}: a base backup without its archived WAL cannot be restored; hint: set archive_mode = on and archive_command = '{suggested}', restart PostgreSQL (see docs/src/wal.md)"
        );
    }
    if !facts.archive_library.is_empty() {
        bail!(
            "target {target} archives through archive_library = {:?}, not archive_command, so its WAL does not reach dr's storage; hint: set archive_library = '' and archive_command = '{suggested}'",
            facts.archive_library
        );
    }
    if let Some(cmd) = &facts.archive_command {
        if !cmd.contains("wal-push") {
            bail!(
                "archive_command on target {target} runs `{}`, not `dr wal-push`, so the WAL this backup needs would not be in dr's storage; hint: set archive_command = '{suggested}' and reload PostgreSQL",
                crate::wal::command_program(cmd)
            );
        }
    }
    if !facts.may_replicate {
        bail!(
            "role {user} may not stream a base backup (it has neither REPLICATION nor SUPERUSER); hint: ALTER ROLE {user} REPLICATION; and allow it in pg_hba.conf: host replication {user} <dr host>/32 scram-sha-256"
        );
    }
    if !facts.tablespaces.is_empty() {
        bail!(
            "target {target} has tablespaces outside the data directory ({}); pg_basebackup can stream only a cluster without them to one tar, and dr never stages a full local copy; hint: back this cluster up with pg_basebackup -Ft into a directory, or move the tablespaces into pg_default",
            facts
                .tablespaces
                .iter()
                .map(|t| format!("{} at {}", t.name, t.location))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// The end of a backup from the primary: the server waited until archive_command stored
/// the backup history file and the last segment, so both must be in this storage now, or
/// the WAL went elsewhere.
async fn end_from_history(
    storage: &dyn Storage,
    plan: &BackupPlan<'_>,
    prefix: &str,
    label: &BackupLabel,
    segment_size: u64,
    scanner: &TarScanner,
) -> Result<(Lsn, String, String)> {
    let history_name = format!(
        "{}.{:08X}.backup",
        label.start_wal,
        label.start_lsn.0 % segment_size
    );
    let history_wal = WalName::parse(&history_name).ok_or_else(|| {
        anyhow!(
            "backup_label names an unreadable start segment {}",
            label.start_wal
        )
    })?;
    let history = wal::fetch::find(storage, prefix, &history_wal).await?.ok_or_else(|| {
            anyhow!(
                "the server archived this backup's WAL, but {history_name} is not under {prefix} in {}: archive_command stores the WAL somewhere else (another dr.toml, target or storage), so this backup could not be restored; nothing was committed; hint: make archive_command call `dr --config <this dr.toml> wal-push %p` (with --target {} when several targets are configured)",
                storage.describe(),
                plan.target_name
            )
        })?;
    let history_text =
        String::from_utf8_lossy(&wal::read_small(storage, &history).await?).into_owned();
    let (stop_lsn, stop_wal) = parse_stop_location(&history_text)?;
    if let Some(ranges) = scanner.wal_ranges() {
        if let Some(last) = ranges.last() {
            if Lsn::parse(&last.end_lsn)? != stop_lsn {
                bail!(
                        "backup_manifest ends at {} but the backup history file at {stop_lsn}: they disagree; nothing was committed",
                        last.end_lsn
                    );
            }
        }
    }
    Ok((stop_lsn, stop_wal, history_name))
}

/// Takes one physical base backup. On any failure nothing is left that looks like a
/// backup: the tar is removed and no manifest exists.
pub async fn run(storage: &dyn Storage, plan: BackupPlan<'_>) -> Result<BackupManifest> {
    let conn = &plan.conn;
    let basebackup = tools::find("pg_basebackup", plan.pg_bin_dir)?;
    let (tool_major, tool_version) = tools::version(&basebackup).await?;
    let client = conn.connect().await?;
    super::acquire_lock(&client, plan.target_name, &conn.database).await?;
    let (server_major, server_version) = pg::server_version(&client).await?;
    if tool_major < server_major {
        bail!(
            "pg_basebackup {tool_version} ({}) is older than the server (PostgreSQL {server_version}) and cannot back it up; hint: install {} and set pg_bin_dir",
            basebackup.display(),
            tools::client_package(server_major)
        );
    }
    let facts = read_facts(&client).await?;
    check_preconditions(&facts, plan.target_name, &conn.user, &plan.archive_command)?;
    if plan.incremental && plan.standby.is_some() {
        return Err(crate::error::usage(format!(
            "target {} backs up from its standby, and incremental base backups are taken from the primary only; hint: run `dr backup --physical --incremental` with backup_from = \"primary\", or take a full `dr backup --physical` from the standby",
            plan.target_name
        )));
    }
    // With a standby, the base backup streams from it; the primary stays the one whose
    // archive and lock count.
    let source = plan.standby.as_ref().unwrap_or(conn);
    let server = standby::host_port(source);
    let _standby_client = match &plan.standby {
        Some(standby_conn) => {
            let sclient = standby_conn.connect().await?;
            let (standby_major, standby_version) = pg::server_version(&sclient).await?;
            if standby_major != server_major || tool_major < standby_major {
                bail!(
                    "the standby of target {} ({server}) runs PostgreSQL {standby_version}, the primary {server_version}, pg_basebackup is {tool_version}; hint: back up from the primary until they match",
                    plan.target_name
                );
            }
            let sfacts = read_facts(&sclient).await?;
            standby::check_standby(
                &facts.server_facts(),
                &sfacts.server_facts(),
                plan.target_name,
                &server,
                &standby_conn.user,
            )?;
            Some(sclient)
        }
        None => None,
    };
    let parent = if plan.incremental {
        incremental::require_support(
            plan.target_name,
            server_major,
            &server_version,
            facts.summarize_wal,
        )?;
        Some(
            incremental::choose_parent(storage, plan.target_name, facts.system_id, facts.timeline)
                .await?,
        )
    } else {
        None
    };
    // backup_manifest is kept aside here on its way to storage, and an incremental's
    // parent manifest is read by pg_basebackup from here; removed on every path.
    let scratch = tempfile::Builder::new()
        .prefix("dr-basebackup-")
        .tempdir()
        .context("cannot create a temporary directory for backup_manifest")?;
    let parent_manifest = scratch.path().join("parent_backup_manifest");
    if let Some(p) = &parent {
        incremental::fetch_backup_manifest(storage, p, plan.identities.as_ref(), &parent_manifest)
            .await?;
    }
    let spool_path = scratch.path().join("backup_manifest");

    let created_at = Utc::now();
    let id = super::unique_id(storage, plan.target_name, BackupKind::Regular).await?;
    let started = Instant::now();
    tracing::info!(target = plan.target_name, id = %id, "physical backup started");
    let settings = plan.settings;
    let pipeline = super::PipelineSettings::new(settings, plan.recipients.clone());
    let base_file = format!("base.tar{}", pipeline.extension());
    let base_key = catalog::backup_dir(plan.target_name, &id) + "/" + &base_file;
    // Removed unless the manifest is written, also when the backup is interrupted.
    let mut stored_so_far = super::StoredSoFar::new(storage, base_key.clone());

    let result: Result<BackupManifest> = async {
        let auth = source.child_env()?;
        let cmd = ChildCommand::new(&basebackup, "pg_basebackup")
            .args(pg_basebackup_args(
                &source.public_url,
                &format!("dr {id}"),
                parent.as_ref().map(|_| parent_manifest.as_path()),
            ))
            .envs(auth.env());
        let spool = std::fs::File::create(&spool_path)
            .with_context(|| format!("cannot create {}", spool_path.display()))?;
        let scanner = Arc::new(Mutex::new(TarScanner::spooling_manifest_to(spool)));
        let tap_scanner = scanner.clone();
        let tap: codec::RawTap = Box::new(move |bytes| {
            // The scanner never panics while locked, so the lock cannot be poisoned.
            #[allow(clippy::expect_used)]
            tap_scanner.lock().expect("scanner lock").feed(bytes);
        });
        let progress = progress_bar(plan.show_progress, plan.target_name);
        let stored = stream_child(storage, &base_key, cmd, &pipeline, progress.clone(), Some(tap)).await;
        if let Some(p) = &progress {
            p.finish_and_clear();
        }
        let stored = stored?;
        // The scanner never panics while locked, so the lock cannot be poisoned.
        #[allow(clippy::expect_used)]
        let mut scanner = std::mem::take(&mut *scanner.lock().expect("scanner lock"));
        // Closed before it is read back.
        drop(scanner.manifest_spool.take());
        if let Some(problem) = &scanner.problem {
            bail!("the tar stream of pg_basebackup could not be read ({problem}); nothing was committed");
        }
        let label_text = scanner
            .label_text()
            .ok_or_else(|| anyhow!("the tar stream of pg_basebackup held no backup_label; nothing was committed"))?;
        let label = parse_backup_label(&label_text)?;
        let segment_size = facts.segment_size;

        let prefix = wal::cluster_prefix(plan.target_name, facts.system_id);
        let (stop_lsn, stop_wal, history_name) = if plan.standby.is_some() {
            let (stop_lsn, stop_wal, _) = standby::stop_point(
                scanner
                    .wal_ranges()
                    .and_then(|r| r.last().map(|l| (l.timeline, l.end_lsn.clone()))),
                segment_size,
            )?;
            let switched = standby::switch_on_primary(&client).await;
            let bound = standby::archive_timeout(&client).await + standby::ARCHIVE_GRACE;
            standby::wait_archived(storage, &prefix, &stop_wal, bound, switched).await?;
            (stop_lsn, stop_wal, String::new())
        } else {
            end_from_history(storage, &plan, &prefix, &label, segment_size, &scanner).await?
        };
        let files = wal::list_archive(storage, &prefix).await?;
        let walk = continuity::walk(
            &files,
            &continuity::Chain::single(label.timeline),
            label.start_lsn.segno(segment_size),
            Some(stop_lsn.end_segno(segment_size)),
            segment_size,
        );
        if let Some(first) = walk.first_missing() {
            bail!(
                "the archive lacks {first} ({} of the segments from {} to {} this backup needs); nothing was committed; hint: check `dr check --only pg.archiving`",
                walk.missing_count,
                walk.from,
                walk.to
            );
        }

        let mut objects = vec![StoredObject {
            role: ObjectRole::Base,
            file: base_file.clone(),
            ..stored.clone()
        }];
        if scanner.saw_manifest {
            let file = format!("backup_manifest{}", pipeline.extension());
            let key = catalog::backup_dir(plan.target_name, &id) + "/" + &file;
            stored_so_far.keys.push(key.clone());
            objects.push(incremental::store_file(storage, &key, file, &spool_path, &pipeline).await?);
        } else if parent.is_some() {
            bail!("the tar stream of the incremental backup held no backup_manifest; nothing was committed");
        }
        let finished_at = Utc::now();
        let manifest = BackupManifest {
            format_version: MANIFEST_FORMAT_VERSION,
            id: id.clone(),
            target: plan.target_name.to_string(),
            kind: BackupKind::Regular,
            engine: crate::backup::manifest::Engine::Postgres,
            method: BackupMethod::Physical,
            database: conn.database.clone(),
            source: source.public_url.clone(),
            created_at,
            finished_at,
            duration_ms: started.elapsed().as_millis() as u64,
            server_version: server_version.clone(),
            server_major,
            pg_dump_version: String::new(),
            dr_version: env!("CARGO_PKG_VERSION").to_string(),
            format: "tar".into(),
            compression: settings.compression,
            compression_level: codec::level(settings),
            encryption: plan.recipients.as_ref().map(|_| "age".to_string()),
            recipients: plan
                .recipients
                .as_ref()
                .map(|r| r.public_keys())
                .unwrap_or_default(),
            size_bytes: objects.iter().map(|o| o.size_bytes).sum(),
            sha256: stored.sha256.clone(),
            objects,
            snapshot: String::new(),
            schemas: vec![],
            extensions: vec![],
            tables: vec![],
            redis: None,
            database_owner: None,
            globals_role_passwords: None,
            physical: Some(PhysicalInfo {
                system_identifier: facts.system_id.to_string(),
                timeline: label.timeline,
                start_lsn: label.start_lsn.to_string(),
                start_wal: label.start_wal.clone(),
                checkpoint_lsn: label.checkpoint_lsn.to_string(),
                stop_lsn: stop_lsn.to_string(),
                stop_wal,
                wal_segment_size: segment_size,
                data_checksums: facts.data_checksums,
                tablespaces: facts.tablespaces.clone(),
                pg_basebackup_version: tool_version.clone(),
                backup_manifest: scanner.saw_manifest,
                backup_history_file: history_name,
                parent_id: parent.as_ref().map(|p| p.id.clone()),
                chain: parent
                    .as_ref()
                    .map(incremental::chain_of_child)
                    .unwrap_or_default(),
                backup_from: if plan.standby.is_some() {
                    BackupFrom::Standby
                } else {
                    BackupFrom::Primary
                },
                server: server.clone(),
            }),
        };
        let json = serde_json::to_vec_pretty(&manifest)?;
        // The commit point: before this line there is no backup, after it there is one.
        storage::put_bytes(storage, &catalog::manifest_key(plan.target_name, &id), json)
            .await
            .context("cannot write the manifest")?;
        // The bytes were hashed as they went in: that is the first full check.
        super::integrity::record_after_backup(storage, &manifest).await;
        Ok(manifest)
    }
    .await;

    match &result {
        Ok(_) => stored_so_far.committed(),
        Err(_) => stored_so_far.remove().await,
    }
    drop(client);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in members {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o600);
            header.set_cksum();
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    const LABEL: &str = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-11-25 14:37:13 UTC\nLABEL: x\nSTART TIMELINE: 1\n";

    #[test]
    fn scanner_finds_label_and_manifest_in_any_chunking() {
        let big = vec![7u8; 70_000];
        let manifest = format!(
            "{{\"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [{}],\n\"WAL-Ranges\": [\n{{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/2000100\" }}\n],\n\"Manifest-Checksum\": \"ab\"}}\n",
            "{\"Path\": \"x\"},".repeat(20_000).trim_end_matches(',')
        );
        let data = tar_of(&[
            ("backup_label", LABEL.as_bytes()),
            ("base/1/1259", &big),
            ("global/pg_control", &[1u8; 8192]),
            ("backup_manifest", manifest.as_bytes()),
        ]);
        for chunk in [1usize, 511, 512, 4096, 1 << 20] {
            let mut s = TarScanner::default();
            for part in data.chunks(chunk) {
                s.feed(part);
            }
            assert!(s.problem.is_none(), "{:?}", s.problem);
            assert_eq!(s.members, 4, "chunk {chunk}");
            assert_eq!(s.label_text().unwrap(), LABEL);
            let ranges = s.wal_ranges().unwrap();
            assert_eq!(ranges[0].end_lsn, "0/2000100", "chunk {chunk}");
        }
        let mut s = TarScanner::default();
        s.feed(&tar_of(&[("PG_VERSION", b"15\n")]));
        assert!(s.label_text().is_none() && s.wal_ranges().is_none());
    }

    #[test]
    fn reads_label_and_stop_location() {
        let l = parse_backup_label(LABEL).unwrap();
        assert_eq!(l.start_lsn, Lsn(0x2000028));
        assert_eq!(l.start_wal, "000000010000000000000002");
        assert_eq!(l.checkpoint_lsn, Lsn(0x2000060));
        assert_eq!(l.timeline, 1);
        assert!(parse_backup_label("LABEL: x\n").is_err());
        let history = format!(
            "{LABEL}STOP WAL LOCATION: 0/2000100 (file 000000010000000000000002)\nSTOP TIME: x\n"
        );
        assert_eq!(
            parse_stop_location(&history).unwrap(),
            (Lsn(0x2000100), "000000010000000000000002".to_string())
        );
    }

    #[test]
    fn argv_has_no_password_and_streams_one_tar() {
        let args = pg_basebackup_args("postgres://u@h:5432/db", "dr main-1", None);
        assert!(args.iter().all(|a| !a.starts_with("--incremental")));
        let incr = pg_basebackup_args(
            "postgres://u@h:5432/db",
            "dr main-2",
            Some(std::path::Path::new("/tmp/x/parent_backup_manifest")),
        );
        assert!(incr.contains(&"--incremental=/tmp/x/parent_backup_manifest".to_string()));
        assert!(args.contains(&"--pgdata=-".to_string()));
        assert!(args.contains(&"--wal-method=none".to_string()));
        assert!(args.contains(&"--checkpoint=fast".to_string()));
        assert!(args.iter().all(|a| !a.contains("password=")));
    }

    #[test]
    fn refuses_what_could_not_be_restored() {
        let ok = ClusterFacts {
            system_id: 1,
            segment_size: 16 << 20,
            archive_mode: "on".into(),
            archive_command: Some("dr --config /etc/dr/dr.toml wal-push %p".into()),
            archive_library: String::new(),
            may_replicate: true,
            in_recovery: false,
            data_checksums: false,
            tablespaces: vec![],
            summarize_wal: None,
            timeline: 1,
        };
        assert!(check_preconditions(&ok, "main", "u", "dr wal-push %p").is_ok());
        let fails = |f: fn(&mut ClusterFacts), needle: &str| {
            let mut facts = ok.clone();
            f(&mut facts);
            let e = check_preconditions(&facts, "main", "u", "dr wal-push %p")
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle) && e.contains("hint:"), "{e}");
        };
        fails(|f| f.archive_mode = "off".into(), "archive_mode is off");
        fails(
            |f| f.archive_command = Some("KEY=s3cr3t cp %p /x/%f".into()),
            "runs `cp`, not `dr wal-push`",
        );
        fails(|f| f.may_replicate = false, "ALTER ROLE u REPLICATION");
        fails(|f| f.in_recovery = true, "standby");
        fails(
            |f| {
                f.tablespaces = vec![Tablespace {
                    oid: 16400,
                    name: "fast".into(),
                    location: "/ssd/pg".into(),
                }]
            },
            "fast at /ssd/pg",
        );
    }
}
