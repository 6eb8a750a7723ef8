//! The socket directory: which sockets each node holds and whether they have
//! authenticated, so that a `Send` to a socket id of another node is checked with one Redis
//! round trip (per other live node an `HMGET` and a `PUBSUB NUMSUB`, pipelined) instead of
//! a question to every node.
//!
//! Each node keeps one hash, `P:sockets:{uid}` (socket id → `1` authenticated / `0` not),
//! written by one task in ordered, batched pipelines: the edge only queues a change (no
//! await on a socket's path). The hash expires `cluster.node_ttl` after the node's last
//! write or heartbeat, so a dead node's sockets leave the directory within `node_ttl` by
//! themselves; a node restarted with the same node id deletes its predecessor's hash when
//! it claims the id. A lookup also counts a node's entries only while that node is
//! subscribed to its answer channel: Redis drops the subscription as soon as a killed
//! node's connection closes, so its sockets are not found from then on. A lost write (Redis down, queue full, Redis restarted empty) marks the
//! directory dirty and the next heartbeat rewrites the whole hash from the node's sockets.
//!
//! Readers trust only what the directory confirms (the socket is on a live node, and
//! authenticated when that is asked). An id it does not list, or lists as not
//! authenticated, is asked to every node as before, which is authoritative: a write still
//! in flight makes a lookup slower, never wrong.

use std::sync::{
    Arc, OnceLock, RwLock,
    atomic::{AtomicBool, Ordering},
};

use socketioxide::socket::Sid;
use tokio::sync::{Notify, mpsc};
use tracing::debug;

use redis::Value;

use super::{Cluster, ClusterError, Redis, link::LinkError};

/// Changes queued for Redis before the directory is marked dirty.
const QUEUE: usize = 65_536;
/// Most changes in one pipeline.
const BATCH: usize = 1024;
/// Most sockets in one `HSET` of a rewrite.
const CHUNK: usize = 1000;
const AUTHENTICATED: &str = "1";
const NOT_AUTHENTICATED: &str = "0";

pub(super) fn sockets_key(prefix: &str, uid: &str) -> String {
    format!("{prefix}:sockets:{uid}")
}

/// Where another node's entries are, and the channel it listens on while it lives.
pub(super) struct Node {
    /// Its hash.
    pub(super) key: String,
    /// Its answer channel.
    pub(super) channel: String,
}

enum Change {
    /// Connected, or its authentication changed.
    Present(Sid, bool),
    /// Disconnected.
    Gone(Sid),
}

/// This node's side of the directory: the edge reports its sockets here. With the memory
/// adapter it is never started and every report is a no-op.
#[derive(Default)]
pub struct Directory {
    changes: OnceLock<mpsc::Sender<Change>>,
    dirty: AtomicBool,
    resync: Notify,
    /// The other live nodes, as of the last heartbeat.
    others: RwLock<Arc<[Node]>>,
}

impl Directory {
    /// A connected socket (or one whose authentication changed) of this node.
    pub fn present(&self, sid: Sid, authenticated: bool) {
        self.queue(Change::Present(sid, authenticated));
    }

    /// A socket of this node disconnected.
    pub fn gone(&self, sid: Sid) {
        self.queue(Change::Gone(sid));
    }

    fn queue(&self, change: Change) {
        if let Some(changes) = self.changes.get()
            && changes.try_send(change).is_err()
        {
            self.dirty.store(true, Ordering::Release);
        }
    }

    /// Heartbeat: the other live nodes, and whether this node's hash exists while it has
    /// sockets (it does not after Redis restarted empty, or expired during an outage).
    pub(super) fn refresh(&self, others: Vec<Node>, lost: bool) {
        *self.others.write().unwrap_or_else(|e| e.into_inner()) = others.into();
        if lost {
            self.dirty.store(true, Ordering::Release);
        }
        if self.dirty.load(Ordering::Acquire) {
            self.resync.notify_one();
        }
    }
}

/// Starts the writer of this node's hash.
pub(super) fn start(cluster: Arc<Cluster>) {
    let Some(redis) = &cluster.redis else { return };
    let (tx, rx) = mpsc::channel(QUEUE);
    if redis.directory.changes.set(tx).is_ok() {
        tokio::spawn(write(cluster.clone(), rx));
    }
}

async fn write(cluster: Arc<Cluster>, mut rx: mpsc::Receiver<Change>) {
    let Some(redis) = &cluster.redis else { return };
    let directory = &redis.directory;
    let key = sockets_key(&redis.prefix, &redis.uid);
    let ttl = redis.config.node_ttl.as_millis() as u64;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let resync = tokio::select! {
            () = directory.resync.notified() => true,
            received = rx.recv_many(&mut batch, BATCH) => {
                if received == 0 {
                    return;
                }
                false
            }
        };
        let mut pipe = redis::pipe();
        if resync && directory.dirty.swap(false, Ordering::AcqRel) {
            // Taken after the batch was received: the changes queued before the snapshot
            // are applied after it, those queued later too, so each socket ends with its
            // latest state (see `LocalNode::present`).
            let sockets = cluster.local().present();
            pipe.cmd("DEL").arg(&key).ignore();
            for chunk in sockets.chunks(CHUNK) {
                let cmd = pipe.cmd("HSET").arg(&key);
                for (sid, authenticated) in chunk {
                    cmd.arg(sid.as_str()).arg(flag(*authenticated));
                }
                cmd.ignore();
            }
            debug!(
                sockets = sockets.len(),
                "rewriting this node's socket directory"
            );
        }
        for change in batch.drain(..) {
            match change {
                Change::Present(sid, authenticated) => pipe
                    .cmd("HSET")
                    .arg(&key)
                    .arg(sid.as_str())
                    .arg(flag(authenticated))
                    .ignore(),
                Change::Gone(sid) => pipe.cmd("HDEL").arg(&key).arg(sid.as_str()).ignore(),
            };
        }
        // A hash created by this batch expires too if the node dies before its heartbeat.
        pipe.cmd("PEXPIRE").arg(&key).arg(ttl).ignore();
        if let Err(e) = redis.link.run_pipe::<()>(&pipe).await {
            directory.dirty.store(true, Ordering::Release);
            debug!("cannot write the socket directory (rewritten once Redis answers): {e}");
        }
    }
}

fn flag(authenticated: bool) -> &'static str {
    if authenticated {
        AUTHENTICATED
    } else {
        NOT_AUTHENTICATED
    }
}

/// For each of `sids`: `Some(authenticated)` when another live node (one subscribed to its
/// answer channel) lists it, `None` when no such node does. One round trip.
pub(super) async fn locate(redis: &Redis, sids: &[Sid]) -> Result<Vec<Option<bool>>, ClusterError> {
    let others = redis
        .directory
        .others
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut found = vec![None; sids.len()];
    if others.is_empty() {
        return Ok(found);
    }
    let mut pipe = redis::pipe();
    for node in others.iter() {
        pipe.cmd("PUBSUB").arg("NUMSUB").arg(&node.channel);
        let cmd = pipe.cmd("HMGET").arg(&node.key);
        for sid in sids {
            cmd.arg(sid.as_str());
        }
    }
    let replies: Vec<Value> = redis.link.run_pipe(&pipe).await?;
    let mut replies = replies.into_iter();
    while let (Some(subscribed), Some(entries)) = (replies.next(), replies.next()) {
        let (_, subscribers): (String, u32) = redis::from_redis_value(subscribed)
            .map_err(|e| ClusterError::Unavailable(LinkError::Redis(e.into())))?;
        let entries: Vec<Option<String>> = redis::from_redis_value(entries)
            .map_err(|e| ClusterError::Unavailable(LinkError::Redis(e.into())))?;
        if subscribers == 0 {
            continue;
        }
        for (slot, value) in found.iter_mut().zip(entries) {
            match value.as_deref() {
                Some(AUTHENTICATED) => *slot = Some(true),
                Some(_) if slot.is_none() => *slot = Some(false),
                _ => {}
            }
        }
    }
    Ok(found)
}
