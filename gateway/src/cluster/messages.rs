//! What nodes send each other over Redis besides socketioxide's own packets: questions to
//! every node (a page of its sockets or rooms, one socket, "a watcher started"). Protobuf,
//! with the public API's messages inside. (The events relayed to other nodes' watchers are
//! `events::RelayedEvent`, owned by the event bus.)

use sockgate_proto::{
    BatchResult, GetSocketRequest, ListRoomsRequest, ListSocketsRequest, RoomInfo, SendRequest,
    SocketInfo, Target,
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
    #[prost(oneof = "Query", tags = "3, 4, 5, 6, 8, 9")]
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
    /// A `Join` / `Leave` RPC: apply it to the sockets of this node that the target
    /// selects. (Tag 7 was the announcement of a change the adapter had applied.)
    #[prost(message, tag = "8")]
    Membership(Membership),
    /// Asked of one node: emit these `Send`s of a `Batch` to its own sockets.
    #[prost(message, tag = "9")]
    Deliver(Deliveries),
}

/// `Send`s of a `Batch` whose target is socket ids of the asked node only (no acks, no
/// count), validated by the node that received the call. The asked node checks the ids
/// (it is authoritative for its own sockets), emits them in order and answers a result
/// for each, in `NodeResponse::results`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Deliveries {
    /// The commands, in the batch's order.
    #[prost(message, repeated, tag = "1")]
    pub sends: Vec<SendRequest>,
}

/// A `Join` or `Leave` of rooms, applied by every node to its own sockets, so that a
/// socket's rooms change only on its node, through its state machine.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Membership {
    /// `EventKind::Joined` or `EventKind::Left`.
    #[prost(int32, tag = "1")]
    pub kind: i32,
    /// The sockets, validated by the node that received the RPC.
    #[prost(message, optional, tag = "2")]
    pub target: Option<Target>,
    /// The rooms to join or leave.
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
    /// `Deliver`: the result of each send, in order.
    #[prost(message, repeated, tag = "7")]
    pub results: Vec<BatchResult>,
}
