//! The socket directory: which sockets each node holds and whether they have
//! authenticated, so that a `Send` to a socket id of another node is checked with one Redis
//! round trip (per other live node an `HMGET` and a `PUBSUB NUMSUB`, pipelined) instead of
//! a question to every node.
//!
//! Each node keeps one hash, `P:sockets:{uid}` (socket id → `1` authenticated / `0` not),
//! written by one task in ordered, batched pipelines from the changes the edge queues in
//! the [`Directory`] (no await on a socket's path). The hash expires `cluster.node_ttl`
//! after the node's last write or heartbeat, so a dead node's sockets leave the directory
//! within `node_ttl` by themselves; a node restarted with the same node id deletes its
//! predecessor's hash when it claims the id. A lookup also counts a node's entries only
//! while that node is subscribed to its answer channel: Redis drops the subscription as
//! soon as a killed node's connection closes, so its sockets are not found from then on. A
//! lost write (Redis down, queue full, Redis restarted empty) marks the directory lost and
//! the next heartbeat rewrites the whole hash from the node's sockets.
//!
//! Readers trust only what the directory confirms (the socket is on a live node, and
//! authenticated when that is asked). An id it does not list, or lists as not
//! authenticated, is asked to every node as before, which is authoritative: a write still
//! in flight makes a lookup slower, never wrong.

use std::sync::{Arc, RwLock};

use redis::Value;
use socketioxide::socket::Sid;
use tokio::sync::mpsc;
use tracing::debug;

use super::{LinkError, Redis, names::sockets_key};
use crate::cluster::{ClusterError, Directory, Listing, NodeRef, directory::Change};

/// Most changes in one pipeline.
const BATCH: usize = 1024;
/// Most sockets in one `HSET` of a rewrite.
const CHUNK: usize = 1000;
const AUTHENTICATED: &str = "1";
const NOT_AUTHENTICATED: &str = "0";

/// Where another node's entries are, and the channel it listens on while it lives.
pub(super) struct Node {
    /// Its hash.
    pub(super) key: String,
    /// Its answer channel.
    pub(super) channel: String,
    /// Where its own questions go.
    pub(super) inbox: NodeRef,
}

/// The other live nodes, as of the last heartbeat.
#[derive(Default)]
pub(super) struct Others(RwLock<Arc<[Node]>>);

/// Heartbeat: the other live nodes, and whether this node's hash was lost while it has
/// sockets (after Redis restarted empty, or expired during an outage).
pub(super) fn refresh(redis: &Redis, others: Vec<Node>, lost: bool) {
    *redis.others.0.write().unwrap_or_else(|e| e.into_inner()) = others.into();
    if lost {
        redis.reports.mark_lost();
    }
    redis.reports.rewrite_if_lost();
}

/// Starts the writer of this node's hash.
pub(super) fn start(redis: &Arc<Redis>) {
    if let Some(changes) = redis.reports.take_changes() {
        tokio::spawn(write(redis.clone(), changes));
    }
}

async fn write(redis: Arc<Redis>, mut changes: mpsc::Receiver<Change>) {
    let reports: &Directory = &redis.reports;
    let key = sockets_key(&redis.prefix, &redis.uid);
    let ttl = redis.config.node_ttl.as_millis() as u64;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let rewrite = tokio::select! {
            () = reports.rewrite_asked() => true,
            received = changes.recv_many(&mut batch, BATCH) => {
                if received == 0 {
                    return;
                }
                false
            }
        };
        let mut pipe = redis::pipe();
        if rewrite && reports.take_lost() {
            // Taken after the batch was received: the changes queued before the snapshot
            // are applied after it, those queued later too, so each socket ends with its
            // latest state (see `LocalNode::present`).
            let sockets = redis.node.local().present();
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
            reports.mark_lost();
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

/// For each of `sids`: where another live node (one subscribed to its answer channel) lists
/// it, `None` when no such node does. A socket listed by two nodes (a stale entry) is
/// placed where it is authenticated. One round trip.
pub(super) async fn locate(
    redis: &Redis,
    sids: &[Sid],
) -> Result<Vec<Option<Listing>>, ClusterError> {
    let others = redis
        .others
        .0
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut found: Vec<Option<Listing>> = vec![None; sids.len()];
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
    let unreadable = |e: redis::ParsingError| ClusterError::Unavailable(LinkError::Redis(e.into()));
    let mut replies = replies.into_iter();
    for node in others.iter() {
        let (Some(subscribed), Some(entries)) = (replies.next(), replies.next()) else {
            break;
        };
        let (_, subscribers): (String, u32) =
            redis::from_redis_value(subscribed).map_err(unreadable)?;
        let entries: Vec<Option<String>> = redis::from_redis_value(entries).map_err(unreadable)?;
        if subscribers == 0 {
            continue;
        }
        for (slot, value) in found.iter_mut().zip(entries) {
            let authenticated = match value.as_deref() {
                Some(AUTHENTICATED) => true,
                Some(_) if slot.is_none() => false,
                _ => continue,
            };
            *slot = Some(Listing {
                node: node.inbox.clone(),
                authenticated,
            });
        }
    }
    Ok(found)
}
