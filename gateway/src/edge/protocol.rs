//! The application protocol spoken with Socket.IO clients: event names and payloads,
//! compatible with Ignis-style clients.

use serde::Serialize;

use crate::clock::iso_now;

/// Client → gateway: start authentication.
pub const AUTHENTICATE: &str = "authenticate";
/// Client → gateway: join rooms `{rooms: [...]}`.
pub const JOIN: &str = "join";
/// Client → gateway: leave rooms `{rooms: [...]}`.
pub const LEAVE: &str = "leave";
/// The client requests the gateway handles itself (never forwarded to backends).
pub const CLIENT_REQUESTS: &[&str] = &[AUTHENTICATE, JOIN, LEAVE];
/// Gateway → client: authentication succeeded `{id, time}`.
pub const AUTHENTICATED: &str = "authenticated";
/// Gateway → client: authentication refused `{message, time}`.
pub const UNAUTHENTICATED: &str = "unauthenticated";
/// Gateway → client: application keep-alive `{time}`.
pub const PING: &str = "ping";
/// Gateway → client: sent right before a server-side disconnect `{reason, time}`.
pub const FORCE_DISCONNECT: &str = "force_disconnect";

/// Sent on a denial.
pub const INVALID_TOKEN_MESSAGE: &str = "Invalid token to authenticate! Please login again!";
/// Sent when the authenticator fails or times out.
pub const AUTH_FAILED_MESSAGE: &str = "Failed to authenticate connection! Please login again!";
/// Sent to a socket past its user's `edge.limits.max_connections_per_user`.
pub const USER_CONNECTIONS_MESSAGE: &str =
    "Too many connections for this user. Please close some and retry.";

/// Names a backend may not emit: Socket.IO's own and this protocol's.
pub const RESERVED_EVENTS: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
    AUTHENTICATED,
    UNAUTHENTICATED,
    PING,
    FORCE_DISCONNECT,
];

/// Payload of `authenticated`.
#[derive(Serialize)]
pub struct Authenticated<'a> {
    /// Socket id.
    pub id: &'a str,
    /// ISO time.
    pub time: String,
}

/// Payload of `unauthenticated`.
#[derive(Serialize)]
pub struct Unauthenticated {
    /// One of the fixed messages above.
    pub message: &'static str,
    /// ISO time.
    pub time: String,
}

/// Payload of `ping`.
#[derive(Serialize)]
pub struct Ping {
    /// ISO time.
    pub time: String,
}

/// Payload of `force_disconnect`.
#[derive(Serialize)]
pub struct ForceDisconnect<'a> {
    /// Why.
    pub reason: &'a str,
    /// ISO time.
    pub time: String,
}

impl<'a> ForceDisconnect<'a> {
    /// A payload stamped now.
    pub fn now(reason: &'a str) -> Self {
        Self {
            reason,
            time: iso_now(),
        }
    }
}

/// Ack of a `join`.
#[derive(Serialize)]
pub struct JoinAck {
    /// Rooms joined.
    pub joined: Vec<String>,
    /// Rooms refused.
    pub rejected: Vec<String>,
}

/// Ack of a `leave`.
#[derive(Serialize)]
pub struct LeaveAck {
    /// Rooms left.
    pub left: Vec<String>,
    /// Rooms not left: the client did not join them itself (or is not in them).
    pub rejected: Vec<String>,
}
