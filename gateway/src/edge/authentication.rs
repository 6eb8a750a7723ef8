//! The `authenticate` flow: run the authenticator chain, then either admit the socket to
//! its rooms and send `authenticated`, or send `unauthenticated` and disconnect it.

use std::{sync::Arc, task::Poll, time::Duration};

use serde_json::Value;
use socketioxide::{adapter::Adapter, extract::SocketRef};
use sockgate_proto::{EventKind, WatchEventsResponse};
use tracing::{debug, info, warn};

use super::{Edge, protocol, session::Session};
use crate::{
    auth::{Handshake, Outcome},
    clock::{self, iso_now},
    events,
    metrics::METRICS,
    rooms,
};

/// Handles one `authenticate` event.
pub async fn authenticate<A: Adapter>(
    edge: Arc<Edge<A>>,
    socket: SocketRef<A>,
    data: Option<Value>,
) {
    let Some(session) = Session::of(&socket) else {
        return;
    };
    if !session.begin_auth() {
        debug!(sid = %socket.id, "second authenticate ignored");
        return;
    }
    let auth = session.take_auth();
    let handshake = Handshake {
        socket_id: socket.id.to_string(),
        request: socket.req_parts(),
        auth: auth.as_ref(),
        event_data: data.as_ref(),
        meta: &session.meta,
    };
    // The state room shows the socket as authenticating while an authenticator is awaited
    // (a hook). One that decides at once (a JWT, development mode) leaves no time in which
    // it could be seen: joining and leaving it would only cost two room updates.
    let mut deciding = std::pin::pin!(edge.auth.authenticate(&handshake));
    let (outcome, state_room) = match futures_util::poll!(deciding.as_mut()) {
        Poll::Ready(outcome) => (outcome, false),
        Poll::Pending => {
            socket.join(rooms::AUTHENTICATING);
            (deciding.await, true)
        }
    };
    let leave_state_room = || {
        if state_room {
            socket.leave(rooms::AUTHENTICATING);
        }
    };
    if !still_connected(&edge, &socket).await {
        // The socket may have been removed before the join above: its membership of
        // the state room would outlive it.
        leave_state_room();
        debug!(sid = %socket.id, "socket left during authentication");
        return;
    }
    match outcome {
        Outcome::Allow(identity) => {
            METRICS.auth("allowed");
            let mut joined = edge.config.default_rooms.clone();
            if let Some(user) = &identity.user_id {
                joined.push(rooms::user_room(user));
            }
            joined.extend(identity.rooms.iter().cloned());
            let mut internal = vec![rooms::AUTHENTICATED.to_owned()];
            if let Some(user) = &identity.user_id {
                internal.push(rooms::user_id_room(user));
            }
            if !super::join_while_connected(
                &socket,
                joined.iter().chain(&internal).cloned().collect(),
            ) {
                leave_state_room();
                debug!(sid = %socket.id, "socket left during authentication");
                return;
            }
            leave_state_room();
            let user = identity.user_id.clone();
            info!(sid = %socket.id, user = user.as_deref().unwrap_or(""), "authenticated");
            if !session.authenticated(identity) {
                // Cut off for abuse while the authenticator ran.
                socket.leave(rooms::AUTHENTICATED);
                return;
            }
            let id = socket.id.to_string();
            // Published before the client can read `authenticated`: the events it sends
            // once it has must reach watchers after this one.
            if edge.events.is_watched() {
                edge.events.publish(
                    WatchEventsResponse {
                        rooms: joined,
                        ..events::lifecycle(EventKind::Authenticated, &id, user.as_deref())
                    },
                    || socket_rooms(&socket),
                );
            }
            let payload = protocol::Authenticated {
                id: &id,
                time: iso_now(),
            };
            if let Err(e) = socket.emit(protocol::AUTHENTICATED, &payload) {
                debug!(sid = %socket.id, error = %e, "could not send authenticated");
            }
            // Only now, after `authenticated` is on the socket's ordered channel, can
            // application events reach it.
            socket.leave(rooms::UNAUTHENTICATED);
            edge.directory.present(socket.id, true);
            if session.is_cut_off() {
                // Cut off for its event rate since `authenticated` above: the cut-off put
                // it back in this room before the line above took it out. (Reported after
                // the line above, so the directory ends with `not authenticated` whichever
                // ran first.)
                socket.join(rooms::UNAUTHENTICATED);
                edge.directory.present(socket.id, false);
            }
        }
        Outcome::Deny(reason) => {
            METRICS.auth("denied");
            info!(sid = %socket.id, %reason, "authentication denied");
            leave_state_room();
            reject(&edge, &socket, &session, protocol::INVALID_TOKEN_MESSAGE);
        }
        Outcome::Fail(reason) => {
            METRICS.auth("failed");
            warn!(sid = %socket.id, %reason, "authenticator failed");
            leave_state_room();
            reject(&edge, &socket, &session, protocol::AUTH_FAILED_MESSAGE);
        }
    }
}

/// Whether the socket can still be written to. socketioxide sends the connect packet
/// before it marks the socket connected, so on a busy node a client's first event can be
/// handled in between, when `emit` would still refuse: wait out that short window. A
/// socket no longer in its namespace has left.
async fn still_connected<A: Adapter>(edge: &Edge<A>, socket: &SocketRef<A>) -> bool {
    for _ in 0..1000 {
        if socket.connected() {
            return true;
        }
        if edge.io.get_socket(socket.id).is_none() {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    false
}

/// The public rooms of a local socket.
pub fn socket_rooms<A: Adapter>(socket: &SocketRef<A>) -> Vec<String> {
    rooms::public(socket.rooms())
}

/// Sends `unauthenticated` and disconnects; the disconnect packet follows the message on
/// the same ordered channel, so the client reads the message first.
fn reject<A: Adapter>(
    edge: &Edge<A>,
    socket: &SocketRef<A>,
    session: &Session,
    message: &'static str,
) {
    session.rejected();
    if edge.events.is_watched() {
        edge.events.publish(
            WatchEventsResponse {
                reason: message.to_owned(),
                ..events::lifecycle(EventKind::AuthFailed, &socket.id.to_string(), None)
            },
            || socket_rooms(socket),
        );
    }
    let payload = protocol::Unauthenticated {
        message,
        time: iso_now(),
    };
    if let Err(e) = socket.emit(protocol::UNAUTHENTICATED, &payload) {
        debug!(sid = %socket.id, error = %e, "could not send unauthenticated");
    }
    if let Err(e) = socket.clone().disconnect() {
        debug!(sid = %socket.id, error = %e, "disconnect after denial failed");
    }
}

/// Disconnects the sockets of this node that have not authenticated within the auth
/// timeout. One task sweeps them all, a few times per timeout, instead of a timer per
/// socket; a socket gets between 1 and 1¼ timeouts. It also disconnects the sockets cut
/// off for abuse, one to two passes after they were told why.
pub fn spawn_auth_sweeper<A: Adapter>(edge: Arc<Edge<A>>) -> tokio::task::JoinHandle<()> {
    let timeout = edge.config.auth_timeout;
    let period = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let now_ms = clock::now_ms();
            let waiting = edge.io.local().except(rooms::AUTHENTICATED).sockets();
            for socket in waiting {
                let Some(session) = Session::of(&socket) else {
                    continue;
                };
                if session.is_cut_off() {
                    if session.cut_off_due() {
                        debug!(sid = %socket.id, "disconnecting a socket cut off for abuse");
                        let _ = socket.disconnect();
                    }
                    continue;
                }
                let age =
                    Duration::from_millis(now_ms.saturating_sub(session.meta.connected_at_ms));
                if age >= timeout && !session.is_authenticated() {
                    METRICS.auth("timeout");
                    info!(sid = %socket.id, ?timeout, "not authenticated in time, disconnecting");
                    session.rejected();
                    let _ = socket.disconnect();
                }
            }
        }
    })
}
