//! What `wal.continuity` and `wal.fetch` ask the live server: its cluster, the last
//! segment it archived and the timeline it writes.

use anyhow::Result;

use crate::pg::slots::SharedClient;
use crate::wal::WalName;

/// What `wal.continuity` and `wal.fetch` ask the live server.
pub(super) struct LiveServer {
    pub(super) system_id: u64,
    pub(super) last_archived: Option<String>,
    /// The timeline it writes now (primaries only: a standby follows whatever it replays).
    pub(super) timeline: Option<u32>,
}

pub(super) async fn live_server(shared: &SharedClient) -> Result<LiveServer> {
    let client = shared.client().await?;
    let row = client
        .query_one(
            "SELECT (SELECT system_identifier::text FROM pg_control_system()), last_archived_wal,
                    CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END
             FROM pg_stat_archiver",
            &[],
        )
        .await?;
    Ok(LiveServer {
        system_id: row.try_get::<_, String>(0)?.parse()?,
        last_archived: row.try_get(1)?,
        timeline: row
            .try_get::<_, Option<String>>(2)?
            .as_deref()
            .and_then(WalName::parse)
            .map(|w| w.timeline),
    })
}
