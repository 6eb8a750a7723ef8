//! The connect resolver: decides the id of a socket before it connects to a namespace.
//!
//! It is the server's hook for Socket.IO's connection state recovery: a client that lost its
//! connection comes back on a new engine.io session with the private session id (`pid`) the
//! server gave it in its previous CONNECT reply, in its CONNECT `auth` payload. The resolver
//! reads it, and if the session can be restored, gives the new socket the id it had; it also
//! gives the `pid` to send in the CONNECT reply, for the client to present next time.
//!
//! A resolver is set with [`SocketIoBuilder::with_connect_resolver`]. Without one, every
//! socket gets a fresh id and no `pid` is sent.
//!
//! [`SocketIoBuilder::with_connect_resolver`]: crate::SocketIoBuilder::with_connect_resolver
use std::{fmt, future::Future, pin::Pin, sync::Arc};

use serde::de::DeserializeOwned;
use socketioxide_core::{Sid, Str, Value, parser::Parse};

use crate::{ParserError, ProtocolVersion, parser::Parser};

/// A CONNECT packet to resolve: what it asks for and where it comes from.
pub struct ConnectRequest {
    ns: Str,
    auth: Option<Value>,
    parser: Parser,
    session: Arc<dyn EngineSession>,
}

/// What a [`ConnectRequest`] reads of the engine.io session, without the socket data type.
trait EngineSession: Send + Sync + 'static {
    fn id(&self) -> Sid;
    fn protocol(&self) -> ProtocolVersion;
    fn req_parts(&self) -> &http::request::Parts;
}

impl<D: Default + Send + Sync + 'static> EngineSession for engineioxide::Socket<D> {
    fn id(&self) -> Sid {
        self.id
    }
    fn protocol(&self) -> ProtocolVersion {
        self.protocol.into()
    }
    fn req_parts(&self) -> &http::request::Parts {
        &self.req_parts
    }
}

impl ConnectRequest {
    pub(crate) fn new<D: Default + Send + Sync + 'static>(
        ns: Str,
        auth: Option<Value>,
        parser: Parser,
        session: Arc<engineioxide::Socket<D>>,
    ) -> Self {
        Self {
            ns,
            auth,
            parser,
            session,
        }
    }

    /// The path of the namespace the client connects to.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The id of the engine.io session the CONNECT packet came on (see
    /// [`Socket::engine_id`](crate::socket::Socket::engine_id)).
    pub fn engine_id(&self) -> Sid {
        self.session.id()
    }

    /// The socket.io protocol version of the client. A `pid` is only sent to
    /// [`ProtocolVersion::V5`] clients.
    pub fn protocol(&self) -> ProtocolVersion {
        self.session.protocol()
    }

    /// The request that opened the engine.io session (its headers, URI and extensions).
    pub fn req_parts(&self) -> &http::request::Parts {
        self.session.req_parts()
    }

    /// The CONNECT packet's `auth` payload, deserialized with the parser of the server (as the
    /// [`Data`](crate::extract::Data) extractor of a connect handler does), or `None` when the
    /// packet has none.
    pub fn auth<T: DeserializeOwned>(&self) -> Option<Result<T, ParserError>> {
        let auth = self.auth.as_ref()?;
        Some(self.parser.decode_default(Some(auth)))
    }
}

impl fmt::Debug for ConnectRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The auth payload is left out: it usually holds credentials.
        f.debug_struct("ConnectRequest")
            .field("ns", &self.ns)
            .field("engine_id", &self.engine_id())
            .finish_non_exhaustive()
    }
}

/// What a connect resolver decided for a CONNECT packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// The id of the socket: `None` for a fresh one (`Sid::new()`), `Some(id)` to restore a
    /// session with that id. The connection fails with a `connect_error` ("session already
    /// connected"), and the connect middlewares do not run, if a socket with that id is
    /// connected or connecting to the namespace.
    pub sid: Option<Sid>,
    /// The private session id to send in the CONNECT reply next to the socket id
    /// (`{"sid": "...", "pid": "..."}`), which the client presents in its `auth` payload when
    /// it reconnects. Only sent to [`ProtocolVersion::V5`] clients, and only then readable
    /// with [`Socket::pid`](crate::socket::Socket::pid).
    pub pid: Option<String>,
}

impl Resolution {
    /// A fresh socket id, no `pid`: what happens without a resolver.
    pub fn fresh() -> Self {
        Self::default()
    }

    /// The socket gets the id `sid`: a restored session.
    pub fn restored(sid: Sid) -> Self {
        Self {
            sid: Some(sid),
            pid: None,
        }
    }

    /// The same, with a private session id to send in the CONNECT reply.
    pub fn with_pid(self, pid: impl Into<String>) -> Self {
        Self {
            pid: Some(pid.into()),
            ..self
        }
    }
}

type ResolveFuture = Pin<Box<dyn Future<Output = Resolution> + Send>>;

/// A connect resolver, type-erased: see [`SocketIoBuilder::with_connect_resolver`].
///
/// [`SocketIoBuilder::with_connect_resolver`]: crate::SocketIoBuilder::with_connect_resolver
#[derive(Clone)]
pub(crate) struct ConnectResolver(Arc<dyn Fn(ConnectRequest) -> ResolveFuture + Send + Sync>);

impl ConnectResolver {
    pub(crate) fn new<F, Fut>(resolver: F) -> Self
    where
        F: Fn(ConnectRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Resolution> + Send + 'static,
    {
        Self(Arc::new(move |req| Box::pin(resolver(req))))
    }

    pub(crate) fn resolve(&self, req: ConnectRequest) -> ResolveFuture {
        (self.0)(req)
    }
}

impl fmt::Debug for ConnectResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnectResolver")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Buf;
    use engineioxide::service::NotFoundService;
    use http_body::Body;
    use hyper::service::Service;
    use tokio::sync::{Notify, mpsc};

    use super::*;
    use crate::{SocketIo, service::SocketIoService};

    /// Sends a polling request to the service; returns the body of the response.
    async fn polling(svc: &SocketIoService<NotFoundService>, query: &str, body: &str) -> String {
        let method = if body.is_empty() { "GET" } else { "POST" };
        let uri = format!("http://localhost/socket.io/?EIO=4&transport=polling{query}");
        let req = http::Request::builder().method(method).uri(uri);
        let res = svc.call(req.body(body.to_owned()).unwrap()).await.unwrap();
        let mut res = std::pin::pin!(res.into_body());
        let mut out = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| res.as_mut().poll_frame(cx)).await {
            let Ok(Ok(mut data)) = frame.map(|f| f.into_data()) else {
                panic!("unexpected response frame");
            };
            while data.has_remaining() {
                let chunk = data.chunk();
                out.extend_from_slice(chunk);
                let len = chunk.len();
                data.advance(len);
            }
        }
        String::from_utf8(out).unwrap()
    }

    /// Sends `()` when dropped.
    struct Dropped(mpsc::UnboundedSender<()>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.send(()).ok();
        }
    }

    /// A session closed while the resolver runs: the resolver's future is dropped and
    /// nothing is left of the connection.
    #[tokio::test]
    async fn a_session_closed_while_resolving_leaves_nothing() {
        let started = Arc::new(Notify::new());
        let (dropped_tx, mut dropped) = mpsc::unbounded_channel();
        let (svc, io) = SocketIo::builder()
            .with_connect_resolver({
                let started = started.clone();
                move |_| {
                    started.notify_one();
                    let dropped = Dropped(dropped_tx.clone());
                    async move {
                        let _dropped = dropped;
                        std::future::pending::<()>().await;
                        Resolution::fresh()
                    }
                }
            })
            .build_svc();
        io.ns("/", async || ());

        let open = polling(&svc, "", "").await;
        let sid = open.split('"').nth(3).expect("the session id").to_owned();
        assert_eq!(polling(&svc, &format!("&sid={sid}"), "40").await, "ok");
        started.notified().await;
        assert_eq!(polling(&svc, &format!("&sid={sid}"), "1").await, "ok");

        let dropped = tokio::time::timeout(Duration::from_secs(1), dropped.recv());
        assert_eq!(dropped.await.expect("the resolver is dropped"), Some(()));
        assert!(io.sockets().is_empty());
        assert!(io.get_engine_socket(sid.parse().unwrap()).is_none());
    }
}
