//! The gateway calling a backend's `SocketHooks` over real gRPC: `Authenticate` chained
//! after JWT, `AuthorizeJoin`, `OnEvent` acks; deny, error and hang each fail closed with
//! the right message, and never block the other sockets.

mod fixture;

use fixture::{
    Gateway, GatewayBuilder,
    hooks::HookBackend,
    rooms_of,
    scene::Scene,
    sio::{Transport, polling, ws},
    to_sockets,
};
use serde_json::json;
use sockgate_client::proto::{GetSocketRequest, SendRequest, SocketState};

const INVALID: &str = "Invalid token to authenticate! Please login again!";
const FAILED: &str = "Failed to authenticate connection! Please login again!";

/// A gateway calling every hook of `backend`, after JWT.
fn hooked(backend: &HookBackend) -> GatewayBuilder {
    Gateway::builder()
        .env("AUTH__AUTHENTICATORS", r#"["jwt", "hook"]"#)
        .env("HOOKS__ENDPOINT", &backend.url())
        .env("HOOKS__TIMEOUT", "800ms")
        .env("HOOKS__AUTHORIZE_JOIN", "true")
        .env("HOOKS__ON_EVENT", "true")
        .env("HOOKS__EVENTS", r#"["ask*", "boom", "slow", "bad-ack"]"#)
}

#[tokio::test]
async fn authenticate_hook_admits_with_user_metadata_and_rooms() {
    let backend = HookBackend::start().await;
    let (_gateway, mut clients, mut control) = Scene::of(hooked(&backend)).await.into_parts();

    let sid = clients.login(polling("hooked").token("allow:alice")).await;
    let socket = control
        .get_socket(GetSocketRequest { socket_id: sid })
        .await
        .unwrap()
        .into_inner()
        .socket
        .unwrap();
    assert_eq!(socket.user_id, "alice");
    assert_eq!(
        socket.rooms,
        vec!["io-default", "io-notification", "user:alice", "via:polling"],
        "hook rooms joined, the reserved one ignored"
    );
    // JWT still comes first in the chain.
    clients.login(ws("jwt").user("bob")).await;
}

#[tokio::test]
async fn deny_error_and_hang_fail_closed_without_blocking_others() {
    let backend = HookBackend::start().await;
    let (gateway, mut clients, mut control) = Scene::of(hooked(&backend)).await.into_parts();

    // The hanging authentication starts first; everything below happens while it hangs.
    let hanging = clients.connect("hang", Transport::Websocket).await;
    clients
        .emit("hang", "authenticate", json!([{"token": "hang"}]))
        .await;

    let other = clients.login(ws("other").token("allow:carol")).await;
    // While its hook is awaited the socket is shown as authenticating (an authenticator
    // that decides at once never shows that state).
    let state = control
        .get_socket(GetSocketRequest { socket_id: hanging })
        .await
        .unwrap()
        .into_inner()
        .socket
        .unwrap()
        .state;
    assert_eq!(state, SocketState::Authenticating as i32);
    control
        .send(SendRequest {
            event: "during".into(),
            data_json: "1".into(),
            target: to_sockets(&[&other]),
            ..SendRequest::default()
        })
        .await
        .unwrap();
    clients.next_event("other", "during").await;

    for (id, token, message) in [("deny", "deny", INVALID), ("throw", "throw", FAILED)] {
        clients.connect(id, Transport::Polling).await;
        clients
            .emit(id, "authenticate", json!([{"token": token}]))
            .await;
        assert_eq!(
            clients.next_event(id, "unauthenticated").await["message"],
            message,
            "{id}"
        );
        clients.disconnected(id).await;
    }
    assert_eq!(
        clients.next_event("hang", "unauthenticated").await["message"],
        FAILED
    );
    clients.disconnected("hang").await;
    assert!(!clients.has_event("other", "unauthenticated"));
    let log = gateway.log_text();
    assert!(log.contains("hook timed out"), "timeouts are logged");
    assert!(
        log.contains("backend exploded"),
        "errors are logged with the backend's message"
    );
    let (_, metrics) = gateway.admin_get("/metrics").await;
    for (outcome, count) in [("success", 1), ("denied", 1), ("error", 1), ("timeout", 1)] {
        let line = format!(
            r#"sockgate_hook_calls_total{{hook="Authenticate",outcome="{outcome}"}} {count}"#
        );
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing from:\n{metrics}"
        );
    }
    assert!(metrics.contains(r#"sockgate_auth_total{outcome="failed"} 2"#));
}

#[tokio::test]
async fn unreachable_hook_endpoint_fails_closed() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let builder = Gateway::builder()
        .env("AUTH__AUTHENTICATORS", r#"["hook"]"#)
        .env("HOOKS__ENDPOINT", &url)
        .env("HOOKS__TIMEOUT", "400ms");
    let (_gateway, mut clients, _control) = Scene::of(builder).await.into_parts();
    clients.connect("c", Transport::Websocket).await;
    clients
        .emit("c", "authenticate", json!([{"token": "allow:x"}]))
        .await;
    assert_eq!(
        clients.next_event("c", "unauthenticated").await["message"],
        FAILED
    );
}

#[tokio::test]
async fn authorize_join_decides_what_the_rules_do_not_allow() {
    let backend = HookBackend::start().await;
    let (_gateway, mut clients, mut control) = Scene::of(hooked(&backend)).await.into_parts();
    let sid = clients.login(ws("c").token("allow:alice")).await;

    let ack = clients
        .emit_with_ack(
            "c",
            "join",
            json!([{"rooms": ["chat:x", "ok:a", "own:alice", "own:bob", "nope"]}]),
        )
        .await;
    assert_eq!(
        ack[0],
        json!({"joined": ["chat:x", "ok:a", "own:alice"], "rejected": ["nope", "own:bob"]})
    );
    let rooms = rooms_of(&mut control, &sid).await;
    assert!(
        !rooms.contains(&"never-asked".to_owned()),
        "rooms not asked for are ignored"
    );

    // A hook that hangs rejects the rooms it was asked about; static rules still apply.
    let ack = clients
        .emit_with_ack(
            "c",
            "join",
            json!([{"rooms": ["hang:1", "ok:b", "chat:y"]}]),
        )
        .await;
    assert_eq!(
        ack[0],
        json!({"joined": ["chat:y"], "rejected": ["hang:1", "ok:b"]})
    );
}

#[tokio::test]
async fn on_event_reply_becomes_the_ack() {
    let backend = HookBackend::start().await;
    let (_gateway, mut clients, _control) = Scene::of(hooked(&backend)).await.into_parts();
    clients.login(ws("c").token("allow:alice")).await;

    let ack = clients.emit_with_ack("c", "ask", json!([{"q": 1}])).await;
    assert_eq!(
        ack[0],
        json!({"event": "ask", "data": {"q": 1}, "user": "alice", "tier": "gold", "wantsAck": true, "attachments": []})
    );
    let ack = clients
        .emit_with_ack(
            "c",
            "ask:bin",
            json!([{"q": 2}, {"$bin": "AQID"}, {"$bin": "BAU="}]),
        )
        .await;
    assert_eq!(ack[0]["data"], json!({"q": 2}));
    assert_eq!(ack[0]["attachments"], json!([3, 2]));

    // Failing, hanging, malformed and unforwarded: no ack, and the socket keeps working.
    for event in ["boom", "slow", "bad-ack", "not-forwarded"] {
        let err = clients
            .emit_expecting_no_ack("c", event, json!([{}]), 1500)
            .await;
        assert!(err.contains("timed out"), "{event}: {err}");
    }
    let ack = clients.emit_with_ack("c", "ask", json!(["again"])).await;
    assert_eq!(ack[0]["data"], "again");
}

#[tokio::test]
async fn a_saturated_hook_endpoint_is_logged_and_recovers() {
    let mut backend = HookBackend::start().await;
    let builder = Gateway::builder()
        .env("HOOKS__ENDPOINT", &backend.url())
        .env("HOOKS__ON_EVENT", "true")
        .env("HOOKS__TIMEOUT", "600ms")
        .env("HOOKS__MAX_CONCURRENCY", "1");
    let (gateway, mut clients, _control) = Scene::of(builder).await.into_parts();
    clients.logins([ws("a"), ws("b")]).await;
    // `a` holds the only slot with a call that hangs; `b` has to wait for it (and gets it,
    // or not, depending on how much of its own deadline is left when `a` times out).
    clients.emit("a", "slow", json!([{}])).await;
    backend.received("slow").await;
    clients.emit_acked_raw("b", "ask", json!([1]), 1500).await;
    assert!(
        gateway.log_text().contains("hook endpoint saturated"),
        "saturation is logged"
    );
    // Once the slot is free again, calls go through.
    let ack = clients.emit_with_ack("b", "ask", json!([2])).await;
    assert_eq!(ack[0]["data"], 2);
}
