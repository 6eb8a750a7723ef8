//! The Socket.IO edge: socketioxide on axum. Captures each handshake, runs the connection
//! protocol (authenticate, rooms, application ping) and drops events from sockets that
//! have not authenticated.

pub mod authentication;
mod forwarding;
mod handshake_gate;
pub mod index;
pub mod limits;
mod membership;
mod message;
mod msgpack;
pub mod ping;
pub mod protocol;
mod recovery;
pub mod server;
mod session;
pub mod state;
pub mod user_limit;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::{ConnectInfo, Request},
};
use bytes::BytesMut;
use http::{Extensions, HeaderMap, HeaderName, HeaderValue, Method, Uri};
use hyper::upgrade::OnUpgrade;
use serde_json::Value;
use socketioxide::{
    ParserConfig, SocketIo, TransportType,
    adapter::{Adapter, Emitter},
    extract::{AckSender, SocketRef, TryData},
    handler::ConnectHandler,
    resolver::ConnectRequest,
    socket::DisconnectReason,
};
use socketioxide_core::adapter::CoreAdapter;
use sockgate_proto::{EventKind, WatchEventsResponse};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tracing::{debug, info};

use crate::{
    auth::{AuthChain, ConnectionMeta, RoomValidator},
    cluster::adapter::{ClusterAdapter, InitializationError},
    config::{EdgeConfig, Parser, Transport},
    edge::limits::{ConnectRefusal, Limits, OpenedSession},
    events::{self, EventBus},
    hooks::Hooks,
    metrics::{EventOutcome, METRICS},
    recovery::Recovery,
};
use message::ClientMessage;
pub use session::Session;
use state::{Mirrors, Transition};
use user_limit::UserLimit;

/// Who decides for the edge.
pub struct Deciders {
    /// The authenticator chain.
    pub auth: AuthChain,
    /// Static and JWT room rules.
    pub room_validator: RoomValidator,
    /// The backend's hooks, if configured.
    pub hooks: Option<Arc<Hooks>>,
    /// Where lifecycle and client events are published.
    pub events: Arc<EventBus>,
    /// Where the sockets' states are mirrored: this node's index, the cluster's directory.
    pub mirrors: Arc<Mirrors>,
    /// Connection state recovery, when it is on.
    pub recovery: Option<Arc<Recovery>>,
}

/// Read buffer of each WebSocket connection. Clients mostly send small events; a larger
/// message is read in several chunks (the buffer grows for it). engineioxide's default,
/// 4 KiB, costs 3.8 KiB more per idle socket, 1 KiB 0.8 KiB more.
const WS_READ_BUFFER_BYTES: usize = 256;

/// Shared state of the edge handlers.
pub struct Edge<A: Adapter> {
    /// The Socket.IO server.
    pub io: SocketIo<A>,
    config: EdgeConfig,
    auth: AuthChain,
    room_validator: RoomValidator,
    hooks: Option<Arc<Hooks>>,
    events: Arc<EventBus>,
    /// This node's sockets (the index) and the cluster's directory.
    pub mirrors: Arc<Mirrors>,
    /// Per-socket and per-address limits, and the draining flag.
    pub limits: Arc<Limits>,
    /// Connection state recovery, when it is on.
    pub recovery: Option<Arc<Recovery>>,
    /// `edge.limits.max_connections_per_user`, counted across the cluster.
    pub user_limit: UserLimit,
}

/// Why the edge cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum EdgeSetupError {
    /// Neither WebSocket nor polling is enabled.
    #[error("edge.transports is empty")]
    NoTransport,
    /// An entry of `edge.cors_origins` is not a valid header value.
    #[error("edge.cors_origins: invalid origin {0:?}")]
    CorsOrigin(String),
    /// The cluster adapter could not set up the namespace.
    #[error("cluster adapter: {0}")]
    Adapter(InitializationError),
}

/// Builds the edge: the axum router to serve and the `SocketIo` handle the control plane
/// drives.
pub async fn build<A: ClusterAdapter>(
    config: &EdgeConfig,
    deciders: Deciders,
    adapter: <A as CoreAdapter<Emitter>>::State,
) -> Result<(Router, Arc<Edge<A>>), EdgeSetupError> {
    let builder = SocketIo::builder()
        .with_adapter::<A>(adapter)
        .req_path(config.path.clone())
        .max_payload(config.max_payload_bytes)
        .ws_max_message_size(config.max_payload_bytes as usize)
        .ws_max_frame_size(config.max_payload_bytes as usize)
        .ws_read_buffer_size(WS_READ_BUFFER_BYTES)
        .ping_interval(config.ping_interval)
        .ping_timeout(config.ping_timeout)
        // An Engine.IO session with no socket counts against no connection limit: it gets
        // no longer than a socket has to authenticate (socketioxide's default is 45 s).
        .connect_timeout(config.auth_timeout);
    let builder = match config.parser {
        // Each binary attachment is a message of its own: the limit holds for an event and
        // its attachments together (socketioxide's default is 10 MB).
        Parser::Default => builder.with_parser(
            ParserConfig::common().max_incoming_binary_buf_size(config.max_payload_bytes as usize),
        ),
        // One message per packet, binary values inline: `max_payload` bounds it.
        Parser::Msgpack => builder.with_parser(ParserConfig::msgpack()),
    };
    let has = |t| config.transports.contains(&t);
    let builder = match (has(Transport::Websocket), has(Transport::Polling)) {
        (true, true) => builder,
        (true, false) => builder.transports([TransportType::Websocket]),
        (false, true) => builder.transports([TransportType::Polling]),
        (false, false) => return Err(EdgeSetupError::NoTransport),
    };
    let builder = match &deciders.recovery {
        Some(recovery) => {
            let (recovery, mirrors) = (recovery.clone(), deciders.mirrors.clone());
            builder.with_connect_resolver(move |request: ConnectRequest| {
                recovery::resolve(recovery.clone(), mirrors.clone(), request)
            })
        }
        None => builder,
    };
    let limits = Arc::new(Limits::new(&config.limits));
    let (layer, io) = builder
        .with_state(deciders.events.clone())
        .with_state(limits.clone())
        .build_layer();
    let edge = Arc::new(Edge {
        io: io.clone(),
        config: config.clone(),
        auth: deciders.auth,
        room_validator: deciders.room_validator,
        hooks: deciders.hooks,
        events: deciders.events,
        mirrors: deciders.mirrors,
        limits: limits.clone(),
        recovery: deciders.recovery,
        user_limit: UserLimit::new(config.limits.max_connections_per_user),
    });
    // socketioxide tells the client it is connected before it runs the connect handler,
    // but after the connect middlewares: the socket is set up in a middleware so that its
    // handlers exist before the client can send its first event. A refusal here reaches
    // the client as `connect_error` with the refusal's message.
    let setup_edge = edge.clone();
    let setup = async move |socket: SocketRef<A>, TryData(auth): TryData<Value>| {
        on_connect(setup_edge, socket, auth.ok())
    };
    // Listed and reported to the directory only once connected: a socket refused, or
    // whose connect packet cannot be sent, never runs this handler nor its disconnect
    // handler.
    let connected_edge = edge.clone();
    let connected = async move |socket: SocketRef<A>| {
        if let Some(session) = Session::of(&socket) {
            let _ = session.apply(&socket, Transition::Open);
            recovery::restore(&connected_edge, &socket, &session).await;
        }
    };
    A::initialized(io.ns("/", connected.with(setup)))
        .await
        .map_err(EdgeSetupError::Adapter)?;
    authentication::spawn_auth_sweeper(edge.clone());

    let mut router = Router::new()
        .layer(layer)
        .layer(axum::middleware::map_request(detach_head))
        .layer(axum::middleware::from_fn_with_state(
            handshake_gate::Gate::new(&config.path, limits, io.clone(), &config.cors_origins),
            handshake_gate::check::<A>,
        ));
    if let Some(cors) = cors_layer(&config.cors_origins)? {
        router = router.layer(cors);
    }
    Ok((router, edge))
}

/// Copies the request's URI (and axum's copy of it) and headers out of the connection's
/// read buffer.
///
/// hyper parses them without copying, as slices of that buffer (8 to 16 KiB), and
/// socketioxide keeps the connecting request's head for the socket's whole life: without
/// this copy, every idle socket would pin its connection's read buffer. Of the request's
/// extensions only what is read later is kept (the router's URL parameters and original
/// URI would cost every socket about 0.4 KB): the peer address, hyper's pending upgrade
/// and the handshake gate's session mark. **An extension read from `req_parts()` must be
/// listed here.** Requests of an existing session (`sid=` in the query: polling,
/// upgrades) are not kept, so not copied.
async fn detach_head(mut request: Request) -> Request {
    if handshake_gate::session_id(request.uri().query()).is_some() {
        return request;
    }
    *request.headers_mut() = detach_headers(request.headers());
    if let Ok(uri) = Uri::try_from(request.uri().to_string()) {
        *request.uri_mut() = uri;
    }
    let old = request.extensions_mut();
    let mut kept = Extensions::new();
    if let Some(peer) = old.remove::<ConnectInfo<SocketAddr>>() {
        kept.insert(peer);
    }
    if let Some(upgrade) = old.remove::<OnUpgrade>() {
        kept.insert(upgrade);
    }
    if let Some(opened) = old.remove::<OpenedSession>() {
        kept.insert(opened);
    }
    *old = kept;
    request
}

/// A copy of `headers` whose values share one allocation (a socket keeps them all its
/// life: one buffer instead of one allocation per value, and no spare map capacity).
fn detach_headers(headers: &HeaderMap) -> HeaderMap {
    let mut values = BytesMut::with_capacity(headers.values().map(HeaderValue::len).sum());
    for value in headers.values() {
        values.extend_from_slice(value.as_bytes());
    }
    let mut values = values.freeze();
    let mut copy = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let bytes = values.split_to(value.len());
        let (Ok(name), Ok(mut copied)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_maybe_shared(bytes),
        ) else {
            continue;
        };
        copied.set_sensitive(value.is_sensitive());
        copy.append(name, copied);
    }
    copy
}

fn cors_layer(origins: &[String]) -> Result<Option<CorsLayer>, EdgeSetupError> {
    if origins.is_empty() {
        return Ok(None);
    }
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers(Any);
    if origins.iter().any(|o| o == "*") {
        return Ok(Some(layer.allow_origin(Any)));
    }
    let list = origins
        .iter()
        .map(|o| HeaderValue::from_str(o).map_err(|_| EdgeSetupError::CorsOrigin(o.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(
        CorsLayer::new()
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([http::header::CONTENT_TYPE, http::header::AUTHORIZATION])
            .allow_credentials(true)
            .allow_origin(AllowOrigin::list(list)),
    ))
}

impl<A: Adapter> Edge<A> {
    /// Refuses new connections from now on (shutdown).
    pub fn start_draining(&self) {
        self.limits.start_draining();
    }
}

/// `websocket` or `polling`.
pub fn transport_name(transport: TransportType) -> &'static str {
    match transport {
        TransportType::Websocket => "websocket",
        TransportType::Polling => "polling",
    }
}

/// The length of `value` as JSON text, without writing it out.
fn json_bytes(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

fn on_connect<A: Adapter>(
    edge: Arc<Edge<A>>,
    socket: SocketRef<A>,
    auth: Option<Value>,
) -> Result<(), ConnectRefusal> {
    let remote = socket
        .req_parts()
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    // One socket per Engine.IO session, as socket.io-client does it: a later connect on
    // the session (a client that left the namespace, or was refused) is refused.
    let first = socket
        .req_parts()
        .extensions
        .get::<OpenedSession>()
        .is_some_and(OpenedSession::first_connect);
    // A refused socket's recovered session (taken when its id was resolved) is kept
    // again: its client may come back when the limit allows.
    let refuse = |refusal: ConnectRefusal| {
        edge.limits.refused(refusal, remote);
        if let Some(recovery) = &edge.recovery {
            recovery::give_back(recovery, socket.id);
        }
        refusal
    };
    if !first {
        return Err(refuse(ConnectRefusal::SessionReused));
    }
    if let Some(auth) = &auth {
        edge.limits
            .check_handshake_size(json_bytes(auth))
            .map_err(refuse)?;
    }
    let slot = edge.limits.admit_connection(remote).map_err(refuse)?;
    let meta = ConnectionMeta::now(transport_name(socket.transport_type()), remote);
    socket.join(state::initial_rooms(socket.id));
    METRICS.connections.inc();
    info!(sid = %socket.id, remote = %meta.remote_address, transport = %meta.transport, "connected");
    let mut auth = auth.filter(|a| !a.is_null());
    recovery::strip_recovery_keys(&mut auth);
    let session = Arc::new(Session::new(
        socket.id,
        auth,
        meta,
        Some(slot),
        edge.mirrors.clone(),
    ));
    let mut recovering = false;
    if let Some(recovery) = &edge.recovery {
        recovering = recovery::set_up(recovery, &socket, &session);
    }
    socket.extensions.insert(session);
    // A recovered socket is reported once restored, as such.
    if edge.events.is_watched() && !recovering {
        edge.events.publish(
            events::lifecycle(EventKind::Connected, &socket.id.to_string(), None),
            Vec::new,
        );
    }
    handle_events(&edge, &socket);
    socket.on_disconnect(
        async move |socket: SocketRef<A>, reason: DisconnectReason| {
            on_disconnect(&edge, &socket, reason);
        },
    );
    Ok(())
}

/// The connection protocol's events go to their handlers; any other event is forwarded
/// to the backends. Each handler's `ClientMessage` extractor applies the socket's event
/// rate and publishes the event to watchers, in arrival order.
fn handle_events<A: Adapter>(edge: &Arc<Edge<A>>, socket: &SocketRef<A>) {
    let auth_edge = edge.clone();
    socket.on(
        protocol::AUTHENTICATE,
        async move |socket: SocketRef<A>, message: ClientMessage| {
            authentication::authenticate(auth_edge, socket, message.data).await;
        },
    );
    let join_edge = edge.clone();
    socket.on(
        protocol::JOIN,
        async move |socket: SocketRef<A>, message: ClientMessage, ack: AckSender<A>| {
            if let Some(message) = authenticated(&socket, message) {
                membership::join(join_edge, socket, message.data, ack).await;
            }
        },
    );
    let leave_edge = edge.clone();
    socket.on(
        protocol::LEAVE,
        async move |socket: SocketRef<A>, message: ClientMessage, ack: AckSender<A>| {
            if let Some(message) = authenticated(&socket, message) {
                membership::leave(leave_edge, socket, message.data, ack);
            }
        },
    );
    let forward_edge = edge.clone();
    socket.on_fallback(
        async move |socket: SocketRef<A>, message: ClientMessage, ack: AckSender<A>| {
            if let Some(message) = authenticated(&socket, message) {
                forwarding::forward(forward_edge, socket, message, ack).await;
            }
        },
    );
}

/// The message, if its socket was authenticated when it arrived; events from sockets that
/// have not authenticated are dropped.
fn authenticated<A: Adapter>(
    socket: &SocketRef<A>,
    message: ClientMessage,
) -> Option<ClientMessage> {
    if message.authenticated {
        return Some(message);
    }
    METRICS.client_event(EventOutcome::DroppedUnauthenticated);
    debug!(sid = %socket.id, event = %message.event, "event from an unauthenticated socket dropped");
    None
}

fn on_disconnect<A: Adapter>(edge: &Edge<A>, socket: &SocketRef<A>, reason: DisconnectReason) {
    info!(sid = %socket.id, %reason, "disconnected");
    let Some(session) = Session::of(socket) else {
        return;
    };
    let rooms = session.rooms();
    let Ok(previous) = session.apply(socket, Transition::Close) else {
        return;
    };
    let recoverable = edge
        .recovery
        .as_ref()
        .is_some_and(|r| recovery::keep(r, &session, &previous, reason));
    if edge.events.is_watched() {
        let user = previous.identity().and_then(|i| i.user_id.clone());
        edge.events.publish(
            WatchEventsResponse {
                reason: reason.to_string(),
                recoverable,
                ..events::lifecycle(
                    EventKind::Disconnected,
                    &socket.id.to_string(),
                    user.as_deref(),
                )
            },
            || rooms,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detached_headers_are_equal_to_the_original() {
        let mut headers = HeaderMap::new();
        headers.append("host", HeaderValue::from_static("example.com"));
        headers.append("x-empty", HeaderValue::from_static(""));
        headers.append("cookie", HeaderValue::from_static("a=1"));
        headers.append("cookie", HeaderValue::from_static("b=2"));
        let mut secret = HeaderValue::from_static("Bearer abc");
        secret.set_sensitive(true);
        headers.append("authorization", secret);
        let copy = detach_headers(&headers);
        assert_eq!(copy, headers);
        assert_eq!(
            copy.get_all("cookie").iter().collect::<Vec<_>>(),
            ["a=1", "b=2"]
        );
        assert!(copy["authorization"].is_sensitive());
    }

    #[test]
    fn an_origin_that_is_no_header_value_is_named() {
        let error = cors_layer(&["https://a.example".into(), "bad\norigin".into()])
            .unwrap_err()
            .to_string();
        assert_eq!(error, r#"edge.cors_origins: invalid origin "bad\norigin""#);
    }
}
