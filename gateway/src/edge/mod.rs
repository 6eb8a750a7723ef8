//! The Socket.IO edge: socketioxide on axum. Captures each handshake, runs the connection
//! protocol (authenticate, rooms, application ping) and drops events from sockets that
//! have not authenticated.

mod authentication;
mod membership;
pub mod ping;
pub mod protocol;
mod session;

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, extract::ConnectInfo};
use http::{HeaderValue, Method};
use serde_json::Value;
use socketioxide::{
    ParserError, SocketIo, TransportType,
    extract::{AckSender, Event, SocketRef, TryData},
};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tracing::{debug, info};

use crate::{
    auth::{AuthChain, RoomValidator},
    config::{EdgeConfig, Transport},
    rooms::{self, ConnectionMeta},
};
use session::Session;

/// Shared state of the edge handlers.
pub struct Edge {
    /// The Socket.IO server.
    pub io: SocketIo,
    config: EdgeConfig,
    auth: AuthChain,
    room_validator: RoomValidator,
}

/// Builds the edge: the axum router to serve and the `SocketIo` handle the control plane
/// drives.
pub fn build(
    config: &EdgeConfig,
    auth: AuthChain,
    room_validator: RoomValidator,
) -> Result<(Router, Arc<Edge>), String> {
    let builder = SocketIo::builder()
        .req_path(config.path.clone())
        .max_payload(config.max_payload_bytes);
    let has = |t| config.transports.contains(&t);
    let builder = match (has(Transport::Websocket), has(Transport::Polling)) {
        (true, true) => builder,
        (true, false) => builder.transports([TransportType::Websocket]),
        (false, true) => builder.transports([TransportType::Polling]),
        (false, false) => return Err("edge.transports is empty".into()),
    };
    let (layer, io) = builder.build_layer();
    let edge = Arc::new(Edge {
        io: io.clone(),
        config: config.clone(),
        auth,
        room_validator,
    });
    let handler_edge = edge.clone();
    io.ns(
        "/",
        async move |socket: SocketRef, TryData(auth): TryData<Value>| {
            on_connect(handler_edge, socket, auth.ok());
        },
    );

    let mut router = Router::new().layer(layer);
    if let Some(cors) = cors_layer(&config.cors_origins)? {
        router = router.layer(cors);
    }
    Ok((router, edge))
}

fn cors_layer(origins: &[String]) -> Result<Option<CorsLayer>, String> {
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
        .map(|o| {
            HeaderValue::from_str(o).map_err(|_| format!("edge.cors_origins: invalid origin {o:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(
        CorsLayer::new()
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([http::header::CONTENT_TYPE, http::header::AUTHORIZATION])
            .allow_credentials(true)
            .allow_origin(AllowOrigin::list(list)),
    ))
}

fn transport_name(transport: TransportType) -> &'static str {
    match transport {
        TransportType::Websocket => "websocket",
        TransportType::Polling => "polling",
    }
}

fn on_connect(edge: Arc<Edge>, socket: SocketRef, auth: Option<Value>) {
    let remote = socket
        .req_parts()
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let meta = ConnectionMeta::now(transport_name(socket.transport_type()), remote);
    socket
        .extensions
        .insert(Arc::new(Session::new(auth.filter(|a| !a.is_null()))));
    socket.join([rooms::socket_room(socket.id), meta.room()]);
    info!(sid = %socket.id, remote = %meta.remote_address, transport = %meta.transport, "connected");

    authentication::enforce_timeout(&edge, &socket);
    let handler_edge = edge.clone();
    socket.on_fallback(
        async move |socket: SocketRef,
                    Event(event): Event,
                    TryData(data): TryData<Value>,
                    ack: AckSender| {
            on_event(handler_edge, socket, event, data, ack).await;
        },
    );
    socket.on_disconnect(
        async |socket: SocketRef, reason: socketioxide::socket::DisconnectReason| {
            info!(sid = %socket.id, %reason, "disconnected");
        },
    );
}

async fn on_event(
    edge: Arc<Edge>,
    socket: SocketRef,
    event: String,
    data: Result<Value, ParserError>,
    ack: AckSender,
) {
    let data = data.ok().filter(|v| !v.is_null());
    match event.as_str() {
        protocol::AUTHENTICATE => authentication::authenticate(edge, socket, data).await,
        protocol::JOIN => membership::join(edge, socket, data, ack),
        protocol::LEAVE => membership::leave(edge, socket, data, ack),
        _ => {
            let authenticated = Session::of(&socket).is_some_and(|s| s.is_authenticated());
            if authenticated {
                debug!(sid = %socket.id, %event, "client event: no backend consumes it yet");
            } else {
                debug!(sid = %socket.id, %event, "event from an unauthenticated socket dropped");
            }
        }
    }
}
