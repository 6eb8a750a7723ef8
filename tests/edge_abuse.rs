//! Clients that misbehave: oversized messages, malformed packets, floods of events toward a
//! slow backend. Each is contained: the offender is cut off or its events dropped (and
//! logged), every other socket and the process carry on.

mod fixture;

use fixture::{
    Gateway,
    eventually::eventually,
    hooks::HookBackend,
    scene::Scene,
    sio::{Clients, Login, Transport, polling, ws},
    to_sockets, tokens,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use sockgate_client::proto::{GetInfoRequest, SendRequest};
use tokio_tungstenite::tungstenite::Message;

/// A new socket and a new control connection are served as before.
async fn still_serves(gateway: &Gateway, clients: &mut Clients, id: &str) {
    let sid = clients.login(ws(id)).await;
    let mut control = gateway.control().await;
    control
        .send(SendRequest {
            event: "alive".into(),
            data_json: "true".into(),
            target: to_sockets(&[&sid]),
            ..SendRequest::default()
        })
        .await
        .expect("Send");
    clients.next_event(id, "alive").await;
    control.get_info(GetInfoRequest {}).await.expect("GetInfo");
}

#[tokio::test]
async fn oversized_messages_disconnect_only_the_sender() {
    let builder = Gateway::builder().env("EDGE__MAX_PAYLOAD_BYTES", "10000");
    let (gateway, mut clients, _control) = Scene::of(builder).await.into_parts();
    clients.login(polling("ok")).await;
    let big = json!([{"blob": "x".repeat(20_000)}]);
    for (id, transport) in [("ws", Transport::Websocket), ("poll", Transport::Polling)] {
        clients.login(Login::new(id, transport)).await;
        clients.emit(id, "upload", big.clone()).await;
        let reason = clients.disconnected(id).await;
        assert!(reason.starts_with("transport"), "{id}: {reason}");
    }
    assert!(
        !clients
            .pending()
            .iter()
            .any(|e| e["id"] == "ok" && e["type"] == "disconnect")
    );
    still_serves(&gateway, &mut clients, "after").await;
}

#[tokio::test]
async fn malformed_packets_break_nothing() {
    let (gateway, mut clients, _control) = Scene::start().await.into_parts();
    let url = format!("ws://{}/io/?EIO=4&transport=websocket", gateway.edge);
    let frames: Vec<Message> = vec![
        Message::text(r#"42{not json"#),
        Message::text("42[]"),
        Message::text("42[123]"),
        Message::text(r#"42["authenticate""#),
        Message::text(r#"42["join",{"rooms":"chat:x"}]"#),
        Message::text("4"),
        Message::text("9garbage"),
        Message::text(r#"451-["upload",{"_placeholder":true,"num":0}]"#),
        Message::binary(vec![0xde, 0xad, 0xbe, 0xef]),
        Message::text(""),
    ];
    // Each frame on its own connection, all kept open while a well-behaved client works.
    let mut connections = Vec::new();
    for frame in frames {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("raw websocket");
        let open = ws.next().await.unwrap().unwrap();
        assert!(
            open.to_text().unwrap().starts_with('0'),
            "engine.io open: {open:?}"
        );
        ws.send(Message::text("40")).await.unwrap();
        // Skip to the namespace connect reply.
        loop {
            let reply = ws.next().await.unwrap().unwrap();
            if reply.to_text().is_ok_and(|t| t.starts_with("40")) {
                break;
            }
        }
        // The gateway may ignore the frame or close this connection; both are fine.
        let _ = ws.send(frame).await;
        connections.push(ws);
    }
    still_serves(&gateway, &mut clients, "after").await;
}

#[tokio::test]
async fn a_flood_toward_a_slow_backend_is_capped_per_socket() {
    let mut backend = HookBackend::start().await;
    let builder = Gateway::builder()
        .env("HOOKS__ENDPOINT", &backend.url())
        .env("HOOKS__ON_EVENT", "true")
        .env("HOOKS__TIMEOUT", "1500ms")
        .env("HOOKS__MAX_PENDING_PER_SOCKET", "4");
    let (gateway, mut clients, _control) = Scene::of(builder).await.into_parts();
    clients
        .logins([ws("flood").user("f"), ws("calm").user("c")])
        .await;

    // Four slow calls take every slot of the flooding socket; the rest are dropped.
    for _ in 0..200 {
        clients.emit("flood", "slow", json!([{}])).await;
    }
    for _ in 0..4 {
        backend.received("slow").await;
    }
    let err = clients
        .emit_expecting_no_ack("flood", "ask", json!([1]), 500)
        .await;
    assert!(err.contains("timed out"), "{err}");
    // Another socket is not affected.
    let ack = clients.emit_with_ack("calm", "ask", json!([2])).await;
    assert_eq!(ack[0]["data"], 2);
    // Once the slow calls time out, the flooding socket is served again.
    let ack = eventually("the flooding socket's slots to free", async || {
        let ack = clients
            .emit_acked_raw("flood", "ask", json!([3]), 500)
            .await;
        ack["err"].is_null().then_some(ack)
    })
    .await;
    assert_eq!(ack["args"][0]["data"], 3);
    let (_, metrics) = gateway.admin_get("/metrics").await;
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"sockgate_client_events_total{outcome="dropped_saturated"} "#)
        })
        .and_then(|n| n.parse().ok())
        .expect("saturation drops are counted");
    assert!(dropped >= 196, "{dropped}");
    let log = gateway.log_text();
    assert_eq!(
        log.matches("too many OnEvent calls pending").count(),
        1,
        "one warning per episode, not one per dropped event"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_makes_unicast_sends_fail_fast() {
    let (gateway, mut clients, mut control) = Scene::start().await.into_parts();
    // A raw WebSocket client that authenticates, then never reads again.
    let url = format!("ws://{}/io/?EIO=4&transport=websocket", gateway.edge);
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    ws.next().await.unwrap().unwrap();
    ws.send(Message::text("40")).await.unwrap();
    let token = tokens::for_user("sleepy");
    let mut sid = String::new();
    while sid.is_empty() {
        let text = ws.next().await.unwrap().unwrap().into_text().unwrap();
        if text.starts_with("40") {
            ws.send(Message::text(format!(
                r#"42["authenticate",{{"token":"{token}"}}]"#
            )))
            .await
            .unwrap();
        } else if let Some(payload) = text.strip_prefix(r#"42["authenticated","#) {
            let payload: serde_json::Value =
                serde_json::from_str(payload.trim_end_matches(']')).unwrap();
            sid = payload["id"].as_str().unwrap().to_owned();
        }
    }
    let awake = clients
        .login(Login::new("awake", Transport::Websocket).user("a"))
        .await;
    let big = format!("\"{}\"", "z".repeat(400_000));
    let mut refused = None;
    for _ in 0..1000 {
        let sent = control
            .send(SendRequest {
                event: "bulk".into(),
                data_json: big.clone(),
                target: to_sockets(&[&sid]),
                ..SendRequest::default()
            })
            .await;
        if let Err(status) = sent {
            refused = Some(status);
            break;
        }
    }
    let status = refused.expect("the sleepy socket's buffer fills up");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("send buffer is full"),
        "{status:?}"
    );
    // Everyone else is served as before.
    control
        .send(SendRequest {
            event: "fine".into(),
            data_json: "1".into(),
            target: to_sockets(&[&awake]),
            ..SendRequest::default()
        })
        .await
        .unwrap();
    clients.next_event("awake", "fine").await;
    let (_, metrics) = gateway.admin_get("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "sockgate_send_dropped_total 1"),
        "{metrics}"
    );
    drop(ws);
}
