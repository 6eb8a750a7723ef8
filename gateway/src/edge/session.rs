//! The per-socket state, kept in one place: the socket's extensions.

use std::sync::{
    Arc, OnceLock,
    atomic::{AtomicU8, Ordering},
};

use serde_json::Value;
use socketioxide::extract::SocketRef;

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
}

impl Session {
    /// A new, unauthorized session.
    pub fn new(auth: Option<Value>, meta: ConnectionMeta) -> Self {
        Self {
            state: AtomicU8::new(UNAUTHORIZED),
            auth,
            meta,
            identity: OnceLock::new(),
        }
    }

    /// The session of a socket of this node.
    pub fn of(socket: &SocketRef) -> Option<Arc<Session>> {
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

    /// Whether the socket has authenticated.
    pub fn is_authenticated(&self) -> bool {
        self.identity().is_some()
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
}
