//! `[evidence]`: how the evidence log's records are signed. Without the table every
//! recorded command still appends a chained, unsigned record.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EvidenceConfig {
    /// An Ed25519 private key in PKCS#8 PEM (`dr evidence keygen`, or
    /// `openssl genpkey -algorithm ed25519`), relative to dr.toml. Records are signed with it.
    pub signing_key_file: Option<PathBuf>,
    /// The public key (64 hex digits) that `dr evidence verify` trusts; a host that only
    /// verifies (an auditor's) needs this and no private key.
    pub public_key: Option<String>,
}

impl EvidenceConfig {
    /// `signing_key_file`, relative to the directory of dr.toml.
    pub fn signing_key_path(&self, config_dir: &Path) -> Option<PathBuf> {
        self.signing_key_file.as_ref().map(|f| config_dir.join(f))
    }
}
