//! `Join`, `Leave` and `Disconnect`: server-side, trusted actions on target sockets.

use socketioxide::{BroadcastError, SocketIo, extract::SocketRef, operators::BroadcastOperators};
use sockgate_client::proto::{
    DisconnectRequest, DisconnectResponse, EventKind, JoinRequest, JoinResponse, LeaveRequest,
    LeaveResponse, WatchEventsResponse,
};
use tracing::{info, warn};

use super::{ControlContext, error::ControlError, target};
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

/// The target's sockets on this node, when someone watches events (the other nodes
/// report theirs).
fn local_watched(ctx: &ControlContext, operators: &BroadcastOperators) -> Vec<SocketRef> {
    if ctx.events.is_watched() {
        operators.clone().sockets()
    } else {
        Vec::new()
    }
}

fn publish(ctx: &ControlContext, sockets: Vec<SocketRef>, kind: EventKind, changed: &[String]) {
    for socket in sockets {
        let user = edge::user_of(&socket);
        let event = WatchEventsResponse {
            rooms: changed.to_vec(),
            ..events::lifecycle(kind, &socket.id.to_string(), user.as_deref())
        };
        ctx.events.publish(event, || socket_rooms(&socket));
    }
}

/// Handles `Join`.
pub async fn join(
    ctx: &ControlContext,
    request: JoinRequest,
) -> Result<JoinResponse, ControlError> {
    let rooms = check_rooms(&request.rooms)?;
    let operators = target::resolve(&ctx.io, request.target.as_ref(), "target").await?;
    let watched = local_watched(ctx, &operators);
    operators
        .join(rooms.clone())
        .await
        .map_err(ControlError::adapter)?;
    publish(ctx, watched, EventKind::Joined, &rooms);
    Ok(JoinResponse {})
}

/// Handles `Leave`.
pub async fn leave(
    ctx: &ControlContext,
    request: LeaveRequest,
) -> Result<LeaveResponse, ControlError> {
    let rooms = check_rooms(&request.rooms)?;
    let operators = target::resolve(&ctx.io, request.target.as_ref(), "target").await?;
    let watched = local_watched(ctx, &operators);
    operators
        .leave(rooms.clone())
        .await
        .map_err(ControlError::adapter)?;
    publish(ctx, watched, EventKind::Left, &rooms);
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
    let operators = target::resolve(io, request.target.as_ref(), "target").await?;
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
