//! `edge.parser = "msgpack"`: the official client with socket.io-msgpack-parser
//! authenticates, joins with an ack, gets a `Send`'s data as native values and its
//! attachments as binary, answers an ack-mode `Send`, and its events reach watchers as
//! with the default parser; the payload limit holds; malformed MessagePack packets break
//! nothing.

mod fixture;

use fixture::{
    Gateway,
    eventually::eventually,
    next_watched, raw,
    scene::Scene,
    sio::{Login, Transport},
    to_rooms, to_sockets,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sockgate_client::proto::{AckOptions, EventKind, SendRequest, WatchEventsRequest};
use tokio_tungstenite::tungstenite::Message;

async fn msgpack_scene() -> Scene {
    Scene::of(Gateway::builder().env("EDGE__PARSER", "msgpack")).await
}

#[tokio::test]
async fn msgpack_clients_get_native_values_and_binary_attachments() {
    let (_gateway, mut clients, mut control) = msgpack_scene().await.into_parts();
    for (id, transport) in [("ws", Transport::Websocket), ("poll", Transport::Polling)] {
        clients
            .login(Login::new(id, transport).user("alice").msgpack())
            .await;
        let joined = clients
            .emit_with_ack(id, "join", json!([{"rooms": ["chat:x"]}]))
            .await;
        assert_eq!(
            joined,
            json!([{"joined": ["chat:x"], "rejected": []}]),
            "{id}"
        );
    }

    control
        .send(SendRequest {
            event: "file".into(),
            data_json: r#"{"name":"f.bin","n":[1,-2,1.5,null,true]}"#.into(),
            attachments: vec![vec![0u8, 1, 2, 255].into(), b"second".to_vec().into()],
            target: to_rooms(&["chat:x"]),
            ..SendRequest::default()
        })
        .await
        .unwrap();
    for id in ["ws", "poll"] {
        assert_eq!(
            clients.next_event_args(id, "file").await,
            json!([
                {"name": "f.bin", "n": [1, -2, 1.5, null, true]},
                {"$bin": "AAEC/w=="},
                {"$bin": "c2Vjb25k"}
            ]),
            "{id}"
        );
    }
}

#[tokio::test]
async fn msgpack_clients_answer_ack_mode_sends() {
    let (_gateway, mut clients, mut control) = msgpack_scene().await.into_parts();
    let sid = clients
        .login(Login::new("a", Transport::Websocket).msgpack())
        .await;
    clients
        .reply_to("a", "question", json!({"answer": 42, "list": ["x", 1]}))
        .await;
    let response = control
        .send(SendRequest {
            event: "question".into(),
            data_json: r#"{"q":"?"}"#.into(),
            target: to_sockets(&[&sid]),
            ack: Some(AckOptions { timeout_ms: 2000 }),
            ..SendRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.recipients, Some(1));
    assert_eq!(response.acks.len(), 1, "{response:?}");
    assert_eq!(
        serde_json::from_str::<Value>(&response.acks[0].data_json).unwrap(),
        json!({"answer": 42, "list": ["x", 1]})
    );
}

#[tokio::test]
async fn msgpack_client_events_reach_watchers_as_json_and_attachments() {
    let (gateway, mut clients, _control) = msgpack_scene().await.into_parts();
    let mut watched = gateway
        .control()
        .await
        .watch_events(WatchEventsRequest {
            kinds: vec![EventKind::ClientEvent as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    clients
        .login(Login::new("a", Transport::Websocket).msgpack())
        .await;
    clients
        .emit(
            "a",
            "chat:message",
            json!([{"text": "hi", "n": 3}, {"$bin": "AQID"}]),
        )
        .await;
    let event = next_watched(&mut watched).await;
    assert_eq!(event.event, "chat:message");
    assert_eq!(
        serde_json::from_str::<Value>(&event.data_json).unwrap(),
        json!({"text": "hi", "n": 3})
    );
    assert_eq!(
        event.attachments,
        vec![bytes::Bytes::from_static(&[1, 2, 3])]
    );
}

#[tokio::test]
async fn a_msgpack_event_over_the_payload_limit_disconnects() {
    let (_gateway, mut clients, _control) = Scene::of(
        Gateway::builder()
            .env("EDGE__PARSER", "msgpack")
            .env("EDGE__MAX_PAYLOAD_BYTES", "2000"),
    )
    .await
    .into_parts();
    clients
        .login(Login::new("a", Transport::Websocket).msgpack())
        .await;
    clients
        .emit("a", "big", json!([{"text": "x".repeat(3000)}]))
        .await;
    let reason = clients.disconnected("a").await;
    assert!(reason.starts_with("transport"), "{reason}");
}

/// A Socket.IO packet as socket.io-msgpack-parser writes it (`data` may hold binary).
fn packet(data: &impl serde::Serialize) -> Message {
    #[derive(serde::Serialize)]
    struct Packet<'a, T: serde::Serialize> {
        r#type: u8,
        nsp: &'a str,
        data: &'a T,
    }
    let bytes = rmp_serde::to_vec_named(&Packet {
        r#type: 2,
        nsp: "/",
        data,
    })
    .unwrap();
    Message::binary(bytes)
}

#[tokio::test]
async fn malformed_msgpack_packets_break_nothing() {
    let (gateway, mut clients, mut control) = msgpack_scene().await.into_parts();
    let binary = bytes::Bytes::from_static(&[1, 2, 3]);
    let deep = (0..200).fold(json!(1), |inner, _| json!([inner]));
    let frames = vec![
        packet(&json!({"not": "an array"})),
        packet(&json!([])),
        packet(&json!([123])),
        packet(&json!(["typing", deep])),
        packet(&("typing", std::collections::BTreeMap::from([(1u8, 2u8)]))),
        packet(&(
            "authenticate",
            std::collections::BTreeMap::from([("token", &binary)]),
        )),
        packet(&(
            "join",
            std::collections::BTreeMap::from([("rooms", [&binary])]),
        )),
        Message::binary(vec![0xc1]),
        Message::binary(vec![0x82, 0xa4]),
        Message::text(r#"42["authenticate"]"#),
    ];
    // Each frame on its own connection, all kept open while a well-behaved client works.
    let mut connections = Vec::new();
    for frame in frames {
        let mut ws = raw::ws_open(gateway.edge).await.expect("raw websocket");
        let connect = rmp_serde::to_vec_named(&json!({"type": 0, "nsp": "/"})).unwrap();
        ws.send(Message::binary(connect)).await.unwrap();
        // As the official client does, the frame follows the CONNECT reply: a packet that
        // arrives while the namespace is still connecting the socket is dropped unread.
        loop {
            match ws.next().await {
                Some(Ok(Message::Binary(_))) => break,
                Some(Ok(_)) => continue,
                other => panic!("no CONNECT reply: {other:?}"),
            }
        }
        // The gateway may ignore the frame or close this connection; both are fine.
        let _ = ws.send(frame).await;
        connections.push(ws);
    }
    // socketioxide's parser refuses most of these itself (no event name, a name that is no
    // string, nesting past its limit of 128); the map whose key is no string reaches the
    // gateway, which drops it as malformed. The binary token and rooms are refused by the
    // auth protocol as a JSON one would be.
    eventually("a malformed event counted", async || {
        let malformed = gateway
            .metric(r#"sockgate_client_events_total{outcome="malformed"} "#)
            .await;
        if malformed >= 1 {
            Ok(())
        } else {
            Err(format!("{malformed} so far"))
        }
    })
    .await;
    let sid = clients
        .login(Login::new("calm", Transport::Websocket).msgpack())
        .await;
    clients
        .emit_with_ack("calm", "join", json!([{"rooms": ["chat:x"]}]))
        .await;
    control
        .send(SendRequest {
            event: "still".into(),
            data_json: "{}".into(),
            target: to_sockets(&[&sid]),
            ..SendRequest::default()
        })
        .await
        .unwrap();
    clients.next_event("calm", "still").await;
    gateway.assert_healthy().await;
}
