use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use engineioxide_core::{ProtocolVersion, Sid, TransportType};
use http::request::Parts;

use crate::{
    config::EngineIoConfig,
    handler::EngineIoHandler,
    heartbeat::Heartbeat,
    socket::{DisconnectReason, Socket},
};

type SocketMap<T> = RwLock<HashMap<Sid, Arc<T>>>;

/// The [`EngineIo`] struct holds the state of the engine.io server as well as utility methods to manage the state
pub struct EngineIo<H: EngineIoHandler> {
    /// A map of all the sockets connected to the server
    sockets: SocketMap<Socket<H::Data>>,

    /// The handler for the engine.io server that will be called when events are received
    pub handler: Arc<H>,

    /// The config for the engine.io server
    pub config: EngineIoConfig,

    /// The heartbeat of every socket
    pub(crate) heartbeat: Arc<Heartbeat<H::Data>>,
}

impl<H: EngineIoHandler> EngineIo<H> {
    /// Create a new Engine.IO server with a [`EngineIoHandler`] and a [`EngineIoConfig`]
    pub fn new(handler: Arc<H>, config: EngineIoConfig) -> Self {
        Self {
            sockets: RwLock::new(HashMap::new()),
            heartbeat: Arc::new(Heartbeat::new(config.ping_interval, config.ping_timeout)),
            config,
            handler,
        }
    }
}

impl<H: EngineIoHandler> EngineIo<H> {
    /// Create a new engine.io session and a new socket and add it to the socket map
    pub(crate) fn create_session(
        self: &Arc<Self>,
        protocol: ProtocolVersion,
        transport: TransportType,
        req: Parts,
        supports_binary: bool,
    ) -> Arc<Socket<H::Data>> {
        let engine = self.clone();
        let close_fn = Box::new(move |sid, reason| engine.close_session(sid, reason));

        let socket = Socket::new(
            protocol,
            transport,
            &self.config,
            req,
            close_fn,
            supports_binary,
        );
        let socket = Arc::new(socket);
        self.sockets
            .write()
            .unwrap()
            .insert(socket.id, socket.clone());
        self.handler.clone().on_connect(socket.clone());
        socket
    }

    /// Get a socket by its sid
    /// Clones the socket ref to avoid holding the lock
    pub fn get_socket(&self, sid: Sid) -> Option<Arc<Socket<H::Data>>> {
        self.sockets.read().unwrap().get(&sid).cloned()
    }

    /// Close an engine.io session by removing the socket from the socket map and closing the socket.
    ///
    /// It should be the only way to close a session and to remove a socket from the socket map.
    #[cfg_attr(feature = "tracing", tracing::instrument(skip(self)))]
    pub fn close_session(&self, sid: Sid, reason: DisconnectReason) {
        let socket = { self.sockets.write().unwrap().remove(&sid) };
        let Some(socket) = socket else {
            #[cfg(feature = "tracing")]
            tracing::debug!(
                ?sid,
                socket_len = self.sockets.read().unwrap().len(),
                "socket not found"
            );
            return;
        };

        // A polling session the server was closing ends with the server's reason, whatever
        // ends it (the client reading the close packet, or the heartbeat giving up).
        let reason = socket.closing_reason().unwrap_or(reason);

        // Notify every transport task listening on this token to stop. Cancellation-aware
        // transports (the ws `forward_to_socket` task and pending polling requests) will release
        // the `internal_rx` lock as soon as they observe the cancellation.
        socket.cancellation_token.cancel();

        let handler = self.handler.clone();
        tokio::spawn(async move {
            // Wait for the cancelled transport task to yield the `internal_rx` lock, then close the
            // channel so that `Socket::closed` resolves and no more packets can be buffered.
            // When no transport holds the lock (e.g. polling between requests) this resolves
            // immediately.
            socket.internal_rx.lock().await.buffered_rx.close();

            #[cfg(feature = "tracing")]
            tracing::debug!(sid = %socket.id, "session closed, notifying handler");
            handler.on_disconnect(socket, reason);
        });

        #[cfg(feature = "tracing")]
        tracing::debug!(
            rem_sockets = self.sockets.read().unwrap().len(),
            "remaining sockets",
        );
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use engineioxide_core::Str;
    use http::Request;

    use super::*;

    #[derive(Debug, Clone)]
    struct MockHandler;

    impl EngineIoHandler for MockHandler {
        type Data = ();

        fn on_connect(self: Arc<Self>, socket: Arc<Socket<Self::Data>>) {
            println!("socket connect {}", socket.id);
        }

        fn on_disconnect(&self, socket: Arc<Socket<Self::Data>>, reason: DisconnectReason) {
            println!("socket disconnect {} {:?}", socket.id, reason);
        }

        fn on_message(self: &Arc<Self>, msg: Str, socket: Arc<Socket<Self::Data>>) {
            println!("Ping pong message {msg:?}");
            socket.emit(msg).ok();
        }

        fn on_binary(self: &Arc<Self>, data: Bytes, socket: Arc<Socket<Self::Data>>) {
            println!("Ping pong binary message {data:?}");
            socket.emit_binary(data).ok();
        }
    }

    /// Records the reason its session was closed for.
    #[derive(Debug, Default)]
    struct Recorder(std::sync::Mutex<Option<DisconnectReason>>);
    impl EngineIoHandler for Recorder {
        type Data = ();
        fn on_connect(self: Arc<Self>, _: Arc<Socket<()>>) {}
        fn on_disconnect(&self, _: Arc<Socket<()>>, reason: DisconnectReason) {
            *self.0.lock().unwrap() = Some(reason);
        }
        fn on_message(self: &Arc<Self>, _: Str, _: Arc<Socket<()>>) {}
        fn on_binary(self: &Arc<Self>, _: Bytes, _: Arc<Socket<()>>) {}
    }

    impl Recorder {
        /// Waits (at most 5 s) until the handler is told; the reason.
        async fn closed(&self) -> DisconnectReason {
            let closed = async {
                loop {
                    if let Some(reason) = self.0.lock().unwrap().clone() {
                        return reason;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            };
            tokio::time::timeout(std::time::Duration::from_secs(5), closed)
                .await
                .expect("the handler is told")
        }
    }

    /// An engine of `config` with a polling session opened through the transport (its
    /// heartbeat started).
    fn polling_session(
        config: EngineIoConfig,
    ) -> (Arc<Recorder>, Arc<EngineIo<Recorder>>, Arc<Socket<()>>) {
        let handler = Arc::new(Recorder::default());
        let engine = Arc::new(EngineIo::new(handler.clone(), config));
        crate::transport::polling::open_req::<_, (), _>(
            engine.clone(),
            ProtocolVersion::V4,
            Request::new(()),
            true,
        )
        .unwrap();
        let socket = engine
            .sockets
            .read()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .clone();
        (handler, engine, socket)
    }

    /// The body of the client's next polling `GET`.
    async fn poll(engine: &Arc<EngineIo<Recorder>>, sid: Sid) -> String {
        use http_body_util::{BodyExt, Full};
        let response = crate::transport::polling::polling_req::<Full<Bytes>, _>(
            engine.clone(),
            ProtocolVersion::V4,
            sid,
        )
        .await
        .expect("a polling response");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    fn create_engine() -> Arc<EngineIo<MockHandler>> {
        let config = EngineIoConfig::default();
        Arc::new(EngineIo::new(Arc::new(MockHandler), config))
    }

    #[tokio::test]
    async fn create_session() {
        let engine = create_engine();
        let socket = engine.create_session(
            ProtocolVersion::V4,
            TransportType::Polling,
            Request::<()>::default().into_parts().0,
            true,
        );
        assert_eq!(engine.sockets.read().unwrap().len(), 1);
        assert_eq!(socket.protocol, ProtocolVersion::V4);
        assert!(socket.is_http());
    }

    #[tokio::test]
    async fn close_session() {
        let engine = create_engine();
        let socket = engine.create_session(
            ProtocolVersion::V4,
            TransportType::Polling,
            Request::<()>::default().into_parts().0,
            true,
        );
        assert_eq!(engine.sockets.read().unwrap().len(), 1);
        engine.close_session(socket.id, DisconnectReason::TransportClose);
        assert_eq!(engine.sockets.read().unwrap().len(), 0);
    }

    #[tokio::test]
    async fn get_socket() {
        let engine = create_engine();
        let socket = engine.create_session(
            ProtocolVersion::V4,
            TransportType::Polling,
            Request::<()>::default().into_parts().0,
            true,
        );
        assert_eq!(engine.sockets.read().unwrap().len(), 1);
        let socket = engine.get_socket(socket.id).unwrap();
        assert_eq!(socket.protocol, ProtocolVersion::V4);
        assert!(socket.is_http());
    }

    /// The engine's heartbeat, through the transport that starts it: the first ping at
    /// once, then a session whose client does not answer is closed.
    #[tokio::test]
    async fn an_unanswered_session_is_closed_by_the_heartbeat() {
        use std::time::Duration;

        let config = EngineIoConfig::builder()
            .ping_interval(Duration::from_millis(50))
            .ping_timeout(Duration::from_millis(40))
            .build();
        let (handler, engine, socket) = polling_session(config);
        let first = socket
            .internal_rx
            .try_lock()
            .unwrap()
            .buffered_rx
            .try_recv();
        assert_eq!(first.unwrap().into_first(), engineioxide_core::Packet::Ping);

        assert_eq!(handler.closed().await, DisconnectReason::HeartbeatTimeout);
        assert!(engine.get_socket(socket.id).is_none());
    }

    /// A polling session the server closes ends with the `GET` that gives its client its
    /// close packet, in a payload of its own after what was queued before; nothing can be
    /// queued after it.
    #[tokio::test]
    async fn a_closed_polling_session_ends_once_its_client_read_the_close_packet() {
        let (handler, engine, socket) = polling_session(EngineIoConfig::default());
        socket.emit("bye").unwrap();
        socket.close(DisconnectReason::ClosingServer);
        assert!(socket.is_closed(), "nothing more can be queued");
        assert!(socket.emit("late").is_err());
        assert!(
            engine.get_socket(socket.id).is_some(),
            "the client can still read what was queued"
        );
        socket.close(DisconnectReason::TransportClose);
        assert!(engine.get_socket(socket.id).is_some(), "closing already");
        assert!(handler.0.lock().unwrap().is_none());

        // The first ping and the message, then the close packet alone.
        assert_eq!(poll(&engine, socket.id).await, "2\x1e4bye");
        assert!(engine.get_socket(socket.id).is_some());
        assert_eq!(poll(&engine, socket.id).await, "1");
        assert!(engine.get_socket(socket.id).is_none());
        assert_eq!(handler.closed().await, DisconnectReason::ClosingServer);
        tokio::time::timeout(std::time::Duration::from_secs(1), socket.closed())
            .await
            .expect("closed() resolves");
    }

    /// A closing polling session whose client does not come back for its close packet
    /// ends when the heartbeat gives up on it, for the reason it was closed for.
    #[tokio::test]
    async fn a_closing_polling_session_that_is_not_read_ends_with_the_heartbeat() {
        use std::time::Duration;

        let config = EngineIoConfig::builder()
            .ping_interval(Duration::from_millis(50))
            .ping_timeout(Duration::from_millis(40))
            .build();
        let (handler, engine, socket) = polling_session(config);
        socket.close(DisconnectReason::ClosingServer);
        assert_eq!(handler.closed().await, DisconnectReason::ClosingServer);
        assert!(engine.get_socket(socket.id).is_none());
    }

    /// A session closed for an error ends at once.
    #[tokio::test]
    async fn a_polling_session_closed_for_an_error_ends_at_once() {
        let (handler, engine, socket) = polling_session(EngineIoConfig::default());
        socket.close(DisconnectReason::PacketParsingError);
        assert!(engine.get_socket(socket.id).is_none());
        assert_eq!(handler.closed().await, DisconnectReason::PacketParsingError);
    }
}
