//! TLS for `dr`'s own PostgreSQL connections, following libpq's `sslmode`:
//! `disable`; `allow`/`prefer` (TLS when offered, certificate not checked); `require`
//! (TLS, certificate not checked); `verify-ca` (chain checked against `sslrootcert`, or the
//! system store); `verify-full` (chain and host name). tokio-postgres itself only knows
//! disable/prefer/require, so the URL it parses is rewritten; children (pg_dump, pg_restore)
//! get the original parameters, which libpq understands.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub root_cert: Option<PathBuf>,
}

/// Parameters tokio-postgres does not accept; libpq children still get them.
const LIBPQ_ONLY: &[&str] = &[
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "sslpassword",
    "sslcompression",
    "sslsni",
];

/// Splits a URL into what tokio-postgres parses and the TLS settings.
pub fn split(url: &str) -> Result<(String, TlsSettings)> {
    let mut mode = SslMode::Prefer;
    let mut root_cert = None;
    let Ok(mut parsed) = url::Url::parse(url) else {
        // Keyword/value strings: tokio-postgres handles disable/prefer/require itself.
        return Ok((url.to_string(), TlsSettings { mode, root_cert }));
    };
    let mut kept = Vec::new();
    for (k, v) in parsed.query_pairs() {
        match k.as_ref() {
            "sslmode" => {
                mode = match v.as_ref() {
                    "disable" => SslMode::Disable,
                    "allow" | "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    other => bail!("unknown sslmode {other:?}; use disable, prefer, require, verify-ca or verify-full"),
                };
            }
            "sslrootcert" => root_cert = Some(PathBuf::from(v.as_ref())),
            key if LIBPQ_ONLY.contains(&key) => {}
            _ => kept.push((k.into_owned(), v.into_owned())),
        }
    }
    let tokio_mode = match mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        _ => "require",
    };
    kept.push(("sslmode".into(), tokio_mode.into()));
    parsed.query_pairs_mut().clear().extend_pairs(kept);
    Ok((parsed.to_string(), TlsSettings { mode, root_cert }))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The rustls client configuration for these settings.
pub fn client_config(settings: &TlsSettings) -> Result<ClientConfig> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = match settings.mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = Arc::new(root_store(settings)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider).build()?;
            if settings.mode == SslMode::VerifyFull {
                builder.with_webpki_verifier(webpki).with_no_client_auth()
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
                    .with_no_client_auth()
            }
        }
    };
    Ok(config)
}

fn root_store(settings: &TlsSettings) -> Result<RootCertStore> {
    use rustls::pki_types::pem::PemObject;
    let mut store = RootCertStore::empty();
    let default_file = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".postgresql/root.crt"))
        .filter(|p| p.exists());
    match settings.root_cert.clone().or(default_file) {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(&path).with_context(|| {
                format!(
                    "cannot read sslrootcert {}; hint: point sslrootcert at the CA's PEM file",
                    path.display()
                )
            })? {
                store.add(cert.with_context(|| {
                    format!("{} holds an invalid certificate", path.display())
                })?)?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = store.add(cert);
            }
        }
    }
    if store.is_empty() {
        bail!("no CA certificate to verify the server with; hint: set sslrootcert=/path/ca.pem in the URL or install the CA in the system store");
    }
    Ok(store)
}

/// libpq's `require`: encrypted, but the certificate is not checked. Signatures are still
/// verified, so the handshake itself is sound.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// libpq's `verify-ca`: the chain must lead to a trusted CA; the host name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_libpq_modes_for_tokio_postgres() {
        let (url, tls) = split(
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert!(
            url.contains("sslmode=require")
                && url.contains("application_name=x")
                && !url.contains("sslrootcert"),
            "{url}"
        );
        let (url, tls) = split("postgres://u@h/db").unwrap();
        assert_eq!(tls.mode, SslMode::Prefer);
        assert!(url.ends_with("sslmode=prefer"), "{url}");
        assert_eq!(
            split("postgres://u@h/db?sslmode=disable").unwrap().1.mode,
            SslMode::Disable
        );
        assert!(split("postgres://u@h/db?sslmode=bogus").is_err());
    }

    #[test]
    fn builds_configs_for_every_mode() {
        for mode in [SslMode::Disable, SslMode::Prefer, SslMode::Require] {
            client_config(&TlsSettings {
                mode,
                root_cert: None,
            })
            .unwrap();
        }
        let err = client_config(&TlsSettings {
            mode: SslMode::VerifyFull,
            root_cert: Some("/nonexistent/ca.pem".into()),
        })
        .unwrap_err();
        assert!(err.to_string().contains("sslrootcert"), "{err}");
    }
}
