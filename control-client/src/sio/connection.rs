//! One connection to the gateway at a time, and the reconnection loop around them: the
//! Engine.IO / Socket.IO handshake, then the read / write / heartbeat loop, and the task
//! that runs the event handlers.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::Value;
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest, http::HeaderValue};
use tracing::{debug, error, warn};

use super::{
    ClientOptions,
    client::{Acknowledger, ClientError, DisconnectReason, Event, Handler, Inner},
    packet::{self, Accepted, Engine, Handshake, ParseError, Socket},
};

/// Where the connection hands complete events to the handlers.
type Dispatch = mpsc::UnboundedSender<(Vec<Handler>, Event)>;

/// How one connection attempt ended.
enum Outcome {
    /// It was connected, then ended for `reason`.
    Ended(DisconnectReason),
    /// It never connected.
    Failed(ClientError),
    /// `disconnect` was asked before it connected.
    Stopped,
}

/// Connects, and reconnects per the options, until told to stop.
pub(super) async fn drive(inner: Arc<Inner>, mut stop: oneshot::Receiver<()>) {
    let (dispatch_tx, dispatch_rx) = mpsc::unbounded_channel();
    let dispatcher = tokio::spawn(dispatch(dispatch_rx));
    let policy = inner.options.reconnect.clone();
    let mut failures = 0u32;
    loop {
        let retry = match session(&inner, &mut stop, &dispatch_tx).await {
            Outcome::Ended(reason) => {
                let retry = reason.reconnects();
                inner.disconnected(reason);
                failures = 0;
                retry
            }
            Outcome::Failed(error) => {
                let retry = !matches!(
                    error,
                    ClientError::Refused(_) | ClientError::InvalidOptions(_)
                );
                inner.failed(error);
                failures += 1;
                retry
            }
            Outcome::Stopped => false,
        };
        if !retry || !policy.enabled || policy.max_attempts.is_some_and(|max| failures >= max) {
            break;
        }
        let delay = policy
            .initial_delay
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(policy.max_delay);
        debug!(?delay, failures, "socket.io client reconnecting");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut stop => break,
        }
    }
    // The dispatcher ends once it has run the events already queued; not waiting for it
    // lets a handler call `disconnect` or `shutdown` (which wait for this task).
    drop((dispatch_tx, dispatcher));
}

// Runs handlers one event after the other, so that they see events in order without
/// holding up the connection (heartbeats keep being answered while a handler is slow).
async fn dispatch(mut events: mpsc::UnboundedReceiver<(Vec<Handler>, Event)>) {
    while let Some((handlers, event)) = events.recv().await {
        for handler in handlers {
            let run = std::panic::catch_unwind(AssertUnwindSafe(|| (handler.0)(event.clone())));
            let outcome = match run {
                Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
                Err(panic) => Err(panic),
            };
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(e)) => error!(event = %event.name, error = %e, "handler error"),
                Err(_) => error!(event = %event.name, "handler panicked"),
            }
        }
    }
}

type WebSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(options: &ClientOptions) -> Result<WebSocket, ClientError> {
    let url = options
        .websocket_url()
        .map_err(ClientError::InvalidOptions)?;
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ClientError::InvalidOptions(e.to_string()))?;
    for (name, value) in &options.headers {
        let name: tokio_tungstenite::tungstenite::http::HeaderName = name
            .parse()
            .map_err(|_| ClientError::InvalidOptions(format!("invalid header name {name:?}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| ClientError::InvalidOptions(format!("invalid value of header {name}")))?;
        request.headers_mut().insert(name, value);
    }
    let connector = if url.starts_with("wss://") {
        let default = crate::TlsOptions::new();
        Some(super::tls::connector(
            options.tls.as_ref().unwrap_or(&default),
        )?)
    } else {
        None
    };
    let (socket, _) =
        tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector)
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
    Ok(socket)
}

/// Reads the next text frame (during the handshake, when no binary frame is expected).
async fn next_text(socket: &mut WebSocket) -> Option<Result<String, String>> {
    loop {
        match socket.next().await? {
            Ok(Message::Text(text)) => return Some(Ok(text.to_string())),
            Ok(Message::Close(_)) => return None,
            Ok(_) => continue,
            Err(e) => return Some(Err(e.to_string())),
        }
    }
}

/// One connection: handshake, then the connected loop.
async fn session(inner: &Inner, stop: &mut oneshot::Receiver<()>, dispatch: &Dispatch) -> Outcome {
    let auth = inner.connect_auth();
    let (socket, open, accepted) = tokio::select! {
        result = handshake(&inner.options, auth.as_ref()) => match result {
            Ok(connected) => connected,
            Err(error) => return Outcome::Failed(error),
        },
        _ = &mut *stop => return Outcome::Stopped,
    };
    let (out, outgoing) = mpsc::unbounded_channel::<String>();
    inner.connected(accepted.sid, accepted.pid, out.clone());
    let heartbeat = Duration::from_millis(open.ping_interval + open.ping_timeout);
    let reader = Reader {
        inner,
        dispatch,
        out,
        heartbeat,
        ping_deadline: Instant::now() + heartbeat,
        force_reason: None,
        waiting: None,
    };
    Outcome::Ended(connected(socket, outgoing, reader, stop).await)
}

/// Opens the WebSocket, reads the Engine.IO open packet, asks to connect to the main
/// namespace with `auth` and waits for the answer: the socket, the heartbeat values and
/// what the namespace accepted.
async fn handshake(
    options: &ClientOptions,
    auth: Option<&Value>,
) -> Result<(WebSocket, Handshake, Accepted), ClientError> {
    let mut socket = open(options).await?;
    let open = read_open(&mut socket).await?;
    socket
        .send(Message::text(packet::connect(auth)))
        .await
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    let accepted = read_connect(&mut socket).await?;
    Ok((socket, open, accepted))
}

fn closed_during_handshake() -> ClientError {
    ClientError::Connect("closed during the handshake".into())
}

fn protocol_error(e: ParseError) -> ClientError {
    ClientError::Protocol(e.to_string())
}

/// The Engine.IO open packet, the first frame of the connection.
async fn read_open(socket: &mut WebSocket) -> Result<Handshake, ClientError> {
    match next_text(socket).await {
        Some(Ok(text)) => match packet::parse_engine(&text).map_err(protocol_error)? {
            Engine::Open(open) => Ok(open),
            other => Err(ClientError::Protocol(format!(
                "expected an open packet, got {other:?}"
            ))),
        },
        Some(Err(e)) => Err(ClientError::Connect(e)),
        None => Err(closed_during_handshake()),
    }
}

/// Answers pings until the gateway accepts the connection or refuses it.
async fn read_connect(socket: &mut WebSocket) -> Result<Accepted, ClientError> {
    loop {
        let text = match next_text(socket).await {
            Some(Ok(text)) => text,
            Some(Err(e)) => return Err(ClientError::Connect(e)),
            None => return Err(closed_during_handshake()),
        };
        match packet::parse_engine(&text).map_err(protocol_error)? {
            Engine::Ping => socket
                .send(Message::text(packet::PONG))
                .await
                .map_err(|e| ClientError::Connect(e.to_string()))?,
            Engine::Message(message) => {
                match packet::parse_socket(message).map_err(protocol_error)? {
                    Socket::Connect(accepted) => return Ok(accepted),
                    Socket::ConnectError(message) => return Err(ClientError::Refused(message)),
                    other => debug!(?other, "packet before the connection was accepted"),
                }
            }
            Engine::Close => return Err(closed_during_handshake()),
            Engine::Open(_) | Engine::Other => {}
        }
    }
}

/// The connected loop: frames from the gateway, emits to it, the heartbeat deadline and
/// `disconnect`, until one of them ends the connection.
async fn connected(
    socket: WebSocket,
    mut outgoing: mpsc::UnboundedReceiver<String>,
    mut reader: Reader<'_>,
    stop: &mut oneshot::Receiver<()>,
) -> DisconnectReason {
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            frame = stream.next() => match reader.frame(frame) {
                Next::Continue => {}
                Next::End(reason) => return reason,
                Next::Close(reason) => {
                    let _ = sink.close().await;
                    return reason;
                }
            },
            Some(text) = outgoing.recv() => {
                if let Err(e) = sink.send(Message::text(text)).await {
                    return DisconnectReason::TransportError(e.to_string());
                }
            }
            _ = tokio::time::sleep_until(reader.ping_deadline) => {
                let _ = sink.close().await;
                return DisconnectReason::PingTimeout;
            }
            _ = &mut *stop => {
                let _ = sink.send(Message::text(packet::DISCONNECT)).await;
                let _ = sink.close().await;
                return DisconnectReason::ClientDisconnect;
            }
        }
    }
}

/// What to do with the connection after a frame.
enum Next {
    Continue,
    /// It has ended.
    End(DisconnectReason),
    /// End it: close the WebSocket first.
    Close(DisconnectReason),
}

/// A binary packet waiting for its attachments, which come in the next binary frames.
struct Waiting {
    packet: Socket,
    expected: usize,
    attachments: Vec<Bytes>,
}

/// Reads what the gateway sends on one connection, frame by frame: heartbeats, events and
/// acks, and the binary attachments that complete a packet.
struct Reader<'a> {
    inner: &'a Inner,
    dispatch: &'a Dispatch,
    /// The connection's outgoing queue (pongs, acks of received events).
    out: mpsc::UnboundedSender<String>,
    /// Ping interval + ping timeout: how long the gateway may stay silent.
    heartbeat: Duration,
    ping_deadline: Instant,
    /// The reason of the `force_disconnect` event, reported with `io server disconnect`.
    force_reason: Option<String>,
    waiting: Option<Waiting>,
}

impl Reader<'_> {
    fn frame(&mut self, frame: Option<Result<Message, tungstenite::Error>>) -> Next {
        match frame {
            Some(Ok(Message::Text(text))) => self.text(&text),
            Some(Ok(Message::Binary(data))) => {
                self.attachment(data);
                Next::Continue
            }
            Some(Ok(Message::Close(_))) | None => Next::End(DisconnectReason::TransportClose),
            Some(Ok(_)) => Next::Continue,
            Some(Err(e)) => Next::End(DisconnectReason::TransportError(e.to_string())),
        }
    }

    fn text(&mut self, text: &str) -> Next {
        match self.parse(text) {
            Err(e) => Next::Close(DisconnectReason::ParseError(e.to_string())),
            Ok(None) | Ok(Some(Socket::Connect(_))) => Next::Continue,
            Ok(Some(Socket::Disconnect)) => Next::End(DisconnectReason::ServerDisconnect {
                message: self.force_reason.take(),
            }),
            Ok(Some(packet @ (Socket::Event { .. } | Socket::Ack { .. }))) => {
                match packet.attachments() {
                    0 => self.deliver(packet, Vec::new()),
                    expected => {
                        self.waiting = Some(Waiting {
                            packet,
                            expected,
                            attachments: Vec::with_capacity(expected),
                        })
                    }
                }
                Next::Continue
            }
            Ok(Some(Socket::ConnectError(message))) => {
                warn!(message, "connect_error while connected");
                Next::Continue
            }
        }
    }

    /// The Socket.IO packet a text frame carries, if any; a ping is answered here.
    fn parse(&mut self, text: &str) -> Result<Option<Socket>, ParseError> {
        let packet = match packet::parse_engine(text)? {
            Engine::Message(message) => Some(packet::parse_socket(message)?),
            Engine::Ping => {
                self.ping_deadline = Instant::now() + self.heartbeat;
                let _ = self.out.send(packet::PONG.to_owned());
                None
            }
            Engine::Close => Some(Socket::Disconnect),
            Engine::Open(_) | Engine::Other => None,
        };
        if packet.is_some() && self.waiting.is_some() {
            return Err(ParseError(
                "a packet arrived before the attachments of the previous one".into(),
            ));
        }
        Ok(packet)
    }

    /// A binary frame: the next attachment of the waiting packet, delivered once complete.
    fn attachment(&mut self, data: Bytes) {
        let Some(waiting) = self.waiting.as_mut() else {
            warn!("binary frame without a binary packet; skipped");
            return;
        };
        waiting.attachments.push(data);
        if waiting.attachments.len() < waiting.expected {
            return;
        }
        if let Some(Waiting {
            packet,
            attachments,
            ..
        }) = self.waiting.take()
        {
            self.deliver(packet, attachments);
        }
    }

    /// Hands a complete event to the state machine and the handlers, or an ack to its emit.
    fn deliver(&mut self, packet: Socket, attachments: Vec<Bytes>) {
        match packet {
            Socket::Event {
                name, args, ack, ..
            } => {
                if name == "force_disconnect" {
                    self.force_reason = args
                        .first()
                        .and_then(|d| d["reason"].as_str())
                        .map(str::to_owned);
                }
                let ack = ack.map(|id| Acknowledger::new(id, self.out.clone()));
                self.inner
                    .received(Event::new(name, args, attachments, ack), self.dispatch);
            }
            Socket::Ack { id, args, .. } => {
                if let Some(reply) = self.inner.pending_acks.lock().remove(&id) {
                    let _ = reply.send(args);
                }
            }
            other => debug!(?other, "not an event or an ack"),
        }
    }
}
