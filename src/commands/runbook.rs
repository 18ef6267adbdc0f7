//! `dr runbook` and `dr runbook show NAME`.

use anyhow::Result;

use crate::cli::{Format, RunbookAction, RunbookArgs, TextFormat};
use crate::config::Config;
use crate::output::{self, people::RunbookDocument, people::RunbookList};
use crate::report::FORMAT_VERSION;
use crate::runbook;

pub async fn run(config: &Config, args: RunbookArgs) -> Result<i32> {
    match args.action {
        None => {
            let all = runbook::load_all(config)?;
            output::emit(&match args.format {
                Format::Json => output::json(&RunbookList {
                    format_version: FORMAT_VERSION,
                    ok: true,
                    runbooks: &all,
                }),
                Format::Table => output::people::runbook_list_table(&all),
            });
        }
        Some(RunbookAction::Show {
            name,
            target,
            route,
            format,
        }) => {
            let rb = runbook::find(config, &name)?;
            let branches = runbook::Branches::choose(config, target.as_deref(), route)?;
            let storage = match &config.storage {
                Some(s) => crate::storage::open(s).ok(),
                None => None,
            };
            let values = runbook::placeholder_values(config, storage.as_deref(), &branches).await;
            let rendered = rb.render_with(&values, &branches, true)?;
            for (key, value) in &values {
                if let Err(why) = value {
                    if rendered.markdown.contains(&format!("<{key}: ")) {
                        tracing::warn!("{{{{{key}}}}} has no value: {why}");
                    }
                }
            }
            // `dr runbook --format json show X` and `dr runbook show X --format json` both work.
            let json = format == TextFormat::Json || args.format == Format::Json;
            output::emit(&if json {
                output::json(&RunbookDocument {
                    format_version: FORMAT_VERSION,
                    ok: true,
                    runbook: &rendered,
                })
            } else {
                output::people::runbook_text(&rendered.markdown)
            });
        }
    }
    Ok(0)
}
