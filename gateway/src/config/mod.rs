//! Configuration: typed settings with their defaults, loaded from a TOML file, then
//! `SOCKGATE_*` environment variables, then command-line flags (later wins).
//!
//! One module per section of the file (`edge`, `limits` for `edge.limits`, `auth`,
//! `control`, `rooms`, `hooks`, `watch`, `recovery`, `cluster`, `admin`, `log`), each with its types,
//! defaults and checks; `jwt` holds the rules `auth.jwt` and `control.auth` share, `tls`
//! the TLS settings of the listeners and of the hooks client, `env` which `SOCKGATE_*`
//! variables are settings, and `cli` the flags; `reference` makes the settings' reference
//! from their doc comments and defaults, and `inspect` runs `sockgate config`. This module
//! loads them and checks what spans sections.

mod admin;
mod auth;
mod cli;
mod cluster;
mod control;
mod edge;
mod env;
mod hooks;
mod inspect;
mod jwt;
mod limits;
mod log;
mod recovery;
mod reference;
mod rooms;
mod tls;
mod watch;

use std::time::Duration;

use figment::{
    Figment,
    providers::{Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

pub use admin::{AdminConfig, AdminUiConfig};
pub use auth::{AuthConfig, AuthenticatorKind, JwtConfig};
pub use cli::{Cli, Command, ConfigCommand, TokenArgs};
pub use cluster::{AdapterKind, ClusterConfig};
pub use control::{ControlAuthConfig, ControlConfig, ReflectionAccess};
pub use edge::{EdgeConfig, Parser, Transport};
pub use env::UnknownVariables;
pub use hooks::HooksConfig;
pub use inspect::run_config_command;
pub use jwt::{JwksConfig, JwtKeyConfig, JwtRules};
pub use limits::EdgeLimits;
pub use log::{LogConfig, LogFormat};
pub use recovery::RecoveryConfig;
pub use rooms::RoomsConfig;
pub use tls::{ClientTlsConfig, ServerTlsConfig};
pub use watch::WatchConfig;

/// Every setting of the gateway. Each field's doc comment is its entry in the reference
/// (`sockgate config reference`, the README's table), so write it for the operator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Name of this node in `GetInfo`, `SocketInfo.node_id` and watch events; empty:
    /// generated at start (`node-xxxxxxxx`). Give each node of a cluster its own (at most 128
    /// characters, no spaces or `#`).
    pub node_id: String,
    /// The Socket.IO edge.
    pub edge: EdgeConfig,
    /// The `SocketControl` gRPC control plane.
    pub control: ControlConfig,
    /// How sockets authenticate.
    pub auth: AuthConfig,
    /// Which rooms clients may join themselves.
    pub rooms: RoomsConfig,
    /// The backend's `SocketHooks` service.
    pub hooks: HooksConfig,
    /// `WatchEvents` streams.
    pub watch: WatchConfig,
    /// Connection state recovery.
    pub recovery: RecoveryConfig,
    /// One node or several (on Redis).
    pub cluster: ClusterConfig,
    /// The admin HTTP endpoint (metrics, health).
    pub admin: AdminConfig,
    /// Logging.
    pub log: LogConfig,
    /// How long a graceful shutdown may take before the remaining sockets are dropped.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// After SIGTERM, how long the node keeps its sockets while refusing new connections
    /// and reporting not ready, before it tells them to disconnect (time for a load
    /// balancer to stop sending new clients).
    #[serde(with = "humantime_serde")]
    pub shutdown_delay: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_id: String::new(),
            edge: EdgeConfig::default(),
            control: ControlConfig::default(),
            auth: AuthConfig::default(),
            rooms: RoomsConfig::default(),
            hooks: HooksConfig::default(),
            watch: WatchConfig::default(),
            recovery: RecoveryConfig::default(),
            cluster: ClusterConfig::default(),
            admin: AdminConfig::default(),
            log: LogConfig::default(),
            shutdown_timeout: Duration::from_secs(10),
            shutdown_delay: Duration::ZERO,
        }
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or a variable could not be read or has a wrong type.
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// `SOCKGATE_*` variables that are not settings (a misspelled one, most likely).
    #[error("configuration: {0}")]
    UnknownVariables(UnknownVariables),
    /// The values are inconsistent or unsafe.
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads defaults, then the file (if any), then `SOCKGATE_*` variables (`__` separates
    /// sections: `SOCKGATE_EDGE__LISTEN`; `sockctl`'s variables are ignored, any other
    /// `SOCKGATE_*` one is refused), then the flags; and validates the result.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        let config: Config = Self::sources(cli)?.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// The sources of the configuration, merged in order (later wins): defaults, the
    /// file, the environment, the flags.
    fn sources(cli: &Cli) -> Result<Figment, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = &cli.config {
            if !path.is_file() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        let variables = std::env::vars_os().map(|(name, _)| name.to_string_lossy().into_owned());
        figment = figment.merge(env::Keys::of_config().provider(variables)?);
        Ok(figment.merge(cli))
    }

    /// True when no authenticator is configured: the development default.
    pub fn is_dev_mode(&self) -> bool {
        self.auth.authenticators.is_empty()
    }

    /// Checks each section, then what spans sections: the first problem.
    fn validate(&self) -> Result<(), ConfigError> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }

    /// The first problem of each section, then those that span sections.
    fn problems(&self) -> Vec<ConfigError> {
        [
            self.edge.validate(),
            self.auth.validate(),
            self.control.validate(),
            self.hooks.validate(),
            self.watch.validate(),
            self.recovery.validate(),
            self.cluster.validate(),
            self.admin.validate(),
            self.validate_across_sections(),
        ]
        .into_iter()
        .filter_map(Result::err)
        .collect()
    }

    fn validate_across_sections(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if self.is_dev_mode() && !self.edge.listen.ip().is_loopback() {
            return invalid(format!(
                "no authenticator is configured (auth.authenticators), so the edge may only \
                 listen on loopback, not {}; configure `jwt`, or `none` with auth.allow_none",
                self.edge.listen
            ));
        }
        let uses_hooks = self.auth.authenticators.contains(&AuthenticatorKind::Hook)
            || self.hooks.authorize_join
            || self.hooks.on_event;
        if uses_hooks && self.hooks.endpoint.is_empty() {
            return invalid(
                "the `hook` authenticator, hooks.authorize_join and hooks.on_event need \
                 hooks.endpoint"
                    .into(),
            );
        }
        // The node id names the node in the cluster's keys and messages.
        if self.node_id.contains(['#', ' ']) || self.node_id.len() > 128 {
            return invalid("node_id must be at most 128 characters, without spaces or '#'".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_a_valid_dev_config() {
        let config = Config::default();
        config.validate().unwrap();
        assert!(config.is_dev_mode());
    }

    #[test]
    fn dev_mode_refuses_a_public_edge() {
        let mut config = Config::default();
        config.edge.listen = "0.0.0.0:3000".parse().unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("loopback"), "{err}");
    }

    #[test]
    fn the_hook_authenticator_needs_an_endpoint() {
        let mut config = Config::default();
        config.auth.authenticators = vec![AuthenticatorKind::Hook];
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("need hooks.endpoint"), "{err}");
        config.hooks.endpoint = "http://127.0.0.1:1".into();
        config.validate().unwrap();
    }

    #[test]
    fn toml_file_sets_nested_values() {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(
                "[edge]\nauth_timeout = \"2s\"\ndefault_rooms = [\"lobby\"]\n[rooms]\nallow = [\"chat:*\"]",
            ))
            .extract()
            .unwrap();
        assert_eq!(config.edge.auth_timeout, Duration::from_secs(2));
        assert_eq!(config.edge.default_rooms, vec!["lobby"]);
        assert_eq!(config.rooms.allow, vec!["chat:*"]);
        assert_eq!(config.edge.path, "/io");
        let heartbeat: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(
                "[edge]\nping_interval = \"400ms\"\nping_timeout = \"1m\"",
            ))
            .extract()
            .unwrap();
        assert_eq!(heartbeat.edge.ping_interval, Duration::from_millis(400));
        assert_eq!(heartbeat.edge.ping_timeout, Duration::from_secs(60));
    }
}
