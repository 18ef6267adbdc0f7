//! Base backups streamed from a standby (`backup_from = "standby"`): the primary keeps only
//! the archive's WAL flowing, the standby carries the read. PostgreSQL does not wait for
//! archiving when a standby ends a backup and writes no backup history file, so `dr` reads
//! the end point from `backup_manifest` (its last WAL range ends where the copy is
//! consistent: the standby's minimum recovery point) and itself waits, bounded, until the
//! primary has archived the segment holding it.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use crate::pg::{self, ConnTarget};
use crate::storage::Storage;
use crate::wal::{self, segment_name, Lsn, WalName};

/// How long the primary gets to archive the end segment beyond its `archive_timeout`.
pub const ARCHIVE_GRACE: Duration = Duration::from_secs(60);

/// `host:port` of a connection, never its password: what the manifest records.
pub fn host_port(conn: &ConnTarget) -> String {
    let host = conn
        .config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = conn.config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

/// What a server says about itself, as far as backing up from it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    pub system_id: u64,
    pub in_recovery: bool,
    pub may_replicate: bool,
    pub has_tablespaces: bool,
}

/// Refuses a standby that is not one of this primary's standbys or could not stream the
/// backup: it must be in recovery, of the same cluster, with a role that may replicate
/// and no tablespaces outside its data directory.
pub fn check_standby(
    primary: &ServerFacts,
    standby: &ServerFacts,
    target: &str,
    server: &str,
    user: &str,
) -> Result<()> {
    if !standby.in_recovery {
        bail!(
            "the standby of target {target} ({server}) is not in recovery: it was promoted or is not a standby; hint: point standby_url at a running standby, or set backup_from = \"primary\""
        );
    }
    if standby.system_id != primary.system_id {
        bail!(
            "the standby of target {target} ({server}) belongs to cluster {}, the primary to cluster {}: it is not this primary's standby, and its backup could not use this archive's WAL; hint: point standby_url at a standby of the primary in url",
            standby.system_id,
            primary.system_id
        );
    }
    if !standby.may_replicate {
        bail!(
            "role {user} may not stream a base backup from the standby of target {target} ({server}); hint: ALTER ROLE {user} REPLICATION on the primary (it replicates to the standby) and allow it in the standby's pg_hba.conf: host replication {user} <dr host>/32 scram-sha-256"
        );
    }
    if standby.has_tablespaces {
        bail!(
            "the standby of target {target} ({server}) has tablespaces outside the data directory; pg_basebackup streams only a cluster without them to one tar; hint: move the tablespaces into pg_default"
        );
    }
    Ok(())
}

/// The end of a standby's backup: the last WAL range of its `backup_manifest` (timeline,
/// end LSN), with the segment it needs last (a standby writes no backup history file).
pub fn stop_point(last: Option<(u32, String)>, segment_size: u64) -> Result<(Lsn, String, u32)> {
    let (timeline, end_lsn) = last
        .ok_or_else(|| anyhow!("the base backup from the standby has no backup_manifest with WAL ranges, so its end point (where a restore is consistent) is unknown; nothing was committed; hint: do not pass --no-manifest to pg_basebackup (dr does not)"))?;
    let stop = Lsn::parse(&end_lsn)?;
    Ok((
        stop,
        segment_name(timeline, stop.end_segno(segment_size), segment_size),
        timeline,
    ))
}

/// Asks the primary to finish its current segment, so the end segment is archived now
/// rather than after `archive_timeout`; a role that may not is fine (dr waits then).
pub async fn switch_on_primary(client: &tokio_postgres::Client) -> bool {
    match client.simple_query("SELECT pg_switch_wal()").await {
        Ok(_) => true,
        Err(e) => {
            tracing::info!(
                "cannot switch WAL on the primary ({}); waiting for archive_timeout instead",
                pg::describe_pg_error(&e)
            );
            false
        }
    }
}

/// The primary's `archive_timeout` (0 when off or unreadable).
pub async fn archive_timeout(client: &tokio_postgres::Client) -> Duration {
    let secs = client
        .query_one(
            "SELECT setting::bigint FROM pg_settings WHERE name = 'archive_timeout'",
            &[],
        )
        .await
        .ok()
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(0);
    Duration::from_secs(secs.max(0) as u64)
}

/// Waits until `segment` is in dr's archive, at most `bound`.
pub async fn wait_archived(
    storage: &dyn Storage,
    prefix: &str,
    segment: &str,
    bound: Duration,
    switched: bool,
) -> Result<()> {
    let name =
        WalName::parse(segment).ok_or_else(|| anyhow!("unreadable end segment {segment}"))?;
    let started = Instant::now();
    loop {
        if wal::fetch::find(storage, prefix, &name).await?.is_some() {
            return Ok(());
        }
        if started.elapsed() >= bound {
            let grant = if switched {
                "check the primary's pg_stat_archiver (`dr check --only pg.archiving`)"
            } else {
                "GRANT EXECUTE ON FUNCTION pg_switch_wal() TO the backup role on the primary (dr then switches at once), or set archive_timeout"
            };
            bail!(
                "the primary did not archive {segment}, where the base backup from the standby ends, into {prefix} within {}; nothing was committed; hint: {grant}",
                crate::units::duration(bound)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standby() -> ServerFacts {
        ServerFacts {
            system_id: 7,
            in_recovery: true,
            may_replicate: true,
            has_tablespaces: false,
        }
    }

    #[test]
    fn a_standby_must_be_this_primarys_and_in_recovery() {
        let primary = ServerFacts {
            in_recovery: false,
            ..standby()
        };
        assert!(check_standby(&primary, &standby(), "main", "s:5433", "u").is_ok());
        let e = |f: ServerFacts| {
            check_standby(&primary, &f, "main", "s:5433", "u")
                .unwrap_err()
                .to_string()
        };
        assert!(e(ServerFacts {
            in_recovery: false,
            ..standby()
        })
        .contains("not in recovery"));
        assert!(e(ServerFacts {
            system_id: 8,
            ..standby()
        })
        .contains("cluster 8, the primary to cluster 7"));
        assert!(e(ServerFacts {
            may_replicate: false,
            ..standby()
        })
        .contains("ALTER ROLE u REPLICATION"));
        assert!(e(ServerFacts {
            has_tablespaces: true,
            ..standby()
        })
        .contains("tablespaces"));
    }

    #[test]
    fn the_end_point_comes_from_the_manifests_last_wal_range() {
        let (lsn, wal, tli) = stop_point(Some((2, "0/3000100".into())), 16 << 20).unwrap();
        assert_eq!((lsn, tli), (Lsn(0x3000100), 2));
        assert_eq!(wal, "000000020000000000000003");
        // Ended right after a WAL switch: the segment starting there is not needed.
        let (_, wal, _) = stop_point(Some((1, "0/3000000".into())), 16 << 20).unwrap();
        assert_eq!(wal, "000000010000000000000002");
        assert!(stop_point(None, 16 << 20)
            .unwrap_err()
            .to_string()
            .contains("backup_manifest"));
    }

    #[test]
    fn the_recorded_server_has_no_password() {
        let c = ConnTarget::parse("postgres://u:s3cr3t@standby.example:5433/postgres").unwrap();
        assert_eq!(host_port(&c), "standby.example:5433");
    }
}
