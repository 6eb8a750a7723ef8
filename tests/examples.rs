//! The example backends of `examples/`, in Python (hooks) and Node (WatchEvents), calling an
//! authenticated control plane over mutual TLS with tokens from `sockgate token`, driven end
//! to end with real socket.io-client sockets: the Ignis echo / chat / room scenario.

mod fixture;

use fixture::{
    Gateway,
    backends::{self, ControlPlane, python_token},
    callers,
    certs::{CertFiles, Pki},
    scene::Scene,
    sio::{Transport, polling, ws},
};
use serde_json::json;

/// A loopback port nobody listens on yet, for a backend the gateway must know in advance.
fn reserve_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// The examples' flags for mutual TLS to the control plane.
fn tls_args(pki: &Pki, client: &CertFiles) -> Vec<String> {
    let path = |p: &std::path::Path| p.display().to_string();
    vec![
        "--ca".into(),
        path(&pki.ca_file),
        "--cert".into(),
        path(&client.cert),
        "--key".into(),
        path(&client.key),
    ]
}

#[tokio::test]
async fn python_backend_authenticates_authorizes_and_handles_events() {
    let pki = Pki::new("examples");
    let hooks_addr = reserve_port();
    let builder = Gateway::builder()
        .env("AUTH__AUTHENTICATORS", r#"["hook"]"#)
        .env("ROOMS__ALLOW", "[]")
        .env("HOOKS__ENDPOINT", &format!("http://{hooks_addr}"))
        .env("HOOKS__AUTHORIZE_JOIN", "true")
        .env("HOOKS__ON_EVENT", "true")
        .env("HOOKS__EVENTS", r#"["echo", "chat:*"]"#)
        .control_auth()
        .control_tls(&pki.server("control"), Some(&pki.ca_file));
    let (gateway, mut clients, _) = Scene::of(builder).await.into_parts();
    // Mutual TLS and a bearer token, as in production.
    let control = ControlPlane {
        address: gateway.control.to_string(),
        token: callers::mint(&["--scope", "send", "--subject", "python-backend"]),
        args: tls_args(&pki, &pki.client("python-backend")),
    };
    let _backend = backends::python(hooks_addr, &control).await;

    let [alice, _] = clients
        .logins([
            ws("alice").token(&python_token("alice")),
            polling("bob").token(&python_token("bob")),
        ])
        .await;
    clients.connect("eve", Transport::Websocket).await;
    clients
        .emit("eve", "authenticate", json!([{"token": "alice.0000"}]))
        .await;
    assert_eq!(
        clients.next_event("eve", "unauthenticated").await["message"],
        "Invalid token to authenticate! Please login again!"
    );

    // Rooms: the backend's rule decides (no static rule is configured).
    let joined = clients
        .emit_with_ack(
            "alice",
            "join",
            json!([{"rooms": ["chat:lobby", "private:alice", "private:bob"]}]),
        )
        .await;
    assert_eq!(
        joined[0],
        json!({"joined": ["chat:lobby", "private:alice"], "rejected": ["private:bob"]})
    );
    clients
        .emit_with_ack("bob", "join", json!([{"rooms": ["chat:lobby"]}]))
        .await;

    // echo: a reply to the sender through SocketControl.Send, and an ack from OnEvent.
    let ack = clients
        .emit_with_ack("alice", "echo", json!([{"msg": "hi"}]))
        .await;
    assert_eq!(ack[0], json!({"status": "ok"}));
    let echo = clients.next_event("alice", "echo:response").await;
    assert_eq!(echo["original"], json!({"msg": "hi"}));
    assert!(echo["timestamp"].is_string());

    // chat to a room, then to everyone.
    let ack = clients
        .emit_with_ack(
            "alice",
            "chat:message",
            json!([{"room": "chat:lobby", "text": "hello"}]),
        )
        .await;
    assert_eq!(ack[0], json!({"delivered": true}));
    for id in ["alice", "bob"] {
        let message = clients.next_event(id, "chat:message").await;
        assert_eq!(
            (
                message["from"].as_str(),
                message["room"].as_str(),
                message["text"].as_str()
            ),
            (Some("alice"), Some("chat:lobby"), Some("hello"))
        );
    }
    clients
        .emit_with_ack("bob", "chat:message", json!([{"text": "to all"}]))
        .await;
    for id in ["alice", "bob"] {
        let message = clients.next_event(id, "chat:broadcast").await;
        assert_eq!(
            (message["from"].as_str(), message["text"].as_str()),
            (Some("bob"), Some("to all"))
        );
    }
    assert!(
        !clients.has_event("bob", "echo:response"),
        "echo goes to the sender only: {alice}"
    );
}

#[tokio::test]
async fn node_backend_reacts_to_watched_events() {
    let pki = Pki::new("examples");
    let builder = Gateway::builder()
        .control_auth()
        .control_tls(&pki.server("control"), Some(&pki.ca_file));
    let (gateway, mut clients, _) = Scene::of(builder).await.into_parts();
    let control = ControlPlane {
        address: gateway.control.to_string(),
        token: callers::mint(&["--scope", "events,send", "--subject", "node-backend"]),
        args: tls_args(&pki, &pki.client("node-backend")),
    };
    let _backend = backends::node(&control).await;
    clients
        .logins([polling("alice"), ws("bob"), ws("carol")])
        .await;
    for id in ["alice", "bob"] {
        clients
            .emit_with_ack(id, "join", json!([{"rooms": ["chat:lobby"]}]))
            .await;
    }

    clients
        .emit("alice", "echo", json!([{"msg": "ping"}]))
        .await;
    let echo = clients.next_event("alice", "echo:response").await;
    assert_eq!(echo["original"], json!({"msg": "ping"}));

    clients
        .emit(
            "bob",
            "chat:message",
            json!([{"room": "chat:lobby", "text": "in the lobby"}]),
        )
        .await;
    for id in ["alice", "bob"] {
        let message = clients.next_event(id, "chat:message").await;
        assert_eq!(
            (message["from"].as_str(), message["text"].as_str()),
            (Some("bob"), Some("in the lobby"))
        );
    }
    clients
        .emit("carol", "chat:message", json!([{"text": "hi all"}]))
        .await;
    for id in ["alice", "bob", "carol"] {
        let message = clients.next_event(id, "chat:broadcast").await;
        assert_eq!(message["from"], "carol");
    }
    assert!(
        !clients.has_event("carol", "chat:message"),
        "carol is not in the lobby"
    );
}
