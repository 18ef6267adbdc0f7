//! `dr verify`: after a recovery, is everything there?

use anyhow::Result;

use crate::backup::catalog;
use crate::cli::{Format, VerifyArgs};
use crate::config::{Config, NotifyEvent};
use crate::notify::{OperationRun, Outcome};
use crate::output;
use crate::restore::verify::{self, VerifyRequest};

pub async fn run(config: &Config, args: VerifyArgs) -> Result<i32> {
    if let Some(redis) = config.redis_backup_target(args.target.as_deref()) {
        return super::redis_verify::verify(config, redis?, args).await;
    }
    let target = super::single_target(config, args.target.as_deref())?;
    let storage = super::open_storage(config)?;
    let notifier = OperationRun::start(config, NotifyEvent::Verify, None)?;
    let started = std::time::Instant::now();
    let selection = args.only.selection();
    let prepared = async {
        let manifest = catalog::resolve(storage.as_ref(), &target.name, &args.backup_id).await?;
        selection.check_against(&manifest)?;
        let (conn, named) = super::destination(target, &args.into)?;
        anyhow::Ok((manifest, conn, named))
    }
    .await;
    let (manifest, conn, named) = match prepared {
        Ok(found) => found,
        Err(e) => {
            let message = format!("verify failed: {e:#}");
            let failed = Err(e);
            notifier
                .finish_after(
                    &failed,
                    vec![Outcome::new(Some(&target.name), false, message)],
                )
                .await;
            return failed;
        }
    };
    let report = verify::verify(VerifyRequest {
        config,
        target: &target.name,
        conn: &conn,
        manifest: Some(&manifest),
        // Another database is a copy: production's Redis and HTTP endpoints are not its.
        // Tables asked for by name are all that is asked about.
        include_services: named.is_none() && selection.is_empty(),
        selection: &selection,
    })
    .await;
    let outcome = Outcome {
        backup_id: Some(manifest.id.clone()),
        duration_ms: started.elapsed().as_millis() as u64,
        ..Outcome::new(
            Some(&target.name),
            report.ok,
            format!("against backup {}: {}", manifest.id, report.summary()),
        )
    };
    let sent = notifier.finish(vec![outcome]).await;
    output::emit(&match args.format {
        Format::Json => output::notify::json_with(&report, &sent),
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
