//! The per-socket state, kept in one place: the socket's extensions.

use std::sync::{
    Arc, OnceLock,
    atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering},
};

use serde_json::Value;
use socketioxide::{adapter::Adapter, extract::SocketRef};

use crate::{auth::Identity, rooms::ConnectionMeta};

const UNAUTHORIZED: u8 = 0;
const AUTHENTICATING: u8 = 1;
const AUTHENTICATED: u8 = 2;
const REJECTED: u8 = 3;

/// What the gateway keeps for one local socket. The state and identity that every node
/// must see are mirrored in the socket's internal rooms (see `rooms`).
#[derive(Debug)]
pub struct Session {
    state: AtomicU8,
    /// The Socket.IO `auth` object of the handshake.
    pub auth: Option<Value>,
    /// Connection details (also carried by the socket's meta room).
    pub meta: ConnectionMeta,
    identity: OnceLock<Identity>,
    /// `OnEvent` calls in flight for this socket.
    pending_hooks: AtomicU32,
    /// Set while events are being dropped for want of a hook slot (to log once).
    saturated: AtomicBool,
}

impl Session {
    /// A new, unauthorized session.
    pub fn new(auth: Option<Value>, meta: ConnectionMeta) -> Self {
        Self {
            state: AtomicU8::new(UNAUTHORIZED),
            auth,
            meta,
            identity: OnceLock::new(),
            pending_hooks: AtomicU32::new(0),
            saturated: AtomicBool::new(false),
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

    /// Records the identity and moves to `authenticated`.
    pub fn authenticated(&self, identity: Identity) {
        let _ = self.identity.set(identity);
        self.state.store(AUTHENTICATED, Ordering::Release);
    }

    /// Marks the session refused; it is about to be disconnected.
    pub fn rejected(&self) {
        self.state.store(REJECTED, Ordering::Release);
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
        let session = Session::new(None, ConnectionMeta::now("websocket", None));
        assert!(session.begin_auth());
        assert!(!session.begin_auth());
        assert!(!session.is_authenticated());
        session.authenticated(Identity::default());
        assert!(session.is_authenticated());
        assert!(!session.begin_auth());
    }

    #[test]
    fn hook_slots_are_bounded_and_given_back() {
        let session = Arc::new(Session::new(None, ConnectionMeta::now("polling", None)));
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
}
