//! Client `join` / `leave` requests: `{rooms: [...]}`, checked by the room validator,
//! answered through the ack callback when the client passed one.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use socketioxide::extract::{AckSender, SocketRef};
use tracing::{debug, info};

use super::{Edge, protocol, session::Session};
use crate::rooms;

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

fn parse(edge: &Edge, data: Option<Value>) -> Result<Vec<String>, String> {
    let request: RoomsRequest = data
        .ok_or_else(|| "expected {rooms: [string]}".to_owned())
        .and_then(|v| {
            serde_json::from_value(v).map_err(|e| format!("expected {{rooms: [string]}}: {e}"))
        })?;
    if request.rooms.len() > edge.config.max_rooms_per_request {
        return Err(format!(
            "{} rooms in one request; the limit is {}",
            request.rooms.len(),
            edge.config.max_rooms_per_request
        ));
    }
    let mut rooms = request.rooms;
    rooms.sort_unstable();
    rooms.dedup();
    Ok(rooms)
}

fn reply_error(socket: &SocketRef, ack: AckSender, error: &str) {
    info!(sid = %socket.id, error, "bad room request");
    let _ = ack.send(&ErrorAck {
        error,
        joined: [],
        rejected: [],
        left: [],
    });
}

/// Handles `join`: joins the allowed subset, acks `{joined, rejected}`.
pub fn join(edge: Arc<Edge>, socket: SocketRef, data: Option<Value>, ack: AckSender) {
    let Some(session) = Session::of(&socket) else {
        return;
    };
    let Some(identity) = session.identity() else {
        debug!(sid = %socket.id, "join from an unauthenticated socket dropped");
        return;
    };
    let requested = match parse(&edge, data) {
        Ok(rooms) => rooms,
        Err(error) => return reply_error(&socket, ack, &error),
    };
    let (joined, rejected) = edge.room_validator.split(identity, requested);
    if !joined.is_empty() {
        socket.join(joined.clone());
    }
    if !rejected.is_empty() {
        info!(sid = %socket.id, ?rejected, "join rejected by the room validator");
    }
    let _ = ack.send(&protocol::JoinAck { joined, rejected });
}

/// Handles `leave`: leaves the named public rooms, acks `{left}`.
pub fn leave(edge: Arc<Edge>, socket: SocketRef, data: Option<Value>, ack: AckSender) {
    let Some(session) = Session::of(&socket) else {
        return;
    };
    if !session.is_authenticated() {
        debug!(sid = %socket.id, "leave from an unauthenticated socket dropped");
        return;
    }
    let requested = match parse(&edge, data) {
        Ok(rooms) => rooms,
        Err(error) => return reply_error(&socket, ack, &error),
    };
    let left: Vec<String> = requested
        .into_iter()
        .filter(|room| rooms::check_name(room).is_ok())
        .collect();
    if !left.is_empty() {
        socket.leave(left.clone());
    }
    let _ = ack.send(&protocol::LeaveAck { left });
}
