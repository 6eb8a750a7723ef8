//! Connection state recovery with the official socket.io-client: a socket whose transport
//! drops comes back as the same socket, in the same rooms, and receives what it missed,
//! once each and in order; what cannot be restored exactly gives a new session.

mod fixture;

use std::time::Duration;

use fixture::{
    Gateway, GatewayBuilder,
    eventually::eventually,
    join, next_watched,
    proxy::Proxy,
    redis::Redis,
    rooms_of,
    scene::{Control, Scene},
    sio::{Clients, Transport},
    to_all, to_rooms, to_sockets, to_users, tokens,
};
use serde_json::{Value, json};
use sockgate_client::proto::{
    DisconnectRequest, EventKind, GetInfoRequest, GetSocketRequest, ListSocketsRequest,
    SendRequest, SocketInfo, SocketState, Target, WatchEventsRequest, WatchEventsResponse,
};
use tonic::Streaming;

fn recovering() -> GatewayBuilder {
    Gateway::builder().env("RECOVERY__ENABLED", "true")
}

fn event(name: &str, n: u32) -> SendRequest {
    SendRequest {
        event: name.into(),
        data_json: json!({"n": n}).to_string(),
        ..SendRequest::default()
    }
}

/// Connects client `id` as `user`, authenticating from its connect callback as
/// Ignis-style clients do (so again on every reconnect); returns its socket id.
async fn login(clients: &mut Clients, id: &str, transport: Transport, user: &str) -> String {
    open(clients, id, transport, &tokens::for_user(user), json!({})).await;
    let (sid, recovered) = clients.reconnected(id).await;
    assert!(!recovered, "a first connection is no recovery");
    clients.next_event(id, "authenticated").await;
    sid
}

/// Starts connecting client `id` with `extra` options, authenticating with `token` from
/// its connect callback.
async fn open(clients: &mut Clients, id: &str, transport: Transport, token: &str, extra: Value) {
    let mut opts = json!({"path": "/io"});
    opts.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    clients
        .open_and_emit(
            id,
            transport,
            opts,
            json!(["authenticate", {"token": token}]),
        )
        .await;
}

/// `GetInfo`'s count of sockets away.
async fn away(control: &mut Control) -> u32 {
    let info = control.get_info(GetInfoRequest {}).await.expect("GetInfo");
    info.into_inner().sockets.unwrap_or_default().away
}

async fn watch(control: &mut Control) -> Streaming<WatchEventsResponse> {
    let kinds = [
        EventKind::Disconnected,
        EventKind::Recovered,
        EventKind::Connected,
    ];
    control
        .watch_events(WatchEventsRequest {
            kinds: kinds.iter().map(|k| *k as i32).collect(),
            ..WatchEventsRequest::default()
        })
        .await
        .expect("watch")
        .into_inner()
}

/// Waits for the next watched event of `kind`.
async fn watched(
    stream: &mut Streaming<WatchEventsResponse>,
    kind: EventKind,
) -> WatchEventsResponse {
    loop {
        let event = next_watched(stream).await;
        if event.kind == kind as i32 {
            return event;
        }
    }
}

/// The next application event `id` received: (name, data, offset).
async fn next_app_event(clients: &Clients, id: &str) -> (String, Value, Option<String>) {
    let event = clients
        .take(
            |e| {
                e["id"] == id
                    && e["type"] == "event"
                    && !["authenticated", "ping"].contains(&e["event"].as_str().unwrap_or(""))
            },
            &format!("an application event on {id}"),
        )
        .await;
    let args = event["args"].as_array().expect("args");
    let offset = args.last().and_then(Value::as_str).map(str::to_owned);
    (
        event["event"].as_str().unwrap().to_owned(),
        args[0].clone(),
        offset,
    )
}

/// Drops client `id`'s transport and waits until its node reports the recoverable
/// disconnection; returns the watch (still open) and that event.
async fn drop_and_wait(
    clients: &mut Clients,
    control: &mut Control,
    id: &str,
) -> (Streaming<WatchEventsResponse>, WatchEventsResponse) {
    let mut events = watch(control).await;
    clients.drop_transport(id).await;
    let gone = watched(&mut events, EventKind::Disconnected).await;
    assert!(
        gone.recoverable,
        "a dropped transport is recoverable: {gone:?}"
    );
    (events, gone)
}

/// Sends `before` to `sid` and waits for client `id` to get it; returns (event, data,
/// offset).
async fn send_before(
    control: &mut Control,
    clients: &Clients,
    sid: &str,
) -> (String, Value, String) {
    control
        .send(SendRequest {
            target: to_sockets(&[sid]),
            ..event("before", 0)
        })
        .await
        .expect("live send");
    let (name, data, offset) = next_app_event(clients, "alice").await;
    let offset = offset.expect("a live replayable event carries an offset");
    (name, data, offset)
}

/// Logs in client `alice` (user alice) in the room `chat:x`, and has it receive one live
/// event; returns its socket id, pid and last offset.
async fn login_with_history(
    clients: &mut Clients,
    control: &mut Control,
    transport: Transport,
) -> (String, Value, String) {
    open(
        clients,
        "alice",
        transport,
        &tokens::for_user("alice"),
        json!({}),
    )
    .await;
    let first = clients.connect_event("alice").await;
    let sid = first["sid"].as_str().unwrap().to_owned();
    clients.next_event("alice", "authenticated").await;
    join(control, &[&sid], &["chat:x"]).await;
    let (_, _, offset) = send_before(control, clients, &sid).await;
    (sid, first["pid"].clone(), offset)
}

/// Waits for the events of [`send_missed`] on client `id`: each once, in order, with
/// offsets growing from `after`.
async fn expect_missed(clients: &Clients, id: &str, after: &str) {
    let mut last = offset_of(after);
    for n in 1..=4 {
        let (name, data, offset) = next_app_event(clients, id).await;
        assert_eq!((name.as_str(), data["n"].as_u64()), ("missed", Some(n)));
        let offset = offset_of(&offset.expect("offset"));
        assert!(offset > last, "offsets grow: {offset:?} after {last:?}");
        last = offset;
    }
}

/// An offset (`{ms}-{seq}`) as numbers, to compare.
fn offset_of(text: &str) -> (u64, u64) {
    let (ms, seq) = text.split_once('-').expect("an offset");
    (ms.parse().unwrap(), seq.parse().unwrap())
}

/// Sends `after` to `target` and checks that it is the next application event client `id`
/// gets: nothing else was replayed, and nothing twice.
async fn expect_only_live(
    control: &mut Control,
    clients: &Clients,
    id: &str,
    target: Option<Target>,
) {
    control
        .send(SendRequest {
            target,
            ..event("after", 99)
        })
        .await
        .expect("live send");
    let (name, data, _) = next_app_event(clients, id).await;
    assert_eq!(
        (name.as_str(), data["n"].as_u64()),
        ("after", Some(99)),
        "{:#?}",
        clients.pending()
    );
}

async fn recovers_with_missed_events(transport: Transport) {
    let scene = Scene::of(recovering()).await;
    let (gateway, mut clients, mut control) = scene.into_parts();
    let (a, _, before) = login_with_history(&mut clients, &mut control, transport).await;
    let _b = login(&mut clients, "b", transport, "bob").await;
    let rooms = rooms_of(&mut control, &a).await;
    assert!(rooms.contains(&"chat:x".to_owned()) && rooms.contains(&"user:alice".to_owned()));

    let (mut events, gone) = drop_and_wait(&mut clients, &mut control, "alice").await;
    assert_eq!(gone.socket_id, a);
    assert_eq!(
        away(&mut control).await,
        1,
        "GetInfo counts the socket away"
    );
    send_missed(&mut control, &a).await;
    control
        .send(SendRequest {
            target: to_rooms(&["chat:other"]),
            ..event("not-for-alice", 0)
        })
        .await
        .expect("a send to a room alice is not in");

    let (sid, recovered) = clients.reconnect("alice").await;
    assert!(recovered, "socket.recovered");
    assert_eq!(away(&mut control).await, 0);
    assert_eq!(sid, a, "the same socket id");
    expect_missed(&clients, "alice", &before).await;
    // The Ignis client authenticates again: answered at once, as the same socket.
    let authenticated = clients.next_event("alice", "authenticated").await;
    assert_eq!(authenticated["id"], a.as_str());
    let recovered_event = watched(&mut events, EventKind::Recovered).await;
    assert_eq!(recovered_event.socket_id, a);
    assert_eq!(recovered_event.user_id, "alice");
    assert!(recovered_event.rooms.contains(&"chat:x".to_owned()));
    assert_eq!(rooms_of(&mut control, &a).await, rooms, "back in its rooms");

    // Newer events come after the replay, live, and nothing else was replayed.
    expect_only_live(&mut control, &clients, "alice", to_rooms(&["chat:x"])).await;
    assert!(!clients.has_event("alice", "not-for-alice"));
    gateway.await_log("session recovered", 1).await;
}

#[tokio::test]
async fn a_websocket_that_drops_recovers_its_id_rooms_and_missed_events() {
    recovers_with_missed_events(Transport::Websocket).await;
}

#[tokio::test]
async fn a_polling_socket_that_drops_recovers_its_id_rooms_and_missed_events() {
    recovers_with_missed_events(Transport::Polling).await;
}

#[tokio::test]
async fn a_session_is_recovered_once_and_only_with_its_pid() {
    let (gateway, mut clients, mut control) = Scene::of(recovering()).await.into_parts();
    open(
        &mut clients,
        "a",
        Transport::Websocket,
        &tokens::for_user("alice"),
        json!({}),
    )
    .await;
    let first = clients.connect_event("a").await;
    let (a, pid) = (
        first["sid"].as_str().unwrap().to_owned(),
        first["pid"].clone(),
    );
    assert!(pid.as_str().is_some_and(|p| p.len() > 64), "a pid: {first}");
    clients.next_event("a", "authenticated").await;

    drop_and_wait(&mut clients, &mut control, "a").await;

    // A wrong secret for the right socket is refused and does not use the session up.
    let forged = format!("{}.{}", a, "0".repeat(64));
    let (sid, recovered) = present(&mut clients, "forger", "alice", json!({ "pid": forged })).await;
    assert!(!recovered && sid != a, "a forged pid recovers nothing");

    // Whoever holds the pid recovers the session (it is a bearer secret)...
    let (sid, recovered) = present(&mut clients, "holder", "alice", json!({ "pid": pid })).await;
    assert_eq!(sid, a, "the pid's holder gets the socket");
    assert!(!recovered, "(this client never had the pid as its own)");
    // ...once: the original client now gets a new session.
    let (sid, recovered) = clients.reconnect("a").await;
    assert!(!recovered);
    assert_ne!(sid, a);
    let secret = pid.as_str().unwrap().split_once('.').unwrap().1;
    assert!(
        !gateway.log_text().contains(secret),
        "a pid is never logged"
    );
}

#[tokio::test]
async fn sockets_sent_away_or_closed_by_their_client_are_not_recoverable() {
    let (_gateway, mut clients, mut control) = Scene::of(recovering()).await.into_parts();
    let a = login(&mut clients, "a", Transport::Websocket, "alice").await;
    let b = login(&mut clients, "b", Transport::Websocket, "bob").await;
    let mut events = watch(&mut control).await;

    clients.close("a").await;
    let gone = watched(&mut events, EventKind::Disconnected).await;
    assert_eq!(gone.socket_id, a);
    assert!(!gone.recoverable, "closed by its client");
    let (sid, recovered) = clients.reconnect("a").await;
    assert!(!recovered && sid != a);

    control
        .disconnect(DisconnectRequest {
            target: to_sockets(&[&b]),
            ..DisconnectRequest::default()
        })
        .await
        .expect("disconnect");
    let gone = watched(&mut events, EventKind::Disconnected).await;
    assert_eq!(gone.socket_id, b);
    assert!(!gone.recoverable, "sent away by the server");
    let error = control
        .send(SendRequest {
            target: to_sockets(&[&b]),
            ..event("late", 1)
        })
        .await
        .expect_err("not away: gone");
    assert_eq!(error.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn a_recovered_socket_presenting_another_users_token_is_refused() {
    let (_gateway, mut clients, mut control) = Scene::of(recovering()).await.into_parts();
    open(
        &mut clients,
        "a",
        Transport::Websocket,
        &tokens::for_user("alice"),
        json!({}),
    )
    .await;
    let first = clients.connect_event("a").await;
    let a = first["sid"].as_str().unwrap().to_owned();
    clients.next_event("a", "authenticated").await;
    drop_and_wait(&mut clients, &mut control, "a").await;

    let (sid, _) = present(
        &mut clients,
        "mallory",
        "mallory",
        json!({ "pid": first["pid"] }),
    )
    .await;
    assert_eq!(sid, a);
    let refused = clients.next_event("mallory", "unauthenticated").await;
    assert!(refused["message"].is_string());
    assert!(!clients.has_event("mallory", "authenticated"));
    clients.disconnected("mallory").await;
}

#[tokio::test]
async fn a_session_past_its_window_is_not_recovered_and_nothing_is_replayed() {
    let builder = recovering().env("RECOVERY__MAX_DISCONNECTION", "1s");
    let (_gateway, mut clients, mut control) = Scene::of(builder).await.into_parts();
    let a = login(&mut clients, "a", Transport::Websocket, "alice").await;
    drop_and_wait(&mut clients, &mut control, "a").await;
    control
        .send(SendRequest {
            target: to_sockets(&[&a]),
            ..event("missed", 1)
        })
        .await
        .expect("accepted while a is away");
    // The window is a duration: nothing to await but time.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (sid, recovered) = clients.reconnect("a").await;
    assert!(!recovered && sid != a);
    clients.next_event("a", "authenticated").await;
    assert!(!clients.has_event("a", "missed"));
}

/// Connects client `id` to `clients`' gateway presenting `auth` (a pid, and the offset of
/// a client that comes back through another node), authenticating as `user`; returns its
/// socket id and whether the client counts it as recovered.
async fn present(clients: &mut Clients, id: &str, user: &str, auth: Value) -> (String, bool) {
    let token = tokens::for_user(user);
    let extra = json!({ "auth": auth });
    open(clients, id, Transport::Websocket, &token, extra).await;
    clients.reconnected(id).await
}

/// Client `id` (user `id` as well) comes back presenting its session `pid`, read up to
/// `offset`: its socket id and whether it recovered.
async fn come_back(clients: &mut Clients, id: &str, pid: &Value, offset: &str) -> (String, bool) {
    present(clients, id, id, json!({"pid": pid, "offset": offset})).await
}

async fn cluster_pair(redis: &Redis) -> (Scene, Scene) {
    let node = |id| recovering().cluster_node(redis, id);
    (
        Scene::of(node("node-a")).await,
        Scene::of(node("node-b")).await,
    )
}

async fn send_missed(control: &mut Control, sid: &str) {
    for send in [
        SendRequest {
            target: to_rooms(&["chat:x"]),
            ..event("missed", 1)
        },
        SendRequest {
            target: to_users(&["alice"]),
            ..event("missed", 2)
        },
        SendRequest {
            target: to_sockets(&[sid]),
            ..event("missed", 3)
        },
        SendRequest {
            target: to_all(),
            ..event("missed", 4)
        },
    ] {
        control
            .send(send)
            .await
            .expect("a send while alice is away is accepted");
    }
}

#[tokio::test]
async fn a_socket_recovers_through_another_node() {
    let redis = Redis::start().await;
    let (a, b) = cluster_pair(&redis).await;
    let (_a, mut on_a, mut control_a) = a.into_parts();
    let (_b, mut on_b, mut control_b) = b.into_parts();
    let (alice, pid, offset) =
        login_with_history(&mut on_a, &mut control_a, Transport::Websocket).await;

    drop_and_wait(&mut on_a, &mut control_a, "alice").await;
    send_missed(&mut control_b, &alice).await;
    // Written by node A after the disconnection, read through node B.
    let counting = control_b.clone();
    eventually("node B counts alice away", async || {
        away(&mut counting.clone()).await == 1
    })
    .await;

    let (sid, _) = come_back(&mut on_b, "alice", &pid, &offset).await;
    assert_eq!(sid, alice, "the same socket, now on node B");
    assert_eq!(away(&mut control_b).await, 0);
    expect_missed(&on_b, "alice", &offset).await;
    on_b.next_event("alice", "authenticated").await;
    assert!(
        rooms_of(&mut control_b, &alice)
            .await
            .contains(&"chat:x".to_owned())
    );
    // Live again, through node A's control plane.
    expect_only_live(&mut control_a, &on_b, "alice", to_rooms(&["chat:x"])).await;
}

#[tokio::test]
async fn the_sockets_of_a_killed_node_recover_on_another() {
    let redis = Redis::start().await;
    let (a, b) = cluster_pair(&redis).await;
    let (node_a, mut on_a, mut control_a) = a.into_parts();
    let (_b, mut on_b, mut control_b) = b.into_parts();
    let (alice, pid, offset) =
        login_with_history(&mut on_a, &mut control_a, Transport::Websocket).await;

    node_a.kill().await;
    on_a.disconnected("alice").await;
    send_missed(&mut control_b, &alice).await;

    let (sid, _) = come_back(&mut on_b, "alice", &pid, &offset).await;
    assert_eq!(sid, alice, "recovered from the killed node's live session");
    expect_missed(&on_b, "alice", &offset).await;
    assert!(
        rooms_of(&mut control_b, &alice)
            .await
            .contains(&"chat:x".to_owned())
    );
}

#[tokio::test]
async fn the_sockets_of_a_node_stopped_with_sigterm_recover_on_another_under_steady_sends() {
    let redis = Redis::start().await;
    let (a, b) = cluster_pair(&redis).await;
    let (node_a, mut on_a, mut control_a) = a.into_parts();
    let (_b, mut on_b, mut control_b) = b.into_parts();
    let (alice, pid, mut offset) =
        login_with_history(&mut on_a, &mut control_a, Transport::Websocket).await;

    let sender = tokio::spawn(async move {
        for n in 1..=30u32 {
            control_b
                .send(SendRequest {
                    target: to_sockets(&[&alice]),
                    ..event("steady", n)
                })
                .await
                .expect("accepted, connected or away");
        }
        (control_b, alice)
    });
    // Stop node A while the sends go on; what reached alice there is taken as it comes.
    let mut received = Vec::new();
    let terminated = tokio::spawn(node_a.terminate());
    loop {
        let next = on_a
            .take(
                |e| e["id"] == "alice" && (e["type"] == "disconnect" || e["event"] == "steady"),
                "a steady event or the disconnection",
            )
            .await;
        if next["type"] == "disconnect" {
            break;
        }
        let args = next["args"].as_array().unwrap();
        received.push(args[0]["n"].as_u64().unwrap());
        offset = args.last().unwrap().as_str().unwrap().to_owned();
    }
    assert!(terminated.await.unwrap().success(), "node A exits cleanly");
    let (mut control_b, alice) = sender.await.unwrap();

    let (sid, _) = come_back(&mut on_b, "alice", &pid, &offset).await;
    assert_eq!(sid, alice, "recovered on node B");
    while received.len() < 30 {
        let (name, data, _) = next_app_event(&on_b, "alice").await;
        assert_eq!(name, "steady");
        received.push(data["n"].as_u64().unwrap());
    }
    assert_eq!(
        received,
        (1..=30).collect::<Vec<_>>(),
        "each once, in order"
    );
    expect_only_live(&mut control_b, &on_b, "alice", to_sockets(&[&sid])).await;
}

#[tokio::test]
async fn a_session_lost_with_a_redis_restart_is_a_new_session_with_nothing_replayed() {
    let mut redis = Redis::start().await;
    let (a, b) = cluster_pair(&redis).await;
    let (_a, mut on_a, mut control_a) = a.into_parts();
    let (_b, mut on_b, mut control_b) = b.into_parts();
    let (alice, pid, offset) =
        login_with_history(&mut on_a, &mut control_a, Transport::Websocket).await;
    drop_and_wait(&mut on_a, &mut control_a, "alice").await;
    send_missed(&mut control_b, &alice).await;

    redis.restart().await;
    let (sid, _) = come_back(&mut on_b, "alice", &pid, &offset).await;
    assert_ne!(sid, alice, "the session went with Redis's data: a new one");
    on_b.next_event("alice", "authenticated").await;
    expect_only_live(&mut control_b, &on_b, "alice", to_sockets(&[&sid])).await;
}

#[tokio::test]
async fn the_official_client_moved_to_another_node_by_the_load_balancer_recovers() {
    let redis = Redis::start().await;
    let node = |id| recovering().cluster_node(&redis, id).start();
    let (a, b) = (node("node-a").await, node("node-b").await);
    let balancer = Proxy::start(a.edge).await;
    let mut clients = Clients::start(&balancer.url()).await;
    let (_a, _, mut control_a) = Scene::on(a).await.into_parts();
    let (b, _, mut control_b) = Scene::on(b).await.into_parts();
    let quick = json!({"reconnection": true, "reconnectionDelay": 200, "randomizationFactor": 0});
    open(
        &mut clients,
        "alice",
        Transport::Websocket,
        &tokens::for_user("alice"),
        quick,
    )
    .await;
    let (alice, _) = clients.reconnected("alice").await;
    clients.next_event("alice", "authenticated").await;
    join(&mut control_a, &[&alice], &["chat:x"]).await;
    let (_, _, before) = send_before(&mut control_a, &clients, &alice).await;

    let mut events = watch(&mut control_a).await;
    balancer.set_upstream(b.edge);
    balancer.cut().await;
    assert!(
        watched(&mut events, EventKind::Disconnected)
            .await
            .recoverable
    );
    send_missed(&mut control_b, &alice).await;

    let (sid, recovered) = clients.reconnected("alice").await;
    assert!(recovered, "socket.recovered, through node B");
    assert_eq!(sid, alice);
    expect_missed(&clients, "alice", &before).await;
    clients.next_event("alice", "authenticated").await;
    assert!(
        rooms_of(&mut control_b, &alice)
            .await
            .contains(&"chat:x".to_owned())
    );
    expect_only_live(&mut control_b, &clients, "alice", to_sockets(&[&sid])).await;
}

/// Every socket `ListSockets` lists with `request`'s filters, following its pages (of
/// `request.page_size`): each page goes on in id order, and gives the same total.
async fn list(control: &mut Control, request: ListSocketsRequest) -> Vec<SocketInfo> {
    let mut sockets: Vec<SocketInfo> = Vec::new();
    let mut token = String::new();
    let mut totals = Vec::new();
    loop {
        let page = control
            .list_sockets(ListSocketsRequest {
                page_token: token,
                ..request.clone()
            })
            .await
            .expect("ListSockets")
            .into_inner();
        totals.push(page.total);
        sockets.extend(page.sockets);
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let ids = ids(&sockets);
    assert!(
        ids.is_sorted() && !ids.windows(2).any(|w| w[0] == w[1]),
        "{ids:?}"
    );
    assert!(
        totals.iter().all(|t| *t as usize == ids.len()),
        "{totals:?} for {ids:?}"
    );
    sockets
}

fn ids(sockets: &[SocketInfo]) -> Vec<&str> {
    sockets.iter().map(|s| s.id.as_str()).collect()
}

fn in_state(state: SocketState) -> ListSocketsRequest {
    ListSocketsRequest {
        state: state as i32,
        ..ListSocketsRequest::default()
    }
}

async fn get_socket(control: &mut Control, sid: &str) -> Result<SocketInfo, tonic::Status> {
    let reply = control
        .get_socket(GetSocketRequest {
            socket_id: sid.to_owned(),
        })
        .await?;
    Ok(reply.into_inner().socket.expect("a socket"))
}

/// The ids listed `AWAY`.
async fn listed_away(control: &mut Control) -> Vec<String> {
    let away = list(control, in_state(SocketState::Away)).await;
    ids(&away).into_iter().map(str::to_owned).collect()
}

/// Checks how `ListSockets` and `GetSocket` show socket `away` (user alice, in chat:x),
/// away, next to `bob`'s connected socket (user bob) and the `others` connected.
async fn expect_listed_away(control: &mut Control, away: &str, bob: &str, others: &[&str]) {
    let listed = list(control, in_state(SocketState::Away)).await;
    assert_eq!(ids(&listed), [away], "only the socket away is AWAY");
    let socket = &listed[0];
    assert_eq!(socket.state, SocketState::Away as i32);
    assert_eq!(socket.user_id, "alice");
    assert!(
        socket.rooms.contains(&"chat:x".to_owned())
            && socket.rooms.contains(&"user:alice".to_owned()),
        "the rooms it gets back: {:?}",
        socket.rooms
    );
    assert!(socket.away_since.is_some() && socket.connected_at.is_none());
    assert!(socket.node_id.is_empty() && socket.transport.is_empty());
    assert!(socket.remote_address.is_empty());
    assert_eq!(&get_socket(control, away).await.expect("GetSocket"), socket);

    // Any state: the socket away merged with the connected ones, in id order, over pages
    // of one.
    let all = list(
        control,
        ListSocketsRequest {
            page_size: 1,
            ..ListSocketsRequest::default()
        },
    )
    .await;
    let mut expected = [&[away, bob][..], others].concat();
    expected.sort_unstable();
    assert_eq!(ids(&all), expected);
    for socket in &all {
        let state = if socket.id == away {
            SocketState::Away
        } else {
            SocketState::Authenticated
        };
        assert_eq!(socket.state, state as i32, "{socket:?}");
    }

    // The room and user filters apply to what it gets back.
    let filtered = async |control: &mut Control, room: &str, user: &str, state| {
        let request = ListSocketsRequest {
            room: room.to_owned(),
            user_id: user.to_owned(),
            ..in_state(state)
        };
        let listed = list(control, request).await;
        ids(&listed)
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let unspecified = SocketState::Unspecified;
    assert_eq!(filtered(control, "chat:x", "", unspecified).await, [away]);
    assert_eq!(filtered(control, "", "alice", unspecified).await, [away]);
    assert_eq!(
        filtered(control, "", "alice", SocketState::Away).await,
        [away]
    );
    assert_eq!(filtered(control, "", "bob", unspecified).await, [bob]);
    assert!(
        filtered(control, "", "bob", SocketState::Away)
            .await
            .is_empty()
    );
    assert!(
        filtered(control, "chat:x", "", SocketState::Authenticated)
            .await
            .is_empty()
    );
    assert!(
        filtered(control, "chat:y", "alice", unspecified)
            .await
            .is_empty()
    );
}

/// Checks that socket `sid`, connected again, is listed `AUTHENTICATED` and no longer
/// `AWAY`.
async fn expect_listed_back(control: &mut Control, sid: &str) {
    assert!(listed_away(control).await.is_empty());
    let socket = get_socket(control, sid).await.expect("GetSocket");
    assert_eq!(socket.state, SocketState::Authenticated as i32);
    assert!(socket.away_since.is_none() && socket.connected_at.is_some());
    let alice = list(
        control,
        ListSocketsRequest {
            user_id: "alice".into(),
            ..ListSocketsRequest::default()
        },
    )
    .await;
    assert_eq!(ids(&alice), [sid]);
    assert_eq!(alice[0].state, SocketState::Authenticated as i32);
}

/// Has client `id` close its socket itself and checks that it is not listed away.
async fn expect_closed_not_away(clients: &mut Clients, control: &mut Control, id: &str, sid: &str) {
    let mut events = watch(control).await;
    clients.close(id).await;
    let gone = watched(&mut events, EventKind::Disconnected).await;
    assert_eq!(gone.socket_id, sid);
    assert!(!gone.recoverable, "closed by its client");
    assert!(!listed_away(control).await.contains(&sid.to_owned()));
    let error = get_socket(control, sid)
        .await
        .expect_err("neither connected nor away");
    assert_eq!(error.code(), tonic::Code::NotFound);
    let all = list(control, ListSocketsRequest::default()).await;
    assert!(!ids(&all).contains(&sid), "{all:?}");
}

#[tokio::test]
async fn a_socket_away_is_listed_as_away_with_its_rooms_and_user_until_it_recovers() {
    let (_gateway, mut clients, mut control) = Scene::of(recovering()).await.into_parts();
    let (alice, _, _) = login_with_history(&mut clients, &mut control, Transport::Websocket).await;
    let bob = login(&mut clients, "b", Transport::Polling, "bob").await;
    let carol = login(&mut clients, "c", Transport::Websocket, "carol").await;
    drop_and_wait(&mut clients, &mut control, "alice").await;

    expect_listed_away(&mut control, &alice, &bob, &[&carol]).await;
    assert_eq!(away(&mut control).await, 1);

    let (sid, recovered) = clients.reconnect("alice").await;
    assert!(recovered && sid == alice);
    clients.next_event("alice", "authenticated").await;
    expect_listed_back(&mut control, &alice).await;
    expect_closed_not_away(&mut clients, &mut control, "c", &carol).await;
}

#[tokio::test]
async fn a_socket_away_is_no_longer_listed_once_its_window_passes() {
    let builder = recovering().env("RECOVERY__MAX_DISCONNECTION", "1s");
    let (_gateway, mut clients, mut control) = Scene::of(builder).await.into_parts();
    let a = login(&mut clients, "a", Transport::Websocket, "alice").await;
    drop_and_wait(&mut clients, &mut control, "a").await;
    assert_eq!(listed_away(&mut control).await, [a.as_str()]);
    let listing = control.clone();
    eventually("the window of a's session closes", async || {
        listed_away(&mut listing.clone()).await.is_empty()
    })
    .await;
    let error = get_socket(&mut control, &a).await.expect_err("gone");
    assert_eq!(error.code(), tonic::Code::NotFound);
    assert!(
        list(&mut control, ListSocketsRequest::default())
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn sockets_away_are_listed_cluster_wide_through_every_node() {
    let redis = Redis::start().await;
    let node = |id| {
        recovering()
            .env("RECOVERY__MAX_DISCONNECTION", "3s")
            .cluster_node(&redis, id)
    };
    let (a, b) = (
        Scene::of(node("node-a")).await,
        Scene::of(node("node-b")).await,
    );
    let (_a, mut on_a, mut control_a) = a.into_parts();
    let (_b, mut on_b, mut control_b) = b.into_parts();
    let (alice, pid, offset) =
        login_with_history(&mut on_a, &mut control_a, Transport::Websocket).await;
    let bob = login(&mut on_b, "b", Transport::Websocket, "bob").await;
    let carol = login(&mut on_a, "c", Transport::Polling, "carol").await;

    drop_and_wait(&mut on_a, &mut control_a, "alice").await;
    // Written by node A after the disconnection, read through node B.
    let listing = control_b.clone();
    eventually("node B lists alice away", async || {
        listed_away(&mut listing.clone()).await == [alice.as_str()]
    })
    .await;
    expect_listed_away(&mut control_b, &alice, &bob, &[&carol]).await;
    expect_listed_away(&mut control_a, &alice, &bob, &[&carol]).await;

    let (sid, _) = come_back(&mut on_b, "alice", &pid, &offset).await;
    assert_eq!(sid, alice, "recovered on node B");
    on_b.next_event("alice", "authenticated").await;
    expect_listed_back(&mut control_a, &alice).await;
    expect_closed_not_away(&mut on_b, &mut control_a, "b", &bob).await;

    // Carol's window passes: no longer listed, through either node.
    drop_and_wait(&mut on_a, &mut control_a, "c").await;
    eventually("node B lists carol away", async || {
        listed_away(&mut listing.clone()).await == [carol.as_str()]
    })
    .await;
    eventually("the window of carol's session closes", async || {
        listed_away(&mut listing.clone()).await.is_empty()
    })
    .await;
    assert!(listed_away(&mut control_a).await.is_empty());
    let error = get_socket(&mut control_a, &carol).await.expect_err("gone");
    assert_eq!(error.code(), tonic::Code::NotFound);
}
