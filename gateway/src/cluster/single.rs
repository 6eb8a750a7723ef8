//! The `memory` backend: the node is alone, every question is answered by its own sockets
//! and there is nothing to start, relay or leave.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use socketioxide::socket::Sid;

use super::{
    Answer, Answers, Backend, ClusterError, Located, NodeRef, NodeStatus, messages::Query,
    node::ThisNode,
};
use crate::{events::EventBus, recovery::Recovery};

/// A node alone.
pub(super) struct SingleNode {
    node: Arc<ThisNode>,
}

impl SingleNode {
    pub(super) fn new(node: Arc<ThisNode>) -> Self {
        Self { node }
    }
}

impl Backend for SingleNode {
    fn adapter_name(&self) -> &'static str {
        "memory"
    }

    fn is_single_node(&self) -> bool {
        true
    }

    fn start(
        self: Arc<Self>,
        _: Arc<EventBus>,
        _: Option<Arc<Recovery>>,
    ) -> BoxFuture<'static, Result<(), ClusterError>> {
        Box::pin(async { Ok(()) })
    }

    fn ask(&self, query: Query) -> BoxFuture<'_, Result<Answers, ClusterError>> {
        Box::pin(async move {
            Ok(Answers {
                answers: vec![self.node.local().answer(query).await],
                missing: 0,
            })
        })
    }

    /// No directory: the caller asks this node itself, which is authoritative.
    fn locate<'a>(&'a self, _: &'a [Sid]) -> BoxFuture<'a, Located> {
        Box::pin(async { Ok(None) })
    }

    /// Unreachable in practice (no directory names another node): this node answers.
    fn ask_each(&self, questions: Vec<(NodeRef, Query)>) -> BoxFuture<'_, Vec<Answer>> {
        Box::pin(async move {
            let mut answers = Vec::with_capacity(questions.len());
            for (_, query) in questions {
                answers.push(Ok(Some(self.node.local().answer(query).await)));
            }
            answers
        })
    }

    fn others(&self) -> BoxFuture<'_, Result<Vec<NodeStatus>, ClusterError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn leave(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Local watchers see local events without any relay.
    fn watch_started(&self) -> BoxFuture<'_, Result<(), ClusterError>> {
        Box::pin(async { Ok(()) })
    }
}
