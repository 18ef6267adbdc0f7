//! One file per subcommand. Each gathers its inputs, calls the domain code, hands the
//! report to `output`, and returns the exit code.

mod backup;
mod check;
mod completions;
mod contacts;
mod demo;
mod drill;
mod evidence;
mod init;
mod list;
mod man;
mod mark;
mod notify;
mod pin;
mod pitr;
mod pitr_tables;
mod prune;
mod redis_data;
mod redis_verify;
mod restore;
mod runbook;
mod status;
mod validate;
mod verify;
mod version;
mod wal_fetch;
mod wal_push;

use anyhow::Result;

use crate::cli::{Cli, Command, IntoArgs, ScopeArgs, TextFormat, VersionArgs};
use crate::config::{Config, PostgresTarget};
use crate::operations::setup::{
    identities, load_config, open_storage, single_target, staging_dir, sweep_leftovers, Discovery,
};
use crate::pg::ConnTarget;
use crate::restore::RestoreScope;

pub async fn dispatch(cli: Cli) -> Result<i32> {
    let config_path = cli.config.as_deref();
    let command = match (cli.version, cli.command) {
        (true, _) => Command::Version(VersionArgs {
            format: TextFormat::Text,
        }),
        (false, Some(command)) => command,
        (false, None) => {
            return Err(crate::error::usage(
                "no command given; hint: `dr --help` lists the commands",
            ))
        }
    };
    let leftovers = match command {
        Command::Demo(_)
        | Command::Contacts(_)
        | Command::Runbook(_)
        | Command::Completions(_)
        | Command::Man(_)
        | Command::Version(_) => Vec::new(),
        // What a killed dr left on this host goes first, before anything new is made.
        _ => sweep_leftovers(),
    };
    match command {
        Command::Demo(args) => demo::run(args).await,
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => man::run(args),
        Command::Version(args) => version::run(args).await,
        Command::Check(args) => {
            let config = load_config(config_path, None, Discovery::Server).await?;
            check::run(&config, args, leftovers).await
        }
        Command::Validate(args) => {
            let config =
                load_config(config_path, args.target.as_deref(), Discovery::Server).await?;
            let result = validate::run(&config, args).await;
            recorded(&config, "validate", result).await
        }
        Command::Backup(args) => {
            let config =
                load_config(config_path, args.target.as_deref(), Discovery::Server).await?;
            let result = backup::run(&config, args).await;
            recorded(&config, "backup", result).await
        }
        Command::List(args) => {
            let config =
                load_config(config_path, args.target.as_deref(), Discovery::Storage).await?;
            list::run(&config, args).await
        }
        Command::Prune(args) => {
            let config =
                load_config(config_path, args.target.as_deref(), Discovery::Storage).await?;
            let result = prune::run(&config, args).await;
            recorded(&config, "prune", result).await
        }
        Command::Restore(args) => {
            let config =
                load_config(config_path, args.target.as_deref(), Discovery::Server).await?;
            let result = restore::run(&config, args).await;
            recorded(&config, "restore", result).await
        }
        Command::Verify(args) => {
            let config =
                load_config(config_path, args.target.as_deref(), Discovery::Server).await?;
            let result = verify::run(&config, args).await;
            recorded(&config, "verify", result).await
        }
        Command::Drill(args) => {
            let config =
                load_config(config_path, args.target.as_deref(), Discovery::Server).await?;
            let result = drill::run(&config, args).await;
            recorded(&config, "drill", result).await
        }
        Command::Status(args) => {
            let config =
                load_config(config_path, args.target.as_deref(), Discovery::Storage).await?;
            status::run(&config, args).await
        }
        Command::Init(args) => init::run(&Config::load(config_path)?, args).await,
        Command::Contacts(args) => contacts::run(&Config::load(config_path)?, args),
        Command::Notify(args) => notify::run(&Config::load(config_path)?, args).await,
        Command::Runbook(args) => runbook::run(&Config::load(config_path)?, args).await,
        Command::WalPush(args) => wal_push::run(&Config::load(config_path)?, args).await,
        Command::WalFetch(args) => wal_fetch::run(&Config::load(config_path)?, args).await,
        Command::Mark(args) => mark::run(&Config::load(config_path)?, args).await,
        Command::Evidence(args) => evidence::run(config_path, args).await,
        Command::Pin(args) => pin::run(&Config::load(config_path)?, args, true).await,
        Command::Unpin(args) => pin::run(&Config::load(config_path)?, args, false).await,
    }
}

/// Appends the run's record to the evidence log, with the report it printed (or its error
/// document). Recording never changes the run's outcome: a failure to record is a warning.
async fn recorded(config: &Config, command: &str, result: Result<i32>) -> Result<i32> {
    let code = match &result {
        Ok(code) => *code,
        Err(e) => crate::error::exit_code(e),
    };
    let report = crate::output::kept_report().unwrap_or_else(|| {
        let message = match &result {
            Err(e) => crate::secret::scrub(
                &crate::error::tidy_message(&crate::secret::redact_url(&format!("{e:#}"))),
                &config.secrets(),
            ),
            Ok(_) => "the command printed no report".to_string(),
        };
        serde_json::from_str(&crate::output::error_document(&message, code)).unwrap_or_default()
    });
    let argv = std::env::args()
        .skip(1)
        .map(|a| crate::secret::scrub(&crate::secret::redact_url(&a), &config.secrets()))
        .collect();
    if crate::storage::was_unresponsive() {
        tracing::warn!(
            "this {command} was not recorded in the evidence log: the storage did not answer during the run; hint: `dr evidence verify` shows the log as it is"
        );
        return result;
    }
    let appended = match open_storage(config) {
        Ok(storage) => {
            crate::evidence::record_run(storage.as_ref(), config, command, argv, report, code).await
        }
        Err(e) => Err(e),
    };
    match appended {
        Ok(Some(key)) => tracing::debug!("evidence record {key}"),
        Ok(None) => {}
        Err(e) => tracing::warn!(
            "this {command} was not recorded in the evidence log: {e:#}; hint: `dr evidence verify` shows the log as it is"
        ),
    }
    result
}

/// Where a restore, validate or verify looks: `--into URL`, `--into-env VAR`, else the
/// target's database reached with its restore credentials (`restore_url`). Returns the
/// destination and, when it was named, the flag that names it again.
pub fn destination(
    target: &PostgresTarget,
    into: &IntoArgs,
) -> Result<(ConnTarget, Option<String>)> {
    if let Some(url) = &into.into {
        if crate::secret::redact_url(url) != *url {
            return Err(crate::error::usage(
                "--into carries a password, and any user of this host can read a command line (ps, /proc); nothing was changed; hint: put the URL in an environment variable and pass --into-env VAR, or leave the password out of the URL and keep it in a password file (~/.pgpass or PGPASSFILE)",
            ));
        }
        return Ok((ConnTarget::parse(url)?, Some(format!("--into '{url}'"))));
    }
    if let Some(var) = &into.into_env {
        let url = match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => v,
            _ => {
                return Err(crate::error::usage(format!(
                    "--into-env {var}: the environment variable {var} is not set; hint: export {var}=postgres://user:password@host:5432/database"
                )))
            }
        };
        return Ok((ConnTarget::parse(&url)?, Some(format!("--into-env {var}"))));
    }
    Ok((ConnTarget::parse(&target.resolve_restore_url()?)?, None))
}

/// What a restore does to the destination, from the flags.
pub fn scope(args: &ScopeArgs) -> RestoreScope {
    RestoreScope {
        create: args.create,
        with_globals: args.with_globals,
        no_owner: args.no_owner,
        no_acl: false,
        selection: args.only.selection(),
    }
}

/// Refuses flags given where they do not apply, naming each (exit 2): a flag silently
/// ignored lets an operator believe it took effect. `--jobs` counts as given when it is
/// not its default of 1.
pub fn refuse_flags(given: &[(bool, &str)], context: &str, hint: &str) -> Result<()> {
    let named: Vec<&str> = given
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
    if named.is_empty() {
        return Ok(());
    }
    let verb = if named.len() == 1 { "does" } else { "do" };
    Err(crate::error::usage(format!(
        "{} {verb} not apply {context}; hint: {hint}",
        named.join(", ")
    )))
}

/// The dump and table flags of a scope, for commands that take none of them.
fn scope_flags(scope: &ScopeArgs) -> [(bool, &'static str); 5] {
    [
        (scope.create, "--create"),
        (scope.with_globals, "--with-globals"),
        (scope.no_owner, "--no-owner"),
        (!scope.only.only_table.is_empty(), "--only-table"),
        (!scope.only.only_schema.is_empty(), "--only-schema"),
    ]
}

/// `restore` of a Redis target: every key comes back; PostgreSQL's flags mean nothing.
pub fn refuse_for_redis_restore(args: &crate::cli::RestoreArgs, target: &str) -> Result<()> {
    let mut given = scope_flags(&args.scope).to_vec();
    given.extend([(args.clean, "--clean"), (args.jobs != 1, "--jobs")]);
    refuse_flags(
        &given,
        &format!("to {target}, a Redis target"),
        "drop them: a Redis restore puts back every key of the backup (--flush empties the destination first)",
    )
}

/// `validate` of a Redis target.
pub fn refuse_for_redis_validate(args: &crate::cli::ValidateArgs, target: &str) -> Result<()> {
    let mut given = scope_flags(&args.scope).to_vec();
    given.push((args.physical, "--physical"));
    refuse_flags(
        &given,
        &format!("to {target}, a Redis target"),
        "drop them: a Redis validate reads the whole backup",
    )
}

/// `drill` of a Redis target: a throwaway Redis server, every key.
pub fn refuse_for_redis_drill(args: &crate::cli::DrillArgs, target: &str) -> Result<()> {
    refuse_flags(
        &[
            (args.sandbox, "--sandbox"),
            (args.pitr, "--pitr"),
            (args.to_time.is_some(), "--to-time"),
            (args.to_latest, "--to-latest"),
            (args.timeline.is_some(), "--timeline"),
            (args.system_id.is_some(), "--system-id"),
            (args.with_globals, "--with-globals"),
            (args.no_owner, "--no-owner"),
            (args.jobs != 1, "--jobs"),
        ],
        &format!("to {target}, a Redis target"),
        "drop them: a Redis drill always restores into a throwaway Redis server",
    )
}

/// `restore --pitr` of a whole cluster (no --only-table): the data directory comes back as
/// it was, so the dump restore's flags mean nothing.
pub fn refuse_for_pitr_cluster(args: &crate::cli::RestoreArgs) -> Result<()> {
    let mut given = scope_flags(&args.scope).to_vec();
    given.extend([
        (args.into.into.is_some(), "--into"),
        (args.into.into_env.is_some(), "--into-env"),
        (args.clean, "--clean"),
        (args.yes, "--yes"),
        (args.jobs != 1, "--jobs"),
        (args.no_safety_backup, "--no-safety-backup"),
    ]);
    refuse_flags(
        &given,
        "to --pitr, which restores a whole cluster into --pgdata",
        "drop them (--into, --into-env, --clean and --yes apply to dump restores and to --pitr with --only-table)",
    )
}
