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
