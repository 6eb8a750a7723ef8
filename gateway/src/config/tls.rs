//! TLS settings, shared by the sections that have them: the listeners (`edge.tls`,
//! `control.tls`, `admin.tls`) and the hooks client (`hooks.tls`).

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// TLS of a listener: set `cert_file` and `key_file` to serve TLS.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM certificate chain (leaf first); set with `key_file`, the port speaks TLS only
    /// (the edge: `https://` / `wss://`, ALPN `http/1.1`); unset: plaintext.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM CA bundle client certificates must chain to; set: mutual TLS, a client without
    /// a valid certificate is refused at the handshake.
    pub client_ca_file: Option<PathBuf>,
    /// How often the files are checked for a change (and reloaded); 0: only on SIGHUP.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl Default for ServerTlsConfig {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            reload_interval: Duration::from_secs(10),
        }
    }
}

impl ServerTlsConfig {
    /// True when the listener serves TLS.
    pub fn is_enabled(&self) -> bool {
        self.cert_file.is_some()
    }

    /// Checks the TLS of `section` (`edge.tls`, ...), named in the errors.
    pub(super) fn validate(&self, section: &str) -> Result<(), ConfigError> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(ConfigError::Invalid(format!(
                "{section}: set both cert_file and key_file, or neither"
            )));
        }
        if self.client_ca_file.is_some() && !self.is_enabled() {
            return Err(ConfigError::Invalid(format!(
                "{section}.client_ca_file needs cert_file and key_file (mutual TLS is TLS)"
            )));
        }
        Ok(())
    }
}

/// TLS of a client (the hooks endpoint).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// PEM CA bundle the server's certificate must chain to; unset: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with `key_file`).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Name the server's certificate must carry; unset: the endpoint's host.
    pub domain_name: Option<String>,
}

impl ClientTlsConfig {
    /// True when anything is set.
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some()
            || self.cert_file.is_some()
            || self.key_file.is_some()
            || self.domain_name.is_some()
    }
}
