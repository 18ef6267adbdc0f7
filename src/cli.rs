//! Every clap definition: global flags, the subcommands and their arguments.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::restore::selection::{Selection, TableName};

/// The exit status table every help text ends with (and the man pages' EXIT STATUS).
macro_rules! exit_status {
    () => {
        "Exit status:
  0    success
  1    the operation failed; the error names the step and the fix
  2    usage or configuration error; nothing was changed
  130  interrupted (Ctrl-C, SIGTERM); children killed, temporary data removed"
    };
}

/// Help that ends with examples and the exit status table.
macro_rules! examples {
    ($($line:literal),+ $(,)?) => {
        concat!("Examples:\n", $("  ", $line, "\n",)+ "\n", exit_status!())
    };
}

// After the macro above: the arguments of the evidence commands use it too.
mod evidence;
pub use evidence::*;
mod help;
use help::STATUS_HELP;

const TOP_HELP: &str = examples!(
    "dr check                        # ready for an incident?",
    "dr backup && dr prune           # the nightly job",
    "dr restore --backup-id latest   # 3 a.m.: validate, confirm, restore, verify",
);

const CHECK_HELP: &str = "\
Checks:
  Each runs under --timeout; PostgreSQL targets are critical by default, Redis not.
  config             dr.toml is valid; warns on an inline password in a readable file
  contacts           at least one emergency contact (warn)
  pg.connect         connects and runs SELECT 1; reports the server version
  pg.tools           pg_dump/pg_restore found and not older than the server
  pg.privileges      the role can read every table (names the unreadable ones)
  pg.mark            (WAL archiving) the role can make restore points and switch WAL
  redis.connect      PING answers
  redis.persistence  last RDB save / AOF write succeeded; persistence on if required
  redis.backup       a complete Redis backup younger than the RPO (backup = true targets)
  storage.writable   initialised (`dr init`'s dr-storage.json; fails if WAL archiving
                     is on without it) and a probe object written, read back, deleted
  storage.object_lock  S3 Object Lock really applied (when object_lock_days is set)
  backup.latest      a complete backup younger than the RPO (warn past 80%)
  backup.integrity   the newest backup hashes to its manifest (timeout per read)
  backup.globals     a lost cluster would come back with its roles (include_globals)
  pg.archiving       archive_mode on, archive_command calls `dr wal-push`, the newest
                     archived segment younger than the RPO, no failure since the last
                     success (pg_stat_archiver)          [targets with wal_archiving]
  pg.replication     the role may stream a base backup: REPLICATION, a free WAL sender,
                     a pg_hba.conf line for replication  [targets with wal_archiving]
  wal.continuity     storage holds every segment from the newest base backup's start to
                     the newest archived one, no gap; the server writes the archive's
                     newest timeline (else split brain)  [targets with wal_archiving]
  wal.fetch          the server's OS user fetches and opens the newest archived segment
                     with `dr wal-fetch`, as restore_command would
                                                         [targets with wal_archiving]
  pg.summarize_wal   summarize_wal is on, so an incremental base backup can be taken
                     (PostgreSQL 17+)             [targets with incremental = true]
  drill.recent       a successful drill within objectives.drill_every (warn if none)
  drill.leftovers    nothing left by a dr that died: files on this host (removed),
                     scratch databases on the target's server (warn)
  rto.predicted      a restore of the newest backup (plus WAL since, for PITR) at the
                     throughput drills measured: warn above 80% of the RTO, fail above
                     it; \"not measured\" (warn) before a drill
  evidence.chain     the newest records of the evidence log verify (links, signatures,
                     report hashes); warns while records are unsigned
  encryption.keys    (with [encryption]) recipients parse, the identity here opens the
                     newest backup, a drill decrypted a backup within drill_every
  runbooks           every runbook renders with this configuration
  notify.sinks       each [[notify]] sink accepts a connection; nothing is sent (not
                     critical; `dr notify test` sends a real test event)

Formats:
  table       human table; colour and symbols only on a terminal without NO_COLOR
  json        {\"format_version\", \"ok\", \"ready\", \"strict\", \"checks\": [{\"name\",
              \"target\", \"status\", \"critical\", \"message\", \"duration_ms\"}]}
  junit       one testcase per check; a fail is a <failure>, and under --strict
              a warn is one too, so failures > 0 whenever the exit status is 1
  prometheus  dr_check_status{check,target,critical} (0 pass, 1 warn, 2 fail),
              dr_check_duration_seconds{...} (each check's own time), dr_ready

Examples:
  dr check
  dr check --strict --format junit > dr-check.xml   # gate a deploy in CI
  dr check --only pg --only backup --timeout 30s

--notify tells the [[notify]] sinks when readiness changed since the previous
`check --notify` (state kept in storage under status/); --metrics-file PATH writes the
prometheus format plus dr_last_success_timestamp_seconds and dr_rpo_seconds, atomically.

Exit status:
  0    ready: no critical check failed (with --strict: every check passed)
  1    not ready
  2    usage or configuration error; nothing was changed
  130  interrupted (Ctrl-C, SIGTERM)";

#[derive(Debug, Parser)]
#[command(
    name = "dr",
    version = crate::version::LINE,
    disable_version_flag = true,
    arg_required_else_help = true,
    about = "Provable disaster recovery for PostgreSQL and Redis",
    long_about = "Provable disaster recovery for PostgreSQL and Redis: readiness checks before an incident, checksummed backups, and restores that are validated, verified and timed against your RTO/RPO.",
    after_help = TOP_HELP
)]
pub struct Cli {
    /// Configuration file [default: $DR_CONFIG, else ./dr.toml]
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        help_heading = "Global options"
    )]
    pub config: Option<PathBuf>,

    /// More logs on stderr (-v debug, -vv trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = "Global options")]
    pub verbose: u8,

    /// Only errors on stderr
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        help_heading = "Global options"
    )]
    pub quiet: bool,

    /// Print the version, git commit, build date and PostgreSQL client tools (as `dr version`)
    #[arg(short = 'V', long)]
    pub version: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set up the storage once: create it and write its marker (dr-storage.json)
    #[command(after_help = INIT_HELP)]
    Init(FormatArgs),
    /// Readiness gate: probe PostgreSQL, Redis, tools, storage, backups and drills
    #[command(after_help = CHECK_HELP)]
    Check(CheckArgs),
    /// Prove a backup could be restored, changing nothing
    #[command(after_help = examples!(
        "dr validate",
        "dr validate --backup-id main-20261125T054631Z --target main",
        "dr validate --backup-id main-20261125T054631Z --target main --create",
        "dr validate --into-env RECOVERY_URL --create --only-table shop.orders \\\n      --format json",
        "dr validate --physical    # the newest base backup, with pg_verifybackup",
    ))]
    Validate(ValidateArgs),
    /// Take a checksummed backup of each (or one) PostgreSQL and Redis target
    #[command(after_help = examples!(
        "dr backup",
        "dr backup --target main --format json",
        "dr backup --target sessions     # a [[redis]] target with backup = true",
        "dr backup && dr prune           # the nightly job",
        "dr backup --physical --target main   # a base backup for WAL archiving",
    ))]
    Backup(BackupArgs),
    /// List complete backups, newest first
    #[command(after_help = examples!(
        "dr list",
        "dr list --target main --format json | jq -r '.backups[0].id'",
    ))]
    List(ListArgs),
    /// The scorecard: one row per target (backup age vs RPO, drill, WAL), worst first
    #[command(after_help = STATUS_HELP)]
    Status(StatusArgs),
    /// Remove backups outside the [retention] policy, and leftovers of crashed runs
    #[command(after_help = examples!(
        "dr prune --dry-run              # what would go, and why",
        "dr prune --target main",
    ))]
    Prune(PruneArgs),
    /// Keep a backup outside every retention rule until it is unpinned
    #[command(after_help = examples!(
        "dr pin main-20261125T054631Z --target main --reason 'before migration 42'",
        "dr pin latest --target main --reason 'legal hold, ticket 4711'",
    ))]
    Pin(PinArgs),
    /// Release a pinned backup to the retention rules again
    #[command(after_help = examples!(
        "dr unpin main-20261125T054631Z --target main",
        "dr unpin latest --target main",
    ))]
    Unpin(PinArgs),
    /// Restore a backup: validate, confirm, safety backup, restore, verify
    #[command(after_help = examples!(
        "dr restore --backup-id latest --target main",
        "# the database was dropped:",
        "dr restore --backup-id latest --target main --create --jobs 4",
        "# a new cluster, as its superuser:",
        "dr restore --backup-id latest --with-globals --create",
        "dr restore --backup-id main-20261125T054631Z --into-env RECOVERY_URL \\\n      --create --only-table shop.orders",
        "dr restore --target sessions --backup-id latest --yes --flush   # Redis",
        "dr restore --target main --pitr --to-time 2026-11-25T17:40:00Z \\\n      --pgdata /srv/pg/restored --start --port 5433",
        "# the new primary:",
        "dr restore --target main --pitr --to-latest --pgdata /srv/pg/new \\\n      --start --archive",
    ))]
    Restore(RestoreArgs),
    /// Verify a restored database or Redis against a backup
    #[command(after_help = examples!(
        "dr verify --target main",
        "dr verify --into-env RECOVERY_URL --only-table shop.orders \\\n      --backup-id main-20261125T054631Z",
    ))]
    Verify(VerifyArgs),
    /// Rehearse a recovery in a throwaway destination; measure RTO and RPO
    #[command(after_help = examples!(
        "dr drill",
        "dr drill --sandbox --backup-id latest --format json",
        "dr drill --sandbox --no-owner",
        "dr drill --pitr --target main   # base backup + WAL, to five minutes ago",
        "dr drill --pitr --to-time 2026-11-25T17:40:00Z --format json",
    ))]
    Drill(DrillArgs),
    /// Evidence for auditors: verify the signed log of every recovery proof, export it
    #[command(after_help = examples!(
        "dr evidence verify",
        "dr evidence verify --public-key 3b6a27bc...   # on the auditor's host",
        "dr evidence export --since 90d --format html --output evidence.html",
        "dr evidence export --since 365d --format json --output evidence.json",
        "dr evidence keygen --output /etc/dr/evidence.pem",
    ))]
    Evidence(EvidenceArgs),
    /// Emergency contacts and vendors from dr.toml
    #[command(after_help = examples!("dr contacts", "dr contacts --format json"))]
    Contacts(FormatArgs),
    /// Incident runbooks, filled in from the live configuration
    #[command(after_help = examples!(
        "dr runbook",
        "dr runbook show database-failure",
        "dr runbook show database-failure --format json",
    ))]
    Runbook(RunbookArgs),
    /// Notification sinks ([[notify]] in dr.toml)
    #[command(after_help = examples!(
        "dr notify test",
        "dr notify test --sink ops --format json",
    ))]
    Notify(NotifyArgs),
    /// A first run: sandbox PostgreSQL with a sample shop, then check, backup, list, drill
    #[command(after_help = examples!("dr demo", "dr demo --keep"))]
    Demo(DemoArgs),
    /// Shell completions for bash, zsh, fish or PowerShell, on stdout
    #[command(after_help = examples!(
        "dr completions bash > /etc/bash_completion.d/dr",
        "dr completions zsh > \"${fpath[1]}/_dr\"",
        "dr completions fish > ~/.config/fish/completions/dr.fish",
    ))]
    Completions(CompletionsArgs),
    /// The manual page dr(1) on stdout, or every page (dr-check(1)...) into a directory
    #[command(after_help = examples!(
        "dr man | man -l -",
        "dr man --dir /usr/local/share/man/man1",
    ))]
    Man(ManArgs),
    /// Version, git commit, build date and the PostgreSQL client tools found on PATH
    #[command(after_help = examples!("dr version", "dr version --format json"))]
    Version(VersionArgs),
    /// Archive one WAL file into storage (PostgreSQL's archive_command)
    #[command(after_help = WAL_PUSH_HELP)]
    WalPush(WalPushArgs),
    /// Fetch one archived WAL file from storage (PostgreSQL's restore_command)
    #[command(after_help = WAL_FETCH_HELP)]
    WalFetch(WalFetchArgs),
    /// Make a named restore point (pg_create_restore_point) and record it for --to-name
    #[command(after_help = examples!(
        "dr mark before-migration-42 --target main",
        "# then: dr restore --pitr --to-name before-migration-42 ...",
        "dr mark release-7 --format json",
    ))]
    Mark(MarkArgs),
}

const INIT_HELP: &str = concat!(
    "\
Creates the storage of [storage] url (a local directory, or the prefix of a bucket) and
marks it with dr-storage.json (format version, creation time, host). `dr wal-push` only
writes into a marked storage: a missing marker means an unmounted volume or a wrong url,
and PostgreSQL then keeps its WAL and retries. Running it again changes nothing. The first
`dr backup` into a new storage marks it too.

Examples:
  dr init
  dr init --format json
  # owned by the user wal-push runs as:
  sudo -u postgres dr --config /etc/dr/dr.toml init

",
    exit_status!()
);

const WAL_PUSH_HELP: &str = concat!(
    "\
In postgresql.conf (then restart PostgreSQL), run as the OS user PostgreSQL runs as:
  archive_mode = on
  archive_command = 'dr --config /etc/dr/dr.toml wal-push %p'

The file is stored compressed under wal/<target>/<system identifier>/, named with the
SHA-256 of its content, and dr exits 0 only once it is durable (fsynced, or the S3 upload
completed). Pushing the same content again succeeds; different content under an archived
name is refused and the stored copy kept. The target is --target, else the only
[[postgres]] target, else the one that already archives this cluster. The storage must
be initialised (`dr init`): wal-push never creates it, so an unmounted volume fails
loudly (exit 1, PostgreSQL keeps the WAL) instead of filling the mount point.

Examples:
  # as archive_command runs it:
  dr wal-push pg_wal/000000010000000000000003
  # with several targets:
  dr wal-push --target main pg_wal/000000010000000000000003
  dr wal-push --format json \\
      /var/lib/postgresql/15/main/pg_wal/00000002.history

",
    exit_status!()
);

const WAL_FETCH_HELP: &str = concat!(
    "\
For recovery (postgresql.conf or recovery settings):
  restore_command = 'dr --config /etc/dr/dr.toml wal-fetch %f %p'

The cluster is the one whose data directory holds PATH (global/pg_control), or
--system-id. The SHA-256 of the decompressed file must match its name before the file is
moved to PATH. A file that is not archived is exit 1 without a word (recovery's normal
end); every other failure (unreachable storage, a damaged copy) is exit 1 with the reason
on stderr.

Examples:
  # as restore_command runs it:
  dr wal-fetch 000000010000000000000003 pg_wal/RECOVERYXLOG
  dr wal-fetch --system-id 7712118149896994337 \\
      000000010000000000000003 /tmp/seg

",
    exit_status!()
);

/// Output of commands that print tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Output of commands that print prose rather than a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TextFormat {
    // `table` was its name once; scripts may still say so.
    #[value(alias = "table")]
    Text,
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
    /// Table format: show only the rows that warn or fail, failures first (the summary
    /// still counts every check; JSON, JUnit and Prometheus always hold every row)
    #[arg(long)]
    pub problems_only: bool,
    /// Run only this check (name like pg.connect, or family like pg); repeatable
    #[arg(long, value_name = "NAME")]
    pub only: Vec<String>,
    /// Time limit for each check
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    pub timeout: Duration,
    /// Tell the [[notify]] sinks when readiness changed since the last `check --notify`
    #[arg(long)]
    pub notify: bool,
    /// Write Prometheus metrics here, atomically (for node_exporter's textfile collector)
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Backup id (see `dr list`), or `latest` for the newest regular backup
    #[arg(long, default_value = "latest")]
    pub backup_id: String,
    /// Target from dr.toml, PostgreSQL or Redis (required when several are configured)
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    #[command(flatten)]
    pub into: IntoArgs,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Where a restore would stage the dump [default: $TMPDIR]
    #[arg(long, value_name = "DIR")]
    pub staging_dir: Option<PathBuf>,
    /// Validate the newest physical base backup (`latest` means the newest dump otherwise)
    #[arg(long)]
    pub physical: bool,
    /// The age identity (private key file) that opens encrypted backups; overrides
    /// [encryption] identity_file and identity_env
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Output format
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

/// What `verify` compares, when not every table (PostgreSQL targets only).
#[derive(Debug, Clone, Default, Args)]
pub struct VerifyOnlyArgs {
    /// Compare only this table's rows with the backup's, leaving the rest of the database
    /// and production's other services unchecked (SCHEMA.TABLE; repeatable)
    #[arg(long, value_name = "SCHEMA.TABLE", value_parser = TableName::parse)]
    pub only_table: Vec<TableName>,
    /// Compare only the tables of this schema (repeatable)
    #[arg(long, value_name = "SCHEMA")]
    pub only_schema: Vec<String>,
}

impl VerifyOnlyArgs {
    pub fn selection(&self) -> Selection {
        Selection {
            tables: self.only_table.clone(),
            schemas: self.only_schema.clone(),
        }
    }
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
pub struct PinArgs {
    /// The backup's id (see `dr list`), or `latest`
    #[arg(value_name = "ID")]
    pub backup_id: String,
    /// Target from dr.toml (required when several are configured)
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// Why it is kept (shown by `dr list` and `dr prune`); `dr pin` only
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct MarkArgs {
    /// The restore point's name: 1 to 63 letters, digits, '-', '_' or '.'
    #[arg(value_name = "NAME")]
    pub name: String,
    /// PostgreSQL target from dr.toml (required when several are configured)
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// Output format
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
    #[arg(long, value_name = "NAME")]
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
    /// The PostgreSQL target whose archive to read (needed with several targets unless
    /// the cluster has archived under exactly one)
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// The cluster's system identifier [default: from PATH's data directory]
    #[arg(long, value_name = "ID")]
    pub system_id: Option<u64>,
    /// The age identity (private key file) that opens encrypted segments; overrides
    /// [encryption] identity_file and identity_env
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// dr's own background prefetcher (segment size in bytes): fills the spool beside PATH
    #[arg(long, hide = true, value_name = "SEGMENT_SIZE")]
    pub prefetch: Option<u64>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Back up only this target, PostgreSQL or Redis [default: every target in dr.toml]
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// A physical base backup of the whole cluster (pg_basebackup; needs WAL archiving
    /// with `dr wal-push`) instead of a pg_dump of the database
    #[arg(long)]
    pub physical: bool,
    /// With --physical: only the blocks changed since the newest base backup of the cluster
    /// (PostgreSQL 17+, summarize_wal = on)
    #[arg(long, requires = "physical")]
    pub incremental: bool,
    /// Back up this many targets at once (never two of one database at once; connections
    /// stay within [connections] max_per_server) [default: [backup] parallel, else 4]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: Option<u16>,
    /// Output format (json: the new manifests)
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Write Prometheus metrics here, atomically (for node_exporter's textfile collector)
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// List only this target's backups, PostgreSQL or Redis [default: every target]
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// Output format (json: the manifests)
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only these targets: a name, a fleet, or a glob such as 'shop-*' [default: every target]
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// Output format (json: every row with its figures)
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Show what would be removed, remove nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Prune only this target's backups, PostgreSQL or Redis [default: every target in
    /// dr.toml]
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Write Prometheus metrics here, atomically (for node_exporter's textfile collector)
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Backup id (see `dr list`), or `latest` for the newest regular backup; with --pitr,
    /// the physical base backup to start from [default: the newest that fits the target]
    #[arg(long, required_unless_present = "pitr")]
    pub backup_id: Option<String>,
    #[command(flatten)]
    pub pitr: PitrArgs,
    /// Target from dr.toml, PostgreSQL or Redis (required when several are configured)
    #[arg(long, value_name = "NAME")]
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
    /// Redis: empty the destination (FLUSHALL) before restoring, after the safety backup
    #[arg(long)]
    pub flush: bool,
    /// Redis, RDB backups: write the RDB to this new file (with the steps to load it)
    /// instead of restoring into a server
    #[arg(long, value_name = "PATH", conflicts_with_all = ["into", "flush"])]
    pub rdb_file: Option<PathBuf>,
    /// Parallel restore jobs, 1 to 64: into a database without objects, N sessions load
    /// the rows (a large table too) and pg_restore --jobs N builds the indexes; over one
    /// with objects, pg_restore --jobs N on the staged, decompressed archive
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: u32,
    /// Skip the safety backup of a non-empty destination
    #[arg(long)]
    pub no_safety_backup: bool,
    /// Where to stage the dump [default: $TMPDIR]
    #[arg(long, value_name = "DIR")]
    pub staging_dir: Option<PathBuf>,
    /// The age identity (private key file) that opens encrypted backups; overrides
    /// [encryption] identity_file and identity_env
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Output format
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// `dr restore --pitr`: a physical base backup plus archived WAL, replayed to a target.
#[derive(Debug, Clone, Default, Args)]
pub struct PitrArgs {
    /// Point-in-time restore: unpack a physical base backup into --pgdata and replay the
    /// archived WAL up to --to-time, --to-lsn, --to-name or --to-latest; with
    /// --only-table/--only-schema and --into-env instead of --pgdata, copy just those
    /// tables as of the target into another database
    #[arg(long)]
    pub pitr: bool,
    /// Recover up to this time (RFC 3339 or `YYYY-MM-DD HH:MM:SS[+zz]`; UTC without a zone):
    /// every transaction committed at or before it, none after
    #[arg(long, value_name = "TIME", requires = "pitr")]
    pub to_time: Option<String>,
    /// Recover up to this WAL position (like 0/3000060)
    #[arg(long, value_name = "LSN", requires = "pitr")]
    pub to_lsn: Option<String>,
    /// Recover up to this named restore point (`dr mark NAME`)
    #[arg(long, value_name = "MARK", requires = "pitr")]
    pub to_name: Option<String>,
    /// Recover everything archived
    #[arg(long, requires = "pitr")]
    pub to_latest: bool,
    /// The new data directory (absent or empty)
    #[arg(long, value_name = "DIR", requires = "pitr")]
    pub pgdata: Option<PathBuf>,
    /// Start PostgreSQL on it, wait for recovery to end and check the target was reached
    #[arg(long, requires = "pitr")]
    pub start: bool,
    /// The port the restored server listens on [default: its postgresql.conf's]
    #[arg(long, value_name = "N", requires = "pitr")]
    pub port: Option<u16>,
    /// Keep the backup's WAL archiving on the restored server (it becomes the primary and
    /// archives its new timeline); without it the restored server does not archive.
    /// Refused while the cluster's old server still archives, unless --new-primary
    #[arg(long, requires = "pitr")]
    pub archive: bool,
    /// With --archive: make a new primary although the old server of the same cluster
    /// still runs and archives (two primaries, on purpose)
    #[arg(long, requires = "archive")]
    pub new_primary: bool,
    /// The timeline to follow: a number, `latest` (the newest archived) or `current` (the
    /// live server's) [default: the live server's when it answers, else the newest, with a
    /// warning naming the others]
    #[arg(long, value_name = "N|latest|current", requires = "pitr")]
    pub timeline: Option<String>,
    /// The cluster (system identifier) to restore when the target's archive holds several
    /// [default: the live server's, else the only one stored]
    #[arg(long, value_name = "ID", requires = "pitr")]
    pub system_id: Option<u64>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Target from dr.toml, PostgreSQL or Redis (required when several are configured)
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// Backup whose row counts (Redis: keys) to compare with (an id, or `latest`)
    #[arg(long, default_value = "latest")]
    pub backup_id: String,
    #[command(flatten)]
    pub into: IntoArgs,
    #[command(flatten)]
    pub only: VerifyOnlyArgs,
    /// Output format
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// Target from dr.toml, PostgreSQL or Redis (required when several are configured)
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// Use this backup (or `latest`) instead of taking a fresh one
    #[arg(long)]
    pub backup_id: Option<String>,
    /// Restore into a throwaway local PostgreSQL cluster instead of a scratch database
    #[arg(long)]
    pub sandbox: bool,
    /// Point-in-time drill: replay a physical base backup and the archived WAL into a
    /// throwaway data directory (targets with wal_archiving), verify, measure RTO and RPO
    #[arg(long, conflicts_with_all = ["sandbox", "with_globals", "no_owner"])]
    pub pitr: bool,
    /// With --pitr: recover to this time [default: five minutes ago, or the end of the
    /// archive when that lies outside the restorable window]
    #[arg(long, value_name = "TIME", requires = "pitr")]
    pub to_time: Option<String>,
    /// With --pitr: recover everything archived (as `dr restore --pitr --to-latest`)
    #[arg(long, requires = "pitr", conflicts_with = "to_time")]
    pub to_latest: bool,
    /// With --pitr: the timeline to follow, a number, `latest` or `current` (as `dr
    /// restore --pitr --timeline`)
    #[arg(long, value_name = "N|latest|current", requires = "pitr")]
    pub timeline: Option<String>,
    /// With --pitr: the cluster (system identifier) when the target's archive holds several
    #[arg(long, value_name = "ID", requires = "pitr")]
    pub system_id: Option<u64>,
    /// Restore the backup's roles and tablespaces first (only with --sandbox, where it is
    /// the default when the backup holds them)
    #[arg(long, requires = "sandbox")]
    pub with_globals: bool,
    /// Do not restore object ownership: every object belongs to the restore role
    #[arg(long)]
    pub no_owner: bool,
    /// Parallel restore jobs, 1 to 64 (as `dr restore --jobs`)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: u32,
    /// The age identity (private key file) that opens encrypted backups; overrides
    /// [encryption] identity_file and identity_env
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Output format (json: the stored drill report)
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Write Prometheus metrics here, atomically (for node_exporter's textfile collector)
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunbookArgs {
    #[command(subcommand)]
    pub action: Option<RunbookAction>,
    /// Output format of the list (and of `show`, when given before it)
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Debug, Subcommand)]
pub enum RunbookAction {
    /// Render one runbook with the live configuration
    #[command(after_help = examples!(
        "dr runbook show database-failure",
        "dr runbook show accidental-deletion --target main --route dump",
        "dr runbook show redis-failure --target sessions --format json",
    ))]
    Show {
        /// Runbook name (see `dr runbook`)
        name: String,
        /// The PostgreSQL or Redis target to render it for (default: the first of each)
        #[arg(long)]
        target: Option<String>,
        /// How data comes back: pitr (base backup + WAL; default where the target archives
        /// its WAL) or dump
        #[arg(long, value_enum)]
        route: Option<crate::runbook::Route>,
        /// Output format: the Markdown text, or its sections and steps as JSON
        #[arg(long, value_enum, default_value = "text")]
        format: TextFormat,
    },
}

#[derive(Debug, Args)]
pub struct NotifyArgs {
    #[command(subcommand)]
    pub action: NotifyAction,
}

#[derive(Debug, Subcommand)]
pub enum NotifyAction {
    /// Send a test event to every sink (PagerDuty: trigger, then resolve; heartbeat: /log)
    #[command(after_help = examples!(
        "dr notify test",
        "dr notify test --sink ops --format json",
    ))]
    Test {
        /// Only this sink (its name, or its kind when unnamed)
        #[arg(long)]
        sink: Option<String>,
        /// Output format
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

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write dr.1 and one page per subcommand (dr-check.1, ...) here instead of dr.1 to stdout
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    pub format: TextFormat,
}

pub(crate) fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match crate::units::parse_duration(s)? {
        d if d.is_zero() => Err(
            "a time limit of 0 lets nothing finish; give a positive duration such as 10s".into(),
        ),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every command, nested ones included, with its full name (`dr runbook show`).
    fn all_commands() -> Vec<(String, clap::Command)> {
        fn walk(prefix: &str, cmd: &clap::Command, out: &mut Vec<(String, clap::Command)>) {
            let name = format!("{prefix}{}", cmd.get_name());
            out.push((name.clone(), cmd.clone()));
            for sub in cmd.get_subcommands() {
                walk(&format!("{name} "), sub, out);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        let mut out = Vec::new();
        walk("", &cmd, &mut out);
        out
    }

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_is_described_and_defaults_are_shown_once() {
        for (name, cmd) in all_commands() {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if ["help", "version"].contains(&id) && arg.get_help().is_none() {
                    continue; // clap's own
                }
                let help = arg
                    .get_help()
                    .unwrap_or_else(|| panic!("`{name}`: --{id} has no description"))
                    .to_string();
                if !arg.get_default_values().is_empty() {
                    assert!(
                        !help.contains("[default:"),
                        "`{name}`: --{id} shows its default twice: {help}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_command_ends_with_examples_and_the_exit_status() {
        for (name, cmd) in all_commands() {
            if name.split(' ').any(|word| word == "help") {
                continue; // clap's own `help` command
            }
            let after = cmd
                .get_after_help()
                .unwrap_or_else(|| panic!("`{name}` has no after_help"))
                .to_string();
            let examples = after
                .split("Examples:\n")
                .nth(1)
                .unwrap_or_else(|| panic!("`{name}` has no examples"));
            let runs: Vec<&str> = examples
                .lines()
                .take_while(|l| !l.is_empty())
                .filter(|l| l.trim_start().starts_with("dr "))
                .collect();
            assert!(runs.len() >= 2, "`{name}`: fewer than two examples");
            // Each example calls this command (the top level may call any).
            if name != "dr" {
                assert!(
                    runs.iter().all(|r| r.contains(&name)),
                    "`{name}`: an example calls another command: {runs:?}"
                );
            }
            assert!(
                after.contains("Exit status:\n  0 "),
                "`{name}`: no exit status"
            );
            assert!(after.contains("\n  2 "), "`{name}`: exit status 2 missing");
        }
    }
}
