//! Caller authentication: `authorization: Bearer <jwt>` verified with the `control.auth`
//! keys, then the scope of the method ([`crate::control::methods::METHODS`]). Health is
//! always open; reflection per `control.auth.reflection`. Refusals are `UNAUTHENTICATED`
//! (no or bad token) or `PERMISSION_DENIED` (a scope is missing) and name the scope needed,
//! never the token. The caller ([`crate::auth::Caller`]) is put in the request extensions.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use tonic::Status;
use tower::Service;

use super::{GrpcRequest, GrpcResponse, LayerFuture, refuse};
use crate::{
    auth::{CallerVerifier, Scope},
    config::ReflectionAccess,
    control::methods::{Rpc, UNKNOWN_METHOD_SCOPE, classify},
};

/// What a request needs.
enum Needs {
    Nothing,
    Token,
    Scope(Scope),
}

/// The authentication layer's service.
#[derive(Clone)]
pub struct CallerAuth<S> {
    inner: S,
    verifier: Option<Arc<CallerVerifier>>,
    reflection: ReflectionAccess,
}

impl<S> CallerAuth<S> {
    /// Wraps `inner`; without a verifier every call passes.
    pub fn new(
        inner: S,
        verifier: Option<Arc<CallerVerifier>>,
        reflection: ReflectionAccess,
    ) -> Self {
        Self {
            inner,
            verifier,
            reflection,
        }
    }

    fn needs(&self, rpc: &Rpc) -> Needs {
        match rpc {
            Rpc::Health => Needs::Nothing,
            Rpc::Reflection if self.reflection == ReflectionAccess::Open => Needs::Nothing,
            Rpc::Reflection => Needs::Token,
            Rpc::Control(method) => method.scope.map_or(Needs::Token, Needs::Scope),
            Rpc::Other => Needs::Scope(UNKNOWN_METHOD_SCOPE),
        }
    }
}

impl<S> Service<GrpcRequest> for CallerAuth<S>
where
    S: Service<GrpcRequest, Response = GrpcResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = GrpcResponse;
    type Error = S::Error;
    type Future = LayerFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: GrpcRequest) -> Self::Future {
        let Some(verifier) = &self.verifier else {
            return Box::pin(self.inner.call(request));
        };
        let rpc = classify(request.uri().path());
        let what = match &rpc {
            Rpc::Control(method) => method.name,
            Rpc::Reflection => "reflection",
            _ => "this method",
        };
        let scope = match self.needs(&rpc) {
            Needs::Nothing => return Box::pin(self.inner.call(request)),
            Needs::Token => None,
            Needs::Scope(scope) => Some(scope),
        };
        let authorization = request.headers().get(http::header::AUTHORIZATION).cloned();
        let verifier = verifier.clone();
        // The verification may wait for a JWKS refresh: call the inner service afterwards
        // with the clone that was made ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let caller = match verifier
                .verify(authorization.as_ref().map(|v| v.as_bytes()))
                .await
            {
                Ok(caller) => caller,
                Err(error) => {
                    let needed = match scope {
                        Some(scope) => format!("a token with scope `{scope}`"),
                        None => "a valid token".into(),
                    };
                    return Ok(refuse(Status::unauthenticated(format!(
                        "{error}; {what} needs {needed}"
                    ))));
                }
            };
            tracing::Span::current().record("subject", caller.subject.as_str());
            if let Some(refusal) = scope.and_then(|s| caller.refusal(what, s)) {
                return Ok(refuse(Status::permission_denied(refusal)));
            }
            request.extensions_mut().insert(caller);
            inner.call(request).await
        })
    }
}
