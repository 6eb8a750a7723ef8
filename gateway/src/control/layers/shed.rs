//! Load shedding: at most `control.max_concurrent_calls` `SocketControl` calls in progress;
//! one more is refused at once with `RESOURCE_EXHAUSTED` and counted
//! (`sockgate_control_shed_total`) rather than queued. Health and reflection are not
//! limited.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use tokio::sync::Semaphore;
use tonic::Status;
use tower::Service;
use tracing::warn;

use super::{GrpcRequest, GrpcResponse, LayerFuture, refuse};
use crate::{
    control::methods::{Rpc, classify},
    metrics::METRICS,
};

/// The call slots shared by every connection.
#[derive(Clone)]
pub struct Slots {
    semaphore: Arc<Semaphore>,
    max: usize,
    saturated: Arc<AtomicBool>,
}

impl Slots {
    /// `max` slots.
    pub fn new(max: usize) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(max)),
            max,
            saturated: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// The load-shedding layer's service.
#[derive(Clone)]
pub struct Shed<S> {
    inner: S,
    slots: Slots,
}

impl<S> Shed<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, slots: Slots) -> Self {
        Self { inner, slots }
    }
}

impl<S> Service<GrpcRequest> for Shed<S>
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
        if !matches!(classify(request.uri().path()), Rpc::Control(_)) {
            return Box::pin(self.inner.call(request));
        }
        match self.slots.semaphore.clone().try_acquire_owned() {
            Ok(slot) => {
                self.slots.saturated.store(false, Ordering::Relaxed);
                let future = self.inner.call(request);
                Box::pin(async move {
                    let response = future.await;
                    drop(slot);
                    response
                })
            }
            Err(_) => {
                METRICS.control_shed.inc();
                if !self.slots.saturated.swap(true, Ordering::Relaxed) {
                    warn!(
                        max_concurrent_calls = self.slots.max,
                        "control plane saturated: refusing calls (control.max_concurrent_calls)"
                    );
                }
                let status = Status::resource_exhausted(format!(
                    "the control plane is at its limit of {} calls in progress \
                     (control.max_concurrent_calls); retry later with backoff",
                    self.slots.max
                ));
                Box::pin(std::future::ready(Ok(refuse(status))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tokio::sync::oneshot;
    use tonic::{Code, body::Body};

    use super::*;

    fn request(path: &str) -> GrpcRequest {
        http::Request::builder()
            .uri(path)
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn calls_past_the_limit_are_refused_and_slots_come_back() {
        let (release, released) = oneshot::channel::<()>();
        let released = std::sync::Mutex::new(Some(released));
        let service = tower::service_fn(move |_: GrpcRequest| {
            let wait = released.lock().unwrap().take();
            async move {
                if let Some(wait) = wait {
                    let _ = wait.await;
                }
                Ok::<_, Infallible>(GrpcResponse::new(Body::empty()))
            }
        });
        let mut shed = Shed::new(service, Slots::new(1));
        let before = METRICS.control_shed.get();
        let first = shed.call(request("/sockgate.v1.SocketControl/Send"));
        let refused = shed
            .call(request("/sockgate.v1.SocketControl/GetInfo"))
            .await
            .unwrap();
        let status = Status::from_header_map(refused.headers()).expect("a status");
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("control.max_concurrent_calls"));
        assert!(METRICS.control_shed.get() > before);
        // Health is never shed.
        let health = shed
            .call(request("/grpc.health.v1.Health/Check"))
            .await
            .unwrap();
        assert!(Status::from_header_map(health.headers()).is_none());

        release.send(()).unwrap();
        first.await.unwrap();
        let again = shed
            .call(request("/sockgate.v1.SocketControl/GetInfo"))
            .await
            .unwrap();
        assert!(Status::from_header_map(again.headers()).is_none());
    }
}
