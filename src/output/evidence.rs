//! `dr evidence verify`, `export` and `keygen` as human text.

use serde::Serialize;

use super::table::{cell, new_table};
use crate::evidence::chain::ChainReport;

pub fn verify_table(report: &ChainReport) -> String {
    let mut text = String::new();
    if !report.problems.is_empty() {
        let mut t = new_table(&["object", "problem"]).heading("Problems");
        for p in &report.problems {
            t.add_row(vec![cell(&p.key), cell(&p.problem)]);
        }
        text.push_str(&t.render());
    }
    for w in &report.warnings {
        text.push_str(&format!("warning: {w}\n"));
    }
    let key = report.public_key.as_deref().unwrap_or("none");
    text.push_str(&format!(
        "{} record(s), {} checked ({} signed, {} unsigned); trusted key {key} ({})\n",
        report.records, report.checked, report.signed, report.unsigned, report.key_source
    ));
    text.push_str(if report.ok {
        "the evidence log verifies\n"
    } else {
        "the evidence log FAILS verification\n"
    });
    text
}

#[derive(Serialize)]
pub struct KeygenReport {
    pub format_version: u32,
    pub ok: bool,
    pub key_file: String,
    pub public_key: String,
}

pub fn keygen_text(report: &KeygenReport) -> String {
    format!(
        "wrote the private key {} (mode 0600): keep it on the hosts that run dr, and out of the storage\npublic key: {}\n\nin dr.toml:\n[evidence]\nsigning_key_file = \"{}\"\npublic_key = \"{}\"\n",
        report.key_file, report.public_key, report.key_file, report.public_key
    )
}

pub fn export_text(path: &str, export: &crate::evidence::export::Export) -> String {
    format!(
        "wrote {path}: {} record(s) since {}, {} target(s), {} failure(s); the evidence log {}\n",
        export.records,
        crate::units::time(export.since),
        export.targets.len(),
        export.failures.len(),
        if export.chain.ok {
            "verifies"
        } else {
            "FAILS verification"
        }
    )
}
