//! The `SocketControl` gRPC service: one file per group of RPCs, each validating its
//! request first and mapping failures to precise statuses through [`ControlError`].
//! Authentication, metrics, deadlines, load shedding and tracing are tower layers around
//! it ([`layers`]), driven by the method table ([`methods`]).

mod away;
mod batch;
mod error;
pub mod layers;
mod local;
mod membership;
pub mod methods;
mod query;
mod send;
mod target;

use std::{
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::Stream;
use socketioxide::{SocketIo, adapter::Adapter};
use sockgate_proto::{self as pb, socket_control_server::SocketControl};
use tonic::{Request, Response, Status};
use tracing::info;

pub use error::ControlError;
pub use local::LocalSockets;

use crate::{
    auth::Caller,
    cluster::Cluster,
    config::Parser,
    events::{EventBus, WatchError},
};

/// Limits applied to control requests.
#[derive(Debug, Clone)]
pub struct ControlLimits {
    /// Largest payload of a `Send`.
    pub max_payload_bytes: usize,
    /// Longest ack timeout.
    pub max_ack_timeout: Duration,
    /// Most bytes of ack replies one `Send` collects.
    pub max_ack_reply_bytes: usize,
    /// Most commands in one `Batch`.
    pub max_batch_commands: usize,
    /// Largest encoded `Batch` request.
    pub max_batch_bytes: usize,
}

/// What the handlers share.
pub struct ControlContext<A: Adapter> {
    /// The Socket.IO server.
    pub io: SocketIo<A>,
    /// This node's view of the cluster (node id, other nodes, event relay).
    pub cluster: Arc<Cluster>,
    /// When the node started.
    pub started: Instant,
    /// Request limits.
    pub limits: ControlLimits,
    /// The edge's packet encoding (`edge.parser`), which a `Send`'s data is written for.
    pub parser: Parser,
    /// Lifecycle and client events of this node.
    pub events: Arc<EventBus>,
}

/// The `SocketControl` implementation.
pub struct ControlService<A: Adapter> {
    ctx: Arc<ControlContext<A>>,
}

impl<A: Adapter> Clone for ControlService<A> {
    fn clone(&self) -> Self {
        Self {
            ctx: self.ctx.clone(),
        }
    }
}

impl<A: Adapter> ControlService<A> {
    /// A service over `ctx`.
    pub fn new(ctx: ControlContext<A>) -> Self {
        Self { ctx: Arc::new(ctx) }
    }
}

/// The reply of a handler: its value, or its error as a status.
async fn reply<T>(
    call: impl Future<Output = Result<T, ControlError>>,
) -> Result<Response<T>, Status> {
    call.await.map(Response::new).map_err(Status::from)
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<A: Adapter> SocketControl for ControlService<A> {
    async fn send(
        &self,
        request: Request<pb::SendRequest>,
    ) -> Result<Response<pb::SendResponse>, Status> {
        let ctx = &self.ctx;
        reply(send::send(
            &ctx.io,
            &ctx.cluster,
            &ctx.limits,
            ctx.parser,
            request.into_inner(),
        ))
        .await
    }

    async fn join(
        &self,
        request: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinResponse>, Status> {
        reply(membership::join(&self.ctx, request.into_inner())).await
    }

    async fn leave(
        &self,
        request: Request<pb::LeaveRequest>,
    ) -> Result<Response<pb::LeaveResponse>, Status> {
        reply(membership::leave(&self.ctx, request.into_inner())).await
    }

    async fn list_sockets(
        &self,
        request: Request<pb::ListSocketsRequest>,
    ) -> Result<Response<pb::ListSocketsResponse>, Status> {
        reply(query::list_sockets(&self.ctx, request.into_inner())).await
    }

    async fn get_socket(
        &self,
        request: Request<pb::GetSocketRequest>,
    ) -> Result<Response<pb::GetSocketResponse>, Status> {
        reply(query::get_socket(&self.ctx, request.into_inner())).await
    }

    async fn list_rooms(
        &self,
        request: Request<pb::ListRoomsRequest>,
    ) -> Result<Response<pb::ListRoomsResponse>, Status> {
        reply(query::list_rooms(&self.ctx, request.into_inner())).await
    }

    async fn get_info(
        &self,
        _request: Request<pb::GetInfoRequest>,
    ) -> Result<Response<pb::GetInfoResponse>, Status> {
        reply(query::get_info(&self.ctx)).await
    }

    async fn disconnect(
        &self,
        request: Request<pb::DisconnectRequest>,
    ) -> Result<Response<pb::DisconnectResponse>, Status> {
        reply(membership::disconnect(&self.ctx, request.into_inner())).await
    }

    async fn batch(
        &self,
        request: Request<pb::BatchRequest>,
    ) -> Result<Response<pb::BatchResponse>, Status> {
        let caller = request.extensions().get::<Caller>().cloned();
        reply(batch::batch(
            &self.ctx,
            caller.as_ref(),
            request.into_inner(),
        ))
        .await
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let ctx = &self.ctx;
        reply(async move {
            let stream = ctx
                .events
                .subscribe(request.into_inner())
                .map_err(|e| match e {
                    WatchError::TooMany(_) => ControlError::Exhausted(e.to_string()),
                    WatchError::UnknownKind(_) => ControlError::InvalidArgument(e.to_string()),
                })?;
            // Confirmed once every node relays its events here.
            ctx.cluster.watch_started().await?;
            info!("watcher connected");
            Ok(Box::pin(stream) as EventStream)
        })
        .await
    }
}
