//! Serves the edge's router over HTTP/1.1 (and HTTP/2) with a deadline on each request
//! head. axum's `serve` sets no timer, so hyper's header read timeout is off there: a
//! client could hold a connection (a task and its buffers) forever by never finishing a
//! request head, and no connection limit counts connections that have no socket yet.

use std::{future::Future, net::SocketAddr, time::Duration};

use axum::{Router, extract::ConnectInfo, serve::Listener};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto::Builder, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tower::ServiceExt;

/// Serves `router` on `listener` until `shutdown` completes, then waits for the open
/// connections to finish (as `axum::serve(..).with_graceful_shutdown(..)` does). A request
/// head not received in full within `header_timeout` closes its connection, an idle
/// keep-alive connection included. `listener` is a TCP listener or a TLS one.
pub async fn serve<L: Listener<Addr = SocketAddr>>(
    mut listener: L,
    router: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder.http2().enable_connect_protocol();
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer): (_, SocketAddr) = tokio::select! {
            accepted = Listener::accept(&mut listener) => accepted,
            () = &mut shutdown => break,
        };
        let service =
            router
                .clone()
                .map_request(move |mut request: http::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request.map(axum::body::Body::new)
                });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::trace!(%peer, %error, "edge connection ended");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
