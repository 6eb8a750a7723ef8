//! The ws transport module is responsible for handling websocket connections
//! The only public function is [`new_req`] which is used to upgrade a http request to a websocket connection
//!
//! Other functions are used internally to handle the websocket connection through tasks and channels
//! and to handle upgrade from polling to ws

use std::{
    future::poll_fn,
    ops::ControlFlow,
    sync::Arc,
    task::{Context, Poll, ready},
};

use futures_util::{FutureExt, SinkExt, StreamExt, future::OptionFuture};
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
    DisconnectReason, Socket,
    body::ResponseBody,
    config::EngineIoConfig,
    engine::EngineIo,
    errors::Error,
    handler::EngineIoHandler,
    queue::Receiver,
    socket::{InternalRx, Outgoing},
    transport::make_open_packet,
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

/// The task of one WebSocket connection: its set-up, then serving it.
fn connection<H: EngineIoHandler>(
    engine: Arc<EngineIo<H>>,
    setup: Box<Setup>,
) -> impl Future<Output = ()> + Send + 'static {
    let sid = setup.sid;
    // Combinators rather than an async block, which kept the set-up's result (the
    // websocket, or a large error) next to the serving future for the connection's life.
    Box::pin(establish(engine.clone(), setup)).then(move |established| {
        let serving = established_or_close(&engine, sid, established)
            .map(|(socket, ws)| serve(engine, socket, ws));
        OptionFuture::from(serving).map(drop)
    })
}

type Established<D> = Initialized<D, Upgraded>;

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

/// Completes the HTTP upgrade, then opens the session (or upgrades a polling session).
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
    init(&engine, conn, protocol, sid, parts).await
}

type Upgraded = WriteBuffer<TokioIo<hyper::upgrade::Upgraded>>;

/// Serves an established connection until it or its session ends, in one task: reads
/// what the client sends and writes what the session's queue holds, each without waiting
/// for the other (a write that waits for a slow reader does not stop reading).
// Not an `async fn`: its arguments would be stored twice in the future (once as arguments,
// once as locals), and the websocket is most of it.
#[allow(clippy::manual_async_fn)]
fn serve<H: EngineIoHandler, S>(
    engine: Arc<EngineIo<H>>,
    socket: Arc<Socket<H::Data>>,
    mut ws: WebSocketStream<S>,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async move {
        // (Each phase in a future of its own: their states then share the same room.)
        if let Some(mut rx) = lock_queue(&engine, &socket, &mut ws).await {
            read_and_write(&engine, &socket, &mut rx.buffered_rx, &mut ws).await;
        }
    }
}

/// Locks the session's queue, reading the connection meanwhile: a polling request that
/// was in progress during the upgrade may still hold the lock. `None` if the connection or
/// the session ended first.
async fn lock_queue<'a, H: EngineIoHandler, S>(
    engine: &Arc<EngineIo<H>>,
    socket: &'a Arc<Socket<H::Data>>,
    ws: &mut WebSocketStream<S>,
) -> Option<tokio::sync::MutexGuard<'a, InternalRx>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let read = poll_fn(|cx| poll_read(engine, socket, ws, cx))
        .with_cancellation_token(&socket.cancellation_token);
    tokio::select! {
        biased;
        rx = socket.internal_rx.lock() => Some(rx),
        read = read => {
            read_ended(engine, socket, read);
            None
        }
    }
}

/// Reads and writes the connection until it or the session ends, then writes what is
/// still queued and closes the websocket.
async fn read_and_write<H: EngineIoHandler, S>(
    engine: &Arc<EngineIo<H>>,
    socket: &Arc<Socket<H::Data>>,
    queue: &mut Receiver<Outgoing>,
    ws: &mut WebSocketStream<S>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut writer = Writer::default();
    let read = poll_fn(|cx| {
        // (`Ready` only once the writer closed the websocket, which reading then sees.)
        let _ = writer.poll(cx, socket, queue, ws, false);
        poll_read(engine, socket, ws, cx)
    })
    .with_cancellation_token(&socket.cancellation_token)
    .await;
    read_ended(engine, socket, read);
    poll_fn(|cx| writer.poll(cx, socket, queue, ws, true)).await;
}

/// Reads and handles the messages the websocket has; `Ready` once reading ended: `Ok` when
/// the client closed the connection or the session, the error otherwise.
fn poll_read<H: EngineIoHandler, S>(
    engine: &Arc<EngineIo<H>>,
    socket: &Arc<Socket<H::Data>>,
    ws: &mut WebSocketStream<S>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), Error>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        // (Tokio's cooperative budget makes a busy connection `Pending` now and then, so
        // that writing and other tasks get their turn.)
        let msg = match ready!(ws.poll_next_unpin(cx)) {
            Some(Ok(msg)) => msg,
            Some(Err(e)) => return Poll::Ready(Err(e.into())),
            None => return Poll::Ready(Ok(())),
        };
        match handle_message(engine, socket, msg) {
            Ok(ControlFlow::Continue(())) => {}
            Ok(ControlFlow::Break(())) => return Poll::Ready(Ok(())),
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

/// Closes the session once reading ended (`None`: the session was closed). (Out of the
/// async fn: a borrow of the result there would take room in the connection's long-lived
/// future.)
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
/// then serves it until the connection or the session ends.
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
    serve(engine, socket, ws).await;
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

/// The writing side of a connection: what the session's queue holds, written to the
/// websocket. Each wake-up writes everything buffered, then flushes once; the latest
/// volatile packets are written when nothing is buffered.
#[derive(Debug, Default)]
struct Writer {
    /// The item being written, when the websocket has not taken all of it yet.
    item: Option<Item>,
    /// Written since the last flush.
    unflushed: bool,
    /// No more items: the websocket is being closed (`Closing`) or is closed.
    end: End,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum End {
    #[default]
    Open,
    Closing,
    Closed,
}

/// An item of the queue and how far it is written.
#[derive(Debug)]
struct Item {
    packets: Outgoing,
    next: usize,
    volatile: bool,
}

impl Item {
    /// The next packet to write, taken out of the item.
    fn take_next(&mut self) -> Option<Packet> {
        let i = self.next;
        self.next += 1;
        match &mut self.packets {
            Outgoing::Message(msg) if i == 0 => Some(Packet::Message(std::mem::take(msg))),
            Outgoing::Binary(bin) if i == 0 => Some(Packet::Binary(std::mem::take(bin))),
            Outgoing::Packets(packets) if i < packets.len() => {
                Some(std::mem::replace(&mut packets[i], Packet::Noop))
            }
            _ => None,
        }
    }

    fn is_written(&self) -> bool {
        match &self.packets {
            Outgoing::Packets(packets) => self.next >= packets.len(),
            _ => self.next > 0,
        }
    }
}

impl Writer {
    /// Writes what the queue holds; `Ready` once the websocket is closed: after the queue
    /// was closed or, with `until_idle`, as soon as nothing more is queued.
    fn poll<D: Default + Send + Sync + 'static, S>(
        &mut self,
        cx: &mut Context<'_>,
        socket: &Socket<D>,
        queue: &mut Receiver<Outgoing>,
        ws: &mut WebSocketStream<S>,
        until_idle: bool,
    ) -> Poll<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            if self.end != End::Open {
                return self.poll_close(cx, socket, ws);
            }
            if let Some(item) = &mut self.item {
                ready!(poll_write_item(cx, socket, item, ws));
                self.unflushed = true;
                // A volatile wake-up writes only its own packets.
                let more = if item.volatile {
                    #[cfg(feature = "tracing")]
                    log_volatile_flush(socket, item.next);
                    None
                } else {
                    queue.try_recv().ok()
                };
                self.item = more.map(|packets| Item {
                    packets,
                    next: 0,
                    volatile: false,
                });
                continue;
            }
            if self.unflushed {
                #[cfg(feature = "tracing")]
                tracing::trace!(sid = %socket.id, "ws flush");
                // A failed flush is seen by reading, which ends the session.
                let _ = ready!(ws.poll_flush_unpin(cx));
                self.unflushed = false;
            }
            match queue.poll_next_any(cx) {
                Poll::Ready(Some((packets, volatile))) => {
                    self.item = Some(Item {
                        packets,
                        next: 0,
                        volatile,
                    });
                }
                Poll::Ready(None) => self.end = End::Closing,
                Poll::Pending if until_idle => self.end = End::Closing,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Flushes and closes the websocket.
    fn poll_close<D: Default + Send + Sync + 'static, S>(
        &mut self,
        cx: &mut Context<'_>,
        _socket: &Socket<D>,
        ws: &mut WebSocketStream<S>,
    ) -> Poll<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if self.end == End::Closing {
            #[cfg(feature = "tracing")]
            tracing::trace!(sid = %_socket.id, "ws closing flush");
            let _ = ready!(ws.poll_flush_unpin(cx));
            let _ = ready!(ws.poll_close_unpin(cx));
            self.end = End::Closed;
        }
        Poll::Ready(())
    }
}

/// Writes the packets of `item` that the websocket takes.
fn poll_write_item<D: Default + Send + Sync + 'static, S>(
    cx: &mut Context<'_>,
    socket: &Socket<D>,
    item: &mut Item,
    ws: &mut WebSocketStream<S>,
) -> Poll<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while !item.is_written() {
        let ready = ready!(ws.poll_ready_unpin(cx));
        let Some(msg) = item
            .take_next()
            .and_then(|packet| ws_message(socket.protocol, packet))
        else {
            continue;
        };
        log_send_error(socket, ready.and_then(|()| ws.start_send_unpin(msg)));
    }
    Poll::Ready(())
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

    /// Hands the messages it receives to the test.
    #[derive(Debug)]
    struct StubHandler(tokio::sync::mpsc::UnboundedSender<Str>);
    impl EngineIoHandler for StubHandler {
        type Data = ();
        fn on_connect(self: Arc<Self>, _: Arc<Socket<()>>) {}
        fn on_disconnect(&self, _: Arc<Socket<()>>, _: DisconnectReason) {}
        fn on_message(self: &Arc<Self>, msg: Str, _: Arc<Socket<()>>) {
            self.0.send(msg).ok();
        }
        fn on_binary(self: &Arc<Self>, _: Bytes, _: Arc<Socket<()>>) {}
    }

    /// An engine, and the messages its handler receives.
    fn engine() -> (
        Arc<EngineIo<StubHandler>>,
        tokio::sync::mpsc::UnboundedReceiver<Str>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let engine = EngineIo::new(Arc::new(StubHandler(tx)), EngineIoConfig::default());
        (Arc::new(engine), rx)
    }

    /// Serves `server` for `socket` in a task of its own, as a connection's task does.
    fn serving(
        socket: &Arc<Socket<()>>,
        server: WebSocketStream<DuplexStream>,
    ) -> (
        tokio::task::JoinHandle<()>,
        tokio::sync::mpsc::UnboundedReceiver<Str>,
    ) {
        let (engine, received) = engine();
        let task = tokio::spawn(serve(engine, socket.clone(), server));
        (task, received)
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

    /// What each WebSocket connection keeps in its one long-lived task: its future is
    /// allocated for the connection's whole life, and holds the websocket.
    #[tokio::test]
    async fn per_connection_future_size() {
        let (engine, _) = engine();
        let mut request = Request::new(());
        let setup = Box::new(Setup {
            on_upgrade: hyper::upgrade::on(&mut request),
            parts: request.into_parts().0,
            protocol: ProtocolVersion::V4,
            sid: None,
        });
        let size = std::mem::size_of_val(&connection(engine, setup));
        let websocket = std::mem::size_of::<WebSocketStream<Upgraded>>();
        eprintln!("connection future: {size} B, of which the websocket {websocket} B");
        // Was 680 B (the websocket 360 B) when measured; before, a writer task (408 B) and
        // a reader task (240 B) shared the websocket through a lock of its own (an `Arc`),
        // and before they were flattened, the two futures were 2320 and 2048 B.
        assert!(size <= SIZE_BOUND, "connection future grew: {size} B");
    }

    /// A bound on the connection's future (`per_connection_future_size`).
    const SIZE_BOUND: usize = 768;

    /// A write that waits for a client that does not read does not stop reading it.
    #[tokio::test]
    async fn reading_goes_on_while_a_write_waits() {
        let socket = socket();
        let (server, client) = tokio::io::duplex(256);
        let server = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        let (_task, mut received) = serving(&socket, server);

        let payload = "x".repeat(200);
        for _ in 0..8 {
            socket.emit(Str::from(payload.clone())).unwrap();
        }
        // The writer now waits for the client, which sends before reading anything.
        tokio::time::sleep(Duration::from_millis(20)).await;
        client.send(Message::text("4hello")).await.unwrap();
        let msg = tokio::time::timeout(TIMEOUT, received.recv())
            .await
            .expect("the message should be read while the writer waits")
            .unwrap();
        assert_eq!(msg, "hello");
        assert_eq!(read_texts(&mut client, 8).await.len(), 8);
    }

    /// What is queued when the session closes is written, then the websocket is closed.
    #[tokio::test]
    async fn queued_packets_are_written_before_the_close() {
        let socket = socket();
        let (server, mut client) = ws_pair().await;
        socket.emit(Str::from("bye")).unwrap();
        socket.cancellation_token.cancel();
        let (task, _) = serving(&socket, server);

        assert_eq!(read_texts(&mut client, 1).await, ["4bye"]);
        let close = tokio::time::timeout(TIMEOUT, client.next()).await.unwrap();
        assert!(matches!(close, Some(Ok(Message::Close(_)))), "{close:?}");
        tokio::time::timeout(TIMEOUT, task)
            .await
            .expect("the task should end")
            .unwrap();
    }

    /// The client closing the websocket ends the connection's task.
    #[tokio::test]
    async fn a_client_close_ends_the_task() {
        let socket = socket();
        let (server, mut client) = ws_pair().await;
        let (task, _) = serving(&socket, server);

        client.close(None).await.unwrap();
        tokio::time::timeout(TIMEOUT, task)
            .await
            .expect("the task should end")
            .unwrap();
    }

    /// A polling request can still hold the lock at the end of an upgrade.
    #[tokio::test]
    async fn writer_waits_for_the_lock_of_a_polling_request() {
        let socket = socket();
        let (server, mut client) = ws_pair().await;

        let polling = socket.internal_rx.lock().await;
        let (writer, _) = serving(&socket, server);
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
        let _serving = serving(&socket, server);
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
        let _serving = serving(&socket, server);

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

        let _polling = socket.internal_rx.lock().await;
        let (writer, _) = serving(&socket, server);
        tokio::time::sleep(Duration::from_millis(20)).await;

        socket.cancellation_token.cancel();
        tokio::time::timeout(TIMEOUT, writer)
            .await
            .expect("the writer should stop")
            .unwrap();
    }
}
