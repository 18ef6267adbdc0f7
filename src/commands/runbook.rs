//! `dr runbook` and `dr runbook show NAME`.

use std::io::IsTerminal;

use anyhow::Result;
use comfy_table::Cell;

use crate::cli::{Format, RunbookAction, RunbookArgs};
use crate::config::Config;
use crate::output::{self, table};
use crate::runbook;

pub async fn run(config: &Config, args: RunbookArgs) -> Result<i32> {
    match args.action {
        None => {
            let all = runbook::load_all(config)?;
            match args.format {
                Format::Json => output::emit(&output::json(&all)),
                Format::Table => {
                    let mut t = table::new_table(&["name", "title", "summary", "source"]);
                    for r in &all {
                        t.add_row(vec![
                            Cell::new(&r.name),
                            Cell::new(&r.title),
                            Cell::new(&r.summary),
                            Cell::new(&r.source),
                        ]);
                    }
                    output::emit(&format!("{t}\nshow one with: dr runbook show NAME\n"));
                }
            }
        }
        Some(RunbookAction::Show { name, format }) => {
            let rb = runbook::find(config, &name)?;
            let storage = match &config.storage {
                Some(s) => crate::storage::open(s).ok(),
                None => None,
            };
            let values = runbook::placeholder_values(config, storage.as_deref()).await;
            let rendered = rb.render_with(&values, true)?;
            for (key, value) in &values {
                if let Err(why) = value {
                    if rendered.markdown.contains(&format!("<{key}: ")) {
                        eprintln!("warning: {{{{{key}}}}} has no value: {why}");
                    }
                }
            }
            // `dr runbook --format json show X` and `dr runbook show X --format json` both work.
            let json = format == Format::Json || args.format == Format::Json;
            match if json { Format::Json } else { Format::Table } {
                Format::Json => output::emit(&output::json(&rendered)),
                Format::Table => output::emit(&for_terminal(&rendered.markdown)),
            }
        }
    }
    Ok(0)
}

/// Plain Markdown when piped; bold headings and highlighted commands on a terminal.
fn for_terminal(markdown: &str) -> String {
    if !std::io::stdout().is_terminal() || std::env::var_os("NO_COLOR").is_some() {
        return markdown.to_string();
    }
    markdown
        .lines()
        .map(|line| {
            if let Some(h) = line.strip_prefix("# ").or_else(|| line.strip_prefix("## ")) {
                format!("\x1b[1m{h}\x1b[0m")
            } else {
                let mut out = String::new();
                for (i, part) in line.split('`').enumerate() {
                    if i % 2 == 1 {
                        out.push_str(&format!("\x1b[36m{part}\x1b[0m"));
                    } else {
                        out.push_str(part);
                    }
                }
                out
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
