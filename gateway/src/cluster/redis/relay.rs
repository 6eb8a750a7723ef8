//! `WatchEvents` across nodes. While a watcher is connected anywhere, every node publishes
//! its sockets' events on one Redis channel, in the order they happened (one task, one
//! pipeline per batch); the nodes that have watchers subscribe to it and hand the events
//! to their own watchers' queues (same filters, bounded queues and drop markers as local
//! events). A node learns that a watcher started from a question every node acknowledges
//! before the watch is confirmed, and stops publishing when a heartbeat finds nobody
//! subscribed any more.
//!
//! Guarantees: the events of one socket reach a watcher in order (one publisher per
//! socket, Redis keeps a connection's order). Events of different nodes are interleaved
//! in arrival order. Delivery is at most once: an event published while Redis is down, or
//! while the node's outbound queue is full, is lost and counted in a drop marker.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use futures_util::StreamExt;
use prost::Message;
use socketioxide_redis::drivers::Driver;
use tokio::sync::{Mutex, mpsc};
use tracing::{debug, warn};

use super::{Link, Redis, names::events_channel};
use crate::{
    cluster::ClusterError,
    events::{EventBus, RelayedEvent, drop_marker},
};

/// Events queued for Redis before they are dropped.
const OUTBOUND_QUEUE: usize = 8192;
/// Most events in one pipeline.
const BATCH: usize = 256;

/// The relay's state on one node.
#[derive(Default)]
pub(super) struct Relay {
    /// Whether this node is subscribed to the events channel.
    listening: Mutex<bool>,
    /// Bumped by every "watch started"; a refresh that overlaps one keeps the relay on.
    generation: AtomicU64,
    bus: std::sync::OnceLock<Arc<EventBus>>,
    uid: std::sync::OnceLock<String>,
}

impl Relay {
    /// Subscribes this node to the other nodes' events (if not already).
    pub(super) async fn listen(&self, link: &Link, prefix: &str) -> Result<(), ClusterError> {
        let mut listening = self.listening.lock().await;
        if *listening {
            return Ok(());
        }
        let (Some(bus), Some(uid)) = (self.bus.get(), self.uid.get()) else {
            return Ok(());
        };
        let mut stream = link
            .subscribe(events_channel(prefix), OUTBOUND_QUEUE)
            .await?;
        *listening = true;
        let bus = bus.clone();
        let uid = uid.clone();
        tokio::spawn(async move {
            while let Some((_, payload)) = stream.next().await {
                match RelayedEvent::decode(payload.as_slice()) {
                    Ok(relayed) if relayed.origin == uid => {}
                    Ok(RelayedEvent {
                        event: Some(event),
                        socket_rooms,
                        ..
                    }) => bus.deliver_relayed(event, socket_rooms),
                    Ok(_) => {}
                    Err(e) => warn!("undecodable relayed event: {e}"),
                }
            }
        });
        Ok(())
    }

    async fn stop_listening(&self, link: &Link, prefix: &str) {
        let mut listening = self.listening.lock().await;
        if *listening {
            if let Err(e) = link.unsubscribe(events_channel(prefix)).await {
                debug!("cannot unsubscribe from relayed events: {e}");
            }
            *listening = false;
        }
    }

    /// A watcher started somewhere: publish events from now on.
    pub(super) fn watch_started(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(bus) = self.bus.get() {
            bus.set_relaying(true);
        }
    }

    /// Heartbeat: keep publishing while some node listens, stop otherwise.
    pub(super) async fn refresh(&self, link: &Link, prefix: &str) {
        let Some(bus) = self.bus.get() else { return };
        let generation = self.generation.load(Ordering::Acquire);
        match link.num_serv(&events_channel(prefix)).await {
            Ok(0) if self.generation.load(Ordering::Acquire) == generation => {
                bus.set_relaying(false);
            }
            Ok(0) => {}
            Ok(_) => bus.set_relaying(true),
            Err(_) => {}
        }
    }
}

/// Connects the bus to Redis: its relayed events go out through one ordered task, and the
/// node stops listening when its last watcher leaves.
pub(super) fn start(redis: &Arc<Redis>, bus: Arc<EventBus>) {
    let _ = redis.relay.bus.set(bus.clone());
    let _ = redis.relay.uid.set(redis.uid.clone());
    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
    bus.relay_to(tx);
    tokio::spawn(publish(redis.clone(), bus.clone(), rx));
    let mut watchers = bus.local_watchers();
    let redis = redis.clone();
    tokio::spawn(async move {
        while watchers.changed().await.is_ok() {
            if *watchers.borrow_and_update() == 0 {
                redis.relay.stop_listening(&redis.link, &redis.prefix).await;
            }
        }
    });
}

async fn publish(redis: Arc<Redis>, bus: Arc<EventBus>, mut rx: mpsc::Receiver<RelayedEvent>) {
    let channel = events_channel(&redis.prefix);
    let lost = AtomicU64::new(0);
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let dropped = bus.take_relay_dropped() + lost.swap(0, Ordering::AcqRel);
        let mut pipe = redis::pipe();
        if dropped > 0 {
            let marker = RelayedEvent {
                origin: redis.uid.clone(),
                event: Some(drop_marker(dropped, redis.node.id())),
                socket_rooms: Vec::new(),
            };
            pipe.cmd("PUBLISH")
                .arg(&channel)
                .arg(marker.encode_to_vec())
                .ignore();
        }
        let count = batch.len() as u64 + dropped;
        for mut event in batch.drain(..) {
            event.origin.clone_from(&redis.uid);
            pipe.cmd("PUBLISH")
                .arg(&channel)
                .arg(event.encode_to_vec())
                .ignore();
        }
        if let Err(e) = redis.link.run_pipe::<()>(&pipe).await {
            // The events are lost; the next batch's marker reports them.
            lost.fetch_add(count, Ordering::AcqRel);
            debug!("cannot relay {count} events: {e}");
        }
    }
}
