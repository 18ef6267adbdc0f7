//! `[[contacts]]`, `[[vendors]]` and `[runbooks]`: who to call and what to read in an
//! incident.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub name: String,
    pub role: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    /// When they answer: "24/7", "business", or free text.
    pub hours: Option<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Vendor {
    pub name: String,
    pub service: Option<String>,
    pub support_url: Option<String>,
    pub support_phone: Option<String>,
    pub contract: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RunbooksConfig {
    /// A directory of Markdown runbooks that override or add to the embedded ones.
    pub dir: Option<PathBuf>,
}
