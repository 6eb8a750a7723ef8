//! The `redis` backend. socketioxide's Redis adapter carries emits, joins, leaves and
//! disconnects between nodes; this backend adds, on the same connection, what the adapter
//! cannot do cheaply:
//!
//! - `link`: the one self-healing Redis connection, each command bounded by
//!   `cluster.redis_command_timeout`;
//! - `questions`: per-node questions: every node answers with one page of its own
//!   sockets or rooms, so a listing moves O(nodes × page) items, never the whole cluster;
//!   a question to one node (a `Batch`'s sends for its sockets) goes to its own channel;
//!   a question takes at most `cluster.request_timeout`;
//! - `registry`: which nodes are alive, their node ids and their socket counts (a
//!   heartbeat per node), so `GetInfo` costs O(nodes);
//! - `relay`: the events of every node for every node's `WatchEvents` watchers;
//! - `directory`: which node holds each socket id, so that a `Send` to a socket of
//!   another node is checked with one Redis round trip;
//! - `names`: the channels and keys of all of these.

mod directory;
mod link;
mod names;
mod questions;
mod recovery;
mod registry;
mod relay;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use futures_util::future::BoxFuture;
use socketioxide::socket::Sid;
use tracing::warn;

pub use link::{ConnectError, Link, LinkError};

use super::{
    Answer, Answers, Backend, ClusterError, Directory, Located, NodeRef, NodeStatus,
    messages::Query, node::ThisNode,
};
use crate::{config::ClusterConfig, events::EventBus, recovery::Recovery};

/// A node of a cluster sharing one Redis.
pub(super) struct Redis {
    node: Arc<ThisNode>,
    link: Link,
    /// The adapter's server id of this process.
    uid: String,
    /// `cluster.key_prefix`.
    prefix: String,
    config: ClusterConfig,
    questions: questions::Waiting,
    relay: relay::Relay,
    /// Where the edge reports this node's sockets.
    reports: Arc<Directory>,
    /// The other live nodes' directories, as of the last heartbeat.
    others: directory::Others,
    /// Set on graceful shutdown: the heartbeat stops.
    leaving: AtomicBool,
}

impl Redis {
    pub(super) fn new(
        node: Arc<ThisNode>,
        link: Link,
        uid: String,
        config: &ClusterConfig,
        reports: Arc<Directory>,
    ) -> Self {
        Self {
            node,
            link,
            uid,
            prefix: config.key_prefix.clone(),
            config: config.clone(),
            questions: questions::Waiting::default(),
            relay: relay::Relay::default(),
            reports,
            others: directory::Others::default(),
            leaving: AtomicBool::new(false),
        }
    }

    fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::Acquire)
    }
}

impl Backend for Redis {
    fn adapter_name(&self) -> &'static str {
        "redis"
    }

    fn is_single_node(&self) -> bool {
        false
    }

    /// Claims the node id, then answers other nodes, writes the socket directory, beats
    /// and relays events. Fails when Redis cannot be used at start.
    fn start(
        self: Arc<Self>,
        events: Arc<EventBus>,
        recovery: Option<Arc<Recovery>>,
    ) -> BoxFuture<'static, Result<(), ClusterError>> {
        Box::pin(async move {
            registry::claim(&self).await?;
            questions::start(&self).await?;
            directory::start(&self);
            tokio::spawn(registry::heartbeat(self.clone()));
            relay::start(&self, events);
            if let Some(recovery) = recovery {
                recovery::start(&self, &recovery).await?;
            }
            Ok(())
        })
    }

    fn ask(&self, query: Query) -> BoxFuture<'_, Result<Answers, ClusterError>> {
        Box::pin(questions::ask(self, query))
    }

    fn locate<'a>(&'a self, sids: &'a [Sid]) -> BoxFuture<'a, Located> {
        Box::pin(async move { directory::locate(self, sids).await.map(Some) })
    }

    fn ask_each(&self, questions: Vec<(NodeRef, Query)>) -> BoxFuture<'_, Vec<Answer>> {
        Box::pin(futures_util::future::join_all(
            questions
                .into_iter()
                .map(|(node, query)| questions::ask_one(self, node, query)),
        ))
    }

    fn others(&self) -> BoxFuture<'_, Result<Vec<NodeStatus>, ClusterError>> {
        Box::pin(async move {
            let mut live = registry::live_nodes(self).await?;
            live.retain(|(uid, _)| *uid != self.uid);
            Ok(live.into_iter().map(|(_, status)| status).collect())
        })
    }

    fn leave(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.leaving.store(true, Ordering::Release);
            if let Err(e) = registry::leave(self).await {
                warn!("could not leave the node registry: {e}");
            }
        })
    }

    /// Listens to the other nodes' events, then has every node acknowledge that it relays.
    fn watch_started(&self) -> BoxFuture<'_, Result<(), ClusterError>> {
        Box::pin(async move {
            self.relay.listen(&self.link, &self.prefix).await?;
            questions::ask(self, Query::WatchStarted(super::messages::WatchStarted {})).await?;
            Ok(())
        })
    }
}
