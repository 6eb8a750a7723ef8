//! The edge's limits on what one socket or one client address may use: event rate,
//! connections per node and per address, new sessions per second per address, and the
//! refusal of new connections while the node drains. Per-socket state is a few atomics in
//! the socket's `Session`; per-address state lives here, in maps that only hold the
//! addresses currently connected or recently connecting.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, LazyLock, Mutex,
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering},
    },
    time::Instant,
};

use crate::{
    config::EdgeLimits,
    metrics::{METRICS, Refusal},
};

/// Microseconds since the process started: the clock of the rate limits.
fn now_us() -> u64 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    START.elapsed().as_micros() as u64
}

/// A rate with a burst, as the generic cell rate algorithm: the state is one number, the
/// theoretical arrival time of the next event, so a socket's rate fits in an atomic.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Microseconds per event at the sustained rate.
    interval: u64,
    /// How far ahead of now the theoretical arrival time may run (the burst).
    tolerance: u64,
}

impl Rate {
    /// `per_second` events per second, `burst` at once; `None` when `per_second` is 0.
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        (per_second > 0).then(|| {
            let interval = 1_000_000 / u64::from(per_second);
            Rate {
                interval,
                tolerance: interval * u64::from(burst.saturating_sub(1)),
            }
        })
    }

    /// Admits one event at `now` against the state `tat`. `Ok(rested)` when admitted
    /// (`rested`: the burst had fully refilled), `Err(())` when over the rate.
    fn admit(&self, tat: &AtomicU64, now: u64) -> Result<bool, ()> {
        let mut current = tat.load(Ordering::Acquire);
        loop {
            let base = current.max(now);
            if base - now > self.tolerance {
                return Err(());
            }
            match tat.compare_exchange_weak(
                current,
                base + self.interval,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(current <= now),
                Err(seen) => current = seen,
            }
        }
    }
}

/// The event rate of one socket: its rate state and the events dropped since it last
/// rested. Lives in the socket's `Session`.
#[derive(Debug, Default)]
pub struct EventMeter {
    tat: AtomicU64,
    dropped: AtomicU32,
}

/// What to do with a client event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventVerdict {
    /// Handle it.
    Accept,
    /// Drop it; `first` for the first drop of an episode (worth a log line).
    Drop {
        /// First drop since the socket last rested.
        first: bool,
    },
    /// Drop it and disconnect the socket: it kept exceeding its rate.
    Disconnect,
}

/// The edge's limits and their shared state.
#[derive(Debug)]
pub struct Limits {
    /// The configured values.
    pub config: EdgeLimits,
    events: Option<Rate>,
    handshakes: Option<Rate>,
    handshake_tats: Mutex<AddressTable<u64>>,
    connections: AtomicUsize,
    connections_per_ip: Mutex<HashMap<AddressKey, u32>>,
    draining: AtomicBool,
}

/// A client address as the limits see it: IPv4 as is, IPv6 by its /64 (what one
/// subscriber usually gets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressKey {
    /// An IPv4 address (or an IPv4-mapped IPv6 one).
    V4(u32),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
}

impl AddressKey {
    /// Whether two peers are the same client address.
    pub fn same(a: SocketAddr, b: SocketAddr) -> bool {
        AddressKey::from(a.ip()) == AddressKey::from(b.ip())
    }
}

impl From<IpAddr> for AddressKey {
    fn from(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => AddressKey::V4(v4.to_bits()),
            IpAddr::V6(v6) => AddressKey::V6((v6.to_bits() >> 64) as u64),
        }
    }
}

/// A map keyed by address whose stale entries are swept when it has doubled since the
/// last sweep, so it holds only recently active addresses.
#[derive(Debug)]
struct AddressTable<T> {
    entries: HashMap<AddressKey, T>,
    sweep_at: usize,
}

const MIN_SWEEP: usize = 1024;

impl<T> Default for AddressTable<T> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            sweep_at: MIN_SWEEP,
        }
    }
}

/// Why a connection is refused; the text is what the client reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectRefusal {
    /// The node has `max_connections`.
    #[error("The server is at capacity. Please retry later.")]
    NodeFull,
    /// The address has `max_connections_per_ip`.
    #[error("Too many connections from your address. Please close some and retry.")]
    AddressFull,
    /// The address opens sessions too fast.
    #[error("Too many new connections from your address. Please retry later.")]
    HandshakeRate,
    /// The node is shutting down.
    #[error("The server is shutting down. Please reconnect.")]
    Draining,
    /// A second Socket.IO connect on one Engine.IO session.
    #[error("This connection already had a socket. Please open a new connection.")]
    SessionReused,
    /// A browser page of an origin not in `edge.cors_origins`.
    #[error("This page's origin may not connect.")]
    Origin,
    /// The opening request or the `auth` object is past `max_handshake_bytes`.
    #[error("The connection request is too large.")]
    HandshakeTooLarge,
    /// A request names a session opened from another client address.
    #[error("This session was opened from another address. Please reconnect.")]
    SessionAddress,
}

impl ConnectRefusal {
    /// The metric reason.
    pub fn reason(self) -> Refusal {
        match self {
            ConnectRefusal::NodeFull => Refusal::ConnectionsPerNode,
            ConnectRefusal::AddressFull => Refusal::ConnectionsPerIp,
            ConnectRefusal::HandshakeRate => Refusal::HandshakeRate,
            ConnectRefusal::Draining => Refusal::Draining,
            ConnectRefusal::SessionAddress => Refusal::SessionAddress,
            ConnectRefusal::HandshakeTooLarge => Refusal::HandshakeBytes,
            ConnectRefusal::Origin => Refusal::Origin,
            ConnectRefusal::SessionReused => Refusal::SessionReused,
        }
    }

    /// The setting behind it, for the log.
    pub fn setting(self) -> &'static str {
        match self {
            ConnectRefusal::NodeFull => "edge.limits.max_connections",
            ConnectRefusal::AddressFull => "edge.limits.max_connections_per_ip",
            ConnectRefusal::HandshakeRate => "edge.limits.handshakes_per_ip_per_second",
            ConnectRefusal::Draining => "shutdown",
            ConnectRefusal::SessionAddress => "sessions are bound to the address that opened them",
            ConnectRefusal::HandshakeTooLarge => "edge.limits.max_handshake_bytes",
            ConnectRefusal::Origin => "edge.cors_origins",
            ConnectRefusal::SessionReused => "one socket per session",
        }
    }
}

/// Kept with an Engine.IO session (in the extensions of the request that opened it): the
/// gate admitted it for one Socket.IO connect; a later one (a client that left the
/// namespace, or was refused, connecting again on the same session) is refused.
#[derive(Debug, Clone, Default)]
pub struct OpenedSession(Arc<AtomicBool>);

impl OpenedSession {
    /// True the first time only.
    pub fn first_connect(&self) -> bool {
        !self.0.swap(true, Ordering::AcqRel)
    }
}

/// A connection counted against the node and its address; given back when dropped (with
/// the socket's `Session`).
#[derive(Debug)]
pub struct ConnectionSlot {
    limits: Arc<Limits>,
    address: Option<AddressKey>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.limits.connections.fetch_sub(1, Ordering::AcqRel);
        if let Some(address) = self.address {
            let mut map = self
                .limits
                .connections_per_ip
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(count) = map.get_mut(&address) {
                *count -= 1;
                if *count == 0 {
                    map.remove(&address);
                }
            }
        }
    }
}

impl Limits {
    /// The limits of `config`.
    pub fn new(config: &EdgeLimits) -> Self {
        Self {
            config: config.clone(),
            events: Rate::new(config.events_per_second, config.event_burst),
            handshakes: Rate::new(
                config.handshakes_per_ip_per_second,
                config.handshake_burst_per_ip,
            ),
            handshake_tats: Mutex::default(),
            connections: AtomicUsize::new(0),
            connections_per_ip: Mutex::default(),
            draining: AtomicBool::new(false),
        }
    }

    /// From now on, new connections are refused.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether the node is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Checks a client event against its socket's rate.
    pub fn check_event(&self, meter: &EventMeter) -> EventVerdict {
        let Some(rate) = self.events else {
            return EventVerdict::Accept;
        };
        match rate.admit(&meter.tat, now_us()) {
            Ok(rested) => {
                if rested {
                    meter.dropped.store(0, Ordering::Relaxed);
                }
                EventVerdict::Accept
            }
            Err(()) => {
                let dropped = meter.dropped.fetch_add(1, Ordering::AcqRel) + 1;
                let max = self.config.max_dropped_events;
                if max > 0 && dropped == max {
                    EventVerdict::Disconnect
                } else {
                    EventVerdict::Drop {
                        first: dropped == 1,
                    }
                }
            }
        }
    }

    /// Admits a new session (handshake) from `peer` at the HTTP layer.
    pub fn admit_handshake(&self, peer: Option<SocketAddr>) -> Result<(), ConnectRefusal> {
        if self.is_draining() {
            return Err(ConnectRefusal::Draining);
        }
        let (Some(rate), Some(peer)) = (self.handshakes, peer) else {
            return Ok(());
        };
        let now = now_us();
        let key = AddressKey::from(peer.ip());
        let mut table = self
            .handshake_tats
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if table.entries.len() >= table.sweep_at {
            // An address whose burst has refilled is the same as an absent one.
            table.entries.retain(|_, tat| *tat > now);
            table.sweep_at = (table.entries.len() * 2).max(MIN_SWEEP);
        }
        let tat = table.entries.entry(key).or_insert(0);
        let cell = AtomicU64::new(*tat);
        let admitted = rate.admit(&cell, now);
        *tat = cell.into_inner();
        admitted
            .map(|_| ())
            .map_err(|()| ConnectRefusal::HandshakeRate)
    }

    /// Checks the size of what a socket connects with: `bytes` of request head or of
    /// `auth` object.
    pub fn check_handshake_size(&self, bytes: usize) -> Result<(), ConnectRefusal> {
        if bytes > self.config.max_handshake_bytes {
            return Err(ConnectRefusal::HandshakeTooLarge);
        }
        Ok(())
    }

    /// Counts a new Socket.IO connection from `peer` against the node and its address.
    pub fn admit_connection(
        self: &Arc<Self>,
        peer: Option<SocketAddr>,
    ) -> Result<ConnectionSlot, ConnectRefusal> {
        if self.is_draining() {
            return Err(ConnectRefusal::Draining);
        }
        let max = self.config.max_connections;
        self.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (max == 0 || n < max).then_some(n + 1)
            })
            .map_err(|_| ConnectRefusal::NodeFull)?;
        // From here the slot gives the node count back if the address is refused.
        let mut slot = ConnectionSlot {
            limits: self.clone(),
            address: None,
        };
        let max = self.config.max_connections_per_ip;
        if let Some(peer) = peer.filter(|_| max > 0) {
            let key = AddressKey::from(peer.ip());
            let mut map = self
                .connections_per_ip
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let count = map.entry(key).or_insert(0);
            if *count >= max {
                return Err(ConnectRefusal::AddressFull);
            }
            *count += 1;
            slot.address = Some(key);
        }
        Ok(slot)
    }

    /// Counts and logs a refused connection. Refusals that come in floods (a fast
    /// reconnect loop, clients retrying during a drain, requests of an existing session,
    /// which no rate limits) are logged at debug.
    pub fn refused(&self, refusal: ConnectRefusal, peer: Option<SocketAddr>) {
        METRICS.refused(refusal.reason());
        let peer = peer.map(|p| p.ip().to_string()).unwrap_or_default();
        let setting = refusal.setting();
        match refusal {
            ConnectRefusal::HandshakeRate
            | ConnectRefusal::Draining
            | ConnectRefusal::SessionAddress
            | ConnectRefusal::SessionReused
            | ConnectRefusal::Origin => {
                tracing::debug!(%peer, setting, "connection refused: {refusal}")
            }
            ConnectRefusal::NodeFull
            | ConnectRefusal::AddressFull
            | ConnectRefusal::HandshakeTooLarge => {
                tracing::info!(%peer, setting, "connection refused: {refusal}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(configure: impl FnOnce(&mut EdgeLimits)) -> Arc<Limits> {
        let mut config = EdgeLimits::default();
        configure(&mut config);
        Arc::new(Limits::new(&config))
    }

    #[test]
    fn a_rate_admits_its_burst_then_refills() {
        let rate = Rate::new(10, 3).unwrap();
        let tat = AtomicU64::new(0);
        let t0 = 1_000_000;
        assert_eq!(rate.admit(&tat, t0), Ok(true));
        assert_eq!(rate.admit(&tat, t0), Ok(false));
        assert_eq!(rate.admit(&tat, t0), Ok(false));
        assert_eq!(rate.admit(&tat, t0), Err(()));
        // One interval later, one more.
        assert_eq!(rate.admit(&tat, t0 + 100_000), Ok(false));
        assert_eq!(rate.admit(&tat, t0 + 100_000), Err(()));
        // Rested: the whole burst again.
        assert_eq!(rate.admit(&tat, t0 + 10_000_000), Ok(true));
        assert!(Rate::new(0, 5).is_none());
    }

    #[test]
    fn a_socket_that_keeps_flooding_is_disconnected_once() {
        let limits = limits(|c| {
            c.events_per_second = 1;
            c.event_burst = 2;
            c.max_dropped_events = 3;
        });
        let meter = EventMeter::default();
        assert_eq!(limits.check_event(&meter), EventVerdict::Accept);
        assert_eq!(limits.check_event(&meter), EventVerdict::Accept);
        assert_eq!(
            limits.check_event(&meter),
            EventVerdict::Drop { first: true }
        );
        assert_eq!(
            limits.check_event(&meter),
            EventVerdict::Drop { first: false }
        );
        assert_eq!(limits.check_event(&meter), EventVerdict::Disconnect);
        assert_eq!(
            limits.check_event(&meter),
            EventVerdict::Drop { first: false }
        );
    }

    #[test]
    fn connections_are_counted_per_node_and_address_and_given_back() {
        let limits = limits(|c| {
            c.max_connections = 3;
            c.max_connections_per_ip = 2;
        });
        let a: SocketAddr = "10.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:1000".parse().unwrap();
        let a1 = limits.admit_connection(Some(a)).unwrap();
        let _a2 = limits.admit_connection(Some(a)).unwrap();
        assert_eq!(
            limits.admit_connection(Some(a)).unwrap_err(),
            ConnectRefusal::AddressFull
        );
        let _b1 = limits.admit_connection(Some(b)).unwrap();
        assert_eq!(
            limits.admit_connection(Some(b)).unwrap_err(),
            ConnectRefusal::NodeFull
        );
        drop(a1);
        let _b2 = limits.admit_connection(Some(b)).unwrap();
        limits.start_draining();
        assert_eq!(
            limits.admit_connection(Some(b)).unwrap_err(),
            ConnectRefusal::Draining
        );
    }

    #[test]
    fn ipv6_addresses_share_their_64_prefix() {
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let other: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let next: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(AddressKey::from(one), AddressKey::from(other));
        assert_ne!(AddressKey::from(one), AddressKey::from(next));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            AddressKey::from(mapped),
            AddressKey::from("10.0.0.1".parse::<IpAddr>().unwrap())
        );
    }

    #[test]
    fn handshakes_are_rated_per_address() {
        let limits = limits(|c| {
            c.handshakes_per_ip_per_second = 1;
            c.handshake_burst_per_ip = 2;
        });
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:1".parse().unwrap();
        assert!(limits.admit_handshake(Some(a)).is_ok());
        assert!(limits.admit_handshake(Some(a)).is_ok());
        assert_eq!(
            limits.admit_handshake(Some(a)),
            Err(ConnectRefusal::HandshakeRate)
        );
        assert!(limits.admit_handshake(Some(b)).is_ok());
    }
}
