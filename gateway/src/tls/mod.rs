//! TLS for the gateway's listeners (rustls, ring): certificate and key from PEM files,
//! optional mutual TLS with a client CA, and reloading the files without a restart
//! (a change on disk or SIGHUP, see [`reload`]). [`listener`] turns a TCP listener into
//! a stream of finished handshakes for tonic and axum.

pub mod listener;
pub mod reload;

use std::{
    fs,
    path::Path,
    sync::{Arc, RwLock},
};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{self, RootCertStore, ServerConfig, server::WebPkiClientVerifier},
};

use crate::config::ServerTlsConfig;

/// Why a listener's TLS cannot be set up. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("{section}: cannot read {path}: {message}")]
    Read {
        /// The configuration section (`control.tls`).
        section: &'static str,
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The files do not make a usable configuration.
    #[error("{section}: {message}")]
    Invalid {
        /// The configuration section.
        section: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The rustls crypto provider of the whole gateway.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the PEM certificates of `path`.
pub fn read_certificates(
    section: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(section, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(section, format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(
            section,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

fn read(section: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|e| TlsError::Read {
        section,
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn invalid(section: &'static str, message: String) -> TlsError {
    TlsError::Invalid { section, message }
}

/// A listener's TLS settings, rebuilt from the files on [`ServerTls::reload`].
pub struct ServerTls {
    section: &'static str,
    config: ServerTlsConfig,
    alpn: Vec<Vec<u8>>,
    current: RwLock<Arc<ServerConfig>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("section", &self.section)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// The TLS of `config` (`None` when it names no certificate); `alpn` lists the
    /// application protocols offered (`h2` for gRPC, `http/1.1` for the edge).
    pub fn load(
        section: &'static str,
        config: &ServerTlsConfig,
        alpn: &[&[u8]],
    ) -> Result<Option<Arc<Self>>, TlsError> {
        if !config.is_enabled() {
            return Ok(None);
        }
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
        let built = build(section, config, &alpn)?;
        Ok(Some(Arc::new(Self {
            section,
            config: config.clone(),
            alpn,
            current: RwLock::new(Arc::new(built)),
        })))
    }

    /// The configuration section, for logs.
    pub fn section(&self) -> &'static str {
        self.section
    }

    /// The files this TLS is read from.
    pub fn config(&self) -> &ServerTlsConfig {
        &self.config
    }

    /// Reads the files again; on error the previous certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let built = build(self.section, &self.config, &self.alpn)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(built);
        Ok(())
    }

    /// An acceptor with the current certificate, for one connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn build(
    section: &'static str,
    config: &ServerTlsConfig,
    alpn: &[Vec<u8>],
) -> Result<ServerConfig, TlsError> {
    let (Some(cert_file), Some(key_file)) = (&config.cert_file, &config.key_file) else {
        return Err(invalid(section, "set both cert_file and key_file".into()));
    };
    let chain = read_certificates(section, cert_file)?;
    let key = PrivateKeyDer::from_pem_slice(&read(section, key_file)?)
        .map_err(|e| invalid(section, format!("{}: {e}", key_file.display())))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(section, e.to_string()))?;
    let builder = match &config.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certificates(section, ca_file)? {
                roots
                    .add(cert)
                    .map_err(|e| invalid(section, format!("{}: {e}", ca_file.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| invalid(section, format!("{}: {e}", ca_file.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = builder.with_single_cert(chain, key).map_err(|e| {
        invalid(
            section,
            format!(
                "{} and {} do not make a usable certificate: {e}",
                cert_file.display(),
                key_file.display()
            ),
        )
    })?;
    server.alpn_protocols = alpn.to_vec();
    Ok(server)
}
