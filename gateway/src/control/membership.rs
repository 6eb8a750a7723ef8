//! `Join`, `Leave` and `Disconnect`: server-side, trusted actions on target sockets.

use socketioxide::{BroadcastError, SocketIo, adapter::Adapter};
use sockgate_proto::{
    DisconnectRequest, DisconnectResponse, EventKind, JoinRequest, JoinResponse, LeaveRequest,
    LeaveResponse, Target,
};
use tracing::{info, warn};

use super::{
    ControlContext,
    error::ControlError,
    target::{self, Audience},
};
use crate::{
    cluster::messages::{Membership, Query},
    edge::protocol,
    rooms,
};

const MAX_ROOMS: usize = 1000;
const MAX_REASON_LEN: usize = 1024;

fn check_rooms(requested: &[String]) -> Result<Vec<String>, ControlError> {
    if requested.is_empty() {
        return Err(ControlError::invalid("rooms is empty"));
    }
    if requested.len() > MAX_ROOMS {
        return Err(ControlError::invalid(format!(
            "rooms names {} rooms; the limit is {MAX_ROOMS}",
            requested.len()
        )));
    }
    for room in requested {
        rooms::check_name(room).map_err(|e| ControlError::invalid(format!("rooms: {e}")))?;
    }
    Ok(requested.to_vec())
}

/// Applies a join (`EventKind::Joined`) or a leave (`EventKind::Left`) of `rooms` to the
/// target: every node applies it to its own sockets, through each socket's state machine
/// (the rooms become the server's: a client can no longer leave them), and reports it to
/// the watchers. One question to every node; returns once each has applied it. A node that
/// does not answer in time may not have applied it: `DEADLINE_EXCEEDED`, and the call can
/// be repeated (joining and leaving are idempotent).
async fn change<A: Adapter>(
    ctx: &ControlContext<A>,
    target: Option<&Target>,
    rooms: &[String],
    kind: EventKind,
) -> Result<(), ControlError> {
    let rooms = check_rooms(rooms)?;
    let target = target::check(&ctx.io, &ctx.cluster, target, "target", Audience::Any).await?;
    let change = Membership {
        kind: kind as i32,
        target: Some(target.clone()),
        rooms,
    };
    let answers = ctx.cluster.ask(Query::Membership(change)).await?;
    if answers.missing > 0 {
        return Err(ControlError::DeadlineExceeded(format!(
            "{} node(s) did not confirm the change within cluster.request_timeout; their \
             sockets may not have it yet (retry: the call is idempotent)",
            answers.missing
        )));
    }
    Ok(())
}

/// Returns once every node has applied the disconnects this node sent before. socketioxide's adapter sends them without waiting for the other nodes; a
/// fetch of a room nobody is in travels on the same channel after them, and each node
/// answers it only once it has handled what came before.
async fn applied_everywhere<A: Adapter>(io: &SocketIo<A>) -> Result<(), ControlError> {
    io.to(rooms::BARRIER)
        .fetch_sockets()
        .await
        .map_err(ControlError::adapter)?;
    Ok(())
}

/// Handles `Join`.
pub async fn join<A: Adapter>(
    ctx: &ControlContext<A>,
    request: JoinRequest,
) -> Result<JoinResponse, ControlError> {
    change(
        ctx,
        request.target.as_ref(),
        &request.rooms,
        EventKind::Joined,
    )
    .await?;
    Ok(JoinResponse {})
}

/// Handles `Leave`.
pub async fn leave<A: Adapter>(
    ctx: &ControlContext<A>,
    request: LeaveRequest,
) -> Result<LeaveResponse, ControlError> {
    change(
        ctx,
        request.target.as_ref(),
        &request.rooms,
        EventKind::Left,
    )
    .await?;
    Ok(LeaveResponse {})
}

/// Handles `Disconnect`: `force_disconnect {reason, time}`, then the disconnect, both in
/// order on each socket's channel.
pub async fn disconnect<A: Adapter>(
    ctx: &ControlContext<A>,
    request: DisconnectRequest,
) -> Result<DisconnectResponse, ControlError> {
    if request.reason.len() > MAX_REASON_LEN {
        return Err(ControlError::invalid(format!(
            "reason is longer than {MAX_REASON_LEN} bytes"
        )));
    }
    let reason = if request.reason.is_empty() {
        "disconnected by the server"
    } else {
        request.reason.as_str()
    };
    let operators = target::resolve(
        &ctx.io,
        &ctx.cluster,
        request.target.as_ref(),
        "target",
        Audience::Any,
    )
    .await?;
    match operators
        .clone()
        .emit(
            protocol::FORCE_DISCONNECT,
            &protocol::ForceDisconnect::now(reason),
        )
        .await
    {
        Ok(()) | Err(BroadcastError::Socket(_)) => {}
        Err(other) => return Err(other.into()),
    }
    if let Err(e) = operators.disconnect().await {
        match e {
            BroadcastError::Socket(errors) => {
                warn!(failed = errors.len(), "some sockets were already closing")
            }
            other => return Err(other.into()),
        }
    }
    applied_everywhere(&ctx.io).await?;
    info!(reason, "disconnect requested");
    Ok(DisconnectResponse {})
}
