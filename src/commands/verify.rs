//! `dr verify`: after a recovery, is everything there?

use anyhow::Result;
use comfy_table::Cell;

use crate::backup::catalog;
use crate::cli::{Format, VerifyArgs};
use crate::config::Config;
use crate::output::{self, table};
use crate::pg::ConnTarget;
use crate::restore::verify::{self, VerifyReport, VerifyRequest};

pub async fn run(config: &Config, args: VerifyArgs) -> Result<i32> {
    if let Some(redis) = config.redis_backup_target(args.target.as_deref()) {
        return super::redis_data::verify(config, redis?, args).await;
    }
    let target = super::single_target(config, args.target.as_deref())?;
    let storage = super::open_storage(config)?;
    let manifest = catalog::resolve(storage.as_ref(), &target.name, &args.backup_id).await?;
    let conn = ConnTarget::parse(&match &args.into {
        Some(url) => url.clone(),
        None => target.resolve_url()?,
    })?;
    let report = verify::verify(VerifyRequest {
        config,
        target: &target.name,
        conn: &conn,
        manifest: Some(&manifest),
        include_services: true,
    })
    .await;
    match args.format {
        Format::Json => output::emit(&output::json(&report)),
        Format::Table => output::emit(&render_table(&report)),
    }
    if report.ok {
        Ok(0)
    } else {
        Err(anyhow::anyhow!(
            "verification of {} against backup {} failed: {}",
            conn.public_url,
            manifest.id,
            summary(&report)
        ))
    }
}

pub fn summary(report: &VerifyReport) -> String {
    let failed: Vec<String> = report
        .items
        .iter()
        .filter(|i| i.status == crate::checks::Status::Fail)
        .map(|i| format!("{}: {}", i.name, i.message))
        .collect();
    if failed.is_empty() {
        format!(
            "{} check(s) passed, {} table(s) match",
            report.items.len(),
            report.tables_checked
        )
    } else {
        failed.join("; ")
    }
}

pub fn render_table(report: &VerifyReport) -> String {
    let mut t = table::new_table(&["verification", "status", "message"]);
    for i in &report.items {
        t.add_row(vec![
            Cell::new(&i.name),
            table::status_cell(i.status),
            Cell::new(&i.message),
        ]);
    }
    format!(
        "{t}\n{}\n",
        if report.ok {
            "VERIFIED"
        } else {
            "VERIFICATION FAILED"
        }
    )
}
