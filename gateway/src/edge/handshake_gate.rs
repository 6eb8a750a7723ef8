//! The HTTP gate in front of Socket.IO: a request that would open a new Engine.IO session
//! (no `sid` in its query: a polling handshake or a direct WebSocket) is refused while the
//! node drains (`503`) and past its address's rate of new sessions (`429` with
//! `Retry-After`), before any session is created. The body says why.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{Method, StatusCode, header};

use super::limits::{ConnectRefusal, Limits};

/// What the gate checks against.
#[derive(Clone)]
pub struct Gate {
    path: Arc<str>,
    limits: Arc<Limits>,
}

impl Gate {
    /// A gate for requests under `path`.
    pub fn new(path: &str, limits: Arc<Limits>) -> Self {
        Self {
            path: path.into(),
            limits,
        }
    }
}

fn opens_a_session(gate: &Gate, request: &Request) -> bool {
    request.method() != Method::OPTIONS
        && request.uri().path().starts_with(&*gate.path)
        && !request
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("sid=")))
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn check(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    if !opens_a_session(&gate, &request) {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    match gate.limits.admit_handshake(peer) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            gate.limits.refused(refusal, peer);
            let status = match refusal {
                ConnectRefusal::Draining => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::TOO_MANY_REQUESTS,
            };
            let mut response = (status, format!("{refusal}\n")).into_response();
            if status == StatusCode::TOO_MANY_REQUESTS {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
            }
            response
        }
    }
}
