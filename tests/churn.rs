//! Churn: thousands of connect → authenticate → join → disconnect cycles over raw
//! WebSocket and polling frames, many in parallel, with `authenticate` and `join` sent
//! in the same flush as the disconnect so that their handlers race it. Afterwards
//! `GetInfo`, `ListRooms`, the gauges of `/metrics` (sockets by state, rooms, rooms held
//! only by sockets that are gone, tokio tasks) and the open file descriptors are back to
//! what they were before, and a socket that stayed connected throughout is served as
//! before.
//!
//! `CHURN_CYCLES` sets the number of cycles (3000 by default);
//! `ROBUSTNESS_SEED` replays a run.

mod fixture;

use std::{net::SocketAddr, sync::Arc, time::Instant};

use fixture::{
    Gateway,
    raw::{self, Polling, SEPARATOR},
    rng::Rng,
    to_rooms, tokens,
};
use futures_util::SinkExt;
use sockgate_client::proto::SendRequest;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

const SHARED_ROOM: &str = "chat:churn";
const USERS: usize = 50;
const PARALLEL: usize = 32;

/// How one cycle ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Variant {
    /// `join` and the namespace disconnect (`41`) in one flush, right after `authenticated`.
    JoinThenLeaveNamespace,
    /// `join`, then the TCP connection dropped without a close frame.
    JoinThenDrop,
    /// `authenticate` and a WebSocket close in one flush: authentication races the close.
    AuthenticateThenClose,
    /// `join` awaited (ack), then a clean close: the orderly path.
    Orderly,
    /// Polling: `join` and the Engine.IO close packet in one payload.
    PollingJoinThenClose,
}

const VARIANTS: &[Variant] = &[
    Variant::JoinThenLeaveNamespace,
    Variant::JoinThenDrop,
    Variant::AuthenticateThenClose,
    Variant::Orderly,
    Variant::JoinThenLeaveNamespace,
    Variant::JoinThenDrop,
    Variant::AuthenticateThenClose,
    Variant::PollingJoinThenClose,
];

fn join_frame(i: usize, user: usize, ack: Option<u32>) -> String {
    let ack = ack.map(|a| a.to_string()).unwrap_or_default();
    format!(r#"42{ack}["join",{{"rooms":["{SHARED_ROOM}","chat:churn-{i}","private:u{user}"]}}]"#)
}

fn authenticate_frame(token: &str) -> String {
    format!(r#"42["authenticate",{{"token":"{token}"}}]"#)
}

async fn websocket_cycle(
    edge: SocketAddr,
    i: usize,
    user: usize,
    token: &str,
    variant: Variant,
) -> Result<(), String> {
    let mut ws = raw::ws_open(edge).await?;
    raw::ws_connect_ns(&mut ws)
        .await
        .ok_or("no namespace connect reply")?;
    if variant == Variant::AuthenticateThenClose {
        ws.feed(Message::text(authenticate_frame(token)))
            .await
            .map_err(|e| e.to_string())?;
        ws.close(None).await.map_err(|e| e.to_string())?;
        return Ok(());
    }
    ws.send(Message::text(authenticate_frame(token)))
        .await
        .map_err(|e| e.to_string())?;
    raw::ws_until(&mut ws, r#"42["authenticated""#)
        .await
        .ok_or("not authenticated")?;
    let send = |frame: String| Message::text(frame);
    match variant {
        Variant::JoinThenLeaveNamespace => {
            ws.feed(send(join_frame(i, user, Some(1))))
                .await
                .map_err(|e| e.to_string())?;
            ws.feed(send("41".into()))
                .await
                .map_err(|e| e.to_string())?;
            ws.close(None).await.map_err(|e| e.to_string())?;
            while raw::ws_next_text(&mut ws).await.is_some() {}
        }
        Variant::JoinThenDrop => {
            ws.send(send(join_frame(i, user, None)))
                .await
                .map_err(|e| e.to_string())?;
            drop(ws);
        }
        Variant::Orderly => {
            ws.send(send(join_frame(i, user, Some(7))))
                .await
                .map_err(|e| e.to_string())?;
            let ack = raw::ws_until(&mut ws, "437[").await.ok_or("no join ack")?;
            if !ack.contains(&format!("chat:churn-{i}")) {
                return Err(format!("join refused: {ack}"));
            }
            ws.close(None).await.map_err(|e| e.to_string())?;
            while raw::ws_next_text(&mut ws).await.is_some() {}
        }
        Variant::AuthenticateThenClose | Variant::PollingJoinThenClose => unreachable!(),
    }
    Ok(())
}

async fn polling_cycle(edge: SocketAddr, i: usize, user: usize, token: &str) -> Result<(), String> {
    let session = Polling::open(edge).await?;
    let post = async |payload: String| match session.post(payload.as_bytes()).await {
        Ok(200) => Ok(()),
        other => Err(format!("POST {payload:?}: {other:?}")),
    };
    let until = async |prefix: &str| -> Result<(), String> {
        loop {
            match session.get(fixture::PATIENCE).await {
                Some(Ok((200, packets))) => {
                    if packets.iter().any(|p| p.starts_with(prefix)) {
                        return Ok(());
                    }
                }
                other => return Err(format!("GET waiting for {prefix}: {other:?}")),
            }
        }
    };
    post("40".into()).await?;
    until("40").await?;
    post(authenticate_frame(token)).await?;
    until(r#"42["authenticated""#).await?;
    post(format!("{}{SEPARATOR}1", join_frame(i, user, Some(3)))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_racing_disconnects_leave_nothing_behind() {
    let cycles: usize = std::env::var("CHURN_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000);
    let mut rng = Rng::from_env("churn");
    let gateway = Gateway::builder()
        // Thousands of clients, all from the loopback address.
        .env("EDGE__LIMITS__HANDSHAKES_PER_IP_PER_SECOND", "0")
        .log_filter("sockgate=info,warn")
        .start()
        .await;
    let edge = gateway.edge;

    // A socket that stays for the whole run, in the room every cycle joins: the rooms a
    // socket racing its disconnect might keep are reachable from it.
    let mut anchor = raw::ws_open(edge).await.expect("anchor connects");
    let anchor_sid = raw::ws_connect_ns(&mut anchor).await.expect("anchor sid");
    anchor
        .send(Message::text(authenticate_frame(&tokens::for_user(
            "anchor",
        ))))
        .await
        .unwrap();
    raw::ws_until(&mut anchor, r#"42["authenticated""#)
        .await
        .expect("anchor authenticated");
    anchor
        .send(Message::text(format!(
            r#"421["join",{{"rooms":["{SHARED_ROOM}"]}}]"#
        )))
        .await
        .unwrap();
    raw::ws_until(&mut anchor, "431[")
        .await
        .expect("anchor joined");
    // Keeps answering pings and collects what the anchor receives.
    let (received_tx, mut received) = tokio::sync::mpsc::unbounded_channel();
    let anchor_task = tokio::spawn(async move {
        while let Some(text) = raw::ws_next_text(&mut anchor).await {
            let _ = received_tx.send(text);
        }
    });
    let baseline = gateway.snapshot().await;
    assert_eq!(baseline.info_sockets[3], 1, "{baseline}");
    assert_eq!(
        baseline.gauges.get("sockgate_stale_rooms"),
        Some(&0),
        "{baseline}"
    );

    let tokens: Arc<Vec<String>> = Arc::new(
        (0..USERS)
            .map(|u| tokens::for_user(&format!("u{u}")))
            .collect(),
    );
    let slots = Arc::new(Semaphore::new(PARALLEL));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(cycles);
    for i in 0..cycles {
        let variant = *rng.pick(VARIANTS);
        let user = rng.below(USERS);
        let permit = slots.clone().acquire_owned().await.unwrap();
        let tokens = tokens.clone();
        tasks.push(tokio::spawn(async move {
            let token = &tokens[user];
            let cycle = async {
                match variant {
                    Variant::PollingJoinThenClose => polling_cycle(edge, i, user, token).await,
                    _ => websocket_cycle(edge, i, user, token, variant).await,
                }
            };
            let result = tokio::time::timeout(fixture::PATIENCE, cycle)
                .await
                .unwrap_or_else(|_| Err(format!("cycle {i} hung")));
            drop(permit);
            (variant, result)
        }));
    }
    let mut per_variant = std::collections::BTreeMap::<String, usize>::new();
    for task in tasks {
        let (variant, result) = task.await.expect("cycle task");
        if let Err(e) = result {
            panic!("a {variant:?} cycle failed: {e}");
        }
        *per_variant.entry(format!("{variant:?}")).or_default() += 1;
    }
    println!(
        "churn: {cycles} cycles ({per_variant:?}) in {:?}, {PARALLEL} in parallel",
        started.elapsed()
    );

    gateway.assert_healthy().await;
    let settled = gateway.await_baseline(&baseline).await;
    println!("churn: back to baseline {settled:?} after the last cycle");

    // The socket that stayed is served as before.
    let mut control = gateway.control().await;
    control
        .send(SendRequest {
            event: "still-here".into(),
            data_json: "1".into(),
            target: to_rooms(&[SHARED_ROOM]),
            ..SendRequest::default()
        })
        .await
        .expect("Send to the shared room");
    loop {
        let text = tokio::time::timeout(fixture::PATIENCE, received.recv())
            .await
            .expect("the anchor receives the Send")
            .expect("the anchor is still connected");
        if text.starts_with(r#"42["still-here""#) {
            break;
        }
    }
    let info = gateway.snapshot().await;
    assert_eq!(info.rooms.get(SHARED_ROOM), Some(&1), "{info}");
    assert!(!anchor_sid.is_empty());
    anchor_task.abort();
    gateway.assert_healthy().await;
}
