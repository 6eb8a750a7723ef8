//! `Send`: to socket ids, rooms, users, everyone, with `except`; binary attachments; ack
//! mode with replies and timeouts; recipient counts.

mod fixture;

use fixture::{
    join,
    scene::Scene,
    sio::{Login, Transport, polling, ws},
    to_all, to_rooms, to_sockets, to_users,
};
use serde_json::json;
use sockgate_client::proto::{AckOptions, SendRequest, Target};

fn event(name: &str, data: serde_json::Value) -> SendRequest {
    SendRequest {
        event: name.into(),
        data_json: data.to_string(),
        ..SendRequest::default()
    }
}

#[tokio::test]
async fn send_reaches_exactly_the_target() {
    let (_gateway, mut clients, mut control) = Scene::start().await.into_parts();
    let [a, b, _c] = clients
        .logins([
            ws("a").user("alice"),
            polling("b").user("bob"),
            ws("c").user("bob"),
        ])
        .await;
    join(&mut control, &[&a, &b], &["chat:x"]).await;

    // To one socket.
    control
        .send(SendRequest {
            target: to_sockets(&[&b]),
            ..event("direct", json!({"n": 1}))
        })
        .await
        .unwrap();
    assert_eq!(clients.next_event("b", "direct").await, json!({"n": 1}));

    // To a room.
    control
        .send(SendRequest {
            target: to_rooms(&["chat:x"]),
            ..event("room", json!("hello"))
        })
        .await
        .unwrap();
    assert_eq!(clients.next_event("a", "room").await, json!("hello"));
    assert_eq!(clients.next_event("b", "room").await, json!("hello"));

    // To a user: both of bob's sockets.
    control
        .send(SendRequest {
            target: to_users(&["bob"]),
            ..event("user", json!([1, 2]))
        })
        .await
        .unwrap();
    assert_eq!(clients.next_event("b", "user").await, json!([1, 2]));
    assert_eq!(clients.next_event("c", "user").await, json!([1, 2]));

    // To everyone except a room.
    control
        .send(SendRequest {
            target: Some(Target {
                all: true,
                except_rooms: vec!["chat:x".into()],
                ..Target::default()
            }),
            ..event("all-but", json!(null))
        })
        .await
        .unwrap();
    clients.next_event("c", "all-but").await;

    // To everyone.
    let reached = control
        .send(SendRequest {
            target: to_all(),
            count_recipients: true,
            ..event("all", json!({"k": "v"}))
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reached.recipients, Some(3));
    for id in ["a", "b", "c"] {
        assert_eq!(clients.next_event(id, "all").await, json!({"k": "v"}));
    }
    // Nothing else leaked: every event above was taken exactly where expected.
    for id in ["a", "b", "c"] {
        for name in ["direct", "room", "user", "all-but", "all"] {
            assert!(!clients.has_event(id, name), "{id} got an extra {name}");
        }
    }
}

#[tokio::test]
async fn attachments_arrive_as_binary_arguments() {
    let (_gateway, mut clients, mut control) = Scene::start().await.into_parts();
    for (id, transport) in [("ws", Transport::Websocket), ("poll", Transport::Polling)] {
        let sid = clients.login(Login::new(id, transport)).await;
        control
            .send(SendRequest {
                target: to_sockets(&[&sid]),
                attachments: vec![vec![0u8, 1, 2, 255].into(), b"second".to_vec().into()],
                ..event("file", json!({"name": "f.bin"}))
            })
            .await
            .unwrap();
        let args = clients.next_event_args(id, "file").await;
        assert_eq!(
            args,
            json!([{"name": "f.bin"}, {"$bin": "AAEC/w=="}, {"$bin": "c2Vjb25k"}])
        );
    }
    // No data, no attachments: an event without arguments.
    let sid = clients.login(ws("bare").user("x")).await;
    control
        .send(SendRequest {
            event: "bare".into(),
            target: to_sockets(&[&sid]),
            ..SendRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(clients.next_event_args("bare", "bare").await, json!([]));
}

#[tokio::test]
async fn ack_mode_returns_replies_and_timeouts() {
    let (_gateway, mut clients, mut control) = Scene::start().await.into_parts();
    let [polite, rude] = clients
        .logins([ws("polite").user("p"), polling("rude").user("r")])
        .await;
    clients
        .reply_to("polite", "question", json!({"answer": 42}))
        .await;

    let response = control
        .send(SendRequest {
            target: to_sockets(&[&polite, &rude]),
            ack: Some(AckOptions { timeout_ms: 500 }),
            ..event("question", json!({"q": "?"}))
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.recipients, Some(2));
    assert_eq!(response.acks.len(), 1, "{response:?}");
    assert_eq!(response.acks[0].socket_id, polite);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&response.acks[0].data_json).unwrap(),
        json!({"answer": 42})
    );
    assert_eq!(response.timed_out_socket_ids, vec![rude]);
    let asked = clients
        .take(
            |e| e["id"] == "rude" && e["event"] == "question",
            "question on rude",
        )
        .await;
    assert_eq!(asked["withAck"], true);
}
