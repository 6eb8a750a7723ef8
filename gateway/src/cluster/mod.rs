//! Scale-out. [`Cluster`] is this node's view of the cluster; what it does depends on the
//! backend `cluster.adapter` picks, one module each:
//!
//! - `single`: the `memory` adapter. The node is alone and every question is answered
//!   locally.
//! - [`redis`]: socketioxide's Redis adapter carries emits, joins, leaves and disconnects
//!   between nodes, and the backend adds what the adapter cannot do cheaply: a node
//!   registry (`GetInfo` in O(nodes)), per-node questions (a listing moves O(nodes × page)
//!   items), the event relay for `WatchEvents`, and the socket directory (a `Send` to a
//!   socket of another node is checked with one Redis round trip).
//!
//! Shared by both: [`adapter`] (the concrete socketioxide adapters), [`messages`] (the
//! questions every node answers), [`Directory`] (where the edge reports its sockets) and
//! [`LocalNode`] (what a node answers about its own sockets).

pub mod adapter;
mod directory;
pub mod messages;
mod node;
pub mod redis;
mod single;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use socketioxide::socket::Sid;

use crate::{config::ClusterConfig, events::EventBus, recovery::Recovery};
pub use directory::Directory;
use messages::Query;
use node::ThisNode;
pub use node::{LocalNode, NodeStatus};
use redis::{Link, LinkError};

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Redis could not be used.
    #[error("cluster unavailable: {0}")]
    Unavailable(#[from] LinkError),
    /// A connection of its own could not be opened (recovery's stream reader).
    #[error("cluster unavailable: {0}")]
    Connect(#[from] redis::ConnectError),
    /// Redis did not take a question to the nodes before its deadline,
    /// `cluster.request_timeout`, passed.
    #[error("redis did not take the question within cluster.request_timeout ({0:?})")]
    Deadline(std::time::Duration),
}

/// The answers to a question to every node.
#[derive(Debug)]
pub struct Answers {
    /// One per node that answered in time.
    pub answers: Vec<messages::NodeResponse>,
    /// Nodes that were subscribed but did not answer in time.
    pub missing: usize,
}

/// What a cluster backend does; [`Cluster`] documents each operation. A trait object rather
/// than a type parameter: the control plane holds one `Cluster` whichever backend runs, and
/// what a call costs is a Redis round trip or a local answer, next to which the boxed
/// future and the indirect call do not count.
trait Backend: Send + Sync + 'static {
    /// `memory` or `redis`.
    fn adapter_name(&self) -> &'static str;
    /// Whether every socket is on this node.
    fn is_single_node(&self) -> bool;
    /// Starts the background work (this node's local sockets are set by then), and
    /// connection state recovery's when it is on.
    fn start(
        self: Arc<Self>,
        events: Arc<EventBus>,
        recovery: Option<Arc<Recovery>>,
    ) -> BoxFuture<'static, Result<(), ClusterError>>;
    /// Asks every node, this one included.
    fn ask(&self, query: Query) -> BoxFuture<'_, Result<Answers, ClusterError>>;
    /// Which of `sids` (none on this node) a socket directory lists elsewhere.
    fn locate<'a>(&'a self, sids: &'a [Sid]) -> BoxFuture<'a, Located>;
    /// Asks each named node its question, all at once.
    fn ask_each(&self, questions: Vec<(NodeRef, Query)>) -> BoxFuture<'_, Vec<Answer>>;
    /// The other live nodes.
    fn others(&self) -> BoxFuture<'_, Result<Vec<NodeStatus>, ClusterError>>;
    /// Leaves the cluster (graceful shutdown).
    fn leave(&self) -> BoxFuture<'_, ()>;
    /// A watcher started on this node.
    fn watch_started(&self) -> BoxFuture<'_, Result<(), ClusterError>>;
}

/// What [`Cluster::locate`] answers.
type Located = Result<Option<Vec<Option<Listing>>>, ClusterError>;

/// One node's answer to [`Cluster::ask_each`]: `None` when it did not answer within
/// `cluster.request_timeout`.
pub type Answer = Result<Option<messages::NodeResponse>, ClusterError>;

/// Another live node, as the socket directory names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeRef(Arc<str>);

impl NodeRef {
    /// The node whose questions arrive on `inbox` (the backend's name for it).
    fn new(inbox: String) -> Self {
        Self(inbox.into())
    }

    fn inbox(&self) -> &str {
        &self.0
    }
}

/// Where the socket directory lists a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The node that holds it.
    pub node: NodeRef,
    /// Whether it has authenticated, as of the node's last write.
    pub authenticated: bool,
}

/// This node's view of the cluster: a thin handle on its backend (single node or Redis),
/// which the control plane holds without knowing which one it is.
pub struct Cluster {
    node: Arc<ThisNode>,
    backend: Arc<dyn Backend>,
    recovery: Option<Arc<Recovery>>,
}

impl Cluster {
    /// A node alone, in memory.
    pub fn memory(node_id: String) -> Self {
        let node = ThisNode::new(node_id);
        let backend = Arc::new(single::SingleNode::new(node.clone()));
        Self {
            node,
            backend,
            recovery: None,
        }
    }

    /// A node of a Redis cluster; `uid` is its adapter server id, `directory` where its
    /// edge reports its sockets.
    pub fn redis(
        node_id: String,
        link: Link,
        uid: String,
        config: &ClusterConfig,
        directory: Arc<Directory>,
    ) -> Self {
        let node = ThisNode::new(node_id);
        let backend = Arc::new(redis::Redis::new(
            node.clone(),
            link,
            uid,
            config,
            directory,
        ));
        Self {
            node,
            backend,
            recovery: None,
        }
    }

    /// The same, with connection state recovery (`None`: off).
    pub fn with_recovery(self, recovery: Option<Arc<Recovery>>) -> Self {
        Self { recovery, ..self }
    }

    /// Connection state recovery, when it is on.
    pub fn recovery(&self) -> Option<&Arc<Recovery>> {
        self.recovery.as_ref()
    }

    /// Whether this node is alone (the memory adapter): every socket is local.
    pub fn is_single_node(&self) -> bool {
        self.backend.is_single_node()
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        self.node.id()
    }

    /// `memory` or `redis`, as `GetInfo` shows it.
    pub fn adapter_name(&self) -> &'static str {
        self.backend.adapter_name()
    }

    /// Starts answering other nodes, the heartbeat and the event relay. Fails when Redis
    /// cannot be used at start.
    pub async fn start(
        &self,
        local: Arc<dyn LocalNode>,
        events: Arc<EventBus>,
    ) -> Result<(), ClusterError> {
        self.node.set_local(local);
        self.backend
            .clone()
            .start(events, self.recovery.clone())
            .await
    }

    /// Asks every node (this one included) and returns the answers of those that answered
    /// within `cluster.request_timeout` (and how many did not). Fails when Redis is down;
    /// the whole call takes at most `cluster.request_timeout`.
    pub async fn ask(&self, query: Query) -> Result<Answers, ClusterError> {
        self.backend.ask(query).await
    }

    /// For each of `sids` (none of them on this node): its [`Listing`] when the socket
    /// directory lists it on another live node, `None` when it does not (then only asking
    /// every node tells). `None` for the whole list without a directory (single node).
    /// One Redis round trip; fails fast when Redis is down.
    pub async fn locate(&self, sids: &[Sid]) -> Located {
        self.backend.locate(sids).await
    }

    /// Asks each node (named by a [`Listing`]) its own question, all at once: one Redis
    /// round trip per node, each bounded by `cluster.request_timeout`. The answers come in
    /// the order of the questions.
    pub async fn ask_each(&self, questions: Vec<(NodeRef, Query)>) -> Vec<Answer> {
        self.backend.ask_each(questions).await
    }

    /// Every live node's id and counts: this node's counted now, the others' as of their
    /// last heartbeat.
    pub async fn nodes(&self) -> Result<Vec<NodeStatus>, ClusterError> {
        let mine = self.node.local().status().await;
        let others = self.backend.others().await?;
        let mut nodes = Vec::with_capacity(1 + others.len());
        nodes.push(mine);
        nodes.extend(others);
        Ok(nodes)
    }

    /// Leaves the node registry (graceful shutdown). Failures are logged, not fatal.
    pub async fn leave(&self) {
        self.backend.leave().await;
    }

    /// Called when a watcher starts on this node: from the time this returns, every node
    /// relays its events here.
    pub async fn watch_started(&self) -> Result<(), ClusterError> {
        self.backend.watch_started().await
    }
}
