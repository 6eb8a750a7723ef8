//! The gateway's Redis channels and keys, with `P` = `cluster.key_prefix` and `uid` the
//! adapter's server id (random per process: a node restarted with the same node id is a
//! new uid, never mistaken for the dead one). socketioxide's own channels are
//! `P-request#/#`, `P-request#/#{uid}#` and `P-response#/#{uid}#`.

/// `P#req`: questions to every node.
pub(super) fn request_channel(prefix: &str) -> String {
    format!("{prefix}#req")
}

/// `P#res#{uid}`: a node's answers; a node is subscribed to it while it lives.
pub(super) fn answer_channel(prefix: &str, uid: &str) -> String {
    format!("{prefix}#res#{uid}")
}

/// `P#events`: events relayed to other nodes' watchers.
pub(super) fn events_channel(prefix: &str) -> String {
    format!("{prefix}#events")
}

/// `P:nodes`: live nodes, scored by expiry.
pub(super) fn nodes_key(prefix: &str) -> String {
    format!("{prefix}:nodes")
}

/// `P:node:{uid}`: a node's id and counts.
pub(super) fn node_key(prefix: &str, uid: &str) -> String {
    format!("{prefix}:node:{uid}")
}

/// `P:node-id:{node_id}`: which process holds a node id.
pub(super) fn claim_key(prefix: &str, node_id: &str) -> String {
    format!("{prefix}:node-id:{node_id}")
}

/// `P:sockets:{uid}`: a node's socket ids (the socket directory).
pub(super) fn sockets_key(prefix: &str, uid: &str) -> String {
    format!("{prefix}:sockets:{uid}")
}
