//! A polling session that upgrades to WebSocket (the official client's default): what the
//! gateway sends before, during and after the upgrade arrives once each, in order, and the
//! socket keeps working on the new transport. This is the path where the edge's send
//! queue changes hands between a polling request and the WebSocket writer.

mod fixture;

use fixture::{scene::Scene, sio::Transport, to_sockets, tokens};
use serde_json::json;
use sockgate_client::proto::SendRequest;

#[tokio::test]
async fn a_polling_session_upgrades_to_websocket_without_losing_or_reordering_messages() {
    let (_gateway, mut clients, mut control) = Scene::start().await.into_parts();
    let sid = clients
        .connect_with(
            "up",
            Transport::Polling,
            json!({"path": "/io", "transports": ["polling", "websocket"], "upgrade": true}),
        )
        .await;
    clients.authenticate("up", &tokens::for_user("up")).await;

    let mut send = async |i: u32| {
        control
            .send(SendRequest {
                event: "seq".into(),
                data_json: i.to_string(),
                target: to_sockets(&[&sid]),
                ..SendRequest::default()
            })
            .await
            .expect("Send");
    };
    // The client starts its upgrade probe as soon as it is connected: these race it.
    for i in 0..30 {
        send(i).await;
    }
    let upgrade = clients
        .take(
            |e| e["id"] == "up" && e["type"] == "upgrade",
            "the upgrade to websocket",
        )
        .await;
    assert_eq!(upgrade["transport"], "websocket");
    for i in 30..60 {
        send(i).await;
    }
    for i in 0..60 {
        assert_eq!(clients.next_event_args("up", "seq").await, json!([i]));
    }
    assert!(
        !clients.has_event("up", "seq"),
        "a message arrived twice: {:#?}",
        clients.pending()
    );

    // The socket still answers on the new transport.
    let ack = clients
        .emit_with_ack("up", "leave", json!([{"rooms": ["nothing"]}]))
        .await;
    assert!(ack[0]["left"].is_array(), "leave ack: {ack}");
}
