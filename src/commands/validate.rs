//! `dr validate`: proves a restore could start, changing nothing.

use anyhow::Result;
use serde::Serialize;

use crate::backup::catalog;
use crate::backup::manifest::BackupMethod;
use crate::cli::{Format, ValidateArgs};
use crate::config::{Config, PostgresTarget};
use crate::output;
use crate::pg::ConnTarget;
use crate::restore::{self, Preflight, Step, Steps};

#[derive(Serialize)]
pub struct ValidateReport {
    pub format_version: u32,
    pub ok: bool,
    pub target: String,
    pub backup_id: Option<String>,
    pub steps: Vec<Step>,
}

pub async fn run(config: &Config, args: ValidateArgs) -> Result<i32> {
    let target = super::single_target(config, args.target.as_deref())?;
    let storage = super::open_storage(config)?;
    let physical = args.physical
        || (args.backup_id != "latest"
            && catalog::resolve_method(storage.as_ref(), &target.name, &args.backup_id, None)
                .await
                .is_ok_and(|m| m.method == BackupMethod::Physical));
    if physical {
        let staging = super::staging_dir(args.staging_dir.as_deref());
        let mut steps = Steps::default();
        let result = restore::physical::validate(
            storage.as_ref(),
            target,
            &args.backup_id,
            &staging,
            &mut steps,
        )
        .await;
        return report(args.format, target, steps, result);
    }
    let destination = ConnTarget::parse(&match &args.into {
        Some(url) => url.clone(),
        None => target.resolve_url()?,
    })?;
    let staging = super::staging_dir(args.staging_dir.as_deref());
    let pf = Preflight {
        storage: storage.as_ref(),
        target,
        backup_id: &args.backup_id,
        destination: &destination,
        staging_dir: &staging,
    };
    let mut steps = Steps::default();
    let result: Result<String> = async {
        let (manifest, pg_restore) = restore::preflight(&pf, &mut steps, false).await?;
        steps
            .run("checksum+archive", async {
                for object in manifest.objects.iter().filter(|o| o.role != "dump") {
                    restore::stream_object(storage.as_ref(), &manifest, object, std::io::sink(), false).await?;
                }
                let entries = restore::list_archive_streaming(storage.as_ref(), &manifest, &pg_restore).await?;
                Ok(((), format!("{} object(s) match their SHA-256; pg_restore --list reads {entries} archive entries", manifest.objects.len())))
            })
            .await?;
        Ok(manifest.id)
    }
    .await;
    report(args.format, target, steps, result)
}

fn report(
    format: Format,
    target: &PostgresTarget,
    steps: Steps,
    result: Result<String>,
) -> Result<i32> {
    let report = ValidateReport {
        format_version: 1,
        ok: result.is_ok(),
        target: target.name.clone(),
        backup_id: result.as_ref().ok().cloned(),
        steps: steps.0,
    };
    match format {
        Format::Json => output::emit(&output::json(&report)),
        Format::Table => output::emit(&super::restore::steps_table(&report.steps)),
    }
    result
        .map(|_| 0)
        .map_err(|e| e.context("validation failed: nothing was changed"))
}
