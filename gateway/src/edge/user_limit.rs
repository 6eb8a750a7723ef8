//! `edge.limits.max_connections_per_user`: how many sockets a user may still have on this
//! node when one of its sockets authenticates. This node's count is taken with the
//! admission itself (`SocketIndex::admit_user`); the other nodes' count comes from one
//! cluster question (each node counts the user's sockets in its index), asked only when
//! the limit is on and there are other nodes.
//!
//! The question is answered before this node counts, so sockets of one user admitted at
//! the same moment on different nodes do not see each other: each can take the last
//! place (the user then has one socket over the limit per such node). A node that does
//! not answer within `cluster.request_timeout`, or Redis being down, counts as no socket:
//! users are not refused because the cluster cannot tell.

use std::sync::{Arc, OnceLock};

use sockgate_proto::ListSocketsRequest;
use tracing::debug;

use crate::cluster::{Cluster, messages::Query};

/// The per-user limit of this node.
#[derive(Default)]
pub struct UserLimit {
    /// `max_connections_per_user`; 0: off.
    max: u32,
    /// Set once the cluster is started (the cluster is built after the edge).
    cluster: OnceLock<Arc<Cluster>>,
}

impl UserLimit {
    /// A limit of `max` sockets per user (0: none).
    pub fn new(max: u32) -> Self {
        Self {
            max,
            cluster: OnceLock::new(),
        }
    }

    /// Whether the limit is on.
    pub fn is_on(&self) -> bool {
        self.max > 0
    }

    /// Counts the sockets on the other nodes of `cluster` from now on.
    pub fn count_across(&self, cluster: Arc<Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// Most sockets `user` may have on this node now, the one being admitted included.
    pub async fn most_on_node(&self, user: &str) -> usize {
        let max = self.max as usize;
        max.saturating_sub(self.on_other_nodes(user).await)
    }

    /// The user's sockets on the other nodes (0 on a single node, or when the cluster
    /// cannot tell).
    async fn on_other_nodes(&self, user: &str) -> usize {
        let Some(cluster) = self.cluster.get().filter(|c| !c.is_single_node()) else {
            return 0;
        };
        // Page size 0: each node answers with its count only.
        let question = Query::Sockets(ListSocketsRequest {
            user_id: user.to_owned(),
            page_size: 0,
            ..ListSocketsRequest::default()
        });
        match cluster.ask(question).await {
            Ok(answers) => answers
                .answers
                .iter()
                .filter(|answer| answer.node_id != cluster.node_id())
                .map(|answer| answer.matched as usize)
                .sum(),
            Err(e) => {
                debug!(%e, "cannot count a user's sockets on the other nodes; counting none");
                0
            }
        }
    }
}
