//! The arguments of `dr evidence` (verify, export, keygen).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use super::{parse_positive_duration, Format, TextFormat};

#[derive(Debug, Args)]
pub struct EvidenceArgs {
    #[command(subcommand)]
    pub action: EvidenceAction,
}

#[derive(Debug, Subcommand)]
pub enum EvidenceAction {
    /// Walk the evidence log: every record's link, signature and report hash (exit 1 on any problem)
    #[command(after_help = examples!(
        "dr evidence verify",
        "# with the key the auditor was given:",
        "dr evidence verify --public-key 54f9a2ea...",
        "dr evidence verify --format json | jq '.problems'",
    ))]
    Verify(EvidenceVerifyArgs),
    /// The auditor's package: one self-contained HTML page, or a JSON document
    #[command(after_help = examples!(
        "dr evidence export --output evidence.html   # the last 90 days, one page",
        "dr evidence export --since 365d --format json --output evidence.json",
    ))]
    Export(EvidenceExportArgs),
    /// Write a new Ed25519 signing key (mode 0600) and print its public key
    #[command(after_help = examples!(
        "dr evidence keygen --output /etc/dr/evidence.pem",
        "dr evidence keygen --output evidence.pem --format json",
    ))]
    Keygen(EvidenceKeygenArgs),
}

#[derive(Debug, Args)]
pub struct EvidenceVerifyArgs {
    /// The public key (64 hex digits) to check signatures against [default: [evidence] public_key, else the signing key's]
    #[arg(long, value_name = "HEX")]
    pub public_key: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Html,
    Json,
}

#[derive(Debug, Args)]
pub struct EvidenceExportArgs {
    /// The period: records this recent (90d, 12w, 365d)
    #[arg(long, default_value = "90d", value_parser = parse_positive_duration)]
    pub since: Duration,
    /// What to write
    #[arg(long, value_enum, default_value = "html")]
    pub format: ExportFormat,
    /// The file to write (replaced whole)
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    /// The public key to check signatures against [default: as `dr evidence verify`]
    #[arg(long, value_name = "HEX")]
    pub public_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct EvidenceKeygenArgs {
    /// The new key file; an existing file is never replaced
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    pub format: TextFormat,
}
