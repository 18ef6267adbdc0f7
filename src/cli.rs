//! Every clap definition: global flags, the subcommands and their arguments.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::restore::selection::{Selection, TableName};

const EXIT_CODES: &str = "\
Exit status:
  0    success; for `check`: ready
  1    the operation failed, or a critical check failed
       (with --strict: any check that is not a pass)
  2    usage or configuration error; nothing was changed
  130  interrupted (Ctrl-C, SIGTERM); temporary data was removed";

const CHECK_HELP: &str = "\
Checks (each under --timeout; PostgreSQL targets critical by default, Redis not):
  config             dr.toml is valid; warns on an inline password in a readable file
  contacts           at least one emergency contact (warn)
  pg.connect         connects and runs SELECT 1; reports the server version
  pg.tools           pg_dump/pg_restore found and not older than the server
  pg.privileges      the role can read every table (names the unreadable ones)
  redis.connect      PING answers
  redis.persistence  last RDB save / AOF write succeeded; persistence on if required
  storage.writable   a probe object is written, read back and deleted
  storage.object_lock  S3 Object Lock really applied (when object_lock_days is set)
  backup.latest      a complete backup younger than the RPO (warn past 80%)
  backup.integrity   the newest backup hashes to its manifest (timeout per read)
  drill.recent       a successful drill within objectives.drill_every (warn if none)
  drill.leftovers    nothing left by a dr that died: files on this host (removed),
                     scratch databases on the target's server (warn)
  runbooks           every runbook renders with this configuration

Formats:
  table       human table; colour and symbols only on a terminal without NO_COLOR
  json        {\"format_version\", \"ready\", \"strict\", \"checks\": [{\"name\", \"target\",
              \"status\", \"critical\", \"message\", \"duration_ms\"}]}
  junit       one testcase per check; fail is a <failure>, warn is not
  prometheus  dr_check_status{check,target,critical} (0 pass, 1 warn, 2 fail),
              dr_check_duration_seconds{...}, dr_ready

Exit status:
  0    ready: no critical check failed (with --strict: every check passed)
  1    not ready
  2    usage or configuration error; nothing was changed
  130  interrupted (Ctrl-C, SIGTERM)";

#[derive(Debug, Parser)]
#[command(
    name = "dr",
    version,
    about = "Provable disaster recovery for PostgreSQL and Redis",
    long_about = "Provable disaster recovery for PostgreSQL and Redis: readiness checks before an incident, checksummed backups, and restores that are validated, verified and timed against your RTO/RPO.",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Configuration file [default: $DR_CONFIG, else ./dr.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// More logs on stderr (-v debug, -vv trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Readiness gate: probe PostgreSQL, Redis, tools, storage, backups and drills
    #[command(after_help = CHECK_HELP)]
    Check(CheckArgs),
    /// Prove a backup could be restored, changing nothing
    #[command(after_help = EXIT_CODES)]
    Validate(ValidateArgs),
    /// Take a checksummed backup of each (or one) PostgreSQL target
    #[command(after_help = EXIT_CODES)]
    Backup(BackupArgs),
    /// List complete backups, newest first
    #[command(after_help = EXIT_CODES)]
    List(ListArgs),
    /// Remove backups outside the [retention] policy, and leftovers of crashed runs
    #[command(after_help = EXIT_CODES)]
    Prune(PruneArgs),
    /// Restore a backup: validate, confirm, safety backup, pg_restore, verify
    #[command(after_help = EXIT_CODES)]
    Restore(RestoreArgs),
    /// Verify a database against a backup's row counts and the configured assertions
    #[command(after_help = EXIT_CODES)]
    Verify(VerifyArgs),
    /// Rehearse a recovery into a scratch database and measure RTO and RPO
    #[command(after_help = EXIT_CODES)]
    Drill(DrillArgs),
    /// Emergency contacts and vendors from dr.toml
    #[command(after_help = EXIT_CODES)]
    Contacts(FormatArgs),
    /// Incident runbooks, filled in from the live configuration
    #[command(after_help = EXIT_CODES)]
    Runbook(RunbookArgs),
    /// A first run: sandbox PostgreSQL with a sample shop, then check, backup, list, drill
    #[command(after_help = EXIT_CODES)]
    Demo(DemoArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    Table,
    Json,
    Junit,
    Prometheus,
}

#[derive(Debug, Args)]
pub struct FormatArgs {
    /// Output format
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Output format
    #[arg(long, value_enum, default_value = "table")]
    pub format: CheckFormat,
    /// Exit 1 on any warn or fail, not only on critical failures
    #[arg(long)]
    pub strict: bool,
    /// Run only this check (name like pg.connect, or family like pg); repeatable
    #[arg(long, value_name = "NAME")]
    pub only: Vec<String>,
    /// Time limit for each check
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Backup id, or `latest`
    #[arg(long, default_value = "latest")]
    pub backup_id: String,
    /// PostgreSQL target (required when several are configured)
    #[arg(long)]
    pub target: Option<String>,
    #[command(flatten)]
    pub into: IntoArgs,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Where a restore would stage the dump [default: $TMPDIR]
    #[arg(long, value_name = "DIR")]
    pub staging_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// A destination other than the target's own database.
#[derive(Debug, Clone, Default, Args)]
pub struct IntoArgs {
    /// This database instead of the target's (with no password in it: a command line is
    /// visible to every user; use --into-env or a password file)
    #[arg(long, value_name = "URL", conflicts_with = "into_env")]
    pub into: Option<String>,
    /// Like --into, with the URL (which may hold a password) read from this environment
    /// variable
    #[arg(long, value_name = "VAR")]
    pub into_env: Option<String>,
}

/// What a restore does to the destination (validate checks the privileges it needs).
#[derive(Debug, Clone, Default, Args)]
pub struct ScopeArgs {
    /// Create the destination database when it does not exist
    #[arg(long)]
    pub create: bool,
    /// Restore roles and tablespaces first (when the backup holds them)
    #[arg(long)]
    pub with_globals: bool,
    /// Do not restore object ownership: every object belongs to the restore role
    #[arg(long)]
    pub no_owner: bool,
    #[command(flatten)]
    pub only: OnlyArgs,
}

/// A table- or schema-level restore.
#[derive(Debug, Clone, Default, Args)]
pub struct OnlyArgs {
    /// Only this table's rows, with the backup's schema, into an empty database
    /// (SCHEMA.TABLE; repeatable)
    #[arg(long, value_name = "SCHEMA.TABLE", value_parser = TableName::parse)]
    pub only_table: Vec<TableName>,
    /// Only the rows of this schema's tables (repeatable)
    #[arg(long, value_name = "SCHEMA")]
    pub only_schema: Vec<String>,
}

impl OnlyArgs {
    pub fn selection(&self) -> Selection {
        Selection {
            tables: self.only_table.clone(),
            schemas: self.only_schema.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Back up only this target
    #[arg(long)]
    pub target: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long)]
    pub target: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Show what would be removed, remove nothing
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub target: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Backup id, or `latest`
    #[arg(long)]
    pub backup_id: String,
    /// PostgreSQL target (required when several are configured)
    #[arg(long)]
    pub target: Option<String>,
    #[command(flatten)]
    pub into: IntoArgs,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Confirm overwriting a non-empty destination without a prompt
    #[arg(long)]
    pub yes: bool,
    /// Drop the backup's objects before recreating them (implied over a non-empty
    /// destination; the retry after a failed restore)
    #[arg(long)]
    pub clean: bool,
    /// Parallel pg_restore jobs (1 or more)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: u32,
    /// Skip the safety backup of a non-empty destination
    #[arg(long)]
    pub no_safety_backup: bool,
    /// Where to stage the dump [default: $TMPDIR]
    #[arg(long, value_name = "DIR")]
    pub staging_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[arg(long)]
    pub target: Option<String>,
    /// Backup whose row counts to compare with [default: latest]
    #[arg(long, default_value = "latest")]
    pub backup_id: String,
    #[command(flatten)]
    pub into: IntoArgs,
    #[command(flatten)]
    pub only: OnlyArgs,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    #[arg(long)]
    pub target: Option<String>,
    /// Use this backup (or `latest`) instead of taking a fresh one
    #[arg(long)]
    pub backup_id: Option<String>,
    /// Restore into a throwaway local PostgreSQL cluster instead of a scratch database
    #[arg(long)]
    pub sandbox: bool,
    /// Restore the backup's roles and tablespaces first (only with --sandbox, where it is
    /// the default when the backup holds them)
    #[arg(long, requires = "sandbox")]
    pub with_globals: bool,
    /// Do not restore object ownership: every object belongs to the restore role
    #[arg(long)]
    pub no_owner: bool,
    /// Parallel pg_restore jobs (1 or more)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: u32,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct RunbookArgs {
    #[command(subcommand)]
    pub action: Option<RunbookAction>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Debug, Subcommand)]
pub enum RunbookAction {
    /// Render one runbook with the live configuration
    Show {
        /// Runbook name (see `dr runbook`)
        name: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the sandbox running and print how to reach it (stop it with Ctrl-C)
    #[arg(long)]
    pub keep: bool,
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match crate::units::parse_duration(s)? {
        d if d.is_zero() => Err(
            "a time limit of 0 lets nothing finish; give a positive duration such as 10s".into(),
        ),
        d => Ok(d),
    }
}
