//! What a client's session and handshake may cost the gateway or reveal. The requests of
//! an Engine.IO session carry its id and are served without a new handshake; the socket id
//! a client is given is not that id: an attacker here connects from another loopback
//! address (127.0.0.2) than its victim (127.0.0.1). A session's handshake is kept while it
//! lives, and its packets may be logged.

mod fixture;

use std::net::SocketAddr;

use fixture::{
    Gateway, PATIENCE,
    eventually::eventually,
    rooms_of,
    scene::{Control, Scene},
    sio::{Transport, polling},
    to_users, tokens,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use sockgate_client::proto::SendRequest;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};
use tokio_tungstenite::tungstenite::Message;

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{from}:0").parse().unwrap())
        .expect("bind a loopback address");
    socket.connect(to).await.expect("connect to the edge")
}

/// One HTTP/1.1 request from `from`: (status, body).
async fn http(
    from: &str,
    gateway: &Gateway,
    method: &str,
    target: &str,
    body: &str,
) -> (u16, String) {
    let mut stream = connect_from(from, gateway.edge).await;
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain;charset=UTF-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        gateway.edge,
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut response))
        .await
        .expect("response in time")
        .unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    (status, body.unwrap_or_default())
}

async fn send_alice_a_secret(control: &mut Control) {
    control
        .send(SendRequest {
            event: "secret".into(),
            data_json: r#""for alice""#.into(),
            target: to_users(&["alice"]),
            ..SendRequest::default()
        })
        .await
        .expect("Send");
}

#[tokio::test]
async fn another_address_cannot_use_a_session_id_to_act_or_listen_as_its_socket() {
    let (gateway, mut clients, mut control) = Scene::start().await.into_parts();
    let alice = clients.login(polling("alice")).await;
    let session = clients.engine_id("alice").await;
    assert_ne!(session, alice, "the socket id is not the session id");

    // The socket id, which backends see, opens nothing, even from alice's own address.
    let (status, body) = http(
        "127.0.0.1",
        &gateway,
        "POST",
        &format!("/io/?EIO=4&transport=polling&sid={alice}"),
        r#"42["join",{"rooms":["chat:attacker"]}]"#,
    )
    .await;
    assert_eq!(status, 400, "a POST naming alice's socket id: {body}");

    // Acting as alice: a polling POST carrying her session id, from another address.
    let (status, body) = http(
        "127.0.0.2",
        &gateway,
        "POST",
        &format!("/io/?EIO=4&transport=polling&sid={session}"),
        r#"42["join",{"rooms":["chat:attacker"]}]"#,
    )
    .await;
    assert_eq!(
        status, 403,
        "a POST into alice's session from elsewhere: {body}"
    );
    assert!(body.contains("another address"), "{body}");

    // Listening as alice: upgrading her session to a WebSocket of the attacker's.
    let url = format!(
        "ws://{}/io/?EIO=4&transport=websocket&sid={session}",
        gateway.edge
    );
    let stream = connect_from("127.0.0.2", gateway.edge).await;
    match tokio_tungstenite::client_async(url.as_str(), stream).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        Err(other) => panic!("upgrade refused in an unexpected way: {other}"),
        Ok((mut ws, _)) => {
            // The attack as a client would run it: probe, upgrade, then read alice's events.
            ws.send(Message::text("2probe")).await.unwrap();
            ws.send(Message::text("5")).await.unwrap();
            send_alice_a_secret(&mut control).await;
            let stolen = tokio::time::timeout(PATIENCE, async {
                while let Some(Ok(frame)) = ws.next().await {
                    if frame.to_text().unwrap_or_default().contains("secret") {
                        return frame.to_string();
                    }
                }
                String::new()
            })
            .await
            .unwrap_or_default();
            panic!("another address took over alice's session; it read: {stolen:?}");
        }
    }

    // Alice's session is untouched: still hers, still in only her own rooms.
    send_alice_a_secret(&mut control).await;
    assert_eq!(clients.next_event("alice", "secret").await, "for alice");
    let rooms = rooms_of(&mut control, &alice).await;
    assert!(!rooms.iter().any(|r| r == "chat:attacker"), "{rooms:?}");
    // Her own client, from her own address, goes on as before.
    let ack = clients
        .emit_with_ack("alice", "join", json!([{"rooms": ["chat:mine"]}]))
        .await;
    assert_eq!(ack[0]["joined"], json!(["chat:mine"]));
    let (_, metrics) = gateway.admin_get("/metrics").await;
    assert!(
        metrics.contains("sockgate_refused_total{reason=\"session_address\"} 2"),
        "both refusals counted"
    );
}

/// Reads WebSocket frames until a Socket.IO packet (type `4`) arrives; returns it.
async fn next_socketio_packet<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::time::timeout(PATIENCE, async {
        while let Some(frame) = ws.next().await {
            let text = frame.expect("read a frame").to_string();
            if text.starts_with('4') {
                return text;
            }
        }
        panic!("connection closed");
    })
    .await
    .expect("a Socket.IO packet in time")
}

/// Sends a Socket.IO connect until it is answered (one sent while the previous socket's
/// disconnect is still being handled is ignored); returns the answer.
async fn connect_again<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    eventually("an answer to connect", async || {
        ws.send(Message::text("40")).await.unwrap();
        let wait = std::time::Duration::from_millis(200);
        tokio::time::timeout(wait, next_socketio_packet(ws))
            .await
            .ok()
    })
    .await
}

#[tokio::test]
async fn one_session_connects_one_socket() {
    // socketioxide gives a socket its Engine.IO session's id. Leaving the namespace and
    // connecting again on the same session made a new socket with the same id every time,
    // past the rate of new sessions (the gate admits sessions, not connects), and next to
    // the previous socket's tasks still acting on that id's rooms. socket.io-client opens
    // a new session for every connect.
    let gateway = Gateway::start().await;
    let (mut ws, reply) = raw_connect(&gateway, json!({"token": tokens::for_user("u")})).await;
    assert!(reply.starts_with("40{"), "{reply}");
    ws.send(Message::text("41")).await.unwrap();
    for _ in 0..3 {
        let reply = connect_again(&mut ws).await;
        assert!(
            reply.starts_with("44") && reply.contains("already had a socket"),
            "a second socket on one session: {reply}"
        );
    }
    let (_, metrics) = gateway.admin_get("/metrics").await;
    assert!(
        metrics.contains("sockgate_refused_total{reason=\"session_reused\"} 3"),
        "counted"
    );
    // A new session, as socket.io-client opens, connects.
    raw_login(&gateway, "u").await;
}

/// A new polling session from 127.0.0.1: its open packet.
async fn polling_open(gateway: &Gateway) -> String {
    let (status, open) = http(
        "127.0.0.1",
        gateway,
        "GET",
        "/io/?EIO=4&transport=polling",
        "",
    )
    .await;
    assert_eq!(status, 200, "{open}");
    open
}

#[tokio::test]
async fn a_session_that_never_connects_a_socket_is_closed_at_the_auth_timeout() {
    // Engine.IO sessions that never connect to the namespace count against no connection
    // limit (those count sockets): they must not outlive the time a socket has to connect
    // and authenticate.
    let gateway = Gateway::builder()
        .env("EDGE__AUTH_TIMEOUT", "1s")
        .start()
        .await;
    let open = polling_open(&gateway).await;
    let sid = open
        .split("\"sid\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("sid in the open packet")
        .to_owned();
    let poll = format!("/io/?EIO=4&transport=polling&sid={sid}");
    // Answer Engine.IO pings (the first comes at once, the next after 25 s, past this
    // test's patience) until the long poll ends with the session.
    loop {
        let (status, body) = http("127.0.0.1", &gateway, "GET", &poll, "").await;
        if status != 200 || body != "2" {
            break;
        }
        http("127.0.0.1", &gateway, "POST", &poll, "3").await;
    }
    let (status, body) = http("127.0.0.1", &gateway, "GET", &poll, "").await;
    assert_eq!(status, 400, "the session is gone: {body}");
}

type RawSocket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A raw WebSocket client that connects to the namespace with `auth`: it and the answer.
async fn raw_connect(gateway: &Gateway, auth: serde_json::Value) -> (RawSocket, String) {
    let url = format!("ws://{}/io/?EIO=4&transport=websocket", gateway.edge);
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("WebSocket handshake");
    ws.send(Message::text(format!("40{auth}"))).await.unwrap();
    let reply = next_socketio_packet(&mut ws).await;
    (ws, reply)
}

/// A raw WebSocket client, connected with `auth` (a token in it) and authenticated.
async fn raw_login_with(gateway: &Gateway, auth: serde_json::Value) -> RawSocket {
    let (mut ws, reply) = raw_connect(gateway, auth).await;
    assert!(reply.starts_with("40{"), "{reply}");
    ws.send(Message::text(r#"42["authenticate"]"#))
        .await
        .unwrap();
    assert!(
        next_socketio_packet(&mut ws)
            .await
            .contains("authenticated")
    );
    ws
}

/// A raw WebSocket client, connected and authenticated as `user`.
async fn raw_login(gateway: &Gateway, user: &str) -> RawSocket {
    raw_login_with(gateway, json!({"token": tokens::for_user(user)})).await
}

#[tokio::test]
async fn a_handshake_past_its_byte_limit_is_refused() {
    // What a socket connects with (its opening request, its `auth` object) is kept for
    // its whole life: unbounded, 40 sockets with 320 KB of headers and an 800 KB `auth`
    // object held 80 MB of the gateway's memory.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let gateway = Gateway::builder()
        .env("EDGE__LIMITS__MAX_HANDSHAKE_BYTES", "8192")
        .start()
        .await;
    let url = format!("ws://{}/io/?EIO=4&transport=websocket", gateway.edge);

    let mut request = url.as_str().into_client_request().unwrap();
    for i in 0..4 {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(format!("x-pad-{i}").as_bytes()).unwrap(),
            http::HeaderValue::from_str(&"a".repeat(4000)).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 431);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            assert!(body.contains("too large"), "{body}");
        }
        other => panic!("16 KB of headers were accepted: {:?}", other.map(|_| ())),
    }

    let token = tokens::for_user("big");
    let (_, reply) =
        raw_connect(&gateway, json!({"token": token, "pad": "x".repeat(10_000)})).await;
    assert!(
        reply.starts_with("44"),
        "a 10 KB auth object was accepted: {reply}"
    );
    assert!(reply.contains("too large"), "{reply}");
    // Within the limit, the same works.
    raw_login_with(&gateway, json!({"token": token, "pad": "x".repeat(1000)})).await;
    let (_, metrics) = gateway.admin_get("/metrics").await;
    assert!(
        metrics.contains("sockgate_refused_total{reason=\"handshake_bytes\"} 2"),
        "both refusals counted"
    );
}

#[tokio::test]
async fn an_event_with_its_attachments_is_bounded_by_the_payload_limit() {
    // Each attachment is a message of its own: without a bound on their sum, one event
    // could carry (and one half-sent event park) ten times edge.max_payload_bytes.
    let gateway = Gateway::builder()
        .env("EDGE__MAX_PAYLOAD_BYTES", "100000")
        .start()
        .await;
    let mut control = gateway.control().await;
    let mut watch = control
        .watch_events(sockgate_client::proto::WatchEventsRequest {
            kinds: vec![sockgate_client::proto::EventKind::ClientEvent as i32],
            ..Default::default()
        })
        .await
        .expect("WatchEvents")
        .into_inner();
    let mut ws = raw_login(&gateway, "uploader").await;
    let placeholders: Vec<_> = (0..5)
        .map(|num| json!({"_placeholder": true, "num": num}))
        .collect();
    let mut header = json!(["upload"]);
    header.as_array_mut().unwrap().extend(placeholders);
    ws.send(Message::text(format!("455-{header}")))
        .await
        .unwrap();
    for _ in 0..5 {
        // The gateway may close the connection before the last ones are written.
        let _ = ws.send(Message::binary(vec![7u8; 60_000])).await;
    }
    // The sender is cut off, and watchers never see the event.
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the sender of a 300 KB event through a 100 KB limit is still connected"
    );
    let mut other = raw_login(&gateway, "other").await;
    other.send(Message::text(r#"42["after"]"#)).await.unwrap();
    let seen = tokio::time::timeout(PATIENCE, watch.next())
        .await
        .expect("an event in time")
        .expect("stream open")
        .expect("event");
    assert_eq!(
        seen.event,
        "after",
        "{} attachments",
        seen.attachments.len()
    );
}

#[tokio::test]
async fn tokens_stay_out_of_a_debug_log() {
    let (gateway, mut clients, _) = Scene::of(Gateway::builder().log_filter("debug"))
        .await
        .into_parts();
    let in_auth = tokens::for_user("logged-auth");
    clients
        .connect_with(
            "a",
            Transport::Websocket,
            json!({"path": "/io", "auth": {"token": in_auth}}),
        )
        .await;
    clients
        .emit("a", "authenticate", json!([{"token": in_auth}]))
        .await;
    clients.next_event("a", "authenticated").await;
    let in_event = tokens::for_user("logged-event");
    clients.login(polling("b").token(&in_event)).await;
    // A line the gateway writes at debug: the log has reached the events above.
    clients
        .emit("b", "authenticate", json!([{"token": in_event}]))
        .await;
    gateway.await_log("second authenticate ignored", 1).await;
    let log = gateway.log_text();
    for token in [&in_auth, &in_event] {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "a token is in the log");
    }
}

/// A WebSocket handshake sending `origin` (if any): the HTTP status (101 when upgraded).
async fn ws_status_with_origin(gateway: &Gateway, origin: Option<&str>) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("ws://{}/io/?EIO=4&transport=websocket", gateway.edge);
    let mut request = url.as_str().into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert(http::header::ORIGIN, origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("handshake failed: {other}"),
    }
}

#[tokio::test]
async fn a_page_from_another_origin_cannot_open_a_websocket() {
    // Browsers apply CORS to polling requests, never to WebSocket handshakes: the edge
    // checks their Origin itself, or a page of any site could connect with its visitor's
    // cookies (which an Authenticate hook may trust).
    let gateway = Gateway::builder()
        .env("EDGE__CORS_ORIGINS", r#"["https://app.example.com"]"#)
        .start()
        .await;
    assert_eq!(
        ws_status_with_origin(&gateway, Some("https://evil.example")).await,
        403
    );
    assert_eq!(
        ws_status_with_origin(&gateway, Some("https://app.example.com")).await,
        101
    );
    assert_eq!(
        ws_status_with_origin(&gateway, None).await,
        101,
        "not a browser"
    );
    let open = Gateway::start().await;
    assert_eq!(
        ws_status_with_origin(&open, Some("https://evil.example")).await,
        101,
        "cors_origins = [\"*\"]"
    );
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_request_head_is_closed() {
    // Such connections have no session and no socket: no other limit counts them. Without
    // a deadline, 3000 of them held 46 MB of the gateway for as long as they stayed open.
    let gateway = Gateway::builder()
        .env("EDGE__HEADER_TIMEOUT", "1s")
        .start()
        .await;
    let mut stream = connect_from("127.0.0.1", gateway.edge).await;
    stream
        .write_all(b"GET /io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection is still open");
    // A complete request on a fresh connection is served as before.
    polling_open(&gateway).await;
}
