//! The event bus behind `WatchEvents`: lifecycle and client events of this node's sockets,
//! fanned out to every watcher whose filter matches.
//!
//! Each watcher has its own queue, bounded in events and in bytes. When a watcher does not
//! keep up, its events are dropped and counted, and the next event it can take is preceded by an
//! `EVENT_KIND_DROPPED` marker carrying that count: a slow watcher never grows memory and
//! never slows the sockets or the other watchers. With no watcher, publishing costs one
//! atomic load.

use std::{
    pin::Pin,
    sync::{
        Arc, Mutex, OnceLock, RwLock,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use futures_util::Stream;
use sockgate_proto::{EventKind, WatchEventsRequest, WatchEventsResponse};
use tokio::sync::{
    mpsc::{self, error::TrySendError},
    watch,
};
use tonic::Status;

use prost::Message;

use crate::{clock, config::WatchConfig, metrics::METRICS, rooms};

/// An event of a socket of `origin`, for the watchers of the other nodes (the wire
/// format of `cluster::relay`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RelayedEvent {
    /// Adapter server id of the node that published it.
    #[prost(string, tag = "1")]
    pub origin: String,
    /// The event (time and node id filled in).
    #[prost(message, optional, tag = "2")]
    pub event: Option<WatchEventsResponse>,
    /// The socket's public rooms when it happened (for watchers filtering by room).
    #[prost(string, repeated, tag = "3")]
    pub socket_rooms: Vec<String>,
}

/// What a watcher asked for.
#[derive(Debug, Default)]
struct Filter {
    kinds: Vec<i32>,
    event_names: Vec<String>,
    room: Option<String>,
}

impl Filter {
    fn matches(&self, event: &WatchEventsResponse, rooms: &mut RoomsOnce<'_>) -> bool {
        // Another node's drop marker: whatever the filter, the watcher must know.
        if event.kind == EventKind::Dropped as i32 {
            return true;
        }
        if !self.kinds.is_empty() && !self.kinds.contains(&event.kind) {
            return false;
        }
        if event.kind == EventKind::ClientEvent as i32
            && !self.event_names.is_empty()
            && !self
                .event_names
                .iter()
                .any(|p| rooms::pattern_matches(p, &event.event, None))
        {
            return false;
        }
        match &self.room {
            Some(room) => rooms.get().iter().any(|r| r == room),
            None => true,
        }
    }
}

/// The rooms of the event's socket, computed at most once per published event and only
/// when a watcher filters by room.
struct RoomsOnce<'a> {
    compute: Option<Box<dyn FnOnce() -> Vec<String> + 'a>>,
    rooms: Vec<String>,
}

impl RoomsOnce<'_> {
    fn get(&mut self) -> &[String] {
        if let Some(compute) = self.compute.take() {
            self.rooms = compute();
        }
        &self.rooms
    }
}

/// The event that tells a watcher how many events it missed.
pub fn drop_marker(dropped: u64, node_id: &str) -> WatchEventsResponse {
    WatchEventsResponse {
        kind: EventKind::Dropped as i32,
        time: Some(clock::timestamp_now()),
        node_id: node_id.to_owned(),
        dropped,
        ..WatchEventsResponse::default()
    }
}

/// What an event weighs in a watcher's byte budget.
fn weight(event: &WatchEventsResponse) -> usize {
    event.encoded_len()
}

struct Watcher {
    filter: Filter,
    tx: mpsc::Sender<Arc<WatchEventsResponse>>,
    dropped: Mutex<u64>,
    /// Bytes of the events in `tx`'s queue.
    queued_bytes: AtomicUsize,
    /// Most of them; an event alone in the queue may weigh more.
    budget: usize,
}

impl Watcher {
    /// Queues `event` unless the queue is full in events or in bytes.
    fn try_send(&self, event: Arc<WatchEventsResponse>) -> Result<(), TrySendError<()>> {
        let size = weight(&event);
        let before = self.queued_bytes.fetch_add(size, Ordering::AcqRel);
        let result = if before > 0 && before + size > self.budget {
            Err(TrySendError::Full(()))
        } else {
            self.tx.try_send(event).map_err(|e| match e {
                TrySendError::Full(_) => TrySendError::Full(()),
                TrySendError::Closed(_) => TrySendError::Closed(()),
            })
        };
        if result.is_err() {
            self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
        }
        result
    }

    fn deliver(&self, event: &Arc<WatchEventsResponse>, node_id: &str) {
        let mut dropped = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
        if *dropped > 0 {
            match self.try_send(Arc::new(drop_marker(*dropped, node_id))) {
                Ok(()) => *dropped = 0,
                Err(TrySendError::Full(())) => {
                    *dropped += 1;
                    METRICS.watch_dropped.inc();
                    return;
                }
                Err(TrySendError::Closed(())) => return,
            }
        }
        if let Err(TrySendError::Full(())) = self.try_send(event.clone()) {
            *dropped += 1;
            METRICS.watch_dropped.inc();
        }
    }
}

/// Why a watch cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// Too many watchers.
    #[error("{0} watchers are already connected to this node (watch.max_watchers)")]
    TooMany(usize),
    /// A filter value is unknown.
    #[error("kinds contains an unknown event kind {0}")]
    UnknownKind(i32),
}

/// The bus of one node. In a cluster it also relays this node's events to the other
/// nodes while anyone watches (see `cluster::relay`).
pub struct EventBus {
    watchers: RwLock<Vec<Arc<Watcher>>>,
    count: AtomicUsize,
    buffer: usize,
    buffer_bytes: usize,
    max_watchers: usize,
    node_id: String,
    /// Local watcher count, for the relay to stop listening when it drops to 0.
    count_changes: watch::Sender<usize>,
    /// Set while a watcher is connected somewhere in the cluster.
    relaying: AtomicBool,
    relay: OnceLock<mpsc::Sender<RelayedEvent>>,
    relay_dropped: AtomicU64,
}

impl EventBus {
    /// A bus with the queues and the watcher limit of `config`.
    pub fn new(node_id: String, config: &WatchConfig) -> Self {
        Self {
            watchers: RwLock::new(Vec::new()),
            count: AtomicUsize::new(0),
            buffer: config.buffer,
            buffer_bytes: config.buffer_bytes,
            max_watchers: config.max_watchers,
            node_id,
            count_changes: watch::Sender::new(0),
            relaying: AtomicBool::new(false),
            relay: OnceLock::new(),
            relay_dropped: AtomicU64::new(0),
        }
    }

    /// Whether anyone is watching, here or on another node; callers skip building events
    /// otherwise.
    pub fn is_watched(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0 || self.relaying.load(Ordering::Relaxed)
    }

    /// Sends this node's events to `relay` (bounded) while [`set_relaying`](Self::set_relaying) is on.
    pub fn relay_to(&self, relay: mpsc::Sender<RelayedEvent>) {
        let _ = self.relay.set(relay);
    }

    /// Turns relaying to other nodes on or off.
    pub fn set_relaying(&self, on: bool) {
        self.relaying.store(on, Ordering::Relaxed);
    }

    /// Events that could not be queued for other nodes since the last call.
    pub fn take_relay_dropped(&self) -> u64 {
        self.relay_dropped.swap(0, Ordering::AcqRel)
    }

    /// Follows the number of this node's watchers.
    pub fn local_watchers(&self) -> watch::Receiver<usize> {
        self.count_changes.subscribe()
    }

    fn set_count(&self, count: usize) {
        self.count.store(count, Ordering::Relaxed);
        self.count_changes.send_replace(count);
        METRICS.watchers.set(count as i64);
    }

    /// Starts a watch.
    pub fn subscribe(
        self: &Arc<Self>,
        request: WatchEventsRequest,
    ) -> Result<WatchStream, WatchError> {
        for kind in &request.kinds {
            if EventKind::try_from(*kind).is_err() {
                return Err(WatchError::UnknownKind(*kind));
            }
        }
        let (tx, rx) = mpsc::channel(self.buffer);
        let watcher = Arc::new(Watcher {
            filter: Filter {
                kinds: request.kinds,
                event_names: request.event_names,
                room: (!request.room.is_empty()).then_some(request.room),
            },
            tx,
            dropped: Mutex::new(0),
            queued_bytes: AtomicUsize::new(0),
            budget: self.buffer_bytes,
        });
        let mut watchers = self.watchers.write().unwrap_or_else(|e| e.into_inner());
        watchers.retain(|w| !w.tx.is_closed());
        if watchers.len() >= self.max_watchers {
            return Err(WatchError::TooMany(watchers.len()));
        }
        watchers.push(watcher.clone());
        self.set_count(watchers.len());
        Ok(WatchStream {
            rx,
            bus: self.clone(),
            watcher,
        })
    }

    fn unsubscribe(&self, watcher: &Arc<Watcher>) {
        let mut watchers = self.watchers.write().unwrap_or_else(|e| e.into_inner());
        watchers.retain(|w| !Arc::ptr_eq(w, watcher));
        self.set_count(watchers.len());
    }

    /// Publishes `event` (its `time` and `node_id` are filled in here). `rooms` gives the
    /// rooms of the event's socket; it runs only if a watcher filters by room or the event
    /// goes to other nodes.
    pub fn publish(&self, mut event: WatchEventsResponse, rooms: impl FnOnce() -> Vec<String>) {
        if !self.is_watched() {
            return;
        }
        event.time = Some(clock::timestamp_now());
        event.node_id.clone_from(&self.node_id);
        let event = Arc::new(event);
        let mut rooms = RoomsOnce {
            compute: Some(Box::new(rooms)),
            rooms: Vec::new(),
        };
        self.deliver_local(&event, &mut rooms);
        if self.relaying.load(Ordering::Relaxed)
            && let Some(relay) = self.relay.get()
        {
            let relayed = RelayedEvent {
                origin: String::new(),
                event: Some(Arc::unwrap_or_clone(event)),
                socket_rooms: rooms.get().to_vec(),
            };
            if relay.try_send(relayed).is_err() {
                self.relay_dropped.fetch_add(1, Ordering::AcqRel);
                METRICS.watch_dropped.inc();
            }
        }
    }

    /// Hands an event of another node's socket to this node's watchers.
    pub fn deliver_relayed(&self, event: WatchEventsResponse, socket_rooms: Vec<String>) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut rooms = RoomsOnce {
            compute: None,
            rooms: socket_rooms,
        };
        self.deliver_local(&Arc::new(event), &mut rooms);
    }

    fn deliver_local(&self, event: &Arc<WatchEventsResponse>, rooms: &mut RoomsOnce<'_>) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let watchers = self.watchers.read().unwrap_or_else(|e| e.into_inner());
        for watcher in watchers.iter() {
            if watcher.filter.matches(event, rooms) {
                watcher.deliver(event, &self.node_id);
            }
        }
    }
}

/// The stream of one watcher; leaving the bus when dropped (the client went away).
pub struct WatchStream {
    rx: mpsc::Receiver<Arc<WatchEventsResponse>>,
    bus: Arc<EventBus>,
    watcher: Arc<Watcher>,
}

impl Stream for WatchStream {
    type Item = Result<WatchEventsResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(event) => Poll::Ready(event.map(|e| {
                self.watcher
                    .queued_bytes
                    .fetch_sub(weight(&e), Ordering::AcqRel);
                Ok(Arc::unwrap_or_clone(e))
            })),
            // Caught up: report what was dropped now rather than with the next event.
            Poll::Pending => {
                let mut dropped = self
                    .watcher
                    .dropped
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if *dropped == 0 {
                    return Poll::Pending;
                }
                let marker = drop_marker(*dropped, &self.bus.node_id);
                *dropped = 0;
                Poll::Ready(Some(Ok(marker)))
            }
        }
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.bus.unsubscribe(&self.watcher);
    }
}

/// A lifecycle event of `socket_id`.
pub fn lifecycle(kind: EventKind, socket_id: &str, user_id: Option<&str>) -> WatchEventsResponse {
    WatchEventsResponse {
        kind: kind as i32,
        socket_id: socket_id.to_owned(),
        user_id: user_id.unwrap_or_default().to_owned(),
        ..WatchEventsResponse::default()
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    fn config(buffer: usize, buffer_bytes: usize, max_watchers: usize) -> WatchConfig {
        WatchConfig {
            buffer,
            buffer_bytes,
            max_watchers,
        }
    }

    fn client_event(name: &str) -> WatchEventsResponse {
        WatchEventsResponse {
            event: name.into(),
            ..lifecycle(EventKind::ClientEvent, "s", Some("u"))
        }
    }

    #[tokio::test]
    async fn every_watcher_gets_matching_events() {
        let bus = Arc::new(EventBus::new("n".into(), &config(8, usize::MAX, 4)));
        let mut all = bus.subscribe(WatchEventsRequest::default()).unwrap();
        let mut chat = bus
            .subscribe(WatchEventsRequest {
                event_names: vec!["chat:*".into()],
                ..Default::default()
            })
            .unwrap();
        let mut in_room = bus
            .subscribe(WatchEventsRequest {
                room: "r".into(),
                ..Default::default()
            })
            .unwrap();
        bus.publish(client_event("echo"), Vec::new);
        bus.publish(client_event("chat:message"), || vec!["r".to_owned()]);
        assert_eq!(all.next().await.unwrap().unwrap().event, "echo");
        assert_eq!(all.next().await.unwrap().unwrap().event, "chat:message");
        assert_eq!(chat.next().await.unwrap().unwrap().event, "chat:message");
        let got = in_room.next().await.unwrap().unwrap();
        assert_eq!(
            (got.event.as_str(), got.node_id.as_str()),
            ("chat:message", "n")
        );
    }

    #[tokio::test]
    async fn a_slow_watcher_gets_a_drop_marker_and_bounded_memory() {
        let bus = Arc::new(EventBus::new("n".into(), &config(4, usize::MAX, 4)));
        let mut slow = bus.subscribe(WatchEventsRequest::default()).unwrap();
        for i in 0..100 {
            bus.publish(client_event(&format!("e{i}")), Vec::new);
        }
        let first: Vec<_> = (0..4)
            .map(|_| slow.rx.try_recv().unwrap().event.clone())
            .collect();
        assert_eq!(first, ["e0", "e1", "e2", "e3"]);
        assert!(slow.rx.try_recv().is_err(), "only the buffer was kept");
        // Caught up: the marker comes at once.
        let marker = slow.next().await.unwrap().unwrap();
        assert_eq!(marker.kind, EventKind::Dropped as i32);
        assert_eq!(marker.dropped, 96);
        bus.publish(client_event("late"), Vec::new);
        assert_eq!(slow.next().await.unwrap().unwrap().event, "late");
    }

    #[tokio::test]
    async fn a_watchers_queue_is_bounded_in_bytes_too() {
        let big = |name: &str| WatchEventsResponse {
            data_json: "x".repeat(1000),
            ..client_event(name)
        };
        let one = weight(&big("e0"));
        let bus = Arc::new(EventBus::new("n".into(), &config(100, 2 * one + 64, 4)));
        let mut slow = bus.subscribe(WatchEventsRequest::default()).unwrap();
        for i in 0..5 {
            bus.publish(big(&format!("e{i}")), Vec::new);
        }
        // Two fit; the small drop markers may slip in between the drops.
        let (mut delivered, mut dropped) = (Vec::new(), 0);
        while dropped < 3 {
            let event = slow.next().await.unwrap().unwrap();
            match event.kind() {
                EventKind::Dropped => dropped += event.dropped,
                _ => delivered.push(event.event),
            }
        }
        assert_eq!(delivered, ["e0", "e1"]);
        // Read, the bytes are free again; an event past the budget goes into an empty queue.
        let huge = WatchEventsResponse {
            data_json: "x".repeat(10_000),
            ..client_event("huge")
        };
        bus.publish(huge, Vec::new);
        assert_eq!(slow.next().await.unwrap().unwrap().event, "huge");
        assert_eq!(slow.watcher.queued_bytes.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_marker_precedes_events_queued_after_a_drop() {
        let bus = Arc::new(EventBus::new("n".into(), &config(2, usize::MAX, 4)));
        let mut slow = bus.subscribe(WatchEventsRequest::default()).unwrap();
        for name in ["a", "b", "c", "d"] {
            bus.publish(client_event(name), Vec::new);
        }
        assert_eq!(slow.next().await.unwrap().unwrap().event, "a");
        // One slot free: the marker takes it, "e" is dropped too.
        bus.publish(client_event("e"), Vec::new);
        assert_eq!(slow.next().await.unwrap().unwrap().event, "b");
        let marker = slow.next().await.unwrap().unwrap();
        assert_eq!(
            (marker.kind, marker.dropped),
            (EventKind::Dropped as i32, 2)
        );
        // "e" was counted in the pending drops reported when the stream caught up.
        let next = slow.next().await.unwrap().unwrap();
        assert_eq!((next.kind, next.dropped), (EventKind::Dropped as i32, 1));
    }

    #[tokio::test]
    async fn relayed_events_go_through_the_same_filters() {
        let bus = Arc::new(EventBus::new("here".into(), &config(8, usize::MAX, 4)));
        let mut in_room = bus
            .subscribe(WatchEventsRequest {
                room: "r".into(),
                kinds: vec![EventKind::ClientEvent as i32],
                ..Default::default()
            })
            .unwrap();
        let from = |name: &str| WatchEventsResponse {
            node_id: "there".into(),
            ..client_event(name)
        };
        bus.deliver_relayed(from("elsewhere"), vec!["other".into()]);
        bus.deliver_relayed(from("in-r"), vec!["r".into()]);
        // Another node's drop marker reaches every watcher, whatever its filter.
        bus.deliver_relayed(drop_marker(3, "there"), Vec::new());
        let got = in_room.next().await.unwrap().unwrap();
        assert_eq!(
            (got.event.as_str(), got.node_id.as_str()),
            ("in-r", "there")
        );
        let marker = in_room.next().await.unwrap().unwrap();
        assert_eq!(
            (marker.kind, marker.dropped, marker.node_id.as_str()),
            (EventKind::Dropped as i32, 3, "there")
        );
    }

    #[tokio::test]
    async fn relaying_is_bounded_and_counts_what_it_drops() {
        let bus = Arc::new(EventBus::new("here".into(), &config(8, usize::MAX, 4)));
        let (tx, mut rx) = mpsc::channel(2);
        bus.relay_to(tx);
        bus.publish(client_event("before"), Vec::new);
        assert!(
            rx.try_recv().is_err(),
            "nothing relayed while nobody watches"
        );
        bus.set_relaying(true);
        assert!(bus.is_watched());
        for name in ["a", "b", "c", "d"] {
            bus.publish(client_event(name), || vec!["r".to_owned()]);
        }
        let first = rx.try_recv().unwrap();
        assert_eq!(first.event.unwrap().node_id, "here");
        assert_eq!(first.socket_rooms, ["r"]);
        assert_eq!(bus.take_relay_dropped(), 2);
        assert_eq!(bus.take_relay_dropped(), 0);
    }

    #[test]
    fn watchers_are_limited_and_leave_when_dropped() {
        let bus = Arc::new(EventBus::new("n".into(), &config(4, usize::MAX, 1)));
        let first = bus.subscribe(WatchEventsRequest::default()).unwrap();
        assert!(matches!(
            bus.subscribe(WatchEventsRequest::default()),
            Err(WatchError::TooMany(1))
        ));
        drop(first);
        assert!(!bus.is_watched());
        bus.subscribe(WatchEventsRequest::default()).unwrap();
    }
}
