//! Prometheus metrics of this node, in one process-wide registry, served by the admin
//! endpoint (`admin.rs`) in the OpenMetrics text format.
//!
//! Everything the gateway refuses or drops is counted here: denied and failed
//! authentications, malformed or unauthenticated client events, rejected joins, refused
//! control calls (by status code), hook failures and timeouts, watcher drops.

use std::{sync::LazyLock, time::Duration};

use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

type Label = [(&'static str, &'static str); 1];
type Labels = [(&'static str, &'static str); 2];

fn latency_histogram() -> Histogram {
    // 0.25 ms to about 4 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

/// The metrics. Label values are fixed strings, so the label sets stay small.
pub struct Metrics {
    registry: Registry,
    /// Sockets of this node by state (set when scraped).
    pub sockets: Family<Label, Gauge>,
    /// Connections accepted.
    pub connections: Counter,
    /// Authentication outcomes: `allowed`, `denied`, `failed`, `timeout`.
    pub auth: Family<Label, Counter>,
    /// Client application events: `accepted`, `dropped_unauthenticated`,
    /// `dropped_saturated`, `malformed`.
    pub client_events: Family<Label, Counter>,
    /// Rooms in client requests: `request` = `join` / `leave`, `result` = `joined`,
    /// `rejected`, `left`, `invalid_request`, `abandoned` (the socket disconnected while
    /// its join was decided).
    pub client_rooms: Family<Labels, Counter>,
    /// Control calls by `method` and gRPC `code`.
    pub control_requests: Family<Labels, Counter>,
    /// Control call latency by `method`.
    pub control_duration: Family<Label, Histogram, fn() -> Histogram>,
    /// Commands of `Batch` calls by `command` (`Send`, `Join`, `Leave`, `Disconnect`, or
    /// `none`) and gRPC `code`.
    pub control_batch_commands: Family<Labels, Counter>,
    /// Commands of `Batch` calls sent to another node grouped with the others for it.
    pub control_batch_grouped: Counter,
    /// Control calls refused because `control.max_concurrent_calls` were in progress.
    pub control_shed: Counter,
    /// TLS handshakes that failed or timed out, by `listener` (`control.tls`, ...).
    pub tls_handshake_failures: Family<Label, Counter>,
    /// Hook calls by `hook` and `outcome` (`success`, `denied`, `error`, `timeout`).
    pub hook_calls: Family<Labels, Counter>,
    /// Hook call latency by `hook`.
    pub hook_duration: Family<Label, Histogram, fn() -> Histogram>,
    /// Connected `WatchEvents` watchers.
    pub watchers: Gauge,
    /// Events not delivered to a watcher that did not keep up.
    pub watch_dropped: Counter,
    /// Recipients a `Send` could not reach (send buffer full, or closing).
    pub send_dropped: Counter,
    /// Tokio tasks alive in this process (set when scraped).
    pub tasks: Gauge,
    /// Rooms of this node's live sockets by `kind` = `public` / `internal` (set when
    /// scraped).
    pub rooms: Family<Label, Gauge>,
    /// Rooms held only by sockets that are gone (set when scraped; see `residue`).
    pub stale_rooms: Gauge,
    /// Requests, events and connections refused by a trust rule or a limit, by reason.
    pub refused: Family<Label, Counter>,
    /// Connections that presented a session to recover, by outcome.
    pub recoveries: Family<Label, Counter>,
}

/// A closed set of label values: an enum whose `name` is the value.
macro_rules! labels {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $value:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Label value.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $value,)+
                }
            }
        }
    };
}

labels! {
    /// Why the edge (or a control call) refused something: the `reason` label of
    /// `sockgate_refused_total`.
    Refusal {
        /// An authenticator returned a user id that is not allowed.
        InvalidUserId => "invalid_user_id",
        /// A client event over the socket's rate was dropped.
        EventRate => "event_rate",
        /// A socket that kept exceeding its event rate was disconnected.
        EventRateDisconnect => "event_rate_disconnect",
        /// A `join` / `leave` past the socket's requests in flight.
        RoomRequestsInFlight => "room_requests_in_flight",
        /// A room past the socket's limit of client-joined rooms.
        RoomsPerSocket => "rooms_per_socket",
        /// A connection past the node's limit.
        ConnectionsPerNode => "connections_per_node",
        /// A connection past the client address's limit.
        ConnectionsPerIp => "connections_per_ip",
        /// A socket authenticating past its user's limit.
        ConnectionsPerUser => "connections_per_user",
        /// A new handshake past the client address's rate.
        HandshakeRate => "handshake_rate",
        /// A new connection while the node drains.
        Draining => "draining",
        /// Ack replies of a `Send` past the byte limit.
        AckReplyBytes => "ack_reply_bytes",
        /// A second Socket.IO connect on one Engine.IO session.
        SessionReused => "session_reused",
        /// A request from a browser page of an origin not in `edge.cors_origins`.
        Origin => "origin",
        /// A handshake (opening request or `auth` object) past its byte limit.
        HandshakeBytes => "handshake_bytes",
        /// A request naming an existing session from another address than the one that
        /// opened it.
        SessionAddress => "session_address",
    }
}

labels! {
    /// How an `authenticate` ended: the `outcome` label of `sockgate_auth_total`.
    AuthOutcome {
        /// Admitted.
        Allowed => "allowed",
        /// The authenticator said no.
        Denied => "denied",
        /// The authenticator failed or timed out.
        Failed => "failed",
        /// Not authenticated within the auth timeout.
        Timeout => "timeout",
    }
}

labels! {
    /// How a client's attempt to recover its session ended: the `outcome` label of
    /// `sockgate_recoveries_total`.
    RecoveryOutcome {
        /// Recovered: same socket, missed events replayed.
        Recovered => "recovered",
        /// The pid is not one sockgate gave, or its session is unknown, used or expired.
        Unknown => "unknown",
        /// The session's token has expired.
        TokenExpired => "token_expired",
        /// Events after the client's offset are no longer kept, or the offset is not one.
        Forgotten => "forgotten",
        /// More missed events than `recovery.max_replay_events`.
        TooMany => "too_many",
        /// The session's socket is still connected and could not be taken over.
        StillConnected => "still_connected",
        /// The session store could not be read (Redis unreachable).
        StoreFailed => "store_failed",
        /// The handshake's token names another user than the session's.
        OtherUser => "other_user",
    }
}

labels! {
    /// What became of a client event: the `outcome` label of
    /// `sockgate_client_events_total`.
    EventOutcome {
        /// Accepted from an authenticated socket.
        Accepted => "accepted",
        /// Dropped: no `OnEvent` slot free for the socket.
        DroppedSaturated => "dropped_saturated",
        /// Dropped: the socket had not authenticated.
        DroppedUnauthenticated => "dropped_unauthenticated",
        /// Dropped: not a valid event packet.
        Malformed => "malformed",
    }
}

labels! {
    /// A client's room request: the `request` label of `sockgate_client_rooms_total`.
    RoomRequest {
        /// `join`.
        Join => "join",
        /// `leave`.
        Leave => "leave",
    }
}

labels! {
    /// What became of the rooms of a client's request: the `result` label of
    /// `sockgate_client_rooms_total`.
    RoomResult {
        /// Joined.
        Joined => "joined",
        /// Left.
        Left => "left",
        /// Refused.
        Rejected => "rejected",
        /// The socket left while the join was decided.
        Abandoned => "abandoned",
        /// The request could not be read.
        InvalidRequest => "invalid_request",
    }
}

/// The registry of this process.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Self {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("sockgate"),
            sockets: Family::default(),
            connections: Counter::default(),
            auth: Family::default(),
            client_events: Family::default(),
            client_rooms: Family::default(),
            control_requests: Family::default(),
            control_duration: Family::new_with_constructor(latency_histogram),
            control_batch_commands: Family::default(),
            control_batch_grouped: Counter::default(),
            control_shed: Counter::default(),
            tls_handshake_failures: Family::default(),
            hook_calls: Family::default(),
            hook_duration: Family::new_with_constructor(latency_histogram),
            watchers: Gauge::default(),
            watch_dropped: Counter::default(),
            send_dropped: Counter::default(),
            tasks: Gauge::default(),
            rooms: Family::default(),
            stale_rooms: Gauge::default(),
            refused: Family::default(),
            recoveries: Family::default(),
        };
        metrics.register_edge();
        metrics.register_control();
        metrics.register_hooks();
        metrics.register_delivery();
        metrics.register_node();
        metrics
    }

    /// Registers the edge's metrics: sockets, connections, authentications, client events
    /// and rooms.
    fn register_edge(&mut self) {
        self.registry.register(
            "sockets",
            "Sockets of this node by state",
            self.sockets.clone(),
        );
        self.registry.register(
            "connections",
            "Socket.IO connections accepted",
            self.connections.clone(),
        );
        self.registry
            .register("auth", "Authentication outcomes", self.auth.clone());
        self.registry.register(
            "client_events",
            "Client application events by outcome",
            self.client_events.clone(),
        );
        self.registry.register(
            "client_rooms",
            "Rooms in client join/leave requests by result",
            self.client_rooms.clone(),
        );
        self.registry.register(
            "recoveries",
            "Connections that presented a session to recover, by outcome",
            self.recoveries.clone(),
        );
    }

    /// Registers the control plane's metrics, and the TLS listeners' handshake failures.
    fn register_control(&mut self) {
        self.registry.register(
            "control_requests",
            "SocketControl calls by method and status code",
            self.control_requests.clone(),
        );
        self.registry.register_with_unit(
            "control_duration",
            "SocketControl call latency",
            prometheus_client::registry::Unit::Seconds,
            self.control_duration.clone(),
        );
        self.registry.register(
            "control_batch_commands",
            "Commands of Batch calls by command and status code",
            self.control_batch_commands.clone(),
        );
        self.registry.register(
            "control_batch_grouped",
            "Commands of Batch calls grouped: sent to another node with the others for it, or (recovery on) recorded with the others in one round trip",
            self.control_batch_grouped.clone(),
        );
        self.registry.register(
            "control_shed",
            "SocketControl calls refused because control.max_concurrent_calls were in progress",
            self.control_shed.clone(),
        );
        self.registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out, by listener",
            self.tls_handshake_failures.clone(),
        );
    }

    /// Registers the metrics of the calls to the backend's hooks.
    fn register_hooks(&mut self) {
        self.registry.register(
            "hook_calls",
            "SocketHooks calls by hook and outcome",
            self.hook_calls.clone(),
        );
        self.registry.register_with_unit(
            "hook_duration",
            "SocketHooks call latency",
            prometheus_client::registry::Unit::Seconds,
            self.hook_duration.clone(),
        );
    }

    /// Registers the metrics of delivery: to watchers and to the recipients of a `Send`.
    fn register_delivery(&mut self) {
        self.registry.register(
            "watchers",
            "Connected WatchEvents watchers",
            self.watchers.clone(),
        );
        self.registry.register(
            "watch_dropped",
            "Events dropped for watchers that did not keep up",
            self.watch_dropped.clone(),
        );
        self.registry.register(
            "send_dropped",
            "Recipients a Send could not reach (send buffer full or closing)",
            self.send_dropped.clone(),
        );
    }

    /// Registers the node's metrics read when scraped (tasks, rooms), and its refusals.
    fn register_node(&mut self) {
        self.registry.register(
            "tasks",
            "Tokio tasks alive in this process",
            self.tasks.clone(),
        );
        self.registry.register(
            "rooms",
            "Rooms of this node's live sockets by kind",
            self.rooms.clone(),
        );
        self.registry.register(
            "stale_rooms",
            "Rooms held only by sockets that are gone (should stay 0)",
            self.stale_rooms.clone(),
        );
        self.registry.register(
            "refused",
            "Requests, events and connections refused by a trust rule or a limit, by reason",
            self.refused.clone(),
        );
    }

    /// Counts one authentication outcome.
    pub fn auth(&self, outcome: AuthOutcome) {
        self.auth
            .get_or_create(&[("outcome", outcome.name())])
            .inc();
    }

    /// Counts one recovery attempt.
    pub fn recovery(&self, outcome: RecoveryOutcome) {
        self.recoveries
            .get_or_create(&[("outcome", outcome.name())])
            .inc();
    }

    /// Counts one client event outcome.
    pub fn client_event(&self, outcome: EventOutcome) {
        self.client_events
            .get_or_create(&[("outcome", outcome.name())])
            .inc();
    }

    /// Counts `n` rooms of a client request.
    pub fn client_rooms(&self, request: RoomRequest, result: RoomResult, n: usize) {
        if n > 0 {
            self.client_rooms
                .get_or_create(&[("request", request.name()), ("result", result.name())])
                .inc_by(n as u64);
        }
    }

    /// Counts one refusal.
    pub fn refused(&self, reason: Refusal) {
        self.refused
            .get_or_create(&[("reason", reason.name())])
            .inc();
    }

    /// Records one control call.
    pub fn control(&self, method: &'static str, code: tonic::Code, elapsed: Duration) {
        self.control_requests
            .get_or_create(&[("method", method), ("code", code_name(code))])
            .inc();
        self.control_duration
            .get_or_create(&[("method", method)])
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one command of a `Batch`.
    pub fn batch_command(&self, command: &'static str, code: tonic::Code) {
        self.control_batch_commands
            .get_or_create(&[("command", command), ("code", code_name(code))])
            .inc();
    }

    /// Counts one failed TLS handshake on `listener`.
    pub fn tls_handshake_failure(&self, listener: &'static str) {
        self.tls_handshake_failures
            .get_or_create(&[("listener", listener)])
            .inc();
    }

    /// Records one hook call.
    pub fn hook(&self, hook: &'static str, outcome: &'static str, elapsed: Duration) {
        self.hook_calls
            .get_or_create(&[("hook", hook), ("outcome", outcome)])
            .inc();
        self.hook_duration
            .get_or_create(&[("hook", hook)])
            .observe(elapsed.as_secs_f64());
    }

    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels() {
        let metrics = Metrics::new();
        metrics.auth(AuthOutcome::Denied);
        metrics.control(
            "Send",
            tonic::Code::InvalidArgument,
            Duration::from_millis(2),
        );
        let text = metrics.render();
        assert!(
            text.contains("sockgate_auth_total{outcome=\"denied\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "sockgate_control_requests_total{method=\"Send\",code=\"INVALID_ARGUMENT\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("sockgate_control_duration_seconds_count{method=\"Send\"} 1"));
    }
}
