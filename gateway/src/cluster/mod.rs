//! Scale-out. With the `memory` adapter the node is alone and every question is answered
//! locally. With `redis`, socketioxide's Redis adapter carries emits, joins, leaves and
//! disconnects between nodes, and this module adds what the adapter cannot do cheaply:
//!
//! - [`registry`]: which nodes are alive, their node ids and their socket counts (a
//!   heartbeat per node), so `GetInfo` costs O(nodes);
//! - per-node questions (this file): every node answers with one page of its own sockets or
//!   rooms, so a listing moves O(nodes × page) items, never the whole cluster;
//! - [`relay`]: the events of every node for every node's `WatchEvents` watchers;
//! - [`directory`]: which node holds each socket id, so that a `Send` to a socket of
//!   another node is checked with one Redis round trip.
//!
//! Redis channels and keys, with `P` = `cluster.key_prefix`: socketioxide's channels
//! `P-request#/#`, `P-request#/#{uid}#`, `P-response#/#{uid}#`; questions `P#req`,
//! answers `P#res#{uid}`, relayed events `P#events`; keys `P:nodes` (live nodes by
//! expiry), `P:node:{uid}` (a node's id and counts), `P:node-id:{node_id}` (which process
//! holds a node id), `P:sockets:{uid}` (a node's socket ids). `uid` is the adapter's server id, random per process: a node
//! restarted with the same node id is a new uid, never mistaken for the dead one.

pub mod adapter;
mod directory;
pub mod link;
pub mod messages;
mod registry;
mod relay;

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{Arc, Mutex, OnceLock},
};

use futures_util::{StreamExt, future::BoxFuture};
use prost::Message;
use socketioxide::socket::Sid;
use socketioxide_redis::drivers::Driver;
use sockgate_proto::SocketCounts;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::{config::ClusterConfig, events::EventBus};
pub use directory::Directory;
use link::{Link, LinkError};
use messages::{NodeRequest, NodeResponse, Query};

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Redis could not be used.
    #[error("cluster unavailable: {0}")]
    Unavailable(#[from] LinkError),
}

/// What one node knows about its own sockets; the control plane implements it.
pub trait LocalNode: Send + Sync + 'static {
    /// Answers a question about this node's sockets and rooms.
    fn answer(&self, query: Query) -> BoxFuture<'_, NodeResponse>;
    /// This node's socket counts and number of public rooms.
    fn status(&self) -> BoxFuture<'_, NodeStatus>;
    /// This node's connected sockets and whether each has authenticated, for a rewrite of
    /// the [`Directory`]. A socket leaves this list (its `connected()` turns false) before
    /// its disconnection is reported, and enters it before its connection is.
    fn present(&self) -> Vec<(Sid, bool)>;
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

/// The answers to a question to every node.
#[derive(Debug)]
pub struct Answers {
    /// One per node that answered in time.
    pub answers: Vec<NodeResponse>,
    /// Nodes that were subscribed but did not answer in time.
    pub missing: usize,
}

/// This node's view of the cluster.
pub struct Cluster {
    node_id: String,
    redis: Option<Redis>,
    local: OnceLock<Arc<dyn LocalNode>>,
}

struct Redis {
    link: Link,
    uid: String,
    prefix: String,
    config: ClusterConfig,
    pending: Arc<Mutex<HashMap<u64, mpsc::Sender<NodeResponse>>>>,
    relay: relay::Relay,
    directory: Arc<Directory>,
    /// Set on graceful shutdown: the heartbeat stops.
    leaving: std::sync::atomic::AtomicBool,
}

impl Cluster {
    /// A node alone, in memory.
    pub fn memory(node_id: String) -> Self {
        Self {
            node_id,
            redis: None,
            local: OnceLock::new(),
        }
    }

    /// Whether this node is alone (the memory adapter): every socket is local.
    pub fn is_single_node(&self) -> bool {
        self.redis.is_none()
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
        Self {
            node_id,
            redis: Some(Redis {
                link,
                uid,
                prefix: config.key_prefix.clone(),
                config: config.clone(),
                pending: Arc::default(),
                relay: relay::Relay::default(),
                directory,
                leaving: Default::default(),
            }),
            local: OnceLock::new(),
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// `memory` or `redis`, as `GetInfo` shows it.
    pub fn adapter_name(&self) -> &'static str {
        if self.redis.is_some() {
            "redis"
        } else {
            "memory"
        }
    }

    /// Starts answering other nodes, the heartbeat and the event relay. Fails when Redis
    /// cannot be used at start.
    pub async fn start(
        self: &Arc<Self>,
        local: Arc<dyn LocalNode>,
        events: Arc<EventBus>,
    ) -> Result<(), ClusterError> {
        let _ = self.local.set(local.clone());
        let Some(redis) = &self.redis else {
            return Ok(());
        };
        registry::claim(redis, &self.node_id).await?;
        let requests = redis
            .link
            .subscribe(request_channel(&redis.prefix), 4096)
            .await?;
        let answers = redis
            .link
            .subscribe(answer_channel(&redis.prefix, &redis.uid), 4096)
            .await?;
        tokio::spawn(serve_requests(self.clone(), requests));
        tokio::spawn(route_answers(redis.pending.clone(), answers));
        directory::start(self.clone());
        tokio::spawn(registry::heartbeat(self.clone(), local));
        relay::start(self.clone(), events);
        Ok(())
    }

    fn local(&self) -> &Arc<dyn LocalNode> {
        self.local.get().expect("cluster started before use")
    }

    /// Asks every node (this one included) and returns the answers of those that answered
    /// within `cluster.request_timeout` (and how many did not). Fails when Redis is down;
    /// the whole call takes at most `cluster.request_timeout`.
    pub async fn ask(&self, query: Query) -> Result<Answers, ClusterError> {
        let Some(redis) = &self.redis else {
            return Ok(Answers {
                answers: vec![self.local().answer(query).await],
                missing: 0,
            });
        };
        let timeout = redis.link.timeout();
        let deadline = tokio::time::Instant::now() + timeout;
        let id = RandomState::new().hash_one(std::time::Instant::now());
        let channel = request_channel(&redis.prefix);
        let late = || ClusterError::Unavailable(LinkError::Timeout(timeout));
        let expected = tokio::time::timeout_at(deadline, redis.link.num_serv(&channel))
            .await
            .map_err(|_| late())??;
        let expected = usize::from(expected);
        let (tx, mut rx) = mpsc::channel(expected.max(1));
        let _pending = Pending::insert(&redis.pending, id, tx);
        let request = NodeRequest {
            id,
            reply_to: answer_channel(&redis.prefix, &redis.uid),
            query: Some(query),
        };
        tokio::time::timeout_at(
            deadline,
            redis.link.publish(channel, request.encode_to_vec()),
        )
        .await
        .map_err(|_| late())??;
        let mut answers = Vec::with_capacity(expected);
        while answers.len() < expected {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(answer)) => answers.push(answer),
                Ok(None) | Err(_) => break,
            }
        }
        let missing = expected - answers.len();
        if missing > 0 {
            // A node killed a moment ago may still be counted; a live node that does not
            // answer is worth a look.
            warn!(
                answered = answers.len(),
                expected,
                ?timeout,
                "some nodes did not answer in time; answering with the others"
            );
        }
        Ok(Answers { answers, missing })
    }

    /// For each of `sids` (none of them on this node): `Some(authenticated)` when the socket
    /// directory lists it on another live node, `None` when it does not (then only asking
    /// every node tells). `None` for the whole list without a directory (memory adapter).
    /// One Redis round trip; fails fast when Redis is down.
    pub async fn locate(&self, sids: &[Sid]) -> Result<Option<Vec<Option<bool>>>, ClusterError> {
        let Some(redis) = &self.redis else {
            return Ok(None);
        };
        directory::locate(redis, sids).await.map(Some)
    }

    /// Every live node's id and counts: this node's counted now, the others' as of their
    /// last heartbeat.
    pub async fn nodes(&self) -> Result<Vec<NodeStatus>, ClusterError> {
        let mine = self.local().status().await;
        let Some(redis) = &self.redis else {
            return Ok(vec![mine]);
        };
        let mut others = registry::live_nodes(redis).await?;
        others.retain(|(uid, _)| *uid != redis.uid);
        let mut nodes = vec![mine];
        nodes.extend(others.into_iter().map(|(_, status)| status));
        Ok(nodes)
    }

    /// Leaves the node registry (graceful shutdown). Failures are logged, not fatal.
    pub async fn leave(&self) {
        let Some(redis) = &self.redis else { return };
        redis
            .leaving
            .store(true, std::sync::atomic::Ordering::Release);
        if let Err(e) = registry::leave(redis).await {
            warn!("could not leave the node registry: {e}");
        }
    }

    /// Called when a watcher starts on this node: from the time this returns, every node
    /// relays its events here.
    pub async fn watch_started(&self) -> Result<(), ClusterError> {
        let Some(redis) = &self.redis else {
            return Ok(());
        };
        redis.relay.listen(&redis.link, &redis.prefix).await?;
        self.ask(Query::WatchStarted(messages::WatchStarted {}))
            .await?;
        Ok(())
    }
}

fn request_channel(prefix: &str) -> String {
    format!("{prefix}#req")
}

fn answer_channel(prefix: &str, uid: &str) -> String {
    format!("{prefix}#res#{uid}")
}

/// A question waiting for answers; forgotten when dropped (answered, failed or cancelled).
struct Pending<'a> {
    map: &'a Mutex<HashMap<u64, mpsc::Sender<NodeResponse>>>,
    id: u64,
}

impl<'a> Pending<'a> {
    fn insert(
        map: &'a Mutex<HashMap<u64, mpsc::Sender<NodeResponse>>>,
        id: u64,
        tx: mpsc::Sender<NodeResponse>,
    ) -> Self {
        map.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
        Self { map, id }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

async fn serve_requests(
    cluster: Arc<Cluster>,
    mut requests: socketioxide_redis::drivers::MessageStream<(String, Vec<u8>)>,
) {
    while let Some((_, payload)) = requests.next().await {
        let request = match NodeRequest::decode(payload.as_slice()) {
            Ok(request) => request,
            Err(e) => {
                warn!("undecodable cluster request: {e}");
                continue;
            }
        };
        let cluster = cluster.clone();
        tokio::spawn(async move {
            let Some(redis) = &cluster.redis else { return };
            let Some(query) = request.query else { return };
            let mut answer = match query {
                Query::WatchStarted(_) => {
                    redis.relay.watch_started();
                    NodeResponse::default()
                }
                other => cluster.local().answer(other).await,
            };
            answer.id = request.id;
            answer.node_id.clone_from(&cluster.node_id);
            if let Err(e) = redis
                .link
                .publish(request.reply_to, answer.encode_to_vec())
                .await
            {
                debug!("cannot answer a cluster request: {e}");
            }
        });
    }
}

async fn route_answers(
    pending: Arc<Mutex<HashMap<u64, mpsc::Sender<NodeResponse>>>>,
    mut answers: socketioxide_redis::drivers::MessageStream<(String, Vec<u8>)>,
) {
    while let Some((_, payload)) = answers.next().await {
        let Ok(answer) = NodeResponse::decode(payload.as_slice()) else {
            warn!("undecodable cluster answer");
            continue;
        };
        let pending = pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = pending.get(&answer.id) {
            let _ = tx.try_send(answer);
        }
    }
}
