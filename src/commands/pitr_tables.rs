//! `dr restore --pitr --only-table SCHEMA.TABLE --into-env VAR`: tables as of a time.

use anyhow::Result;

use crate::cli::{Format, RestoreArgs};
use crate::config::{Config, NotifyEvent, PostgresTarget};
use crate::error::usage;
use crate::notify::{OperationRun, Outcome};
use crate::output;
use crate::restore::pitr::{RecoveryTarget, TimelineChoice};
use crate::restore::pitr_tables::{self, TablesRequest};

pub async fn restore(
    config: &Config,
    target: &PostgresTarget,
    args: RestoreArgs,
    recovery_target: RecoveryTarget,
) -> Result<i32> {
    let p = &args.pitr;
    if p.pgdata.is_some() || p.start || p.port.is_some() || p.archive {
        return Err(usage(
            "--only-table with --pitr copies tables into another database: --pgdata, --start, --port and --archive apply to whole-cluster restores; hint: drop them and pass --into-env VAR",
        ));
    }
    if args.into.into.is_none() && args.into.into_env.is_none() {
        return Err(usage(
            "--only-table with --pitr needs a destination: --into-env VAR naming a variable that holds another database's URL (with --create for a new one); production is never written",
        ));
    }
    let selection = args.scope.only.selection();
    let (destination, _) = super::destination(target, &args.into)?;
    let storage = super::open_storage(config)?;
    let notifier = OperationRun::start(config, NotifyEvent::Restore, None)?;
    let (report, result) = pitr_tables::run(TablesRequest {
        config,
        storage: storage.as_ref(),
        target,
        recovery_target,
        backup_id: args.backup_id.as_deref(),
        identities: super::identities(config, args.identity.as_deref())?,
        identity_file: args.identity.clone(),
        timeline: p
            .timeline
            .as_deref()
            .map(TimelineChoice::parse)
            .transpose()?,
        system_id: p.system_id,
        selection: &selection,
        destination: &destination,
        create: args.scope.create,
    })
    .await;
    let outcome = Outcome {
        backup_id: report.backup_id.clone(),
        duration_ms: report.duration_ms,
        ..Outcome::new(
            Some(&target.name),
            report.ok,
            match &report.error {
                None => format!(
                    "{} as of {} copied into {}",
                    selection.flags(),
                    report
                        .recovery_target
                        .value
                        .as_deref()
                        .unwrap_or("the end of the archive"),
                    report.destination
                ),
                Some(e) => format!("copying {} as of a time failed: {e}", selection.flags()),
            },
        )
    };
    let sent = notifier.finish_after(&result, vec![outcome]).await;
    output::emit(&match args.format {
        Format::Json => output::notify::json_with(&report, &sent),
        Format::Table => output::pitr::tables_text(&report),
    });
    result.map(|_| 0)
}
