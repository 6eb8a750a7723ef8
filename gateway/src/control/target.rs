//! Resolving a request's `Target` into socketioxide broadcast operators, refusing empty
//! targets and socket ids that are connected nowhere.

use socketioxide::{SocketIo, adapter::Adapter, operators::BroadcastOperators, socket::Sid};
use sockgate_client::proto::Target;

use super::error::ControlError;
use crate::rooms;

/// Most ids, rooms and users one target may name in all.
const MAX_SELECTORS: usize = 10_000;

/// Validates `target` (the field name is used in messages) and checks that every socket
/// id is connected somewhere. Only ids not on this node cost a cluster round trip.
pub async fn resolve<A: Adapter>(
    io: &SocketIo<A>,
    target: Option<&Target>,
    field: &str,
) -> Result<BroadcastOperators<A>, ControlError> {
    let Some(target) = target else {
        return Err(ControlError::invalid(format!(
            "{field} is required: set socket_ids, rooms, user_ids, or all"
        )));
    };
    let selectors = target.socket_ids.len() + target.rooms.len() + target.user_ids.len();
    if target.all && selectors > 0 {
        return Err(ControlError::invalid(format!(
            "{field}.all cannot be combined with socket_ids, rooms or user_ids"
        )));
    }
    if !target.all && selectors == 0 {
        return Err(ControlError::invalid(format!(
            "{field} is empty: name socket_ids, rooms or user_ids, or set all to reach every socket"
        )));
    }
    let exceptions = target.except_rooms.len() + target.except_socket_ids.len();
    if selectors + exceptions > MAX_SELECTORS {
        return Err(ControlError::invalid(format!(
            "{field} names more than {MAX_SELECTORS} ids, rooms and users"
        )));
    }
    for room in target.rooms.iter().chain(&target.except_rooms) {
        rooms::check_name(room).map_err(|e| ControlError::invalid(format!("{field}: {e}")))?;
    }
    for user in &target.user_ids {
        if user.is_empty() {
            return Err(ControlError::invalid(format!(
                "{field}.user_ids contains an empty id"
            )));
        }
    }
    let sids = parse_sids(&target.socket_ids, field)?;
    let except_sids = parse_sids(&target.except_socket_ids, field)?;
    ensure_connected(io, &sids).await?;

    let mut selected: Vec<String> = Vec::with_capacity(selectors);
    selected.extend(sids.iter().map(rooms::socket_room));
    selected.extend(target.rooms.iter().cloned());
    selected.extend(target.user_ids.iter().map(|u| rooms::user_room(u)));
    let operators = if target.all {
        io.broadcast()
    } else {
        io.to(selected)
    };
    let mut except: Vec<String> = target.except_rooms.clone();
    except.extend(except_sids.iter().map(rooms::socket_room));
    Ok(if except.is_empty() {
        operators
    } else {
        operators.except(except)
    })
}

/// Parses socket ids; a malformed id is `INVALID_ARGUMENT`.
pub fn parse_sids(ids: &[String], field: &str) -> Result<Vec<Sid>, ControlError> {
    ids.iter()
        .map(|id| {
            rooms::parse_sid(id).ok_or_else(|| {
                ControlError::invalid(format!(
                    "{field}: {id:?} is not a socket id (16 URL-safe base64 characters)"
                ))
            })
        })
        .collect()
}

/// `NOT_FOUND` unless every id is connected on some node.
pub async fn ensure_connected<A: Adapter>(
    io: &SocketIo<A>,
    sids: &[Sid],
) -> Result<(), ControlError> {
    let elsewhere: Vec<Sid> = sids
        .iter()
        .copied()
        .filter(|sid| io.get_socket(*sid).is_none())
        .collect();
    if elsewhere.is_empty() {
        return Ok(());
    }
    let found = io
        .to(elsewhere.iter().map(rooms::socket_room).collect::<Vec<_>>())
        .fetch_sockets()
        .await
        .map_err(ControlError::adapter)?;
    let missing: Vec<String> = elsewhere
        .iter()
        .filter(|sid| !found.iter().any(|s| s.data().id == **sid))
        .map(ToString::to_string)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ControlError::NotFound(format!(
            "no connected socket with id {}",
            missing.join(", ")
        )))
    }
}
