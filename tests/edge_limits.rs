//! The edge's limits, each refusal seen by a real client and counted: event rate per
//! socket, join/leave requests in flight with a hook budget of their own, rooms per
//! socket, connections per node, per address and per user, new sessions per second per
//! address, no new connections while draining, the bytes of ack replies, and a hook
//! endpoint the gateway cannot call. With the default limits, a reconnect storm of
//! thousands of sockets from one address (clients behind a NAT) is admitted.

mod fixture;

use fixture::{
    Gateway,
    eventually::eventually,
    hooks::HookBackend,
    raw::{self, Ws},
    scene::Scene,
    sio::{Clients, Transport, polling, ws},
    sockets_of, to_rooms, to_sockets, to_users, tokens,
};
use futures_util::SinkExt;
use serde_json::{Value, json};
use sockgate_client::proto::{AckOptions, SendRequest};
use tokio_tungstenite::tungstenite::Message;

fn refused(reason: &str) -> String {
    format!("sockgate_refused_total{{reason=\"{reason}\"}} ")
}

/// A raw Engine.IO polling handshake: (status, body).
async fn polling_handshake(gateway: &Gateway) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(gateway.edge)
        .await
        .expect("connect to the edge");
    let request = format!(
        "GET /io/?EIO=4&transport=polling HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        gateway.edge
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or_default();
    (status, head.to_owned(), body.to_owned())
}

#[tokio::test]
async fn a_flooding_client_is_throttled_then_disconnected_while_another_gets_everything() {
    let builder = Gateway::builder()
        .env("EDGE__LIMITS__EVENTS_PER_SECOND", "20")
        .env("EDGE__LIMITS__EVENT_BURST", "20")
        .env("EDGE__LIMITS__MAX_DROPPED_EVENTS", "100");
    let (gateway, mut clients, mut control) = Scene::of(builder).await.into_parts();
    let [_, calm] = clients
        .logins([ws("flood").user("f"), ws("calm").user("c")])
        .await;

    for i in 0..3000 {
        clients.emit("flood", "spam", json!([i])).await;
    }
    for n in 0..300 {
        control
            .send(SendRequest {
                event: "news".into(),
                data_json: n.to_string(),
                target: to_sockets(&[&calm]),
                ..SendRequest::default()
            })
            .await
            .expect("Send to the calm socket");
    }
    let notice = clients.next_event("flood", "force_disconnect").await;
    assert_eq!(
        notice["reason"],
        "too many events: the connection kept sending faster than allowed"
    );
    // Then the connection closes (after a pass of the sweeper: the client reads why first).
    clients.disconnected("flood").await;
    for n in 0..300 {
        assert_eq!(clients.next_event("calm", "news").await, json!(n));
    }
    // Throttled first (events dropped), then disconnected once.
    assert!(gateway.metric(&refused("event_rate")).await >= 100);
    assert_eq!(gateway.metric(&refused("event_rate_disconnect")).await, 1);
    let log = gateway.log_text();
    assert_eq!(
        log.matches("dropping events over the socket's rate")
            .count(),
        1,
        "one line per episode, not per event"
    );
    assert!(!log.contains("Error while extracting data"));
}

#[tokio::test]
async fn a_join_flood_against_a_slow_authorize_join_does_not_fail_a_fresh_authenticate() {
    let mut backend = HookBackend::start().await;
    let builder = Gateway::builder()
        .env("AUTH__AUTHENTICATORS", r#"["hook"]"#)
        .env("HOOKS__ENDPOINT", &backend.url())
        .env("HOOKS__AUTHORIZE_JOIN", "true")
        .env("HOOKS__TIMEOUT", "20s")
        .env("HOOKS__MAX_CONCURRENCY", "2")
        .env("EDGE__LIMITS__MAX_ROOM_REQUESTS_IN_FLIGHT", "4");
    let (gateway, mut clients, _control) = Scene::of(builder).await.into_parts();
    clients.login(ws("flood").token("allow:flood")).await;
    for i in 0..40 {
        clients
            .emit_acked_later(
                "flood",
                "join",
                json!([{"rooms": [format!("hang:{i}")]}]),
                30_000,
            )
            .await;
    }
    // Every AuthorizeJoin slot is taken by a call that hangs, and more wait for one.
    for _ in 0..2 {
        backend
            .received_where(|name| name.starts_with("AuthorizeJoin:hang:"))
            .await;
    }

    clients.connect("fresh", Transport::Polling).await;
    clients
        .emit("fresh", "authenticate", json!([{"token": "allow:fresh"}]))
        .await;
    let authenticated = clients.next_event("fresh", "authenticated").await;
    assert!(authenticated["id"].is_string());
    assert!(!clients.has_event("fresh", "unauthenticated"));

    // The flood itself is capped: past 4 in flight, joins are refused at once (the 4 in
    // flight answer only when their calls time out).
    for _ in 0..36 {
        clients
            .take(
                |e| {
                    e["type"] == "ack"
                        && e["args"][0]["error"]
                            .as_str()
                            .is_some_and(|m| m.contains("too many join/leave requests in flight"))
                },
                "a join refused for too many in flight",
            )
            .await;
    }
    assert_eq!(
        gateway.metric(&refused("room_requests_in_flight")).await,
        36
    );
}

#[tokio::test]
async fn a_socket_joins_at_most_its_limit_of_rooms() {
    let builder = Gateway::builder().env("EDGE__LIMITS__MAX_ROOMS_PER_SOCKET", "3");
    let (gateway, mut clients, _control) = Scene::of(builder).await.into_parts();
    clients.login(ws("c").user("u")).await;
    let ack = clients
        .emit_with_ack(
            "c",
            "join",
            json!([{"rooms": ["chat:1", "chat:2", "chat:3", "chat:4", "chat:5"]}]),
        )
        .await;
    assert_eq!(
        ack[0],
        json!({"joined": ["chat:1", "chat:2", "chat:3"], "rejected": ["chat:4", "chat:5"]})
    );
    // Server rooms do not count; a room left makes room for another.
    clients
        .emit_with_ack("c", "leave", json!([{"rooms": ["chat:1"]}]))
        .await;
    let ack = clients
        .emit_with_ack("c", "join", json!([{"rooms": ["chat:4", "chat:5"]}]))
        .await;
    assert_eq!(
        ack[0],
        json!({"joined": ["chat:4"], "rejected": ["chat:5"]})
    );
    assert_eq!(gateway.metric(&refused("rooms_per_socket")).await, 2);
}

/// Connects `id` and returns the `connect` or `connect_error` event.
async fn try_connect(clients: &mut Clients, id: &str) -> Value {
    clients
        .open(id, Transport::Websocket, json!({"path": "/io"}))
        .await;
    clients
        .take(
            |e| e["id"] == id && (e["type"] == "connect" || e["type"] == "connect_error"),
            &format!("{id} connects or is refused"),
        )
        .await
}

#[tokio::test]
async fn connections_past_the_node_and_address_limits_are_refused_with_a_reason() {
    let builder = Gateway::builder().env("EDGE__LIMITS__MAX_CONNECTIONS_PER_IP", "2");
    let (gateway, mut clients, _control) = Scene::of(builder).await.into_parts();
    clients.connect("a", Transport::Websocket).await;
    clients.connect("b", Transport::Polling).await;
    let third = try_connect(&mut clients, "c").await;
    assert_eq!(third["type"], "connect_error", "{third}");
    assert_eq!(
        third["message"],
        "Too many connections from your address. Please close some and retry."
    );
    // A closed connection gives its place back.
    clients.close("a").await;
    clients.disconnected("a").await;
    let mut attempt = 0;
    eventually("the place to come back", async || {
        attempt += 1;
        let id = format!("retry{attempt}");
        try_connect(&mut clients, &id).await["type"] == "connect"
    })
    .await;
    assert!(gateway.metric(&refused("connections_per_ip")).await >= 1);

    let builder = Gateway::builder().env("EDGE__LIMITS__MAX_CONNECTIONS", "1");
    let (full, mut clients, _control) = Scene::of(builder).await.into_parts();
    clients.connect("a", Transport::Websocket).await;
    let second = try_connect(&mut clients, "b").await;
    assert_eq!(
        second["message"], "The server is at capacity. Please retry later.",
        "{second}"
    );
    assert_eq!(full.metric(&refused("connections_per_node")).await, 1);
}

#[tokio::test]
async fn a_user_past_its_connection_limit_is_refused_and_keeps_its_oldest_sockets() {
    let builder = Gateway::builder().env("EDGE__LIMITS__MAX_CONNECTIONS_PER_USER", "2");
    let (gateway, mut clients, mut control) = Scene::of(builder).await.into_parts();
    clients
        .logins([ws("old1").user("u"), polling("old2").user("u")])
        .await;
    clients.connect("new", Transport::Websocket).await;
    clients
        .emit(
            "new",
            "authenticate",
            json!([{"token": tokens::for_user("u")}]),
        )
        .await;
    let refusal = clients.next_event("new", "unauthenticated").await;
    assert_eq!(
        refusal["message"],
        "Too many connections for this user. Please close some and retry."
    );
    clients.disconnected("new").await;
    assert_eq!(gateway.metric(&refused("connections_per_user")).await, 1);
    // The oldest sockets are kept, and other users are not limited by this one.
    control
        .send(SendRequest {
            event: "still-here".into(),
            data_json: "1".into(),
            target: to_users(&["u"]),
            ..SendRequest::default()
        })
        .await
        .expect("Send to the user");
    clients.next_event("old1", "still-here").await;
    clients.next_event("old2", "still-here").await;
    clients.login(ws("other").user("v")).await;
    // A socket that leaves gives its place back.
    clients.close("old1").await;
    eventually("the gateway to see old1 gone", async || {
        sockets_of(&mut control, "u").await == 1
    })
    .await;
    clients.login(ws("again").user("u")).await;
    assert_eq!(gateway.metric(&refused("connections_per_user")).await, 1);
}

#[tokio::test]
async fn new_sessions_past_an_address_rate_get_429() {
    let gateway = Gateway::builder()
        .env("EDGE__LIMITS__HANDSHAKES_PER_IP_PER_SECOND", "1")
        .env("EDGE__LIMITS__HANDSHAKE_BURST_PER_IP", "3")
        .start()
        .await;
    for _ in 0..3 {
        let (status, _, body) = polling_handshake(&gateway).await;
        assert_eq!(status, 200, "{body}");
    }
    // The burst is spent: at 1/s, twenty more handshakes cannot all be admitted unless
    // they take many seconds.
    let mut refusal = None;
    for _ in 0..20 {
        let response = polling_handshake(&gateway).await;
        if response.0 != 200 {
            refusal = Some(response);
            break;
        }
    }
    let (status, head, body) = refusal.expect("a handshake over the rate is refused");
    assert_eq!(status, 429, "{body}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    assert_eq!(
        body.trim(),
        "Too many new connections from your address. Please retry later."
    );
    assert!(gateway.metric(&refused("handshake_rate")).await >= 1);
}

#[tokio::test]
async fn a_draining_node_refuses_new_connections_and_keeps_its_sockets() {
    let builder = Gateway::builder().env("SHUTDOWN_DELAY", "60s");
    let (gateway, mut clients, mut control) = Scene::of(builder).await.into_parts();
    let kept = clients.login(ws("kept").user("k")).await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &gateway.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    eventually("/readyz to answer 503 (draining)", async || {
        gateway.admin_get("/readyz").await.0 == 503
    })
    .await;
    let (status, _, body) = polling_handshake(&gateway).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body.trim(),
        "The server is shutting down. Please reconnect."
    );
    let refused_client = try_connect(&mut clients, "late").await;
    assert_eq!(refused_client["type"], "connect_error", "{refused_client}");
    assert!(gateway.metric(&refused("draining")).await >= 2);
    // The sockets it has are still served until they are told to go.
    control
        .send(SendRequest {
            event: "still-here".into(),
            data_json: "1".into(),
            target: to_sockets(&[&kept]),
            ..SendRequest::default()
        })
        .await
        .expect("Send while draining");
    clients.next_event("kept", "still-here").await;
}

#[tokio::test]
async fn ack_replies_past_their_byte_limit_are_refused() {
    let builder = Gateway::builder().env("CONTROL__MAX_ACK_REPLY_BYTES", "1000");
    let (gateway, mut clients, mut control) = Scene::of(builder).await.into_parts();
    for id in ["a", "b"] {
        let sid = clients.login(ws(id)).await;
        clients
            .reply_to(id, "question", json!({"blob": "x".repeat(600)}))
            .await;
        fixture::join(&mut control, &[&sid], &["chat:q"]).await;
    }
    let ask = |rooms: &[&str]| SendRequest {
        event: "question".into(),
        data_json: "{}".into(),
        target: to_rooms(rooms),
        ack: Some(AckOptions { timeout_ms: 10_000 }),
        ..SendRequest::default()
    };
    let status = control
        .send(ask(&["chat:q"]))
        .await
        .expect_err("1200 bytes of replies");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("control.max_ack_reply_bytes"),
        "{status:?}"
    );
    assert_eq!(gateway.metric(&refused("ack_reply_bytes")).await, 1);
    // One reply fits.
    let one = control
        .send(ask(&["user:a"]))
        .await
        .expect("600 bytes of replies")
        .into_inner();
    assert_eq!(one.acks.len(), 1);
}

#[tokio::test]
async fn a_hook_endpoint_the_gateway_cannot_call_is_refused_at_start() {
    let stderr = Gateway::builder()
        .env("HOOKS__ENDPOINT", "grpc://127.0.0.1:1")
        .env("HOOKS__ON_EVENT", "true")
        .start_expecting_failure()
        .await;
    assert!(
        stderr.contains("must be an http:// or https:// URL"),
        "{stderr}"
    );
}

/// Sockets in a reconnect storm: thousands of clients behind one address (a carrier-grade
/// NAT) coming back at once.
const STORM: usize = 3000;

/// A raw WebSocket socket that connects and authenticates as `user`; the open socket, or
/// what it got instead.
async fn raw_login(edge: std::net::SocketAddr, user: String) -> Result<Ws, String> {
    let mut ws = raw::ws_open(edge).await?;
    raw::ws_connect_ns(&mut ws)
        .await
        .ok_or("the namespace connect was refused")?;
    let token = tokens::for_user(&user);
    let authenticate = format!(r#"42["authenticate",{{"token":"{token}"}}]"#);
    ws.send(Message::text(authenticate))
        .await
        .map_err(|e| e.to_string())?;
    match raw::ws_until(&mut ws, "42").await {
        Some(reply) if reply.starts_with(r#"42["authenticated""#) => Ok(ws),
        other => Err(format!("{user}: {other:?}")),
    }
}

/// `STORM` sockets of as many users connect and authenticate at once from one address.
async fn storm(gateway: &Gateway) -> Vec<Ws> {
    let logins: Vec<_> = (0..STORM)
        .map(|n| tokio::spawn(raw_login(gateway.edge, format!("nat-{n}"))))
        .collect();
    let mut sockets = Vec::with_capacity(STORM);
    let mut refused = Vec::new();
    for login in logins {
        match login.await.expect("login task") {
            Ok(ws) => sockets.push(ws),
            Err(e) => refused.push(e),
        }
    }
    assert!(
        refused.is_empty(),
        "{} of {STORM} refused, first: {:?}",
        refused.len(),
        &refused[..refused.len().min(3)]
    );
    sockets
}

/// After a restart, the clients of a carrier-grade NAT all come back at once: thousands of
/// new sessions and sockets from one address, each of another user. With the default
/// limits every one is admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_from_one_address_is_admitted_with_the_default_limits() {
    let gateway = Gateway::builder()
        .default_address_limits()
        // A debug build on a loaded machine may take longer than the default 10 s to
        // authenticate thousands of sockets at once; the auth timeout is not under test.
        .env("EDGE__AUTH_TIMEOUT", "60s")
        .log_filter("info")
        .start()
        .await;
    let sockets = storm(&gateway).await;
    assert_eq!(sockets.len(), STORM);
    for reason in ["connections_per_ip", "handshake_rate"] {
        assert_eq!(gateway.metric(&refused(reason)).await, 0, "{reason}");
    }
}
