//! `dr verify`: after a recovery, is everything there?

use anyhow::Result;
use comfy_table::Cell;

use crate::backup::catalog;
use crate::cli::{Format, VerifyArgs};
use crate::config::{Config, NotifyEvent};
use crate::notify::{self, OperationRun, Outcome};
use crate::output::{self, table};
use crate::pg::ConnTarget;
use crate::restore::verify::{self, VerifyReport, VerifyRequest};

pub async fn run(config: &Config, args: VerifyArgs) -> Result<i32> {
    let target = super::single_target(config, args.target.as_deref())?;
    let storage = super::open_storage(config)?;
    let notifier = OperationRun::start(config, NotifyEvent::Verify, None)?;
    let started = std::time::Instant::now();
    let prepared = async {
        let manifest = catalog::resolve(storage.as_ref(), &target.name, &args.backup_id).await?;
        let conn = ConnTarget::parse(&match &args.into {
            Some(url) => url.clone(),
            None => target.resolve_url()?,
        })?;
        anyhow::Ok((manifest, conn))
    }
    .await;
    let (manifest, conn) = match prepared {
        Ok(p) => p,
        Err(e) => {
            let failed = Err(e);
            if notify::attempted(&failed) {
                let message = format!("verify failed: {:#}", failed.as_ref().unwrap_err());
                notifier
                    .finish(vec![Outcome::new(Some(&target.name), false, message)])
                    .await;
            }
            return failed;
        }
    };
    let report = verify::verify(VerifyRequest {
        config,
        target: &target.name,
        conn: &conn,
        manifest: Some(&manifest),
        include_services: true,
    })
    .await;
    let mut outcome = Outcome::new(
        Some(&target.name),
        report.ok,
        format!("against backup {}: {}", manifest.id, summary(&report)),
    );
    outcome.backup_id = Some(manifest.id.clone());
    outcome.duration_ms = started.elapsed().as_millis() as u64;
    let sent = notifier.finish(vec![outcome]).await;
    match args.format {
        Format::Json => output::emit(&output::notify::json_with(&report, &sent)),
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
