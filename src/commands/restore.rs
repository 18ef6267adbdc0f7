//! `dr restore`: the restore pipeline with consent on a terminal, `--yes` otherwise.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result};

use crate::cli::{Format, RestoreArgs};
use crate::config::{Config, NotifyEvent};
use crate::error::usage;
use crate::notify::OperationRun;
use crate::output;
use crate::restore::{self, Action, Consent, RestoreOptions, RestoreRequest};

pub async fn run(config: &Config, args: RestoreArgs) -> Result<i32> {
    if let Some(redis) = config.redis_backup_target(args.target.as_deref()) {
        return super::redis_data::restore(config, redis?, args).await;
    }
    if args.flush || args.rdb_file.is_some() {
        return Err(usage(
            "--flush and --rdb-file apply to Redis targets only; hint: a PostgreSQL restore replaces what the backup holds (see --yes)",
        ));
    }
    let target = super::single_target(config, args.target.as_deref())?;
    if args.pitr.pitr {
        return super::pitr::restore(config, target, args).await;
    }
    let backup_id = args
        .backup_id
        .clone()
        .context("--backup-id ID is required without --pitr")?;
    let storage = super::open_storage(config)?;
    let (destination, destination_flag) = super::destination(target, &args.into)?;
    let staging_dir = super::staging_dir(args.staging_dir.as_deref());
    let yes = args.yes;
    let confirm = move |c: &Consent| confirm(c, yes);
    let named = destination_flag.is_some();
    let notifier = OperationRun::start(config, NotifyEvent::Restore, None)?;
    let (report, result) = restore::run(RestoreRequest {
        config,
        storage: storage.as_ref(),
        target,
        backup_id: &backup_id,
        destination: &destination,
        destination_flag,
        staging_dir: &staging_dir,
        scope: super::scope(&args.scope),
        identities: super::identities(config, args.identity.as_deref())?,
        action: Action::Restore(RestoreOptions {
            jobs: args.jobs,
            clean: args.clean,
            safety_backup: !args.no_safety_backup,
            verify_services: !named,
            show_progress: args.format == Format::Table,
            confirm: &confirm,
        }),
    })
    .await;
    let outcome = crate::operations::outcomes::restore(&target.name, &report);
    let sent = notifier.finish_after(&result, vec![outcome]).await;
    output::emit(&match args.format {
        Format::Json => output::notify::json_with(&report, &sent),
        Format::Table => output::restore::table(&report),
    });
    result.map(|()| 0)
}

/// A non-empty destination needs consent, asked once the preflight has passed: the
/// database name typed on a terminal, `--yes` otherwise. Refusing changes nothing (exit 2).
fn confirm(consent: &Consent, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    let db = &consent.database;
    if !std::io::stdin().is_terminal() {
        return Err(usage(format!(
            "destination database {db} ({}) is not empty: it holds {} user object(s) (tables, sequences, views, functions, large objects) that the restore would overwrite; nothing was changed; hint: pass --yes to confirm (a safety backup is taken first), or restore into an empty database with --into-env and --create",
            consent.destination, consent.user_objects
        )));
    }
    eprint!("{}", output::restore::consent_prompt(consent));
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() != db {
        return Err(usage(format!(
            "confirmation did not match {db:?}; nothing was changed"
        )));
    }
    Ok(())
}
