//! `dr init`: create the storage and write its marker, once. Running it again is a no-op.

use anyhow::Result;
use serde::Serialize;

use crate::cli::{Format, FormatArgs};
use crate::config::Config;
use crate::output;
use crate::storage::marker::{self, StorageMarker};

#[derive(Debug, Serialize)]
struct InitReport {
    format_version: u32,
    ok: bool,
    storage: String,
    /// False when the storage was already initialised: nothing was written.
    created: bool,
    marker: StorageMarker,
}

pub async fn run(config: &Config, args: FormatArgs) -> Result<i32> {
    let storage = super::open_storage(config)?;
    let done = marker::ensure(storage.as_ref()).await?;
    let report = InitReport {
        format_version: crate::report::FORMAT_VERSION,
        ok: true,
        storage: storage.describe(),
        created: done.created,
        marker: done.marker,
    };
    output::emit(&match args.format {
        Format::Json => output::json(&report),
        Format::Table if report.created => format!(
            "initialised storage {}: wrote {}\n",
            report.storage,
            marker::MARKER_KEY
        ),
        Format::Table => format!(
            "storage {} is already initialised (by {} at {}); nothing changed\n",
            report.storage,
            report.marker.created_by,
            report
                .marker
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
    });
    Ok(0)
}
