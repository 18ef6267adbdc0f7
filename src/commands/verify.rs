//! `dr verify`: after a recovery, is everything there?

use anyhow::Result;

use crate::backup::catalog;
use crate::cli::{Format, VerifyArgs};
use crate::config::Config;
use crate::output;
use crate::restore::verify::{self, VerifyRequest};

pub async fn run(config: &Config, args: VerifyArgs) -> Result<i32> {
    let target = super::single_target(config, args.target.as_deref())?;
    let storage = super::open_storage(config)?;
    let manifest = catalog::resolve(storage.as_ref(), &target.name, &args.backup_id).await?;
    let conn = super::destination(target, args.into.as_deref())?;
    let report = verify::verify(VerifyRequest {
        config,
        target: &target.name,
        conn: &conn,
        manifest: Some(&manifest),
        include_services: true,
    })
    .await;
    output::emit(&match args.format {
        Format::Json => output::json(&report),
        Format::Table => output::restore::verify_table(&report),
    });
    if report.ok {
        Ok(0)
    } else {
        Err(anyhow::anyhow!(
            "verification of {} against backup {} failed: {}",
            conn.public_url,
            manifest.id,
            report.summary()
        ))
    }
}
