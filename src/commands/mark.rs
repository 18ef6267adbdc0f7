//! `dr mark NAME`: a named restore point on the server, recorded in storage for
//! `dr restore --pitr --to-name NAME`.

use anyhow::{anyhow, Result};

use crate::cli::{Format, MarkArgs};
use crate::config::Config;
use crate::error::usage;
use crate::output::{self, pitr::MarkReport};
use crate::pg::{self, ConnTarget};
use crate::wal::{self, marks, Lsn};

pub async fn run(config: &Config, args: MarkArgs) -> Result<i32> {
    marks::check_name(&args.name)?;
    let target = super::single_target(config, args.target.as_deref())?;
    let storage = super::open_storage(config)?;
    if marks::find(storage.as_ref(), &target.name, &args.name)
        .await?
        .is_some()
    {
        return Err(usage(format!(
            "restore point {:?} of {} already exists; recovery would stop at the first one of that name; hint: choose another name (`dr list --target {}` lists them)",
            args.name, target.name, target.name
        )));
    }
    // Restore points and WAL switches are cluster-wide: a dropped database (the incident
    // being marked) is no reason to fail, the maintenance database serves as well.
    let conn = ConnTarget::parse(&target.resolve_url()?)?;
    let client = match conn.connect().await {
        Err(e) if pg::is_missing_database(&e) => conn.connect_maintenance().await?.1,
        other => other?,
    };
    let q = |e: tokio_postgres::Error| anyhow!("{}", pg::describe_pg_error(&e));
    let row = client
        .query_one(
            "SELECT pg_create_restore_point($1)::text, (extract(epoch FROM now()) * 1000000)::bigint, \
                    (SELECT timeline_id FROM pg_control_checkpoint()), \
                    (SELECT system_identifier FROM pg_control_system())::text, \
                    (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size')",
            &[&args.name],
        )
        .await
        .map_err(|e| {
            anyhow!(
                "cannot make restore point {:?} on {}: {}; hint: the role needs superuser or EXECUTE on pg_create_restore_point, and wal_level replica",
                args.name,
                target.name,
                pg::describe_pg_error(&e)
            )
        })?;
    let lsn = Lsn::parse(&row.get::<_, String>(0))?;
    let created_at = chrono::DateTime::from_timestamp_micros(row.get::<_, i64>(1))
        .ok_or_else(|| anyhow!("the server's clock is out of range"))?;
    let timeline: i32 = row.get(2);
    let segment_size = row.get::<_, i64>(4) as u64;
    // Close the segment so the restore point is archived now, not at archive_timeout.
    let switched = client
        .query_one("SELECT pg_switch_wal()", &[])
        .await
        .map_err(q)
        .map_err(|e| tracing::warn!("restore point made; its segment was not closed ({e:#}): it is archived when it fills or at archive_timeout"))
        .is_ok();
    let wal_name = wal::segment_name(timeline as u32, lsn.segno(segment_size), segment_size);
    if switched {
        marks::wait_archived(&client, &wal_name).await;
    }
    let point = marks::RestorePoint {
        format_version: 1,
        target: target.name.clone(),
        name: args.name.clone(),
        lsn: lsn.to_string(),
        wal: wal_name,
        timeline: timeline as u32,
        system_identifier: row.get(3),
        created_at,
        dr_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    marks::record(storage.as_ref(), &point).await?;
    let report = MarkReport::new(point, switched);
    output::emit(&match args.format {
        Format::Json => output::json(&report),
        Format::Table => output::pitr::mark_table(&report),
    });
    Ok(0)
}
