//! The HTTP gate in front of Socket.IO, which refuses before Engine.IO sees the request:
//! - a request that would open a new Engine.IO session (no `sid` in its query: a polling
//!   handshake or a direct WebSocket) while the node drains (`503`), past its address's
//!   rate of new sessions (`429` with `Retry-After`), or whose URI and headers, which the
//!   session keeps, are past `edge.limits.max_handshake_bytes` (`431`); an admitted one is
//!   marked ([`OpenedSession`]) for its one Socket.IO connect;
//! - a request of an existing session (polling GET / POST, the upgrade to WebSocket) from
//!   another client address than the one that opened the session (`403`);
//! - a request from a browser page whose `Origin` is not in `edge.cors_origins`, when that
//!   is a list (`403`).
//!
//! The body says why. A request of a session carries the Engine.IO session id (not the
//! socket id, which backends see and may pass on): without the address check, anyone who
//! learns it (on the network path, in a proxy's logs) could post events as that socket or
//! upgrade its session to a WebSocket of their own and read everything sent to it.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{Method, StatusCode, header};
use socketioxide::{SocketIo, adapter::Adapter, socket::Sid};

use super::limits::{AddressKey, ConnectRefusal, Limits, OpenedSession};

/// What the gate checks against.
pub struct Gate<A: Adapter> {
    path: Arc<str>,
    limits: Arc<Limits>,
    io: SocketIo<A>,
    /// The origins browser pages may connect from; `None`: any.
    origins: Option<Arc<[String]>>,
}

// Not derived: that would ask `A: Clone`.
impl<A: Adapter> Clone for Gate<A> {
    fn clone(&self) -> Self {
        Self {
            path: self.path.clone(),
            limits: self.limits.clone(),
            io: self.io.clone(),
            origins: self.origins.clone(),
        }
    }
}

impl<A: Adapter> Gate<A> {
    /// A gate for requests under `path` to the sessions of `io`, from pages of `origins`
    /// (`edge.cors_origins`: `*` or an empty list for any).
    pub fn new(path: &str, limits: Arc<Limits>, io: SocketIo<A>, origins: &[String]) -> Self {
        let any = origins.is_empty() || origins.iter().any(|o| o == "*");
        Self {
            path: path.into(),
            limits,
            io,
            origins: (!any).then(|| origins.into()),
        }
    }

    /// Refuses a request a browser sent for a page of an origin not allowed. Browsers
    /// enforce CORS on polling requests but not on WebSocket handshakes, so this is what
    /// keeps other sites' pages (and their visitors' cookies) out.
    fn check_origin(&self, request: &Request) -> Result<(), ConnectRefusal> {
        let (Some(allowed), Some(origin)) = (&self.origins, request.headers().get(header::ORIGIN))
        else {
            return Ok(());
        };
        if allowed.iter().any(|o| o.as_bytes() == origin.as_bytes()) {
            Ok(())
        } else {
            Err(ConnectRefusal::Origin)
        }
    }

    /// Refuses a request of session `sid` from another address than the one that opened
    /// it. A session that is unknown or not yet connected to the namespace is left to
    /// Engine.IO (only its opener knows its id).
    fn check_session(&self, sid: &str, peer: Option<SocketAddr>) -> Result<(), ConnectRefusal> {
        let (Ok(sid), Some(peer)) = (sid.parse::<Sid>(), peer) else {
            return Ok(());
        };
        // `sid` is the Engine.IO session's id, not its socket's.
        let Some(socket) = self.io.get_engine_socket(sid) else {
            return Ok(());
        };
        let opener = socket
            .req_parts()
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        match opener {
            Some(opener) if !AddressKey::same(opener, peer) => Err(ConnectRefusal::SessionAddress),
            _ => Ok(()),
        }
    }
}

/// What a request under the Socket.IO path is: a new session, or one of session `sid`.
enum Kind<'a> {
    NewSession,
    Session(&'a str),
}

fn kind<'a, A: Adapter>(gate: &Gate<A>, request: &'a Request) -> Option<Kind<'a>> {
    if request.method() == Method::OPTIONS || !request.uri().path().starts_with(&*gate.path) {
        return None;
    }
    Some(match session_id(request.uri().query()) {
        Some(sid) => Kind::Session(sid),
        None => Kind::NewSession,
    })
}

/// The session a request's query names, read as Engine.IO reads it (the first `sid=`
/// parameter); `None` for a request that opens a new session.
pub fn session_id(query: Option<&str>) -> Option<&str> {
    query?.split('&').find_map(|kv| kv.strip_prefix("sid="))
}

/// The bytes of a request's URI and headers, which a session keeps for its life.
fn head_bytes(request: &Request) -> usize {
    let uri = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    request.headers().iter().fold(uri, |sum, (name, value)| {
        sum + name.as_str().len() + value.len()
    })
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn check<A: Adapter>(
    State(gate): State<Gate<A>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let kind = kind(&gate, &request);
    let new_session = matches!(kind, Some(Kind::NewSession));
    let verdict = match kind {
        None => Ok(()),
        Some(Kind::NewSession) => gate
            .limits
            .admit_handshake(peer)
            .and_then(|()| gate.check_origin(&request))
            .and_then(|()| gate.limits.check_handshake_size(head_bytes(&request))),
        Some(Kind::Session(sid)) => gate
            .check_origin(&request)
            .and_then(|()| gate.check_session(sid, peer)),
    };
    let Err(refusal) = verdict else {
        if new_session {
            request.extensions_mut().insert(OpenedSession::default());
        }
        return next.run(request).await;
    };
    gate.limits.refused(refusal, peer);
    let status = match refusal {
        ConnectRefusal::Draining => StatusCode::SERVICE_UNAVAILABLE,
        ConnectRefusal::SessionAddress | ConnectRefusal::Origin => StatusCode::FORBIDDEN,
        ConnectRefusal::HandshakeTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        _ => StatusCode::TOO_MANY_REQUESTS,
    };
    let mut response = (status, format!("{refusal}\n")).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::session_id;

    #[test]
    fn the_session_is_the_first_sid_parameter() {
        assert_eq!(
            session_id(Some("EIO=4&transport=polling&sid=abc")),
            Some("abc")
        );
        assert_eq!(session_id(Some("sid=a&sid=b")), Some("a"));
        assert_eq!(session_id(Some("EIO=4&sid=")), Some(""));
        assert_eq!(session_id(Some("EIO=4&xsid=abc&transport=websocket")), None);
        assert_eq!(session_id(Some("EIO=4&transport=polling")), None);
        assert_eq!(session_id(None), None);
    }
}
