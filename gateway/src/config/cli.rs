//! The command line: flags that override the file and the environment, and subcommands.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use figment::{
    Metadata, Profile, Provider,
    providers::Serialized,
    value::{Dict, Map},
};

use super::LogFormat;

/// The name of the flags among the configuration's sources.
pub(super) const FLAGS: &str = "command-line flag";

/// Command-line flags; each overrides the file and the environment.
#[derive(Debug, Default, clap::Parser)]
#[command(
    name = "sockgate",
    version,
    about = "Socket.IO edge driven by a gRPC control plane"
)]
pub struct Cli {
    /// TOML configuration file (also `SOCKGATE_CONFIG`).
    #[arg(short, long, env = super::env::CONFIG_FILE, global = true)]
    pub config: Option<PathBuf>,
    /// Socket.IO edge address, e.g. 0.0.0.0:3000.
    #[arg(long, global = true)]
    pub edge_listen: Option<SocketAddr>,
    /// Control plane address, e.g. 127.0.0.1:50051.
    #[arg(long, global = true)]
    pub control_listen: Option<SocketAddr>,
    /// Admin endpoint address (metrics, health), e.g. 127.0.0.1:9464.
    #[arg(long, global = true)]
    pub admin_listen: Option<SocketAddr>,
    /// Node id.
    #[arg(long, global = true)]
    pub node_id: Option<String>,
    /// Log format: text or json.
    #[arg(long, global = true)]
    pub log_format: Option<LogFormat>,
    /// What to do instead of running the gateway.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print a signed JWT for the control plane (`control.auth`) or, with `--edge`, for a
    /// socket (`auth.jwt`), signed with the configuration's HMAC secret or `--private-key`.
    Token(TokenArgs),
    /// Inspect the configuration: its reference, a check of a file and the environment,
    /// the effective values.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `sockgate config`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the reference of every setting (key, type, default, meaning) as Markdown.
    Reference {
        /// Replace the reference in this README (between its config-reference markers)
        /// instead of printing it.
        #[arg(long)]
        readme: Option<PathBuf>,
    },
    /// Load and check the file, the environment and the flags; print every problem
    /// found and exit non-zero, or print "ok".
    Check,
    /// Print the effective configuration as TOML, secrets masked, with where each value
    /// came from (default, file, environment or flag).
    Print,
}

/// `sockgate token`.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// Scopes to grant (repeatable or comma-separated): send, membership, read,
    /// disconnect, events, admin.
    #[arg(long, short, value_delimiter = ',')]
    pub scope: Vec<String>,
    /// The `sub` claim (the caller's name in logs, or the socket's user id).
    #[arg(long, default_value = "sockgate-token")]
    pub subject: String,
    /// How long the token is valid, e.g. 15m, 24h.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// `iss`; default: the first configured issuer, if any.
    #[arg(long)]
    pub issuer: Option<String>,
    /// `aud`; default: the first configured audience, if any.
    #[arg(long)]
    pub audience: Option<String>,
    /// Sign a socket token with the `auth.jwt` keys instead.
    #[arg(long)]
    pub edge: bool,
    /// PEM private key (RSA, EC or Ed25519) to sign with instead of the HMAC secret.
    #[arg(long)]
    pub private_key: Option<PathBuf>,
    /// Algorithm of `--private-key`, e.g. RS256, ES256, EdDSA.
    #[arg(long, requires = "private_key")]
    pub algorithm: Option<String>,
}

/// The flags that are set, as a source of the configuration that wins over the file and
/// the environment.
impl Provider for Cli {
    fn metadata(&self) -> Metadata {
        Metadata::named(FLAGS)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut flags = serde_json::json!({});
        if let Some(addr) = self.edge_listen {
            flags["edge"]["listen"] = serde_json::json!(addr);
        }
        if let Some(addr) = self.control_listen {
            flags["control"]["listen"] = serde_json::json!(addr);
        }
        if let Some(addr) = self.admin_listen {
            flags["admin"]["listen"] = serde_json::json!(addr);
        }
        if let Some(id) = &self.node_id {
            flags["node_id"] = serde_json::json!(id);
        }
        if let Some(format) = self.log_format {
            flags["log"]["format"] = serde_json::json!(format);
        }
        Serialized::defaults(flags).data()
    }
}
