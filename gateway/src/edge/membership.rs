//! Client `join` / `leave` requests: `{rooms: [...]}`. The room validator decides, then
//! the `AuthorizeJoin` hook (when enabled) for what the rules did not allow; the answer
//! goes through the ack callback when the client passed one. The session records which
//! rooms the client joined itself: those, and only those, it may leave. A socket has at
//! most `edge.limits.max_room_requests_in_flight` requests in flight and
//! `edge.limits.max_rooms_per_socket` rooms of its own.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, SocketRef},
};
use sockgate_proto::{AuthorizeJoinRequest, EventKind, WatchEventsResponse};
use tracing::{debug, info};

use super::{
    Edge, protocol,
    session::{RoomRequestSlot, Session},
    state::Owner,
};
use crate::{
    auth::Identity,
    events,
    metrics::{METRICS, Refusal, RoomRequest, RoomResult},
};

#[derive(Deserialize)]
struct RoomsRequest {
    rooms: Vec<String>,
}

/// The ack sent when a request cannot be read.
#[derive(Serialize)]
struct ErrorAck<'a> {
    error: &'a str,
    joined: [String; 0],
    rejected: [String; 0],
    left: [String; 0],
}

/// Why a `join` / `leave` request cannot be read. The message is the error ack's `error`.
#[derive(Debug, thiserror::Error)]
enum RoomRequestError {
    /// No data.
    #[error("expected {{rooms: [string]}}")]
    Missing,
    /// Data of another shape.
    #[error("expected {{rooms: [string]}}: {0}")]
    Shape(serde_json::Error),
    /// More rooms than `edge.max_rooms_per_request`.
    #[error("{count} rooms in one request; the limit is {limit}")]
    TooManyRooms {
        /// Rooms in the request.
        count: usize,
        /// The limit.
        limit: usize,
    },
}

/// The rooms of a request, sorted and without duplicates; at most `limit` before that.
fn parse(data: Option<Value>, limit: usize) -> Result<Vec<String>, RoomRequestError> {
    let data = data.ok_or(RoomRequestError::Missing)?;
    let request: RoomsRequest = serde_json::from_value(data).map_err(RoomRequestError::Shape)?;
    if request.rooms.len() > limit {
        return Err(RoomRequestError::TooManyRooms {
            count: request.rooms.len(),
            limit,
        });
    }
    let mut rooms = request.rooms;
    rooms.sort_unstable();
    rooms.dedup();
    Ok(rooms)
}

fn reply_error<A: Adapter>(
    socket: &SocketRef<A>,
    ack: AckSender<A>,
    request: RoomRequest,
    error: &RoomRequestError,
) {
    let error = error.to_string();
    METRICS.client_rooms(request, RoomResult::InvalidRequest, 1);
    info!(sid = %socket.id, error, "bad room request");
    send_error(ack, &error);
}

fn send_error<A: Adapter>(ack: AckSender<A>, error: &str) {
    let _ = ack.send(&ErrorAck {
        error,
        joined: [],
        rejected: [],
        left: [],
    });
}

fn publish<A: Adapter>(
    edge: &Edge<A>,
    socket: &SocketRef<A>,
    session: &Session,
    identity: &Identity,
    kind: EventKind,
    changed: &[String],
) {
    if changed.is_empty() || !edge.events.is_watched() {
        return;
    }
    let event = WatchEventsResponse {
        rooms: changed.to_vec(),
        ..events::lifecycle(kind, &socket.id.to_string(), identity.user_id.as_deref())
    };
    edge.events.publish(event, || session.rooms());
}

/// Asks `AuthorizeJoin` about `candidates`; on failure nothing more is allowed.
async fn ask_backend<A: Adapter>(
    edge: &Edge<A>,
    socket: &SocketRef<A>,
    identity: &Identity,
    candidates: Vec<String>,
) -> Vec<String> {
    let Some(hooks) = edge.hooks.as_ref().filter(|h| h.authorize_join) else {
        return Vec::new();
    };
    if candidates.is_empty() {
        return Vec::new();
    }
    let request = AuthorizeJoinRequest {
        socket_id: socket.id.to_string(),
        user_id: identity.user_id.clone().unwrap_or_default(),
        metadata: identity.metadata.clone(),
        rooms: candidates,
    };
    hooks.authorize_join(request).await.unwrap_or_default()
}

/// A slot for one more request of this socket; past the limit the request is refused
/// with an error ack.
fn take_request_slot<A: Adapter>(
    edge: &Edge<A>,
    socket: &SocketRef<A>,
    session: &Arc<Session>,
    ack: AckSender<A>,
) -> Result<(RoomRequestSlot, AckSender<A>), ()> {
    let max = edge.limits.config.max_room_requests_in_flight;
    match session.room_request(max) {
        Some(slot) => Ok((slot, ack)),
        None => {
            METRICS.refused(Refusal::RoomRequestsInFlight);
            debug!(sid = %socket.id, max, "join/leave refused: too many in flight");
            send_error(
                ack,
                &format!(
                    "too many join/leave requests in flight (limit {max}); wait for their acks"
                ),
            );
            Err(())
        }
    }
}

/// Handles `join`: joins the allowed subset, acks `{joined, rejected}`.
pub async fn join<A: Adapter>(
    edge: Arc<Edge<A>>,
    socket: SocketRef<A>,
    data: Option<Value>,
    ack: AckSender<A>,
) {
    let Some(session) = Session::of(&socket) else {
        return;
    };
    let Some(identity) = session.identity() else {
        return;
    };
    let Ok((_slot, ack)) = take_request_slot(&edge, &socket, &session, ack) else {
        return;
    };
    let requested = match parse(data, edge.config.max_rooms_per_request) {
        Ok(rooms) => rooms,
        Err(error) => return reply_error(&socket, ack, RoomRequest::Join, &error),
    };
    let identity = &*identity;
    let (mut joined, rejected) = edge.room_validator.split(identity, requested);
    let (candidates, mut rejected): (Vec<String>, Vec<String>) = rejected
        .into_iter()
        .partition(|room| edge.room_validator.may_be_allowed(identity, room));
    let from_backend = ask_backend(&edge, &socket, identity, candidates.clone()).await;
    for room in candidates {
        if from_backend.contains(&room) {
            joined.push(room);
        } else {
            rejected.push(room);
        }
    }
    let max = edge.limits.config.max_rooms_per_socket;
    // The backend may have taken a while: a socket that left meanwhile is not put back
    // into rooms.
    let allowed = joined.len();
    let outcome = session.join_rooms(&socket, joined, Owner::Client, max);
    if outcome.gone {
        METRICS.client_rooms(RoomRequest::Join, RoomResult::Abandoned, allowed);
        debug!(sid = %socket.id, "socket left while its join was decided");
        return;
    }
    if !outcome.over.is_empty() {
        METRICS.refused(Refusal::RoomsPerSocket);
        info!(sid = %socket.id, over = ?outcome.over, max, "join rejected: rooms per socket (edge.limits.max_rooms_per_socket)");
    }
    let mut joined = outcome.joined;
    rejected.extend(outcome.over);
    joined.sort_unstable();
    rejected.sort_unstable();
    if !rejected.is_empty() {
        info!(sid = %socket.id, ?rejected, "join rejected");
    }
    publish(
        &edge,
        &socket,
        &session,
        identity,
        EventKind::Joined,
        &joined,
    );
    METRICS.client_rooms(RoomRequest::Join, RoomResult::Joined, joined.len());
    METRICS.client_rooms(RoomRequest::Join, RoomResult::Rejected, rejected.len());
    let _ = ack.send(&protocol::JoinAck { joined, rejected });
}

/// Handles `leave`: leaves the named rooms the client joined itself, acks
/// `{left, rejected}`; rooms the server put the socket in are rejected.
pub fn leave<A: Adapter>(
    edge: Arc<Edge<A>>,
    socket: SocketRef<A>,
    data: Option<Value>,
    ack: AckSender<A>,
) {
    let Some(session) = Session::of(&socket) else {
        return;
    };
    let Some(identity) = session.identity() else {
        return;
    };
    let Ok((_slot, ack)) = take_request_slot(&edge, &socket, &session, ack) else {
        return;
    };
    let requested = match parse(data, edge.config.max_rooms_per_request) {
        Ok(rooms) => rooms,
        Err(error) => return reply_error(&socket, ack, RoomRequest::Leave, &error),
    };
    let (left, rejected) = session.leave_rooms(&socket, requested, Owner::Client);
    if !rejected.is_empty() {
        info!(sid = %socket.id, ?rejected, "leave rejected: not joined by the client");
    }
    publish(&edge, &socket, &session, &identity, EventKind::Left, &left);
    METRICS.client_rooms(RoomRequest::Leave, RoomResult::Left, left.len());
    METRICS.client_rooms(RoomRequest::Leave, RoomResult::Rejected, rejected.len());
    let _ = ack.send(&protocol::LeaveAck { left, rejected });
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rooms_are_sorted_and_deduplicated() {
        let rooms = parse(Some(json!({"rooms": ["b", "a", "b"]})), 3).unwrap();
        assert_eq!(rooms, ["a", "b"]);
    }

    /// The messages reach the client in the error ack: they are part of the protocol.
    #[test]
    fn unreadable_requests_are_explained() {
        let error = |data, limit| parse(data, limit).unwrap_err().to_string();
        assert_eq!(error(None, 10), "expected {rooms: [string]}");
        assert_eq!(
            error(Some(json!({"rooms": "a"})), 10),
            "expected {rooms: [string]}: invalid type: string \"a\", expected a sequence"
        );
        assert_eq!(
            error(Some(json!({"rooms": ["a", "b", "c"]})), 2),
            "3 rooms in one request; the limit is 2"
        );
    }
}
