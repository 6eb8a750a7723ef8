//! Questions to every node (a page of its sockets or rooms, one socket, "a watcher
//! started"): published on one channel, answered by each node on the asker's own channel,
//! matched by id. A question to one node (a `Batch`'s sends for its sockets) is published
//! on that node's own channel. A question takes at most `cluster.request_timeout` in all,
//! Redis commands included; a node that does not answer by then is counted as missing.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{Arc, Mutex},
};

use futures_util::StreamExt;
use prost::Message;
use socketioxide_redis::drivers::{Driver, MessageStream};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{
    Redis,
    names::{answer_channel, inbox_channel, request_channel},
};
use crate::cluster::{
    Answer, Answers, ClusterError, NodeRef,
    messages::{NodeRequest, NodeResponse, Query},
};

/// Channel of the received messages of one subscription.
const SUBSCRIPTION_QUEUE: usize = 4096;

/// The questions of this node waiting for answers, by id.
#[derive(Default, Clone)]
pub(super) struct Waiting(Arc<Mutex<HashMap<u64, mpsc::Sender<NodeResponse>>>>);

/// Subscribes to the questions of every node, to those for this node alone and to the
/// answers to this node's, and serves them until the process ends.
pub(super) async fn start(redis: &Arc<Redis>) -> Result<(), ClusterError> {
    let requests = redis
        .link
        .subscribe(request_channel(&redis.prefix), SUBSCRIPTION_QUEUE)
        .await?;
    let own = redis
        .link
        .subscribe(inbox_channel(&redis.prefix, &redis.uid), SUBSCRIPTION_QUEUE)
        .await?;
    let answers = redis
        .link
        .subscribe(
            answer_channel(&redis.prefix, &redis.uid),
            SUBSCRIPTION_QUEUE,
        )
        .await?;
    tokio::spawn(serve(redis.clone(), requests));
    tokio::spawn(serve(redis.clone(), own));
    tokio::spawn(route_answers(redis.questions.clone(), answers));
    Ok(())
}

/// Asks every node (this one included) and returns the answers of those that answered
/// before `cluster.request_timeout` (and how many did not).
pub(super) async fn ask(redis: &Redis, query: Query) -> Result<Answers, ClusterError> {
    let timeout = redis.config.request_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let channel = request_channel(&redis.prefix);
    let late = |_| ClusterError::Deadline(timeout);
    let expected = tokio::time::timeout_at(deadline, redis.link.num_serv(&channel))
        .await
        .map_err(late)??;
    let expected = usize::from(expected);
    let answers = publish_and_wait(redis, channel, query, expected, deadline).await?;
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

/// Asks the one node `node` and returns its answer, `None` when it did not answer before
/// `cluster.request_timeout`.
pub(super) async fn ask_one(redis: &Redis, node: NodeRef, query: Query) -> Answer {
    let deadline = tokio::time::Instant::now() + redis.config.request_timeout;
    let mut answers = publish_and_wait(redis, node.inbox().to_owned(), query, 1, deadline).await?;
    Ok(answers.pop())
}

/// Publishes `query` on `channel` and collects up to `expected` answers until `deadline`.
async fn publish_and_wait(
    redis: &Redis,
    channel: String,
    query: Query,
    expected: usize,
    deadline: tokio::time::Instant,
) -> Result<Vec<NodeResponse>, ClusterError> {
    let id = RandomState::new().hash_one(std::time::Instant::now());
    let (tx, mut rx) = mpsc::channel(expected.max(1));
    let _pending = Pending::insert(&redis.questions, id, tx);
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
    .map_err(|_| ClusterError::Deadline(redis.config.request_timeout))??;
    let mut answers = Vec::with_capacity(expected);
    while answers.len() < expected {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(answer)) => answers.push(answer),
            Ok(None) | Err(_) => break,
        }
    }
    Ok(answers)
}

/// A question waiting for answers; forgotten when dropped (answered, failed or cancelled).
struct Pending<'a> {
    waiting: &'a Waiting,
    id: u64,
}

impl<'a> Pending<'a> {
    fn insert(waiting: &'a Waiting, id: u64, tx: mpsc::Sender<NodeResponse>) -> Self {
        waiting
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        Self { waiting, id }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.waiting
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// Answers every node's questions, each in its own task.
async fn serve(redis: Arc<Redis>, mut requests: MessageStream<(String, Vec<u8>)>) {
    while let Some((_, payload)) = requests.next().await {
        let request = match NodeRequest::decode(payload.as_slice()) {
            Ok(request) => request,
            Err(e) => {
                warn!("undecodable cluster request: {e}");
                continue;
            }
        };
        tokio::spawn(answer(redis.clone(), request));
    }
}

async fn answer(redis: Arc<Redis>, request: NodeRequest) {
    let Some(query) = request.query else { return };
    let mut answer = match query {
        Query::WatchStarted(_) => {
            redis.relay.watch_started();
            NodeResponse::default()
        }
        other => redis.node.local().answer(other).await,
    };
    answer.id = request.id;
    answer.node_id = redis.node.id().to_owned();
    if let Err(e) = redis
        .link
        .publish(request.reply_to, answer.encode_to_vec())
        .await
    {
        debug!("cannot answer a cluster request: {e}");
    }
}

/// Hands each answer to the question it answers, if that one still waits.
async fn route_answers(waiting: Waiting, mut answers: MessageStream<(String, Vec<u8>)>) {
    while let Some((_, payload)) = answers.next().await {
        let Ok(answer) = NodeResponse::decode(payload.as_slice()) else {
            warn!("undecodable cluster answer");
            continue;
        };
        let waiting = waiting.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = waiting.get(&answer.id) {
            let _ = tx.try_send(answer);
        }
    }
}
