//! `ListSockets`, `GetSocket`, `ListRooms`, `GetInfo`: cluster-wide reads. Each node
//! answers with one page of its own sockets or rooms (see `local.rs`); the pages are merged
//! here, with the sockets away that recovery keeps (`away.rs`). A listing moves at most
//! `page_size` items per node and costs one cluster round trip; `GetInfo` reads the node
//! registry (O(nodes)).

use std::collections::BTreeMap;

use socketioxide::adapter::Adapter;
use sockgate_proto::{
    GetInfoResponse, GetSocketRequest, GetSocketResponse, ListRoomsRequest, ListRoomsResponse,
    ListSocketsRequest, ListSocketsResponse, RoomInfo, SocketCounts, SocketState as ProtoState,
};

use super::{ControlContext, away, error::ControlError, target};
use crate::{
    cluster::{Answers, messages::Query},
    rooms,
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

/// Handles `ListSockets`. Each node returns its first `page_size` matches after the
/// token, and so does recovery's store of the sockets away; the first `page_size` of their
/// union is exactly the cluster's page (a socket lives on one node, or is away), and
/// `total` is the sum of their matches.
pub async fn list_sockets<A: Adapter>(
    ctx: &ControlContext<A>,
    mut request: ListSocketsRequest,
) -> Result<ListSocketsResponse, ControlError> {
    let size = page_size(request.page_size)?;
    if !request.room.is_empty() {
        rooms::check_name(&request.room)
            .map_err(|e| ControlError::invalid(format!("room: {e}")))?;
    }
    let state = ProtoState::try_from(request.state)
        .map_err(|_| ControlError::invalid(format!("state {} is unknown", request.state)))?;
    let after = rooms::parse_sid(&request.page_token);
    if !request.page_token.is_empty() && after.is_none() {
        return Err(ControlError::invalid(format!(
            "page_token {:?} is not the next_page_token of a previous page",
            request.page_token
        )));
    }
    request.page_size = size as u32;
    let connected = async {
        if state == ProtoState::Away {
            return Ok(Vec::new());
        }
        let answers = ctx.cluster.ask(Query::Sockets(request.clone())).await?;
        Ok::<_, ControlError>(answers.answers)
    };
    let away = away::page(ctx.cluster.recovery(), &request, after, size);
    let (answers, away) = tokio::join!(connected, away);
    let (answers, away) = (answers?, away?);
    let total = answers.iter().map(|a| a.matched).sum::<u32>() + away.matched;
    let mut more = answers.iter().any(|a| a.more) || away.more;
    let mut sockets: Vec<_> = answers
        .into_iter()
        .flat_map(|a| a.sockets)
        .chain(away.items)
        .collect();
    sockets.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    if sockets.len() > size {
        sockets.truncate(size);
        more = true;
    }
    let next_page_token = if more {
        sockets.last().map(|s| s.id.clone()).unwrap_or_default()
    } else {
        String::new()
    };
    Ok(ListSocketsResponse {
        sockets,
        next_page_token,
        total,
    })
}

/// Handles `GetSocket`.
pub async fn get_socket<A: Adapter>(
    ctx: &ControlContext<A>,
    request: GetSocketRequest,
) -> Result<GetSocketResponse, ControlError> {
    let sid = target::parse_sids(std::slice::from_ref(&request.socket_id), "socket_id")?[0];
    let Answers { answers, missing } = ctx.cluster.ask(Query::Socket(request)).await?;
    let connected = answers
        .into_iter()
        .find_map(|a| a.sockets.into_iter().next());
    let socket = match connected {
        Some(socket) => Some(socket),
        None => away::socket(ctx.cluster.recovery(), sid).await?,
    };
    let socket = socket.ok_or_else(|| {
        if missing > 0 {
            ControlError::DeadlineExceeded(format!(
                "socket {sid} is on none of the nodes that answered; {missing} did not \
                     answer within cluster.request_timeout"
            ))
        } else {
            ControlError::NotFound(format!("no socket connected or away with id {sid}"))
        }
    })?;
    Ok(GetSocketResponse {
        socket: Some(socket),
    })
}

/// Handles `ListRooms`. Each node returns its first `page_size` rooms after the token
/// with its local member counts; members are summed per name. A room in the first
/// `page_size` names of the union was returned by every node that has it, so counts are
/// exact. `total` is the sum of each node's matching rooms: exact on one node, an upper
/// bound with several (a room with members on k nodes counts k times).
pub async fn list_rooms<A: Adapter>(
    ctx: &ControlContext<A>,
    mut request: ListRoomsRequest,
) -> Result<ListRoomsResponse, ControlError> {
    let size = page_size(request.page_size)?;
    request.page_size = size as u32;
    let answers = ctx.cluster.ask(Query::Rooms(request)).await?.answers;
    let total = answers.iter().map(|a| a.matched).sum();
    let mut more = answers.iter().any(|a| a.more);
    let mut members: BTreeMap<String, u32> = BTreeMap::new();
    for room in answers.into_iter().flat_map(|a| a.rooms) {
        *members.entry(room.name).or_default() += room.members;
    }
    if members.len() > size {
        more = true;
    }
    let rooms: Vec<RoomInfo> = members
        .into_iter()
        .take(size)
        .map(|(name, members)| RoomInfo { name, members })
        .collect();
    let next_page_token = if more {
        rooms.last().map(|r| r.name.clone()).unwrap_or_default()
    } else {
        String::new()
    };
    Ok(ListRoomsResponse {
        rooms,
        next_page_token,
        total,
    })
}

/// Handles `GetInfo`: this node's counts now, the others' as of their last heartbeat.
pub async fn get_info<A: Adapter>(
    ctx: &ControlContext<A>,
) -> Result<GetInfoResponse, ControlError> {
    let nodes = ctx.cluster.nodes().await?;
    let mut sockets = SocketCounts::default();
    let mut rooms = 0;
    for node in &nodes {
        sockets.unauthorized += node.sockets.unauthorized;
        sockets.authenticating += node.sockets.authenticating;
        sockets.authenticated += node.sockets.authenticated;
        sockets.total += node.sockets.total;
        rooms += node.rooms;
    }
    if let Some(recovery) = ctx.cluster.recovery() {
        sockets.away = recovery.store().away_count().await;
    }
    let mut ids: Vec<String> = nodes.into_iter().map(|n| n.node_id).collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(GetInfoResponse {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        node_id: ctx.cluster.node_id().to_owned(),
        uptime_seconds: ctx.started.elapsed().as_secs(),
        nodes: ids,
        sockets: Some(sockets),
        rooms,
        adapter: ctx.cluster.adapter_name().to_owned(),
    })
}
