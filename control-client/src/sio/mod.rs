//! A managed Socket.IO client for Rust services that connect to the sockgate edge
//! (service-to-service relays, tests, load tools), with the behaviour of the Ignis
//! `SocketIOClientHelper`:
//!
//! - lifecycle callbacks: connected, disconnected (with the reason), error, authenticated,
//!   unauthenticated (with the gateway's message);
//! - [`ManagedClient::authenticate`] emits `authenticate` only when connected and
//!   [`ClientState::Unauthorized`]; otherwise it logs a warning and does nothing. The state
//!   goes `Unauthorized → Authenticating → Authenticated`, and back to `Unauthorized` on a
//!   denial or a disconnection;
//! - [`ManagedClient::subscribe`] ignores a second handler for an event unless asked not to
//!   ([`ManagedClient::subscribe_with`]); handlers that fail or panic are logged and never
//!   stop the client;
//! - [`ManagedClient::emit`] fails when not connected or for an empty topic;
//! - [`ManagedClient::join_rooms`] / [`ManagedClient::leave_rooms`] ask the gateway (a
//!   warning and nothing else when disconnected);
//! - [`ManagedClient::shutdown`] disconnects (the disconnected callback runs), then removes
//!   the handlers and callbacks and resets the state.
//!
//! The protocol is Engine.IO v4 / Socket.IO v5 over a WebSocket (no polling), `ws://` or
//! `wss://` ([`ClientOptions::tls`]), main namespace only. Binary arguments are received ([`Event::attachments`], placeholders in
//! [`Event::args`]; the binary parts of an ack reply are dropped) but not sent. The client answers
//! the server's heartbeat and treats a missing one (ping interval + ping timeout) as
//! `ping timeout`.
//!
//! # Reconnection
//!
//! Like socket.io-client: after a lost connection (`transport close`, `transport error`,
//! `ping timeout`) the client reconnects with a growing delay (1 s doubling up to 5 s, see
//! [`Reconnect`]), and starts again `Unauthorized` (call `authenticate` again from the
//! connected callback). It does not reconnect after `io server disconnect` (the gateway
//! disconnected it: refused authentication, auth timeout, `Disconnect` RPC), after
//! `io client disconnect` (its own `disconnect`), or when the gateway refused the
//! connection (`connect_error`).
//!
//! # Connection state recovery
//!
//! Like socket.io-client 4.8, with nothing to turn on in the client: when the gateway has
//! `recovery.enabled`, its CONNECT reply carries a private session id, the client keeps the
//! offset that ends each replayable event, and a reconnection presents both in the CONNECT
//! `auth`. A session restored in time comes back as the same socket id, with its rooms and
//! its identity at the gateway, and the events sent meanwhile are received first, once each
//! and in order; [`ManagedClient::recovered`] (and [`Status::recovered`]) say whether the
//! last connection did. The state still starts `Unauthorized`: `authenticate` from the
//! connected callback is answered `authenticated` at once for a recovered session. The
//! offset stays the last argument of the event ([`Event::args`]), as in socket.io-client;
//! [`Event::data`] is the first. `disconnect` keeps the session to present (the gateway does
//! not restore a socket its client closed), `shutdown` forgets it.
//!
//! # Example
//!
//! ```no_run
//! use serde_json::json;
//! use sockgate_client::sio::{ClientOptions, Event, Handler, ManagedClient};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = ManagedClient::builder(ClientOptions::new("http://127.0.0.1:3000").token("eyJ…"))
//!     .on_unauthenticated(|message| eprintln!("refused: {message}"))
//!     .build();
//! let authenticator = client.clone();
//! client.set_on_connected(move || {
//!     authenticator.authenticate();
//! });
//! client.subscribe(
//!     "notification",
//!     Handler::new(|event: Event| async move {
//!         println!("{}", event.data());
//!         Ok::<_, std::convert::Infallible>(())
//!     }),
//! );
//! client.connect().await;
//! client.wait_for_state(sockgate_client::sio::ClientState::Authenticated, std::time::Duration::from_secs(5)).await;
//! client.emit("chat", &json!({"text": "hi"}))?;
//! client.shutdown().await;
//! # Ok(()) }
//! ```

mod client;
mod connection;
mod options;
mod packet;
mod recovery;
mod sync;
mod tls;

pub use client::{
    ClientError, ClientState, DisconnectReason, EmitError, Event, Handler, HandlerId,
    ManagedClient, ManagedClientBuilder, Status,
};
pub use options::{ClientOptions, Reconnect};
