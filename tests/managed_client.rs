//! The managed Socket.IO client (`sockgate_client::sio`) against the real gateway: the
//! authentication state machine, subscriptions with duplicate detection, handler failures,
//! emits, rooms, server disconnects, reconnection, and connection state recovery (through
//! the test proxy, whose connections the test cuts as a network loss).

mod fixture;

use std::time::Duration;

use fixture::{Gateway, PATIENCE, proxy::Proxy, tokens};
use futures_util::StreamExt;
use serde_json::{Value, json};
use sockgate_client::{
    Client, SendOptions, Target, WatchFilter,
    proto::EventKind,
    sio::{
        ClientOptions, ClientState, DisconnectReason, EmitError, Event, Handler, ManagedClient,
        Reconnect,
    },
};
use tokio::{net::TcpListener, sync::mpsc};

/// What the lifecycle callbacks reported.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Connected,
    Disconnected(DisconnectReason),
    Error(String),
    Authenticated(Value),
    Unauthenticated(String),
}

struct Recorded {
    client: ManagedClient,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl Recorded {
    async fn next(&mut self) -> Seen {
        tokio::time::timeout(PATIENCE, self.seen.recv())
            .await
            .expect("a callback in time")
            .expect("client alive")
    }
}

fn managed(options: ClientOptions) -> Recorded {
    let (tx, seen) = mpsc::unbounded_channel();
    let (a, b, c, d, e) = (tx.clone(), tx.clone(), tx.clone(), tx.clone(), tx);
    let client = ManagedClient::builder(options)
        .on_connected(move || {
            let _ = a.send(Seen::Connected);
        })
        .on_disconnected(move |reason| {
            let _ = b.send(Seen::Disconnected(reason));
        })
        .on_error(move |error| {
            let _ = c.send(Seen::Error(error.to_string()));
        })
        .on_authenticated(move |payload| {
            let _ = d.send(Seen::Authenticated(payload));
        })
        .on_unauthenticated(move |message| {
            let _ = e.send(Seen::Unauthenticated(message));
        })
        .build();
    Recorded { client, seen }
}

fn options(gateway: &Gateway, token: &str) -> ClientOptions {
    ClientOptions::new(gateway.url()).token(token)
}

async fn control(gateway: &Gateway) -> Client {
    Client::builder(gateway.control.to_string())
        .connect()
        .await
        .unwrap()
}

/// Records the events a handler receives.
fn recording_handler(tx: mpsc::UnboundedSender<(String, Value)>, tag: &str) -> Handler {
    let tag = tag.to_owned();
    Handler::new(move |event: Event| {
        let tx = tx.clone();
        let tag = tag.clone();
        async move {
            let _ = tx.send((tag, event.data().clone()));
            Ok::<_, String>(())
        }
    })
}

async fn next_call(rx: &mut mpsc::UnboundedReceiver<(String, Value)>) -> (String, Value) {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("a handler call in time")
        .unwrap()
}

#[tokio::test]
async fn authenticates_through_the_state_machine() {
    let gateway = Gateway::start().await;
    let control = control(&gateway).await;
    let mut alice = managed(options(&gateway, &tokens::for_user("alice")));
    let client = alice.client.clone();

    assert_eq!(client.state(), ClientState::Unauthorized);
    assert!(!client.authenticate(), "no-op while disconnected");
    assert!(!client.join_rooms(["chat:a"]), "no-op while disconnected");
    assert_eq!(client.emit("x", &json!({})), Err(EmitError::NotConnected));

    client.connect().await;
    client.connect().await; // already connecting: nothing more
    assert_eq!(alice.next().await, Seen::Connected);
    assert!(client.is_connected());
    assert_eq!(client.state(), ClientState::Unauthorized);
    let sid = client.socket_id().expect("a socket id");

    assert!(client.authenticate());
    assert_ne!(client.state(), ClientState::Unauthorized);
    assert!(!client.authenticate(), "a second authenticate is a no-op");
    let Seen::Authenticated(payload) = alice.next().await else {
        panic!("expected authenticated")
    };
    assert_eq!(payload["id"], sid.as_str());
    assert_eq!(client.state(), ClientState::Authenticated);
    assert!(!client.authenticate(), "no-op once authenticated");
    let socket = control.get_socket(&sid).await.unwrap();
    assert_eq!(socket.user_id, "alice");

    client.disconnect().await;
    assert_eq!(
        alice.next().await,
        Seen::Disconnected(DisconnectReason::ClientDisconnect)
    );
    assert_eq!(client.state(), ClientState::Unauthorized);
    assert!(!client.is_connected());
    assert_eq!(client.emit("x", &json!({})), Err(EmitError::NotConnected));
}

#[tokio::test]
async fn a_wrong_token_reports_unauthenticated_with_the_message() {
    let gateway = Gateway::start().await;
    let mut forged = managed(options(&gateway, &tokens::forged("mallory")));
    let client = forged.client.clone();
    client.connect().await;
    assert_eq!(forged.next().await, Seen::Connected);
    assert!(client.authenticate());
    assert_eq!(
        forged.next().await,
        Seen::Unauthenticated("Invalid token to authenticate! Please login again!".into())
    );
    let Seen::Disconnected(reason) = forged.next().await else {
        panic!("expected the gateway to disconnect")
    };
    assert_eq!(reason.to_string(), "io server disconnect");
    assert_eq!(client.state(), ClientState::Unauthorized);
    // No reconnection after the gateway disconnected the client.
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), forged.seen.recv())
            .await
            .is_err(),
        "no further callbacks"
    );
    assert!(!client.is_connected());
}

#[tokio::test]
async fn a_server_disconnect_reports_the_reason() {
    let gateway = Gateway::start().await;
    let control = control(&gateway).await;
    let mut bob = managed(options(&gateway, &tokens::for_user("bob")));
    bob.client.connect().await;
    assert_eq!(bob.next().await, Seen::Connected);
    bob.client.authenticate();
    assert!(matches!(bob.next().await, Seen::Authenticated(_)));

    control
        .disconnect(Target::users(["bob"]), "account suspended")
        .await
        .unwrap();
    let Seen::Disconnected(reason) = bob.next().await else {
        panic!("expected disconnected")
    };
    assert_eq!(
        reason,
        DisconnectReason::ServerDisconnect {
            message: Some("account suspended".into())
        }
    );
    assert_eq!(reason.to_string(), "io server disconnect");
    assert_eq!(bob.client.state(), ClientState::Unauthorized);
}

#[tokio::test]
async fn subscriptions_detect_duplicates_and_survive_failing_handlers() {
    let gateway = Gateway::start().await;
    let control = control(&gateway).await;
    let mut carol = managed(options(&gateway, &tokens::for_user("carol")));
    let client = carol.client.clone();
    let (tx, mut calls) = mpsc::unbounded_channel();

    let first = client.subscribe("news", recording_handler(tx.clone(), "first"));
    assert!(first.is_some());
    assert_eq!(
        client.subscribe("news", recording_handler(tx.clone(), "duplicate")),
        None,
        "a second handler is ignored by default"
    );
    let second = client.subscribe_with("news", recording_handler(tx.clone(), "second"), false);
    assert!(second.is_some());
    assert_eq!(client.handler_count("news"), 2);
    assert_eq!(
        client.subscribe("", recording_handler(tx.clone(), "empty")),
        None
    );
    let many = client.subscribe_many(
        [
            ("a".to_owned(), recording_handler(tx.clone(), "a")),
            ("b".to_owned(), recording_handler(tx.clone(), "b")),
        ],
        true,
    );
    assert!(many.iter().all(Option::is_some));
    client.subscribe(
        "boom",
        Handler::new(|_event: Event| async { Err::<(), _>("handler refused") }),
    );
    client.subscribe_with(
        "boom",
        Handler::new(|event: Event| async move {
            if event.data()["panic"] == true {
                panic!("handler panicked on purpose");
            }
            Ok::<_, String>(())
        }),
        false,
    );

    client.connect().await;
    assert_eq!(carol.next().await, Seen::Connected);
    client.authenticate();
    assert!(matches!(carol.next().await, Seen::Authenticated(_)));
    let sid = client.socket_id().unwrap();

    control
        .send_to_socket(&sid, "news", &json!({"n": 1}))
        .await
        .unwrap();
    let mut got = vec![next_call(&mut calls).await, next_call(&mut calls).await];
    got.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        got,
        [
            ("first".into(), json!({"n": 1})),
            ("second".into(), json!({"n": 1}))
        ]
    );

    // Failing and panicking handlers are logged; the client goes on.
    control
        .send_to_socket(&sid, "boom", &json!({"panic": true}))
        .await
        .unwrap();
    control
        .send_to_socket(&sid, "a", &json!("after"))
        .await
        .unwrap();
    assert_eq!(next_call(&mut calls).await, ("a".into(), json!("after")));
    assert!(client.is_connected());

    assert_eq!(client.unsubscribe("news", first), 1);
    control
        .send_to_socket(&sid, "news", &json!({"n": 2}))
        .await
        .unwrap();
    assert_eq!(
        next_call(&mut calls).await,
        ("second".into(), json!({"n": 2}))
    );
    assert_eq!(client.unsubscribe("news", None), 1);
    assert_eq!(client.unsubscribe("news", None), 0);
    assert_eq!(client.unsubscribe_many(["a", "b", "missing"]), 2);
    control
        .send_to_socket(&sid, "a", &json!("gone"))
        .await
        .unwrap();
    control
        .send_to_socket(&sid, "news", &json!({"n": 3}))
        .await
        .unwrap();
    // A handler still subscribed proves the events above were delivered and ignored.
    client.subscribe("last", recording_handler(tx.clone(), "last"));
    control
        .send_to_socket(&sid, "last", &json!(1))
        .await
        .unwrap();
    assert_eq!(next_call(&mut calls).await, ("last".into(), json!(1)));

    client.shutdown().await;
    assert_eq!(client.handler_count("last"), 0);
    assert_eq!(client.handler_count("boom"), 0);
    assert_eq!(client.state(), ClientState::Unauthorized);
    assert!(!client.is_connected());
}

#[tokio::test]
async fn emits_and_room_requests_reach_the_gateway() {
    let gateway = Gateway::start().await;
    let control = control(&gateway).await;
    let events = control
        .watch_events(WatchFilter {
            kinds: vec![EventKind::ClientEvent, EventKind::Joined, EventKind::Left],
            ..WatchFilter::default()
        })
        .await
        .unwrap();
    let mut events = std::pin::pin!(events);
    let mut next_event = async || {
        tokio::time::timeout(PATIENCE, events.next())
            .await
            .expect("an event in time")
            .unwrap()
            .unwrap()
    };
    let mut dave = managed(options(&gateway, &tokens::for_user("dave")));
    let client = dave.client.clone();
    client.connect().await;
    assert_eq!(dave.next().await, Seen::Connected);
    client.authenticate();
    assert!(matches!(dave.next().await, Seen::Authenticated(_)));
    let sid = client.socket_id().unwrap();

    assert_eq!(client.emit("", &json!({})), Err(EmitError::EmptyTopic));
    client.emit("chat:msg", &json!({"text": "hi"})).unwrap();
    let event = next_event().await;
    assert_eq!(event.kind(), EventKind::ClientEvent);
    assert_eq!(
        (event.event.as_str(), event.data_json.as_str()),
        ("chat:msg", r#"{"text":"hi"}"#)
    );
    assert_eq!(event.socket_id, sid);

    assert!(client.join_rooms(["chat:general", "forbidden"]));
    let joined = next_event().await;
    assert_eq!(joined.kind(), EventKind::Joined);
    assert_eq!(joined.rooms, ["chat:general"]);
    assert!(client.leave_rooms(["chat:general"]));
    let left = next_event().await;
    assert_eq!(left.kind(), EventKind::Left);
    assert_eq!(left.rooms, ["chat:general"]);

    // An emit that asks for the gateway's ack: the join reply.
    let reply = client
        .emit_with_ack("join", &json!({"rooms": ["chat:x", "nope"]}), PATIENCE)
        .await
        .unwrap();
    assert_eq!(reply, [json!({"joined": ["chat:x"], "rejected": ["nope"]})]);

    // The gateway asks the client for an ack (Send in ack mode): the handler answers.
    client.subscribe(
        "poll",
        Handler::new(|event: Event| async move {
            assert!(event.wants_ack());
            event.ack(vec![json!({"answer": event.data()["q"]})]);
            Ok::<_, String>(())
        }),
    );
    let report = control
        .send_with_ack(Target::sockets([&sid]), "poll", &json!({"q": 42}), PATIENCE)
        .await
        .unwrap();
    assert_eq!(report.acks, [(sid.clone(), json!({"answer": 42}))]);

    // Binary attachments of a Send arrive with the event.
    let (tx, mut files) = mpsc::unbounded_channel();
    client.subscribe(
        "file",
        Handler::new(move |event: Event| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(event);
                Ok::<_, String>(())
            }
        }),
    );
    control
        .send(
            Target::sockets([&sid]),
            "file",
            &json!({"name": "a.bin"}),
            SendOptions {
                attachments: vec![bytes::Bytes::from_static(&[0, 1, 255]), bytes::Bytes::new()],
                ..SendOptions::default()
            },
        )
        .await
        .unwrap();
    let file = tokio::time::timeout(PATIENCE, files.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(file.data(), &json!({"name": "a.bin"}));
    assert_eq!(file.attachments, [vec![0u8, 1, 255], vec![]]);

    client.shutdown().await;
    assert_eq!(
        dave.next().await,
        Seen::Disconnected(DisconnectReason::ClientDisconnect)
    );
    let Err(EmitError::NotConnected) = client.emit_with_ack("x", &json!(1), PATIENCE).await else {
        panic!("emit_with_ack while disconnected must fail")
    };
}

#[tokio::test]
async fn reconnects_after_a_lost_connection_and_starts_unauthorized() {
    let gateway = Gateway::start().await;
    let proxy = Proxy::start(gateway.edge).await;
    let fast = Reconnect {
        initial_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
        ..Reconnect::default()
    };
    let mut erin = managed(
        ClientOptions::new(proxy.url())
            .token(tokens::for_user("erin"))
            .reconnect(fast),
    );
    let client = erin.client.clone();
    client.connect().await;
    assert_eq!(erin.next().await, Seen::Connected);
    client.authenticate();
    assert!(matches!(erin.next().await, Seen::Authenticated(_)));
    let first_sid = client.socket_id().unwrap();

    proxy.cut().await;
    let Seen::Disconnected(reason) = erin.next().await else {
        panic!("expected disconnected")
    };
    assert!(
        matches!(
            reason,
            DisconnectReason::TransportClose | DisconnectReason::TransportError(_)
        ),
        "{reason:?}"
    );
    assert_eq!(client.state(), ClientState::Unauthorized);
    assert_eq!(erin.next().await, Seen::Connected, "reconnected by itself");
    assert_ne!(client.socket_id().unwrap(), first_sid);
    assert_eq!(client.state(), ClientState::Unauthorized);
    assert!(client.authenticate());
    assert!(
        client
            .wait_for_state(ClientState::Authenticated, PATIENCE)
            .await
    );
    assert!(matches!(erin.next().await, Seen::Authenticated(_)));

    // With the gateway gone for good, each attempt reports an error; disconnect stops them.
    drop(proxy);
    assert!(matches!(erin.next().await, Seen::Disconnected(_)));
    let Seen::Error(error) = erin.next().await else {
        panic!("expected a connection error")
    };
    assert!(error.starts_with("cannot connect"), "{error}");
    client.disconnect().await;
    assert!(!client.is_connected());
}

/// Waits for the next callback that is not a failed reconnection attempt.
async fn next_but_errors(recorded: &mut Recorded) -> Seen {
    loop {
        match recorded.next().await {
            Seen::Error(_) => continue,
            seen => return seen,
        }
    }
}

#[tokio::test]
async fn recovers_its_session_after_a_network_loss_and_receives_what_it_missed() {
    let gateway = Gateway::builder()
        .env("RECOVERY__ENABLED", "true")
        .start()
        .await;
    let control = control(&gateway).await;
    let proxy = Proxy::start(gateway.edge).await;
    let fast = Reconnect {
        initial_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
        ..Reconnect::default()
    };
    let mut fay = managed(
        ClientOptions::new(proxy.url())
            .token(tokens::for_user("fay"))
            .reconnect(fast),
    );
    let client = fay.client.clone();
    let (tx, mut news) = mpsc::unbounded_channel();
    client.subscribe(
        "news",
        Handler::new(move |event: Event| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(event.args);
                Ok::<_, String>(())
            }
        }),
    );
    let mut next_news = async || {
        tokio::time::timeout(PATIENCE, news.recv())
            .await
            .expect("news in time")
            .unwrap()
    };
    client.connect().await;
    assert_eq!(fay.next().await, Seen::Connected);
    assert!(!client.recovered());
    client.authenticate();
    assert!(matches!(fay.next().await, Seen::Authenticated(_)));
    let sid = client.socket_id().unwrap();
    control
        .join(Target::sockets([sid.as_str()]), ["chat:fay"])
        .await
        .unwrap();
    control
        .send_to_socket(&sid, "news", &json!({"n": 0}))
        .await
        .unwrap();
    let live = next_news().await;
    assert_eq!(live[0], json!({"n": 0}));
    assert!(
        live[1].is_string(),
        "the offset stays the last argument: {live:?}"
    );

    // The network goes: no way back to the gateway until the test allows it, so that the
    // gateway has kept the session before the client comes back.
    let events = control
        .watch_events(WatchFilter {
            kinds: vec![EventKind::Disconnected],
            ..WatchFilter::default()
        })
        .await
        .unwrap();
    let mut events = std::pin::pin!(events);
    let nowhere = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    proxy.set_upstream(nowhere);
    proxy.cut().await;
    assert!(matches!(fay.next().await, Seen::Disconnected(_)));
    let gone = tokio::time::timeout(PATIENCE, events.next())
        .await
        .expect("disconnected in time")
        .unwrap()
        .unwrap();
    assert_eq!(gone.socket_id, sid);
    assert!(gone.recoverable, "{gone:?}");

    control
        .send_to_socket(&sid, "news", &json!({"n": 1}))
        .await
        .expect("accepted while away");
    control
        .send_to_user("fay", "news", &json!({"n": 2}))
        .await
        .unwrap();
    control
        .send_to_room("chat:fay", "news", &json!({"n": 3}))
        .await
        .unwrap();

    proxy.set_upstream(gateway.edge);
    assert_eq!(next_but_errors(&mut fay).await, Seen::Connected);
    assert!(client.recovered(), "socket.recovered");
    assert_eq!(client.socket_id().as_deref(), Some(sid.as_str()));
    for n in 1..=3 {
        assert_eq!(next_news().await[0], json!({"n": n}), "missed, in order");
    }
    assert_eq!(
        client.state(),
        ClientState::Unauthorized,
        "as on any connection"
    );
    client.authenticate();
    let Seen::Authenticated(payload) = fay.next().await else {
        panic!("expected authenticated")
    };
    assert_eq!(payload["id"], sid.as_str());
    let socket = control.get_socket(&sid).await.unwrap();
    assert_eq!(socket.user_id, "fay");
    assert!(socket.rooms.contains(&"chat:fay".to_owned()), "{socket:?}");
    control
        .send_to_room("chat:fay", "news", &json!({"n": 4}))
        .await
        .unwrap();
    assert_eq!(
        next_news().await[0],
        json!({"n": 4}),
        "each missed event once"
    );

    // Closed by the client itself: not recoverable, a new socket.
    client.disconnect().await;
    assert!(matches!(fay.next().await, Seen::Disconnected(_)));
    client.connect().await;
    assert_eq!(fay.next().await, Seen::Connected);
    assert!(!client.recovered());
    assert_ne!(client.socket_id().unwrap(), sid);
    client.shutdown().await;
}

#[tokio::test]
async fn the_relay_example_authenticates_joins_and_answers() {
    let relay = fixture::sockctl::example("relay");
    let gateway = Gateway::start().await;
    let control = control(&gateway).await;
    let events = control
        .watch_events(WatchFilter {
            kinds: vec![EventKind::Joined],
            ..WatchFilter::default()
        })
        .await
        .unwrap();
    let mut events = std::pin::pin!(events);
    let mut child = tokio::process::Command::new(relay)
        .args([
            gateway.url(),
            tokens::for_user("relay"),
            "chat:relay".into(),
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let joined = tokio::time::timeout(PATIENCE, events.next())
        .await
        .expect("the relay joins")
        .unwrap()
        .unwrap();
    assert_eq!(joined.user_id, "relay");
    assert_eq!(joined.rooms, ["chat:relay"]);
    let report = control
        .send_with_ack(
            Target::rooms(["chat:relay"]),
            "chat:message",
            &json!({"text": "hi"}),
            PATIENCE,
        )
        .await
        .unwrap();
    assert_eq!(
        report.acks,
        [(joined.socket_id.clone(), json!({"received": true}))]
    );
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let mut printed = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let done = line.starts_with("chat:message");
        printed.push(line);
        if done {
            break;
        }
    }
    assert_eq!(
        printed,
        [
            r#"join: {"joined":["chat:relay"],"rejected":[]}"#,
            r#"chat:message {"text":"hi"}"#
        ]
    );
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "the relay shuts down on Ctrl-C");
}
