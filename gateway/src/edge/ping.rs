//! The application `ping {time}`: one ticker per node emits to the authenticated sockets of
//! this node (a local room emit), instead of a timer per socket.

use std::time::Duration;

use socketioxide::{SocketIo, adapter::Adapter};
use tokio::task::JoinHandle;
use tracing::debug;

use super::protocol;
use crate::{clock::iso_now, rooms};

/// Starts the ticker; `None` when the interval is 0.
pub fn spawn<A: Adapter>(io: SocketIo<A>, interval: Duration) -> Option<JoinHandle<()>> {
    if interval.is_zero() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let payload = protocol::Ping { time: iso_now() };
            if let Err(e) = io
                .local()
                .except(rooms::UNAUTHENTICATED)
                .emit(protocol::PING, &payload)
                .await
            {
                debug!(error = %e, "application ping failed");
            }
        }
    }))
}
