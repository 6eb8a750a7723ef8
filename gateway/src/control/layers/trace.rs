//! A `tracing` span per call: method, request id (the caller's `x-request-id`, else a
//! generated one, echoed in the response headers), the peer's address and the caller's
//! subject, which
//! [`super::caller_auth`] records once it knows it.

use std::{
    hash::{BuildHasher, RandomState},
    sync::atomic::{AtomicU64, Ordering},
    task::{Context, Poll},
};

use http::HeaderValue;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::Service;
use tracing::{Instrument, field};

use super::{GrpcRequest, GrpcResponse, LayerFuture};
use crate::control::methods::{Rpc, classify};

/// The request id header.
pub const REQUEST_ID: &str = "x-request-id";

/// Longest caller-chosen request id kept; longer ones are replaced.
const MAX_REQUEST_ID: usize = 128;

/// The tracing layer's service.
#[derive(Clone)]
pub struct Trace<S> {
    inner: S,
}

impl<S> Trace<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S> Service<GrpcRequest> for Trace<S>
where
    S: Service<GrpcRequest, Response = GrpcResponse>,
    S::Future: Send + 'static,
{
    type Response = GrpcResponse;
    type Error = S::Error;
    type Future = LayerFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: GrpcRequest) -> Self::Future {
        let rpc = match classify(request.uri().path()) {
            Rpc::Control(method) => method.name,
            Rpc::Health => "health",
            Rpc::Reflection => "reflection",
            Rpc::Other => "other",
        };
        let mut id = request
            .headers()
            .get(REQUEST_ID)
            .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID && v.to_str().is_ok())
            .cloned()
            .unwrap_or_else(generate_id);
        let span = tracing::info_span!(
            "control_call",
            rpc,
            request_id = id.to_str().unwrap_or_default(),
            peer = field::Empty,
            subject = field::Empty,
        );
        if let Some(peer) = peer_of(&request) {
            span.record("peer", field::display(peer));
        }
        let future = span.in_scope(|| self.inner.call(request));
        // Unique per call: HPACK would add each one to the connection's header table (and
        // the caller's), evicting the entries that repeat and walking the request ids
        // already there on every response. Sensitive values are sent as literals instead.
        id.set_sensitive(true);
        Box::pin(
            async move {
                let mut response = future.await?;
                response.headers_mut().insert(REQUEST_ID, id);
                Ok(response)
            }
            .instrument(span),
        )
    }
}

/// The caller's address, over TCP or TLS.
fn peer_of(request: &GrpcRequest) -> Option<std::net::SocketAddr> {
    let extensions = request.extensions();
    extensions
        .get::<TcpConnectInfo>()
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .map(TlsConnectInfo::get_ref)
        })
        .and_then(TcpConnectInfo::remote_addr)
}

/// A process-unique id: a random prefix per process and a counter.
fn generate_id() -> HeaderValue {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static PREFIX: std::sync::LazyLock<u32> =
        std::sync::LazyLock::new(|| RandomState::new().hash_one(std::process::id()) as u32);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    HeaderValue::try_from(format!("{:08x}-{n:x}", *PREFIX)).expect("hex is a valid header value")
}
