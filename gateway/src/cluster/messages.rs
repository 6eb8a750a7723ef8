//! What nodes send each other over Redis besides socketioxide's own packets: questions to
//! every node (a page of its sockets or rooms, one socket, "a watcher started"). Protobuf,
//! with the public API's messages inside. (The events relayed to other nodes' watchers are
//! `events::RelayedEvent`, owned by the event bus.)

use sockgate_proto::{
    GetSocketRequest, ListRoomsRequest, ListSocketsRequest, RoomInfo, SocketInfo,
};

/// A question to every node.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeRequest {
    /// Matches the answers to the question.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Channel the answers go to.
    #[prost(string, tag = "2")]
    pub reply_to: String,
    /// The question.
    #[prost(oneof = "Query", tags = "3, 4, 5, 6, 7")]
    pub query: Option<Query>,
}

/// What a node is asked.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Query {
    /// Its first `page_size` matching sockets with an id after `page_token`.
    #[prost(message, tag = "3")]
    Sockets(ListSocketsRequest),
    /// One socket, if it is there.
    #[prost(message, tag = "4")]
    Socket(GetSocketRequest),
    /// Its first `page_size` matching rooms after `page_token`, with local member counts.
    #[prost(message, tag = "5")]
    Rooms(ListRoomsRequest),
    /// A watcher started somewhere: relay events from now on.
    #[prost(message, tag = "6")]
    WatchStarted(WatchStarted),
    /// A `Join` / `Leave` RPC changed these sockets' rooms: report it to the watchers.
    #[prost(message, tag = "7")]
    Announce(Announce),
}

/// Sockets whose rooms a control call changed; their nodes publish the event.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Announce {
    /// `EventKind::Joined` or `EventKind::Left`.
    #[prost(int32, tag = "1")]
    pub kind: i32,
    /// The sockets (each node reports those it holds).
    #[prost(string, repeated, tag = "2")]
    pub socket_ids: Vec<String>,
    /// The rooms joined or left.
    #[prost(string, repeated, tag = "3")]
    pub rooms: Vec<String>,
}

/// Empty: a watcher started.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchStarted {}

/// One node's answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeResponse {
    /// The question's id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// The node that answers.
    #[prost(string, tag = "2")]
    pub node_id: String,
    /// Sockets of the page (ordered by id).
    #[prost(message, repeated, tag = "3")]
    pub sockets: Vec<SocketInfo>,
    /// Rooms of the page (ordered by name), members on this node.
    #[prost(message, repeated, tag = "4")]
    pub rooms: Vec<RoomInfo>,
    /// How many matched on this node in all.
    #[prost(uint32, tag = "5")]
    pub matched: u32,
    /// Whether this node has more after the page.
    #[prost(bool, tag = "6")]
    pub more: bool,
}
