//! `dr backup`: one backup per selected target; exit 1 if any failed.

use anyhow::Result;
use comfy_table::Cell;

use crate::backup::{self, manifest::BackupKind, physical, BackupPlan};
use crate::cli::{BackupArgs, Format};
use crate::config::Config;
use crate::output::{self, table};
use crate::pg::ConnTarget;

pub async fn run(config: &Config, args: BackupArgs) -> Result<i32> {
    let targets = config.select_postgres(args.target.as_deref())?;
    let storage = super::open_storage(config)?;
    let mut manifests = Vec::new();
    let mut failures = Vec::new();
    for target in targets {
        let result = async {
            let conn = ConnTarget::parse(&target.resolve_url()?)?;
            if args.physical {
                return physical::run(
                    storage.as_ref(),
                    physical::PhysicalPlan {
                        target_name: &target.name,
                        conn,
                        settings: &config.backup,
                        pg_bin_dir: target.pg_bin_dir.as_deref(),
                        show_progress: args.format == Format::Table,
                    },
                )
                .await;
            }
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
            Ok(m) => manifests.push(m),
            Err(e) => {
                let message = crate::checks::scrub(
                    &format!("{e:#}"),
                    &crate::checks::collect_secrets(config),
                );
                eprintln!("error: backup of {} failed: {message}", target.name);
                failures.push(target.name.clone());
            }
        }
    }
    match args.format {
        Format::Json => output::emit(&output::json(&manifests)),
        Format::Table if !manifests.is_empty() => {
            let mut t = if args.physical {
                table::new_table(&[
                    "backup id",
                    "target",
                    "size",
                    "raw",
                    "WAL from",
                    "consistent at",
                    "duration",
                ])
            } else {
                table::new_table(&[
                    "backup id",
                    "target",
                    "size",
                    "raw",
                    "tables",
                    "rows",
                    "duration",
                ])
            };
            for m in &manifests {
                let (a, b) = match &m.physical {
                    Some(p) => (
                        Cell::new(format!("{} ({})", p.start_lsn, p.start_wal)),
                        Cell::new(&p.stop_lsn),
                    ),
                    None => (
                        Cell::new(m.tables.len()),
                        Cell::new(m.tables.iter().map(|t| t.rows).sum::<i64>()),
                    ),
                };
                t.add_row(vec![
                    Cell::new(&m.id),
                    Cell::new(&m.target),
                    Cell::new(table::human_bytes(m.size_bytes)),
                    Cell::new(table::human_bytes(
                        m.objects.iter().map(|o| o.raw_bytes).sum(),
                    )),
                    a,
                    b,
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
            failures.join(", ")
        ))
    }
}
