//! The edge's trust rules, each a regression test of a finding reproduced against the
//! release binary: who receives a message follows the authenticated identity, a socket
//! that has not authenticated receives nothing but the auth protocol, a client leaves only
//! the rooms it joined itself, user ids are literal and checked, and no membership
//! outlives its socket.

mod fixture;

use fixture::{
    Gateway,
    eventually::eventually,
    hooks::HookBackend,
    join, rooms_of,
    scene::{Control, Scene},
    sio::{Transport, polling, ws},
    to_all, to_rooms, to_sockets, to_users, tokens,
};
use serde_json::json;
use sockgate_client::proto::{
    DisconnectRequest, GetInfoRequest, GetSocketRequest, ListRoomsRequest, SendRequest,
};

fn event(name: &str, target: Option<sockgate_client::proto::Target>) -> SendRequest {
    SendRequest {
        event: name.into(),
        data_json: "1".into(),
        target,
        ..SendRequest::default()
    }
}

/// Finding 1: with `rooms.allow = ["*"]`, bob joined `user:alice` and then received a
/// `Send` to `user_ids: ["alice"]`.
#[tokio::test]
async fn a_client_can_never_receive_another_users_messages() {
    let builder = Gateway::builder().env("ROOMS__ALLOW", r#"["*"]"#);
    let (_gateway, mut clients, mut control) = Scene::of(builder).await.into_parts();
    let [_, bob] = clients.logins([ws("alice"), polling("bob")]).await;

    let ack = clients
        .emit_with_ack(
            "bob",
            "join",
            json!([{"rooms": ["user:alice", "user:bob", "chat:x"]}]),
        )
        .await;
    assert_eq!(
        ack[0],
        json!({"joined": ["chat:x", "user:bob"], "rejected": ["user:alice"]})
    );
    // Even a backend that puts bob in alice's public room does not make him alice.
    join(&mut control, &[&bob], &["user:alice"]).await;

    control
        .send(event("for-alice", to_users(&["alice"])))
        .await
        .expect("Send to alice");
    clients.next_event("alice", "for-alice").await;
    control
        .send(event("marker", to_sockets(&[&bob])))
        .await
        .expect("Send to bob");
    clients.next_event("bob", "marker").await;
    assert!(
        !clients.has_event("bob", "for-alice"),
        "bob received alice's message"
    );
}

/// Finding 2: a socket that connected but never authenticated received a `Send` with
/// `target.all`.
#[tokio::test]
async fn an_unauthenticated_socket_receives_only_the_auth_protocol() {
    let builder = Gateway::builder().env("EDGE__APP_PING_INTERVAL", "100ms");
    let (_gateway, mut clients, mut control) = Scene::of(builder).await.into_parts();
    let anon = clients.connect("anon", Transport::Websocket).await;
    let ok = clients.login(polling("ok")).await;
    // Server-side joins of an unauthenticated socket are kept, but deliver nothing.
    join(&mut control, &[&anon, &ok], &["chat:x", "io-default"]).await;
    assert!(
        rooms_of(&mut control, &anon)
            .await
            .contains(&"chat:x".to_owned())
    );

    let everyone = control
        .send(SendRequest {
            count_recipients: true,
            ..event("broadcast", to_all())
        })
        .await
        .expect("Send to all")
        .into_inner();
    assert_eq!(
        everyone.recipients,
        Some(1),
        "only the authenticated socket"
    );
    control
        .send(event("room", to_rooms(&["chat:x", "io-default"])))
        .await
        .expect("Send to rooms");
    let refused = control
        .send(event("direct", to_sockets(&[&anon])))
        .await
        .expect_err("Send to an unauthenticated socket");
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert!(
        refused.message().contains(&anon) && refused.message().contains("not authenticated"),
        "{refused:?}"
    );
    let acked = control
        .send(SendRequest {
            ack: Some(sockgate_client::proto::AckOptions { timeout_ms: 500 }),
            ..event("asked", to_rooms(&["chat:x"]))
        })
        .await
        .expect("Send with acks")
        .into_inner();
    assert!(
        !acked.timed_out_socket_ids.contains(&anon),
        "an ack-mode Send waited on the unauthenticated socket"
    );
    clients.next_event("ok", "broadcast").await;
    clients.next_event("ok", "room").await;
    for _ in 0..3 {
        clients.next_event("ok", "ping").await;
    }

    // Everything above was queued before this on anon's ordered channel.
    control
        .disconnect(DisconnectRequest {
            target: to_sockets(&[&anon]),
            reason: "bye".into(),
        })
        .await
        .expect("Disconnect");
    assert_eq!(
        clients.next_event("anon", "force_disconnect").await["reason"],
        "bye"
    );
    clients.disconnected("anon").await;
    for leaked in ["broadcast", "room", "direct", "asked", "ping"] {
        assert!(
            !clients.has_event("anon", leaked),
            "the unauthenticated socket received {leaked}"
        );
    }
}

/// Finding 3: a client could leave rooms the server put it in.
#[tokio::test]
async fn a_client_leaves_only_the_rooms_it_joined_itself() {
    let backend = HookBackend::start().await;
    let builder = Gateway::builder()
        .env("AUTH__AUTHENTICATORS", r#"["hook"]"#)
        .env("HOOKS__ENDPOINT", &backend.url());
    let (_gateway, mut clients, mut control) = Scene::of(builder).await.into_parts();
    let sid = clients.login(ws("c").token("allow:alice")).await;
    // Server rooms: defaults, the user room, the Authenticate hook's `via:websocket`, and
    // two through the Join RPC, one of which the client then asks to join as well.
    join(&mut control, &[&sid], &["muted", "chat:both"]).await;
    let joined = clients
        .emit_with_ack("c", "join", json!([{"rooms": ["chat:own", "chat:both"]}]))
        .await;
    assert_eq!(joined[0]["joined"], json!(["chat:both", "chat:own"]));

    let server_rooms = [
        "chat:both",
        "io-default",
        "io-notification",
        "muted",
        "user:alice",
        "via:websocket",
    ];
    let mut asked: Vec<&str> = server_rooms.to_vec();
    asked.extend(["chat:own", "never-joined"]);
    let left = clients
        .emit_with_ack("c", "leave", json!([{"rooms": asked}]))
        .await;
    let mut rejected: Vec<&str> = server_rooms.to_vec();
    rejected.push("never-joined");
    rejected.sort_unstable();
    assert_eq!(left[0], json!({"left": ["chat:own"], "rejected": rejected}));
    let rooms = rooms_of(&mut control, &sid).await;
    for room in server_rooms {
        assert!(
            rooms.contains(&room.to_owned()),
            "{room} was left: {rooms:?}"
        );
    }
    assert!(!rooms.contains(&"chat:own".to_owned()));

    // `except_rooms: ["muted"]` keeps working on a client that tried to leave `muted`.
    control
        .send(SendRequest {
            target: Some(sockgate_client::proto::Target {
                rooms: vec!["io-default".into()],
                except_rooms: vec!["muted".into()],
                ..Default::default()
            }),
            ..event("announce", None)
        })
        .await
        .expect("Send");
    control
        .send(event("marker", to_sockets(&[&sid])))
        .await
        .expect("Send");
    clients.next_event("c", "marker").await;
    assert!(!clients.has_event("c", "announce"));
}

/// Finding 4: `{user_id}` was substituted as pattern text, so a user id `*` widened
/// `private:{user_id}`; user ids are now literal and checked when an authenticator
/// returns them.
#[tokio::test]
async fn user_ids_are_literal_in_patterns_and_checked_at_authentication() {
    let backend = HookBackend::start().await;
    let builder = Gateway::builder()
        .env("AUTH__AUTHENTICATORS", r#"["jwt", "hook"]"#)
        .env("HOOKS__ENDPOINT", &backend.url());
    let (gateway, mut clients, _control) = Scene::of(builder).await.into_parts();

    // A signed token whose subject is `*`: an invalid token.
    clients.connect("star", Transport::Websocket).await;
    clients
        .emit(
            "star",
            "authenticate",
            json!([{"token": tokens::for_user("*")}]),
        )
        .await;
    let refused = clients.next_event("star", "unauthenticated").await;
    assert_eq!(
        refused["message"],
        "Invalid token to authenticate! Please login again!"
    );
    clients.disconnected("star").await;
    // A backend that answers with an id full of spaces has failed.
    clients.connect("spaces", Transport::Polling).await;
    clients
        .emit("spaces", "authenticate", json!([{"token": "allow:a b"}]))
        .await;
    let refused = clients.next_event("spaces", "unauthenticated").await;
    assert_eq!(
        refused["message"],
        "Failed to authenticate connection! Please login again!"
    );
    clients.disconnected("spaces").await;
    assert!(
        gateway
            .metric(r#"sockgate_refused_total{reason="invalid_user_id"} "#)
            .await
            >= 2
    );
    let log = gateway.log_text();
    assert!(
        log.contains("authenticator returned an invalid user id"),
        "refusals are logged"
    );

    // A user id with characters that mean something in other pattern languages matches
    // only itself.
    clients.login(ws("dot").user("a.b")).await;
    let ack = clients
        .emit_with_ack(
            "dot",
            "join",
            json!([{"rooms": ["private:a.b", "private:axb", "private:a.b.c"]}]),
        )
        .await;
    assert_eq!(
        ack[0],
        json!({"joined": ["private:a.b"], "rejected": ["private:a.b.c", "private:axb"]})
    );
}

/// JWT-only: an invalid subject is an invalid token.
#[tokio::test]
async fn a_token_with_an_invalid_subject_is_an_invalid_token() {
    let (_gateway, mut clients, _control) = Scene::start().await.into_parts();
    for (id, sub) in [("star", "*".to_owned()), ("long", "u".repeat(129))] {
        clients.connect(id, Transport::Websocket).await;
        clients
            .emit(
                id,
                "authenticate",
                json!([{"token": tokens::for_user(&sub)}]),
            )
            .await;
        let refused = clients.next_event(id, "unauthenticated").await;
        assert_eq!(
            refused["message"],
            "Invalid token to authenticate! Please login again!"
        );
        clients.disconnected(id).await;
    }
}

async fn public_room_count(control: &mut Control) -> u32 {
    control
        .get_info(GetInfoRequest {})
        .await
        .expect("GetInfo")
        .into_inner()
        .rooms
}

async fn wait_until_gone(control: &mut Control, sid: &str) {
    eventually(&format!("{sid} to leave"), async || {
        control
            .get_socket(GetSocketRequest {
                socket_id: sid.to_owned(),
            })
            .await
            .is_err()
    })
    .await;
}

/// Finding 5: a `join` that raced the socket's disconnect left memberships behind.
#[tokio::test]
async fn a_join_decided_after_the_disconnect_leaves_nothing_behind() {
    let mut backend = HookBackend::start().await;
    let builder = Gateway::builder()
        .env("HOOKS__ENDPOINT", &backend.url())
        .env("HOOKS__AUTHORIZE_JOIN", "true")
        .env("HOOKS__TIMEOUT", "30s");
    let (gateway, mut clients, mut control) = Scene::of(builder).await.into_parts();
    let baseline = public_room_count(&mut control).await;

    // The backend holds the join's AuthorizeJoin until the socket is gone, then allows it.
    let sid = clients.login(ws("c")).await;
    clients
        .emit("c", "join", json!([{"rooms": ["held:x", "chat:y"]}]))
        .await;
    backend.received("AuthorizeJoin:held:x").await;
    clients.close("c").await;
    clients.disconnected("c").await;
    wait_until_gone(&mut control, &sid).await;
    backend.release_held();
    let prefix = r#"sockgate_client_rooms_total{request="join",result="abandoned"} "#;
    eventually("the held join to finish", async || {
        gateway.metric(prefix).await > 0
    })
    .await;
    let rooms = control
        .list_rooms(ListRoomsRequest::default())
        .await
        .expect("ListRooms")
        .into_inner()
        .rooms;
    assert!(
        rooms
            .iter()
            .all(|r| r.name != "held:x" && r.name != "chat:y"),
        "{rooms:?}"
    );

    // Client joins and Join RPCs racing disconnects, many times over: rooms come back to
    // the baseline.
    for round in 0..40 {
        let id = format!("r{round}");
        let sid = clients.login(ws(&id)).await;
        clients
            .emit(
                &id,
                "join",
                json!([{"rooms": [format!("chat:{round}"), "chat:all"]}]),
            )
            .await;
        clients.close(&id).await;
        // A trusted Join racing the same disconnect (NOT_FOUND once the socket is gone).
        let _ = control
            .join(sockgate_client::proto::JoinRequest {
                target: to_sockets(&[&sid]),
                rooms: vec![format!("rpc:{round}")],
            })
            .await;
        clients.disconnected(&id).await;
        wait_until_gone(&mut control, &sid).await;
    }
    eventually("rooms to come back to the baseline", async || {
        if public_room_count(&mut control).await == baseline {
            return Ok(());
        }
        let rooms = control
            .list_rooms(ListRoomsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .rooms;
        Err(format!("{rooms:?}"))
    })
    .await;
}
