//! `dr evidence verify | export | keygen`: the evidence log for auditors.

use std::path::Path;

use anyhow::{anyhow, Result};

use crate::cli::{EvidenceAction, EvidenceArgs, ExportFormat, Format, TextFormat};
use crate::config::Config;
use crate::evidence::{self, chain::ChainReport, export};
use crate::output::{self, evidence::KeygenReport};

/// Keygen needs no configuration; verify and export read it.
pub async fn run(config_path: Option<&Path>, args: EvidenceArgs) -> Result<i32> {
    match args.action {
        EvidenceAction::Verify(a) => {
            let config = &Config::load(config_path)?;
            let storage = super::open_storage(config)?;
            let trust = evidence::trust(config, a.public_key.as_deref())?;
            let (report, _) = evidence::chain::verify(storage.as_ref(), &trust, None).await?;
            output::emit(&match a.format {
                Format::Json => output::json(&report),
                Format::Table => output::evidence::verify_table(&report),
            });
            outcome(&report)
        }
        EvidenceAction::Export(a) => {
            let config = &Config::load(config_path)?;
            let storage = super::open_storage(config)?;
            let trust = evidence::trust(config, a.public_key.as_deref())?;
            let since = chrono::Utc::now() - chrono::Duration::from_std(a.since)?;
            let built = export::build(export::ExportRequest {
                storage: storage.as_ref(),
                trust: &trust,
                since,
                rto_objective_ms: config.objectives.rto.map(|d| d.as_millis() as u64),
                rpo_objective_ms: config.objectives.rpo.map(|d| d.as_millis() as u64),
            })
            .await?;
            let text = match a.format {
                ExportFormat::Json => output::json(&built),
                ExportFormat::Html => evidence::html::render(&built),
            };
            crate::metrics::write_atomic(&a.output, &text).map_err(|e| {
                anyhow!(
                    "cannot write {}: {e:#}; hint: choose a writable --output",
                    a.output.display()
                )
            })?;
            output::emit(&output::evidence::export_text(
                &a.output.display().to_string(),
                &built,
            ));
            outcome(&built.chain)
        }
        EvidenceAction::Keygen(a) => {
            let public_key = evidence::keygen(&a.output)?;
            let report = KeygenReport {
                format_version: crate::report::FORMAT_VERSION,
                ok: true,
                key_file: a.output.display().to_string(),
                public_key,
            };
            output::emit(&match a.format {
                TextFormat::Json => output::json(&report),
                TextFormat::Text => output::evidence::keygen_text(&report),
            });
            Ok(0)
        }
    }
}

fn outcome(report: &ChainReport) -> Result<i32> {
    match report.problems.first() {
        None => Ok(0),
        Some(p) => Err(anyhow!(
            "the evidence log fails verification: {} problem(s), the first: {}: {}; hint: records and reports are never rewritten by dr: find out who changed the storage, and keep this output as evidence",
            report.problems.len(),
            p.key,
            p.problem
        )),
    }
}
