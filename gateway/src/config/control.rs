//! `[control]`: the internal gRPC listener of `SocketControl`, and `[control.auth]`, the
//! authentication of its callers.

use std::{net::SocketAddr, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, de::MapAccess};

use super::{
    ConfigError, JwtRules, ServerTlsConfig,
    jwt::{self, JwtSection},
};

/// The internal gRPC listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// Address the control plane listens on (`SocketControl`, health, reflection).
    pub listen: SocketAddr,
    /// Allow a non-loopback `listen` address without caller authentication
    /// (`control.auth`). Off: such an address is refused at start.
    pub allow_remote_unauthenticated: bool,
    /// Largest `data_json` plus attachments a `Send` may carry, in bytes.
    pub max_payload_bytes: usize,
    /// Longest ack timeout a `Send` may ask for.
    #[serde(with = "humantime_serde")]
    pub max_ack_timeout: Duration,
    /// Most bytes of ack replies (their JSON text) one `Send` in ack mode collects; past
    /// that it is `RESOURCE_EXHAUSTED`.
    pub max_ack_reply_bytes: usize,
    /// Most commands one `Batch` may carry; more is `INVALID_ARGUMENT`.
    pub max_batch_commands: usize,
    /// Largest encoded `Batch` request, in bytes; larger is `RESOURCE_EXHAUSTED`. Each
    /// `Send` in it is still bounded by `max_payload_bytes`.
    pub max_batch_bytes: usize,
    /// Longest a call may run, whatever deadline the caller sets (or none); must exceed
    /// `max_ack_timeout`. Past it the call ends with `DEADLINE_EXCEEDED` (for `WatchEvents`
    /// it bounds the setup, not the stream).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Most `SocketControl` calls in progress at once; more are refused at once with
    /// `RESOURCE_EXHAUSTED` (load shedding) and counted in `sockgate_control_shed_total`
    /// (health and reflection are not limited).
    pub max_concurrent_calls: usize,
    /// Caller authentication (bearer JWTs with scopes).
    pub auth: ControlAuthConfig,
    /// TLS (and mutual TLS) of the control port.
    pub tls: ServerTlsConfig,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            allow_remote_unauthenticated: false,
            max_payload_bytes: 1 << 20,
            max_ack_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(75),
            max_concurrent_calls: 1024,
            auth: ControlAuthConfig::default(),
            tls: ServerTlsConfig::default(),
            max_ack_reply_bytes: 4 << 20,
            max_batch_commands: 1000,
            max_batch_bytes: 4 << 20,
        }
    }
}

/// Caller authentication of the control plane: `authorization: Bearer <jwt>` metadata,
/// verified with these keys (separate from the edge's `auth.jwt`).
#[derive(Debug, Clone, Serialize)]
pub struct ControlAuthConfig {
    /// Verification keys and claim checks, as in `auth.jwt`; no key and no JWKS: callers
    /// are not authenticated.
    #[serde(flatten)]
    pub rules: JwtRules,
    /// Claim holding the granted scopes (a space-separated string or an array).
    pub scope_claim: String,
    /// Whether server reflection needs a valid token (any scope) or is open.
    pub reflection: ReflectionAccess,
}

impl Default for ControlAuthConfig {
    fn default() -> Self {
        Self {
            rules: JwtRules::default(),
            scope_claim: "scope".into(),
            reflection: ReflectionAccess::Authenticated,
        }
    }
}

impl JwtSection for ControlAuthConfig {
    const NAME: &'static str = "control.auth";
    const FIELDS: &'static [&'static str] =
        &jwt::section_fields::<2, 7>(["scope_claim", "reflection"]);

    fn rules_mut(&mut self) -> &mut JwtRules {
        &mut self.rules
    }

    fn read_own<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        match key {
            "scope_claim" => self.scope_claim = map.next_value()?,
            "reflection" => self.reflection = map.next_value()?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl<'de> Deserialize<'de> for ControlAuthConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        jwt::deserialize_section(deserializer)
    }
}

impl ControlAuthConfig {
    /// True when callers must present a token.
    pub fn is_enabled(&self) -> bool {
        self.rules.has_keys()
    }
}

/// Who may call server reflection when control authentication is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReflectionAccess {
    /// Anyone who reaches the port.
    Open,
    /// Callers with a valid token, whatever its scopes.
    Authenticated,
}

impl ControlConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        self.auth.rules.validate("control.auth")?;
        if !self.listen.ip().is_loopback()
            && !self.auth.is_enabled()
            && !self.allow_remote_unauthenticated
        {
            return invalid(format!(
                "control.listen {} is not a loopback address and the control plane is not \
                 authenticated; configure control.auth.keys or control.auth.jwks, or set \
                 control.allow_remote_unauthenticated = true to accept that",
                self.listen
            ));
        }
        if self.max_ack_timeout.is_zero() {
            return invalid("control.max_ack_timeout must be more than 0".into());
        }
        if self.request_timeout <= self.max_ack_timeout {
            return invalid(format!(
                "control.request_timeout ({:?}) must be longer than control.max_ack_timeout \
                 ({:?}), or a Send waiting for acks would always be cut off",
                self.request_timeout, self.max_ack_timeout
            ));
        }
        self.tls.validate("control.tls")?;
        if self.max_concurrent_calls == 0 {
            return invalid("control.max_concurrent_calls must be more than 0".into());
        }
        if self.max_ack_reply_bytes == 0 {
            return invalid("control.max_ack_reply_bytes must be more than 0".into());
        }
        if self.max_batch_commands == 0 {
            return invalid("control.max_batch_commands must be more than 0".into());
        }
        if self.max_batch_bytes == 0 {
            return invalid("control.max_batch_bytes must be more than 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, JwtKeyConfig};

    #[test]
    fn public_control_port_needs_an_explicit_opt_in() {
        let mut config = Config::default();
        config.control.listen = "0.0.0.0:50051".parse().unwrap();
        assert!(config.validate().is_err());
        config.control.allow_remote_unauthenticated = true;
        config.validate().unwrap();
    }

    #[test]
    fn authenticated_control_port_may_leave_loopback() {
        let mut config = Config::default();
        config.control.listen = "0.0.0.0:50051".parse().unwrap();
        config.control.auth.rules.keys.push(JwtKeyConfig {
            algorithm: "HS256".into(),
            secret_file: None,
            secret_env: Some("CONTROL_JWT_SECRET".into()),
            public_key_file: None,
        });
        config.validate().unwrap();
    }

    #[test]
    fn a_jwks_alone_authenticates_the_control_port() {
        let mut config = Config::default();
        config.control.listen = "0.0.0.0:50051".parse().unwrap();
        config.control.auth.rules.jwks.url = "https://issuer.example/jwks.json".into();
        assert!(config.control.auth.is_enabled());
        config.validate().unwrap();
    }

    #[test]
    fn request_timeout_must_exceed_the_ack_timeout() {
        let mut config = Config::default();
        config.control.request_timeout = config.control.max_ack_timeout;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("control.request_timeout"), "{err}");
    }
}
