//! The command line: flags that override the file and the environment, and subcommands.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use super::LogFormat;

/// Command-line flags; each overrides the file and the environment.
#[derive(Debug, Default, clap::Parser)]
#[command(
    name = "sockgate",
    version,
    about = "Socket.IO edge driven by a gRPC control plane"
)]
pub struct Cli {
    /// TOML configuration file (also `SOCKGATE_CONFIG`).
    #[arg(short, long, env = super::env::CONFIG_FILE)]
    pub config: Option<PathBuf>,
    /// Socket.IO edge address, e.g. 0.0.0.0:3000.
    #[arg(long)]
    pub edge_listen: Option<SocketAddr>,
    /// Control plane address, e.g. 127.0.0.1:50051.
    #[arg(long)]
    pub control_listen: Option<SocketAddr>,
    /// Admin endpoint address (metrics, health), e.g. 127.0.0.1:9464.
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// Node id.
    #[arg(long)]
    pub node_id: Option<String>,
    /// Log format: text or json.
    #[arg(long)]
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

impl Cli {
    /// Applies the flags that are set to `config` (they win over the file and the
    /// environment).
    pub(super) fn apply(&self, config: &mut super::Config) {
        if let Some(addr) = self.edge_listen {
            config.edge.listen = addr;
        }
        if let Some(addr) = self.control_listen {
            config.control.listen = addr;
        }
        if let Some(addr) = self.admin_listen {
            config.admin.listen = addr;
        }
        if let Some(id) = &self.node_id {
            config.node_id.clone_from(id);
        }
        if let Some(format) = self.log_format {
            config.log.format = format;
        }
    }
}
