//! Encryption at rest with age: every object `dr` stores is encrypted to the configured
//! recipients (public keys), so the host that takes backups holds no key that can read
//! them. Reading needs an identity (a private key) from `--identity`, `identity_file` or
//! `identity_env`. Streaming both ways, so memory stays bounded.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use sha2::{Digest, Sha256};

use crate::config::{Config, EncryptionConfig};
use crate::error::usage;
use crate::secret::Secret;

/// The public keys every new object is encrypted to.
#[derive(Clone)]
pub struct Recipients {
    keys: Vec<age::x25519::Recipient>,
}

impl Recipients {
    /// The configured recipients (checked when the configuration loaded).
    pub fn from_config(config: &EncryptionConfig, config_dir: &Path) -> Result<Recipients> {
        Ok(Recipients {
            keys: config.recipient_keys(config_dir)?,
        })
    }

    /// The public keys, as written (`age1...`), for manifests.
    pub fn public_keys(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.to_string()).collect()
    }

    /// Wraps `output`: what is written comes out encrypted. `finish()` ends the stream.
    pub fn encrypt<W: Write>(&self, output: W) -> Result<age::stream::StreamWriter<W>> {
        let encryptor =
            age::Encryptor::with_recipients(self.keys.iter().map(|k| k as &dyn age::Recipient))
                .map_err(|e| anyhow!("cannot set up encryption: {e}"))?;
        encryptor
            .wrap_output(output)
            .context("cannot start the encrypted stream")
    }
}

/// The recipients of `[encryption]`, or `None` when objects are stored unencrypted.
pub fn configured_recipients(config: &Config) -> Result<Option<Recipients>> {
    config
        .encryption
        .as_ref()
        .map(|e| Recipients::from_config(e, config.dir()))
        .transpose()
}

/// Private keys that can open backups.
pub struct Identities {
    keys: Vec<Box<dyn age::Identity + Send + Sync>>,
    /// Where they came from, for messages (never the key itself).
    pub source: String,
}

impl Identities {
    /// The identity to read with: `--identity FILE`, else `identity_file`, else
    /// `identity_env`; `None` when none is configured.
    ///
    /// An identity file that others, or a group other than the PostgreSQL server's, can
    /// read is refused (exit 2): it opens every backup.
    pub fn load(
        config: Option<&EncryptionConfig>,
        config_dir: &Path,
        explicit: Option<&Path>,
    ) -> Result<Option<Identities>> {
        Self::load_with(config, config_dir, explicit, true)
    }

    /// Like [`Identities::load`], with an exposed identity file accepted: `dr check`
    /// reports it as a warning instead (see [`identity_file_exposure`]).
    pub fn load_allowing_exposed(
        config: Option<&EncryptionConfig>,
        config_dir: &Path,
    ) -> Result<Option<Identities>> {
        Self::load_with(config, config_dir, None, false)
    }

    fn load_with(
        config: Option<&EncryptionConfig>,
        config_dir: &Path,
        explicit: Option<&Path>,
        refuse_exposed: bool,
    ) -> Result<Option<Identities>> {
        if let Some(path) = explicit {
            return Self::from_file(path, refuse_exposed).map(Some);
        }
        let Some(config) = config else {
            return Ok(None);
        };
        if let Some(file) = &config.identity_file {
            return Self::from_file(&resolve(config_dir, file), refuse_exposed).map(Some);
        }
        if let Some(var) = &config.identity_env {
            let value = Secret::new(std::env::var(var).map_err(|_| {
                usage(format!(
                    "[encryption] identity_env names {var}, which is not set; hint: export {var} with the AGE-SECRET-KEY-1... line, or pass --identity FILE"
                ))
            })?);
            let file = age::IdentityFile::from_buffer(value.expose().as_bytes())
                .map_err(|e| usage(format!("{var} holds no age identity ({e})")))?;
            return Self::from_identity_file(file, format!("${var}")).map(Some);
        }
        Ok(None)
    }

    fn from_file(path: &Path, refuse_exposed: bool) -> Result<Identities> {
        if refuse_exposed {
            if let Some(problem) = identity_file_exposure(path) {
                let (what, fix) = problem.split_once("; hint: ").unwrap_or((&problem, ""));
                return Err(usage(format!(
                    "{what}; nothing was read or changed; hint: {fix}"
                )));
            }
        }
        let cannot_read = |e: &dyn std::fmt::Display| {
            usage(format!(
                "cannot read the age identity {}: {e}; hint: pass the file age-keygen wrote (AGE-SECRET-KEY-1...)",
                path.display()
            ))
        };
        // Read into a Secret: the key never sits in a printable string.
        let text = Secret::new(std::fs::read_to_string(path).map_err(|e| cannot_read(&e))?);
        let file = age::IdentityFile::from_buffer(text.expose().as_bytes())
            .map_err(|e| cannot_read(&e))?;
        Self::from_identity_file(file, path.display().to_string())
    }

    fn from_identity_file(
        file: age::IdentityFile<age::NoCallbacks>,
        source: String,
    ) -> Result<Identities> {
        let keys = file
            .into_identities()
            .map_err(|e| usage(format!("cannot use the age identity {source}: {e}")))?;
        if keys.is_empty() {
            return Err(usage(format!("{source} holds no age identity")));
        }
        Ok(Identities { keys, source })
    }

    /// Wraps an encrypted stream: what is read comes out decrypted. A wrong identity is
    /// an error naming the keys the object was made for.
    pub fn decrypt<R: Read>(
        &self,
        input: R,
        made_for: &[String],
    ) -> Result<age::stream::StreamReader<R>> {
        let decryptor = age::Decryptor::new(input).map_err(|e| {
            anyhow!(
                "the object is not an age file ({e}): it was not encrypted by dr, or it is damaged"
            )
        })?;
        decryptor
            .decrypt(self.keys.iter().map(|k| k.as_ref() as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => anyhow::Error::new(WrongIdentity(format!(
                    "the identity {} cannot open this backup: it does not match the recipients the object was encrypted to ({}); hint: use the identity (private key) of one of those public keys with --identity FILE (`age-keygen -y FILE` prints a key file's public key)",
                    self.source,
                    made_for.join(", ")
                ))),
                other => anyhow!(
                    "cannot decrypt the object with the identity {} ({other}); hint: with the right identity this means the object's age header was altered: use another backup, or another copy of this one",
                    self.source
                ),
            })
    }
}

/// The identity given is not one the object was encrypted to: a wrong key, never damage.
/// Readers that may stop early (`pg_restore --list`) must still report it.
#[derive(Debug)]
pub struct WrongIdentity(String);

impl std::fmt::Display for WrongIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WrongIdentity {}

/// Whether `err` says the identity does not match the object's recipients.
pub fn is_wrong_identity(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.is::<WrongIdentity>())
}

/// The identity file `dr` reads with when nothing is passed on the command line.
pub fn configured_identity_file(config: &EncryptionConfig, config_dir: &Path) -> Option<PathBuf> {
    config
        .identity_file
        .as_deref()
        .map(|f| resolve(config_dir, f))
}

/// What is wrong with who may read the identity file at `path`, with the fix; `None`
/// when only its owner (and the PostgreSQL server's group) can read it, or when it
/// cannot be inspected (reading it then fails with the reason).
pub fn identity_file_exposure(path: &Path) -> Option<String> {
    let (mode, readers) = crate::secret::readers_beyond_owner(path)?;
    let shown = path.display();
    let group = crate::secret::SERVER_GROUP;
    Some(format!(
        "the age identity {shown} is readable by {readers} (mode {mode:o}), and it opens every backup; hint: chmod 600 {shown} (or chmod 640 and chgrp {group} {shown} when the PostgreSQL server's restore_command must read it)"
    ))
}

fn resolve(config_dir: &Path, file: &Path) -> PathBuf {
    if file.is_absolute() {
        file.to_path_buf()
    } else {
        config_dir.join(file)
    }
}

/// A writer that hashes and counts what passes through: the plaintext side of an
/// encrypted object.
pub struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// The inner writer, the SHA-256 (hex) and the size of what passed.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.size)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts what passes through, and checks it at the end.
pub struct HashingReader<R: Read> {
    inner: R,
    hasher: Option<Sha256>,
    size: u64,
    expected: (String, u64),
}

impl<R: Read> HashingReader<R> {
    /// At end of stream, a mismatch with `expected` (SHA-256 hex, size) is a read error.
    pub fn new(inner: R, expected_sha256: String, expected_size: u64) -> Self {
        HashingReader {
            inner,
            hasher: Some(Sha256::new()),
            size: 0,
            expected: (expected_sha256, expected_size),
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
            self.size += n as u64;
            if n == 0 && !buf.is_empty() {
                // The hasher is taken once, at the end of the stream, and then the
                // reader returns 0 before reaching here again.
                #[allow(clippy::expect_used)]
                let sha = hex::encode(self.hasher.take().expect("present").finalize());
                if sha != self.expected.0 || self.size != self.expected.1 {
                    return Err(std::io::Error::other(format!(
                        "the decrypted bytes do not match the manifest (sha256 {sha}, {} bytes; expected {}, {} bytes)",
                        self.size, self.expected.0, self.expected.1
                    )));
                }
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(recipients: Vec<String>) -> EncryptionConfig {
        EncryptionConfig {
            recipients,
            ..Default::default()
        }
    }

    #[test]
    fn round_trip_with_two_recipients_and_the_plaintext_hash() {
        let (a, b) = (
            age::x25519::Identity::generate(),
            age::x25519::Identity::generate(),
        );
        let recipients = Recipients::from_config(
            &config(vec![a.to_public().to_string(), b.to_public().to_string()]),
            Path::new("/"),
        )
        .unwrap();
        let plain: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let mut out = Vec::new();
        let mut hashing = HashingWriter::new(recipients.encrypt(&mut out).unwrap());
        hashing.write_all(&plain).unwrap();
        let (enc, sha, size) = hashing.finish();
        enc.finish().unwrap();
        assert_eq!(size, plain.len() as u64);
        assert!(!out.windows(16).any(|w| w == &plain[1000..1016]));
        for identity in [a, b] {
            let ids = Identities {
                keys: vec![Box::new(identity)],
                source: "test".into(),
            };
            let reader = ids.decrypt(&out[..], &recipients.public_keys()).unwrap();
            let mut back = Vec::new();
            HashingReader::new(reader, sha.clone(), size)
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, plain);
        }
        let stranger = Identities {
            keys: vec![Box::new(age::x25519::Identity::generate())],
            source: "stranger.key".into(),
        };
        let err = stranger
            .decrypt(&out[..], &recipients.public_keys())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("stranger.key")
                && err.contains("age1")
                && err.contains("does not match the recipients"),
            "{err}"
        );
        assert!(is_wrong_identity(
            &stranger
                .decrypt(&out[..], &recipients.public_keys())
                .err()
                .unwrap()
        ));
    }

    #[test]
    fn a_secret_key_as_recipient_names_its_place_and_hides_it() {
        let secret = age::x25519::Identity::generate();
        let text = age::secrecy::ExposeSecret::expose_secret(&secret.to_string()).to_string();
        let err = Recipients::from_config(
            &config(vec![secret.to_public().to_string(), text.clone()]),
            Path::new("/"),
        )
        .err()
        .unwrap();
        assert_eq!(crate::error::exit_code(&err), 2);
        let shown = err.to_string();
        assert!(
            shown.contains("recipients[1] is an age SECRET key"),
            "{shown}"
        );
        assert!(!shown.contains(&text[20..40]), "{shown}");
    }

    #[test]
    fn an_identity_file_others_can_read_is_named_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("team.key");
        std::fs::write(&path, "AGE-SECRET-KEY-1X").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let problem = identity_file_exposure(&path).unwrap();
        assert!(
            problem.contains("every user") && problem.contains("chmod 600"),
            "{problem}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(identity_file_exposure(&path), None);
    }

    #[test]
    fn misconfiguration_is_exit_2() {
        let bad = Recipients::from_config(&config(vec!["age1nope".into()]), Path::new("/"))
            .err()
            .unwrap();
        assert_eq!(crate::error::exit_code(&bad), 2);
        let empty = Recipients::from_config(&config(vec![]), Path::new("/"))
            .err()
            .unwrap();
        assert!(empty.to_string().contains("names no recipient"));
        let missing = Recipients::from_config(
            &EncryptionConfig {
                recipients_file: Some("/nonexistent/recipients.txt".into()),
                ..Default::default()
            },
            Path::new("/"),
        )
        .err()
        .unwrap();
        assert_eq!(crate::error::exit_code(&missing), 2);
        assert!(missing.to_string().contains("recipients_file"));
    }

    #[test]
    fn a_changed_plaintext_is_caught() {
        let data = b"hello".to_vec();
        let mut back = Vec::new();
        let err = HashingReader::new(&data[..], "0".repeat(64), 5)
            .read_to_end(&mut back)
            .unwrap_err();
        assert!(err.to_string().contains("do not match"));
    }
}
