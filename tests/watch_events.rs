//! `WatchEvents` over real gRPC: lifecycle and client events, filters, several watchers,
//! a slow watcher that gets a drop marker, limits.

mod fixture;

use fixture::{Gateway, eventually::eventually, join, next_watched, scene::Scene, sio::ws};
use serde_json::json;
use sockgate_client::proto::{
    EventKind, WatchEventsRequest, WatchEventsResponse, socket_control_client::SocketControlClient,
};
use tonic::{Code, Streaming, transport::Endpoint};

async fn watch(gateway: &Gateway, request: WatchEventsRequest) -> Streaming<WatchEventsResponse> {
    gateway
        .control()
        .await
        .watch_events(request)
        .await
        .expect("WatchEvents")
        .into_inner()
}

#[tokio::test]
async fn watchers_see_the_lifecycle_and_client_events() {
    let (gateway, mut clients, mut control) = Scene::start().await.into_parts();
    let mut everything = watch(&gateway, WatchEventsRequest::default()).await;
    let mut chat_only = watch(
        &gateway,
        WatchEventsRequest {
            kinds: vec![EventKind::ClientEvent as i32],
            event_names: vec!["chat:*".into()],
            ..Default::default()
        },
    )
    .await;
    let mut in_room = watch(
        &gateway,
        WatchEventsRequest {
            room: "chat:x".into(),
            ..Default::default()
        },
    )
    .await;

    let sid = clients.login(ws("c").user("alice")).await;
    clients
        .emit_with_ack("c", "join", json!([{"rooms": ["chat:x"]}]))
        .await;
    clients.emit("c", "typing", json!([{"on": true}])).await;
    clients
        .emit(
            "c",
            "chat:message",
            json!([{"text": "hi"}, {"$bin": "AQID"}]),
        )
        .await;
    clients
        .emit_with_ack("c", "leave", json!([{"rooms": ["chat:x"]}]))
        .await;
    join(&mut control, &[&sid], &["vip"]).await;
    clients.close("c").await;

    let kinds = [
        EventKind::Connected,
        EventKind::Authenticated,
        EventKind::Joined,
        EventKind::ClientEvent,
        EventKind::ClientEvent,
        EventKind::Left,
        EventKind::Joined,
        EventKind::Disconnected,
    ];
    let mut seen = Vec::new();
    for kind in kinds {
        let event = next_watched(&mut everything).await;
        assert_eq!(event.kind(), kind, "after {seen:?}");
        assert_eq!(event.socket_id, sid);
        assert!(event.time.is_some() && !event.node_id.is_empty());
        if kind != EventKind::Connected {
            assert_eq!(event.user_id, "alice");
        }
        seen.push(event);
    }
    assert_eq!(seen[2].rooms, vec!["chat:x"]);
    assert_eq!(
        (seen[3].event.as_str(), seen[3].data_json.as_str()),
        ("typing", r#"{"on":true}"#)
    );
    assert_eq!(seen[4].event, "chat:message");
    assert_eq!(
        seen[4].attachments,
        vec![bytes::Bytes::from_static(&[1, 2, 3])]
    );
    assert_eq!(seen[6].rooms, vec!["vip"], "a Join RPC is reported too");
    assert_eq!(
        seen[7].reason,
        "client has manually disconnected the socket from the namespace"
    );

    let chat = next_watched(&mut chat_only).await;
    assert_eq!(chat.event, "chat:message");
    // In the room: the join (made while in it), the two client events, the leave (the
    // room is checked when the event happens: the socket is no longer in it after leaving,
    // so the Left event itself is not seen).
    let room_kinds: Vec<EventKind> = [
        next_watched(&mut in_room).await,
        next_watched(&mut in_room).await,
        next_watched(&mut in_room).await,
    ]
    .iter()
    .map(|e| e.kind())
    .collect();
    assert_eq!(
        room_kinds,
        [
            EventKind::Joined,
            EventKind::ClientEvent,
            EventKind::ClientEvent
        ]
    );
}

/// A watcher of client events `names` whose client accepts little data until it reads.
async fn slow_watcher(gateway: &Gateway, names: &[&str]) -> Streaming<WatchEventsResponse> {
    let channel = Endpoint::from_shared(format!("http://{}", gateway.control))
        .unwrap()
        .initial_stream_window_size(16 * 1024)
        .initial_connection_window_size(16 * 1024)
        .connect()
        .await
        .unwrap();
    SocketControlClient::new(channel)
        .watch_events(client_events(names))
        .await
        .unwrap()
        .into_inner()
}

/// A watch request for client events `names`.
fn client_events(names: &[&str]) -> WatchEventsRequest {
    WatchEventsRequest {
        event_names: names.iter().map(|n| n.to_string()).collect(),
        kinds: vec![EventKind::ClientEvent as i32],
        ..Default::default()
    }
}

#[tokio::test]
async fn a_stalled_watcher_holds_a_bounded_number_of_bytes() {
    // Events are few but large (clients choose their size): a queue bounded by its count
    // alone (1024) would hold them all.
    const EVENTS: usize = 200;
    let (gateway, mut clients, _) = Scene::start().await.into_parts();
    let mut stalled = slow_watcher(&gateway, &["blob", "end"]).await;
    let mut barrier = watch(&gateway, client_events(&["end"])).await;
    clients.login(ws("c").user("u")).await;
    // 200 × 200 KB = 40 MB, past the default budget of 16 MiB.
    let padding = "x".repeat(200_000);
    for i in 0..EVENTS {
        clients
            .emit("c", "blob", json!([{"i": i, "pad": padding}]))
            .await;
    }
    clients.emit("c", "end", json!([])).await;
    assert_eq!(next_watched(&mut barrier).await.event, "end");

    let (mut blobs, mut dropped) = (0usize, 0u64);
    while blobs + (dropped as usize) < EVENTS {
        let event = next_watched(&mut stalled).await;
        match event.kind() {
            EventKind::Dropped => dropped += event.dropped,
            _ => {
                assert_eq!(event.event, "blob", "blobs {blobs}, dropped {dropped}");
                blobs += 1;
            }
        }
    }
    assert!(
        blobs < EVENTS / 2 && dropped > 0,
        "a stalled watcher held {blobs} events of 200 KB"
    );
}

#[tokio::test]
async fn a_slow_watcher_gets_a_drop_marker_and_the_others_are_unaffected() {
    const FLOOD: usize = 600;
    // The client floods on purpose: its own event rate is not what this test is about.
    let builder = Gateway::builder()
        .env("WATCH__BUFFER", "32")
        .env("EDGE__LIMITS__EVENTS_PER_SECOND", "0");
    let (gateway, mut clients, _) = Scene::of(builder).await.into_parts();
    let mut slow = slow_watcher(&gateway, &["flood"]).await;
    let mut barrier = watch(&gateway, client_events(&["end"])).await;

    clients.login(ws("c").user("u")).await;
    let padding = "x".repeat(2000);
    for i in 0..FLOOD {
        clients
            .emit("c", "flood", json!([{"i": i, "pad": padding}]))
            .await;
    }
    clients.emit("c", "end", json!([])).await;
    assert_eq!(
        next_watched(&mut barrier).await.event,
        "end",
        "the fast watcher keeps up"
    );

    // Reading now: what was queued, then a marker for what was dropped.
    let (mut floods, mut dropped, mut markers) = (0usize, 0u64, 0);
    while floods + (dropped as usize) < FLOOD {
        let event = next_watched(&mut slow).await;
        match event.kind() {
            EventKind::Dropped => {
                markers += 1;
                dropped += event.dropped;
            }
            _ => floods += 1,
        }
    }
    assert!(
        markers >= 1 && dropped > 0,
        "floods {floods}, dropped {dropped}"
    );
    assert_eq!(
        floods + dropped as usize,
        FLOOD,
        "every event delivered or counted"
    );
    let (_, metrics) = gateway.admin_get("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == format!("sockgate_watch_dropped_total {dropped}")),
        "{metrics}"
    );
}

#[tokio::test]
async fn watch_limits_and_bad_filters() {
    let gateway = Gateway::builder()
        .env("WATCH__MAX_WATCHERS", "1")
        .start()
        .await;
    let first = watch(&gateway, WatchEventsRequest::default()).await;
    let mut control = gateway.control().await;
    let status = control
        .watch_events(WatchEventsRequest::default())
        .await
        .expect_err("second watcher");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("watch.max_watchers"));
    drop(first);
    // The slot frees once the first stream is gone (the server notices the reset).
    eventually("the watcher slot to free", async || {
        match control.watch_events(WatchEventsRequest::default()).await {
            Ok(_) => true,
            Err(status) if status.code() == Code::ResourceExhausted => false,
            Err(status) => panic!("{status:?}"),
        }
    })
    .await;
    let bad = control
        .watch_events(WatchEventsRequest {
            kinds: vec![99],
            ..Default::default()
        })
        .await
        .expect_err("unknown kind");
    assert_eq!(bad.code(), Code::InvalidArgument);
}
