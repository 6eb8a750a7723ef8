//! `[edge.limits]`: what one socket or one client address may use of the edge.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// What one socket or one client address may use of the edge. 0 turns a limit off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeLimits {
    /// Sustained client events per second per socket (every event counts, `authenticate`,
    /// `join` and `leave` included); events past the rate are dropped. 0: no rate.
    pub events_per_second: u32,
    /// Events a socket may send at once above its rate.
    pub event_burst: u32,
    /// Dropped events after which a socket that does not slow down (its burst never
    /// refills) is sent `force_disconnect` and disconnected. 0: never.
    pub max_dropped_events: u32,
    /// `join` / `leave` requests of one socket in flight at once (an `AuthorizeJoin` call
    /// included); past that they are refused at once with an error ack.
    pub max_room_requests_in_flight: u32,
    /// Rooms a socket may have joined through its own `join` requests.
    pub max_rooms_per_socket: usize,
    /// Socket.IO connections of this node. 0: no limit.
    pub max_connections: usize,
    /// Authenticated sockets of one user (one authenticator user id), on all nodes
    /// together; a socket authenticating past it gets `unauthenticated` and is
    /// disconnected, the user's older sockets are kept. 0: no limit.
    pub max_connections_per_user: u32,
    /// Socket.IO connections from one client address (IPv6: its /64). 0: no limit. High
    /// by default: thousands of users can share one address behind a carrier-grade NAT.
    pub max_connections_per_ip: u32,
    /// New sessions (handshakes) per second from one client address (IPv6: its /64), once
    /// its burst is spent. 0: no limit.
    pub handshakes_per_ip_per_second: u32,
    /// New sessions one client address may open at once above that rate: by default as
    /// many as its connections, so that every client behind one address can reconnect at
    /// once after a restart.
    pub handshake_burst_per_ip: u32,
    /// Largest handshake a socket may connect with, in bytes: the opening request's URI
    /// and headers (else HTTP `431`), and (separately) its Socket.IO `auth` object as JSON
    /// (else `connect_error`). Both are kept while the socket lives.
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
            max_connections_per_user: 0,
            max_connections_per_ip: 10_000,
            handshakes_per_ip_per_second: 200,
            handshake_burst_per_ip: 10_000,
            max_handshake_bytes: 32 * 1024,
        }
    }
}

impl EdgeLimits {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_room_requests_in_flight == 0
            || self.max_rooms_per_socket == 0
            || self.max_handshake_bytes == 0
        {
            return Err(ConfigError::Invalid(
                "edge.limits.max_room_requests_in_flight, edge.limits.max_rooms_per_socket and \
                 edge.limits.max_handshake_bytes must be more than 0"
                    .into(),
            ));
        }
        if (self.events_per_second > 0 && self.event_burst == 0)
            || (self.handshakes_per_ip_per_second > 0 && self.handshake_burst_per_ip == 0)
        {
            return Err(ConfigError::Invalid(
                "edge.limits.event_burst and edge.limits.handshake_burst_per_ip must be more \
                 than 0 when their rate is on"
                    .into(),
            ));
        }
        Ok(())
    }
}
