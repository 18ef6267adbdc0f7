//! Redis drills: restore a backup into a throwaway `redis-server` (never production),
//! verify it, measure RTO and RPO against the objectives, and keep the report beside the
//! PostgreSQL drills. An RDB backup is loaded the way a self-hosted recovery loads it: the
//! file in the server's directory, AOF off, then the server started; a keys backup is
//! restored with RESTORE into an empty sandbox.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use chrono::Utc;

use super::redis_sandbox::{self as sandbox, RedisSandbox};
use super::{DrillMode, DrillReport};
use crate::backup::manifest::BackupKind;
use crate::backup::redis::{self as redis_backup, RedisBackupPlan};
use crate::config::{Config, RedisTarget};
use crate::encryption::Identities;
use crate::redis_client::conn::{self, RedisEndpoint};
use crate::redis_client::rdb::{EntrySource, RdbReader};
use crate::report::{Finding, Phase, Steps, FORMAT_VERSION};
use crate::restore::redis::{check_destination, fetch, load_keys, resolve_manifest};
use crate::restore::redis_verify::{self, BackupDigest};
use crate::storage::Storage;
use crate::units;
use std::sync::Arc;

pub struct RedisDrillRequest<'a> {
    pub config: &'a Config,
    pub storage: &'a dyn Storage,
    pub target: &'a RedisTarget,
    pub backup_id: Option<&'a str>,
    /// What encrypted backups are opened with.
    pub identities: Option<Arc<Identities>>,
}

/// Runs a drill and stores its report, pass or fail. Errors only when even the report
/// cannot be written.
pub async fn run(req: RedisDrillRequest<'_>) -> Result<DrillReport> {
    let started_at = Utc::now();
    let id = format!(
        "{}-{}",
        req.target.name,
        started_at.format("%Y%m%dT%H%M%SZ")
    );
    let mut steps = Steps::default();
    let mut manifest_used = None;
    let mut destination = String::from("-");
    let mut verification = None;
    let mut sandbox: Option<RedisSandbox> = None;

    let outcome: Result<()> = async {
        let backup_id = match req.backup_id {
            Some(b) => b.to_string(),
            None => {
                steps
                    .run("backup", Phase::Prepare, async {
                        let m = redis_backup::run(
                            req.storage,
                            RedisBackupPlan {
                                target_name: &req.target.name,
                                endpoint: RedisEndpoint::parse(&req.target.resolve_url()?)?
                                    .with_timeout(req.target.timeout),
                                method: req.target.method,
                                kind: BackupKind::Regular,
                                settings: &req.config.backup,
                                recipients: crate::encryption::configured_recipients(req.config)?,
                                show_progress: false,
                            },
                        )
                        .await?;
                        let msg = format!("took fresh backup {} ({})", m.id, units::bytes(m.size_bytes));
                        Ok((m.id, msg))
                    })
                    .await?
            }
        };
        let manifest = resolve_manifest(req.storage, req.target, &backup_id, &mut steps).await?;
        manifest_used = Some(manifest.clone());
        let details = redis_backup::details(&manifest)?.clone();
        let binary = sandbox::find_binary(req.target.redis_server.as_deref())?;
        let version = sandbox::version(&binary).await?;
        if !conn::can_load(&version, &manifest.server_version, details.rdb_version) {
            bail!(
                "the sandbox's redis-server {version} ({}) loads RDB up to version {}, but backup {} was taken from Redis {} with RDB version {}; hint: install a redis-server of version {} or newer and set redis_server in the [[redis]] table",
                binary.display(),
                conn::loads_rdb_up_to(&version),
                manifest.id,
                manifest.server_version,
                details.rdb_version,
                manifest.server_version
            );
        }
        let databases = details.databases.iter().map(|d| d.db + 1).max().unwrap_or(16);
        let mut sb = RedisSandbox::create(binary, databases)?;
        destination = format!("sandbox redis-server {version} on 127.0.0.1:{}", sb.port);
        let (mut con, digest) = if manifest.format == "rdb" {
            // The RDB goes where the sandbox's server loads it from at start.
            let staged = fetch(req.storage, &manifest, req.identities.as_ref(), sb.dir(), true, &mut steps).await?;
            std::fs::rename(&staged.path, sb.rdb_path())
                .context("cannot move the RDB into the sandbox")?;
            let path = sb.rdb_path();
            let loaded = steps
                .run("load", Phase::Restore, async {
                    // The digest is drawn from the very file the server is about to load.
                    let now = Utc::now().timestamp_millis();
                    let digest = tokio::task::spawn_blocking(move || -> Result<BackupDigest> {
                        let file = std::fs::File::open(&path)?;
                        let mut reader = RdbReader::new(std::io::BufReader::with_capacity(1 << 20, file))?;
                        let mut digest = BackupDigest::new(now);
                        while let Some(e) = reader.next_entry(&mut |h| digest.consider(h))? {
                            digest.keep(&e);
                        }
                        Ok(digest)
                    })
                    .await??;
                    sb.start().await?;
                    let con = sb.endpoint.connect().await?;
                    Ok(((con, digest), format!("redis-server {version} started with the backup's RDB in place (appendonly no) and loaded it")))
                })
                .await?;
            sandbox = Some(sb);
            loaded
        } else {
            steps
                .run("sandbox", Phase::Prepare, async {
                    sb.start().await?;
                    Ok(((), format!("empty redis-server {version} on 127.0.0.1:{}", sb.port)))
                })
                .await?;
            let endpoint = sb.endpoint.clone();
            sandbox = Some(sb);
            let (mut con, _) = check_destination(&endpoint, &manifest, &mut steps).await?;
            let staging = crate::backup::default_staging_dir();
            let staged = fetch(req.storage, &manifest, req.identities.as_ref(), &staging, false, &mut steps).await?;
            let now = conn::server_time_ms(&mut con).await?;
            let compression = manifest.dump().compression;
            let digest = steps
                .run("restore", Phase::Restore, async {
                    let (restored, digest) = load_keys(&mut con, &manifest, &staged.path, compression, now).await?;
                    Ok((digest, format!("{} key(s) restored, {} already expired", restored.keys, restored.skipped_expired)))
                })
                .await?;
            (con, digest)
        };
        let started = Instant::now();
        let report = redis_verify::verify(&mut con, &req.target.name, &destination, &manifest, &digest).await;
        steps.push("verify", Phase::Verify, report.as_finding(), started.elapsed().as_millis() as u64);
        let ok = report.ok;
        verification = Some(report);
        if !ok {
            bail!("verification of the restored copy failed");
        }
        Ok(())
    }
    .await;

    // Cleanup runs on success and failure alike; Ctrl-C is covered by the sandbox's Drop.
    if let Some(mut sb) = sandbox.take() {
        let cleanup_started = Instant::now();
        sb.stop().await;
        drop(sb);
        steps.push(
            "cleanup",
            Phase::Cleanup,
            Finding::pass("stopped and removed the sandbox redis-server"),
            cleanup_started.elapsed().as_millis() as u64,
        );
    }

    let restored = outcome.is_ok();
    let judged = super::Judgement::of(
        &steps,
        started_at,
        manifest_used.as_ref().map(|m| m.created_at),
        &req.config.objectives,
        &outcome,
    );
    let mut report = DrillReport {
        format_version: FORMAT_VERSION,
        id,
        target: req.target.name.clone(),
        started_at,
        finished_at: Utc::now(),
        mode: DrillMode::RedisSandbox,
        destination,
        backup_id: manifest_used.as_ref().map(|m| m.id.clone()),
        backup_created_at: manifest_used.as_ref().map(|m| m.created_at),
        steps: steps.0,
        rto_ms: judged.rto_ms,
        rpo_ms: judged.rpo_ms,
        rto_objective_ms: judged.rto_objective_ms,
        rpo_objective_ms: judged.rpo_objective_ms,
        rto_met: judged.rto_met,
        rpo_met: judged.rpo_met,
        verification: None,
        pitr: None,
        redis_verification: verification,
        decrypted: restored
            && manifest_used
                .as_ref()
                .is_some_and(|m| m.encryption.is_some()),
        ok: judged.ok,
        verdict: judged.verdict,
        restored_bytes: None,
        predicted_rto_ms: None,
        prediction_error_pct: None,
    };
    super::store_report(req.storage, &mut report, req.config).await?;
    Ok(report)
}
