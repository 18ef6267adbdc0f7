//! Base backups streamed from a standby (`backup_from = "standby"`): the primary keeps only
//! the archive's WAL flowing, the standby carries the read. PostgreSQL does not wait for
//! archiving when a standby ends a backup and writes no backup history file, so `dr` reads
//! the end point from `backup_manifest` (its last WAL range ends where the copy is
//! consistent: the standby's minimum recovery point) and itself waits, bounded, until the
//! primary has archived the segment holding it.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use super::physical::{ClusterFacts, WalRange};
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

/// Refuses a standby that is not one of this primary's standbys or could not stream the
/// backup: it must be in recovery, of the same cluster, with a role that may replicate
/// and no tablespaces outside its data directory.
pub(super) fn check_standby(
    primary: &ClusterFacts,
    standby: &ClusterFacts,
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
    if !standby.tablespaces.is_empty() {
        bail!(
            "the standby of target {target} ({server}) has tablespaces outside the data directory; pg_basebackup streams only a cluster without them to one tar; hint: move the tablespaces into pg_default"
        );
    }
    Ok(())
}

/// The end of a standby's backup: the last WAL range of its `backup_manifest`, with the
/// segment holding it (a standby writes no backup history file).
pub fn stop_point(ranges: Option<Vec<WalRange>>, segment_size: u64) -> Result<(Lsn, String, u32)> {
    let last = ranges
        .and_then(|r| r.last().cloned())
        .ok_or_else(|| anyhow!("the base backup from the standby has no backup_manifest with WAL ranges, so its end point (where a restore is consistent) is unknown; nothing was committed; hint: do not pass --no-manifest to pg_basebackup (dr does not)"))?;
    let stop = Lsn::parse(&last.end_lsn)?;
    Ok((
        stop,
        segment_name(last.timeline, stop.end_segno(segment_size), segment_size),
        last.timeline,
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

    fn facts() -> ClusterFacts {
        ClusterFacts {
            system_id: 7,
            segment_size: 16 << 20,
            archive_mode: "on".into(),
            archive_command: None,
            archive_library: String::new(),
            may_replicate: true,
            in_recovery: true,
            data_checksums: false,
            tablespaces: vec![],
        }
    }

    #[test]
    fn a_standby_must_be_this_primarys_and_in_recovery() {
        let primary = ClusterFacts {
            in_recovery: false,
            ..facts()
        };
        assert!(check_standby(&primary, &facts(), "main", "s:5433", "u").is_ok());
        let e = |f: ClusterFacts| {
            check_standby(&primary, &f, "main", "s:5433", "u")
                .unwrap_err()
                .to_string()
        };
        assert!(e(ClusterFacts {
            in_recovery: false,
            ..facts()
        })
        .contains("not in recovery"));
        assert!(e(ClusterFacts {
            system_id: 8,
            ..facts()
        })
        .contains("cluster 8, the primary to cluster 7"));
        assert!(e(ClusterFacts {
            may_replicate: false,
            ..facts()
        })
        .contains("ALTER ROLE u REPLICATION"));
    }

    #[test]
    fn the_end_point_comes_from_the_manifests_last_wal_range() {
        let ranges = vec![
            WalRange {
                timeline: 1,
                start_lsn: "0/2000028".into(),
                end_lsn: "0/3000000".into(),
            },
            WalRange {
                timeline: 2,
                start_lsn: "0/3000000".into(),
                end_lsn: "0/3000100".into(),
            },
        ];
        let (lsn, wal, tli) = stop_point(Some(ranges), 16 << 20).unwrap();
        assert_eq!((lsn, tli), (Lsn(0x3000100), 2));
        assert_eq!(wal, "000000020000000000000003");
        // Ended right after a WAL switch: the segment starting there is not needed.
        let at_boundary = vec![WalRange {
            timeline: 1,
            start_lsn: "0/2000028".into(),
            end_lsn: "0/3000000".into(),
        }];
        let (_, wal, _) = stop_point(Some(at_boundary), 16 << 20).unwrap();
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
