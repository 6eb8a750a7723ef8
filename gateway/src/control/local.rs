//! This node's answers about its own sockets and rooms: a page of sockets, one socket, a
//! page of rooms with local member counts, counts by state. Every node answers these for
//! `ListSockets`, `GetSocket`, `ListRooms` and `GetInfo`, whichever node was called; the
//! work is O(local sockets) on each node and only a page crosses the network.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use socketioxide::{SocketIo, adapter::Adapter, extract::SocketRef, socket::Sid};
use sockgate_proto::{
    EventKind, GetSocketRequest, ListRoomsRequest, ListSocketsRequest, RoomInfo, SocketCounts,
    SocketInfo, SocketState as ProtoState, WatchEventsResponse,
};

use crate::{
    clock,
    cluster::{
        LocalNode, NodeStatus,
        messages::{Announce, NodeResponse, Query},
    },
    edge::{self, transport_name},
    events::{self, EventBus},
    rooms::{self, SocketState, SocketView},
};

/// The sockets of this node, as the cluster asks about them.
pub struct LocalSockets<A: Adapter> {
    io: SocketIo<A>,
    node_id: String,
    events: Arc<EventBus>,
}

impl<A: Adapter> LocalSockets<A> {
    /// Answers about `io`'s local sockets as node `node_id`, publishing to `events`.
    pub fn new(io: SocketIo<A>, node_id: String, events: Arc<EventBus>) -> Self {
        Self {
            io,
            node_id,
            events,
        }
    }

    /// For the sockets of `announce` that are on this node: the rooms become the server's
    /// (their clients can no longer leave them), and `Joined` / `Left` is published.
    fn announce(&self, announce: Announce) -> NodeResponse {
        let kind = EventKind::try_from(announce.kind).unwrap_or(EventKind::Joined);
        let mut reported = 0;
        for id in &announce.socket_ids {
            let Some(socket) = rooms::parse_sid(id).and_then(|sid| self.io.get_socket(sid)) else {
                continue;
            };
            reported += 1;
            edge::forget_client_rooms(&socket, &announce.rooms);
            if !self.events.is_watched() {
                continue;
            }
            let user = edge::user_of(&socket);
            let event = WatchEventsResponse {
                rooms: announce.rooms.clone(),
                ..events::lifecycle(kind, id, user.as_deref())
            };
            self.events.publish(event, || rooms::public(socket.rooms()));
        }
        NodeResponse {
            matched: reported,
            ..NodeResponse::default()
        }
    }

    fn describe(&self, socket: &SocketRef<A>) -> SocketInfo {
        let view = SocketView::from_rooms(socket.rooms());
        let meta = view.meta.unwrap_or_default();
        SocketInfo {
            id: socket.id.to_string(),
            user_id: view.user_id.unwrap_or_default(),
            state: proto_state(view.state) as i32,
            rooms: view.rooms,
            connected_at: (meta.connected_at_ms > 0)
                .then(|| clock::timestamp_from_ms(meta.connected_at_ms)),
            remote_address: meta.remote_address,
            // The current transport: a polling client that upgraded shows `websocket`.
            transport: transport_name(socket.transport_type()).to_owned(),
            node_id: self.node_id.clone(),
        }
    }

    fn sockets(&self, request: &ListSocketsRequest) -> NodeResponse {
        let local = self.io.local();
        let candidates = if !request.room.is_empty() {
            local.to(request.room.clone()).sockets()
        } else if !request.user_id.is_empty() {
            local.to(rooms::user_id_room(&request.user_id)).sockets()
        } else {
            local.sockets()
        };
        let wanted = ProtoState::try_from(request.state).unwrap_or(ProtoState::Unspecified);
        let mut matched: Vec<(String, SocketRef<A>)> = candidates
            .into_iter()
            .filter(|socket| {
                let view = SocketView::from_rooms(socket.rooms());
                (request.user_id.is_empty()
                    || view.user_id.as_deref() == Some(request.user_id.as_str()))
                    && (wanted == ProtoState::Unspecified || proto_state(view.state) == wanted)
            })
            .map(|socket| (socket.id.to_string(), socket))
            .collect();
        let total = matched.len() as u32;
        matched.retain(|(id, _)| *id > request.page_token);
        let limit = request.page_size as usize;
        let more = matched.len() > limit;
        if more {
            matched.select_nth_unstable_by(limit, |a, b| a.0.cmp(&b.0));
            matched.truncate(limit);
        }
        matched.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        NodeResponse {
            sockets: matched.iter().map(|(_, s)| self.describe(s)).collect(),
            matched: total,
            more,
            ..NodeResponse::default()
        }
    }

    fn socket(&self, request: &GetSocketRequest) -> NodeResponse {
        let socket = rooms::parse_sid(&request.socket_id).and_then(|sid| self.io.get_socket(sid));
        NodeResponse {
            sockets: socket.iter().map(|s| self.describe(s)).collect(),
            matched: u32::from(socket.is_some()),
            ..NodeResponse::default()
        }
    }

    async fn public_rooms(&self) -> Vec<String> {
        let all = self.io.local().rooms().await.unwrap_or_default();
        rooms::public(all.iter().map(|r| r.as_ref()))
    }

    async fn rooms(&self, request: &ListRoomsRequest) -> NodeResponse {
        let mut names: Vec<String> = self
            .public_rooms()
            .await
            .into_iter()
            .filter(|r| r.starts_with(&request.prefix))
            .collect();
        let total = names.len() as u32;
        names.retain(|r| *r > request.page_token);
        let limit = request.page_size as usize;
        let more = names.len() > limit;
        if more {
            names.select_nth_unstable(limit);
            names.truncate(limit);
        }
        names.sort_unstable();
        let local = self.io.local();
        NodeResponse {
            rooms: names
                .into_iter()
                .map(|name| RoomInfo {
                    members: local.clone().to(name.clone()).sockets().len() as u32,
                    name,
                })
                .collect(),
            matched: total,
            more,
            ..NodeResponse::default()
        }
    }
}

fn proto_state(state: SocketState) -> ProtoState {
    match state {
        SocketState::Unauthorized => ProtoState::Unauthorized,
        SocketState::Authenticating => ProtoState::Authenticating,
        SocketState::Authenticated => ProtoState::Authenticated,
    }
}

impl<A: Adapter> LocalNode for LocalSockets<A> {
    fn answer(&self, query: Query) -> BoxFuture<'_, NodeResponse> {
        Box::pin(async move {
            let mut answer = match query {
                Query::Sockets(request) => self.sockets(&request),
                Query::Socket(request) => self.socket(&request),
                Query::Rooms(request) => self.rooms(&request).await,
                Query::Announce(announce) => self.announce(announce),
                Query::WatchStarted(_) => NodeResponse::default(),
            };
            answer.node_id.clone_from(&self.node_id);
            answer
        })
    }

    fn present(&self) -> Vec<(Sid, bool)> {
        self.io
            .local()
            .sockets()
            .into_iter()
            .filter(|socket| socket.connected())
            .map(|socket| (socket.id, edge::is_authenticated(&socket)))
            .collect()
    }

    fn status(&self) -> BoxFuture<'_, NodeStatus> {
        Box::pin(async move {
            let local = self.io.local();
            let total = local.clone().sockets().len() as u32;
            let authenticated = local.clone().to(rooms::AUTHENTICATED).sockets().len() as u32;
            let authenticating = local
                .clone()
                .to(rooms::AUTHENTICATING)
                .except(rooms::AUTHENTICATED)
                .sockets()
                .len() as u32;
            NodeStatus {
                node_id: self.node_id.clone(),
                sockets: SocketCounts {
                    unauthorized: total.saturating_sub(authenticated + authenticating),
                    authenticating,
                    authenticated,
                    total,
                },
                rooms: self.public_rooms().await.len() as u32,
            }
        })
    }
}
