//! Every clap definition: global flags, the subcommands and their arguments.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
  pg.archiving       archive_mode on, archive_command calls `dr wal-push`, the newest
                     archived segment younger than the RPO, no failure since the last
                     success (pg_stat_archiver)          [targets with wal_archiving]
  pg.replication     the role may stream a base backup: REPLICATION, a free WAL sender,
                     a pg_hba.conf line for replication  [targets with wal_archiving]
  wal.continuity     storage holds every segment from the newest base backup's start to
                     the newest archived one, no gap     [targets with wal_archiving]
  drill.recent       a successful drill within objectives.drill_every (warn if none)
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
    /// Archive one WAL file into storage (PostgreSQL's archive_command)
    #[command(after_help = WAL_PUSH_HELP)]
    WalPush(WalPushArgs),
    /// Fetch one archived WAL file from storage (PostgreSQL's restore_command)
    #[command(after_help = WAL_FETCH_HELP)]
    WalFetch(WalFetchArgs),
}

const WAL_PUSH_HELP: &str = "\
In postgresql.conf (as the OS user PostgreSQL runs as):
  archive_mode = on
  archive_command = 'dr --config /etc/dr/dr.toml wal-push %p'

The file is stored compressed under wal/<target>/<system identifier>/, named with the
SHA-256 of its content. Pushing the same content again succeeds; different content under
an archived name is refused and the stored copy kept. The target is --target, else the
only [[postgres]] target, else the one that already archives this cluster.

Exit status:
  0    the file is durable in storage (fsynced, or the S3 upload completed), or was
       already archived with the same content
  1    not archived: PostgreSQL keeps the file and retries (the reason is on stderr)
  2    usage or configuration error; nothing was changed
  130  interrupted; nothing was committed";

const WAL_FETCH_HELP: &str = "\
For recovery (postgresql.conf or recovery settings):
  restore_command = 'dr --config /etc/dr/dr.toml wal-fetch %f %p'

The cluster is the one whose data directory holds PATH (global/pg_control), or
--system-id. The SHA-256 of the decompressed file must match its name before it is moved
to PATH.

Exit status:
  0    fetched, verified and written to PATH
  1    not in the archive (recovery's normal end: nothing is printed), or failed (the
       reason is on stderr: unreachable storage, damaged copy, ...)
  2    usage or configuration error
  130  interrupted; PATH was not written";

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
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
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
    /// Check this destination instead of the target's database
    #[arg(long, value_name = "URL")]
    pub into: Option<String>,
    /// Where a restore would stage the dump [default: $TMPDIR]
    #[arg(long, value_name = "DIR")]
    pub staging_dir: Option<PathBuf>,
    /// Validate the newest physical base backup (`latest` means the newest dump otherwise)
    #[arg(long)]
    pub physical: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct WalPushArgs {
    /// The WAL file (%p in archive_command)
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// The PostgreSQL target whose archive this is (needed with several targets until
    /// the cluster has archived once)
    #[arg(long)]
    pub target: Option<String>,
    /// `json` prints what was stored; `table` prints nothing on success
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct WalFetchArgs {
    /// The WAL file name (%f in restore_command)
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Where to write it (%p in restore_command)
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    #[arg(long)]
    pub target: Option<String>,
    /// The cluster's system identifier [default: from PATH's data directory]
    #[arg(long, value_name = "ID")]
    pub system_id: Option<u64>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Back up only this target
    #[arg(long)]
    pub target: Option<String>,
    /// A physical base backup of the whole cluster (pg_basebackup; needs WAL archiving
    /// with `dr wal-push`) instead of a pg_dump of the database
    #[arg(long)]
    pub physical: bool,
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
    /// Restore into this existing database instead of the target's
    #[arg(long, value_name = "URL")]
    pub into: Option<String>,
    /// Confirm overwriting a non-empty destination without a prompt
    #[arg(long)]
    pub yes: bool,
    /// Parallel pg_restore jobs
    #[arg(long, default_value_t = 1)]
    pub jobs: u32,
    /// Skip the safety backup of a non-empty destination
    #[arg(long)]
    pub no_safety_backup: bool,
    /// Restore roles and tablespaces first (when the backup holds them)
    #[arg(long)]
    pub with_globals: bool,
    /// Do not restore object ownership (when the owning roles do not exist there)
    #[arg(long)]
    pub no_owner: bool,
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
    /// Verify this database instead of the target's
    #[arg(long, value_name = "URL")]
    pub into: Option<String>,
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
    /// Parallel pg_restore jobs
    #[arg(long, default_value_t = 1)]
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

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s)
}
