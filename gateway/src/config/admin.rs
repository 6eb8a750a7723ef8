//! `[admin]`: the admin HTTP endpoint (metrics, health).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{ConfigError, ServerTlsConfig};

/// The admin HTTP endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of `/metrics` (Prometheus, OpenMetrics text), `/livez` and `/readyz` (503
    /// while starting or draining).
    pub listen: SocketAddr,
    /// TLS of the admin endpoint.
    pub tls: ServerTlsConfig,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            tls: ServerTlsConfig::default(),
        }
    }
}

impl AdminConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.tls.validate("admin.tls")
    }
}
