//! The scenario users of the Ignis `SocketIOServerHelper` example run today, with gRPC in
//! place of its REST calls: two clients connect and authenticate; info, sockets and health;
//! join and leave by client event and by RPC; a socket's rooms; send to one socket, to a
//! room and to everyone.

mod fixture;

use fixture::{
    join, rooms_of,
    scene::Scene,
    sio::{polling, ws},
    to_all, to_rooms, to_sockets,
};
use serde_json::json;
use sockgate_client::proto::{GetInfoRequest, LeaveRequest, ListSocketsRequest, SendRequest};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

#[tokio::test]
async fn ignis_example_over_grpc() {
    let (gateway, mut clients, mut control) = Scene::start().await.into_parts();

    // Health (the REST example's GET /health).
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", gateway.control))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "sockgate.v1.SocketControl".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);

    // Two clients, one per transport.
    let [one, two] = clients
        .logins([ws("one").user("user-1"), polling("two").user("user-2")])
        .await;

    // GET /info and GET /sockets.
    let info = control
        .get_info(GetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.sockets.unwrap().authenticated, 2);
    let sockets = control
        .list_sockets(ListSocketsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut ids: Vec<_> = sockets.sockets.iter().map(|s| s.id.clone()).collect();
    ids.sort();
    let mut expected = vec![one.clone(), two.clone()];
    expected.sort();
    assert_eq!(ids, expected);

    // Client-side join and leave (event + ack).
    let ack = clients
        .emit_with_ack("one", "join", json!([{"rooms": ["chat:lobby"]}]))
        .await;
    assert_eq!(ack[0]["joined"], json!(["chat:lobby"]));
    let ack = clients
        .emit_with_ack(
            "two",
            "join",
            json!([{"rooms": ["chat:lobby", "chat:tmp"]}]),
        )
        .await;
    assert_eq!(ack[0]["joined"], json!(["chat:lobby", "chat:tmp"]));
    let ack = clients
        .emit_with_ack("two", "leave", json!([{"rooms": ["chat:tmp"]}]))
        .await;
    assert_eq!(ack[0]["left"], json!(["chat:tmp"]));

    // Server-side join and leave (POST /rooms/join, /rooms/leave).
    join(&mut control, &[&one], &["vip"]).await;
    control
        .leave(LeaveRequest {
            target: to_sockets(&[&one]),
            rooms: vec!["vip".into()],
        })
        .await
        .unwrap();

    // GET /sockets/:id/rooms
    let rooms = rooms_of(&mut control, &two).await;
    assert_eq!(
        rooms,
        vec!["chat:lobby", "io-default", "io-notification", "user:user-2"]
    );

    // POST /send to a socket, a room, everyone.
    let send = |target, event: &str| SendRequest {
        event: event.into(),
        data_json: json!({"text": event}).to_string(),
        target,
        ..SendRequest::default()
    };
    control
        .send(send(to_sockets(&[&one]), "to-one"))
        .await
        .unwrap();
    control
        .send(send(to_rooms(&["chat:lobby"]), "to-room"))
        .await
        .unwrap();
    control.send(send(to_all(), "to-all")).await.unwrap();
    assert_eq!(clients.next_event("one", "to-one").await["text"], "to-one");
    for id in ["one", "two"] {
        assert_eq!(clients.next_event(id, "to-room").await["text"], "to-room");
        assert_eq!(clients.next_event(id, "to-all").await["text"], "to-all");
    }
    assert!(!clients.has_event("two", "to-one"));
}
