//! `[edge]`: the public Socket.IO listener.

use std::{net::SocketAddr, time::Duration};

use serde::{Deserialize, Serialize};

use super::{ConfigError, EdgeLimits, ServerTlsConfig};

/// The public Socket.IO listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// Address the Socket.IO edge listens on.
    pub listen: SocketAddr,
    /// Connections the kernel queues for the edge before they are accepted (the listen
    /// backlog; Linux caps it at `net.core.somaxconn`). A reconnect storm beyond it is
    /// dropped or reset by the kernel before the gateway sees it (tokio's default would be
    /// 128). The control and admin ports use 1024.
    pub listen_backlog: u32,
    /// Socket.IO request path (the client's `path` option).
    pub path: String,
    /// Origins allowed by CORS; `["*"]` allows any, an empty list sends no CORS headers,
    /// else a list (credentials allowed), and then a request whose `Origin` is not in it gets
    /// HTTP `403` "This page's origin may not connect.": browsers apply CORS to polling but
    /// not to WebSocket handshakes, so this is what keeps other sites' pages out
    /// (`sockgate_refused_total{reason="origin"}`).
    pub cors_origins: Vec<String>,
    /// Transports accepted: `websocket`, `polling` or both.
    pub transports: Vec<Transport>,
    /// Socket.IO packet encoding, as the clients' `parser` option: `default` (JSON text,
    /// binary attachments as messages of their own) or `msgpack` (socket.io-msgpack-parser:
    /// one binary message per packet, binary values inline). Every node of a cluster must
    /// use the same. A `Send`'s `data_json` reaches msgpack clients as native values and its
    /// attachments as binary; every limit counts the same.
    pub parser: Parser,
    /// Sockets that have not authenticated within this time are disconnected.
    #[serde(with = "humantime_serde")]
    pub auth_timeout: Duration,
    /// Longest wait for a request's head (a new connection's first request, or the next
    /// one on a kept-alive connection); past it the connection is closed.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Interval of the application `ping {time}` sent to authenticated sockets; 0 disables it
    /// (the Engine.IO heartbeat stays on).
    #[serde(with = "humantime_serde")]
    pub app_ping_interval: Duration,
    /// Engine.IO heartbeat: how often the server pings each socket (socket.io's
    /// `pingInterval`, told to the client in the handshake), authenticated or not; `100ms`
    /// to `1h`.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// Engine.IO heartbeat: a socket that has not answered a ping within this time is
    /// disconnected (socket.io's `pingTimeout`; reason `client did not send a PONG packet in
    /// time`); the client gives up on a server silent for `ping_interval` + `ping_timeout`;
    /// `100ms` to `1h`.
    #[serde(with = "humantime_serde")]
    pub ping_timeout: Duration,
    /// Rooms every authenticated socket joins.
    pub default_rooms: Vec<String>,
    /// Largest message accepted from a client, in bytes (a polling request body or a
    /// WebSocket message), and largest event with its binary attachments together (each
    /// attachment is a message of its own); a client that sends more is disconnected.
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
            parser: Parser::Default,
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

/// A Socket.IO transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// WebSocket.
    Websocket,
    /// HTTP long-polling.
    Polling,
}

/// A Socket.IO packet encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parser {
    /// socket.io-parser: JSON text, binary attachments as separate messages.
    Default,
    /// socket.io-msgpack-parser: MessagePack, one binary message per packet.
    Msgpack,
}

/// Accepted `edge.ping_interval` and `edge.ping_timeout`. Shorter, the heartbeat costs
/// more than the traffic and a slow network looks dead; longer, a dead client holds its
/// socket for hours (socket.io-client's timer, interval + timeout, overflows past 24 days).
const HEARTBEAT_BOUNDS: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(3600);

impl EdgeConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if !self.path.starts_with('/') {
            return invalid(format!(
                "edge.path must start with '/', got {:?}",
                self.path
            ));
        }
        if self.transports.is_empty() {
            return invalid("edge.transports must name at least one transport".into());
        }
        if self.auth_timeout.is_zero() {
            return invalid("edge.auth_timeout must be more than 0".into());
        }
        if self.header_timeout.is_zero() {
            return invalid("edge.header_timeout must be more than 0".into());
        }
        self.validate_heartbeat()?;
        if !(1..=crate::listener::MAX_BACKLOG).contains(&self.listen_backlog) {
            return invalid(format!(
                "edge.listen_backlog must be between 1 and {}",
                crate::listener::MAX_BACKLOG
            ));
        }
        self.tls.validate("edge.tls")?;
        self.limits.validate()
    }

    fn validate_heartbeat(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("edge.ping_interval", self.ping_interval),
            ("edge.ping_timeout", self.ping_timeout),
        ] {
            if !HEARTBEAT_BOUNDS.contains(&value) {
                return Err(ConfigError::Invalid(format!(
                    "{key} must be between {} and {}, got {}",
                    humantime::format_duration(*HEARTBEAT_BOUNDS.start()),
                    humantime::format_duration(*HEARTBEAT_BOUNDS.end()),
                    humantime::format_duration(value)
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

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
}
