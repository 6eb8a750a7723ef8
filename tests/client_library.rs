//! `sockgate_client::Client` against the real gateway: every method, the paginating
//! streams, the event stream and the typed errors.

mod fixture;

use std::time::Duration;

use fixture::{
    Gateway, PATIENCE,
    eventually::eventually,
    scene::Scene,
    sio::{polling, ws},
};
use futures_util::{StreamExt, TryStreamExt};
use serde_json::json;
use sockgate_client::{
    Client, Error, ErrorKind, RetryPolicy, SendOptions, SocketFilter, Target, TokenSource,
    WatchFilter,
    proto::{EventKind, SocketState},
};
use tonic::Code;

async fn client(gateway: &Gateway) -> Client {
    Client::builder(gateway.control.to_string())
        .token(TokenSource::fixed(
            "ignored-until-control-auth-is-configured",
        ))
        .connect()
        .await
        .expect("connect the library client")
}

#[tokio::test]
async fn sends_reach_their_targets() {
    let (gateway, mut clients, _) = Scene::start().await.into_parts();
    let control = client(&gateway).await;
    let [alice, bob] = clients.logins([ws("alice"), polling("bob")]).await;
    control
        .join(Target::sockets([&alice]), ["team"])
        .await
        .unwrap();

    control
        .send_to_socket(&alice, "direct", &json!({"n": 1}))
        .await
        .unwrap();
    assert_eq!(clients.next_event("alice", "direct").await, json!({"n": 1}));
    control.send_to_room("team", "room", &[1, 2]).await.unwrap();
    assert_eq!(clients.next_event("alice", "room").await, json!([1, 2]));
    control.send_to_user("bob", "user", "hi").await.unwrap();
    assert_eq!(clients.next_event("bob", "user").await, json!("hi"));
    let report = control.broadcast("everyone", &json!(null)).await.unwrap();
    assert_eq!(report.recipients, None, "not counted unless asked");
    clients.next_event("alice", "everyone").await;
    clients.next_event("bob", "everyone").await;

    let counted = control
        .send(
            Target::all().except(["team"]),
            "most",
            &json!({}),
            SendOptions {
                count_recipients: true,
                ..SendOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(counted.recipients, Some(1));
    clients.next_event("bob", "most").await;

    clients
        .reply_to("alice", "poll", json!({"vote": "yes"}))
        .await;
    let report = control
        .send_with_ack(
            Target::sockets([&alice, &bob]),
            "poll",
            &json!({"q": "?"}),
            Duration::from_millis(1500),
        )
        .await
        .unwrap();
    assert_eq!(report.acks, vec![(alice.clone(), json!({"vote": "yes"}))]);
    assert_eq!(report.timed_out, vec![bob.clone()]);
    assert_eq!(report.recipients, Some(2));

    control
        .leave(Target::sockets([&alice]), ["team"])
        .await
        .unwrap();
    let rooms = control.get_socket(&alice).await.unwrap().rooms;
    assert!(!rooms.contains(&"team".to_owned()), "{rooms:?}");

    control
        .disconnect(Target::users(["bob"]), "bye")
        .await
        .unwrap();
    assert_eq!(
        clients.next_event("bob", "force_disconnect").await["reason"],
        "bye"
    );
    assert_eq!(clients.disconnected("bob").await, "io server disconnect");
}

#[tokio::test]
async fn reads_paginate_and_errors_keep_their_status() {
    let (gateway, mut clients, _) = Scene::start().await.into_parts();
    let control = client(&gateway).await;
    let mut sids = clients.logins(["u0", "u1", "u2", "u3", "u4"].map(ws)).await;
    sids.sort();

    let info = control.info().await.unwrap();
    assert_eq!(info.sockets.unwrap().authenticated, 5);

    // Two per page: the stream fetches three pages.
    let listed: Vec<_> = control
        .list_sockets(SocketFilter {
            page_size: 2,
            ..SocketFilter::default()
        })
        .try_collect()
        .await
        .unwrap();
    let ids: Vec<_> = listed.iter().map(|s| s.id.clone()).collect();
    assert_eq!(ids, sids);
    let of_u3: Vec<_> = control
        .list_sockets(SocketFilter {
            user_id: Some("u3".into()),
            state: Some(SocketState::Authenticated),
            ..SocketFilter::default()
        })
        .try_collect()
        .await
        .unwrap();
    assert_eq!(of_u3.len(), 1);
    assert_eq!(of_u3[0].user_id, "u3");

    let rooms: Vec<_> = control.list_rooms("user:").try_collect().await.unwrap();
    let names: Vec<_> = rooms.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["user:u0", "user:u1", "user:u2", "user:u3", "user:u4"]
    );
    assert!(rooms.iter().all(|r| r.members == 1));

    let socket = control.get_socket(&sids[0]).await.unwrap();
    assert_eq!(socket.id, sids[0]);

    let missing = control.get_socket("AAAAAAAAAAAAAAAA").await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    assert_eq!(missing.code(), Some(Code::NotFound));
    assert!(missing.to_string().starts_with("not found: "), "{missing}");

    let reserved = control
        .send_to_socket(&sids[0], "ping", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(reserved.kind(), ErrorKind::InvalidArgument);
    assert!(
        reserved.status().unwrap().message().contains("reserved"),
        "{reserved}"
    );

    let empty = control
        .send(Target::default(), "e", &json!({}), SendOptions::default())
        .await
        .unwrap_err();
    assert_eq!(empty.kind(), ErrorKind::InvalidArgument);

    let too_long = control
        .send_with_ack(Target::all(), "e", &json!({}), Duration::from_secs(61))
        .await
        .unwrap_err();
    assert_eq!(too_long.kind(), ErrorKind::InvalidArgument, "{too_long}");
}

#[tokio::test]
async fn watch_events_is_a_stream() {
    let (gateway, mut clients, _) = Scene::start().await.into_parts();
    let control = client(&gateway).await;
    let events = control
        .watch_events(WatchFilter {
            kinds: vec![EventKind::ClientEvent, EventKind::Joined],
            event_names: vec!["chat:*".into()],
            room: None,
        })
        .await
        .unwrap();
    let mut events = std::pin::pin!(events);
    let sid = clients.login(ws("alice")).await;
    control
        .join(Target::sockets([&sid]), ["chat:x"])
        .await
        .unwrap();
    clients.emit("alice", "other", json!([1])).await;
    clients
        .emit("alice", "chat:msg", json!([{"text": "hi"}]))
        .await;
    let mut next = async || {
        tokio::time::timeout(PATIENCE, events.next())
            .await
            .expect("an event in time")
            .expect("stream open")
            .expect("no error")
    };
    let joined = next().await;
    assert_eq!(joined.kind(), EventKind::Joined);
    assert_eq!(joined.socket_id, sid);
    assert_eq!(joined.rooms, ["chat:x"]);
    let message = next().await;
    assert_eq!(message.kind(), EventKind::ClientEvent);
    assert_eq!(message.event, "chat:msg");
    assert_eq!(message.data_json, r#"{"text":"hi"}"#);
}

#[tokio::test]
async fn unreachable_gateways_fail_as_unavailable() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let error = Client::builder(&endpoint).connect().await.unwrap_err();
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    assert!(error.to_string().contains("Connection refused"), "{error}");

    // Lazy: the calls fail, the read-only ones after their retries.
    let lazy = Client::builder(&endpoint)
        .retry(RetryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(20),
        })
        .connect_lazy()
        .unwrap();
    let error = lazy.info().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.to_string().starts_with("unavailable: "), "{error}");
    let error = lazy.broadcast("e", &json!({})).await.unwrap_err();
    assert_eq!(error.code(), Some(Code::Unavailable));
}

#[tokio::test]
async fn the_control_example_runs() {
    let example = fixture::sockctl::example("control");
    let (gateway, mut clients, _) = Scene::start().await.into_parts();
    let sid = clients.login(ws("alice")).await;
    let control = client(&gateway).await;
    control
        .join(Target::sockets([&sid]), ["chat:lobby"])
        .await
        .unwrap();
    let mut child = tokio::process::Command::new(example)
        .arg("chat:lobby")
        .env("SOCKGATE_ADDR", format!("http://{}", gateway.control))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    assert_eq!(
        clients.next_event("alice", "chat:message").await,
        json!({"text": "hello from Rust"})
    );
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let first = lines.next_line().await.unwrap().unwrap();
    assert!(first.starts_with("sockgate "), "{first}");
    let second = lines.next_line().await.unwrap().unwrap();
    assert!(
        second.starts_with(&format!("socket {sid} user \"alice\"")),
        "{second}"
    );
    // Then it watches (from some moment on): emit until an event shows up.
    let watched = eventually("the example to print the event", async || {
        clients
            .emit("alice", "chat:typing", json!([{"on": true}]))
            .await;
        while let Ok(line) =
            tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await
        {
            let line = line.unwrap().expect("the example is still running");
            if line.starts_with("ClientEvent") {
                return Some(line);
            }
        }
        None
    })
    .await;
    assert_eq!(watched, format!(r#"ClientEvent {sid} {{"on":true}}"#));
}
