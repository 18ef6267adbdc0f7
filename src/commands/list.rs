//! `dr list`: complete backups only, newest first.

use anyhow::Result;
use comfy_table::Cell;

use crate::backup::catalog;
use crate::cli::{Format, ListArgs};
use crate::config::Config;
use crate::output::{self, table};

pub async fn run(config: &Config, args: ListArgs) -> Result<i32> {
    if let Some(t) = &args.target {
        config.postgres_target(t)?;
    }
    let storage = super::open_storage(config)?;
    let (manifests, damaged) =
        catalog::list_complete(storage.as_ref(), args.target.as_deref()).await?;
    for d in &damaged {
        eprintln!(
            "warning: {} cannot be read ({}); that backup is not listed and cannot be restored",
            d.key, d.error
        );
    }
    match args.format {
        Format::Json => output::emit(&output::json(&manifests)),
        Format::Table => {
            if manifests.is_empty() {
                output::emit(&format!(
                    "no complete backups in {}; run `dr backup` to take one",
                    storage.describe()
                ));
            } else {
                let mut t = table::new_table(&[
                    "backup id",
                    "target",
                    "kind",
                    "method",
                    "created (UTC)",
                    "size",
                    "tables",
                    "sha256",
                ]);
                for m in &manifests {
                    t.add_row(vec![
                        Cell::new(&m.id),
                        Cell::new(&m.target),
                        Cell::new(format!("{:?}", m.kind).to_lowercase()),
                        Cell::new(m.method.as_str()),
                        Cell::new(m.created_at.format("%Y-%m-%d %H:%M:%S")),
                        Cell::new(table::human_bytes(m.size_bytes)),
                        Cell::new(match &m.physical {
                            Some(_) => "-".to_string(),
                            None => m.tables.len().to_string(),
                        }),
                        Cell::new(&m.sha256[..12]),
                    ]);
                }
                output::emit(&t.to_string());
            }
        }
    }
    Ok(0)
}
