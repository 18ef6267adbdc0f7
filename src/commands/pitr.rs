//! `dr restore --pitr`: a physical base backup rolled forward to a target.

use anyhow::Result;

use crate::cli::{Format, RestoreArgs};
use crate::config::{Config, NotifyEvent, PostgresTarget};
use crate::error::usage;
use crate::notify::{OperationRun, Outcome};
use crate::output;
use crate::restore::pitr::{self, PitrRequest, RecoveryTarget};

pub async fn restore(config: &Config, target: &PostgresTarget, args: RestoreArgs) -> Result<i32> {
    let p = &args.pitr;
    let recovery_target = RecoveryTarget::from_flags(
        p.to_time.as_deref(),
        p.to_lsn.as_deref(),
        p.to_name.as_deref(),
        p.to_latest,
    )?;
    if !args.scope.only.selection().is_empty() {
        return super::pitr_tables::restore(config, target, args, recovery_target).await;
    }
    super::refuse_for_pitr_cluster(&args)?;
    let Some(pgdata) = p.pgdata.clone() else {
        return Err(usage(
            "--pitr needs --pgdata DIR (a new or empty directory for the restored cluster), or --only-table SCHEMA.TABLE with --into-env VAR to copy tables as of the target into another database",
        ));
    };
    let storage = super::open_storage(config)?;
    let notifier = OperationRun::start(config, NotifyEvent::Restore, None)?;
    let (report, result) = pitr::run(PitrRequest {
        config,
        storage: storage.as_ref(),
        target,
        recovery_target,
        pgdata: &pgdata,
        backup_id: args.backup_id.as_deref(),
        identities: super::identities(config, args.identity.as_deref())?,
        // wal-fetch reads [encryption] from the same dr.toml; only --identity is passed on.
        identity_file: args.identity.clone(),
        start: p.start,
        port: p.port,
        archive: p.archive,
        sandbox_socket_dir: None,
        timeline: p
            .timeline
            .as_deref()
            .map(pitr::TimelineChoice::parse)
            .transpose()?,
        system_id: p.system_id,
        new_primary: p.new_primary,
    })
    .await;
    let outcome = Outcome {
        backup_id: report.backup_id.clone(),
        duration_ms: report.duration_ms,
        rto_ms: (report.ok && report.started).then_some(report.duration_ms),
        rpo_ms: report.rpo_ms,
        ..Outcome::new(
            Some(&target.name),
            report.ok,
            match &report.error {
                None if report.started => format!(
                    "backup {} rolled forward and started in {}",
                    report.backup_id.as_deref().unwrap_or("-"),
                    report.pgdata
                ),
                None => format!(
                    "backup {} unpacked into {} with its recovery settings",
                    report.backup_id.as_deref().unwrap_or("-"),
                    report.pgdata
                ),
                Some(e) => format!("point-in-time restore into {} failed: {e}", report.pgdata),
            },
        )
    };
    let sent = notifier.finish_after(&result, vec![outcome]).await;
    output::emit(&match args.format {
        Format::Json => output::notify::json_with(&report, &sent),
        Format::Table => output::pitr::table(&report),
    });
    result.map(|_| 0)
}
