//! sockgate: a Socket.IO edge (socketioxide on axum) driven by a typed gRPC control plane
//! (`SocketControl`, tonic).
//!
//! - [`config`]: settings, defaults, loading from file, environment and flags.
//! - [`edge`]: the Socket.IO side: authentication flow, client rooms, application ping.
//! - [`control`]: the `SocketControl` service.
//! - [`auth`]: authenticators (JWT, hook, development) and the room validator.
//! - [`hooks`]: the client of the backend's `SocketHooks` (deadlines, concurrency, counts).
//! - [`events`]: the bus behind `WatchEvents`.
//! - [`cluster`]: the adapter choice, node registry, per-node queries, event relay.
//! - [`rooms`]: room naming, including the internal rooms that carry socket state.
//! - [`metrics`] and [`admin`]: Prometheus metrics, liveness and readiness; [`residue`]:
//!   gauges of what a node still holds (tasks, rooms, rooms of sockets that are gone).
//! - [`app`]: wiring, listeners and shutdown.
//! - [`tls`]: TLS and mutual TLS of the listeners, certificate reload.
//! - [`token`]: `sockgate token`, minting tokens the gateway accepts.

pub mod admin;
pub mod app;
pub mod auth;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod control;
pub mod edge;
pub mod events;
pub mod hooks;
pub mod listener;
pub mod metrics;
pub mod outgoing;
pub mod recovery;
pub mod residue;
pub mod rooms;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod token;
