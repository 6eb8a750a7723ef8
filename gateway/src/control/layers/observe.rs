//! Counts and times every `SocketControl` call by method and gRPC status code
//! (`sockgate_control_requests_total`, `sockgate_control_duration_seconds`) and logs the
//! refused ones, whichever layer or handler refused them.

use std::{
    task::{Context, Poll},
    time::Instant,
};

use tonic::{Code, Status};
use tower::Service;
use tracing::{debug, info};

use super::{GrpcRequest, GrpcResponse, LayerFuture};
use crate::{
    control::methods::{Rpc, classify},
    metrics::METRICS,
};

/// The metrics layer's service.
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
}

impl<S> Observe<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S> Service<GrpcRequest> for Observe<S>
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
        let Rpc::Control(method) = classify(request.uri().path()) else {
            return Box::pin(self.inner.call(request));
        };
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            // A refusal is a trailers-only response: its status is in the headers. A
            // response without one is a success whose status follows in the trailers.
            match Status::from_header_map(response.headers()) {
                Some(status) if status.code() != Code::Ok => {
                    info!(code = ?status.code(), message = status.message(), "control call refused");
                    METRICS.control(method.name, status.code(), started.elapsed());
                }
                _ => {
                    debug!("ok");
                    METRICS.control(method.name, Code::Ok, started.elapsed());
                }
            }
            Ok(response)
        })
    }
}
