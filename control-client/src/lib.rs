//! Client library for sockgate's `SocketControl` gRPC API.
//!
//! - [`proto`]: the types and stubs generated from `proto/sockgate/v1` (clients and
//!   servers, for `SocketControl` and `SocketHooks`).
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, for gRPC server reflection.
//! - [`connect`]: a `SocketControl` client for an `http://host:port` endpoint.

/// Generated protobuf messages and gRPC stubs of package `sockgate.v1`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("sockgate.v1");
}

/// The encoded `FileDescriptorSet` of every sockgate proto file.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sockgate_descriptor.bin"));

pub use proto::socket_control_client::SocketControlClient;

/// Connects a `SocketControl` client to `endpoint` (for example `http://127.0.0.1:50051`).
pub async fn connect(
    endpoint: impl Into<String>,
) -> Result<SocketControlClient<tonic::transport::Channel>, tonic::transport::Error> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.into())?
        .connect()
        .await?;
    Ok(SocketControlClient::new(channel))
}
