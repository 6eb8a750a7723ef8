//! TLS for `wss://`: a rustls configuration from the same [`TlsOptions`] as the control
//! client's (CA or system roots, optional client certificate), on the ring provider.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio_tungstenite::Connector;

use super::ClientError;
use crate::TlsOptions;

fn invalid(what: &str) -> impl Fn(String) -> ClientError + '_ {
    move |e| ClientError::InvalidOptions(format!("TLS {what}: {e}"))
}

pub(crate) fn connector(tls: &TlsOptions) -> Result<Connector, ClientError> {
    if tls.domain_override().is_some() {
        return Err(ClientError::InvalidOptions(
            "a TLS domain override is not supported for wss://: the URL's host is verified".into(),
        ));
    }
    let mut roots = RootCertStore::empty();
    match tls.ca() {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| invalid("CA")(e.to_string()))?;
                roots.add(cert).map_err(|e| invalid("CA")(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(invalid("CA")("no certificate in the PEM".into()));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("versions")(e.to_string()))?
            .with_root_certificates(roots);
    let config = match tls.identity() {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid("client certificate")(e.to_string()))?;
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| invalid("client key")(e.to_string()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| invalid("client certificate")(e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Connector::Rustls(Arc::new(config)))
}
