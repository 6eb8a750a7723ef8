//! The sockets away (connection state recovery): the sessions recovery keeps for them,
//! as `ListSockets` and `GetSocket` show them. Their pid, and its digest, never leave the
//! store.

use std::sync::Arc;

use socketioxide::socket::Sid;
use sockgate_proto::{ListSocketsRequest, SocketInfo, SocketState as ProtoState};

use super::error::ControlError;
use crate::{
    clock,
    edge::index::Page,
    recovery::{
        Recovery,
        offset::unix_ms,
        saved::Saved,
        store::{AwayFilter, SessionsError},
    },
};

/// The first `size` sockets away after `after` that `request` selects: none when recovery
/// is off or the request wants a connected state.
pub async fn page(
    recovery: Option<&Arc<Recovery>>,
    request: &ListSocketsRequest,
    after: Option<Sid>,
    size: usize,
) -> Result<Page<SocketInfo>, ControlError> {
    let wanted = matches!(
        ProtoState::try_from(request.state),
        Ok(ProtoState::Unspecified | ProtoState::Away)
    );
    let (Some(recovery), true) = (recovery, wanted) else {
        return Ok(Page {
            items: Vec::new(),
            matched: 0,
            more: false,
        });
    };
    let filter = AwayFilter {
        room: (!request.room.is_empty()).then_some(request.room.as_str()),
        user: (!request.user_id.is_empty()).then_some(request.user_id.as_str()),
    };
    let page = recovery
        .store()
        .away_page(filter, after, size)
        .await
        .map_err(unavailable)?;
    Ok(Page {
        items: page
            .items
            .iter()
            .map(|(sid, saved)| describe(*sid, saved))
            .collect(),
        matched: page.matched,
        more: page.more,
    })
}

/// Socket `sid` if it is away.
pub async fn socket(
    recovery: Option<&Arc<Recovery>>,
    sid: Sid,
) -> Result<Option<SocketInfo>, ControlError> {
    let Some(recovery) = recovery else {
        return Ok(None);
    };
    let saved = recovery
        .store()
        .away_session(sid)
        .await
        .map_err(unavailable)?;
    Ok(saved.map(|saved| describe(sid, &saved)))
}

/// A socket away: its user and the rooms it gets back; nothing about a connection.
fn describe(sid: Sid, saved: &Saved) -> SocketInfo {
    SocketInfo {
        id: sid.to_string(),
        user_id: saved.identity.user_id.clone().unwrap_or_default(),
        state: ProtoState::Away as i32,
        rooms: saved.rooms.iter().map(|(room, _)| room.clone()).collect(),
        away_since: Some(clock::timestamp_from_ms(unix_ms(saved.away_since))),
        ..SocketInfo::default()
    }
}

fn unavailable(error: SessionsError) -> ControlError {
    ControlError::Unavailable(error.to_string())
}
