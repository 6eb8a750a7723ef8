//! Connection state recovery at the edge: the socket's pid and what it is owed when it is
//! set up, the restore of a recovered session once it is connected, the session kept when
//! it goes away, and the `authenticate` of a recovered socket. The history and the saved
//! sessions are in [`crate::recovery`].

use std::sync::Arc;

use serde_json::Value;
use socketioxide::{
    ProtocolVersion,
    adapter::Adapter,
    extract::SocketRef,
    resolver::{ConnectRequest, Resolution},
    socket::{DisconnectReason, Sid},
};
use sockgate_proto::{EventKind, WatchEventsResponse};
use tracing::{debug, info};

use super::{
    Edge, protocol,
    session::Session,
    state::{Mirrors, SocketState, Transition},
};
use crate::{
    auth::Handshake,
    clock::iso_now,
    config::Parser,
    events,
    metrics::{METRICS, RecoveryOutcome},
    outgoing::{Args, Data},
    recovery::{OFFSET_KEY, PID_KEY, Recovery, Restore, Resumable, history::Entry},
};

/// The connect resolver: decides a connecting socket's id (its old one when the session
/// it presents can be restored, a new one otherwise) and its pid, for the main namespace
/// of protocol v5 clients (v4 has no recovery).
pub fn resolve(
    recovery: Arc<Recovery>,
    mirrors: Arc<Mirrors>,
    request: ConnectRequest,
) -> impl Future<Output = Resolution> + Send + 'static {
    let eligible = request.ns() == "/" && request.protocol() == ProtocolVersion::V5;
    let auth = request.auth::<Value>().and_then(Result::ok);
    async move {
        if !eligible {
            return Resolution::fresh();
        }
        // A session whose socket this node still lists (its client came back before its
        // old transport was seen to close) cannot take that id: a new session.
        let listed = |sid| mirrors.index.get(sid).is_some();
        let (sid, pid) = recovery.resolve(auth.as_ref(), listed).await;
        Resolution {
            sid: Some(sid),
            pid: pid.map(|p| p.reveal()),
        }
    }
}

/// A recovered session waiting for its socket to be connected.
pub struct PendingRestore(pub Restore);

/// Removes what recovery put in the CONNECT `auth` object: the pid is a secret the
/// backends never see (the handshake's `auth` reaches the hooks), and the offset is
/// recovery's own.
pub fn strip_recovery_keys(auth: &mut Option<Value>) {
    if let Some(Value::Object(object)) = auth {
        object.remove(PID_KEY);
        object.remove(OFFSET_KEY);
    }
}

/// Sets up a connecting socket's recovery: its pid's digest, and the session to restore
/// once it is connected (put in the socket's extensions). True when it is a recovered
/// session.
pub fn set_up<A: Adapter>(recovery: &Recovery, socket: &SocketRef<A>, session: &Session) -> bool {
    let Some(resolved) = recovery.take(socket.id) else {
        return false;
    };
    let Some(pid) = resolved.pid else {
        return false;
    };
    let since = resolved
        .restore
        .as_ref()
        .map(|r| r.after)
        .unwrap_or_default();
    session.set_resumable(Resumable {
        digest: pid.digest(),
        since,
        recovered: resolved.restore.is_some(),
    });
    match resolved.restore {
        Some(restore) => {
            socket.extensions.insert(Arc::new(PendingRestore(restore)));
            true
        }
        None => false,
    }
}

/// Keeps again the session a refused socket had recovered.
pub fn give_back(recovery: &Recovery, sid: Sid) {
    if let Some(restore) = recovery.take(sid).and_then(|resolved| resolved.restore) {
        recovery.store().away(sid, restore.saved);
    }
}

/// Restores a recovered session once its socket is connected: under the history's lock,
/// replays what it missed and puts it back in its rooms as its identity, so that no event
/// is missed or doubled between the replay and live delivery. When the missed events can
/// no longer be replayed exactly (forgotten since the connect), the socket is
/// disconnected: its client reconnects to a new session.
pub async fn restore<A: Adapter>(edge: &Edge<A>, socket: &SocketRef<A>, session: &Arc<Session>) {
    let (Some(recovery), Some(pending)) = (
        edge.recovery.as_ref(),
        socket.extensions.remove::<Arc<PendingRestore>>(),
    ) else {
        return;
    };
    let restore = &pending.0;
    let restored = recovery
        .restore_with(socket.id, restore, |history, missed| {
            let mut deliver = || replay(socket, &missed, edge.config.parser);
            let restored = Transition::Restore {
                identity: restore.saved.identity.clone(),
                rooms: restore.saved.rooms.clone(),
                deliver: &mut deliver,
            };
            if let Some(resumable) = session.resumable() {
                session.set_resumable(Resumable {
                    since: history.head(),
                    ..resumable
                });
            }
            (session.apply(socket, restored).is_ok(), missed.len())
        })
        .await;
    let (applied, replayed) = match restored {
        Ok(restored) => restored,
        Err(outcome) => {
            METRICS.recovery(outcome);
            info!(sid = %socket.id, ?outcome, "recovered session lost its missed events; disconnecting");
            let _ = socket.clone().disconnect();
            return;
        }
    };
    if !applied {
        debug!(sid = %socket.id, "socket left before its session was restored");
        return;
    }
    let user = restore.saved.identity.user_id.as_deref();
    info!(sid = %socket.id, user = user.unwrap_or(""), replayed, "session recovered");
    if edge.events.is_watched() {
        let rooms = session.rooms();
        edge.events.publish(
            WatchEventsResponse {
                rooms: rooms.clone(),
                ..events::lifecycle(EventKind::Recovered, &socket.id.to_string(), user)
            },
            || rooms,
        );
    }
}

/// Emits the missed events, each with its offset.
fn replay<A: Adapter>(socket: &SocketRef<A>, missed: &[Entry], parser: Parser) {
    for entry in missed {
        let send = &entry.send;
        let data = Data::parse(&send.data_json, parser).ok().flatten();
        let offset = entry.offset.to_string();
        let args = Args {
            data,
            attachments: &send.attachments,
            offset: Some(&offset),
        };
        if let Err(e) = socket.emit(send.event.as_str(), &args) {
            debug!(sid = %socket.id, error = %e, "could not replay an event");
        }
    }
}

/// Whether Socket.IO lets a socket that left for `reason` recover: the transport closed
/// or failed, the client stopped answering pings, or the server shut down. Not a socket
/// the server sent away, nor one the client closed itself.
pub fn is_recoverable(reason: DisconnectReason) -> bool {
    matches!(
        reason,
        DisconnectReason::TransportClose
            | DisconnectReason::TransportError
            | DisconnectReason::HeartbeatTimeout
            | DisconnectReason::ClosingServer
    )
}

/// Keeps the session of an authenticated socket that went away recoverably; true if it
/// was kept.
pub fn keep(
    recovery: &Recovery,
    session: &Session,
    previous: &SocketState,
    reason: DisconnectReason,
) -> bool {
    let Some(identity) = previous.identity() else {
        return false;
    };
    let saved = session.saved(&session.life(), identity);
    let Some(saved) = saved.filter(|_| is_recoverable(reason)) else {
        if recovery.store().keeps_live() {
            recovery.store().forget(session.sid);
        }
        return false;
    };
    recovery.store().away(session.sid, saved);
    true
}

/// Answers the `authenticate` of a recovered socket (Ignis-style clients send it on every
/// connect): `authenticated` at once, without asking the authenticator again, unless the
/// credentials it presents can be read here (a JWT) and name another user; then it gets
/// `unauthenticated` and is disconnected, and its session is not kept.
pub async fn authenticate_recovered<A: Adapter>(
    edge: &Edge<A>,
    socket: &SocketRef<A>,
    session: &Arc<Session>,
    handshake: &Handshake<'_>,
) {
    let Some(identity) = session.identity() else {
        return;
    };
    if let Some(named) = edge.auth.user_named(handshake).await
        && named.as_deref() != identity.user_id.as_deref()
    {
        METRICS.recovery(RecoveryOutcome::OtherUser);
        info!(sid = %socket.id, "recovered socket presented another user's token; disconnecting");
        let payload = protocol::Unauthenticated {
            message: protocol::INVALID_TOKEN_MESSAGE,
            time: iso_now(),
        };
        let _ = socket.emit(protocol::UNAUTHENTICATED, &payload);
        let _ = socket.clone().disconnect();
        return;
    }
    let id = socket.id.to_string();
    let payload = protocol::Authenticated {
        id: &id,
        time: iso_now(),
    };
    if let Err(e) = socket.emit(protocol::AUTHENTICATED, &payload) {
        debug!(sid = %socket.id, error = %e, "could not send authenticated");
    }
}
