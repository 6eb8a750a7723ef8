//! Several gateway nodes on a real Redis: every RPC sent to one node acts on sockets of
//! the others (send to socket / room / user / all, except_socket_ids, acks, join, leave,
//! disconnect, listings, counts, WatchEvents, Batch), precise statuses for socket ids of other
//! nodes (the socket directory), and the failure cases: Redis restarted under load, a node
//! killed with SIGKILL and restarted, polling on the wrong node, and Redis settings that
//! cannot work.

mod fixture;

use std::time::{Duration, Instant};

use fixture::{
    Gateway, GatewayBuilder, PATIENCE,
    eventually::eventually,
    next_watched,
    redis::Redis,
    scene::{Control, Scene},
    sid_in,
    sio::{Transport, polling, ws},
    sockets_of, to_all, to_rooms, to_sockets, to_users, tokens,
};
use futures_util::StreamExt;
use serde_json::json;
use sockgate_client::proto::{
    AckOptions, BatchCommand, BatchRequest, DisconnectRequest, EventKind, GetInfoRequest,
    GetSocketRequest, JoinRequest, LeaveRequest, ListRoomsRequest, ListSocketsRequest, SendRequest,
    SocketState, Target, WatchEventsRequest,
};
use tonic::Code;

fn event(name: &str, data: serde_json::Value) -> SendRequest {
    SendRequest {
        event: name.into(),
        data_json: data.to_string(),
        ..SendRequest::default()
    }
}

fn node(redis: &Redis, id: &str) -> GatewayBuilder {
    Gateway::builder().cluster_node(redis, id)
}

/// A Redis and two nodes on it, `node-a` and `node-b`.
async fn two_nodes() -> (Redis, Gateway, Gateway) {
    let redis = Redis::start().await;
    let a = node(&redis, "node-a").start().await;
    let b = node(&redis, "node-b").start().await;
    (redis, a, b)
}

#[tokio::test]
async fn rpcs_to_one_node_act_on_the_sockets_of_another() {
    let (_redis, a, b) = two_nodes().await;
    let (_a, mut on_a, mut control) = Scene::on(a).await.into_parts();
    let (_b, mut on_b, _) = Scene::on(b).await.into_parts();
    let alice = on_a.login(ws("alice")).await;
    let [bob, bob2] = on_b.logins([ws("bob"), polling("bob2").user("bob")]).await;
    on_a.emit_with_ack("alice", "join", json!([{"rooms": ["chat:x"]}]))
        .await;
    on_b.emit_with_ack("bob", "join", json!([{"rooms": ["chat:x"]}]))
        .await;

    // To a socket of node B, from node A.
    control
        .send(SendRequest {
            target: to_sockets(&[&bob]),
            ..event("direct", json!({"n": 1}))
        })
        .await
        .expect("Send to a socket of B");
    assert_eq!(on_b.next_event("bob", "direct").await, json!({"n": 1}));

    // To a room spread over both nodes, leaving the sender out (on node A).
    let counted = control
        .send(SendRequest {
            target: Some(Target {
                rooms: vec!["chat:x".into()],
                except_socket_ids: vec![alice.clone()],
                ..Target::default()
            }),
            count_recipients: true,
            ..event("room", json!({"n": 2}))
        })
        .await
        .expect("Send to a room")
        .into_inner();
    assert_eq!(counted.recipients, Some(1), "bob, not the excepted alice");
    assert_eq!(on_b.next_event("bob", "room").await, json!({"n": 2}));
    // And leaving out a socket of the other node.
    control
        .send(SendRequest {
            target: Some(Target {
                rooms: vec!["chat:x".into()],
                except_socket_ids: vec![bob.clone()],
                ..Target::default()
            }),
            ..event("room", json!({"n": 3}))
        })
        .await
        .expect("Send to a room except bob");
    assert_eq!(on_a.next_event("alice", "room").await, json!({"n": 3}));

    // To a user whose sockets are on B; to everyone.
    control
        .send(SendRequest {
            target: to_users(&["bob"]),
            ..event("user", json!({"n": 4}))
        })
        .await
        .expect("Send to a user");
    assert_eq!(on_b.next_event("bob", "user").await, json!({"n": 4}));
    assert_eq!(on_b.next_event("bob2", "user").await, json!({"n": 4}));
    control
        .send(SendRequest {
            target: to_all(),
            ..event("all", json!({"n": 5}))
        })
        .await
        .expect("Send to all");
    for (clients, id) in [(&on_a, "alice"), (&on_b, "bob"), (&on_b, "bob2")] {
        assert_eq!(clients.next_event(id, "all").await, json!({"n": 5}));
    }
    // The sender was left out of the first room message, bob of the second.
    assert!(!on_a.has_event("alice", "room"));
    assert!(!on_b.has_event("bob", "room"));

    // Acks from sockets of both nodes.
    on_b.reply_to("bob", "confirm", json!({"ok": "bob"})).await;
    on_a.reply_to("alice", "confirm", json!({"ok": "alice"}))
        .await;
    let reply = control
        .send(SendRequest {
            target: to_rooms(&["chat:x"]),
            ack: Some(AckOptions { timeout_ms: 3000 }),
            ..event("confirm", json!({}))
        })
        .await
        .expect("Send with acks")
        .into_inner();
    let mut acked: Vec<_> = reply
        .acks
        .iter()
        .map(|a| (a.socket_id.clone(), a.data_json.clone()))
        .collect();
    acked.sort();
    let mut expected = vec![
        (alice.clone(), r#"{"ok":"alice"}"#.to_owned()),
        (bob.clone(), r#"{"ok":"bob"}"#.to_owned()),
    ];
    expected.sort();
    assert_eq!(acked, expected);
    assert_eq!(reply.recipients, Some(2));
    assert!(reply.timed_out_socket_ids.is_empty());

    // Join and leave a socket of B from A.
    control
        .join(JoinRequest {
            target: to_sockets(&[&bob2]),
            rooms: vec!["vip".into()],
        })
        .await
        .expect("Join");
    let info = |sid: String| GetSocketRequest { socket_id: sid };
    let seen = control
        .get_socket(info(bob2.clone()))
        .await
        .expect("GetSocket of a socket of B")
        .into_inner()
        .socket
        .unwrap();
    assert!(seen.rooms.contains(&"vip".to_owned()), "{seen:?}");
    assert_eq!(
        (seen.node_id.as_str(), seen.user_id.as_str()),
        ("node-b", "bob")
    );
    assert_eq!(seen.state, SocketState::Authenticated as i32);
    assert_eq!(seen.transport, "polling");
    control
        .leave(LeaveRequest {
            target: to_sockets(&[&bob2]),
            rooms: vec!["vip".into()],
        })
        .await
        .expect("Leave");
    let seen = control
        .get_socket(info(bob2.clone()))
        .await
        .unwrap()
        .into_inner()
        .socket
        .unwrap();
    assert!(!seen.rooms.contains(&"vip".to_owned()), "{seen:?}");

    // A room the server (through another node) put a socket in cannot be left by its
    // client, even one the client had joined itself.
    control
        .join(JoinRequest {
            target: to_sockets(&[&bob]),
            rooms: vec!["chat:x".into()],
        })
        .await
        .expect("Join");
    let left = on_b
        .emit_with_ack("bob", "leave", json!([{"rooms": ["chat:x"]}]))
        .await;
    assert_eq!(left[0], json!({"left": [], "rejected": ["chat:x"]}));

    // Listings and counts see both nodes, paginated.
    let first = control
        .list_sockets(ListSocketsRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .expect("ListSockets")
        .into_inner();
    assert_eq!((first.sockets.len(), first.total), (2, 3));
    let second = control
        .list_sockets(ListSocketsRequest {
            page_size: 2,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (second.sockets.len(), second.next_page_token.as_str()),
        (1, "")
    );
    let mut ids: Vec<_> = first
        .sockets
        .iter()
        .chain(&second.sockets)
        .map(|s| s.id.clone())
        .collect();
    let mut all = vec![alice.clone(), bob.clone(), bob2.clone()];
    all.sort();
    assert_eq!(ids, all, "pages are ordered by id and cover every node");
    ids.clear();
    let of_bob = control
        .list_sockets(ListSocketsRequest {
            user_id: "bob".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(of_bob.total, 2);
    assert!(of_bob.sockets.iter().all(|s| s.node_id == "node-b"));
    let rooms = control
        .list_rooms(ListRoomsRequest {
            prefix: "chat:".into(),
            ..Default::default()
        })
        .await
        .expect("ListRooms")
        .into_inner();
    assert_eq!(rooms.rooms.len(), 1);
    assert_eq!(
        (rooms.rooms[0].name.as_str(), rooms.rooms[0].members),
        ("chat:x", 2)
    );
    // Page by page (2 rooms a page) over every room of both nodes: each once, members
    // summed over the nodes.
    let mut walked = Vec::new();
    let mut token = String::new();
    loop {
        let page = control
            .list_rooms(ListRoomsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.rooms.len() <= 2);
        walked.extend(page.rooms.into_iter().map(|r| (r.name, r.members)));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let expected: Vec<(String, u32)> = [
        ("chat:x", 2),
        ("io-default", 3),
        ("io-notification", 3),
        ("user:alice", 1),
        ("user:bob", 2),
    ]
    .iter()
    .map(|(n, m)| (n.to_string(), *m))
    .collect();
    assert_eq!(walked, expected);
    eventually("GetInfo to count both nodes", async || {
        let info = control
            .get_info(GetInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        let counts = info.sockets.unwrap_or_default();
        info.nodes == ["node-a", "node-b"]
            && info.adapter == "redis"
            && counts.total == 3
            && counts.authenticated == 3
    })
    .await;

    // Disconnect a socket of B from A.
    control
        .disconnect(DisconnectRequest {
            target: to_sockets(&[&bob]),
            reason: "bye".into(),
        })
        .await
        .expect("Disconnect");
    assert_eq!(
        on_b.next_event("bob", "force_disconnect").await["reason"],
        "bye"
    );
    on_b.disconnected("bob").await;
    // The client may read the disconnection before node B has removed the socket.
    eventually("the disconnected socket to be NOT_FOUND", async || {
        control
            .get_socket(info(bob.clone()))
            .await
            .is_err_and(|e| e.code() == Code::NotFound)
    })
    .await;
}

#[tokio::test]
async fn a_watcher_on_one_node_sees_the_events_of_every_node() {
    let (_redis, a, b) = two_nodes().await;
    let mut watcher = a
        .control()
        .await
        .watch_events(WatchEventsRequest {
            kinds: vec![
                EventKind::Authenticated as i32,
                EventKind::ClientEvent as i32,
                EventKind::Disconnected as i32,
            ],
            ..Default::default()
        })
        .await
        .expect("WatchEvents")
        .into_inner();
    let mut in_room = a
        .control()
        .await
        .watch_events(WatchEventsRequest {
            room: "chat:y".into(),
            kinds: vec![EventKind::ClientEvent as i32],
            ..Default::default()
        })
        .await
        .expect("WatchEvents by room")
        .into_inner();
    let mut joins = a
        .control()
        .await
        .watch_events(WatchEventsRequest {
            kinds: vec![EventKind::Joined as i32],
            ..Default::default()
        })
        .await
        .expect("WatchEvents of joins")
        .into_inner();
    let (_b, mut on_b, _) = Scene::on(b).await.into_parts();
    let sid = on_b.login(ws("carol")).await;
    for n in 0..20 {
        on_b.emit("carol", "tick", json!([{"n": n}])).await;
    }
    on_b.emit_with_ack("carol", "join", json!([{"rooms": ["chat:y"]}]))
        .await;
    on_b.emit("carol", "chat:message", json!([{"text": "hi"}]))
        .await;
    // A Join RPC on node A for carol, on node B.
    a.control()
        .await
        .join(JoinRequest {
            target: to_sockets(&[&sid]),
            rooms: vec!["vip".into()],
        })
        .await
        .expect("Join");
    on_b.close("carol").await;

    let authenticated = next_watched(&mut watcher).await;
    assert_eq!(
        (
            authenticated.kind,
            authenticated.node_id.as_str(),
            authenticated.user_id.as_str()
        ),
        (EventKind::Authenticated as i32, "node-b", "carol")
    );
    for n in 0..20 {
        let tick = next_watched(&mut watcher).await;
        assert_eq!(tick.socket_id, sid);
        assert_eq!(
            tick.data_json,
            json!({"n": n}).to_string(),
            "one socket's events in order"
        );
    }
    let message = next_watched(&mut watcher).await;
    assert_eq!(message.event, "chat:message");
    let disconnected = next_watched(&mut watcher).await;
    assert_eq!(disconnected.kind, EventKind::Disconnected as i32);
    let client_join = next_watched(&mut joins).await;
    assert_eq!(client_join.rooms, ["chat:y"]);
    let rpc_join = next_watched(&mut joins).await;
    assert_eq!(
        (
            rpc_join.rooms.as_slice(),
            rpc_join.node_id.as_str(),
            rpc_join.user_id.as_str(),
            rpc_join.socket_id.as_str()
        ),
        (&["vip".to_owned()][..], "node-b", "carol", sid.as_str()),
        "the socket's node reports a Join RPC received by another node"
    );
    let filtered = next_watched(&mut in_room).await;
    assert_eq!(
        (filtered.event.as_str(), filtered.node_id.as_str()),
        ("chat:message", "node-b"),
        "the room filter applies to other nodes' events"
    );
}

#[tokio::test]
async fn a_killed_node_drops_out_and_may_come_back_with_its_id() {
    let (redis, a, b) = two_nodes().await;
    let (_a, mut on_a, mut control) = Scene::on(a).await.into_parts();
    let (b, mut on_b, _) = Scene::on(b).await.into_parts();
    on_a.login(ws("alice")).await;
    let bob = on_b.login(ws("bob")).await;
    let listed = control
        .list_sockets(ListSocketsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.total, 2);

    b.kill().await;
    let started = Instant::now();
    let listed = control
        .list_sockets(ListSocketsRequest::default())
        .await
        .expect("the survivor answers")
        .into_inner();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "within the deadline"
    );
    assert_eq!(listed.total, 1, "the dead node's sockets are not listed");
    control
        .send(SendRequest {
            target: to_all(),
            ..event("after", json!({}))
        })
        .await
        .expect("Send to all with a dead node");
    on_a.next_event("alice", "after").await;
    let missing = control
        .get_socket(GetSocketRequest { socket_id: bob })
        .await
        .expect_err("a socket of the dead node");
    assert_eq!(missing.code(), Code::NotFound);
    eventually("the dead node to leave GetInfo", async || {
        let info = control
            .get_info(GetInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        info.nodes == ["node-a"] && info.sockets.unwrap_or_default().total == 1
    })
    .await;

    // Back with the same node id: a new process, listed once, its sockets reachable.
    let (_b, mut on_b, _) = Scene::of(node(&redis, "node-b")).await.into_parts();
    let dave = on_b.login(ws("dave")).await;
    control
        .send(SendRequest {
            target: to_sockets(&[&dave]),
            ..event("welcome", json!({}))
        })
        .await
        .expect("Send to the restarted node");
    on_b.next_event("dave", "welcome").await;
    eventually(
        "GetInfo to show node-b once, with its new socket",
        async || {
            let info = control
                .get_info(GetInfoRequest {})
                .await
                .unwrap()
                .into_inner();
            info.nodes == ["node-a", "node-b"] && info.sockets.unwrap_or_default().total == 2
        },
    )
    .await;
}

#[tokio::test]
async fn a_redis_restart_under_load_is_survived() {
    let (mut redis, a, b) = two_nodes().await;
    let (a, mut on_a, mut control) = Scene::on(a).await.into_parts();
    let (b, mut on_b, _) = Scene::on(b).await.into_parts();
    let alice = on_a.login(ws("alice")).await;
    let bob = on_b.login(ws("bob")).await;
    let mut watcher = control
        .watch_events(WatchEventsRequest {
            kinds: vec![EventKind::ClientEvent as i32],
            ..Default::default()
        })
        .await
        .expect("WatchEvents")
        .into_inner();

    // Load: unicast sends to the local socket, all along.
    let mut load_control = a.control().await;
    let target = alice.clone();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let load = tokio::spawn(async move {
        let (mut ok, mut failed) = (0u32, 0u32);
        while !*stopped.borrow_and_update() {
            let sent = load_control
                .send(SendRequest {
                    target: to_sockets(&[&target]),
                    ..event("load", json!({}))
                })
                .await;
            if sent.is_ok() { ok += 1 } else { failed += 1 }
        }
        (ok, failed)
    });

    redis.kill().await;
    // Cluster RPCs fail fast with UNAVAILABLE or DEADLINE_EXCEEDED.
    for _ in 0..3 {
        let started = Instant::now();
        let error = control
            .list_sockets(ListSocketsRequest::default())
            .await
            .expect_err("no listing without Redis");
        assert!(
            matches!(error.code(), Code::Unavailable | Code::DeadlineExceeded),
            "{error:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
    }
    let started = Instant::now();
    let error = control
        .send(SendRequest {
            target: to_all(),
            ..event("outage", json!({}))
        })
        .await
        .expect_err("a broadcast cannot reach the other node");
    assert!(
        matches!(error.code(), Code::Unavailable | Code::DeadlineExceeded),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    // This node's sockets still got it.
    on_a.next_event("alice", "outage").await;
    // And this node's watchers still see this node's events.
    on_a.emit("alice", "during", json!([{"n": 1}])).await;
    let during = next_watched(&mut watcher).await;
    assert_eq!(
        (during.event.as_str(), during.node_id.as_str()),
        ("during", "node-a")
    );

    redis.restart().await;
    // Cross-node delivery resumes by itself.
    let mut n = 0;
    eventually("cross-node delivery after Redis came back", async || {
        n += 1;
        let sent = control
            .send(SendRequest {
                target: to_sockets(&[&bob]),
                ..event("back", json!({"n": n}))
            })
            .await;
        sent.is_ok()
            && tokio::time::timeout(Duration::from_millis(500), on_b.next_event("bob", "back"))
                .await
                .is_ok()
    })
    .await;
    // The watcher sees the other node's events again (those of the outage are lost).
    let mut n = 0;
    eventually("relayed events to resume after the restart", async || {
        n += 1;
        on_b.emit("bob", "after", json!([{"n": n}])).await;
        tokio::time::timeout(Duration::from_millis(300), watcher.next())
            .await
            .is_ok_and(|e| {
                e.is_some_and(|e| e.is_ok_and(|e| e.node_id == "node-b" && e.event == "after"))
            })
    })
    .await;
    stop.send(true).unwrap();
    let (ok, failed) = load.await.unwrap();
    assert_eq!(failed, 0, "local unicast never failed ({ok} sent)");
    assert!(ok > 10, "the load ran ({ok} sent)");
    eventually("listings after Redis came back", async || {
        control
            .list_sockets(ListSocketsRequest::default())
            .await
            .is_ok_and(|l| l.into_inner().total == 2)
    })
    .await;
    // Redis came back empty: node B wrote its socket directory again.
    b.await_log("rewriting this node's socket directory", 1)
        .await;
}

#[tokio::test]
async fn polling_on_the_wrong_node_gets_a_clean_error() {
    let (_redis, a, b) = two_nodes().await;
    let handshake = http_get(a.edge, "/io/?EIO=4&transport=polling").await;
    assert!(handshake.starts_with("HTTP/1.1 200"), "{handshake}");
    let sid = sid_in(&handshake);
    let started = Instant::now();
    let elsewhere = http_get(b.edge, &format!("/io/?EIO=4&transport=polling&sid={sid}")).await;
    assert!(elsewhere.starts_with("HTTP/1.1 400"), "{elsewhere}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut response))
        .await
        .expect("an answer")
        .unwrap();
    response
}

#[tokio::test]
async fn redis_settings_that_cannot_work_stop_the_start() {
    let not_a_url = Gateway::builder()
        .env("CLUSTER__ADAPTER", "redis")
        .env("CLUSTER__REDIS_URL", "http://secret@nowhere")
        .start_expecting_failure()
        .await;
    assert!(not_a_url.contains("cluster.redis_url"), "{not_a_url}");
    assert!(
        !not_a_url.contains("secret"),
        "the URL is not repeated: {not_a_url}"
    );

    let resp2 = Gateway::builder()
        .env("CLUSTER__ADAPTER", "redis")
        .env("CLUSTER__REDIS_URL", "redis://127.0.0.1:1/?protocol=resp2")
        .start_expecting_failure()
        .await;
    assert!(resp2.contains("RESP3"), "{resp2}");

    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let unreachable = Gateway::builder()
        .env("CLUSTER__ADAPTER", "redis")
        .env(
            "CLUSTER__REDIS_URL",
            &format!("redis://127.0.0.1:{closed_port}"),
        )
        .env("CLUSTER__REQUEST_TIMEOUT", "1s")
        .start_expecting_failure()
        .await;
    assert!(
        unreachable.contains("cannot connect to Redis at 127.0.0.1"),
        "{unreachable}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    let missing = Gateway::builder()
        .env("CLUSTER__ADAPTER", "redis")
        .start_expecting_failure()
        .await;
    assert!(missing.contains("needs cluster.redis_url"), "{missing}");
}

#[tokio::test]
async fn listings_show_the_current_transport() {
    let (_redis, a, b) = two_nodes().await;
    let (_b, mut on_b, _) = Scene::on(b).await.into_parts();
    // Default transports: polling first, then the upgrade to WebSocket.
    let sid = on_b
        .connect_with(
            "u",
            Transport::Polling,
            json!({"path": "/io", "transports": ["polling", "websocket"], "upgrade": true}),
        )
        .await;
    let mut control = a.control().await;
    eventually("the upgrade to show in GetSocket", async || {
        control
            .get_socket(GetSocketRequest {
                socket_id: sid.clone(),
            })
            .await
            .is_ok_and(|s| {
                s.into_inner()
                    .socket
                    .is_some_and(|s| s.transport == "websocket")
            })
    })
    .await;
}

#[tokio::test]
async fn a_node_stopped_gracefully_leaves_the_node_list_at_once() {
    let (_redis, a, b) = two_nodes().await;
    let mut control = a.control().await;
    eventually("both nodes listed", async || {
        control
            .get_info(GetInfoRequest {})
            .await
            .is_ok_and(|i| i.into_inner().nodes == ["node-a", "node-b"])
    })
    .await;
    assert!(b.terminate().await.success());
    let info = control
        .get_info(GetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        info.nodes,
        ["node-a"],
        "without waiting for cluster.node_ttl"
    );
}

fn signal(gateway: &Gateway, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &gateway.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal}");
}

async fn send_to(control: &mut Control, sid: &str) -> Result<(), tonic::Status> {
    control
        .send(SendRequest {
            target: to_sockets(&[sid]),
            ..event("direct", json!({}))
        })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn sends_to_sockets_of_another_node_get_precise_statuses_from_the_directory() {
    let redis = Redis::start().await;
    let a = node(&redis, "node-a").start().await;
    // A node expiry long enough that the paused node stays listed during the test.
    let (b, mut on_b, _) = Scene::of(node(&redis, "node-b").env("CLUSTER__NODE_TTL", "30s"))
        .await
        .into_parts();
    let bob = on_b.login(ws("bob")).await;
    let carol = on_b.connect("carol", Transport::Websocket).await;
    let mut control = a.control().await;

    send_to(&mut control, &bob).await.expect("Send to bob on B");
    assert_eq!(on_b.next_event("bob", "direct").await, json!({}));
    let unknown = send_to(&mut control, "AAAAAAAAAAAAAAAA")
        .await
        .expect_err("an id connected nowhere");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let waiting = send_to(&mut control, &carol)
        .await
        .expect_err("a socket of B that has not authenticated");
    assert_eq!(waiting.code(), Code::FailedPrecondition, "{waiting:?}");
    // Once carol authenticates, the directory says so.
    on_b.authenticate("carol", &tokens::for_user("carol")).await;
    eventually("carol to be reachable from A", async || {
        send_to(&mut control, &carol).await.is_ok()
    })
    .await;
    on_b.next_event("carol", "direct").await;

    // With B paused, it cannot answer a question: a Send to its socket succeeds anyway,
    // so the check did not ask every node. (The event waits in B's Redis connection.)
    // A learns of B's hash at its next heartbeat (until then it asks every node, which
    // the paused B cannot answer): retried until then.
    eventually(
        "a Send to a socket of a node that cannot answer questions",
        async || {
            signal(&b, "-STOP");
            let paused = send_to(&mut control, &bob).await;
            signal(&b, "-CONT");
            paused.is_ok()
        },
    )
    .await;
    signal(&b, "-STOP");
    let unknown = send_to(&mut control, "BBBBBBBBBBBBBBBB").await;
    signal(&b, "-CONT");
    // An unknown id is still asked to every node, which cannot all answer.
    assert!(unknown.is_err(), "{unknown:?}");
    assert_eq!(on_b.next_event("bob", "direct").await, json!({}));
}

#[tokio::test]
async fn the_sockets_of_a_killed_node_become_not_found() {
    let (redis, a, b) = two_nodes().await;
    let (b, mut on_b, _) = Scene::on(b).await.into_parts();
    let bob = on_b.login(ws("bob")).await;
    let mut control = a.control().await;
    send_to(&mut control, &bob).await.expect("Send to bob on B");

    b.kill().await;
    let killed = Instant::now();
    eventually("bob to be NOT_FOUND", async || {
        send_to(&mut control, &bob)
            .await
            .is_err_and(|e| e.code() == Code::NotFound)
    })
    .await;
    // At once in principle (Redis drops the dead node's subscriptions); bounded by
    // cluster.node_ttl (1.5 s in tests) in any case, plus slack for a busy machine.
    assert!(
        killed.elapsed() < Duration::from_secs(6),
        "NOT_FOUND within node_ttl, not {:?}",
        killed.elapsed()
    );

    // A node restarted with the same id at once takes its predecessor's sockets out of
    // the directory when it starts, without waiting for the expiry.
    let (b, mut on_b, _) = Scene::of(node(&redis, "node-b")).await.into_parts();
    let dave = on_b.login(ws("dave")).await;
    eventually("dave to be reachable from A", async || {
        send_to(&mut control, &dave).await.is_ok()
    })
    .await;
    b.kill().await;
    let _b = node(&redis, "node-b").start().await;
    let gone = send_to(&mut control, &dave)
        .await
        .expect_err("a socket of the replaced process");
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
}

/// Connects `id` and authenticates it as `user`; the `unauthenticated` message, if refused.
async fn refused_login(clients: &mut fixture::sio::Clients, id: &str, user: &str) -> String {
    clients.connect(id, Transport::Websocket).await;
    clients
        .emit(
            id,
            "authenticate",
            json!([{"token": tokens::for_user(user)}]),
        )
        .await;
    let refusal = clients.next_event(id, "unauthenticated").await;
    clients.disconnected(id).await;
    refusal["message"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_users_connection_limit_counts_its_sockets_on_every_node() {
    let redis = Redis::start().await;
    let limited = |id: &str| node(&redis, id).env("EDGE__LIMITS__MAX_CONNECTIONS_PER_USER", "2");
    let (a, b) = (
        limited("node-a").start().await,
        limited("node-b").start().await,
    );
    let (a, mut on_a, mut control) = Scene::on(a).await.into_parts();
    let (b, mut on_b, _) = Scene::on(b).await.into_parts();
    on_a.login(ws("a1").user("u")).await;
    on_b.login(ws("b1").user("u")).await;

    // One socket on each node: a third is refused on either.
    let message = "Too many connections for this user. Please close some and retry.";
    assert_eq!(refused_login(&mut on_a, "a2", "u").await, message);
    assert_eq!(refused_login(&mut on_b, "b2", "u").await, message);
    let refused = "sockgate_refused_total{reason=\"connections_per_user\"} ";
    assert_eq!((a.metric(refused).await, b.metric(refused).await), (1, 1));

    // The socket on B leaves: its place can be taken on A, and then B is full again.
    on_b.close("b1").await;
    eventually("b1 to be gone from the listings", async || {
        sockets_of(&mut control, "u").await == 1
    })
    .await;
    on_a.login(ws("a3").user("u")).await;
    assert_eq!(refused_login(&mut on_b, "b3", "u").await, message);
    // Other users are not limited by this one.
    on_b.login(ws("v1").user("v")).await;
    assert_eq!(sockets_of(&mut control, "u").await, 2);
}

#[tokio::test]
async fn a_batch_groups_the_sends_for_each_node() {
    // bob, bob2, carol and bob again went to B in two questions (the join came between).
    batch_across_nodes(&[], 4).await;
}

#[tokio::test]
async fn with_recovery_a_batch_records_its_sends_together() {
    // bob, alice and bob2 recorded in one round trip, then the room and bob again in
    // another (the join came between); carol, listed as not authenticated, and the
    // unknown id took the unary path.
    batch_across_nodes(&[("RECOVERY__ENABLED", "true")], 5).await;
}

#[tokio::test]
async fn with_recovery_a_batch_fails_each_send_while_redis_is_down_and_works_again_after() {
    let mut redis = Redis::start().await;
    let start = |id| node(&redis, id).env("RECOVERY__ENABLED", "true").start();
    let (a, _b) = (start("node-a").await, start("node-b").await);
    let (_a, mut on_a, mut control) = Scene::on(a).await.into_parts();
    let alice = on_a.login(ws("alice")).await;
    let batch = |n: u32| BatchRequest {
        commands: vec![
            send_command(&alice, "x", json!(n)),
            SendRequest {
                target: to_all(),
                ..event("y", json!(n))
            }
            .into(),
        ],
        parallel: false,
    };

    redis.kill().await;
    let started = Instant::now();
    let results = control
        .batch(batch(1))
        .await
        .expect("the batch is answered")
        .into_inner()
        .results;
    assert!(started.elapsed() < Duration::from_secs(4));
    for result in &results {
        assert_eq!(
            Code::from(result.code as i32),
            Code::Unavailable,
            "{results:?}"
        );
        assert!(
            result.message.contains("the event was not sent"),
            "{results:?}"
        );
    }

    redis.restart().await;
    // Once the node is back on Redis, the next batch is recorded and delivered, once.
    eventually("a batch to be recorded again", async || {
        let results = control.batch(batch(2)).await.unwrap().into_inner().results;
        results.iter().all(|r| r.code == Code::Ok as u32)
    })
    .await;
    assert_eq!(on_a.next_event("alice", "x").await, json!(2));
    assert_eq!(on_a.next_event("alice", "y").await, json!(2));
    assert!(
        !on_a.has_event("alice", "x"),
        "nothing of the failed batch, nor twice"
    );
}

/// A batch of sends to sockets of two nodes, some refused, a join in the middle, sent to
/// node A: each result, `grouped` commands grouped, and each event once in the batch's
/// order.
async fn batch_across_nodes(env: &[(&str, &str)], grouped: u64) {
    let redis = Redis::start().await;
    let start = |id| {
        env.iter()
            .fold(node(&redis, id), |n, (k, v)| n.env(k, v))
            .start()
    };
    let (a, b) = (start("node-a").await, start("node-b").await);
    let (a, mut on_a, mut control) = Scene::on(a).await.into_parts();
    let (_b, mut on_b, _) = Scene::on(b).await.into_parts();
    let alice = on_a.login(ws("alice")).await;
    // Connected before bob logs in: B writes its directory in order, so once bob is
    // listed, carol is too.
    let carol = on_b.connect("carol", Transport::Websocket).await;
    let [bob, bob2] = on_b.logins([ws("bob"), polling("bob2").user("bob")]).await;
    let metric = "sockgate_control_batch_grouped_total ";
    // A groups sends for B once it knows B's directory (B's writes, A's heartbeat).
    eventually("A to group a send for a socket of B", async || {
        let probe = BatchRequest {
            commands: vec![send_command(&bob, "probe", json!(0))],
            parallel: false,
        };
        control.batch(probe).await.unwrap();
        a.metric(metric).await > 0
    })
    .await;
    let before = a.metric(metric).await;

    let commands = vec![
        send_command(&bob, "x", json!(1)),
        send_command(&alice, "x", json!(2)),
        send_command(&bob2, "x", json!(3)),
        send_command(&carol, "x", json!(0)),
        send_command("AAAAAAAAAAAAAAAA", "x", json!(0)),
        JoinRequest {
            target: to_sockets(&[&bob]),
            rooms: vec!["room-b".into()],
        }
        .into(),
        SendRequest {
            target: to_rooms(&["room-b"]),
            ..event("y", json!("room"))
        }
        .into(),
        send_command(&bob, "x", json!(4)),
    ];
    let results = control
        .batch(BatchRequest {
            commands,
            parallel: false,
        })
        .await
        .expect("the batch")
        .into_inner()
        .results;
    let codes: Vec<Code> = results.iter().map(|r| Code::from(r.code as i32)).collect();
    use Code::{FailedPrecondition, NotFound, Ok};
    assert_eq!(
        codes,
        [Ok, Ok, Ok, FailedPrecondition, NotFound, Ok, Ok, Ok],
        "{results:?}"
    );
    assert!(
        results[3].message.contains("has not authenticated"),
        "{results:?}"
    );
    assert_eq!(a.metric(metric).await - before, grouped);

    assert_eq!(on_a.next_event("alice", "x").await, json!(2));
    assert_eq!(on_b.next_event("bob2", "x").await, json!(3));
    // In the batch's order on bob: the first send, the join, the room, the last send.
    assert_eq!(on_b.next_event("bob", "x").await, json!(1));
    assert_eq!(on_b.next_event("bob", "y").await, json!("room"));
    assert_eq!(on_b.next_event("bob", "x").await, json!(4));
    assert!(!on_b.has_event("carol", "x"));
}

fn send_command(sid: &str, name: &str, data: serde_json::Value) -> BatchCommand {
    SendRequest {
        target: to_sockets(&[sid]),
        ..event(name, data)
    }
    .into()
}
