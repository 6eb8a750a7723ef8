//! The sockgate API, generated from `proto/sockgate/v1` (package `sockgate.v1`).
//!
//! - The messages (`SendRequest`, `Target`, `SocketInfo`, ...), always.
//! - With the `client` feature, the gRPC clients: `socket_control_client` (what
//!   backends call) and `socket_hooks_client` (what the gateway calls).
//! - With the `server` feature, the gRPC server traits: `socket_control_server` (what the
//!   gateway serves) and `socket_hooks_server` (what a backend serves).
//! - [`FILE_DESCRIPTOR_SET`], for server reflection.
//!
//! The stubs encode with [`codec::SmallBufferCodec`]. Most users want the `sockgate-client`
//! crate, which wraps the `SocketControl` client and re-exports this crate as
//! `sockgate_client::proto`.

mod batch;
pub mod codec;
mod target;

#[allow(missing_docs, clippy::all)]
mod generated {
    tonic::include_proto!("sockgate.v1");
}

pub use generated::*;

/// The encoded `FileDescriptorSet` of every sockgate proto file.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sockgate_descriptor.bin"));
