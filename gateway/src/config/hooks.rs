//! `[hooks]`: the `SocketHooks` service a backend serves, called by the gateway.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ClientTlsConfig, ConfigError};

/// The `SocketHooks` service a backend serves, called by the gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HooksConfig {
    /// `http://host:port` or `https://host:port` of the backend serving `SocketHooks`;
    /// empty: no hooks. Anything the gateway cannot call (another scheme, a path) is refused
    /// at load.
    pub endpoint: String,
    /// Deadline of each hook call (including the wait for a free call slot).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Calls of one hook in flight at once (each hook has its own budget and connection);
    /// further calls wait (within their deadline) and a warning is logged.
    pub max_concurrency: usize,
    /// Most `OnEvent` calls in flight for one socket; its further events are dropped
    /// (and logged) until one finishes, so a flooding client cannot pile up work.
    pub max_pending_per_socket: u32,
    /// Ask `AuthorizeJoin` about the rooms the static and JWT rules do not allow.
    pub authorize_join: bool,
    /// Forward client events to `OnEvent`; its `ack_json` becomes the client's ack.
    pub on_event: bool,
    /// Event name patterns forwarded to `OnEvent` (`*` wildcard).
    pub events: Vec<String>,
    /// TLS to an `https://` endpoint.
    pub tls: ClientTlsConfig,
}

impl Default for HooksConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            timeout: Duration::from_secs(3),
            max_concurrency: 256,
            max_pending_per_socket: 16,
            authorize_join: false,
            on_event: false,
            events: vec!["*".into()],
            tls: ClientTlsConfig::default(),
        }
    }
}

impl HooksConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if !self.endpoint.is_empty() {
            check_endpoint(&self.endpoint)?;
        }
        if self.tls.is_set() && !self.endpoint.starts_with("https://") {
            return invalid(format!(
                "hooks.tls is set but hooks.endpoint {:?} is not an https:// URL",
                self.endpoint
            ));
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return invalid("hooks.tls: set both cert_file and key_file, or neither".into());
        }
        if self.timeout.is_zero() || self.max_concurrency == 0 || self.max_pending_per_socket == 0 {
            return invalid(
                "hooks.timeout, hooks.max_concurrency and hooks.max_pending_per_socket must be \
                 more than 0"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Checks that the gateway can call a hooks endpoint at all, so that a wrong one is
/// refused when the configuration loads rather than at the first call.
fn check_endpoint(endpoint: &str) -> Result<(), ConfigError> {
    let invalid = |msg: String| Err(ConfigError::Invalid(msg));
    let uri: http::Uri = match endpoint.parse() {
        Ok(uri) => uri,
        Err(e) => return invalid(format!("hooks.endpoint {endpoint:?} is not a URL: {e}")),
    };
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return invalid(format!(
            "hooks.endpoint must be an http:// or https:// URL, got {endpoint:?}"
        ));
    }
    if uri.host().is_none_or(str::is_empty) {
        return invalid(format!("hooks.endpoint {endpoint:?} has no host"));
    }
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return invalid(format!(
            "hooks.endpoint {endpoint:?} has a path; gRPC needs the bare http(s)://host:port"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn hooks_need_an_endpoint() {
        let mut config = Config::default();
        config.hooks.on_event = true;
        assert!(config.validate().is_err());
        config.hooks.endpoint = "127.0.0.1:1".into();
        assert!(config.validate().is_err());
        config.hooks.endpoint = "http://127.0.0.1:1".into();
        config.validate().unwrap();
    }

    #[test]
    fn a_hook_endpoint_the_client_cannot_call_is_refused() {
        let mut config = Config::default();
        for (endpoint, expected) in [
            ("grpc://127.0.0.1:1", "must be an http:// or https:// URL"),
            ("https://hooks.example:443/hooks", "has a path"),
            ("http://", "not a URL"),
            ("http://127.0.0.1:1/api", "has a path"),
        ] {
            config.hooks.endpoint = endpoint.into();
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(expected), "{endpoint}: {err}");
        }
        config.hooks.endpoint = "http://localhost:50052/".into();
        config.validate().unwrap();
        config.hooks.endpoint = "https://hooks.example:443".into();
        config.validate().unwrap();
    }
}
