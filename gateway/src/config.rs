//! Configuration: typed settings with their defaults, loaded from a TOML file, then
//! `SOCKGATE_*` environment variables, then command-line flags (later wins).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

/// Every setting of the gateway. The README documents each one with its default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Name of this node in `GetInfo` and `SocketInfo.node_id`; empty: generated at start.
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
            cluster: ClusterConfig::default(),
            admin: AdminConfig::default(),
            log: LogConfig::default(),
            shutdown_timeout: Duration::from_secs(10),
            shutdown_delay: Duration::ZERO,
        }
    }
}

/// The public Socket.IO listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// Address the Socket.IO edge listens on.
    pub listen: SocketAddr,
    /// Connections the kernel queues for the edge before they are accepted (the listen
    /// backlog; Linux caps it at `net.core.somaxconn`). A reconnect storm beyond it is
    /// dropped or reset by the kernel before the gateway sees it.
    pub listen_backlog: u32,
    /// Socket.IO request path (the client's `path` option).
    pub path: String,
    /// Origins allowed by CORS; `["*"]` allows any, an empty list sends no CORS headers.
    pub cors_origins: Vec<String>,
    /// Transports accepted: `websocket`, `polling` or both.
    pub transports: Vec<Transport>,
    /// Sockets that have not authenticated within this time are disconnected.
    #[serde(with = "humantime_serde")]
    pub auth_timeout: Duration,
    /// Longest wait for a request's head (a new connection's first request, or the next
    /// one on a kept-alive connection); past it the connection is closed.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Interval of the application `ping {time}` sent to authenticated sockets; 0 disables it.
    #[serde(with = "humantime_serde")]
    pub app_ping_interval: Duration,
    /// Engine.IO heartbeat: how often the server pings each socket (socket.io's
    /// `pingInterval`, told to the client in the handshake).
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// Engine.IO heartbeat: a socket that has not answered a ping within this time is
    /// disconnected (socket.io's `pingTimeout`).
    #[serde(with = "humantime_serde")]
    pub ping_timeout: Duration,
    /// Rooms every authenticated socket joins.
    pub default_rooms: Vec<String>,
    /// Largest message accepted from a client, in bytes (a polling request body or a
    /// WebSocket message); a client that sends more is disconnected.
    pub max_payload_bytes: u64,
    /// Most rooms one client `join` / `leave` request may name.
    pub max_rooms_per_request: usize,
    /// TLS of the edge (`https://` / `wss://` without a terminating proxy).
    pub tls: ServerTlsConfig,
    /// Per-socket and per-address limits.
    pub limits: EdgeLimits,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            listen_backlog: 4096,
            path: "/io".into(),
            cors_origins: vec!["*".into()],
            transports: vec![Transport::Websocket, Transport::Polling],
            auth_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            app_ping_interval: Duration::from_secs(30),
            // socketioxide's (and Node socket.io's) defaults.
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            default_rooms: vec!["io-default".into(), "io-notification".into()],
            max_payload_bytes: 1_000_000,
            max_rooms_per_request: 100,
            tls: ServerTlsConfig::default(),
            limits: EdgeLimits::default(),
        }
    }
}

/// What one socket or one client address may use of the edge. 0 turns a limit off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeLimits {
    /// Sustained client events per second per socket (every event counts, `authenticate`,
    /// `join` and `leave` included); events past the rate are dropped.
    pub events_per_second: u32,
    /// Events a socket may send at once above its rate.
    pub event_burst: u32,
    /// Dropped events after which a socket that does not slow down (its burst never
    /// refills) is sent `force_disconnect` and disconnected.
    pub max_dropped_events: u32,
    /// `join` / `leave` requests of one socket in flight at once (an `AuthorizeJoin` call
    /// included); past that they are refused at once.
    pub max_room_requests_in_flight: u32,
    /// Rooms a socket may have joined through its own `join` requests.
    pub max_rooms_per_socket: usize,
    /// Socket.IO connections of this node.
    pub max_connections: usize,
    /// Socket.IO connections from one client address (IPv6: its /64).
    pub max_connections_per_ip: u32,
    /// New sessions (handshakes) per second from one client address (IPv6: its /64).
    pub handshakes_per_ip_per_second: u32,
    /// New sessions one client address may open at once above that rate.
    pub handshake_burst_per_ip: u32,
    /// Largest handshake a socket may connect with, in bytes: the opening request's URI
    /// and headers, and (separately) its Socket.IO `auth` object as JSON. Both are kept
    /// while the socket lives.
    pub max_handshake_bytes: usize,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        Self {
            events_per_second: 100,
            event_burst: 300,
            max_dropped_events: 300,
            max_room_requests_in_flight: 4,
            max_rooms_per_socket: 100,
            max_connections: 100_000,
            max_connections_per_ip: 1000,
            handshakes_per_ip_per_second: 50,
            handshake_burst_per_ip: 500,
            max_handshake_bytes: 32 * 1024,
        }
    }
}

/// A Socket.IO transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// WebSocket.
    Websocket,
    /// HTTP long-polling.
    Polling,
}

/// The internal gRPC listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// Address the control plane listens on.
    pub listen: SocketAddr,
    /// Allow a non-loopback `listen` address without caller authentication
    /// (`control.auth`). Off: such an address is refused at start.
    pub allow_remote_unauthenticated: bool,
    /// Largest `data_json` plus attachments a `Send` may carry, in bytes.
    pub max_payload_bytes: usize,
    /// Longest ack timeout a `Send` may ask for.
    #[serde(with = "humantime_serde")]
    pub max_ack_timeout: Duration,
    /// Most bytes of ack replies (their JSON text) one `Send` in ack mode collects.
    pub max_ack_reply_bytes: usize,
    /// Longest a call may run, whatever deadline the caller sets (or none); must exceed
    /// `max_ack_timeout`. Past it the call ends with `DEADLINE_EXCEEDED`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Most `SocketControl` calls in progress at once; more are refused at once with
    /// `RESOURCE_EXHAUSTED` (load shedding) and counted.
    pub max_concurrent_calls: usize,
    /// Caller authentication (bearer JWTs with scopes).
    pub auth: ControlAuthConfig,
    /// TLS (and mutual TLS) of the control port.
    pub tls: ServerTlsConfig,
}

/// TLS of a listener: set `cert_file` and `key_file` to serve TLS.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM certificate chain (leaf first); unset: plaintext.
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

    fn validate(&self, section: &str) -> Result<(), ConfigError> {
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

/// Caller authentication of the control plane: `authorization: Bearer <jwt>` metadata,
/// verified with these keys (separate from the edge's `auth.jwt`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlAuthConfig {
    /// Verification keys, as in `auth.jwt.keys`; empty: callers are not authenticated.
    pub keys: Vec<JwtKeyConfig>,
    /// Accepted `iss` values; empty: not checked.
    pub issuers: Vec<String>,
    /// Accepted `aud` values; empty: not checked.
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `exp` / `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Claim holding the granted scopes (a space-separated string or an array).
    pub scope_claim: String,
    /// Whether server reflection needs a valid token (any scope) or is open.
    pub reflection: ReflectionAccess,
    /// Keys published as a JSON Web Key Set, besides `keys`.
    pub jwks: JwksConfig,
}

impl Default for ControlAuthConfig {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway_secs: 5,
            scope_claim: "scope".into(),
            reflection: ReflectionAccess::Authenticated,
            jwks: JwksConfig::default(),
        }
    }
}

impl ControlAuthConfig {
    /// True when callers must present a token.
    pub fn is_enabled(&self) -> bool {
        !self.keys.is_empty() || self.jwks.is_set()
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
        }
    }
}

/// Authenticators and their settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Authenticators tried in order; the first that allows wins. Empty: development
    /// mode (`none`, edge on loopback only).
    pub authenticators: Vec<AuthenticatorKind>,
    /// Must be true for `none` to be accepted in `authenticators`.
    pub allow_none: bool,
    /// The `jwt` authenticator.
    pub jwt: JwtConfig,
}

/// An authenticator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthenticatorKind {
    /// Verify a JWT locally.
    Jwt,
    /// Ask the backend's `SocketHooks.Authenticate`.
    Hook,
    /// Allow everyone (development only).
    None,
}

/// Local JWT verification.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// Verification keys; a token is checked with the keys of its `alg`.
    pub keys: Vec<JwtKeyConfig>,
    /// Accepted `iss` values; empty: not checked.
    pub issuers: Vec<String>,
    /// Accepted `aud` values; empty: not checked.
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `exp` / `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Query parameter that may carry the token.
    pub query_param: String,
    /// Claim holding the room patterns the user may join (array of strings).
    pub rooms_claim: String,
    /// Keys published as a JSON Web Key Set, besides `keys`.
    pub jwks: JwksConfig,
}

/// A JSON Web Key Set: verification keys an issuer publishes, selected by the token's
/// `kid`, refreshed without a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwksConfig {
    /// `https://` or `http://` URL of the JWKS document; empty: none.
    pub url: String,
    /// A JWKS file instead of a URL.
    pub file: Option<PathBuf>,
    /// How often the set is read again; 0: only when a token names an unknown `kid`.
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// Least time between two reads caused by unknown `kid`s.
    #[serde(with = "humantime_serde")]
    pub min_refresh_interval: Duration,
    /// Deadline of one fetch.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// PEM CA bundle for an `https://` URL; unset: the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl Default for JwksConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            file: None,
            refresh_interval: Duration::from_secs(300),
            min_refresh_interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            ca_file: None,
        }
    }
}

impl JwksConfig {
    /// True when a set is configured.
    pub fn is_set(&self) -> bool {
        !self.url.is_empty() || self.file.is_some()
    }

    fn validate(&self, section: &str) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(format!("{section}: {msg}")));
        if !self.url.is_empty() && self.file.is_some() {
            return invalid("set url or file, not both".into());
        }
        let is_url = self.url.starts_with("https://") || self.url.starts_with("http://");
        if !self.url.is_empty() && !is_url {
            return invalid(format!(
                "url must be http:// or https://, got {:?}",
                self.url
            ));
        }
        if self.timeout.is_zero() {
            return invalid("timeout must be more than 0".into());
        }
        Ok(())
    }
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway_secs: 5,
            query_param: "token".into(),
            rooms_claim: "rooms".into(),
            jwks: JwksConfig::default(),
        }
    }
}

/// One JWT verification key. HMAC keys come from `secret_file` or `secret_env`; public
/// keys (RSA, EC, Ed25519) from a PEM `public_key_file`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyConfig {
    /// `HS256`, `HS384`, `HS512`, `RS256`, `RS384`, `RS512`, `PS256`, `PS384`, `PS512`,
    /// `ES256`, `ES384` or `EdDSA`.
    pub algorithm: String,
    /// File holding the HMAC secret (trailing newline ignored).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Environment variable holding the HMAC secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// PEM file holding the public key.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
}

/// Rules for rooms clients ask to join.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomsConfig {
    /// Room patterns any authenticated socket may join: `*` matches any run of characters,
    /// `{user_id}` is the socket's user. Empty (and no JWT room claim): every client join
    /// is rejected.
    pub allow: Vec<String>,
}

/// The `SocketHooks` service a backend serves, called by the gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HooksConfig {
    /// `http://host:port` of the backend; empty: no hooks.
    pub endpoint: String,
    /// Deadline of each hook call (including the wait for a free call slot).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Most hook calls in flight at once; further calls wait (within their deadline).
    pub max_concurrency: usize,
    /// Most `OnEvent` calls in flight for one socket; its further events are dropped
    /// (and logged) until one finishes, so a flooding client cannot pile up work.
    pub max_pending_per_socket: u32,
    /// Ask `AuthorizeJoin` about the rooms the static and JWT rules do not allow.
    pub authorize_join: bool,
    /// Forward client events to `OnEvent`; its reply becomes the client's ack.
    pub on_event: bool,
    /// Event name patterns forwarded to `OnEvent` (`*` wildcard).
    pub events: Vec<String>,
    /// TLS to an `https://` endpoint.
    pub tls: ClientTlsConfig,
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

/// `WatchEvents` streams.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchConfig {
    /// Events buffered per watcher; past that, events are dropped and the watcher gets an
    /// `EVENT_KIND_DROPPED` marker with the count.
    pub buffer: usize,
    /// Bytes (encoded events) queued per watcher; past that, events are dropped the same
    /// way. Client events carry what clients send, so a count alone would let a stalled
    /// watcher hold `buffer` times `edge.max_payload_bytes`.
    pub buffer_bytes: usize,
    /// Most concurrent watchers per node; more get `RESOURCE_EXHAUSTED`.
    pub max_watchers: usize,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            buffer: 1024,
            buffer_bytes: 16 * 1024 * 1024,
            max_watchers: 64,
        }
    }
}

/// Which adapter connects the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdapterKind {
    /// One node, state in memory: no dependency.
    Memory,
    /// Several nodes sharing a Redis (socketioxide-redis).
    Redis,
}

/// Scale-out: the adapter and, with Redis, how the nodes find and ask each other.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `memory` (one node) or `redis`.
    pub adapter: AdapterKind,
    /// `redis://[user:password@]host:port[/db]` of a Redis >= 7; RESP3 is used (added to
    /// the URL when absent).
    pub redis_url: String,
    /// Prefix of every Redis channel and key, so several deployments can share a Redis.
    pub key_prefix: String,
    /// Deadline of one question to the cluster, everything included: a listing, a socket
    /// lookup, counts before a `Send`, the adapter's wait for other nodes.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest wait for one Redis command (heartbeat, directory write, publish, and each
    /// command of a question); unset means `request_timeout`, as one command can never use
    /// more than the question it is part of. Read through [`ClusterConfig::command_timeout`].
    #[serde(default, with = "humantime_serde")]
    pub redis_command_timeout: Option<Duration>,
    /// How often a node publishes its presence and counts.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A node that has not published its presence for this long is dropped from the node
    /// list and the counts.
    #[serde(with = "humantime_serde")]
    pub node_ttl: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            adapter: AdapterKind::Memory,
            redis_url: String::new(),
            key_prefix: "sockgate".to_owned(),
            request_timeout: Duration::from_secs(2),
            redis_command_timeout: None,
            heartbeat_interval: Duration::from_secs(1),
            node_ttl: Duration::from_secs(5),
        }
    }
}

impl ClusterConfig {
    /// The bound on one Redis command: `cluster.redis_command_timeout`, or
    /// `cluster.request_timeout` when unset.
    pub fn command_timeout(&self) -> Duration {
        self.redis_command_timeout.unwrap_or(self.request_timeout)
    }
}

/// The admin HTTP endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of `/metrics` (Prometheus), `/livez` and `/readyz`.
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

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// `tracing` filter, e.g. `info` or `sockgate=debug,info`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Command-line flags; each overrides the file and the environment.
#[derive(Debug, Default, clap::Parser)]
#[command(
    name = "sockgate",
    version,
    about = "Socket.IO edge driven by a gRPC control plane"
)]
pub struct Cli {
    /// TOML configuration file (also `SOCKGATE_CONFIG`).
    #[arg(short, long, env = "SOCKGATE_CONFIG")]
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

impl clap::ValueEnum for LogFormat {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::Text, Self::Json]
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(match self {
            Self::Text => "text",
            Self::Json => "json",
        }))
    }
}

/// Accepted `edge.ping_interval` and `edge.ping_timeout`. Shorter, the heartbeat costs
/// more than the traffic and a slow network looks dead; longer, a dead client holds its
/// socket for hours (socket.io-client's timer, interval + timeout, overflows past 24 days).
const HEARTBEAT_BOUNDS: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(3600);

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or a variable could not be read or has a wrong type.
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// The values are inconsistent or unsafe.
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads defaults, then the file (if any), then `SOCKGATE_*` variables (`__` separates
    /// sections: `SOCKGATE_EDGE__LISTEN`), then the flags; and validates the result.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
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
        figment = figment.merge(
            Env::prefixed("SOCKGATE_")
                .ignore(&["CONFIG"])
                .split("__")
                .map(|k| k.as_str().to_ascii_lowercase().into()),
        );
        let mut config: Config = figment.extract().map_err(Box::new)?;
        if let Some(addr) = cli.edge_listen {
            config.edge.listen = addr;
        }
        if let Some(addr) = cli.control_listen {
            config.control.listen = addr;
        }
        if let Some(addr) = cli.admin_listen {
            config.admin.listen = addr;
        }
        if let Some(id) = &cli.node_id {
            config.node_id.clone_from(id);
        }
        if let Some(format) = cli.log_format {
            config.log.format = format;
        }
        config.validate()?;
        Ok(config)
    }

    /// True when no authenticator is configured: the development default.
    pub fn is_dev_mode(&self) -> bool {
        self.auth.authenticators.is_empty()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if !self.edge.path.starts_with('/') {
            return invalid(format!(
                "edge.path must start with '/', got {:?}",
                self.edge.path
            ));
        }
        if self.edge.transports.is_empty() {
            return invalid("edge.transports must name at least one transport".into());
        }
        if self.edge.auth_timeout.is_zero() {
            return invalid("edge.auth_timeout must be more than 0".into());
        }
        if self.edge.header_timeout.is_zero() {
            return invalid("edge.header_timeout must be more than 0".into());
        }
        for (key, value) in [
            ("edge.ping_interval", self.edge.ping_interval),
            ("edge.ping_timeout", self.edge.ping_timeout),
        ] {
            if !HEARTBEAT_BOUNDS.contains(&value) {
                return invalid(format!(
                    "{key} must be between {} and {}, got {}",
                    humantime::format_duration(*HEARTBEAT_BOUNDS.start()),
                    humantime::format_duration(*HEARTBEAT_BOUNDS.end()),
                    humantime::format_duration(value)
                ));
            }
        }
        if !(1..=crate::listener::MAX_BACKLOG).contains(&self.edge.listen_backlog) {
            return invalid(format!(
                "edge.listen_backlog must be between 1 and {}",
                crate::listener::MAX_BACKLOG
            ));
        }
        if self.is_dev_mode() && !self.edge.listen.ip().is_loopback() {
            return invalid(format!(
                "no authenticator is configured (auth.authenticators), so the edge may only \
                 listen on loopback, not {}; configure `jwt`, or `none` with auth.allow_none",
                self.edge.listen
            ));
        }
        if self.auth.authenticators.contains(&AuthenticatorKind::None) && !self.auth.allow_none {
            return invalid(
                "auth.authenticators contains `none`, which lets anyone in: set \
                 auth.allow_none = true to confirm"
                    .into(),
            );
        }
        if self.auth.authenticators.contains(&AuthenticatorKind::Jwt)
            && self.auth.jwt.keys.is_empty()
            && !self.auth.jwt.jwks.is_set()
        {
            return invalid(
                "the `jwt` authenticator needs at least one auth.jwt.keys entry or auth.jwt.jwks"
                    .into(),
            );
        }
        self.auth.jwt.jwks.validate("auth.jwt.jwks")?;
        self.control.auth.jwks.validate("control.auth.jwks")?;
        if !self.control.listen.ip().is_loopback()
            && !self.control.auth.is_enabled()
            && !self.control.allow_remote_unauthenticated
        {
            return invalid(format!(
                "control.listen {} is not a loopback address and the control plane is not \
                 authenticated; configure control.auth.keys or control.auth.jwks, or set \
                 control.allow_remote_unauthenticated = true to accept that",
                self.control.listen
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
        if !self.hooks.endpoint.is_empty() {
            check_hook_endpoint(&self.hooks.endpoint).map_err(ConfigError::Invalid)?;
        }
        if self.hooks.tls.is_set() && !self.hooks.endpoint.starts_with("https://") {
            return invalid(format!(
                "hooks.tls is set but hooks.endpoint {:?} is not an https:// URL",
                self.hooks.endpoint
            ));
        }
        if self.hooks.tls.cert_file.is_some() != self.hooks.tls.key_file.is_some() {
            return invalid("hooks.tls: set both cert_file and key_file, or neither".into());
        }
        if self.hooks.timeout.is_zero()
            || self.hooks.max_concurrency == 0
            || self.hooks.max_pending_per_socket == 0
        {
            return invalid(
                "hooks.timeout, hooks.max_concurrency and hooks.max_pending_per_socket must be \
                 more than 0"
                    .into(),
            );
        }
        if self.watch.buffer == 0 || self.watch.buffer_bytes == 0 {
            return invalid("watch.buffer and watch.buffer_bytes must be more than 0".into());
        }
        self.validate_cluster()?;
        if self.control.max_ack_timeout.is_zero() {
            return invalid("control.max_ack_timeout must be more than 0".into());
        }
        if self.control.request_timeout <= self.control.max_ack_timeout {
            return invalid(format!(
                "control.request_timeout ({:?}) must be longer than control.max_ack_timeout \
                 ({:?}), or a Send waiting for acks would always be cut off",
                self.control.request_timeout, self.control.max_ack_timeout
            ));
        }
        self.control.tls.validate("control.tls")?;
        self.edge.tls.validate("edge.tls")?;
        self.admin.tls.validate("admin.tls")?;
        if self.control.max_concurrent_calls == 0 {
            return invalid("control.max_concurrent_calls must be more than 0".into());
        }
        if self.control.max_ack_reply_bytes == 0 {
            return invalid("control.max_ack_reply_bytes must be more than 0".into());
        }
        let limits = &self.edge.limits;
        if limits.max_room_requests_in_flight == 0
            || limits.max_rooms_per_socket == 0
            || limits.max_handshake_bytes == 0
        {
            return invalid(
                "edge.limits.max_room_requests_in_flight, edge.limits.max_rooms_per_socket and \
                 edge.limits.max_handshake_bytes must be more than 0"
                    .into(),
            );
        }
        if (limits.events_per_second > 0 && limits.event_burst == 0)
            || (limits.handshakes_per_ip_per_second > 0 && limits.handshake_burst_per_ip == 0)
        {
            return invalid(
                "edge.limits.event_burst and edge.limits.handshake_burst_per_ip must be more \
                 than 0 when their rate is on"
                    .into(),
            );
        }
        Ok(())
    }

    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let cluster = &self.cluster;
        let invalid = |msg: &str| Err(ConfigError::Invalid(msg.to_owned()));
        match cluster.adapter {
            AdapterKind::Memory if !cluster.redis_url.is_empty() => {
                return invalid("cluster.redis_url is set but cluster.adapter is `memory`");
            }
            AdapterKind::Redis if cluster.redis_url.is_empty() => {
                return invalid("cluster.adapter `redis` needs cluster.redis_url");
            }
            _ => {}
        }
        let prefix_ok = !cluster.key_prefix.is_empty()
            && cluster
                .key_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
        if !prefix_ok {
            return invalid(
                "cluster.key_prefix must be 1 or more of the characters a-z A-Z 0-9 - _ . :",
            );
        }
        if cluster.request_timeout.is_zero()
            || cluster.command_timeout().is_zero()
            || cluster.heartbeat_interval.is_zero()
        {
            return invalid(
                "cluster.request_timeout, cluster.redis_command_timeout and \
                 cluster.heartbeat_interval must be more than 0",
            );
        }
        if cluster.command_timeout() > cluster.request_timeout {
            return Err(ConfigError::Invalid(format!(
                "cluster.redis_command_timeout ({:?}) must not be longer than \
                 cluster.request_timeout ({:?}): a question to the cluster would give up \
                 before its Redis command does",
                cluster.command_timeout(),
                cluster.request_timeout
            )));
        }
        if cluster.node_ttl < cluster.heartbeat_interval * 2 {
            return invalid("cluster.node_ttl must be at least twice cluster.heartbeat_interval");
        }
        if self.node_id.contains(['#', ' ']) || self.node_id.len() > 128 {
            return invalid("node_id must be at most 128 characters, without spaces or '#'");
        }
        Ok(())
    }
}

/// Checks that the gateway can call a hooks endpoint at all, so that a wrong one is
/// refused when the configuration loads rather than at the first call.
fn check_hook_endpoint(endpoint: &str) -> Result<(), String> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| format!("hooks.endpoint {endpoint:?} is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!(
            "hooks.endpoint must be an http:// or https:// URL, got {endpoint:?}"
        ));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("hooks.endpoint {endpoint:?} has no host"));
    }
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err(format!(
            "hooks.endpoint {endpoint:?} has a path; gRPC needs the bare http(s)://host:port"
        ));
    }
    Ok(())
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
    fn cluster_settings_are_checked() {
        let check = |edit: &dyn Fn(&mut Config)| {
            let mut config = Config::default();
            edit(&mut config);
            config.validate().err().map(|e| e.to_string())
        };
        assert_eq!(
            check(&|c| {
                c.cluster.adapter = AdapterKind::Redis;
                c.cluster.redis_url = "redis://127.0.0.1:6379".into();
            }),
            None
        );
        let redis_without_url = check(&|c| c.cluster.adapter = AdapterKind::Redis).unwrap();
        assert!(redis_without_url.contains("needs cluster.redis_url"));
        let url_without_redis = check(&|c| c.cluster.redis_url = "redis://h:1".into()).unwrap();
        assert!(url_without_redis.contains("cluster.adapter is `memory`"));
        let bad_prefix = check(&|c| c.cluster.key_prefix = "a b".into()).unwrap();
        assert!(bad_prefix.contains("cluster.key_prefix"));
        let short_ttl = check(&|c| c.cluster.node_ttl = Duration::from_millis(1500)).unwrap();
        assert!(short_ttl.contains("twice"));
        let slow_command = check(&|c| {
            c.cluster.redis_command_timeout = Some(Duration::from_secs(3));
        })
        .unwrap();
        assert!(slow_command.contains("cluster.redis_command_timeout"));
        assert_eq!(
            check(&|c| c.cluster.redis_command_timeout = Some(Duration::from_secs(2))),
            None
        );
        let bad_node_id = check(&|c| c.node_id = "a#b".into()).unwrap();
        assert!(bad_node_id.contains("node_id"));
    }

    #[test]
    fn the_redis_command_timeout_defaults_to_the_request_timeout() {
        let load = |toml: &str| -> ClusterConfig {
            Figment::from(Serialized::defaults(Config::default()))
                .merge(Toml::string(toml))
                .extract::<Config>()
                .unwrap()
                .cluster
        };
        let unset = load("[cluster]\nrequest_timeout = \"3s\"");
        assert_eq!(unset.redis_command_timeout, None);
        assert_eq!(unset.command_timeout(), Duration::from_secs(3));
        let set = load("[cluster]\nredis_command_timeout = \"500ms\"");
        assert_eq!(set.command_timeout(), Duration::from_millis(500));
        assert_eq!(set.request_timeout, Duration::from_secs(2));
    }

    #[test]
    fn the_engine_io_heartbeat_is_bounded() {
        let defaults = EdgeConfig::default();
        assert_eq!(defaults.ping_interval, Duration::from_secs(25));
        assert_eq!(defaults.ping_timeout, Duration::from_secs(20));
        let check = |interval: Duration, timeout: Duration| {
            let mut config = Config::default();
            config.edge.ping_interval = interval;
            config.edge.ping_timeout = timeout;
            config.validate().err().map(|e| e.to_string())
        };
        let ms = Duration::from_millis;
        assert_eq!(check(ms(100), ms(100)), None);
        assert_eq!(check(ms(3_600_000), ms(3_600_000)), None);
        let zero = check(Duration::ZERO, ms(300)).unwrap();
        assert!(
            zero.contains("edge.ping_interval must be between 100ms and 1h, got 0s"),
            "{zero}"
        );
        let short = check(ms(300), ms(99)).unwrap();
        assert!(short.contains("edge.ping_timeout"), "{short}");
        let long = check(ms(3_600_001), ms(300)).unwrap();
        assert!(long.contains("edge.ping_interval"), "{long}");
    }

    #[test]
    fn dev_mode_refuses_a_public_edge() {
        let mut config = Config::default();
        config.edge.listen = "0.0.0.0:3000".parse().unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("loopback"), "{err}");
    }

    #[test]
    fn listen_backlog_is_bounded() {
        let mut config = Config::default();
        for bad in [0, crate::listener::MAX_BACKLOG + 1] {
            config.edge.listen_backlog = bad;
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("edge.listen_backlog"), "{err}");
        }
        config.edge.listen_backlog = 1;
        config.validate().unwrap();
    }

    #[test]
    fn none_needs_an_explicit_opt_in() {
        let mut config = Config::default();
        config.auth.authenticators = vec![AuthenticatorKind::None];
        assert!(config.validate().is_err());
        config.auth.allow_none = true;
        config.validate().unwrap();
    }

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
        config.control.auth.keys.push(JwtKeyConfig {
            algorithm: "HS256".into(),
            secret_file: None,
            secret_env: Some("CONTROL_JWT_SECRET".into()),
            public_key_file: None,
        });
        config.validate().unwrap();
    }

    #[test]
    fn request_timeout_must_exceed_the_ack_timeout() {
        let mut config = Config::default();
        config.control.request_timeout = config.control.max_ack_timeout;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("control.request_timeout"), "{err}");
    }

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
