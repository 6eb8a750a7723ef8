//! What the gateway keeps for one socket of this node, in the socket's extensions: its
//! state and public rooms (changed only through the transitions of `state.rs`), the
//! handshake's `auth` object, connection details, and its share of the per-socket limits.

use std::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicU32, Ordering},
};

use serde_json::Value;
use socketioxide::{adapter::Adapter, extract::SocketRef, socket::Sid};
use tokio::sync::Notify;

use super::{
    limits::{ConnectionSlot, EventMeter},
    state::{Life, Mirrors, SocketState},
};
use crate::{
    auth::{ConnectionMeta, Identity},
    recovery::Resumable,
};

/// One socket's session.
pub struct Session {
    /// The socket's id.
    pub sid: Sid,
    /// State and public rooms; see `state.rs`.
    life: Mutex<Life>,
    /// Told when the socket is opened or closed.
    opened: Notify,
    /// Where the state is mirrored.
    pub(super) mirrors: Arc<Mirrors>,
    /// The Socket.IO `auth` object of the handshake, until authentication takes it.
    auth: Mutex<Option<Value>>,
    /// Connection details.
    pub meta: ConnectionMeta,
    /// `OnEvent` calls in flight for this socket.
    pending_hooks: AtomicU32,
    /// Set while events are being dropped for want of a hook slot (to log once).
    saturated: AtomicBool,
    /// The socket's event rate.
    pub events: EventMeter,
    /// `join` / `leave` requests in flight.
    room_requests: AtomicU32,
    /// What connection state recovery keeps for the socket, when it is on.
    resumable: Mutex<Option<Resumable>>,
    /// The socket's place in the connection limits, given back with the session.
    _connection: Option<ConnectionSlot>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("sid", &self.sid)
            .field("life", &*self.life())
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A new, unauthorized session.
    pub fn new(
        sid: Sid,
        auth: Option<Value>,
        meta: ConnectionMeta,
        connection: Option<ConnectionSlot>,
        mirrors: Arc<Mirrors>,
    ) -> Self {
        Self {
            sid,
            life: Mutex::default(),
            opened: Notify::new(),
            mirrors,
            auth: Mutex::new(auth),
            meta,
            pending_hooks: AtomicU32::new(0),
            saturated: AtomicBool::new(false),
            events: EventMeter::default(),
            room_requests: AtomicU32::new(0),
            resumable: Mutex::new(None),
            _connection: connection,
        }
    }

    /// The session of a socket of this node.
    pub fn of<A: Adapter>(socket: &SocketRef<A>) -> Option<Arc<Session>> {
        socket.extensions.get::<Arc<Session>>()
    }

    /// The state and rooms, locked.
    pub fn life(&self) -> MutexGuard<'_, Life> {
        self.life.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn opened_or_closed(&self) {
        self.opened.notify_waiters();
    }

    /// Waits until the socket is opened (true) or closed (false). socketioxide sends the
    /// connect packet before it marks the socket connected, so on a busy node a client's
    /// first event can be handled in between, when `emit` would still refuse.
    pub async fn wait_open(&self) -> bool {
        loop {
            let notified = self.opened.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            {
                let life = self.life();
                if matches!(life.state(), SocketState::Closed) {
                    return false;
                }
                if life.is_open() {
                    return true;
                }
            }
            notified.await;
        }
    }

    /// Takes the handshake's `auth` object: authentication reads it once (a second
    /// `authenticate` is ignored), and nothing keeps it after that.
    pub fn take_auth(&self) -> Option<Value> {
        self.auth.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// What connection state recovery keeps for the socket.
    pub fn resumable(&self) -> Option<Resumable> {
        *self.resumable.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets what connection state recovery keeps for the socket.
    pub fn set_resumable(&self, resumable: Resumable) {
        *self.resumable.lock().unwrap_or_else(|e| e.into_inner()) = Some(resumable);
    }

    /// The identity, while authenticated.
    pub fn identity(&self) -> Option<Arc<Identity>> {
        self.life().state().identity().cloned()
    }

    /// The public rooms, sorted.
    pub fn rooms(&self) -> Vec<String> {
        self.life().rooms().map(str::to_owned).collect()
    }

    /// Whether the socket is authenticated.
    pub fn is_authenticated(&self) -> bool {
        matches!(self.life().state(), SocketState::Authenticated(_))
    }

    /// Whether the socket was cut off for abuse (or refused): its events are dropped.
    pub fn is_cut_off(&self) -> bool {
        matches!(
            self.life().state(),
            SocketState::CutOff { .. } | SocketState::Refused
        )
    }

    /// Takes one of `max` slots for an `OnEvent` call, given back when the guard drops.
    /// When all are taken: `Err(true)` the first time since the last success (worth a
    /// log line), `Err(false)` after that.
    pub fn hook_slot(self: &Arc<Self>, max: u32) -> Result<HookSlot, bool> {
        match self
            .pending_hooks
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            }) {
            Ok(_) => {
                self.saturated.store(false, Ordering::Relaxed);
                Ok(HookSlot(self.clone()))
            }
            Err(_) => Err(!self.saturated.swap(true, Ordering::Relaxed)),
        }
    }

    /// Takes one of `max` slots for a `join` / `leave` request, given back when the guard
    /// drops; `None` when all are taken.
    pub fn room_request(self: &Arc<Self>, max: u32) -> Option<RoomRequestSlot> {
        self.room_requests
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| RoomRequestSlot(self.clone()))
    }
}

/// A `join` / `leave` request in flight for a socket.
pub struct RoomRequestSlot(Arc<Session>);

impl Drop for RoomRequestSlot {
    fn drop(&mut self) {
        self.0.room_requests.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An `OnEvent` call in flight for a socket.
pub struct HookSlot(Arc<Session>);

impl Drop for HookSlot {
    fn drop(&mut self) {
        self.0.pending_hooks.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Arc<Session> {
        Arc::new(Session::new(
            Sid::new(),
            None,
            ConnectionMeta::now("polling", None),
            None,
            Arc::default(),
        ))
    }

    #[test]
    fn hook_slots_are_bounded_and_given_back() {
        let session = session();
        let first = session.hook_slot(2).unwrap();
        let _second = session.hook_slot(2).unwrap();
        assert_eq!(
            session.hook_slot(2).err(),
            Some(true),
            "first refusal is reported"
        );
        assert_eq!(session.hook_slot(2).err(), Some(false));
        drop(first);
        assert!(session.hook_slot(2).is_ok());
    }

    #[test]
    fn room_requests_are_bounded() {
        let session = session();
        let first = session.room_request(1).unwrap();
        assert!(session.room_request(1).is_none());
        drop(first);
        assert!(session.room_request(1).is_some());
    }
}
