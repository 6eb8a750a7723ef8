//! A server-side maximum duration for every `SocketControl` call, `control.request_timeout`,
//! whether or not the caller sets a deadline: past it the call is dropped and answered
//! `DEADLINE_EXCEEDED`. (A shorter `grpc-timeout` of the caller is enforced by tonic
//! itself.) For `WatchEvents` it bounds the setup, not the stream.

use std::{
    task::{Context, Poll},
    time::Duration,
};

use tonic::Status;
use tower::Service;

use super::{GrpcRequest, GrpcResponse, LayerFuture, refuse};
use crate::control::methods::{Rpc, classify};

/// The deadline layer's service.
#[derive(Clone)]
pub struct Deadline<S> {
    inner: S,
    limit: Duration,
}

impl<S> Deadline<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, limit: Duration) -> Self {
        Self { inner, limit }
    }
}

impl<S> Service<GrpcRequest> for Deadline<S>
where
    S: Service<GrpcRequest, Response = GrpcResponse>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
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
        let limit = self.limit;
        let future = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout(limit, future).await {
                Ok(response) => response,
                Err(_) => Ok(refuse(Status::deadline_exceeded(format!(
                    "{} did not finish within {limit:?} (control.request_timeout)",
                    method.name
                )))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tonic::{Code, body::Body};

    use super::*;

    fn request(path: &str) -> GrpcRequest {
        http::Request::builder()
            .uri(path)
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn a_call_past_the_limit_ends_with_deadline_exceeded() {
        let slow = tower::service_fn(|_: GrpcRequest| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, Infallible>(GrpcResponse::new(Body::empty()))
        });
        let mut service = Deadline::new(slow, Duration::from_millis(50));
        let response = service
            .call(request("/sockgate.v1.SocketControl/Send"))
            .await
            .unwrap();
        let status = Status::from_header_map(response.headers()).expect("a status");
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(status.message().contains("control.request_timeout"));
    }

    #[tokio::test]
    async fn a_quick_call_is_untouched() {
        let quick = tower::service_fn(|_: GrpcRequest| async {
            Ok::<_, Infallible>(GrpcResponse::new(Body::empty()))
        });
        let mut service = Deadline::new(quick, Duration::from_secs(60));
        let response = service
            .call(request("/sockgate.v1.SocketControl/GetInfo"))
            .await
            .unwrap();
        assert!(Status::from_header_map(response.headers()).is_none());
    }
}
