//! Rust clients for sockgate.
//!
//! - [`Client`]: the `SocketControl` control plane as methods (`send_to_room`,
//!   `list_sockets`, `watch_events`, ...), with TLS, a bearer token on every call, default
//!   deadlines, retries of the read-only calls and [`Error`]s that keep the gRPC status.
//! - `sio` (feature `sio`): a managed Socket.IO client for Rust services that connect to
//!   the edge (the authenticate flow, subscriptions, emits, rooms), like the Ignis
//!   `SocketIOClientHelper`. Without the feature, no WebSocket client is compiled.
//! - [`proto`]: the `sockgate-proto` crate, the types and client stubs generated from
//!   `proto/sockgate/v1` (with the server traits too under feature `server`), and
//!   [`FILE_DESCRIPTOR_SET`] for server reflection.
//! - The `sockctl` binary: the operator command line on [`Client`].
//!
//! # Example
//!
//! ```no_run
//! use futures_util::TryStreamExt;
//! use serde_json::json;
//! use sockgate_client::{Client, SocketFilter, Target, TlsOptions, TokenSource};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder("https://sockgate.internal:50051")
//!     .tls(TlsOptions::new().ca_file("ca.pem")?)
//!     .token(TokenSource::refreshing(|| Ok(std::env::var("SOCKGATE_TOKEN").unwrap_or_default())))
//!     .connect()
//!     .await?;
//! client.send_to_user("alice", "notification", &json!({"text": "hello"})).await?;
//! let report = client
//!     .send_with_ack(Target::rooms(["chat:1"]), "poll", &json!({}), std::time::Duration::from_secs(2))
//!     .await?;
//! println!("{} acks, {} timed out", report.acks.len(), report.timed_out.len());
//! let sockets: Vec<_> = client.list_sockets(SocketFilter::default()).try_collect().await?;
//! println!("{} sockets", sockets.len());
//! # Ok(()) }
//! ```
//!
//! Runnable programs are in `control-client/examples/`.

mod client;
mod connect;
mod error;
mod retry;
#[cfg(feature = "sio")]
pub mod sio;
mod token;

pub use client::{Client, RawClient, SendOptions, SendReport, SocketFilter, WatchFilter};
pub use connect::{ClientBuilder, TlsOptions};
pub use error::{Error, ErrorKind, code_name};
pub use proto::Target;
pub use retry::RetryPolicy;
pub use token::{BearerToken, TokenSource};

/// Generated protobuf messages and gRPC stubs of package `sockgate.v1`.
pub use sockgate_proto as proto;
pub use sockgate_proto::{FILE_DESCRIPTOR_SET, codec};

pub use proto::socket_control_client::SocketControlClient;

/// Connects a bare generated `SocketControl` stub to `endpoint` (for example
/// `http://127.0.0.1:50051`); [`Client`] is the richer alternative.
pub async fn connect(
    endpoint: impl Into<String>,
) -> Result<SocketControlClient<tonic::transport::Channel>, tonic::transport::Error> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.into())?
        .connect()
        .await?;
    Ok(SocketControlClient::new(channel))
}
