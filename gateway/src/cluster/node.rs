//! This node as every backend sees it: its id, and what it knows about its own sockets
//! (answered by the control plane, `control/local.rs`).

use std::sync::{Arc, OnceLock};

use futures_util::future::BoxFuture;
use socketioxide::socket::Sid;
use sockgate_proto::SocketCounts;

use super::messages::{NodeResponse, Query};
use crate::recovery::history::Entry;

/// What one node knows about its own sockets; the control plane implements it.
pub trait LocalNode: Send + Sync + 'static {
    /// Answers a question about this node's sockets and rooms.
    fn answer(&self, query: Query) -> BoxFuture<'_, NodeResponse>;
    /// This node's socket counts and number of public rooms.
    fn status(&self) -> BoxFuture<'_, NodeStatus>;
    /// This node's connected sockets and whether each has authenticated, for a rewrite of
    /// the [`Directory`](super::Directory). A socket leaves this list (its `connected()`
    /// turns false) before its disconnection is reported, and enters it before its
    /// connection is.
    fn present(&self) -> Vec<(Sid, bool)>;
    /// Delivers entries of the cluster's recovery history (in offset order) to this node's
    /// sockets.
    fn deliver(&self, entries: Vec<Entry>) -> BoxFuture<'_, ()>;
}

/// A node's id and counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeStatus {
    /// Node id.
    pub node_id: String,
    /// Its sockets by state.
    pub sockets: SocketCounts,
    /// Its public rooms.
    pub rooms: u32,
}

/// This node: its id from construction, its sockets once the cluster is started (the
/// control plane that answers for them is built after the edge, which needs the adapter).
pub(super) struct ThisNode {
    id: String,
    local: OnceLock<Arc<dyn LocalNode>>,
}

impl ThisNode {
    pub(super) fn new(id: String) -> Arc<Self> {
        Arc::new(Self {
            id,
            local: OnceLock::new(),
        })
    }

    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// Called once, by `Cluster::start`.
    pub(super) fn set_local(&self, local: Arc<dyn LocalNode>) {
        let _ = self.local.set(local);
    }

    /// This node's sockets.
    ///
    /// # Panics
    ///
    /// Before `Cluster::start`: a programming error (no cluster question is served before
    /// the gateway is wired).
    pub(super) fn local(&self) -> &Arc<dyn LocalNode> {
        self.local.get().expect("cluster started before use")
    }
}
