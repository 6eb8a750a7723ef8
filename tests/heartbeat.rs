//! The Engine.IO heartbeat (`edge.ping_interval`, `edge.ping_timeout`) end to end, with a
//! short interval and timeout: the official client stays connected across many pings on
//! both transports; a client that stops answering (WebSocket, polling) or stops polling is
//! disconnected about an interval plus a timeout later, never before it was pinged, and
//! leaves nothing behind; hundreds of sockets that answer are never timed out while the
//! silent ones among them are dropped.

mod fixture;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use fixture::{
    Gateway, PATIENCE,
    baseline::Snapshot,
    eventually::eventually,
    next_watched,
    raw::{self, Polling, Ws},
    scene::Scene,
    sio::Transport,
    to_sockets, tokens,
};
use futures_util::{SinkExt, Stream, StreamExt, future::ready};
use serde_json::{Value, json};
use sockgate_client::proto::{
    EventKind, GetSocketRequest, ListSocketsRequest, SendRequest, SocketState, WatchEventsRequest,
    WatchEventsResponse,
};
use tokio::{sync::mpsc, task::JoinHandle, time::Instant};
use tokio_tungstenite::tungstenite::Message;
use tonic::Streaming;

/// Shorter than the timeout's, as with the defaults (25 s / 20 s).
const PING_INTERVAL: Duration = Duration::from_millis(400);
const PING_TIMEOUT: Duration = Duration::from_millis(300);
/// How many pings the sockets that answer must go through.
const CYCLES: usize = 4;
/// A client that stops answering is disconnected at most an interval (its next ping) plus
/// a timeout later; this much more is allowed for a busy machine.
const SLACK: Duration = Duration::from_secs(5);
const DEADLINE: Duration = PING_INTERVAL
    .saturating_add(PING_TIMEOUT)
    .saturating_add(SLACK);
/// socketioxide's reason for a heartbeat timeout, as `WatchEvents` reports it.
const HEARTBEAT_TIMEOUT: &str = "client did not send a PONG packet in time";

async fn gateway() -> Gateway {
    Gateway::builder()
        .env(
            "EDGE__PING_INTERVAL",
            &format!("{}ms", PING_INTERVAL.as_millis()),
        )
        .env(
            "EDGE__PING_TIMEOUT",
            &format!("{}ms", PING_TIMEOUT.as_millis()),
        )
        .log_filter("sockgate=info,warn")
        .start()
        .await
}

/// A `WatchEvents` stream of disconnections.
async fn watch_disconnects(gateway: &Gateway) -> Streaming<WatchEventsResponse> {
    gateway
        .control()
        .await
        .watch_events(WatchEventsRequest {
            kinds: vec![EventKind::Disconnected as i32],
            ..WatchEventsRequest::default()
        })
        .await
        .expect("WatchEvents")
        .into_inner()
}

/// Waits for the disconnection of `sid` (it must be the next one) and checks that it was
/// a heartbeat timeout.
async fn timed_out(disconnects: &mut Streaming<WatchEventsResponse>, sid: &str) {
    let event = next_watched(disconnects).await;
    assert_eq!(
        event.socket_id, sid,
        "another socket disconnected: {event:?}"
    );
    assert_eq!(event.reason, HEARTBEAT_TIMEOUT, "{event:?}");
}

/// Exactly the sockets `sids` are connected, through `ListSockets`.
async fn assert_sockets(gateway: &Gateway, sids: &[&str]) {
    let listed = gateway
        .control()
        .await
        .list_sockets(ListSocketsRequest {
            page_size: 1000,
            ..ListSocketsRequest::default()
        })
        .await
        .expect("ListSockets")
        .into_inner();
    let mut listed: Vec<String> = listed.sockets.into_iter().map(|s| s.id).collect();
    listed.sort();
    let mut expected: Vec<String> = sids.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected, "ListSockets");
}

fn authenticate_frame(user: &str) -> String {
    format!(
        r#"42["authenticate",{{"token":"{}"}}]"#,
        tokens::for_user(user)
    )
}

/// A raw WebSocket socket, connected and authenticated (answering pings until then).
async fn ws_login(edge: SocketAddr, user: &str) -> (Ws, String) {
    let mut ws = raw::ws_open(edge).await.expect("websocket connects");
    let sid = raw::ws_connect_ns(&mut ws)
        .await
        .expect("namespace connect");
    ws.send(Message::text(authenticate_frame(user)))
        .await
        .expect("send authenticate");
    raw::ws_until(&mut ws, r#"42["authenticated""#)
        .await
        .expect("authenticated");
    (ws, sid)
}

/// A raw WebSocket socket that answers every ping on its own task (closed when dropped).
struct Answering {
    sid: String,
    pings: Arc<AtomicUsize>,
    /// Every other text frame.
    frames: mpsc::UnboundedReceiver<String>,
    /// Reads the connection until it is closed.
    task: JoinHandle<()>,
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Answering {
    async fn login(edge: SocketAddr, user: &str) -> Answering {
        let (mut ws, sid) = ws_login(edge, user).await;
        let pings = Arc::new(AtomicUsize::new(0));
        let (frames_tx, frames) = mpsc::unbounded_channel();
        let counter = pings.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(message)) = ws.next().await {
                match message {
                    Message::Text(text) if text.as_str() == "2" => {
                        counter.fetch_add(1, Ordering::Relaxed);
                        if ws.send(Message::text("3")).await.is_err() {
                            break;
                        }
                    }
                    Message::Text(text) => {
                        let _ = frames_tx.send(text.as_str().to_owned());
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
        });
        Answering {
            sid,
            pings,
            frames,
            task,
        }
    }

    fn pings(&self) -> usize {
        self.pings.load(Ordering::Relaxed)
    }

    fn is_connected(&self) -> bool {
        !self.task.is_finished()
    }

    /// Still connected: receives a `Send`.
    async fn receives_a_send(&mut self, gateway: &Gateway) {
        gateway
            .control()
            .await
            .send(SendRequest {
                event: "after".into(),
                data_json: "1".into(),
                target: to_sockets(&[&self.sid]),
                ..SendRequest::default()
            })
            .await
            .expect("Send");
        let frame = tokio::time::timeout(PATIENCE, self.frames.recv())
            .await
            .expect("the Send arrives in time")
            .expect("a frame");
        assert_eq!(frame, r#"42["after",1]"#);
    }
}

/// When a client that stopped answering was pinged and disconnected.
#[derive(Debug)]
struct Silence {
    since: Instant,
    first_ping: Option<Instant>,
    closed: Option<Instant>,
}

impl Silence {
    /// Pinged within an interval of going silent, disconnected within [`DEADLINE`], after
    /// that ping and not before the timeout had (about) run since.
    fn check(&self, what: &str) {
        let closed = self
            .closed
            .unwrap_or_else(|| panic!("{what}: still connected {DEADLINE:?} after going silent"));
        let pinged = self
            .first_ping
            .unwrap_or_else(|| panic!("{what}: disconnected without being pinged: {self:?}"));
        assert!(pinged <= closed, "{what}: {self:?}");
        assert!(
            pinged - self.since <= PING_INTERVAL + SLACK,
            "{what}: not pinged within an interval: {self:?}"
        );
        let waited = closed - pinged;
        // Half the timeout: the ping may reach this client later than the close does.
        assert!(
            waited >= PING_TIMEOUT / 2,
            "{what}: disconnected {waited:?} after the ping, before the timeout ({PING_TIMEOUT:?})"
        );
    }
}

impl Silence {
    /// Reads what the client receives (`true`: a ping) until the session ends or
    /// [`DEADLINE`] passes, noting when the first ping came.
    async fn observe(received: impl Stream<Item = bool>) -> Silence {
        let since = Instant::now();
        let mut first_ping = None;
        let closed = tokio::time::timeout(DEADLINE, async {
            let mut received = std::pin::pin!(received);
            while let Some(ping) = received.next().await {
                if ping {
                    first_ping.get_or_insert_with(Instant::now);
                }
            }
            Instant::now()
        })
        .await
        .ok();
        Silence {
            since,
            first_ping,
            closed,
        }
    }
}

/// Reads a WebSocket without ever answering a ping, until it is closed.
async fn ignore_pings(ws: Ws) -> Silence {
    let open = |m: &Result<Message, _>| ready(m.as_ref().is_ok_and(|m| !m.is_close()));
    let ping = |m: Result<Message, _>| matches!(m, Ok(Message::Text(t)) if t.as_str() == "2");
    Silence::observe(ws.take_while(open).map(ping)).await
}

/// Long-polls until a packet starting with `prefix` comes, answering pings; returns it.
async fn poll_until(session: &Polling, prefix: &str) -> String {
    loop {
        let (status, packets) = session
            .get(PATIENCE)
            .await
            .unwrap_or_else(|| panic!("nothing came waiting for {prefix}"))
            .expect("GET");
        assert_eq!(status, 200, "GET waiting for {prefix}: {packets:?}");
        if packets.iter().any(|p| p == "2") {
            assert_eq!(session.post(b"3").await.expect("POST pong"), 200);
        }
        if let Some(packet) = packets.into_iter().find(|p| p.starts_with(prefix)) {
            return packet;
        }
    }
}

/// A raw polling session, connected and authenticated (answering pings until then), and
/// its socket id (not the session's).
async fn polling_login(edge: SocketAddr, user: &str) -> (Polling, String) {
    let session = Polling::open(edge).await.expect("polling handshake");
    assert_eq!(session.post(b"40").await.expect("POST connect"), 200);
    let connected = poll_until(&session, "40").await;
    let connected: Value =
        serde_json::from_str(&connected["40".len()..]).expect("the CONNECT reply");
    let sid = connected["sid"].as_str().expect("the socket id").to_owned();
    let frame = authenticate_frame(user);
    assert_eq!(
        session.post(frame.as_bytes()).await.expect("POST auth"),
        200
    );
    poll_until(&session, r#"42["authenticated""#).await;
    (session, sid)
}

/// Keeps long-polling without ever answering a ping, until the session is closed.
async fn poll_ignoring_pings(session: &Polling) -> Silence {
    let polls = futures_util::stream::unfold((), async |()| {
        let packets = match session.get(DEADLINE).await {
            // A GET pending when the session closes gets an empty payload.
            Some(Ok((200, packets))) if packets.iter().all(|p| p.is_empty() || p == "1") => {
                return None;
            }
            Some(Ok((200, packets))) => packets,
            Some(_) => return None,
            None => std::future::pending().await,
        };
        Some((packets.iter().any(|p| p == "2"), ()))
    });
    Silence::observe(polls).await
}

/// The Engine.IO open packet of a new polling session.
async fn open_packet(edge: SocketAddr) -> Value {
    let (status, body) = raw::http(edge, "GET", "/io/?EIO=4&transport=polling", b"")
        .await
        .expect("handshake");
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(text.strip_prefix('0').expect("an open packet")).expect("JSON")
}

#[tokio::test]
async fn the_handshake_tells_clients_the_configured_heartbeat() {
    let default = Gateway::start().await;
    let open = open_packet(default.edge).await;
    assert_eq!(
        (&open["pingInterval"], &open["pingTimeout"]),
        (&json!(25000), &json!(20000)),
        "socket.io's defaults: {open}"
    );
    let short = gateway().await;
    let open = open_packet(short.edge).await;
    assert_eq!(
        (&open["pingInterval"], &open["pingTimeout"]),
        (
            &json!(PING_INTERVAL.as_millis() as u64),
            &json!(PING_TIMEOUT.as_millis() as u64)
        ),
        "{open}"
    );

    let refused = Gateway::builder()
        .env("EDGE__PING_TIMEOUT", "0s")
        .start_expecting_failure()
        .await;
    assert!(
        refused.contains("edge.ping_timeout must be between 100ms and 1h, got 0s"),
        "{refused}"
    );
}

#[tokio::test]
async fn the_official_client_stays_connected_across_heartbeats_on_both_transports() {
    let (_gateway, mut clients, mut control) = Scene::on(gateway().await).await.into_parts();
    let mut sockets = Vec::new();
    for (id, transport, name) in [
        ("ws", Transport::Websocket, "websocket"),
        ("poll", Transport::Polling, "polling"),
    ] {
        let sid = clients.connect_reporting_pings(id, transport).await;
        clients.authenticate(id, &tokens::for_user(id)).await;
        // The pings from before the authentication do not count.
        let before = clients
            .pending()
            .iter()
            .filter(|e| e["id"] == id && e["type"] == "eio_ping")
            .count();
        sockets.push((id, name, sid, before));
    }
    for (id, name, sid, before) in sockets {
        for _ in 0..before + CYCLES {
            clients.next_eio_ping(id).await;
        }
        assert!(
            !clients
                .pending()
                .iter()
                .any(|e| e["id"] == id && e["type"] == "disconnect"),
            "{id}: {:#?}",
            clients.pending()
        );
        let socket = control
            .get_socket(GetSocketRequest {
                socket_id: sid.clone(),
            })
            .await
            .expect("the socket is still connected")
            .into_inner()
            .socket
            .expect("socket");
        assert_eq!(socket.state(), SocketState::Authenticated, "{id}");
        assert_eq!(socket.transport, name, "{id}");
        control
            .send(SendRequest {
                event: "after".into(),
                data_json: json!({"cycles": CYCLES}).to_string(),
                target: to_sockets(&[&sid]),
                ..SendRequest::default()
            })
            .await
            .expect("Send");
        assert_eq!(
            clients.next_event(id, "after").await,
            json!({"cycles": CYCLES})
        );
    }
}

/// A gateway with one socket that answers its pings (the witness), a watcher of
/// disconnections, and the baseline they make.
struct WithWitness {
    gateway: Gateway,
    witness: Answering,
    disconnects: Streaming<WatchEventsResponse>,
    baseline: Snapshot,
}

impl WithWitness {
    async fn start() -> WithWitness {
        let gateway = gateway().await;
        let witness = Answering::login(gateway.edge, "witness").await;
        let disconnects = watch_disconnects(&gateway).await;
        let baseline = gateway.snapshot().await;
        WithWitness {
            gateway,
            witness,
            disconnects,
            baseline,
        }
    }

    /// The gateway is back to the baseline, and the witness was never disconnected.
    async fn witness_unaffected(mut self) {
        let gateway = &self.gateway;
        gateway.await_baseline(&self.baseline).await;
        assert_sockets(gateway, &[&self.witness.sid]).await;
        assert!(self.witness.pings() > 0 && self.witness.is_connected());
        self.witness.receives_a_send(gateway).await;
        gateway.assert_healthy().await;
    }
}

#[tokio::test]
async fn a_websocket_client_that_stops_answering_pings_is_disconnected() {
    let mut run = WithWitness::start().await;
    let (ws, sid) = ws_login(run.gateway.edge, "silent").await;
    let silence = ignore_pings(ws).await;
    silence.check("websocket");
    timed_out(&mut run.disconnects, &sid).await;
    run.witness_unaffected().await;
}

#[tokio::test]
async fn polling_clients_that_stop_answering_or_polling_are_disconnected() {
    let mut run = WithWitness::start().await;
    let (gateway, disconnects) = (&run.gateway, &mut run.disconnects);

    // Polls on, but never answers a ping.
    let (session, sid) = polling_login(gateway.edge, "deaf").await;
    let silence = poll_ignoring_pings(&session).await;
    silence.check("polling, not answering");
    timed_out(disconnects, &sid).await;
    gateway.await_baseline(&run.baseline).await;

    // Stops polling: its pings stay queued, so it cannot answer them.
    let (session, sid) = polling_login(gateway.edge, "gone").await;
    let since = Instant::now();
    tokio::time::timeout(DEADLINE, timed_out(disconnects, &sid))
        .await
        .expect("disconnected in time");
    let waited = since.elapsed();
    assert!(
        waited >= PING_TIMEOUT / 2,
        "disconnected {waited:?} after its last poll, before the timeout ({PING_TIMEOUT:?})"
    );
    let (status, body) = raw::http(gateway.edge, "GET", &session.target(""), b"")
        .await
        .expect("GET");
    assert_eq!(
        status,
        400,
        "the session is gone: {}",
        String::from_utf8_lossy(&body)
    );
    run.witness_unaffected().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_answering_sockets_are_never_timed_out_while_silent_ones_are() {
    const ANSWERING: usize = 200;
    const SILENT: usize = 5;
    let gateway = gateway().await;
    let mut disconnects = watch_disconnects(&gateway).await;
    let baseline = gateway.snapshot().await;

    let edge = gateway.edge;
    let mut answering: Vec<Answering> = futures_util::stream::iter(0..ANSWERING)
        .map(|i| async move { Answering::login(edge, &format!("u{i}")).await })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut silent = Vec::new();
    for i in 0..SILENT {
        let (ws, sid) = ws_login(edge, &format!("silent{i}")).await;
        silent.push((sid, tokio::spawn(ignore_pings(ws))));
    }

    // Every answering socket goes through CYCLES more pings.
    let targets: Vec<usize> = answering.iter().map(|a| a.pings() + CYCLES).collect();
    let what = format!("every answering socket to get {CYCLES} more pings");
    eventually(&what, async || {
        let behind = answering
            .iter()
            .zip(&targets)
            .filter(|(a, target)| a.pings() < **target)
            .count();
        if behind == 0 {
            return Ok(());
        }
        if let Some(gone) = answering.iter().find(|a| !a.is_connected()) {
            panic!("{} answered every ping but was disconnected", gone.sid);
        }
        Err(format!("{behind} sockets behind"))
    })
    .await;

    let mut silent_sids: Vec<String> = Vec::new();
    for (sid, silence) in silent {
        silence.await.expect("silent client").check(&sid);
        silent_sids.push(sid);
    }
    // Every disconnection so far is a silent socket's heartbeat timeout.
    let mut timed_out_sids = Vec::new();
    while timed_out_sids.len() < SILENT {
        let event = next_watched(&mut disconnects).await;
        assert!(
            silent_sids.contains(&event.socket_id),
            "an answering socket was disconnected: {event:?}"
        );
        assert_eq!(event.reason, HEARTBEAT_TIMEOUT, "{event:?}");
        timed_out_sids.push(event.socket_id);
    }
    timed_out_sids.sort();
    silent_sids.sort();
    assert_eq!(
        timed_out_sids, silent_sids,
        "each silent socket timed out once"
    );
    let sids: Vec<&str> = answering.iter().map(|a| a.sid.as_str()).collect();
    assert_sockets(&gateway, &sids).await;
    for socket in &answering {
        assert!(socket.is_connected(), "{} was disconnected", socket.sid);
    }
    answering[0].receives_a_send(&gateway).await;

    drop(answering);
    gateway.await_baseline(&baseline).await;
    gateway.assert_healthy().await;
}
