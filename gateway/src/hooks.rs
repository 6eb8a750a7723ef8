//! The client of the backend's `SocketHooks` service: a deadline on every call, counters
//! per hook and outcome, and for each hook its own lazily connected HTTP/2 channel (calls
//! are multiplexed and the connection reused) and its own concurrency budget, so that a
//! flood of one hook (clients spamming `join` toward a slow `AuthorizeJoin`) never holds
//! back another (`Authenticate` of fresh sockets), neither in our budget nor in the
//! backend's limit of concurrent streams per connection. Callers fail closed on any error.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sockgate_proto::{
    AuthenticateRequest, AuthenticateResponse, AuthorizeJoinRequest, OnEventRequest,
    socket_hooks_client::SocketHooksClient,
};
use tokio::{sync::Semaphore, time::Instant};
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, warn};

use crate::{
    config::{ClientTlsConfig, HooksConfig},
    metrics::METRICS,
};

/// Why the hooks client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum HookSetupError {
    /// `hooks.endpoint` is not a valid URI.
    #[error("hooks.endpoint {endpoint:?}: {error}")]
    Endpoint {
        /// What was configured.
        endpoint: String,
        /// Why.
        error: tonic::transport::Error,
    },
    /// A file of `hooks.tls` cannot be read.
    #[error("hooks.tls.{key} {}: {error}", .path.display())]
    TlsFile {
        /// The setting (`ca_file`, `cert_file`, `key_file`).
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The TLS settings are refused.
    #[error("hooks.tls: {0}")]
    Tls(tonic::transport::Error),
}

/// The TLS of the hooks channel: the configured CA (else the system's roots) and the
/// client certificate for mutual TLS.
fn client_tls(
    config: &ClientTlsConfig,
) -> Result<tonic::transport::ClientTlsConfig, HookSetupError> {
    let read = |key: &'static str, path: &Path| {
        std::fs::read(path).map_err(|error| HookSetupError::TlsFile {
            key,
            path: path.to_owned(),
            error,
        })
    };
    let mut tls = tonic::transport::ClientTlsConfig::new();
    tls = match &config.ca_file {
        Some(ca) => tls.ca_certificate(tonic::transport::Certificate::from_pem(read(
            "ca_file", ca,
        )?)),
        None => tls.with_native_roots(),
    };
    if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
        tls = tls.identity(tonic::transport::Identity::from_pem(
            read("cert_file", cert)?,
            read("key_file", key)?,
        ));
    }
    if let Some(name) = &config.domain_name {
        tls = tls.domain_name(name);
    }
    Ok(tls)
}

/// The three hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `Authenticate`.
    Authenticate,
    /// `AuthorizeJoin`.
    AuthorizeJoin,
    /// `OnEvent`.
    OnEvent,
}

impl Hook {
    const ALL: [Hook; 3] = [Hook::Authenticate, Hook::AuthorizeJoin, Hook::OnEvent];

    fn index(self) -> usize {
        self as usize
    }

    /// The RPC name.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Authenticate => "Authenticate",
            Hook::AuthorizeJoin => "AuthorizeJoin",
            Hook::OnEvent => "OnEvent",
        }
    }
}

/// How a hook call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The backend answered yes (or answered, for `OnEvent`).
    Success,
    /// The backend answered no (denied authentication, rejected every room).
    Denied,
    /// The call failed: the backend returned an error or could not be reached.
    Error,
    /// No answer within `hooks.timeout`.
    Timeout,
}

impl CallOutcome {
    /// Label value.
    pub fn name(self) -> &'static str {
        match self {
            CallOutcome::Success => "success",
            CallOutcome::Denied => "denied",
            CallOutcome::Error => "error",
            CallOutcome::Timeout => "timeout",
        }
    }
}

/// Why a hook call gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The deadline passed (waiting for a slot or for the answer).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The backend returned an error status or could not be reached.
    #[error("{}: {}", .0.code(), .0.message())]
    Failed(tonic::Status),
}

/// One hook's connection and budget.
struct Lane {
    client: SocketHooksClient<Channel>,
    slots: Arc<Semaphore>,
    saturated: AtomicBool,
}

/// The hooks client.
pub struct Hooks {
    lanes: [Lane; 3],
    timeout: Duration,
    max_concurrency: usize,
    /// Whether `AuthorizeJoin` is consulted.
    pub authorize_join: bool,
    /// Whether client events go to `OnEvent`.
    pub on_event: bool,
    /// Most `OnEvent` calls in flight per socket.
    pub max_pending_per_socket: u32,
    events: Vec<String>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("timeout", &self.timeout)
            .field("max_concurrency", &self.max_concurrency)
            .finish_non_exhaustive()
    }
}

impl Hooks {
    /// The client for `config.endpoint`; `None` when no endpoint is configured. The
    /// connection is made on first use and re-established by the channel when it drops.
    pub fn from_config(config: &HooksConfig) -> Result<Option<Arc<Hooks>>, HookSetupError> {
        if config.endpoint.is_empty() {
            return Ok(None);
        }
        let mut endpoint = Endpoint::from_shared(config.endpoint.clone()).map_err(|error| {
            HookSetupError::Endpoint {
                endpoint: config.endpoint.clone(),
                error,
            }
        })?;
        if config.endpoint.starts_with("https://") {
            endpoint = endpoint
                .tls_config(client_tls(&config.tls)?)
                .map_err(HookSetupError::Tls)?;
        }
        let endpoint = endpoint
            .connect_timeout(config.timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        let lane = |_: Hook| Lane {
            client: SocketHooksClient::new(endpoint.connect_lazy()),
            slots: Arc::new(Semaphore::new(config.max_concurrency)),
            saturated: AtomicBool::new(false),
        };
        Ok(Some(Arc::new(Hooks {
            lanes: Hook::ALL.map(lane),
            timeout: config.timeout,
            max_concurrency: config.max_concurrency,
            authorize_join: config.authorize_join,
            on_event: config.on_event,
            max_pending_per_socket: config.max_pending_per_socket,
            events: config.events.clone(),
        })))
    }

    /// Whether client event `event` is forwarded to `OnEvent`.
    pub fn forwards(&self, event: &str) -> bool {
        self.on_event
            && self
                .events
                .iter()
                .any(|p| crate::rooms::pattern_matches(p, event, None))
    }

    /// Runs one call under the deadline and the hook's concurrency bound, and counts it:
    /// `classify` tells a success from a denial.
    async fn call<T, F, Fut>(
        &self,
        hook: Hook,
        call: F,
        classify: impl FnOnce(&T) -> CallOutcome,
    ) -> Result<T, HookError>
    where
        F: FnOnce(SocketHooksClient<Channel>, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let record =
            |outcome: CallOutcome| METRICS.hook(hook.name(), outcome.name(), started.elapsed());
        let lane = &self.lanes[hook.index()];
        let result = tokio::time::timeout_at(deadline, async {
            let _slot = match lane.slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    lane.saturated.store(false, Ordering::Relaxed);
                    slot
                }
                Err(_) => {
                    if !lane.saturated.swap(true, Ordering::Relaxed) {
                        warn!(
                            max_concurrency = self.max_concurrency,
                            hook = hook.name(),
                            "hook endpoint saturated: calls of this hook wait for a free slot within their deadline (hooks.max_concurrency, per hook)"
                        );
                    }
                    lane.slots
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("the semaphore is never closed")
                }
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            call(lane.client.clone(), remaining).await
        })
        .await;
        // The backend (or tonic) may answer the grpc-timeout it was sent before our own
        // timer fires: an error status at the deadline is a timeout too.
        let at_deadline = |status: &tonic::Status| {
            status.code() == tonic::Code::DeadlineExceeded
                || Instant::now() + Duration::from_millis(20) >= deadline
        };
        match result {
            Ok(Ok(response)) => {
                let response = response.into_inner();
                record(classify(&response));
                Ok(response)
            }
            Ok(Err(status)) if !at_deadline(&status) => {
                record(CallOutcome::Error);
                warn!(hook = hook.name(), code = ?status.code(), message = status.message(), "hook failed");
                Err(HookError::Failed(status))
            }
            Ok(Err(_)) | Err(_) => {
                record(CallOutcome::Timeout);
                warn!(hook = hook.name(), timeout = ?self.timeout, "hook timed out");
                Err(HookError::Timeout(self.timeout))
            }
        }
    }

    /// `Authenticate`.
    pub async fn authenticate(
        &self,
        request: AuthenticateRequest,
    ) -> Result<AuthenticateResponse, HookError> {
        self.call(
            Hook::Authenticate,
            |mut client, remaining| {
                let mut request = tonic::Request::new(request);
                request.set_timeout(remaining);
                async move { client.authenticate(request).await }
            },
            |response| {
                if response.allow {
                    CallOutcome::Success
                } else {
                    CallOutcome::Denied
                }
            },
        )
        .await
    }

    /// `AuthorizeJoin`: the allowed subset of `request.rooms` (anything else the backend
    /// returns is ignored).
    pub async fn authorize_join(
        &self,
        request: AuthorizeJoinRequest,
    ) -> Result<Vec<String>, HookError> {
        let asked = request.rooms.clone();
        let response = self
            .call(
                Hook::AuthorizeJoin,
                |mut client, remaining| {
                    let mut request = tonic::Request::new(request);
                    request.set_timeout(remaining);
                    async move { client.authorize_join(request).await }
                },
                |response| {
                    if response.allowed_rooms.is_empty() {
                        CallOutcome::Denied
                    } else {
                        CallOutcome::Success
                    }
                },
            )
            .await?;
        Ok(asked
            .into_iter()
            .filter(|room| response.allowed_rooms.contains(room))
            .collect())
    }

    /// `OnEvent`: the ack JSON the backend returned, if any.
    pub async fn on_event(&self, request: OnEventRequest) -> Result<Option<String>, HookError> {
        let event = request.event.clone();
        let response = self
            .call(
                Hook::OnEvent,
                |mut client, remaining| {
                    let mut request = tonic::Request::new(request);
                    request.set_timeout(remaining);
                    async move { client.on_event(request).await }
                },
                |_| CallOutcome::Success,
            )
            .await?;
        debug!(%event, has_ack = response.ack_json.is_some(), "OnEvent answered");
        Ok(response.ack_json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_errors_name_the_setting() {
        let config = |endpoint: &str, ca_file: &str| HooksConfig {
            endpoint: endpoint.into(),
            tls: ClientTlsConfig {
                ca_file: Some(ca_file.into()),
                ..ClientTlsConfig::default()
            },
            ..HooksConfig::default()
        };
        let error = |config: HooksConfig| Hooks::from_config(&config).unwrap_err().to_string();
        assert!(
            error(config("https://backend:50051", "/no/such/ca.pem"))
                .starts_with("hooks.tls.ca_file /no/such/ca.pem: "),
        );
        assert!(
            error(config("http://bad host", ""))
                .starts_with(r#"hooks.endpoint "http://bad host": "#)
        );
    }
}
