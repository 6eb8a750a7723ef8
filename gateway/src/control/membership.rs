//! `Join`, `Leave` and `Disconnect`: server-side, trusted actions on target sockets.

use socketioxide::{BroadcastError, SocketIo, adapter::Adapter, extract::SocketRef};
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
    cluster::messages::{Announce, Query},
    edge::{self, protocol},
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
/// target through the adapter (every node), and returns once every node applied it. Then
/// each node is told which of its sockets changed (`Announce`): it makes the rooms the
/// server's (a client can no longer leave them), undoes a join that reached a socket
/// while it disconnected, and reports the change to the watchers with the socket's user
/// id and rooms. The announcement costs a listing of the target's ids (one round trip)
/// and one question to every node; a node that cannot be asked misses it (logged), the
/// change itself stands.
async fn change<A: Adapter>(
    ctx: &ControlContext<A>,
    target: Option<&Target>,
    rooms: &[String],
    kind: EventKind,
) -> Result<(), ControlError> {
    let rooms = check_rooms(rooms)?;
    let operators = target::resolve(&ctx.io, &ctx.cluster, target, "target", Audience::Any).await?;
    // The target's sockets on this node: from now on these rooms are the server's (or
    // gone), so their clients cannot leave them.
    let local: Vec<SocketRef<A>> = operators.clone().sockets();
    for socket in &local {
        edge::forget_client_rooms(socket, &rooms);
    }
    let targeted: Vec<String> = operators
        .clone()
        .fetch_sockets()
        .await
        .map_err(ControlError::adapter)?
        .iter()
        .map(|s| s.data().id.to_string())
        .collect();
    let applied = if kind == EventKind::Joined {
        operators.join(rooms.clone()).await
    } else {
        operators.leave(rooms.clone()).await
    };
    applied.map_err(ControlError::adapter)?;
    applied_everywhere(&ctx.io).await?;
    if kind == EventKind::Joined {
        // A socket of this node that disconnected meanwhile may have been removed from
        // every room before this join reached it: undo it (see edge::join_while_connected).
        for socket in local.iter().filter(|s| !s.connected()) {
            socket.leave(rooms.clone());
        }
    }
    if targeted.is_empty() {
        return Ok(());
    }
    let announce = Announce {
        kind: kind as i32,
        socket_ids: targeted,
        rooms,
    };
    if let Err(e) = ctx.cluster.ask(Query::Announce(announce)).await {
        warn!("room change applied, but not announced to every node: {e}");
    }
    Ok(())
}

/// Returns once every node has applied the room changes and disconnects this node sent
/// before. socketioxide's adapter sends them without waiting for the other nodes; a
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
