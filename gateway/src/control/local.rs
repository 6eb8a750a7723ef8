//! This node's answers about its own sockets and rooms, read from its socket index: a page
//! of sockets, one socket, a page of rooms with local member counts, counts by state; and
//! the `Join` / `Leave` changes every node applies to its own sockets; the grouped `Send`s
//! of a `Batch` for its sockets. Every node answers
//! these for `ListSockets`, `GetSocket`, `ListRooms`, `GetInfo`, `Join` and `Leave`,
//! whichever node was called. A page costs O(page × log n) on each node, a count O(1),
//! and only a page crosses the network.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use socketioxide::{SocketIo, adapter::Adapter, socket::Sid};
use sockgate_proto::{
    EventKind, GetSocketRequest, ListRoomsRequest, ListSocketsRequest, RoomInfo, SocketCounts,
    SocketInfo, SocketState as ProtoState, WatchEventsResponse,
};

use super::{
    batch, send,
    target::{self, Audience},
};
use crate::{
    clock,
    cluster::{
        LocalNode, NodeStatus,
        messages::{Membership, NodeResponse, Query},
    },
    config::Parser,
    edge::{
        Session,
        index::{Page, SocketFilter},
        state::{Mirrors, Owner, Shown},
        transport_name,
    },
    events::{self, EventBus},
    recovery::history::Entry,
    rooms,
};

/// The sockets of this node, as the cluster asks about them.
pub struct LocalSockets<A: Adapter> {
    io: SocketIo<A>,
    mirrors: Arc<Mirrors>,
    node_id: String,
    events: Arc<EventBus>,
    /// How the edge writes events (recovery's delivery writes them).
    parser: Parser,
}

impl<A: Adapter> LocalSockets<A> {
    /// Answers about `io`'s local sockets, listed in `mirrors`, as node `node_id`,
    /// publishing to `events`; events are written with `parser`.
    pub fn new(
        io: SocketIo<A>,
        mirrors: Arc<Mirrors>,
        node_id: String,
        events: Arc<EventBus>,
        parser: Parser,
    ) -> Self {
        Self {
            io,
            mirrors,
            node_id,
            events,
            parser,
        }
    }

    /// Applies a `Join` / `Leave` to the sockets of this node that its target selects, and
    /// publishes `Joined` / `Left` for each.
    fn change(&self, change: Membership) -> NodeResponse {
        let Some(target) = &change.target else {
            return NodeResponse::default();
        };
        let kind = EventKind::try_from(change.kind).unwrap_or(EventKind::Joined);
        let selected = target::select(self.io.local(), target, Audience::Any).sockets();
        let mut changed = 0;
        for socket in &selected {
            let Some(session) = Session::of(socket) else {
                continue;
            };
            let rooms = change.rooms.clone();
            let done = if kind == EventKind::Left {
                !session
                    .leave_rooms(socket, rooms, Owner::Server)
                    .0
                    .is_empty()
            } else {
                !session
                    .join_rooms(socket, rooms, Owner::Server, usize::MAX)
                    .gone
            };
            if !done {
                continue;
            }
            changed += 1;
            if self.events.is_watched() {
                let user = session.identity().and_then(|i| i.user_id.clone());
                let event = WatchEventsResponse {
                    rooms: change.rooms.clone(),
                    ..events::lifecycle(kind, &socket.id.to_string(), user.as_deref())
                };
                self.events.publish(event, || session.rooms());
            }
        }
        NodeResponse {
            matched: changed,
            ..NodeResponse::default()
        }
    }

    fn describe(&self, session: &Session) -> SocketInfo {
        let (state, user_id, rooms) = {
            let life = session.life();
            let user = life.user().map(str::to_owned);
            let rooms = life.rooms().map(str::to_owned).collect();
            (life.state().shown(), user, rooms)
        };
        // The current transport: a polling client that upgraded shows `websocket`.
        let transport = self
            .io
            .get_socket(session.sid)
            .map_or(session.meta.transport.as_str(), |socket| {
                transport_name(socket.transport_type())
            });
        SocketInfo {
            id: session.sid.to_string(),
            user_id: user_id.unwrap_or_default(),
            state: proto_state(state) as i32,
            rooms,
            connected_at: Some(clock::timestamp_from_ms(session.meta.connected_at_ms)),
            remote_address: session.meta.remote_address.clone(),
            transport: transport.to_owned(),
            node_id: self.node_id.clone(),
            away_since: None,
        }
    }

    fn sockets(&self, request: &ListSocketsRequest) -> NodeResponse {
        // No connected socket is away (those are listed from recovery's store).
        if request.state == ProtoState::Away as i32 {
            return NodeResponse::default();
        }
        let filter = SocketFilter {
            room: non_empty(&request.room),
            user: non_empty(&request.user_id),
            state: match ProtoState::try_from(request.state) {
                Ok(ProtoState::Unauthorized) => Some(Shown::Unauthorized),
                Ok(ProtoState::Authenticating) => Some(Shown::Authenticating),
                Ok(ProtoState::Authenticated) => Some(Shown::Authenticated),
                _ => None,
            },
        };
        let after = rooms::parse_sid(&request.page_token);
        let Page {
            items,
            matched,
            more,
        } = self
            .mirrors
            .index
            .sockets(filter, after, request.page_size as usize);
        NodeResponse {
            sockets: items.iter().map(|s| self.describe(s)).collect(),
            matched,
            more,
            ..NodeResponse::default()
        }
    }

    fn socket(&self, request: &GetSocketRequest) -> NodeResponse {
        let session =
            rooms::parse_sid(&request.socket_id).and_then(|sid| self.mirrors.index.get(sid));
        NodeResponse {
            sockets: session.iter().map(|s| self.describe(s)).collect(),
            matched: u32::from(session.is_some()),
            ..NodeResponse::default()
        }
    }

    fn rooms(&self, request: &ListRoomsRequest) -> NodeResponse {
        let Page {
            items,
            matched,
            more,
        } = self.mirrors.index.rooms(
            &request.prefix,
            &request.page_token,
            request.page_size as usize,
        );
        NodeResponse {
            rooms: items
                .into_iter()
                .map(|(name, members)| RoomInfo { name, members })
                .collect(),
            matched,
            more,
            ..NodeResponse::default()
        }
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn proto_state(shown: Shown) -> ProtoState {
    match shown {
        Shown::Unauthorized => ProtoState::Unauthorized,
        Shown::Authenticating => ProtoState::Authenticating,
        Shown::Authenticated => ProtoState::Authenticated,
    }
}

impl<A: Adapter> LocalNode for LocalSockets<A> {
    fn answer(&self, query: Query) -> BoxFuture<'_, NodeResponse> {
        Box::pin(async move {
            let mut answer = match query {
                Query::Sockets(request) => self.sockets(&request),
                Query::Socket(request) => self.socket(&request),
                Query::Rooms(request) => self.rooms(&request),
                Query::Membership(change) => self.change(change),
                Query::WatchStarted(_) => NodeResponse::default(),
                Query::Deliver(deliveries) => NodeResponse {
                    results: batch::deliver_here(&self.io, self.parser, deliveries.sends).await,
                    ..NodeResponse::default()
                },
            };
            answer.node_id.clone_from(&self.node_id);
            answer
        })
    }

    fn present(&self) -> Vec<(Sid, bool)> {
        self.mirrors.index.authenticated_flags()
    }

    fn deliver(&self, entries: Vec<Entry>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(recovery) = &self.mirrors.recovery {
                send::deliver_recorded(&self.io, recovery, self.parser, entries);
            }
        })
    }

    fn status(&self) -> BoxFuture<'_, NodeStatus> {
        Box::pin(async move {
            let counts = self.mirrors.index.counts();
            NodeStatus {
                node_id: self.node_id.clone(),
                sockets: SocketCounts {
                    unauthorized: counts.unauthorized,
                    authenticating: counts.authenticating,
                    authenticated: counts.authenticated,
                    total: counts.total(),
                    // Connected sockets only; GetInfo adds those away.
                    away: 0,
                },
                rooms: self.mirrors.index.room_count() as u32,
            }
        })
    }
}
