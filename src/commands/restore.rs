//! `dr restore`: the restore pipeline with consent on a terminal, `--yes` otherwise.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Result;

use crate::cli::{Format, RestoreArgs};
use crate::config::Config;
use crate::error::usage;
use crate::output;
use crate::pg::ConnTarget;
use crate::restore::{self, Action, RestoreOptions, RestoreRequest};

pub async fn run(config: &Config, args: RestoreArgs) -> Result<i32> {
    let target = super::single_target(config, args.target.as_deref())?;
    let storage = super::open_storage(config)?;
    let destination = super::destination(target, args.into.as_deref())?;
    let staging_dir = super::staging_dir(args.staging_dir.as_deref());
    let yes = args.yes;
    let confirm = move |d: &ConnTarget, objects: i64| confirm(d, objects, yes);
    let (report, result) = restore::run(RestoreRequest {
        config,
        storage: storage.as_ref(),
        target,
        backup_id: &args.backup_id,
        destination: &destination,
        destination_named: args.into.is_some(),
        staging_dir: &staging_dir,
        identities: super::identities(config, args.identity.as_deref())?,
        action: Action::Restore(RestoreOptions {
            jobs: args.jobs,
            no_owner: args.no_owner,
            with_globals: args.with_globals,
            safety_backup: !args.no_safety_backup,
            verify_services: args.into.is_none(),
            show_progress: args.format == Format::Table,
            confirm: &confirm,
        }),
    })
    .await;
    output::emit(&match args.format {
        Format::Json => output::json(&report),
        Format::Table => output::restore::table(&report),
    });
    result.map(|()| 0)
}

/// A non-empty destination needs consent: a typed database name on a terminal, `--yes`
/// otherwise. Refusing changes nothing (exit 2).
fn confirm(destination: &ConnTarget, objects: i64, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    let db = &destination.database;
    if !std::io::stdin().is_terminal() {
        return Err(usage(format!(
            "destination database {db} ({}) is not empty: it holds {objects} user object(s) (tables, sequences, views, functions, large objects) that the restore would overwrite; nothing was changed; hint: pass --yes to confirm (a safety backup is taken first), or restore into an empty database with --into",
            destination.public_url
        )));
    }
    eprint!("Destination {} holds {objects} user object(s); they will be overwritten (a safety backup is taken first).\nType the database name ({db}) to confirm: ", destination.public_url);
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
