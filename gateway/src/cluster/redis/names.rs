//! The gateway's Redis channels and keys, with `P` = `cluster.key_prefix` and `uid` the
//! adapter's server id (random per process: a node restarted with the same node id is a
//! new uid, never mistaken for the dead one). socketioxide's own channels are
//! `P-request#/#`, `P-request#/#{uid}#` and `P-response#/#{uid}#`.

/// `P#req`: questions to every node.
pub(super) fn request_channel(prefix: &str) -> String {
    format!("{prefix}#req")
}

/// `P#req#{uid}`: questions to one node.
pub(super) fn inbox_channel(prefix: &str, uid: &str) -> String {
    format!("{prefix}#req#{uid}")
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

/// `P:recovery:events`: the stream of replayable events (connection state recovery).
pub(super) fn recovery_stream_key(prefix: &str) -> String {
    format!("{prefix}:recovery:events")
}

/// `P:recovery:away:{sid}`: the session of a socket that went away, until its window
/// closes.
pub(super) fn recovery_away_key(prefix: &str, sid: &str) -> String {
    format!("{prefix}:recovery:away:{sid}")
}

/// `P:recovery:live:{uid}`: the sessions of a node's live sockets, expiring a recovery
/// window after the node's last heartbeat.
pub(super) fn recovery_live_key(prefix: &str, uid: &str) -> String {
    format!("{prefix}:recovery:live:{uid}")
}

/// `P:recovery:away`: the socket ids of the sessions away, scored by when their window
/// closes (for counts).
pub(super) fn recovery_away_index_key(prefix: &str) -> String {
    format!("{prefix}:recovery:away")
}

/// `P:recovery:away-ids`: the same socket ids, all scored 0, so that they are read in id
/// order (`ZRANGEBYLEX`, for listings).
pub(super) fn recovery_away_ids_key(prefix: &str) -> String {
    format!("{prefix}:recovery:away-ids")
}

/// `P:recovery:nodes`: nodes with live sessions, scored by their last heartbeat.
pub(super) fn recovery_nodes_key(prefix: &str) -> String {
    format!("{prefix}:recovery:nodes")
}
