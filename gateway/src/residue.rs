//! Gauges that show what a node still holds, read when metrics are scraped: live tokio
//! tasks, rooms in the adapter, and rooms kept alive only by sockets that are gone. On a
//! quiet node all of them return to their idle values after any churn; the robustness
//! suite waits for exactly that.

use std::collections::HashSet;

use socketioxide::{SocketIo, adapter::Adapter};
use tracing::warn;

use crate::{metrics::METRICS, rooms};

/// Sets `sockgate_tasks`, `sockgate_rooms{kind}` and `sockgate_stale_rooms`.
pub async fn refresh<A: Adapter>(io: &SocketIo<A>) {
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    METRICS.tasks.set(tasks as i64);
    let (live, stale) = room_counts(io).await;
    let internal = live
        .iter()
        .filter(|r| r.starts_with(rooms::INTERNAL_PREFIX))
        .count();
    for (kind, count) in [("public", live.len() - internal), ("internal", internal)] {
        METRICS
            .rooms
            .get_or_create(&[("kind", kind)])
            .set(count as i64);
    }
    METRICS.stale_rooms.set(stale as i64);
}

/// The rooms of this node's live sockets, and how many rooms of this node are held only
/// by sockets that left (read from this node's adapter only: no cluster round trip).
///
/// socketioxide drops a socket from every room when it leaves its namespace, but a
/// `join` that runs afterwards (a handler racing the disconnect) puts the dead id back
/// into rooms, where nothing will ever remove it. Such members are invisible to every
/// listing (they filter by live sockets) except one: the room list of a room selection,
/// which reads the adapter's own membership table. So the rooms reachable from the live
/// rooms and the state rooms, minus the live rooms, are rooms only dead ids hold.
/// (Reached through a shared room only; the state rooms catch an `authenticate` that
/// races the disconnect. Momentary false positives are possible while sockets come and
/// go; on a quiet node the value is exact.)
async fn room_counts<A: Adapter>(io: &SocketIo<A>) -> (HashSet<String>, usize) {
    let Some(before) = io.local().rooms().await.ok().map(names) else {
        return (HashSet::new(), 0);
    };
    let mut seeds: Vec<String> = before.iter().cloned().collect();
    seeds.push(rooms::UNAUTHENTICATED.to_owned());
    let reachable = io
        .local()
        .to(seeds)
        .rooms()
        .await
        .map(names)
        .unwrap_or_default();
    let after = io.local().rooms().await.map(names).unwrap_or_default();
    let stale: Vec<&String> = reachable
        .iter()
        .filter(|r| !before.contains(*r) && !after.contains(*r))
        .collect();
    if !stale.is_empty() {
        let some: Vec<_> = stale.iter().take(10).collect();
        warn!(count = stale.len(), rooms = ?some, "rooms held only by sockets that are gone");
    }
    let stale = stale.len();
    (after, stale)
}

fn names<R: ToString>(rooms: Vec<R>) -> HashSet<String> {
    rooms.into_iter().map(|r| r.to_string()).collect()
}
