//! Cross-cutting concerns of the control port as tower layers around every gRPC service
//! on it, outermost first:
//!
//! 1. [`trace`]: a span per call with the method, a request id and the caller's subject.
//! 2. [`observe`]: counts and times `SocketControl` calls by status code, logs refusals.
//! 3. [`caller_auth`]: bearer-token authentication and the scope each method needs.
//! 4. [`shed`]: at most `control.max_concurrent_calls` calls in progress; more are refused.
//! 5. [`deadline`]: a server-side maximum duration per call.
//!
//! Handlers only do their work and return a `ControlError`.

pub mod caller_auth;
pub mod deadline;
pub mod observe;
pub mod shed;
pub mod trace;

use std::{pin::Pin, sync::Arc, time::Duration};

use tower::Layer;

use crate::{auth::CallerVerifier, config::ReflectionAccess};

/// A request on the control port.
pub type GrpcRequest = http::Request<tonic::body::Body>;
/// A response on the control port.
pub type GrpcResponse = http::Response<tonic::body::Body>;
/// The future of a layer.
pub type LayerFuture<E> = Pin<Box<dyn Future<Output = Result<GrpcResponse, E>> + Send>>;

/// What the layers are configured with.
#[derive(Clone)]
pub struct LayerSettings {
    /// Verifies callers; `None`: control authentication is off.
    pub verifier: Option<Arc<CallerVerifier>>,
    /// Whether reflection needs a token.
    pub reflection: ReflectionAccess,
    /// Most `SocketControl` calls in progress.
    pub max_concurrent_calls: usize,
    /// Longest a call may run.
    pub request_timeout: Duration,
}

/// Every layer of the control port, in order.
#[derive(Clone)]
pub struct ControlLayers {
    settings: LayerSettings,
    slots: shed::Slots,
}

impl ControlLayers {
    /// The layers of `settings`.
    pub fn new(settings: LayerSettings) -> Self {
        let slots = shed::Slots::new(settings.max_concurrent_calls);
        Self { settings, slots }
    }
}

/// The service [`ControlLayers`] wraps around `S`.
pub type Layered<S> =
    trace::Trace<observe::Observe<caller_auth::CallerAuth<shed::Shed<deadline::Deadline<S>>>>>;

impl<S> Layer<S> for ControlLayers {
    type Service = Layered<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let s = &self.settings;
        let inner = deadline::Deadline::new(inner, s.request_timeout);
        let inner = shed::Shed::new(inner, self.slots.clone());
        let inner = caller_auth::CallerAuth::new(inner, s.verifier.clone(), s.reflection);
        trace::Trace::new(observe::Observe::new(inner))
    }
}

/// A response that ends the call with `status` (trailers-only).
pub fn refuse(status: tonic::Status) -> GrpcResponse {
    status.into_http()
}
