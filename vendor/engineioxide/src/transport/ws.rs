//! The ws transport module is responsible for handling websocket connections
//! The only public function is [`new_req`] which is used to upgrade a http request to a websocket connection
//!
//! Other functions are used internally to handle the websocket connection through tasks and channels
//! and to handle upgrade from polling to ws

use std::{ops::ControlFlow, sync::Arc};

use futures_util::{
    SinkExt, StreamExt, TryStreamExt,
    stream::{SplitSink, SplitStream},
};
use http::{HeaderValue, Request, Response, StatusCode, request::Parts};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        self, Message,
        handshake::derive_accept_key,
        protocol::{Role, WebSocketConfig},
    },
};
use tokio_util::future::FutureExt as _;

use engineioxide_core::{Packet, ProtocolVersion, Sid, Str, TransportType};

use crate::{
    DisconnectReason, Socket, body::ResponseBody, config::EngineIoConfig, engine::EngineIo,
    errors::Error, handler::EngineIoHandler, socket::Outgoing, transport::make_open_packet,
};

use super::write_buffer::WriteBuffer;

/// Create a response for websocket upgrade
fn ws_response<B>(ws_key: &HeaderValue) -> Response<ResponseBody<B>> {
    let derived = derive_accept_key(ws_key.as_bytes());
    let sec = derived.parse::<HeaderValue>().unwrap();
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::UPGRADE, HeaderValue::from_static("websocket"))
        .header(
            http::header::CONNECTION,
            HeaderValue::from_static("Upgrade"),
        )
        .header(http::header::SEC_WEBSOCKET_ACCEPT, sec)
        .body(ResponseBody::empty_response())
        .unwrap() // we are only using constants
}

/// Upgrade a websocket request to create a websocket connection.
///
/// If a sid is provided in the query it means that is is upgraded from an existing HTTP polling request.
/// In this case the http polling request is closed and the SID is kept for the websocket
pub fn new_req<R: Send + 'static, B, H: EngineIoHandler>(
    engine: Arc<EngineIo<H>>,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    mut req: Request<R>,
) -> Result<Response<ResponseBody<B>>, Error> {
    let ws_key = req
        .headers()
        .get("Sec-WebSocket-Key")
        .ok_or(Error::InvalidWebSocketKey)?
        .clone();
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (parts, _body) = req.into_parts();
    // The connection's task lives as long as the connection: what only its set-up needs
    // (the upgrade, the request head, the handshakes) is kept out of its future, on the
    // heap until the connection is established.
    let setup = Box::new(Setup {
        on_upgrade,
        parts,
        protocol,
        sid,
    });

    tokio::spawn(connection(engine, setup));

    Ok(ws_response(&ws_key))
}

/// The task of one WebSocket connection: its set-up, then reading it.
// Not an `async fn`: measured, that future is 8 bytes larger (248 B against 240 B with
// `tracing`), and it lives as long as the connection.
#[allow(clippy::manual_async_fn)]
fn connection<H: EngineIoHandler>(
    engine: Arc<EngineIo<H>>,
    setup: Box<Setup>,
) -> impl Future<Output = ()> + Send + 'static {
    async move {
        let sid = setup.sid;
        let established = Box::pin(establish(engine.clone(), setup)).await;
        // (Unpacked out of line: the setup error, large, then takes no room next to the
        // reading future.)
        if let Some((socket, rx)) = established_or_close(&engine, sid, established) {
            read(engine, socket, rx).await;
        }
    }
}

type Established<D> = (Arc<Socket<D>>, SplitStream<WebSocketStream<Upgraded>>);

/// The established connection, or `None` after closing the session it was for.
fn established_or_close<H: EngineIoHandler>(
    engine: &EngineIo<H>,
    sid: Option<Sid>,
    established: Result<Established<H::Data>, Error>,
) -> Option<Established<H::Data>> {
    match established {
        Ok(established) => Some(established),
        Err(Error::MultipleWebsocketRequests) => None,
        Err(_e) => {
            #[cfg(feature = "tracing")]
            tracing::debug!(?sid, "ws closed with error: {_e}");
            if let Some(sid) = sid {
                engine.close_session(sid, DisconnectReason::TransportError);
            }
            None
        }
    }
}

/// What setting up a WebSocket connection needs.
struct Setup {
    on_upgrade: hyper::upgrade::OnUpgrade,
    parts: Parts,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
}

/// Completes the HTTP upgrade, then opens the session (or upgrades a polling session),
/// starts its writer and returns the reading half.
async fn establish<H: EngineIoHandler>(
    engine: Arc<EngineIo<H>>,
    setup: Box<Setup>,
) -> Result<Established<H::Data>, Error> {
    let Setup {
        on_upgrade,
        parts,
        protocol,
        sid,
    } = *setup;
    let conn = match on_upgrade.await {
        Ok(conn) => TokioIo::new(conn),
        Err(_e) => {
            #[cfg(feature = "tracing")]
            tracing::debug!("ws upgrade error: {}", _e);
            return Err(Error::MultipleWebsocketRequests);
        }
    };
    let (socket, ws) = init(&engine, conn, protocol, sid, parts).await?;
    let (tx, rx) = ws.split();
    // Pipe between the internal socket channel and the websocket.
    tokio::spawn(forward_to_socket::<H, Upgraded>(socket.clone(), tx));
    Ok((socket, rx))
}

type Upgraded = WriteBuffer<TokioIo<hyper::upgrade::Upgraded>>;

/// Reads the websocket until it closes or the session ends.
async fn read<H: EngineIoHandler, S>(
    engine: Arc<EngineIo<H>>,
    socket: Arc<Socket<H::Data>>,
    rx: SplitStream<WebSocketStream<S>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let result = forward_to_handler(&engine, rx, &socket)
        .with_cancellation_token(&socket.cancellation_token)
        .await;
    read_ended(&engine, &socket, result);
}

/// Closes the session once reading ended. (Out of the async fn: a borrow of the result
/// there would take room in the connection's long-lived future.)
fn read_ended<H: EngineIoHandler>(
    engine: &EngineIo<H>,
    socket: &Socket<H::Data>,
    result: Option<Result<(), Error>>,
) {
    match result {
        Some(Err(ref e)) => {
            let reason =
                Option::<DisconnectReason>::from(e).unwrap_or(DisconnectReason::TransportError);

            #[cfg(feature = "tracing")]
            tracing::debug!("error when handling packet: {:?}", e);
            engine.close_session(socket.id, reason);
        }
        Some(Ok(())) => {
            #[cfg(feature = "tracing")]
            tracing::debug!(sid = %socket.id, "ws transport was closed");
            engine.close_session(socket.id, DisconnectReason::TransportClose);
        }
        None => {
            #[cfg(feature = "tracing")]
            tracing::debug!(sid = %socket.id, "socket is closing");
        }
    }
}

/// Serves a websocket connection on a raw stream (already upgraded): sets the session up,
/// then reads until the connection or the session ends.
pub async fn on_init<H: EngineIoHandler, S>(
    engine: Arc<EngineIo<H>>,
    conn: S,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req_data: Parts,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (socket, ws) = init(&engine, conn, protocol, sid, req_data).await?;
    let (tx, rx) = ws.split();
    tokio::spawn(forward_to_socket::<H, WriteBuffer<S>>(socket.clone(), tx));
    read(engine, socket, rx).await;
    Ok(())
}

/// A session and its websocket, once the handshakes are done.
type Initialized<D, S> = (Arc<Socket<D>>, WebSocketStream<S>);

/// Handle a websocket connection upgrade
///
/// Sends an open packet if it is not an upgrade from a polling request
#[cfg_attr(
    feature = "tracing",
    tracing::instrument(level = "trace", name = "init_websocket", skip(engine, conn, req_data))
)]
async fn init<H: EngineIoHandler, S>(
    engine: &Arc<EngineIo<H>>,
    conn: S,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req_data: Parts,
) -> Result<Initialized<H::Data, WriteBuffer<S>>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Frames are collected until the flush by the `WriteBuffer` rather than by tungstenite,
    // whose buffer would keep the size of the largest batch (see `write_buffer.rs`).
    let ws_config = WebSocketConfig::default()
        .write_buffer_size(0)
        .read_buffer_size(engine.config.ws_read_buffer_size)
        .max_message_size(Some(engine.config.ws_max_message_size))
        .max_frame_size(Some(engine.config.ws_max_frame_size));

    let conn = WriteBuffer::new(conn);
    let ws_init = move || WebSocketStream::from_raw_socket(conn, Role::Server, Some(ws_config));
    if let Some(sid) = sid {
        match engine.get_socket(sid) {
            None => Err(Error::UnknownSessionID(sid)),
            Some(socket) if socket.is_ws() => Err(Error::MultipleWebsocketRequests),
            Some(socket) => {
                let mut ws = ws_init().await;

                let upgrade_fut = upgrade_handshake::<H, WriteBuffer<S>>(&socket, &mut ws);
                match tokio::time::timeout(engine.config.upgrade_timeout, upgrade_fut)
                    .with_cancellation_token(&socket.cancellation_token)
                    .await
                {
                    Some(Ok(res)) => res?,
                    Some(Err(_)) => {
                        #[cfg(feature = "tracing")]
                        tracing::debug!(?sid, "ws upgrade timed out, closing session");
                        engine.close_session(socket.id, DisconnectReason::TransportError);
                        return Err(Error::Upgrade);
                    }
                    None => {
                        #[cfg(feature = "tracing")]
                        tracing::debug!(?sid, "socket is being closed");
                        return Err(Error::Upgrade);
                    }
                }
                Ok((socket, ws))
            }
        }
    } else {
        let socket = engine.create_session(protocol, TransportType::Websocket, req_data, false);

        #[cfg(feature = "tracing")]
        tracing::debug!("new websocket connection");

        let mut ws = ws_init().await;
        init_handshake(socket.id, &mut ws, &engine.config).await?;
        engine.heartbeat.start(&socket);
        Ok((socket, ws))
    }
}

/// Forwards all packets received from a websocket to a EngineIo [`Socket`]
async fn forward_to_handler<H: EngineIoHandler, S>(
    engine: &Arc<EngineIo<H>>,
    mut rx: SplitStream<WebSocketStream<S>>,
    socket: &Arc<Socket<H::Data>>,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    while let Some(msg) = rx.try_next().await? {
        if handle_message(engine, socket, msg)?.is_break() {
            break;
        }
    }
    Ok(())
}

/// Handles one message read from the websocket; `Break` once the session is closed.
fn handle_message<H: EngineIoHandler>(
    engine: &Arc<EngineIo<H>>,
    socket: &Arc<Socket<H::Data>>,
    msg: Message,
) -> Result<ControlFlow<()>, Error> {
    match msg {
        Message::Text(msg) => match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
            Packet::Close => {
                #[cfg(feature = "tracing")]
                tracing::debug!("[sid={}] closing session", socket.id);
                engine.close_session(socket.id, DisconnectReason::TransportClose);
                return Ok(ControlFlow::Break(()));
            }
            Packet::Pong | Packet::Ping => {
                socket.heartbeat_received();
            }
            Packet::Message(msg) => engine.handler.on_message(msg, socket.clone()),
            p => return Err(Error::BadPacket(p)),
        },
        Message::Binary(mut data) => {
            if socket.protocol == ProtocolVersion::V3 && !data.is_empty() {
                // The first byte is the message type, which we don't need.
                data = data.split_off(1);
            }
            engine.handler.on_binary(data, socket.clone());
        }
        Message::Close(_) => {
            #[cfg(feature = "tracing")]
            tracing::debug!("websocket closed, closing session");
            engine.close_session(socket.id, DisconnectReason::TransportClose);
            return Ok(ControlFlow::Break(()));
        }
        _ => {
            #[cfg(feature = "tracing")]
            tracing::debug!(sid = ?socket.id, "unexpected ws message");
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// Forwards all packets waiting to be sent to the websocket
///
/// The websocket stream is flushed only when the internal channel is drained
async fn forward_to_socket<H: EngineIoHandler, S>(
    socket: Arc<Socket<H::Data>>,
    mut tx: SplitSink<WebSocketStream<S>, Message>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // A polling request that was in progress during the upgrade may still hold the lock.
    let lock = socket.internal_rx.lock();
    let Some(mut internal_rx) = lock
        .with_cancellation_token(&socket.cancellation_token)
        .await
    else {
        #[cfg(feature = "tracing")]
        tracing::debug!(sid = %socket.id, "session closed before starting the ws writer");
        return;
    };
    let buffered_rx = &mut internal_rx.buffered_rx;

    // Forward buffered packets until the channel is closed or the session is cancelled.
    // Each wake-up writes everything buffered, then flushes once. The latest volatile
    // packets are written when nothing is buffered.
    loop {
        let (mut batch, volatile) = tokio::select! {
            biased;
            items = std::future::poll_fn(|cx| buffered_rx.poll_next_any(cx)) => match items {
                Some(items) => items,
                None => break,
            },
            _ = socket.cancellation_token.cancelled() => break,
        };
        loop {
            let mut _count = 1;
            // A single packet is written from here, a batch packet by packet from its box
            // (not moved into an iterator: that would be kept in this long-lived future).
            let single = match batch {
                Outgoing::Message(msg) => Some(Packet::Message(msg)),
                Outgoing::Binary(bin) => Some(Packet::Binary(bin)),
                Outgoing::Packets(mut packets) => {
                    _count = packets.len();
                    for i in 0..packets.len() {
                        let item = std::mem::replace(&mut packets[i], Packet::Noop);
                        if let Some(msg) = ws_message(socket.protocol, item) {
                            let sent = tx.feed(msg).await;
                            log_send_error(&socket, sent);
                        }
                    }
                    None
                }
            };
            if let Some(msg) = single.and_then(|item| ws_message(socket.protocol, item)) {
                let sent = tx.feed(msg).await;
                log_send_error(&socket, sent);
            }
            // A volatile wake-up writes only its own packets, as before.
            if volatile {
                #[cfg(feature = "tracing")]
                log_volatile_flush(&socket, _count);
                break;
            }
            match buffered_rx.try_recv() {
                Ok(more) => batch = more,
                Err(_) => break,
            }
        }

        #[cfg(feature = "tracing")]
        tracing::trace!(sid = %socket.id, "ws flush");
        tx.flush().await.ok();
    }

    #[cfg(feature = "tracing")]
    tracing::trace!(sid = %socket.id, "ws closing flush");

    tx.flush().await.ok();
    tx.close().await.ok();
}

/// Logs a volatile flush. (Counting the packets while writing them: a borrow of the batch
/// made the writer's long-lived future 168 bytes larger.)
#[cfg(feature = "tracing")]
#[inline(never)]
fn log_volatile_flush<D: Default + Send + Sync + 'static>(socket: &Socket<D>, count: usize) {
    tracing::debug!(sid = ?socket.id, "ws volatile flush: {count} packets");
}

/// Logs a failed write. Out of line: the error (large) then takes no room in the writer's
/// long-lived future.
#[inline(never)]
fn log_send_error<D: Default + Send + Sync + 'static>(
    _socket: &Socket<D>,
    result: Result<(), tungstenite::Error>,
) {
    if let Err(_e) = result {
        #[cfg(feature = "tracing")]
        tracing::debug!("[sid={}] error sending packet: {}", _socket.id, _e);
    }
}

/// The websocket message of a packet; `None` for a packet that is not written.
fn ws_message(protocol: ProtocolVersion, item: Packet) -> Option<Message> {
    match item {
        Packet::Binary(bin) | Packet::BinaryV3(bin) => {
            if protocol == ProtocolVersion::V3 {
                // v3 protocol requires packet type as the first byte.
                // This requires a new buffer. This is OK as it is only for the V3 protocol.
                let mut buff = Vec::with_capacity(bin.len() + 1);
                buff.push(0x04);
                buff.extend(bin);
                Some(Message::Binary(buff.into()))
            } else {
                Some(Message::Binary(bin))
            }
        }
        // A Noop Packet maybe sent by the server to upgrade from a polling connection
        // In the case that the packet was not poll in time it will remain in the buffer and therefore
        // it should be discarded here
        Packet::Noop => None,
        item => {
            let packet: String = item.into();
            Some(Message::Text(packet.into()))
        }
    }
}

/// Send a Engine.IO [`OpenPacket`] to initiate a websocket connection
async fn init_handshake<S>(
    sid: Sid,
    ws: &mut WebSocketStream<S>,
    config: &EngineIoConfig,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let packet = Packet::Open(make_open_packet(TransportType::Websocket, sid, config));
    let packet: String = packet.into();
    ws.send(Message::Text(packet.into())).await?;
    Ok(())
}

/// Upgrade a session from a polling request to a websocket request.
///
/// Before upgrading the session the server should send a NOOP packet to any pending polling request.
///
/// ## Handshake :
/// ```text
/// CLIENT                                                 SERVER
///│                                                      │
///│   GET /engine.io/?EIO=4&transport=websocket&sid=...  │
///│ ───────────────────────────────────────────────────► │
///│  ◄─────────────────────────────────────────────────┘ │
///│            HTTP 101 (WebSocket handshake)            │
///│                                                      │
///│            -----  WebSocket frames -----             │
///│  ─────────────────────────────────────────────────►  │
///│                         2probe                       │ (ping packet)
///│  ◄─────────────────────────────────────────────────  │
///│                         3probe                       │ (pong packet)
///│  ─────────────────────────────────────────────────►  │
///│                         5                            │ (upgrade packet)
///│                                                      │
///│            -----  WebSocket frames -----             │
/// ```
#[cfg_attr(
    feature = "tracing",
    tracing::instrument(level = "trace", skip(socket, ws))
)]
async fn upgrade_handshake<H: EngineIoHandler, S>(
    socket: &Arc<Socket<H::Data>>,
    ws: &mut WebSocketStream<S>,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    #[cfg(feature = "tracing")]
    tracing::debug!("starting websocket connection upgrade");

    // The socket is upgrading, from now on all polling
    // request will return a `Packet::Noop`
    socket.start_upgrade();

    // We send a last Noop request to close a potential waiting polling request.
    socket
        .internal_tx
        .send(Outgoing::from(Packet::Noop))
        .await
        .map_err(|_| Error::Upgrade)?;

    // wait for any current polling connection to finish by waiting for the socket to be unlocked
    // All other polling connection will be immediately closed with a NOOP packet.
    let _lock = socket.internal_rx.lock().await;

    // Fetch the next packet from the ws stream, it should be a PingUpgrade packet
    let msg = match ws.next().await {
        Some(Ok(Message::Text(d))) => d,
        _ => Err(Error::Upgrade)?,
    };
    match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
        Packet::PingUpgrade => {
            #[cfg(feature = "tracing")]
            tracing::debug!("received first ping upgrade");
            // Respond with a PongUpgrade packet
            ws.send(Message::Text(String::from(Packet::PongUpgrade).into()))
                .await?;
        }
        p => Err(Error::BadPacket(p))?,
    };

    // Fetch the next packet from the ws stream, it should be an Upgrade packet
    let msg = match ws.next().await {
        Some(Ok(Message::Text(d))) => d,
        Some(Ok(Message::Close(_))) => {
            #[cfg(feature = "tracing")]
            tracing::debug!("ws stream closed before upgrade");
            Err(Error::Upgrade)?
        }
        _ => {
            #[cfg(feature = "tracing")]
            tracing::debug!("unexpected ws message before upgrade");
            Err(Error::Upgrade)?
        }
    };
    match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
        Packet::Upgrade => {
            #[cfg(feature = "tracing")]
            tracing::debug!("ws upgraded successfully")
        }
        p => Err(Error::BadPacket(p))?,
    };

    socket.upgrade_to_websocket();
    Ok(())
}

fn ws_bytes_to_str(bytes: tungstenite::Utf8Bytes) -> Str {
    // SAFETY: the bytes are guaranteed to be valid UTF-8 by the tungstenite parser
    unsafe { Str::from_bytes_unchecked(bytes.into()) }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use futures_util::StreamExt;
    use http::Request;
    use tokio::{io::DuplexStream, sync::mpsc::error::TrySendError};

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(1);

    #[derive(Debug)]
    struct StubHandler;
    impl EngineIoHandler for StubHandler {
        type Data = ();
        fn on_connect(self: Arc<Self>, _: Arc<Socket<()>>) {}
        fn on_disconnect(&self, _: Arc<Socket<()>>, _: DisconnectReason) {}
        fn on_message(self: &Arc<Self>, _: Str, _: Arc<Socket<()>>) {}
        fn on_binary(self: &Arc<Self>, _: Bytes, _: Arc<Socket<()>>) {}
    }

    fn socket() -> Arc<Socket<()>> {
        Arc::new(Socket::new(
            ProtocolVersion::V4,
            TransportType::Websocket,
            &EngineIoConfig::default(),
            Request::<()>::default().into_parts().0,
            Box::new(|_, _| ()),
            false,
        ))
    }

    async fn ws_pair() -> (WebSocketStream<DuplexStream>, WebSocketStream<DuplexStream>) {
        let (server, client) = tokio::io::duplex(1024);
        (
            WebSocketStream::from_raw_socket(server, Role::Server, None).await,
            WebSocketStream::from_raw_socket(client, Role::Client, None).await,
        )
    }

    /// What each WebSocket connection keeps in its long-lived tasks: their futures are
    /// allocated for the connection's whole life.
    #[tokio::test]
    async fn per_connection_future_sizes() {
        let (server, _client) = ws_pair().await;
        let (tx, _rx) = server.split();
        let writer = forward_to_socket::<StubHandler, _>(socket(), tx);
        let engine = Arc::new(EngineIo::new(
            Arc::new(StubHandler),
            EngineIoConfig::default(),
        ));
        let mut request = Request::new(());
        let setup = Box::new(Setup {
            on_upgrade: hyper::upgrade::on(&mut request),
            parts: request.into_parts().0,
            protocol: ProtocolVersion::V4,
            sid: None,
        });
        let reader = connection(engine, setup);
        let sizes = [
            std::mem::size_of_val(&writer),
            std::mem::size_of_val(&reader),
        ];
        eprintln!("writer, reader futures: {sizes:?} B");
        // Were 2320 and 2048 B (plus the spawned wrapper) before they were flattened. (The
        // heartbeat, 1248 B, is no longer a task per socket.)
        assert!(sizes[0] <= 768, "writer future grew: {sizes:?}");
        assert!(sizes[1] <= 512, "reader future grew: {sizes:?}");
    }

    /// A polling request can still hold the lock at the end of an upgrade.
    #[tokio::test]
    async fn writer_waits_for_the_lock_of_a_polling_request() {
        let socket = socket();
        let (server, mut client) = ws_pair().await;
        let (tx, _rx) = server.split();

        let polling = socket.internal_rx.lock().await;
        let writer = tokio::spawn(forward_to_socket::<StubHandler, _>(socket.clone(), tx));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!writer.is_finished(), "the writer should wait for the lock");

        drop(polling);
        socket.emit(Str::from("hello")).unwrap();
        let msg = tokio::time::timeout(TIMEOUT, client.next())
            .await
            .expect("the writer should send the packet")
            .unwrap()
            .unwrap();
        assert_eq!(msg, Message::text("4hello"));
    }

    /// Reads `n` text messages.
    async fn read_texts(client: &mut WebSocketStream<DuplexStream>, n: usize) -> Vec<String> {
        let mut texts = Vec::with_capacity(n);
        while texts.len() < n {
            let msg = tokio::time::timeout(TIMEOUT, client.next())
                .await
                .expect("a message in time")
                .expect("stream open")
                .expect("a valid message");
            texts.push(msg.into_text().unwrap().as_str().to_owned());
        }
        texts
    }

    /// A client that does not read: what its socket cannot take waits in the queue, which
    /// stays bounded (`Full` past `max_buffer_size`); once it reads, everything arrives,
    /// in order.
    #[tokio::test(flavor = "current_thread")]
    async fn a_slow_reader_fills_the_bounded_queue_then_gets_everything_in_order() {
        let socket = socket();
        // A small pipe: the first packets fill it.
        let (server, client) = tokio::io::duplex(256);
        let server = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        let (tx, _rx) = server.split();
        tokio::spawn(forward_to_socket::<StubHandler, _>(socket.clone(), tx));
        tokio::time::sleep(Duration::from_millis(10)).await;

        let payload = "x".repeat(40);
        let mut sent = 0;
        loop {
            match socket.emit(Str::from(format!("{sent:03}{payload}"))) {
                Ok(()) => sent += 1,
                Err(TrySendError::Full(_)) => break,
                Err(e) => panic!("unexpected {e:?}"),
            }
            // Let the writer run between sends, as it would on a busy server.
            tokio::task::yield_now().await;
            assert!(sent < 1000, "the queue should fill");
        }
        let capacity = EngineIoConfig::default().max_buffer_size;
        // The queue holds `capacity`; the pipe and the sink hold a few more.
        assert!(
            (capacity..capacity + 16).contains(&sent),
            "{sent} packets taken"
        );

        let texts = read_texts(&mut client, sent).await;
        for (i, text) in texts.iter().enumerate() {
            assert_eq!(text, &format!("4{i:03}{payload}"));
        }
        socket.emit(Str::from("after")).unwrap();
        assert_eq!(read_texts(&mut client, 1).await, ["4after"]);
    }

    /// Senders on several threads: each one's packets arrive in its order, none lost.
    #[tokio::test]
    async fn concurrent_senders_keep_their_order() {
        const SENDERS: usize = 4;
        const EACH: usize = 2000;
        let socket = socket();
        let (server, client) = tokio::io::duplex(4096);
        let server = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        let (tx, _rx) = server.split();
        tokio::spawn(forward_to_socket::<StubHandler, _>(socket.clone(), tx));

        let reader = tokio::spawn(async move { read_texts(&mut client, SENDERS * EACH).await });
        let mut senders = Vec::new();
        for s in 0..SENDERS {
            let socket = socket.clone();
            senders.push(tokio::task::spawn_blocking(move || {
                for i in 0..EACH {
                    let mut msg = Str::from(format!("{s} {i}"));
                    loop {
                        match socket.emit(msg) {
                            Ok(()) => break,
                            Err(TrySendError::Full(back)) => {
                                msg = back;
                                std::thread::yield_now();
                            }
                            Err(e) => panic!("unexpected {e:?}"),
                        }
                    }
                }
            }));
        }
        for sender in senders {
            sender.await.unwrap();
        }
        let texts = tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .expect("every packet read")
            .unwrap();
        let mut next = [0usize; SENDERS];
        for text in texts {
            let (s, i) = text[1..].split_once(' ').unwrap();
            let (s, i): (usize, usize) = (s.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[s], "sender {s} out of order");
            next[s] += 1;
        }
        assert_eq!(next, [EACH; SENDERS]);
    }

    #[tokio::test]
    async fn writer_waiting_for_the_lock_stops_with_the_session() {
        let socket = socket();
        let (server, _client) = ws_pair().await;
        let (tx, _rx) = server.split();

        let _polling = socket.internal_rx.lock().await;
        let writer = tokio::spawn(forward_to_socket::<StubHandler, _>(socket.clone(), tx));
        tokio::time::sleep(Duration::from_millis(20)).await;

        socket.cancellation_token.cancel();
        tokio::time::timeout(TIMEOUT, writer)
            .await
            .expect("the writer should stop")
            .unwrap();
    }
}
