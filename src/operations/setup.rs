//! What every command sets up before it works: the configuration with its fleets
//! expanded, the storage, the target, the identity that opens encrypted backups, the
//! staging directory, and what a killed run left on this host.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;

use crate::config::{Config, PostgresTarget};
use crate::pg::ConnTarget;
use crate::storage::{self, Storage};

pub fn sweep_leftovers() -> Vec<crate::leftovers::Leftover> {
    let found = crate::leftovers::sweep();
    for left in &found {
        match &left.error {
            None => tracing::warn!(
                "removed the {} left by a dr run that died (pid {})",
                left.resource.describe(),
                left.pid
            ),
            Some(e) => tracing::warn!(
                "found the {} left by a dr run that died (pid {}), and could not remove it: {e}; hint: remove it by hand",
                left.resource.describe(),
                left.pid
            ),
        }
    }
    found
}

/// Where the databases of a fleet with `databases = "all"` are learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// Ask the server (commands that connect to it anyway).
    Server,
    /// What storage holds of it (commands that read storage only: list, prune, status).
    Storage,
}

/// The configuration with every fleet (`databases = ...`) replaced by its members. A
/// member named with `--target fleet/database` is taken as named, without asking anyone,
/// so a restore of a dropped database still finds its target.
pub async fn load_config(
    path: Option<&Path>,
    target: Option<&str>,
    discovery: Discovery,
) -> Result<Config> {
    let mut config = Config::load(path)?;
    let fleets = config.fleets();
    if fleets.is_empty() {
        return Ok(config);
    }
    let mut stored: Option<Vec<String>> = None;
    for fleet in fleets {
        let named = target
            .filter(|t| !crate::config::is_glob(t))
            .and_then(|t| t.split_once(crate::config::MEMBER_SEPARATOR))
            .filter(|(f, d)| *f == fleet.name && !d.is_empty())
            .map(|(_, d)| d.to_string());
        if let Some(database) = named {
            config.expand_fleet(&fleet.name, &[database], true);
            continue;
        }
        match &fleet.databases {
            Some(crate::config::DatabaseSelection::List(list)) => {
                let list = list.clone();
                config.expand_fleet(&fleet.name, &list, false);
            }
            _ if discovery == Discovery::Storage => {
                if stored.is_none() {
                    stored = Some(stored_target_names(&config).await?);
                }
                let prefix = format!("{}{}", fleet.name, crate::config::MEMBER_SEPARATOR);
                let databases: Vec<String> = stored
                    .iter()
                    .flatten()
                    .filter_map(|n| n.strip_prefix(&prefix).map(str::to_string))
                    .collect();
                config.expand_fleet(&fleet.name, &databases, false);
            }
            _ => {
                let found = async {
                    let server = ConnTarget::parse(&fleet.resolve_url()?)?;
                    crate::pg::fleet::connectable_databases(&server).await
                }
                .await;
                match found {
                    Ok(databases) => config.expand_fleet(&fleet.name, &databases, false),
                    Err(e) => {
                        let error =
                            format!("cannot list the databases of fleet {}: {e:#}", fleet.name);
                        tracing::error!("{error}");
                        config.fleet_failed(&fleet.name, error);
                    }
                }
            }
        }
    }
    refuse_overlong_members(&mut config);
    Ok(config)
}

/// Members whose name would overflow a file name are reported now, by `dr check` and
/// `dr backup`, instead of failing mid-backup with "File name too long".
fn refuse_overlong_members(config: &mut Config) {
    let overlong: Vec<(String, String)> = config
        .postgres
        .iter()
        .filter(|t| t.database.is_some())
        .filter_map(|t| {
            crate::backup::catalog::storage_name_problem(&t.name).map(|e| (t.name.clone(), e))
        })
        .collect();
    for (member, error) in overlong {
        tracing::error!("{error}");
        config.member_refused(&member, error);
    }
}

/// The targets storage holds backups or status records of.
async fn stored_target_names(config: &Config) -> Result<Vec<String>> {
    let storage = open_storage(config)?;
    let mut names = std::collections::BTreeSet::new();
    // backups/<target>/<id>/<file>
    for o in storage.list(crate::backup::catalog::BACKUPS_PREFIX).await? {
        let parts: Vec<&str> = o.key.split('/').collect();
        if parts.len() >= 4 {
            names.insert(crate::config::target_from_storage(parts[1]));
        }
    }
    // status/<operation>/<target>.json
    for o in storage.list(crate::notify::state::STATUS_PREFIX).await? {
        if let [_, _, file] = o.key.split('/').collect::<Vec<_>>().as_slice() {
            if let Some(t) = file.strip_suffix(".json") {
                names.insert(crate::config::target_from_storage(t));
            }
        }
    }
    Ok(names.into_iter().collect())
}

pub fn open_storage(config: &Config) -> Result<Arc<dyn Storage>> {
    Ok(Arc::from(storage::open(config.storage()?)?))
}

/// The target a single-target command works on: the named one, or the only one.
pub fn single_target<'a>(config: &'a Config, name: Option<&str>) -> Result<&'a PostgresTarget> {
    match name {
        Some(n) => config.postgres_target(n),
        None => match config.postgres.as_slice() {
            [only] => Ok(only),
            [] => config.select_postgres(None).map(|v| v[0]),
            many => Err(crate::error::usage(format!(
                "{} PostgreSQL targets are configured; hint: choose one with --target ({})",
                many.len(),
                many.iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        },
    }
}

/// The identity that opens encrypted backups: `--identity`, else the configuration's.
pub fn identities(
    config: &Config,
    explicit: Option<&Path>,
) -> Result<Option<Arc<crate::encryption::Identities>>> {
    Ok(
        crate::encryption::Identities::load(config.encryption.as_ref(), config.dir(), explicit)?
            .map(Arc::new),
    )
}

pub fn staging_dir(explicit: Option<&Path>) -> std::path::PathBuf {
    explicit
        .map(Path::to_path_buf)
        .unwrap_or_else(crate::backup::default_staging_dir)
}
