//! The managed Socket.IO client's Engine.IO / Socket.IO handling, against a scripted
//! WebSocket server in the test: handshake and auth, heartbeat (pong, then `ping timeout`
//! when the server falls silent), acks, skipped binary packets, a refused connection, a
//! malformed packet, and the client's part of connection state recovery. (Against the
//! real gateway: `tests/managed_client.rs`.)

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sockgate_client::sio::{
    ClientOptions, DisconnectReason, Event, Handler, ManagedClient, Reconnect,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    sync::mpsc,
};
use tokio_tungstenite::{WebSocketStream, tungstenite::Message};

const PATIENCE: Duration = Duration::from_secs(10);

type Server = WebSocketStream<tokio::net::TcpStream>;

/// Listens on a free port; the client options point at it (no reconnection).
async fn listen() -> (TcpListener, ClientOptions) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let options = ClientOptions::new(url)
        .token("t0k3n")
        .reconnect(Reconnect::never());
    (listener, options)
}

async fn accept(listener: &TcpListener) -> Server {
    let (stream, _) = tokio::time::timeout(PATIENCE, listener.accept())
        .await
        .expect("the client connects")
        .unwrap();
    tokio_tungstenite::accept_async(stream).await.unwrap()
}

async fn recv<S: AsyncRead + AsyncWrite + Unpin>(server: &mut WebSocketStream<S>) -> String {
    loop {
        let message = tokio::time::timeout(PATIENCE, server.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .unwrap();
        if let Message::Text(text) = message {
            return text.to_string();
        }
    }
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(server: &mut WebSocketStream<S>, text: &str) {
    server.send(Message::text(text.to_owned())).await.unwrap();
}

/// Engine.IO open with short heartbeats, then the Socket.IO connect; returns the auth the
/// client sent.
async fn handshake(server: &mut Server, ping_ms: u64) -> Value {
    handshake_replying(server, ping_ms, r#"{"sid":"socket-1"}"#).await
}

/// [`handshake`], the namespace answering the connect with `reply`.
async fn handshake_replying(server: &mut Server, ping_ms: u64, reply: &str) -> Value {
    send(
        server,
        &format!(
            r#"0{{"sid":"e1","upgrades":[],"pingInterval":{ping_ms},"pingTimeout":{ping_ms},"maxPayload":100000}}"#
        ),
    )
    .await;
    let connect = recv(server).await;
    let auth = connect.strip_prefix("40").expect("a connect packet");
    send(server, &format!("40{reply}")).await;
    serde_json::from_str(auth).unwrap()
}

fn recording(
    options: ClientOptions,
) -> (
    ManagedClient,
    mpsc::UnboundedReceiver<DisconnectReason>,
    mpsc::UnboundedReceiver<String>,
) {
    let (disconnects, disconnected) = mpsc::unbounded_channel();
    let (errors, errored) = mpsc::unbounded_channel();
    let client = ManagedClient::builder(options)
        .on_disconnected(move |reason| {
            let _ = disconnects.send(reason);
        })
        .on_error(move |error| {
            let _ = errors.send(error.to_string());
        })
        .build();
    (client, disconnected, errored)
}

async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("in time")
        .unwrap()
}

#[tokio::test]
async fn handshake_acks_and_binary_packets() {
    let (listener, options) = listen().await;
    let (client, mut disconnected, _) = recording(options);
    let (tx, mut handled) = mpsc::unbounded_channel();
    client.subscribe(
        "after",
        Handler::new(move |event: Event| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(event.data().clone());
                Ok::<_, String>(())
            }
        }),
    );
    client.connect().await;
    let mut server = accept(&listener).await;
    let request_auth = handshake(&mut server, 10_000).await;
    assert_eq!(request_auth, json!({"token": "t0k3n"}));
    assert!(client.wait_until(|s| s.connected, PATIENCE).await);
    assert_eq!(client.socket_id().as_deref(), Some("socket-1"));

    // An emit with an ack: the id is on the wire, the reply resolves it.
    let asking = client.clone();
    let ack = tokio::spawn(async move {
        asking
            .emit_with_ack("question", &json!({"q": 1}), PATIENCE)
            .await
    });
    let packet = recv(&mut server).await;
    let id = packet
        .strip_prefix("42")
        .and_then(|rest| rest.split_once('['))
        .map(|(id, _)| id.to_owned())
        .expect("an event packet with an ack id");
    assert!(
        !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
        "{packet}"
    );
    assert!(packet.ends_with(r#"["question",{"q":1}]"#), "{packet}");
    send(&mut server, &format!(r#"43{id}["answer",2]"#)).await;
    assert_eq!(ack.await.unwrap().unwrap(), [json!("answer"), json!(2)]);

    // A binary event is skipped; the next text event still arrives.
    send(&mut server, r#"451-["bin",{"_placeholder":true,"num":0}]"#).await;
    server.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    send(&mut server, r#"42["after",{"ok":true}]"#).await;
    assert_eq!(next(&mut handled).await, json!({"ok": true}));

    // A server emit that asks for an ack and has no handler gets none; with a handler
    // that acks, the reply carries the id.
    client.subscribe(
        "asked",
        Handler::new(|event: Event| async move {
            event.ack(vec![json!("yes")]);
            assert!(!event.ack(vec![json!("twice")]), "only one ack per event");
            Ok::<_, String>(())
        }),
    );
    send(&mut server, r#"427["asked",{}]"#).await;
    assert_eq!(recv(&mut server).await, r#"437["yes"]"#);

    // A handler may end the client itself (and its shutdown returns).
    let own = client.clone();
    let (done_tx, mut done) = mpsc::unbounded_channel();
    client.subscribe(
        "quit",
        Handler::new(move |_event: Event| {
            let own = own.clone();
            let done_tx = done_tx.clone();
            async move {
                own.shutdown().await;
                let _ = done_tx.send(());
                Ok::<_, String>(())
            }
        }),
    );
    send(&mut server, r#"42["quit"]"#).await;
    assert_eq!(recv(&mut server).await, "41");
    assert_eq!(
        next(&mut disconnected).await,
        DisconnectReason::ClientDisconnect
    );
    next(&mut done).await;
    assert!(!client.is_connected());
    assert_eq!(client.handler_count("quit"), 0);
}

#[tokio::test]
async fn pings_are_answered_and_silence_is_a_ping_timeout() {
    let (listener, options) = listen().await;
    let (client, mut disconnected, _) = recording(options);
    client.connect().await;
    let mut server = accept(&listener).await;
    handshake(&mut server, 200).await;
    send(&mut server, "2").await;
    assert_eq!(recv(&mut server).await, "3");
    // The server falls silent: after ping interval + ping timeout, `ping timeout`.
    assert_eq!(next(&mut disconnected).await, DisconnectReason::PingTimeout);
    assert!(!client.is_connected());
}

#[tokio::test]
async fn a_refused_connection_is_an_error_and_not_retried() {
    let (listener, options) = listen().await;
    let options = options.reconnect(Reconnect {
        initial_delay: Duration::from_millis(10),
        ..Reconnect::default()
    });
    let (client, _, mut errors) = recording(options);
    client.connect().await;
    let mut server = accept(&listener).await;
    send(
        &mut server,
        r#"0{"sid":"e1","upgrades":[],"pingInterval":25000,"pingTimeout":20000}"#,
    )
    .await;
    recv(&mut server).await;
    send(&mut server, r#"44{"message":"origin not allowed"}"#).await;
    assert_eq!(
        next(&mut errors).await,
        "connection refused by the gateway: origin not allowed"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), listener.accept())
            .await
            .is_err(),
        "no reconnection after a refusal"
    );
}

#[tokio::test]
async fn a_malformed_packet_ends_the_connection_as_a_parse_error() {
    let (listener, options) = listen().await;
    let (client, mut disconnected, _) = recording(options);
    client.connect().await;
    let mut server = accept(&listener).await;
    handshake(&mut server, 25000).await;
    assert!(client.wait_until(|s| s.connected, PATIENCE).await);
    send(&mut server, "42not json").await;
    let reason = next(&mut disconnected).await;
    assert!(
        matches!(reason, DisconnectReason::ParseError(_)),
        "{reason:?}"
    );

    // A text packet where the announced attachment should be is a parse error too.
    client.connect().await;
    let mut server = accept(&listener).await;
    handshake(&mut server, 25000).await;
    assert!(client.wait_until(|s| s.connected, PATIENCE).await);
    send(&mut server, r#"451-["bin",{"_placeholder":true,"num":0}]"#).await;
    send(&mut server, r#"42["too soon"]"#).await;
    let reason = next(&mut disconnected).await;
    assert!(
        matches!(reason, DisconnectReason::ParseError(_)),
        "{reason:?}"
    );
    assert_eq!(reason.to_string(), "parse error");

    // The server closes the WebSocket: `transport close`.
    client.connect().await;
    let mut server = accept(&listener).await;
    handshake(&mut server, 25000).await;
    assert!(client.wait_until(|s| s.connected, PATIENCE).await);
    server.close(None).await.unwrap();
    assert_eq!(
        next(&mut disconnected).await,
        DisconnectReason::TransportClose
    );
}

#[tokio::test]
async fn recovery_presents_the_pid_and_last_offset_and_reports_a_recovered_session() {
    let (listener, options) = listen().await;
    let (client, mut disconnected, _) = recording(options);
    let (tx, mut received) = mpsc::unbounded_channel();
    for name in ["news", "asked"] {
        let tx = tx.clone();
        client.subscribe(
            name,
            Handler::new(move |event: Event| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(event.args);
                    Ok::<_, String>(())
                }
            }),
        );
    }
    const WITH_PID: &str = r#"{"sid":"socket-1","pid":"p1"}"#;

    client.connect().await;
    let mut server = accept(&listener).await;
    let auth = handshake_replying(&mut server, 25000, WITH_PID).await;
    assert_eq!(auth, json!({"token": "t0k3n"}), "nothing to recover yet");
    assert!(client.wait_until(|s| s.connected, PATIENCE).await);
    assert!(!client.recovered(), "a first connection");

    // The offset is the last string argument of an event that asks for no ack; it stays
    // in the arguments, as with socket.io-client.
    send(&mut server, r#"42["news",{"n":1},"7-0"]"#).await;
    send(&mut server, r#"429["asked",{"n":2},"7-1"]"#).await;
    send(&mut server, r#"42["news",{"n":3}]"#).await;
    assert_eq!(next(&mut received).await, [json!({"n": 1}), json!("7-0")]);
    assert_eq!(next(&mut received).await, [json!({"n": 2}), json!("7-1")]);
    assert_eq!(next(&mut received).await, [json!({"n": 3})]);

    // The transport drops: the next connection presents the session, and the gateway
    // answering with the same pid is a recovered session.
    server.close(None).await.unwrap();
    assert_eq!(
        next(&mut disconnected).await,
        DisconnectReason::TransportClose
    );
    assert!(!client.recovered(), "kept until the next connection");
    client.connect().await;
    let mut server = accept(&listener).await;
    let auth = handshake_replying(&mut server, 25000, WITH_PID).await;
    assert_eq!(
        auth,
        json!({"pid": "p1", "offset": "7-0", "token": "t0k3n"})
    );
    assert!(
        client
            .wait_until(|s| s.connected && s.recovered, PATIENCE)
            .await
    );
    assert_eq!(client.socket_id().as_deref(), Some("socket-1"));

    // A new pid is a new session: not recovered, and that pid is presented next time.
    server.close(None).await.unwrap();
    next(&mut disconnected).await;
    client.connect().await;
    let mut server = accept(&listener).await;
    let auth = handshake_replying(&mut server, 25000, r#"{"sid":"socket-2","pid":"p2"}"#).await;
    assert_eq!(auth["pid"], "p1");
    assert!(client.wait_until(|s| s.connected, PATIENCE).await);
    assert!(!client.recovered());
    server.close(None).await.unwrap();
    next(&mut disconnected).await;

    // `shutdown` forgets the session.
    client.shutdown().await;
    client.connect().await;
    let mut server = accept(&listener).await;
    assert_eq!(
        handshake(&mut server, 25000).await,
        json!({"token": "t0k3n"})
    );
}

/// A certificate for `localhost` signed by a fresh CA: (CA PEM, server TLS acceptor).
fn tls_server() -> (String, tokio_rustls::TlsAcceptor) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    (
        ca.pem(),
        tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)),
    )
}

#[tokio::test]
async fn wss_with_a_ca() {
    let (ca, acceptor) = tls_server();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let options = ClientOptions::new(format!("https://localhost:{port}"))
        .tls(sockgate_client::TlsOptions::new().ca_pem(ca))
        .reconnect(Reconnect::never());
    let (client, mut disconnected, mut errors) = recording(options);
    client.connect().await;
    let (tcp, _) = tokio::time::timeout(PATIENCE, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let tls = acceptor.accept(tcp).await.expect("TLS handshake");
    let mut server = tokio_tungstenite::accept_async(tls).await.unwrap();
    send(
        &mut server,
        r#"0{"sid":"e1","upgrades":[],"pingInterval":25000,"pingTimeout":20000}"#,
    )
    .await;
    assert!(recv(&mut server).await.starts_with("40"));
    send(&mut server, r#"40{"sid":"tls-socket"}"#).await;
    assert!(client.wait_until(|s| s.connected, PATIENCE).await);
    client.emit("over-tls", &json!(1)).unwrap();
    assert_eq!(recv(&mut server).await, r#"42["over-tls",1]"#);
    client.disconnect().await;
    assert_eq!(
        next(&mut disconnected).await,
        DisconnectReason::ClientDisconnect
    );

    // Without the CA (system roots only) the certificate is refused: an error callback.
    let options =
        ClientOptions::new(format!("wss://localhost:{port}")).reconnect(Reconnect::never());
    let (untrusting, _, mut refused) = recording(options);
    untrusting.connect().await;
    let (tcp, _) = listener.accept().await.unwrap();
    let _ = acceptor.accept(tcp).await;
    let error = next(&mut refused).await;
    assert!(error.starts_with("cannot connect"), "{error}");
    assert!(errors.try_recv().is_err(), "the first client had no error");
}
