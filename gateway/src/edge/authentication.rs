//! The `authenticate` flow: run the authenticator chain, then either admit the socket to
//! its rooms and send `authenticated`, or send `unauthenticated` and disconnect it.

use std::sync::Arc;

use serde_json::Value;
use socketioxide::extract::SocketRef;
use tracing::{debug, info, warn};

use super::{Edge, protocol, session::Session};
use crate::{
    auth::{Credentials, Outcome},
    clock::iso_now,
    rooms,
};

/// Handles one `authenticate` event.
pub async fn authenticate(edge: Arc<Edge>, socket: SocketRef, data: Option<Value>) {
    let Some(session) = Session::of(&socket) else {
        return;
    };
    if !session.begin_auth() {
        debug!(sid = %socket.id, "second authenticate ignored");
        return;
    }
    socket.join(rooms::AUTHENTICATING);
    let parts = socket.req_parts();
    let credentials = Credentials {
        authorization: parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok()),
        auth: session.auth.as_ref(),
        query: parts.uri.query(),
        event_data: data.as_ref(),
    };
    match edge.auth.authenticate(&credentials).await {
        Outcome::Allow(identity) => {
            let mut joined = edge.config.default_rooms.clone();
            if let Some(user) = &identity.user_id {
                joined.push(rooms::user_room(user));
                joined.push(rooms::user_id_room(user));
            }
            joined.push(rooms::AUTHENTICATED.to_owned());
            socket.join(joined);
            socket.leave(rooms::AUTHENTICATING);
            info!(sid = %socket.id, user = identity.user_id.as_deref().unwrap_or(""), "authenticated");
            session.authenticated(identity);
            let id = socket.id.to_string();
            let payload = protocol::Authenticated {
                id: &id,
                time: iso_now(),
            };
            if let Err(e) = socket.emit(protocol::AUTHENTICATED, &payload) {
                debug!(sid = %socket.id, error = %e, "could not send authenticated");
            }
        }
        Outcome::Deny(reason) => {
            info!(sid = %socket.id, %reason, "authentication denied");
            reject(&socket, &session, protocol::INVALID_TOKEN_MESSAGE);
        }
        Outcome::Fail(reason) => {
            warn!(sid = %socket.id, %reason, "authenticator failed");
            reject(&socket, &session, protocol::AUTH_FAILED_MESSAGE);
        }
    }
}

/// Sends `unauthenticated` and disconnects; the disconnect packet follows the message on
/// the same ordered channel, so the client reads the message first.
fn reject(socket: &SocketRef, session: &Session, message: &'static str) {
    session.rejected();
    socket.leave(rooms::AUTHENTICATING);
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

/// Disconnects the socket `sid` if it has not authenticated when `timeout` has passed.
pub fn enforce_timeout(edge: &Arc<Edge>, socket: &SocketRef) {
    let io = edge.io.clone();
    let sid = socket.id;
    let timeout = edge.config.auth_timeout;
    tokio::spawn(async move {
        tokio::time::sleep(timeout).await;
        let Some(socket) = io.get_socket(sid) else {
            return;
        };
        if Session::of(&socket).is_some_and(|s| !s.is_authenticated()) {
            info!(%sid, ?timeout, "not authenticated in time, disconnecting");
            if let Some(session) = Session::of(&socket) {
                session.rejected();
            }
            let _ = socket.disconnect();
        }
    });
}
