//! `dr backup`: one backup per selected target; exit 1 if any failed.

use anyhow::Result;
use comfy_table::Cell;
use serde::Serialize;

use crate::backup::{self, manifest::BackupKind, BackupPlan};
use crate::cli::{BackupArgs, Format};
use crate::config::{Config, NotifyEvent};
use crate::notify::{self, OperationRun, Outcome};
use crate::output::{self, table};
use crate::pg::ConnTarget;

#[derive(Serialize)]
struct BackupFailure {
    target: String,
    message: String,
}

#[derive(Serialize)]
struct BackupRunReport<'a> {
    format_version: u32,
    ok: bool,
    backups: &'a [backup::manifest::BackupManifest],
    failures: &'a [BackupFailure],
}

pub async fn run(config: &Config, args: BackupArgs) -> Result<i32> {
    let targets = config.select_postgres(args.target.as_deref())?;
    let storage = super::open_storage(config)?;
    let notifier = OperationRun::start(config, NotifyEvent::Backup, args.metrics_file.clone())?;
    let mut manifests = Vec::new();
    let mut failures = Vec::new();
    let mut outcomes = Vec::new();
    for target in targets {
        let started = std::time::Instant::now();
        let result = async {
            let conn = ConnTarget::parse(&target.resolve_url()?)?;
            backup::run(
                storage.as_ref(),
                BackupPlan {
                    target_name: &target.name,
                    conn,
                    kind: BackupKind::Regular,
                    settings: &config.backup,
                    pg_bin_dir: target.pg_bin_dir.as_deref(),
                    show_progress: args.format == Format::Table,
                },
            )
            .await
        }
        .await;
        match result {
            Ok(m) => {
                let mut outcome = Outcome::new(
                    Some(&target.name),
                    true,
                    format!("backup {} complete", m.id),
                );
                outcome.backup_id = Some(m.id.clone());
                outcome.duration_ms = m.duration_ms;
                outcome.size_bytes = Some(m.size_bytes);
                outcomes.push(outcome);
                manifests.push(m);
            }
            Err(e) => {
                let message = crate::checks::scrub(&format!("{e:#}"), &notify::secrets(config));
                eprintln!("error: backup of {} failed: {message}", target.name);
                let mut outcome = Outcome::new(Some(&target.name), false, message.clone());
                outcome.duration_ms = started.elapsed().as_millis() as u64;
                outcomes.push(outcome);
                failures.push(BackupFailure {
                    target: target.name.clone(),
                    message,
                });
            }
        }
    }
    let sent = notifier.finish(outcomes).await;
    match args.format {
        Format::Json => output::emit(&output::notify::json_with(
            &BackupRunReport {
                format_version: 1,
                ok: failures.is_empty(),
                backups: &manifests,
                failures: &failures,
            },
            &sent,
        )),
        Format::Table if !manifests.is_empty() => {
            let mut t = table::new_table(&[
                "backup id",
                "target",
                "size",
                "raw",
                "tables",
                "rows",
                "duration",
            ]);
            for m in &manifests {
                t.add_row(vec![
                    Cell::new(&m.id),
                    Cell::new(&m.target),
                    Cell::new(table::human_bytes(m.size_bytes)),
                    Cell::new(table::human_bytes(
                        m.objects.iter().map(|o| o.raw_bytes).sum(),
                    )),
                    Cell::new(m.tables.len()),
                    Cell::new(m.tables.iter().map(|t| t.rows).sum::<i64>()),
                    Cell::new(table::millis(m.duration_ms)),
                ]);
            }
            output::emit(&t.to_string());
        }
        Format::Table => {}
    }
    if failures.is_empty() {
        Ok(0)
    } else {
        Err(anyhow::anyhow!(
            "{} of {} backup(s) failed: {}",
            failures.len(),
            failures.len() + manifests.len(),
            failures
                .iter()
                .map(|f| f.target.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}
