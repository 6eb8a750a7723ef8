//! The `authenticate` flow: run the authenticator chain, then either admit the socket to
//! its rooms and send `authenticated`, or send `unauthenticated` and disconnect it (also
//! when the authenticator allowed it but its user has all the sockets it may have).

use std::{sync::Arc, time::Duration};

use serde_json::Value;
use socketioxide::{adapter::Adapter, extract::SocketRef};
use sockgate_proto::{EventKind, WatchEventsResponse};
use tracing::{debug, info, warn};

use super::{
    Edge, protocol, recovery,
    session::Session,
    state::{SocketState, Transition, Unapplied},
};
use crate::{
    auth::{Handshake, Identity, Outcome},
    clock::{self, iso_now},
    events,
    metrics::{AuthOutcome, METRICS, Refusal},
    recovery::Resumable,
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
    // Bounded: a socket whose connect packet could not be sent is never opened nor closed.
    let opened = tokio::time::timeout(edge.config.auth_timeout, session.wait_open()).await;
    if opened != Ok(true) {
        debug!(sid = %socket.id, "socket left before it was connected");
        return;
    }
    if session.apply(&socket, Transition::BeginAuth).is_err() {
        if session.resumable().is_some_and(|r| r.recovered) && session.is_authenticated() {
            let auth = session.take_auth();
            let handshake = handshake(&socket, &session, auth.as_ref(), data.as_ref());
            recovery::authenticate_recovered(&edge, &socket, &session, &handshake).await;
        } else {
            debug!(sid = %socket.id, "second authenticate ignored");
        }
        return;
    }
    let auth = session.take_auth();
    let handshake = handshake(&socket, &session, auth.as_ref(), data.as_ref());
    match edge.auth.authenticate(&handshake).await {
        Outcome::Allow(identity) => {
            METRICS.auth(AuthOutcome::Allowed);
            let most_on_node = match identity.user_id.as_deref() {
                Some(user) if edge.user_limit.is_on() => {
                    Some(edge.user_limit.most_on_node(user).await)
                }
                _ => None,
            };
            // With recovery on, the socket is owed the events recorded after it was
            // admitted: admitted under the history's lock, where that offset is known.
            let history = edge.recovery.as_ref().map(|recovery| recovery.order());
            if let (Some(history), Some(resumable)) = (&history, session.resumable()) {
                session.set_resumable(Resumable {
                    since: history.head(),
                    ..resumable
                });
            }
            admit(&edge, &socket, &session, identity, most_on_node);
            drop(history);
        }
        Outcome::Deny(reason) => {
            METRICS.auth(AuthOutcome::Denied);
            info!(sid = %socket.id, %reason, "authentication denied");
            reject(&edge, &socket, &session, protocol::INVALID_TOKEN_MESSAGE);
        }
        Outcome::Fail(reason) => {
            METRICS.auth(AuthOutcome::Failed);
            warn!(sid = %socket.id, %reason, "authenticator failed");
            reject(&edge, &socket, &session, protocol::AUTH_FAILED_MESSAGE);
        }
    }
}

fn handshake<'a, A: Adapter>(
    socket: &'a SocketRef<A>,
    session: &'a Session,
    auth: Option<&'a Value>,
    event_data: Option<&'a Value>,
) -> Handshake<'a> {
    Handshake {
        socket_id: socket.id.to_string(),
        request: socket.req_parts(),
        auth,
        event_data,
        meta: &session.meta,
    }
}

/// Admits the socket: it joins the default rooms, its user's room and the authenticator's
/// rooms, then receives `authenticated` (published to watchers first: the events the
/// client sends once it has read it must reach watchers after this one). Past
/// `most_on_node` sockets of its user on this node, it is refused instead.
fn admit<A: Adapter>(
    edge: &Edge<A>,
    socket: &SocketRef<A>,
    session: &Arc<Session>,
    identity: Identity,
    most_on_node: Option<usize>,
) {
    let mut rooms = edge.config.default_rooms.clone();
    rooms.extend(identity.user_id.as_deref().map(rooms::user_room));
    rooms.extend(identity.rooms.iter().cloned());
    let user = identity.user_id.clone();
    let id = socket.id.to_string();
    let joined = rooms.clone();
    let mut deliver = |public: &[String]| {
        info!(sid = %socket.id, user = user.as_deref().unwrap_or(""), "authenticated");
        if edge.events.is_watched() {
            let public = public.to_vec();
            edge.events.publish(
                WatchEventsResponse {
                    rooms: joined.clone(),
                    ..events::lifecycle(EventKind::Authenticated, &id, user.as_deref())
                },
                || public,
            );
        }
        let payload = protocol::Authenticated {
            id: &id,
            time: iso_now(),
        };
        if let Err(e) = socket.emit(protocol::AUTHENTICATED, &payload) {
            debug!(sid = %socket.id, error = %e, "could not send authenticated");
        }
    };
    let admitted = Transition::Admit {
        identity: Arc::new(identity),
        rooms,
        most_on_node,
        deliver: &mut deliver,
    };
    match session.apply(socket, admitted) {
        Ok(_) => {}
        Err(Unapplied::UserFull) => {
            METRICS.refused(Refusal::ConnectionsPerUser);
            info!(
                sid = %socket.id,
                user = user.as_deref().unwrap_or(""),
                setting = "edge.limits.max_connections_per_user",
                "authentication refused: the user has all the connections it may have"
            );
            reject(edge, socket, session, protocol::USER_CONNECTIONS_MESSAGE);
        }
        // Disconnected, or cut off for abuse, while the authenticator ran.
        Err(Unapplied::NotApplicable) => {
            debug!(sid = %socket.id, "socket left or was cut off during authentication");
        }
    }
}

/// Sends `unauthenticated` and disconnects; the disconnect packet follows the message on
/// the same ordered channel, so the client reads the message first.
fn reject<A: Adapter>(
    edge: &Edge<A>,
    socket: &SocketRef<A>,
    session: &Arc<Session>,
    message: &'static str,
) {
    if session.apply(socket, Transition::Refuse).is_err() {
        debug!(sid = %socket.id, "socket left or was cut off during authentication");
        return;
    }
    if edge.events.is_watched() {
        edge.events.publish(
            WatchEventsResponse {
                reason: message.to_owned(),
                ..events::lifecycle(EventKind::AuthFailed, &socket.id.to_string(), None)
            },
            || session.rooms(),
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
            for session in edge.mirrors.index.not_authenticated() {
                let Some(socket) = edge.io.get_socket(session.sid) else {
                    continue;
                };
                sweep(&socket, &session, now_ms, timeout);
            }
        }
    })
}

/// One sweeper pass over a socket that has not authenticated.
fn sweep<A: Adapter>(
    socket: &SocketRef<A>,
    session: &Arc<Session>,
    now_ms: u64,
    timeout: Duration,
) {
    if session.is_cut_off() {
        if let Ok(SocketState::CutOff { due: true }) =
            session.apply(socket, Transition::MarkCutOffDue)
        {
            debug!(sid = %socket.id, "disconnecting a socket cut off for abuse");
            let _ = socket.clone().disconnect();
        }
        return;
    }
    let age = Duration::from_millis(now_ms.saturating_sub(session.meta.connected_at_ms));
    if age >= timeout && session.apply(socket, Transition::Refuse).is_ok() {
        METRICS.auth(AuthOutcome::Timeout);
        info!(sid = %socket.id, ?timeout, "not authenticated in time, disconnecting");
        let _ = socket.clone().disconnect();
    }
}
