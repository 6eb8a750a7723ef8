//! The admin HTTP endpoint: Prometheus metrics, liveness and readiness, and the Socket.IO
//! Admin UI's server when enabled ([`ui`]). Internal, like the control plane: it listens
//! on loopback by default.

pub mod ui;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{
    Router, extract::State, http::StatusCode, http::header, response::IntoResponse, routing::get,
};
use socketioxide::{SocketIo, adapter::Adapter};

use crate::{edge::state::Mirrors, metrics::METRICS, residue};

/// What the admin handlers read.
pub struct Admin<A: Adapter> {
    io: SocketIo<A>,
    sockets: Arc<Mirrors>,
    ready: Arc<AtomicBool>,
}

impl<A: Adapter> Clone for Admin<A> {
    fn clone(&self) -> Self {
        Self {
            io: self.io.clone(),
            sockets: self.sockets.clone(),
            ready: self.ready.clone(),
        }
    }
}

impl<A: Adapter> Admin<A> {
    /// An admin endpoint over `io` and its `sockets`; not ready until
    /// [`Admin::set_ready`].
    pub fn new(io: SocketIo<A>, sockets: Arc<Mirrors>) -> Self {
        Self {
            io,
            sockets,
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Marks the node ready (serving) or not (starting, draining).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// `/metrics`, `/livez`, `/readyz`.
    pub fn router(self) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .route("/livez", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .with_state(self)
    }
}

async fn readyz<A: Adapter>(State(admin): State<Admin<A>>) -> impl IntoResponse {
    if admin.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics<A: Adapter>(State(admin): State<Admin<A>>) -> impl IntoResponse {
    let counts = admin.sockets.index.counts();
    for (state, count) in [
        ("unauthorized", counts.unauthorized),
        ("authenticating", counts.authenticating),
        ("authenticated", counts.authenticated),
    ] {
        METRICS
            .sockets
            .get_or_create(&[("state", state)])
            .set(i64::from(count));
    }
    residue::refresh(&admin.io).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        METRICS.render(),
    )
}
