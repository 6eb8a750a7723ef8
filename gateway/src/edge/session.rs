//! The per-socket state, kept in one place: the socket's extensions.

use std::sync::{
    Arc, Mutex, OnceLock,
    atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering},
};

use serde_json::Value;
use socketioxide::{adapter::Adapter, extract::SocketRef};

use super::limits::{ConnectionSlot, EventMeter};
use crate::{auth::Identity, rooms::ConnectionMeta};

const UNAUTHORIZED: u8 = 0;
const AUTHENTICATING: u8 = 1;
const AUTHENTICATED: u8 = 2;
const REJECTED: u8 = 3;
/// Cut off for abuse, told why, to be disconnected by the sweeper's next pass but one.
const CUT_OFF: u8 = 4;
/// Cut off, and one sweeper pass has gone by.
const CUT_OFF_DUE: u8 = 5;

/// What the gateway keeps for one local socket. The state and identity that every node
/// must see are mirrored in the socket's internal rooms (see `rooms`).
#[derive(Debug)]
pub struct Session {
    state: AtomicU8,
    /// The Socket.IO `auth` object of the handshake, until authentication takes it.
    auth: Mutex<Option<Value>>,
    /// Connection details (also carried by the socket's meta room).
    pub meta: ConnectionMeta,
    identity: OnceLock<Identity>,
    /// `OnEvent` calls in flight for this socket.
    pending_hooks: AtomicU32,
    /// Set while events are being dropped for want of a hook slot (to log once).
    saturated: AtomicBool,
    /// The socket's event rate.
    pub events: EventMeter,
    /// `join` / `leave` requests in flight.
    room_requests: AtomicU32,
    /// The rooms the client joined through its own `join` (the only ones it may leave).
    client_rooms: Mutex<Vec<String>>,
    /// The socket's place in the connection limits, given back with the session.
    _connection: Option<ConnectionSlot>,
}

impl Session {
    /// A new, unauthorized session.
    pub fn new(
        auth: Option<Value>,
        meta: ConnectionMeta,
        connection: Option<ConnectionSlot>,
    ) -> Self {
        Self {
            state: AtomicU8::new(UNAUTHORIZED),
            auth: Mutex::new(auth),
            meta,
            identity: OnceLock::new(),
            pending_hooks: AtomicU32::new(0),
            saturated: AtomicBool::new(false),
            events: EventMeter::default(),
            room_requests: AtomicU32::new(0),
            client_rooms: Mutex::default(),
            _connection: connection,
        }
    }

    /// The session of a socket of this node.
    pub fn of<A: Adapter>(socket: &SocketRef<A>) -> Option<Arc<Session>> {
        socket.extensions.get::<Arc<Session>>()
    }

    /// Moves `unauthorized → authenticating`; false if authentication already started.
    pub fn begin_auth(&self) -> bool {
        self.state
            .compare_exchange(
                UNAUTHORIZED,
                AUTHENTICATING,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Takes the handshake's `auth` object: authentication reads it once (a second
    /// `authenticate` is ignored), and nothing keeps it after that.
    pub fn take_auth(&self) -> Option<Value> {
        self.auth.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Records the identity and moves `authenticating → authenticated`; false if the
    /// session was cut off meanwhile.
    pub fn authenticated(&self, identity: Identity) -> bool {
        let _ = self.identity.set(identity);
        self.state
            .compare_exchange(
                AUTHENTICATING,
                AUTHENTICATED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Marks the session refused; it is about to be disconnected.
    pub fn rejected(&self) {
        self.state.store(REJECTED, Ordering::Release);
    }

    /// Marks the session cut off for abuse: it is no longer authenticated and will be
    /// disconnected by the auth sweeper (see [`Session::cut_off_due`]). False if it already
    /// was.
    pub fn cut_off(&self) -> bool {
        self.state.swap(CUT_OFF, Ordering::AcqRel) < CUT_OFF
    }

    /// Whether the session was cut off.
    pub fn is_cut_off(&self) -> bool {
        self.state.load(Ordering::Acquire) >= CUT_OFF
    }

    /// For the sweeper: true once a whole pass has gone by since the session was cut off,
    /// which leaves its client time to read why before the connection closes (closing
    /// while a client floods can reset the connection before it has read anything).
    pub fn cut_off_due(&self) -> bool {
        self.state
            .compare_exchange(CUT_OFF, CUT_OFF_DUE, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
            && self.state.load(Ordering::Acquire) == CUT_OFF_DUE
    }

    /// The identity, once authenticated.
    pub fn identity(&self) -> Option<&Identity> {
        (self.state.load(Ordering::Acquire) == AUTHENTICATED)
            .then(|| self.identity.get())
            .flatten()
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

    /// Whether the socket has authenticated.
    pub fn is_authenticated(&self) -> bool {
        self.identity().is_some()
    }

    /// Takes one of `max` slots for a `join` / `leave` request, given back when the guard
    /// drops; `None` when all are taken.
    pub fn room_request(self: &Arc<Self>, max: u32) -> Option<RoomRequest> {
        self.room_requests
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| RoomRequest(self.clone()))
    }

    fn client_rooms(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.client_rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins the client to `rooms` it was allowed: rooms the socket is already in stay
    /// what they were (a server room stays the server's); the others become the client's
    /// own, up to `max` in all, and are joined with `join`. All under the session's lock,
    /// so that concurrent requests of one socket see each other's rooms. `current` gives
    /// the socket's rooms (own rooms it is no longer in are forgotten).
    pub fn join_client_rooms(
        &self,
        rooms: Vec<String>,
        max: usize,
        current: impl FnOnce() -> Vec<String>,
        join: impl FnOnce(Vec<String>) -> bool,
    ) -> ClientJoin {
        let mut own = self.client_rooms();
        let current: std::collections::HashSet<String> = current().into_iter().collect();
        own.retain(|room| current.contains(room));
        let mut result = ClientJoin::default();
        let mut fresh = Vec::new();
        for room in rooms {
            if current.contains(&room) {
                result.joined.push(room);
            } else if own.len() < max {
                own.push(room.clone());
                fresh.push(room);
            } else {
                result.over.push(room);
            }
        }
        if !fresh.is_empty() && !join(fresh.clone()) {
            result.gone = true;
        }
        result.joined.extend(fresh);
        result
    }

    /// Takes `rooms` out of the client's own rooms and leaves those with `leave`, under the
    /// session's lock (a `Join` RPC that makes one of them the server's either comes first,
    /// and the room is not the client's any more, or after, and joins it again): (the rooms
    /// left, the rest).
    pub fn leave_client_rooms(
        &self,
        rooms: Vec<String>,
        leave: impl FnOnce(&[String]),
    ) -> (Vec<String>, Vec<String>) {
        let mut own = self.client_rooms();
        let (left, rejected): (Vec<String>, Vec<String>) = rooms.into_iter().partition(|room| {
            let at = own.iter().position(|r| r == room);
            if let Some(at) = at {
                own.swap_remove(at);
            }
            at.is_some()
        });
        if !left.is_empty() {
            leave(&left);
        }
        (left, rejected)
    }

    /// Forgets `rooms` as client-joined: the server now owns (or removed) them.
    pub fn forget_client_rooms(&self, rooms: &[String]) {
        self.client_rooms().retain(|room| !rooms.contains(room));
    }
}

/// What [`Session::join_client_rooms`] did.
#[derive(Debug, Default)]
pub struct ClientJoin {
    /// Rooms the socket is in now (joined now or already).
    pub joined: Vec<String>,
    /// Rooms refused: past the socket's limit.
    pub over: Vec<String>,
    /// The socket disconnected meanwhile; nothing was joined.
    pub gone: bool,
}

/// A `join` / `leave` request in flight for a socket.
pub struct RoomRequest(Arc<Session>);

impl Drop for RoomRequest {
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

    #[test]
    fn authentication_starts_once() {
        let session = Session::new(None, ConnectionMeta::now("websocket", None), None);
        assert!(session.begin_auth());
        assert!(!session.begin_auth());
        assert!(!session.is_authenticated());
        assert!(session.authenticated(Identity::default()));
        assert!(session.is_authenticated());
        assert!(!session.begin_auth());
        assert!(session.cut_off());
        assert!(!session.is_authenticated());
        assert!(!session.cut_off(), "cut off once");
        assert!(!session.cut_off_due(), "due after one more sweeper pass");
        assert!(session.cut_off_due());
    }

    #[test]
    fn hook_slots_are_bounded_and_given_back() {
        let session = Arc::new(Session::new(
            None,
            ConnectionMeta::now("polling", None),
            None,
        ));
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
    fn only_client_joined_rooms_can_be_left() {
        let session = Arc::new(Session::new(
            None,
            ConnectionMeta::now("polling", None),
            None,
        ));
        let rooms = |names: &[&str]| names.iter().map(|r| r.to_string()).collect::<Vec<_>>();
        let joined = session.join_client_rooms(
            rooms(&["a", "b", "c", "server"]),
            2,
            || rooms(&["server"]),
            |fresh| {
                assert_eq!(fresh, vec!["a", "b"]);
                true
            },
        );
        assert_eq!(joined.joined, vec!["server", "a", "b"]);
        assert_eq!(joined.over, vec!["c"]);
        // A room the socket left some other way no longer counts against the limit.
        let joined =
            session.join_client_rooms(rooms(&["c"]), 2, || rooms(&["server", "b"]), |_| true);
        assert_eq!(joined.joined, vec!["c"]);
        session.forget_client_rooms(&["b".into()]);
        let (left, rejected) = session
            .leave_client_rooms(rooms(&["a", "b", "c", "server"]), |left| {
                assert_eq!(left, ["c"])
            });
        assert_eq!(left, vec!["c"]);
        assert_eq!(rejected, vec!["a", "b", "server"]);
        let gone = session.join_client_rooms(rooms(&["d"]), 2, Vec::new, |_| false);
        assert!(gone.gone);
    }

    #[test]
    fn room_requests_are_bounded() {
        let session = Arc::new(Session::new(
            None,
            ConnectionMeta::now("polling", None),
            None,
        ));
        let first = session.room_request(1).unwrap();
        assert!(session.room_request(1).is_none());
        drop(first);
        assert!(session.room_request(1).is_some());
    }
}
