//! `[encryption]`: age recipients and where the private key of a reading host is.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Deserialize;

use crate::error::usage;

/// `[encryption]`: who can read backups (recipients, public keys) and, on hosts that read,
/// which private key to use.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// age public keys (`age1...`); every object is encrypted to all of them.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// A file of age public keys, one per line (`#` comments), relative to dr.toml.
    pub recipients_file: Option<PathBuf>,
    /// The private key file (`AGE-SECRET-KEY-1...`) for commands that read backups.
    pub identity_file: Option<PathBuf>,
    /// The name of an environment variable holding the private key.
    pub identity_env: Option<String>,
}

impl EncryptionConfig {
    /// `identity_file` and `identity_env` name a file and a variable: a private key pasted
    /// as either is exit 2 naming the setting, never the key.
    pub fn refuse_keys_as_names(&self) -> Result<()> {
        let places = [
            (
                "identity_file",
                self.identity_file
                    .as_ref()
                    .map(|p| p.to_string_lossy().into_owned()),
                "write the key into a file only you can read (chmod 600) and set identity_file to that file's path",
            ),
            (
                "identity_env",
                self.identity_env.clone(),
                "export the key in an environment variable and set identity_env to the variable's name",
            ),
        ];
        for (key, value, fix) in places {
            if value.is_some_and(|v| crate::secret::has_age_secret_key(&v)) {
                return Err(usage(format!(
                    "[encryption] {key} holds an age SECRET key itself, not the name of where the key is; anyone who reads this file can open every backup; hint: {fix}"
                )));
            }
        }
        Ok(())
    }

    /// The recipients, parsed; any problem is a configuration error (exit 2): `dr` never
    /// stores plaintext while `[encryption]` is present.
    pub fn recipient_keys(&self, config_dir: &Path) -> Result<Vec<age::x25519::Recipient>> {
        // Each recipient with where it was written, for messages that must name the place
        // and never a value that turns out to be a private key.
        let mut texts: Vec<(String, String)> = self
            .recipients
            .iter()
            .enumerate()
            .map(|(i, r)| (r.clone(), format!("[encryption] recipients[{i}]")))
            .collect();
        if let Some(file) = &self.recipients_file {
            let path = config_dir.join(file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                usage(format!(
                    "cannot read [encryption] recipients_file {}: {e}; hint: fix the path or its permissions; dr refuses to store anything unencrypted while [encryption] is set",
                    path.display()
                ))
            })?;
            for (n, line) in text.lines().map(str::trim).enumerate() {
                if !line.is_empty() && !line.starts_with('#') {
                    texts.push((
                        line.to_string(),
                        format!(
                            "[encryption] recipients_file {} line {}",
                            path.display(),
                            n + 1
                        ),
                    ));
                }
            }
        }
        if texts.is_empty() {
            return Err(usage(
                "[encryption] names no recipient; hint: add recipients = [\"age1...\"] (age-keygen -y KEYFILE prints one) or recipients_file; dr refuses to store anything unencrypted while [encryption] is set",
            ));
        }
        let mut keys: Vec<age::x25519::Recipient> = Vec::new();
        for (text, from) in texts {
            let upper = text.to_ascii_uppercase();
            if crate::secret::has_age_secret_key(&text)
                || upper.starts_with("AGE-SECRET-KEY-")
                || upper.starts_with("AGE-PLUGIN-")
            {
                return Err(usage(format!(
                    "{from} is an age SECRET key, not a public key (age1...): anyone who reads this file can open every backup; hint: put the secret key in identity_file (or keep it off this host) and list its public key instead (`age-keygen -y KEYFILE` prints it)"
                )));
            }
            let key = text.parse::<age::x25519::Recipient>().map_err(|e| {
                usage(format!(
                    "{from} ({:?}) is not an age public key ({e}); hint: write it as age1... (age-keygen -y KEYFILE prints it)",
                    crate::secret::redact_age_keys(&text)
                ))
            })?;
            if !keys.iter().any(|k| k.to_string() == key.to_string()) {
                keys.push(key);
            }
        }
        Ok(keys)
    }
}
