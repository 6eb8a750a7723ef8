//! The load: real Socket.IO v5 clients over Engine.IO v4 WebSockets, spoken directly on
//! tokio-tungstenite so that holding 10 000 of them costs the load tool little. Each
//! connection connects, authenticates, joins the benchmark room, answers Engine.IO pings
//! and records every benchmark event it receives (latency and count). Socket.IO packets
//! are JSON text or MessagePack, as the server's parser (see `wire.rs`).

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::{net::TcpSocket, sync::Semaphore, task::JoinSet};
use tokio_tungstenite::{
    WebSocketStream, client_async_with_config,
    tungstenite::{
        Message, client::IntoClientRequest, http::HeaderValue, protocol::WebSocketConfig,
    },
};

use serde_json::{Value, json};

use crate::{
    histogram::Histogram,
    wire::{Packet, Parser},
};

/// Name of the room every connection joins.
pub const ROOM: &str = "bench";
/// Name of the event the benchmark sends; its data is `{"t": µs since the epoch, "s": seq}`.
pub const EVENT: &str = "bench";

/// Source addresses connections are spread over (127.0.0.2 ..): repeated runs of 10 000
/// connections would otherwise run out of ephemeral ports while old ones sit in TIME_WAIT.
const SOURCE_ADDRESSES: u32 = 64;

/// What every connection task shares with the scenarios.
pub struct Shared {
    /// Time origin of the `t` stamps.
    pub epoch: Instant,
    /// Latencies of the current scenario's deliveries.
    pub latency: Histogram,
    /// Benchmark events received in the current scenario, per connection.
    pub received: Vec<AtomicU32>,
    /// Their total.
    pub delivered: AtomicU64,
    /// Whether received events are recorded (off between scenarios).
    pub recording: AtomicBool,
}

impl Shared {
    /// State for `n` connections.
    pub fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            latency: Histogram::default(),
            received: (0..n).map(|_| AtomicU32::new(0)).collect(),
            delivered: AtomicU64::new(0),
            recording: AtomicBool::new(false),
        })
    }

    /// Microseconds since the epoch.
    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Starts a scenario: counters to zero, recording on.
    pub fn start_recording(&self) {
        self.latency.reset();
        for r in &self.received {
            r.store(0, Ordering::Relaxed);
        }
        self.delivered.store(0, Ordering::Relaxed);
        self.recording.store(true, Ordering::Release);
    }

    /// Ends a scenario.
    pub fn stop_recording(&self) {
        self.recording.store(false, Ordering::Release);
    }

    /// The data of a benchmark event sent now.
    pub fn payload(&self, seq: u64) -> String {
        format!("{{\"t\":{},\"s\":{seq}}}", self.now_us())
    }

    /// Records a benchmark event stamped `t` received by connection `index`.
    fn on_event(&self, index: usize, t: u64) {
        if !self.recording.load(Ordering::Acquire) {
            return;
        }
        self.latency.record(self.now_us().saturating_sub(t));
        self.received[index].fetch_add(1, Ordering::Relaxed);
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }
}

/// How to reach the server and what it answers.
#[derive(Clone)]
pub struct Endpoint {
    /// Socket.IO listener.
    pub addr: SocketAddr,
    /// Socket.IO path, e.g. `/io`.
    pub path: String,
    /// Whether the server acknowledges `join` (sockgate does; the Ignis helper does not).
    pub join_acked: bool,
    /// How Socket.IO packets are encoded (sockgate's `edge.parser`).
    pub parser: Parser,
}

/// The held connections.
pub struct Connections {
    /// The socket id of each connection, by index.
    pub ids: Vec<String>,
    tasks: JoinSet<()>,
}

impl Connections {
    /// Closes every connection (the tasks end, their sockets are dropped).
    pub async fn close(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }

    /// How many connection tasks have ended (they should not while held).
    pub fn ended(&self) -> usize {
        self.ids.len() - self.tasks.len()
    }
}

/// The node connection `index` goes to, of `nodes` (alternating: half on each of two).
pub fn node_of(index: usize, nodes: usize) -> usize {
    index % nodes
}

/// Opens `n` connections spread over the `endpoints` of the nodes (see [`node_of`]), at
/// most `concurrency` being set up at once, each connected, authenticated and (when the
/// server acknowledges joins) joined when this returns.
pub async fn connect_all(
    endpoints: &[Endpoint],
    shared: &Arc<Shared>,
    n: usize,
    concurrency: usize,
    deadline: Duration,
) -> anyhow::Result<Connections> {
    let gate = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    let mut ready = Vec::with_capacity(n);
    for index in 0..n {
        let (tx, rx) = tokio::sync::oneshot::channel();
        ready.push(rx);
        let endpoint = endpoints[node_of(index, endpoints.len())].clone();
        let shared = shared.clone();
        let gate = gate.clone();
        tasks.spawn(async move {
            let permit = gate.acquire_owned().await;
            let ws = match tokio::time::timeout(deadline, open(&endpoint, index)).await {
                Ok(Ok(ok)) => ok,
                Ok(Err(e)) => {
                    let _ = tx.send(Err(e));
                    return;
                }
                Err(_) => {
                    let _ = tx.send(Err(anyhow!("connection {index}: set-up timed out")));
                    return;
                }
            };
            drop(permit);
            let (ws, id) = ws;
            let _ = tx.send(Ok(id));
            hold(ws, index, endpoint.parser, &shared).await;
        });
    }
    let mut ids = Vec::with_capacity(n);
    for rx in ready {
        match rx.await {
            Ok(Ok(id)) => ids.push(id),
            Ok(Err(e)) => {
                tasks.abort_all();
                return Err(e);
            }
            Err(_) => {
                tasks.abort_all();
                bail!("a connection task ended during set-up");
            }
        }
    }
    Ok(Connections { ids, tasks })
}

type Ws = WebSocketStream<tokio::net::TcpStream>;

/// Connects one client and runs the protocol up to joined; returns its socket id.
async fn open(endpoint: &Endpoint, index: usize) -> anyhow::Result<(Ws, String)> {
    let source =
        Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 2)) + index as u32 % SOURCE_ADDRESSES);
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let stream = socket
        .connect(endpoint.addr)
        .await
        .with_context(|| format!("connect to {}", endpoint.addr))?;
    stream.set_nodelay(true)?;
    let url = format!(
        "ws://{}{}/?EIO=4&transport=websocket",
        endpoint.addr,
        endpoint.path.trim_end_matches('/')
    );
    let mut request = url.into_client_request()?;
    // The reference's authenticator admits any bearer token; sockgate runs in development
    // mode for the benchmark and admits every `authenticate`.
    request
        .headers_mut()
        .insert("authorization", HeaderValue::from_static("Bearer bench"));
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let (mut ws, _) = client_async_with_config(request, stream, Some(config))
        .await
        .context("WebSocket handshake")?;

    let open = next_text(&mut ws).await?;
    if !open.starts_with('0') {
        bail!("expected an Engine.IO open packet, got {open:?}");
    }
    let parser = endpoint.parser;
    ws.send(parser.connect()).await?;
    loop {
        match next_packet(&mut ws, parser).await? {
            Packet::Connect => break,
            Packet::ConnectError(data) => bail!("namespace connect refused: {data}"),
            _ => {}
        }
    }
    ws.send(parser.event(json!(["authenticate"]), None)).await?;
    let id = loop {
        let Packet::Event(args) = next_packet(&mut ws, parser).await? else {
            continue;
        };
        match args.first().and_then(Value::as_str) {
            Some("authenticated") => {
                break args
                    .get(1)
                    .and_then(|data| data["id"].as_str())
                    .ok_or_else(|| anyhow!("authenticated without id: {args:?}"))?
                    .to_owned();
            }
            Some("unauthenticated") => bail!("authentication refused: {args:?}"),
            _ => {}
        }
    };
    ws.send(parser.event(json!(["join", {"rooms": [ROOM]}]), Some(0)))
        .await?;
    if endpoint.join_acked {
        loop {
            if let Packet::Ack(0, args) = next_packet(&mut ws, parser).await? {
                if args.first().map(|ack| &ack["joined"]) != Some(&json!([ROOM])) {
                    bail!("join refused: {args:?}");
                }
                break;
            }
        }
    }
    Ok((ws, id))
}

/// The next message, answering Engine.IO pings on the way.
async fn next_message(ws: &mut Ws) -> anyhow::Result<Message> {
    loop {
        let msg = ws
            .next()
            .await
            .ok_or_else(|| anyhow!("connection closed by the server"))??;
        match msg {
            Message::Text(text) if text.as_str() == "2" => ws.send(Message::text("3")).await?,
            Message::Close(frame) => bail!("connection closed by the server: {frame:?}"),
            msg => return Ok(msg),
        }
    }
}

/// The next text message (Engine.IO's open packet is text with either parser).
async fn next_text(ws: &mut Ws) -> anyhow::Result<String> {
    loop {
        if let Message::Text(text) = next_message(ws).await? {
            return Ok(text.as_str().to_owned());
        }
    }
}

/// The next Socket.IO packet.
async fn next_packet(ws: &mut Ws, parser: Parser) -> anyhow::Result<Packet> {
    loop {
        if let Some(packet) = parser.decode(&next_message(ws).await?)? {
            return Ok(packet);
        }
    }
}

/// Holds a set-up connection: answers pings, records benchmark events, until aborted or
/// closed by the server.
async fn hold(mut ws: Ws, index: usize, parser: Parser, shared: &Shared) {
    while let Some(Ok(msg)) = ws.next().await {
        if matches!(&msg, Message::Text(text) if text.as_str() == "2") {
            if ws.send(Message::text("3")).await.is_err() {
                return;
            }
        } else if let Some(t) = parser.stamp(&msg) {
            shared.on_event(index, t);
        }
    }
}
