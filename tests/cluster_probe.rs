//! A measuring probe, not a check (ignored by default): `Send` latency and sustained
//! unicast `Send` rate on one node (memory adapter) and on two nodes sharing a Redis,
//! same machine, same run. Run it on a release build:
//!
//! ```sh
//! cargo test --release -p sockgate --test cluster_probe -- --ignored --nocapture
//! ```
//!
//! Clients are raw Engine.IO v4 / Socket.IO WebSocket clients in this process (so the
//! latency is the gateway's, not a client library's); the gateways, Redis and the probe
//! share the machine, so the figures are floors.

mod fixture;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use fixture::{Gateway, redis::Redis, sid_in, to_sockets, tokens};
use futures_util::{SinkExt, StreamExt};
use sockgate_client::{SocketControlClient, proto::SendRequest};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tonic::transport::Channel;

const SOCKETS: usize = 20;
const LATENCY_SAMPLES: usize = 500;
const RATE_SECONDS: u64 = 5;
const CALLERS: usize = 64;

/// One authenticated raw client; every `probe` event's `i` goes to `seen`.
async fn client(gateway: &Gateway, user: &str, seen: mpsc::UnboundedSender<u64>) -> String {
    let url = format!("ws://{}/io/?EIO=4&transport=websocket", gateway.edge);
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("websocket");
    // The next text frame that is not an Engine.IO ping (answered).
    let text = async |ws: &mut tokio_tungstenite::WebSocketStream<_>| loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if &*t == "2" => ws.send(Message::text("3")).await.unwrap(),
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(_)) => {}
            other => panic!("websocket closed during the handshake: {other:?}"),
        }
    };
    assert!(text(&mut ws).await.starts_with('0'));
    ws.send(Message::text("40")).await.unwrap();
    let connected = text(&mut ws).await;
    let sid = sid_in(&connected);
    let token = tokens::for_user(user);
    ws.send(Message::text(format!(
        r#"42["authenticate",{{"token":"{token}"}}]"#
    )))
    .await
    .unwrap();
    while !text(&mut ws).await.starts_with(r#"42["authenticated""#) {}
    tokio::spawn(async move {
        while let Some(Ok(message)) = ws.next().await {
            let Message::Text(t) = message else { continue };
            if &*t == "2" {
                let _ = ws.send(Message::text("3")).await;
            } else if let Some(rest) = t.strip_prefix(r#"42["probe",{"i":"#) {
                let i = rest.trim_end_matches("}]").parse().unwrap_or(u64::MAX);
                let _ = seen.send(i);
            }
        }
    });
    sid
}

fn probe(sid: &str, i: u64) -> SendRequest {
    SendRequest {
        event: "probe".into(),
        data_json: format!(r#"{{"i":{i}}}"#),
        target: to_sockets(&[sid]),
        ..SendRequest::default()
    }
}

/// Sequential sends to one socket: per-send delivery latency (call start to client read).
async fn latency(
    control: &mut SocketControlClient<Channel>,
    sid: &str,
    seen: &mut mpsc::UnboundedReceiver<u64>,
) -> (Duration, Duration) {
    let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
    for i in 0..LATENCY_SAMPLES as u64 {
        let started = Instant::now();
        control.send(probe(sid, i)).await.expect("Send");
        while seen.recv().await.expect("delivery") != i {}
        samples.push(started.elapsed());
    }
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

/// `CALLERS` concurrent callers, spread over `controls`, each sending to `sids` in turn,
/// for `RATE_SECONDS`: completed sends per second (and failures).
async fn rate(controls: Vec<(SocketControlClient<Channel>, Vec<String>)>) -> (f64, u64) {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(RATE_SECONDS);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for caller in 0..CALLERS {
        let (control, sids) = &controls[caller % controls.len()];
        let (mut control, sids) = (control.clone(), sids.clone());
        let (done, failed) = (done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = caller;
            while Instant::now() < stop {
                n += 1;
                match control.send(probe(&sids[n % sids.len()], 0)).await {
                    Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    (
        done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64(),
        failed.load(Ordering::Relaxed),
    )
}

async fn sockets(gateway: &Gateway, prefix: &str) -> (Vec<String>, mpsc::UnboundedReceiver<u64>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut sids = Vec::new();
    for n in 0..SOCKETS {
        sids.push(client(gateway, &format!("{prefix}{n}"), tx.clone()).await);
    }
    (sids, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run with --ignored --nocapture on a release build"]
async fn send_latency_and_rate_one_node_and_two() {
    let single = Gateway::start().await;
    let redis = Redis::start().await;
    let a = Gateway::builder()
        .cluster_node(&redis, "node-a")
        .start()
        .await;
    let b = Gateway::builder()
        .cluster_node(&redis, "node-b")
        .start()
        .await;
    let (on_single, mut seen_single) = sockets(&single, "s").await;
    let (on_a, mut seen_a) = sockets(&a, "a").await;
    let (on_b, mut seen_b) = sockets(&b, "b").await;
    let mut control_single = single.control().await;
    let mut control_a = a.control().await;
    let control_b = b.control().await;

    let one = latency(&mut control_single, &on_single[0], &mut seen_single).await;
    let same = latency(&mut control_a, &on_a[0], &mut seen_a).await;
    let cross = latency(&mut control_a, &on_b[0], &mut seen_b).await;
    // Receivers drain in the background during the rate runs.
    for mut rx in [seen_single, seen_a, seen_b] {
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
    }
    let one_rate = rate(vec![(control_single.clone(), on_single.clone())]).await;
    let same_rate = rate(vec![(control_a.clone(), on_a.clone())]).await;
    let cross_rate = rate(vec![
        (control_a.clone(), on_b.clone()),
        (control_b.clone(), on_a.clone()),
    ])
    .await;

    println!(
        "unicast Send, {SOCKETS} sockets per node, {LATENCY_SAMPLES} sequential sends for latency, {CALLERS} concurrent callers for {RATE_SECONDS} s for rate"
    );
    println!("| setup | latency p50 | latency p99 | Send/s | failed |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, (p50, p99), (per_second, failed)) in [
        ("one node (memory adapter)", one, one_rate),
        ("two nodes, socket on the called node", same, same_rate),
        (
            "two nodes, socket on the other node (calls to both)",
            cross,
            cross_rate,
        ),
    ] {
        println!("| {name} | {p50:.2?} | {p99:.2?} | {per_second:.0} | {failed} |");
    }
}
