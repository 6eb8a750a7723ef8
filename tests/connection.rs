//! The connection protocol with the official socket.io-client: authenticate, denials with
//! the exact messages, auth timeout, dropped events, application ping, both transports.

mod fixture;

use fixture::{
    Gateway, rooms_of,
    scene::Scene,
    sio::{Transport, polling, ws},
    tokens,
};
use serde_json::json;
use sockgate_client::proto::{GetSocketRequest, SocketState};

const INVALID: &str = "Invalid token to authenticate! Please login again!";

#[tokio::test]
async fn authenticates_on_both_transports() {
    let (_gateway, mut clients, mut control) = Scene::start().await.into_parts();
    for (id, transport) in [("ws", Transport::Websocket), ("poll", Transport::Polling)] {
        let sid = clients.connect(id, transport).await;
        let payload = clients.authenticate(id, &tokens::for_user(id)).await;
        assert_eq!(payload["id"], sid.as_str());
        let time = payload["time"].as_str().expect("time is a string");
        assert!(time.ends_with('Z') && time.len() == 24, "ISO time: {time}");

        let socket = control
            .get_socket(GetSocketRequest {
                socket_id: sid.clone(),
            })
            .await
            .expect("GetSocket")
            .into_inner()
            .socket
            .expect("socket");
        assert_eq!(socket.user_id, id);
        assert_eq!(socket.state(), SocketState::Authenticated);
        assert_eq!(
            socket.rooms,
            vec![
                "io-default".to_owned(),
                "io-notification".into(),
                format!("user:{id}")
            ]
        );
        let expected = match transport {
            Transport::Websocket => "websocket",
            Transport::Polling => "polling",
        };
        assert_eq!(socket.transport, expected);
        assert!(
            socket.remote_address.starts_with("127.0.0.1:"),
            "{}",
            socket.remote_address
        );
        assert!(socket.connected_at.is_some());
    }
}

#[tokio::test]
async fn token_is_read_from_auth_header_and_query() {
    let (_gateway, mut clients, _control) = Scene::start().await.into_parts();

    let from_auth = json!({"path": "/io", "auth": {"token": tokens::for_user("a")}});
    clients
        .connect_with("auth", Transport::Websocket, from_auth)
        .await;
    clients.emit("auth", "authenticate", json!([])).await;
    clients.next_event("auth", "authenticated").await;

    let header = json!({
        "path": "/io",
        "extraHeaders": {"Authorization": format!("Bearer {}", tokens::for_user("h"))}
    });
    clients
        .connect_with("header", Transport::Polling, header)
        .await;
    clients.emit("header", "authenticate", json!([])).await;
    clients.next_event("header", "authenticated").await;

    let query = json!({"path": "/io", "query": {"token": tokens::for_user("q")}});
    clients
        .connect_with("query", Transport::Websocket, query)
        .await;
    clients.emit("query", "authenticate", json!([])).await;
    clients.next_event("query", "authenticated").await;
}

#[tokio::test]
async fn wrong_token_gets_the_exact_message_then_is_disconnected() {
    let (_gateway, mut clients, _control) = Scene::start().await.into_parts();
    for (id, transport) in [("ws", Transport::Websocket), ("poll", Transport::Polling)] {
        clients.connect(id, transport).await;
        clients
            .emit(
                id,
                "authenticate",
                json!([{"token": tokens::forged("mallory")}]),
            )
            .await;
        let denial = clients.next_event(id, "unauthenticated").await;
        assert_eq!(denial["message"], INVALID);
        assert!(denial["time"].is_string());
        assert_eq!(clients.disconnected(id).await, "io server disconnect");
    }
}

#[tokio::test]
async fn expired_and_missing_tokens_are_refused() {
    let (gateway, mut clients, _control) = Scene::start().await.into_parts();

    clients.connect("expired", Transport::Websocket).await;
    clients
        .emit(
            "expired",
            "authenticate",
            json!([{"token": tokens::expired("old")}]),
        )
        .await;
    assert_eq!(
        clients.next_event("expired", "unauthenticated").await["message"],
        INVALID
    );
    clients.disconnected("expired").await;

    clients.connect("none", Transport::Websocket).await;
    clients.emit("none", "authenticate", json!([])).await;
    assert_eq!(
        clients.next_event("none", "unauthenticated").await["message"],
        INVALID
    );
    clients.disconnected("none").await;

    let log = gateway.log_text();
    assert!(log.contains("authentication denied"), "denials are logged");
    assert!(
        !log.contains(&tokens::expired("old")),
        "tokens are never logged"
    );
}

#[tokio::test]
async fn silent_client_is_disconnected_after_the_auth_timeout() {
    let (_gateway, mut clients, mut control) =
        Scene::of(Gateway::builder().env("EDGE__AUTH_TIMEOUT", "1s"))
            .await
            .into_parts();
    clients.connect("silent", Transport::Websocket).await;
    let authenticated = clients.login(ws("ok").user("u")).await;
    assert_eq!(clients.disconnected("silent").await, "io server disconnect");

    // The authenticated socket stays.
    control
        .get_socket(GetSocketRequest {
            socket_id: authenticated,
        })
        .await
        .expect("authenticated socket is still connected");
    assert!(
        !clients
            .pending()
            .iter()
            .any(|e| e["id"] == "ok" && e["type"] == "disconnect")
    );
}

#[tokio::test]
async fn events_before_authentication_are_dropped_and_a_second_authenticate_is_ignored() {
    let (gateway, mut clients, mut control) = Scene::start().await.into_parts();
    let sid = clients.connect("c", Transport::Websocket).await;

    // A join before authenticating gets no answer at all.
    clients
        .emit("c", "join", json!([{"rooms": ["chat:early"]}]))
        .await;
    clients.authenticate("c", &tokens::for_user("u1")).await;
    // A second authenticate, even with a bad token, changes nothing.
    clients
        .emit("c", "authenticate", json!([{"token": tokens::forged("x")}]))
        .await;
    let ack = clients
        .emit_with_ack("c", "join", json!([{"rooms": ["chat:late"]}]))
        .await;
    assert_eq!(ack[0]["joined"], json!(["chat:late"]));
    let rooms = rooms_of(&mut control, &sid).await;
    assert!(rooms.contains(&"chat:late".to_owned()));
    assert!(
        !rooms.contains(&"chat:early".to_owned()),
        "the early join was dropped"
    );
    assert!(!clients.has_event("c", "unauthenticated"));
    assert!(!clients.has_event("c", "authenticated"));
    assert!(gateway.log_text().contains("second authenticate ignored"));
}

#[tokio::test]
async fn authenticated_sockets_get_the_application_ping() {
    let (_gateway, mut clients, _control) =
        Scene::of(Gateway::builder().env("EDGE__APP_PING_INTERVAL", "200ms"))
            .await
            .into_parts();
    clients.connect("anon", Transport::Websocket).await;
    clients.login(polling("auth").user("u")).await;
    let first = clients.next_event("auth", "ping").await;
    let second = clients.next_event("auth", "ping").await;
    assert!(first["time"].is_string() && second["time"].is_string());
    assert!(
        !clients.has_event("anon", "ping"),
        "unauthenticated sockets get no app ping"
    );
}

#[tokio::test]
async fn development_default_admits_everyone_on_loopback() {
    let (gateway, mut clients, _control) = Scene::of(Gateway::builder().without_config())
        .await
        .into_parts();
    let sid = clients.connect("dev", Transport::Websocket).await;
    clients.emit("dev", "authenticate", json!([])).await;
    assert_eq!(
        clients.next_event("dev", "authenticated").await["id"],
        sid.as_str()
    );
    // Client joins stay rejected without a validator.
    let ack = clients
        .emit_with_ack("dev", "join", json!([{"rooms": ["any"]}]))
        .await;
    assert_eq!(ack[0], json!({"joined": [], "rejected": ["any"]}));
    assert!(gateway.log_text().contains("DEVELOPMENT MODE"));
}

#[tokio::test]
async fn a_burst_of_clients_all_authenticate() {
    // Each client emits `authenticate` the moment it is connected: the socket's handlers
    // must already be in place then, however busy the gateway is.
    let (_gateway, mut clients, _control) = Scene::start().await.into_parts();
    let ids: Vec<String> = (0..120).map(|i| format!("c{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let transport = if i % 2 == 0 {
            Transport::Websocket
        } else {
            Transport::Polling
        };
        let auth = json!({"path": "/io", "auth": {"token": tokens::for_user(id)}});
        clients
            .open_and_emit(id, transport, auth, json!(["authenticate"]))
            .await;
    }
    for id in &ids {
        clients.next_event(id, "authenticated").await;
    }
}
