//! TLS to the database with libpq's `sslmode` meanings:
//! `disable` (plain), `prefer` (default: TLS if offered, certificate not checked), `require`
//! (TLS, certificate not checked), `verify-ca` / `verify-full` (TLS, certificate checked against
//! the system roots plus `sslrootcert`, host name included).

use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::WarehouseError;
use crate::secret::Secret;

pub fn config_from_url(
    url: &Secret,
) -> Result<(tokio_postgres::Config, MakeRustlsConnect), WarehouseError> {
    let mut parsed =
        reqwest::Url::parse(url.expose()).map_err(|e| WarehouseError::Url(e.to_string()))?;
    let mut mode = "prefer".to_string();
    let mut rootcert: Option<String> = None;
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter_map(|(k, v)| match k.as_ref() {
            "sslmode" => {
                mode = v.into_owned();
                None
            }
            "sslrootcert" => {
                rootcert = Some(v.into_owned());
                None
            }
            _ => Some((k.into_owned(), v.into_owned())),
        })
        .collect();
    parsed.set_query(None);
    if !kept.is_empty() {
        parsed.query_pairs_mut().extend_pairs(kept);
    }
    // Parse errors from tokio-postgres never include the password; say only what is wrong.
    let mut config = tokio_postgres::Config::from_str(parsed.as_str())
        .map_err(|e| WarehouseError::Url(format!("{e}")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| WarehouseError::Url(e.to_string()))?;
    let client = match mode.as_str() {
        "disable" | "allow" | "prefer" | "require" => {
            config.ssl_mode(match mode.as_str() {
                "disable" => SslMode::Disable,
                "require" => SslMode::Require,
                _ => SslMode::Prefer,
            });
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth()
        }
        "verify-ca" | "verify-full" => {
            config.ssl_mode(SslMode::Require);
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            if let Some(path) = rootcert {
                let pem = std::fs::read(&path).map_err(|e| {
                    WarehouseError::Url(format!("cannot read sslrootcert {path}: {e}"))
                })?;
                for cert in rustls_pemfile_certs(&pem) {
                    roots
                        .add(cert)
                        .map_err(|e| WarehouseError::Url(format!("sslrootcert {path}: {e}")))?;
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        other => {
            return Err(WarehouseError::Url(format!(
                "sslmode `{other}` is not one of {}",
                super::settings::SSL_MODES.join(", ")
            )));
        }
    };
    Ok((config, MakeRustlsConnect::new(client)))
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

/// libpq's `require`: encrypt, but do not check the server's certificate.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
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
