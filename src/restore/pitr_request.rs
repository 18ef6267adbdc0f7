//! What a point-in-time restore is asked (`dr restore --pitr`, `dr drill --pitr`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::lineage::TimelineChoice;
use super::pitr_target::RecoveryTarget;
use crate::config::{Config, PostgresTarget};
use crate::encryption::Identities;
use crate::storage::Storage;

/// A point-in-time restore: the backup, the target of recovery, the data directory, and
/// what happens once the files are in place.
pub struct PitrRequest<'a> {
    pub config: &'a Config,
    pub storage: &'a dyn Storage,
    pub target: &'a PostgresTarget,
    pub recovery_target: RecoveryTarget,
    pub pgdata: &'a Path,
    pub backup_id: Option<&'a str>,
    pub identities: Option<Arc<Identities>>,
    /// Passed on to `dr wal-fetch` in restore_command.
    pub identity_file: Option<PathBuf>,
    pub start: bool,
    pub port: Option<u16>,
    /// Keep the backup's archive settings (the restored server becomes the primary).
    pub archive: bool,
    /// A drill's sandbox: the server listens on a socket in this directory only, with
    /// local trust, and nothing else.
    pub sandbox_socket_dir: Option<PathBuf>,
    /// `--timeline`: default the live server's, else the newest (with a warning).
    pub timeline: Option<TimelineChoice>,
    /// `--system-id`: the cluster, when the target name holds several.
    pub system_id: Option<u64>,
    /// `--new-primary`: `--archive` although the cluster's server still archives.
    pub new_primary: bool,
}
