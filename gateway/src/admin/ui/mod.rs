//! The server of the official Socket.IO Admin UI (`@socket.io/admin-ui`) on the admin
//! port: Socket.IO path `/socket.io`, namespace `/admin` (the UI's defaults), and the UI's
//! own files at `/ui/` when `admin.ui.static_dir` is set (with the fonts it links from
//! other sites when `admin.ui.fonts_dir` is: see `files.rs`). A Socket.IO server of its own,
//! apart from the edge's: the UI speaks the default parser and never reaches the edge.
//!
//! Bounded for a node with many sockets: every 2 s, while an operator is connected, one
//! `server_stats` per node and one `all_sockets` with at most `admin.ui.max_sockets`
//! sockets (one `ListSockets` page) go to all operators together; the UI's live event
//! stream (`event_received`, `event_sent`) is not offered.

pub mod actions;
mod files;
mod login;
mod view;

use std::{future::Future, sync::Arc, time::Duration, time::Instant};

use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::json;
use socketioxide::{
    SocketIo,
    adapter::{Adapter, LocalAdapter},
    extract::{SocketRef, TryData},
    handler::ConnectHandler,
};
use sockgate_proto::{ListSocketsRequest, SocketState, socket_control_server::SocketControl};
use tower_http::cors::CorsLayer;
use tracing::{debug, warn};

use crate::{cluster::Cluster, config::AdminUiConfig, control::ControlService};
use actions::Actions;
pub use files::FONT_PACKAGES;
use login::{Credentials, Login, Operator};

/// The UI's Socket.IO path and namespace (its defaults).
const PATH: &str = "/socket.io";
const NAMESPACE: &str = "/admin";
/// How often the UI gets the servers' stats and the socket list (socket.io's period).
const REFRESH: Duration = Duration::from_secs(2);

/// Why the Admin UI's server cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum AdminUiError {
    /// An entry of `admin.ui.origins` is not a valid header value.
    #[error("admin.ui.origins: invalid origin {0:?}")]
    Origin(String),
    /// The UI's `index.html` cannot be read or has not the font links expected.
    #[error("admin.ui.static_dir: {0}: {1}")]
    Index(std::path::PathBuf, String),
}

/// What the UI is shown from: the control methods and the cluster's nodes.
pub struct Sources<A: Adapter> {
    /// The `SocketControl` service the control port serves.
    pub control: ControlService<A>,
    /// The cluster, for each node's counts.
    pub cluster: Arc<Cluster>,
    /// When this node started.
    pub started: Instant,
}

/// `router` with the Admin UI's server added, refreshing the UI until `stop` completes.
pub fn attach<A: Adapter>(
    router: Router,
    config: &AdminUiConfig,
    sources: Sources<A>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<Router, AdminUiError> {
    let (layer, io) = SocketIo::builder().req_path(PATH).build_layer();
    let sources = Arc::new(sources);
    serve_namespace(&io, config, &sources);
    tokio::spawn(refresh(io, sources, config.max_sockets, stop));

    let router = match &config.static_dir {
        Some(dir) => files::serve(router, dir, config.fonts_dir.as_deref())?,
        None => router,
    };
    let allowed = Arc::new(allowed_origins(&config.origins)?);
    let router = router
        .layer(layer)
        .layer(axum::middleware::from_fn_with_state(
            allowed.clone(),
            check_origin,
        ));
    Ok(if allowed.is_empty() {
        router
    } else {
        router.layer(
            CorsLayer::new()
                .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
                .allow_headers([header::CONTENT_TYPE])
                .allow_credentials(true)
                .allow_origin(allowed.to_vec()),
        )
    })
}

/// The features the UI is told of: its actions unless readonly. Neither
/// `AGGREGATED_EVENTS` nor `ALL_EVENTS`: the UI then lists sockets and rooms, and has no
/// event stream.
fn features(readonly: bool) -> &'static [&'static str] {
    if readonly {
        &[]
    } else {
        &[
            "EMIT",
            "JOIN",
            "LEAVE",
            "DISCONNECT",
            "MJOIN",
            "MLEAVE",
            "MDISCONNECT",
        ]
    }
}

fn serve_namespace<A: Adapter>(
    io: &SocketIo<LocalAdapter>,
    config: &AdminUiConfig,
    sources: &Arc<Sources<A>>,
) {
    let login = Arc::new(Login::new(&config.username, &config.password_hash));
    let actions = Actions::new(sources.control.clone(), config.readonly);
    let features = features(config.readonly);
    let (sources, max_sockets) = (sources.clone(), config.max_sockets);
    let connected = async move |socket: SocketRef<LocalAdapter>| {
        if let Some(session) = socket
            .extensions
            .get::<Operator>()
            .and_then(|o| o.new_session)
        {
            let _ = socket.emit("session", &session);
        }
        let _ = socket.emit("config", &json!({ "supportedFeatures": features }));
        for stats in server_stats(&sources).await {
            let _ = socket.emit("server_stats", &stats);
        }
        if let Some(sockets) = all_sockets(&sources, max_sockets).await {
            let _ = socket.emit("all_sockets", &sockets);
        }
    };
    let check = async move |socket: SocketRef<LocalAdapter>, credentials: TryData<Credentials>| {
        login.clone().check(socket.clone(), credentials).await?;
        // Before the client is told it is connected (socketioxide runs the connect
        // handler after that): an action sent at once finds its handler.
        actions.register(&socket);
        Ok::<(), login::InvalidCredentials>(())
    };
    io.ns(NAMESPACE, connected.with(check));
}

/// Every `REFRESH`, while an operator is connected: each node's stats and the socket list.
async fn refresh<A: Adapter>(
    io: SocketIo<LocalAdapter>,
    sources: Arc<Sources<A>>,
    max_sockets: u32,
    stop: impl Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    let mut ticks = tokio::time::interval(REFRESH);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = &mut stop => return,
        }
        let Some(operators) = io.of(NAMESPACE) else {
            return;
        };
        if operators.clone().sockets().is_empty() {
            continue;
        }
        for stats in server_stats(&sources).await {
            let _ = operators.clone().emit("server_stats", &stats).await;
        }
        if let Some(sockets) = all_sockets(&sources, max_sockets).await {
            let _ = operators.emit("all_sockets", &sockets).await;
        }
    }
}

async fn server_stats<A: Adapter>(sources: &Sources<A>) -> Vec<view::ServerStats> {
    let nodes = match sources.cluster.nodes().await {
        Ok(nodes) => nodes,
        Err(error) => {
            warn!(%error, "admin ui: the cluster's nodes cannot be read");
            return Vec::new();
        }
    };
    let this_node = sources.cluster.node_id();
    let uptime = sources.started.elapsed().as_secs();
    nodes
        .iter()
        .map(|node| view::server_stats(node, (node.node_id == this_node).then_some(uptime)))
        .collect()
}

async fn all_sockets<A: Adapter>(
    sources: &Sources<A>,
    max_sockets: u32,
) -> Option<Vec<view::SerializedSocket>> {
    let request = ListSocketsRequest {
        page_size: max_sockets,
        ..ListSocketsRequest::default()
    };
    match sources
        .control
        .list_sockets(tonic::Request::new(request))
        .await
    {
        // The UI shows connected sockets: those away (connection state recovery) have
        // no connection to show or act on.
        Ok(page) => Some(
            page.into_inner()
                .sockets
                .into_iter()
                .filter(|s| s.state != SocketState::Away as i32)
                .map(view::serialize)
                .collect(),
        ),
        Err(status) => {
            debug!(error = %status.message(), "admin ui: sockets cannot be listed");
            None
        }
    }
}

fn allowed_origins(origins: &[String]) -> Result<Vec<HeaderValue>, AdminUiError> {
    origins
        .iter()
        .map(|o| HeaderValue::from_str(o).map_err(|_| AdminUiError::Origin(o.clone())))
        .collect()
}

/// Browsers apply no CORS to WebSocket handshakes: a page of another site could reach
/// `/socket.io` on the operator's loopback port. A request to it with an `Origin` must come
/// from this port's own pages or from `admin.ui.origins`.
async fn check_origin(
    State(allowed): State<Arc<Vec<HeaderValue>>>,
    request: Request,
    next: Next,
) -> Response {
    if !request.uri().path().starts_with(PATH) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let Some(origin) = headers.get(header::ORIGIN) else {
        return next.run(request).await;
    };
    let same_origin = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .zip(origin.to_str().ok())
        .is_some_and(|(host, origin)| {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                == Some(host)
        });
    if same_origin || allowed.contains(origin) {
        return next.run(request).await;
    }
    warn!(origin = ?origin, "admin ui: a page of an origin not in admin.ui.origins refused");
    (
        StatusCode::FORBIDDEN,
        "This page's origin may not connect (admin.ui.origins).\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readonly_advertises_no_action() {
        assert!(features(true).is_empty());
        assert!(features(false).contains(&"DISCONNECT"));
        assert!(!features(false).contains(&"ALL_EVENTS"));
    }
}
