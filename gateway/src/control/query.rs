//! `ListSockets`, `GetSocket`, `ListRooms`, `GetInfo`: cluster-wide reads built from the
//! adapter's socket and room lists (a socket's identity is carried by its internal rooms).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use futures_util::future::try_join_all;
use socketioxide::{
    SocketIo,
    socket::{RemoteSocket, Sid},
};
use sockgate_client::proto::{
    GetInfoResponse, GetSocketRequest, GetSocketResponse, ListRoomsRequest, ListRoomsResponse,
    ListSocketsRequest, ListSocketsResponse, RoomInfo, SocketCounts, SocketInfo,
    SocketState as ProtoState,
};

use super::{ControlContext, error::ControlError, target};
use crate::{
    clock,
    rooms::{self, SocketState, SocketView},
};

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

fn page_size(requested: u32) -> Result<usize, ControlError> {
    match requested as usize {
        0 => Ok(DEFAULT_PAGE),
        n if n <= MAX_PAGE => Ok(n),
        n => Err(ControlError::invalid(format!(
            "page_size {n} is more than {MAX_PAGE}"
        ))),
    }
}

type Remote = RemoteSocket<socketioxide::adapter::LocalAdapter>;

/// The rooms of a socket: read locally when it is on this node, asked of its node otherwise.
async fn rooms_of(io: &SocketIo, socket: &Remote) -> Result<Vec<String>, ControlError> {
    if let Some(local) = io.get_socket(socket.data().id) {
        return Ok(local.rooms().into_iter().map(|r| r.to_string()).collect());
    }
    let rooms = socket.rooms().await.map_err(ControlError::adapter)?;
    Ok(rooms.into_iter().map(|r| r.to_string()).collect())
}

async fn describe(ctx: &ControlContext, socket: &Remote) -> Result<SocketInfo, ControlError> {
    let view = SocketView::from_rooms(rooms_of(&ctx.io, socket).await?);
    let sid = socket.data().id;
    let node_id = if ctx.io.get_socket(sid).is_some() {
        ctx.node_id.clone()
    } else {
        socket.data().server_id.to_string()
    };
    let meta = view.meta.unwrap_or_default();
    Ok(SocketInfo {
        id: sid.to_string(),
        user_id: view.user_id.unwrap_or_default(),
        state: proto_state(view.state) as i32,
        rooms: view.rooms,
        connected_at: (meta.connected_at_ms > 0)
            .then(|| clock::timestamp_from_ms(meta.connected_at_ms)),
        remote_address: meta.remote_address,
        transport: meta.transport,
        node_id,
    })
}

fn proto_state(state: SocketState) -> ProtoState {
    match state {
        SocketState::Unauthorized => ProtoState::Unauthorized,
        SocketState::Authenticating => ProtoState::Authenticating,
        SocketState::Authenticated => ProtoState::Authenticated,
    }
}

async fn fetch(
    operators: socketioxide::operators::BroadcastOperators,
) -> Result<Vec<Remote>, ControlError> {
    operators
        .fetch_sockets()
        .await
        .map_err(ControlError::adapter)
}

async fn ids_in(io: &SocketIo, room: String) -> Result<HashSet<Sid>, ControlError> {
    Ok(fetch(io.to(room))
        .await?
        .iter()
        .map(|s| s.data().id)
        .collect())
}

/// Handles `ListSockets`.
pub async fn list_sockets(
    ctx: &ControlContext,
    request: ListSocketsRequest,
) -> Result<ListSocketsResponse, ControlError> {
    let size = page_size(request.page_size)?;
    let io = &ctx.io;
    if !request.room.is_empty() {
        rooms::check_name(&request.room)
            .map_err(|e| ControlError::invalid(format!("room: {e}")))?;
    }
    let state = ProtoState::try_from(request.state)
        .map_err(|_| ControlError::invalid(format!("state {} is unknown", request.state)))?;

    // Fetch by the most selective criterion, intersect with the others.
    let mut candidates = if !request.room.is_empty() {
        fetch(io.to(request.room.clone())).await?
    } else if !request.user_id.is_empty() {
        fetch(io.to(rooms::user_id_room(&request.user_id))).await?
    } else {
        fetch(io.broadcast()).await?
    };
    if !request.room.is_empty() && !request.user_id.is_empty() {
        let of_user = ids_in(io, rooms::user_id_room(&request.user_id)).await?;
        candidates.retain(|s| of_user.contains(&s.data().id));
    }
    match state {
        ProtoState::Unspecified => {}
        ProtoState::Authenticated => {
            let ids = ids_in(io, rooms::AUTHENTICATED.into()).await?;
            candidates.retain(|s| ids.contains(&s.data().id));
        }
        ProtoState::Authenticating => {
            let ids = ids_in(io, rooms::AUTHENTICATING.into()).await?;
            candidates.retain(|s| ids.contains(&s.data().id));
        }
        ProtoState::Unauthorized => {
            let mut ids = ids_in(io, rooms::AUTHENTICATED.into()).await?;
            ids.extend(ids_in(io, rooms::AUTHENTICATING.into()).await?);
            candidates.retain(|s| !ids.contains(&s.data().id));
        }
    }
    candidates.sort_unstable_by_key(|s| s.data().id.to_string());
    candidates.dedup_by_key(|s| s.data().id);
    let total = candidates.len() as u32;
    let start = if request.page_token.is_empty() {
        0
    } else {
        candidates.partition_point(|s| s.data().id.to_string() <= request.page_token)
    };
    let page: Vec<&Remote> = candidates.iter().skip(start).take(size).collect();
    let next_page_token = if start + page.len() < candidates.len() {
        page.last()
            .map(|s| s.data().id.to_string())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let sockets = try_join_all(page.into_iter().map(|s| describe(ctx, s))).await?;
    Ok(ListSocketsResponse {
        sockets,
        next_page_token,
        total,
    })
}

/// Handles `GetSocket`.
pub async fn get_socket(
    ctx: &ControlContext,
    request: GetSocketRequest,
) -> Result<GetSocketResponse, ControlError> {
    let sid = target::parse_sids(std::slice::from_ref(&request.socket_id), "socket_id")?[0];
    let found = fetch(ctx.io.to(rooms::socket_room(sid))).await?;
    let socket = found
        .iter()
        .find(|s| s.data().id == sid)
        .ok_or_else(|| ControlError::NotFound(format!("no connected socket with id {sid}")))?;
    Ok(GetSocketResponse {
        socket: Some(describe(ctx, socket).await?),
    })
}

async fn public_rooms(io: &SocketIo) -> Result<BTreeSet<String>, ControlError> {
    let all = io.rooms().await.map_err(ControlError::adapter)?;
    Ok(all
        .into_iter()
        .map(|r| r.to_string())
        .filter(|r| !r.starts_with(rooms::INTERNAL_PREFIX))
        .collect())
}

/// Handles `ListRooms`.
pub async fn list_rooms(
    ctx: &ControlContext,
    request: ListRoomsRequest,
) -> Result<ListRoomsResponse, ControlError> {
    let size = page_size(request.page_size)?;
    let names: Vec<String> = public_rooms(&ctx.io)
        .await?
        .into_iter()
        .filter(|r| r.starts_with(&request.prefix))
        .collect();
    let total = names.len() as u32;
    let start = if request.page_token.is_empty() {
        0
    } else {
        names.partition_point(|r| *r <= request.page_token)
    };
    let page = &names[start..(start + size).min(names.len())];
    let next_page_token = if start + page.len() < names.len() {
        page.last().cloned().unwrap_or_default()
    } else {
        String::new()
    };
    let counts = try_join_all(page.iter().map(|name| async move {
        let members = fetch(ctx.io.to(name.clone())).await?.len() as u32;
        Ok::<_, ControlError>(RoomInfo {
            name: name.clone(),
            members,
        })
    }))
    .await?;
    Ok(ListRoomsResponse {
        rooms: counts,
        next_page_token,
        total,
    })
}

/// Handles `GetInfo`.
pub async fn get_info(ctx: &ControlContext) -> Result<GetInfoResponse, ControlError> {
    let io = &ctx.io;
    let all = fetch(io.broadcast()).await?;
    let authenticated = ids_in(io, rooms::AUTHENTICATED.into()).await?.len() as u32;
    let authenticating = ids_in(io, rooms::AUTHENTICATING.into()).await?.len() as u32;
    let total = all.len() as u32;
    let mut nodes: BTreeMap<String, ()> = BTreeMap::new();
    nodes.insert(ctx.node_id.clone(), ());
    for socket in &all {
        if io.get_socket(socket.data().id).is_none() {
            nodes.insert(socket.data().server_id.to_string(), ());
        }
    }
    Ok(GetInfoResponse {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        node_id: ctx.node_id.clone(),
        uptime_seconds: ctx.started.elapsed().as_secs(),
        nodes: nodes.into_keys().collect(),
        sockets: Some(SocketCounts {
            unauthorized: total.saturating_sub(authenticated + authenticating),
            authenticating,
            authenticated,
            total,
        }),
        rooms: public_rooms(io).await?.len() as u32,
        adapter: "memory".to_owned(),
    })
}
