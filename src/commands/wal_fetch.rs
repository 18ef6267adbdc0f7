//! `dr wal-fetch NAME PATH`: PostgreSQL's restore_command. A file that is not archived is
//! exit 1 without a word (recovery asks for files past the end all the time); every
//! other failure says why.

use anyhow::Result;

use crate::cli::WalFetchArgs;
use crate::config::Config;
use crate::error::usage;
use crate::wal::{self, WalName};

pub async fn run(config: &Config, args: WalFetchArgs) -> Result<i32> {
    let wal = WalName::parse(&args.name).ok_or_else(|| {
        usage(format!(
            "{:?} is not a WAL file name; hint: restore_command must pass %f and %p, as in restore_command = '{}'",
            args.name,
            config.restore_command()
        ))
    })?;
    // The identity first: one that others can read is refused on every call, not only
    // for the segments that happen to be archived.
    let identities = super::identities(config, args.identity.as_deref())?;
    let storage = super::open_storage(config)?;
    let local_system = match args.system_id {
        Some(id) => Some(id),
        None => wal::read_control_system_id(&wal::data_dir_of(&args.path)).ok(),
    };
    let target = wal::resolve_target(
        config,
        storage.as_ref(),
        args.target.as_deref(),
        local_system,
    )
    .await?;
    let system_id = match local_system {
        Some(id) => id,
        None => match wal::archived_systems(storage.as_ref(), &target.name).await?.as_slice() {
            [] => {
                tracing::debug!("target {} has no WAL archive", target.name);
                return Ok(1);
            }
            [one] => *one,
            many => {
                return Err(usage(format!(
                    "target {} archives several clusters ({}) and {} is not in a data directory; hint: pass --system-id",
                    target.name,
                    many.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
                    args.path.display()
                )))
            }
        },
    };
    let prefix = wal::cluster_prefix(&target.name, system_id);
    let prefetch = wal::spool::Prefetch {
        config_path: &config.path,
        target: &target.name,
        system_id,
        identity: args.identity.as_deref(),
        ahead: config.wal.fetch_ahead(),
    };
    if let Some(segment_size) = args.prefetch {
        let (store, ids) = (storage.as_ref(), identities.as_ref());
        let spool = args.path.parent().unwrap_or(std::path::Path::new("."));
        wal::spool::fill(&prefetch, store, &prefix, segment_size, ids, &wal, spool).await?;
        return Ok(0);
    }
    if wal::spool::serve(&prefetch, &wal, &args.path) {
        return Ok(0);
    }
    let Some(file) = wal::fetch::find(storage.as_ref(), &prefix, &wal).await? else {
        tracing::debug!("{} is not archived under {prefix}", wal.name);
        return Ok(1);
    };
    let outcome =
        wal::fetch::fetch_to(storage.as_ref(), &file, &args.path, identities.as_ref()).await?;
    tracing::info!(name = %outcome.name, key = %outcome.key, bytes = outcome.raw_bytes, "fetched");
    wal::spool::start_prefetch(&prefetch, &wal, &args.path);
    Ok(0)
}
