//! Ed25519 signatures of records (ed25519-dalek). The private key is a PKCS#8 PEM file,
//! the format `openssl genpkey -algorithm ed25519` writes; the public key is written as
//! 64 hex digits, short enough to paste into dr.toml or an audit report.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

/// The signing key of `[evidence] signing_key_file`.
pub fn load_signing_key(path: &Path) -> Result<SigningKey> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read [evidence] signing_key_file {}; hint: fix the path or its permissions, or create a key with `dr evidence keygen --output {}`",
            path.display(),
            path.display()
        )
    })?;
    SigningKey::from_pkcs8_pem(&text).map_err(|_| {
        anyhow!(
            "[evidence] signing_key_file {} is not an Ed25519 private key in PKCS#8 PEM; hint: create one with `dr evidence keygen --output FILE` (or `openssl genpkey -algorithm ed25519 -out FILE`)",
            path.display()
        )
    })
}

/// A new random key.
pub fn generate() -> Result<SigningKey> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed)
        .map_err(|e| anyhow!("cannot read random bytes from the OS: {e}"))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Writes `key` to a new file readable by its owner only; an existing file is never
/// replaced (it may be the key older records were signed with).
pub fn write_new_key(path: &Path, key: &SigningKey) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| anyhow!("cannot encode the key: {e}"))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow!(
                    "{} exists already and was left as it is; hint: records signed with it can only be verified with its public key: choose another --output",
                    path.display()
                )
            } else {
                anyhow!("cannot create {}: {e}; hint: check the directory and its permissions", path.display())
            }
        })?;
    file.write_all(pem.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

pub fn public_hex(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

/// A public key as 64 hex digits (an `ed25519:` prefix is allowed).
pub fn parse_public(text: &str) -> Result<VerifyingKey> {
    let hex_text = text.trim().trim_start_matches("ed25519:");
    let bytes: [u8; 32] = hex::decode(hex_text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            anyhow!("public key {text:?} is not 64 hex digits; hint: `dr evidence keygen` prints it, and `dr evidence verify` names the key records were signed with")
        })?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| anyhow!("public key {text:?} is not a valid Ed25519 key"))
}

pub fn sign(key: &SigningKey, message: &[u8]) -> String {
    hex::encode(key.sign(message).to_bytes())
}

/// Whether `signature_hex` is `key`'s signature of `message`.
pub fn check(key: &VerifyingKey, message: &[u8], signature_hex: &str) -> Result<()> {
    let bytes: [u8; 64] = hex::decode(signature_hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow!("the signature is not 128 hex digits"))?;
    if key.verify(message, &Signature::from_bytes(&bytes)).is_err() {
        bail!("the signature does not match");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_key_only() {
        let key = generate().unwrap();
        let other = generate().unwrap();
        let sig = sign(&key, b"record");
        check(&key.verifying_key(), b"record", &sig).unwrap();
        assert!(check(&key.verifying_key(), b"recorD", &sig).is_err());
        assert!(check(&other.verifying_key(), b"record", &sig).is_err());
        let parsed = parse_public(&public_hex(&key.verifying_key())).unwrap();
        assert_eq!(parsed, key.verifying_key());
        assert!(parse_public("abc").is_err());
    }

    #[test]
    fn keys_round_trip_through_pkcs8_pem_and_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let key = generate().unwrap();
        write_new_key(&path, &key).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_signing_key(&path).unwrap().to_bytes(), key.to_bytes());
        let again = write_new_key(&path, &generate().unwrap()).unwrap_err();
        assert!(again.to_string().contains("exists already"), "{again}");
        assert_eq!(load_signing_key(&path).unwrap().to_bytes(), key.to_bytes());
    }
}
