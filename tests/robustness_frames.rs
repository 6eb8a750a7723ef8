//! Frame fuzzing: at least 100,000 random and mutated Engine.IO v4 / Socket.IO v5 frames
//! (see `fixture::frames`) over raw WebSocket connections and raw HTTP long-polling
//! sessions, many in parallel, while a well-behaved socket and a `WatchEvents` watcher
//! stay connected. Client events go to a real `SocketHooks` backend (`OnEvent`, and
//! `AuthorizeJoin` for rooms the rules do not allow) that answers, fails or hangs past
//! the hook deadline. Afterwards: the process is alive, its log shows no panic, the
//! well-behaved socket was never disconnected and still receives a `Send`, and sockets,
//! rooms, tasks and file descriptors are back to their baseline.
//!
//! `FUZZ_FRAMES` sets the number of frames (100,000 by default, 85 % over WebSocket);
//! `ROBUSTNESS_SEED` replays a run (the frames are the same; timing is not).

mod fixture;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use fixture::{
    Gateway, PATIENCE,
    frames::{Frame, Generator},
    hooks::HookBackend,
    raw::{self, Polling, SEPARATOR},
    rng::Rng,
    to_sockets, tokens,
};
use futures_util::{SinkExt, StreamExt};
use sockgate_client::proto::{SendRequest, WatchEventsRequest};
use tokio_tungstenite::tungstenite::Message;

const MAX_PAYLOAD: usize = 16 * 1024;
const WS_WORKERS: usize = 48;
const POLLING_WORKERS: usize = 16;

#[derive(Default)]
struct Counts {
    frames: AtomicUsize,
    sessions: AtomicUsize,
    closed_by_server: AtomicUsize,
    received: AtomicUsize,
    requests: AtomicUsize,
    finished_ms: AtomicUsize,
}

fn message(frame: &Frame) -> Message {
    match frame {
        Frame::Text(text) => Message::text(text.clone()),
        Frame::Binary(bytes) => Message::binary(bytes.clone()),
    }
}

/// One WebSocket session: a random number of generated frames, then a random ending.
async fn websocket_session(
    edge: SocketAddr,
    generator: &Generator,
    rng: &mut Rng,
    counts: &Counts,
    budget: usize,
) {
    let Ok(ws) = raw::ws_open(edge).await else {
        return;
    };
    counts.sessions.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = ws.split();
    let received = Arc::new(AtomicUsize::new(0));
    let seen = received.clone();
    let reader = tokio::spawn(async move {
        while let Some(Ok(_)) = stream.next().await {
            seen.fetch_add(1, Ordering::Relaxed);
        }
    });
    let mut sent = 0;
    let length = 1 + rng.below(120);
    let mut server_closed = false;
    // Most sessions connect to the namespace first, so that deeper states are reached.
    if rng.chance(80) && sink.send(Message::text("40")).await.is_ok() {
        sent += 1;
    }
    'session: while sent < length && sent < budget {
        let frames = generator.next(rng);
        for frame in &frames {
            if reader.is_finished() || sink.feed(message(frame)).await.is_err() {
                server_closed = true;
                break 'session;
            }
            sent += 1;
        }
        if sink.flush().await.is_err() {
            server_closed = true;
            break;
        }
    }
    counts.frames.fetch_add(sent, Ordering::Relaxed);
    let mut reader = reader;
    let goodbye = match (server_closed, rng.below(3)) {
        (true, _) => None,
        (false, 0) => Some(Message::Close(None)),
        (false, 1) => Some(Message::text("1")),
        // An abrupt end: the connection is dropped without a word.
        (false, _) => None,
    };
    if server_closed {
        counts.closed_by_server.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(goodbye) = goodbye
        && sink.send(goodbye).await.is_ok()
    {
        // The server answers with its own close; the reader ends then.
        let _ = tokio::time::timeout(PATIENCE, &mut reader).await;
    }
    reader.abort();
    drop(sink);
    counts
        .received
        .fetch_add(received.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// One polling session: batches of generated packets in `POST`s while a reader keeps a
/// `GET` pending, as a real client does; ends with the Engine.IO close packet.
async fn polling_session(
    edge: SocketAddr,
    generator: &Generator,
    rng: &mut Rng,
    counts: &Arc<Counts>,
    budget: usize,
) {
    // Now and then, requests no client should make.
    if rng.chance(5) {
        let target = rng.pick(&[
            "/io/?EIO=3&transport=polling",
            "/io/?EIO=4&transport=carrier-pigeon",
            "/io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAA",
            "/io/?transport=polling",
            "/io/?EIO=4&transport=polling&sid=",
            "/io/?EIO=4&transport=websocket",
        ]);
        let method = *rng.pick(&["GET", "POST", "PUT", "OPTIONS"]);
        let _ = raw::http(edge, method, target, b"40").await;
        counts.requests.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let Ok(session) = Polling::open(edge).await else {
        return;
    };
    counts.sessions.fetch_add(1, Ordering::Relaxed);
    counts.requests.fetch_add(1, Ordering::Relaxed);
    let reader_session = session.clone();
    let reader_counts = counts.clone();
    let reader = tokio::spawn(async move {
        while let Some(Ok((200, packets))) = reader_session.get(PATIENCE * 4).await {
            reader_counts.requests.fetch_add(1, Ordering::Relaxed);
            reader_counts
                .received
                .fetch_add(packets.len(), Ordering::Relaxed);
        }
    });
    let mut sent = 0;
    let length = 1 + rng.below(60);
    let mut server_closed = false;
    let mut pending = if rng.chance(80) {
        vec!["40".to_owned()]
    } else {
        Vec::new()
    };
    // A polling session ends at the first request the server refuses: benign payloads
    // first, to reach deep states, then at most one hostile payload.
    let hostile_at = if rng.chance(70) {
        rng.below(length)
    } else {
        usize::MAX
    };
    while sent < length && sent < budget {
        let hostile = sent >= hostile_at;
        while pending.len() < 1 + rng.below(if hostile { 4 } else { 12 }) {
            let frames = if hostile {
                generator.next(rng)
            } else {
                generator.benign(rng)
            };
            pending.extend(frames.iter().map(Frame::polling));
        }
        let payload = pending.join(&SEPARATOR.to_string());
        let batch = pending.len();
        pending.clear();
        counts.requests.fetch_add(1, Ordering::Relaxed);
        match session.post(payload.as_bytes()).await {
            Ok(200) => sent += batch,
            _ => {
                sent += batch;
                server_closed = true;
                break;
            }
        }
    }
    counts.frames.fetch_add(sent, Ordering::Relaxed);
    let mut reader = reader;
    if server_closed {
        counts.closed_by_server.fetch_add(1, Ordering::Relaxed);
    } else if let Ok(200) = session.post(b"1").await {
        // Closing the session answers the pending GET.
        let _ = tokio::time::timeout(PATIENCE, &mut reader).await;
    }
    reader.abort();
}

/// A socket that calls `AuthorizeJoin` and `OnEvent` once each, and leaves.
async fn call_every_hook(edge: SocketAddr) {
    let mut ws = raw::ws_open(edge).await.expect("connect");
    raw::ws_connect_ns(&mut ws).await.expect("sid");
    let token = tokens::for_user("hook-caller");
    ws.send(Message::text(format!(
        r#"42["authenticate",{{"token":"{token}"}}]"#
    )))
    .await
    .unwrap();
    raw::ws_until(&mut ws, r#"42["authenticated""#)
        .await
        .expect("authenticated");
    ws.send(Message::text(r#"421["join",{"rooms":["ok:hooks"]}]"#))
        .await
        .unwrap();
    let joined = raw::ws_until(&mut ws, "431[").await.expect("join ack");
    assert!(
        joined.contains("ok:hooks"),
        "AuthorizeJoin answers: {joined}"
    );
    ws.send(Message::text(r#"422["hello",{"from":"hooks"}]"#))
        .await
        .unwrap();
    let acked = raw::ws_until(&mut ws, "432[").await.expect("OnEvent ack");
    assert!(acked.contains("hooks"), "OnEvent answers: {acked}");
    ws.close(None).await.unwrap();
    while raw::ws_next_text(&mut ws).await.is_some() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_mutated_frames_break_nothing() {
    let total: usize = std::env::var("FUZZ_FRAMES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let mut rng = Rng::from_env("robustness_frames");
    let backend = HookBackend::start().await;
    let gateway = Gateway::builder()
        .env("HOOKS__ENDPOINT", &backend.url())
        .env("HOOKS__ON_EVENT", "true")
        .env("HOOKS__AUTHORIZE_JOIN", "true")
        .env("HOOKS__TIMEOUT", "500ms")
        // Thousands of clients, all from the loopback address.
        .env("EDGE__LIMITS__HANDSHAKES_PER_IP_PER_SECOND", "0")
        .env("EDGE__MAX_PAYLOAD_BYTES", &MAX_PAYLOAD.to_string())
        .log_filter("sockgate=info,warn")
        .start()
        .await;
    let edge = gateway.edge;

    // A well-behaved socket that must never notice the others.
    let mut witness = raw::ws_open(edge).await.expect("witness connects");
    let witness_sid = raw::ws_connect_ns(&mut witness).await.expect("witness sid");
    witness
        .send(Message::text(format!(
            r#"42["authenticate",{{"token":"{}"}}]"#,
            tokens::for_user("witness")
        )))
        .await
        .unwrap();
    raw::ws_until(&mut witness, r#"42["authenticated""#)
        .await
        .expect("witness authenticated");
    // The hook channels are opened at their first call (and again after a failure):
    // open them before the baseline.
    call_every_hook(edge).await;
    let (witness_tx, mut witness_rx) = tokio::sync::mpsc::unbounded_channel();
    let witness_task = tokio::spawn(async move {
        while let Some(text) = raw::ws_next_text(&mut witness).await {
            let _ = witness_tx.send(text);
        }
    });
    // A watcher of every event, so that the publishing paths run too.
    let mut watcher = gateway
        .control()
        .await
        .watch_events(WatchEventsRequest::default())
        .await
        .expect("WatchEvents")
        .into_inner();
    let watched = Arc::new(AtomicUsize::new(0));
    let watched_count = watched.clone();
    let watch_task = tokio::spawn(async move {
        while let Some(Ok(_)) = watcher.next().await {
            watched_count.fetch_add(1, Ordering::Relaxed);
        }
    });
    let baseline = gateway.snapshot().await;

    let generator = Arc::new(Generator::new(MAX_PAYLOAD));
    let ws_counts = Arc::new(Counts::default());
    let polling_counts = Arc::new(Counts::default());
    let ws_target = total * 85 / 100;
    let polling_target = total - ws_target;
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..WS_WORKERS + POLLING_WORKERS {
        let mut rng = rng.fork(w as u64);
        let generator = generator.clone();
        let is_ws = w < WS_WORKERS;
        let (counts, target) = if is_ws {
            (ws_counts.clone(), ws_target)
        } else {
            (polling_counts.clone(), polling_target)
        };
        workers.push(tokio::spawn(async move {
            loop {
                let done = counts.frames.load(Ordering::Relaxed);
                if done >= target {
                    let elapsed = started.elapsed().as_millis() as usize;
                    counts.finished_ms.fetch_max(elapsed, Ordering::Relaxed);
                    break;
                }
                let budget = target - done;
                if is_ws {
                    websocket_session(edge, &generator, &mut rng, &counts, budget).await;
                } else {
                    polling_session(edge, &generator, &mut rng, &counts, budget).await;
                }
            }
        }));
    }
    for worker in workers {
        worker.await.expect("fuzz worker");
    }
    let elapsed = started.elapsed();
    let report = |name: &str, c: &Counts| {
        println!(
            "robustness_frames: {name}: {} frames in {} sessions ({} ended by the server) in {} ms, {} frames received, {} HTTP requests",
            c.frames.load(Ordering::Relaxed),
            c.sessions.load(Ordering::Relaxed),
            c.closed_by_server.load(Ordering::Relaxed),
            c.finished_ms.load(Ordering::Relaxed),
            c.received.load(Ordering::Relaxed),
            c.requests.load(Ordering::Relaxed),
        )
    };
    report("websocket", &ws_counts);
    report("polling", &polling_counts);
    println!(
        "robustness_frames: {} frames in {elapsed:?} with {WS_WORKERS} websocket and {POLLING_WORKERS} polling workers; watcher saw {} events",
        ws_counts.frames.load(Ordering::Relaxed) + polling_counts.frames.load(Ordering::Relaxed),
        watched.load(Ordering::Relaxed)
    );
    assert!(ws_counts.frames.load(Ordering::Relaxed) >= ws_target);
    assert!(polling_counts.frames.load(Ordering::Relaxed) >= polling_target);

    gateway.assert_healthy().await;
    call_every_hook(edge).await;
    let settled = gateway.await_baseline(&baseline).await;
    println!("robustness_frames: back to baseline {settled:?} after the last frame");

    // The witness was never disconnected and is still served.
    let mut control = gateway.control().await;
    control
        .send(SendRequest {
            event: "still-here".into(),
            data_json: "1".into(),
            target: to_sockets(&[&witness_sid]),
            ..SendRequest::default()
        })
        .await
        .expect("Send to the witness");
    loop {
        let text = tokio::time::timeout(PATIENCE, witness_rx.recv())
            .await
            .expect("the witness receives the Send")
            .expect("the witness is still connected");
        if text.starts_with(r#"42["still-here""#) {
            break;
        }
    }
    assert!(!watch_task.is_finished(), "the watcher stream ended");
    watch_task.abort();
    witness_task.abort();
    gateway.assert_healthy().await;
    drop(backend);
}
