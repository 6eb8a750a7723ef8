//! The node registry: each node writes its id and counts every `cluster.heartbeat_interval`
//! with an expiry of `cluster.node_ttl`; a node that stops (even SIGKILLed) drops out of the
//! list within `node_ttl`. Reading it costs one round trip plus one hash per live node.
//! The heartbeat also keeps the node's socket directory alive and tells the directory
//! which other nodes are live.

use std::sync::Arc;

use redis::Value;
use sockgate_proto::SocketCounts;
use tracing::{info, warn};

use super::{
    Redis,
    directory::{self, Node},
    names::{answer_channel, claim_key, inbox_channel, node_key, nodes_key, sockets_key},
};
use crate::{
    clock,
    cluster::{ClusterError, NodeRef, NodeStatus},
};

/// Takes the node id for this process. A previous process with the same id (a node that
/// was killed and restarted) is removed from the registry and the socket directory at
/// once, not after its expiry.
pub(super) async fn claim(redis: &Redis) -> Result<(), ClusterError> {
    let node_id = redis.node.id();
    let ttl = redis.config.node_ttl.as_millis() as u64;
    let previous: Option<String> = redis
        .link
        .run(
            redis::cmd("SET")
                .arg(claim_key(&redis.prefix, node_id))
                .arg(&redis.uid)
                .arg("PX")
                .arg(ttl)
                .arg("GET"),
        )
        .await?;
    if let Some(previous) = previous.filter(|p| *p != redis.uid) {
        info!(
            node_id,
            "replacing an earlier process registered with this node id"
        );
        let mut pipe = redis::pipe();
        pipe.cmd("ZREM")
            .arg(nodes_key(&redis.prefix))
            .arg(&previous)
            .ignore()
            .cmd("DEL")
            .arg(node_key(&redis.prefix, &previous))
            .arg(sockets_key(&redis.prefix, &previous))
            .ignore();
        redis.link.run_pipe::<()>(&pipe).await?;
    }
    Ok(())
}

/// Removes this node from the registry and the socket directory (graceful shutdown), so it
/// leaves `GetInfo` at once.
pub(super) async fn leave(redis: &Redis) -> Result<(), ClusterError> {
    let mut pipe = redis::pipe();
    pipe.cmd("ZREM")
        .arg(nodes_key(&redis.prefix))
        .arg(&redis.uid)
        .ignore()
        .cmd("DEL")
        .arg(node_key(&redis.prefix, &redis.uid))
        .arg(sockets_key(&redis.prefix, &redis.uid))
        .ignore();
    redis.link.run_pipe::<()>(&pipe).await?;
    Ok(())
}

async fn beat(redis: &Redis, status: &NodeStatus) -> Result<(), ClusterError> {
    let ttl = redis.config.node_ttl.as_millis() as u64;
    let now = clock::now_ms();
    let key = node_key(&redis.prefix, &redis.uid);
    let counts = &status.sockets;
    let mut pipe = redis::pipe();
    pipe.cmd("HSET")
        .arg(&key)
        .arg("node_id")
        .arg(&status.node_id)
        .arg("unauthorized")
        .arg(counts.unauthorized)
        .arg("authenticating")
        .arg(counts.authenticating)
        .arg("authenticated")
        .arg(counts.authenticated)
        .arg("total")
        .arg(counts.total)
        .arg("rooms")
        .arg(status.rooms)
        .ignore()
        .cmd("PEXPIRE")
        .arg(&key)
        .arg(ttl)
        .ignore()
        .cmd("ZADD")
        .arg(nodes_key(&redis.prefix))
        .arg(now + ttl)
        .arg(&redis.uid)
        .ignore()
        .cmd("ZREMRANGEBYSCORE")
        .arg(nodes_key(&redis.prefix))
        .arg("-inf")
        .arg(now)
        .ignore()
        .cmd("SET")
        .arg(claim_key(&redis.prefix, &status.node_id))
        .arg(&redis.uid)
        .arg("PX")
        .arg(ttl)
        .arg("GET")
        .cmd("PEXPIRE")
        .arg(sockets_key(&redis.prefix, &redis.uid))
        .arg(ttl)
        .cmd("ZRANGEBYSCORE")
        .arg(nodes_key(&redis.prefix))
        .arg(now)
        .arg("+inf");
    let (previous, directory_kept, live): (Option<String>, bool, Vec<String>) =
        redis.link.run_pipe(&pipe).await?;
    let others = live
        .iter()
        .filter(|uid| **uid != redis.uid)
        .map(|uid| Node {
            key: sockets_key(&redis.prefix, uid),
            channel: answer_channel(&redis.prefix, uid),
            inbox: NodeRef::new(inbox_channel(&redis.prefix, uid)),
        })
        .collect();
    directory::refresh(redis, others, !directory_kept && counts.total > 0);
    if previous.is_some_and(|p| p != redis.uid) {
        warn!(
            node_id = %status.node_id,
            "another live process uses this node id; give every node its own node_id"
        );
    }
    Ok(())
}

/// Publishes this node's presence and counts until the process ends. A failed beat (Redis
/// down) is logged once per outage; the next one also makes the connection reconnect.
pub(super) async fn heartbeat(redis: Arc<Redis>) {
    let mut ticker = tokio::time::interval(redis.config.heartbeat_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticker.tick().await;
        if redis.is_leaving() {
            return;
        }
        let status = redis.node.local().status().await;
        let result = beat(&redis, &status).await;
        redis.relay.refresh(&redis.link, &redis.prefix).await;
        match result {
            Ok(()) if failing => {
                failing = false;
                info!("Redis reachable again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                warn!("cluster heartbeat failed: {e}");
            }
            Err(_) => {}
        }
    }
}

fn field<T: std::str::FromStr + Default>(map: &[(String, String)], name: &str) -> T {
    map.iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_default()
}

/// The live nodes (adapter server id and status), as of their last heartbeat.
pub(super) async fn live_nodes(redis: &Redis) -> Result<Vec<(String, NodeStatus)>, ClusterError> {
    let uids: Vec<String> = redis
        .link
        .run(
            redis::cmd("ZRANGEBYSCORE")
                .arg(nodes_key(&redis.prefix))
                .arg(clock::now_ms())
                .arg("+inf"),
        )
        .await?;
    if uids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for uid in &uids {
        pipe.cmd("HGETALL").arg(node_key(&redis.prefix, uid));
    }
    let hashes: Vec<Value> = redis.link.run_pipe(&pipe).await?;
    let mut nodes = Vec::with_capacity(uids.len());
    for (uid, hash) in uids.into_iter().zip(hashes) {
        let Ok(map) = redis::from_redis_value::<Vec<(String, String)>>(hash) else {
            continue;
        };
        if map.is_empty() {
            continue;
        }
        let status = NodeStatus {
            node_id: field(&map, "node_id"),
            sockets: SocketCounts {
                unauthorized: field(&map, "unauthorized"),
                authenticating: field(&map, "authenticating"),
                authenticated: field(&map, "authenticated"),
                total: field(&map, "total"),
                // A node's status counts its connected sockets; GetInfo adds those away.
                away: 0,
            },
            rooms: field(&map, "rooms"),
        };
        nodes.push((uid, status));
    }
    Ok(nodes)
}
