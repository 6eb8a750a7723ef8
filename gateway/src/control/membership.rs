//! `Join`, `Leave` and `Disconnect`: server-side, trusted actions on target sockets.

use socketioxide::{BroadcastError, SocketIo, extract::SocketRef};
use sockgate_client::proto::{
    DisconnectRequest, DisconnectResponse, EventKind, JoinRequest, JoinResponse, LeaveRequest,
    LeaveResponse, Target, WatchEventsResponse,
};
use tracing::{info, warn};

use super::{
    ControlContext,
    error::ControlError,
    target::{self, Audience},
};
use crate::{
    edge::{self, authentication::socket_rooms, protocol},
    events, rooms,
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
/// target, and reports it to this node's watchers for the target's sockets on this node.
async fn change(
    ctx: &ControlContext,
    target: Option<&Target>,
    rooms: &[String],
    kind: EventKind,
) -> Result<(), ControlError> {
    let rooms = check_rooms(rooms)?;
    let operators = target::resolve(&ctx.io, target, "target", Audience::Any).await?;
    // The target's sockets on this node: from now on these rooms are the server's (or
    // gone), so their clients cannot leave them.
    let local: Vec<SocketRef> = operators.clone().sockets();
    for socket in &local {
        edge::forget_client_rooms(socket, &rooms);
    }
    let applied = if kind == EventKind::Joined {
        operators.join(rooms.clone()).await
    } else {
        operators.leave(rooms.clone()).await
    };
    applied.map_err(ControlError::adapter)?;
    if kind == EventKind::Joined {
        // A socket of this node that disconnected meanwhile may have been removed from
        // every room before this join reached it: undo it (see edge::join_while_connected).
        for socket in local.iter().filter(|s| !s.connected()) {
            socket.leave(rooms.clone());
        }
    }
    if !ctx.events.is_watched() {
        return Ok(());
    }
    for socket in local {
        let user = edge::user_of(&socket);
        let event = WatchEventsResponse {
            rooms: rooms.clone(),
            ..events::lifecycle(kind, &socket.id.to_string(), user.as_deref())
        };
        ctx.events.publish(event, || socket_rooms(&socket));
    }
    Ok(())
}

/// Handles `Join`.
pub async fn join(
    ctx: &ControlContext,
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
pub async fn leave(
    ctx: &ControlContext,
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
pub async fn disconnect(
    io: &SocketIo,
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
    let operators = target::resolve(io, request.target.as_ref(), "target", Audience::Any).await?;
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
    info!(reason, "disconnect requested");
    Ok(DisconnectResponse {})
}
