//! `GetInfo`, `ListSockets` (filters, pagination), `ListRooms`, `Disconnect`.

mod fixture;

use fixture::{
    join,
    scene::Scene,
    sio::{Login, Transport, polling, ws},
    to_sockets,
};
use sockgate_client::proto::{
    DisconnectRequest, GetInfoRequest, ListRoomsRequest, ListSocketsRequest, SocketState,
};

#[tokio::test]
async fn info_counts_sockets_by_state() {
    let (_gateway, mut clients, mut control) = Scene::start().await.into_parts();
    clients.connect("anon", Transport::Websocket).await;
    clients.logins([polling("a"), ws("b")]).await;

    let info = control
        .get_info(GetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.adapter, "memory");
    assert_eq!(info.nodes, vec![info.node_id.clone()]);
    let counts = info.sockets.unwrap();
    assert_eq!(
        (counts.total, counts.authenticated, counts.unauthorized),
        (3, 2, 1)
    );
    // io-default, io-notification, user:a, user:b
    assert_eq!(info.rooms, 4);
}

#[tokio::test]
async fn list_sockets_filters_and_paginates() {
    let (_gateway, mut clients, mut control) = Scene::start().await.into_parts();
    let anon = clients.connect("anon", Transport::Websocket).await;
    let [b1, b2, b3, alice] = clients
        .logins([
            ws("b1").user("bob"),
            ws("b2").user("bob"),
            ws("b3").user("bob"),
            polling("a").user("alice"),
        ])
        .await;
    let mut bobs = vec![b1, b2, b3];
    bobs.sort();

    let lister = control.clone();
    let list = move |req: ListSocketsRequest| {
        let mut control = lister.clone();
        async move { control.list_sockets(req).await.unwrap().into_inner() }
    };
    let all = list(ListSocketsRequest::default()).await;
    assert_eq!(all.total, 5);
    assert_eq!(all.sockets.len(), 5);
    assert!(
        all.sockets.windows(2).all(|w| w[0].id < w[1].id),
        "ordered by id"
    );

    let of_bob = list(ListSocketsRequest {
        user_id: "bob".into(),
        ..Default::default()
    })
    .await;
    let ids: Vec<_> = of_bob.sockets.iter().map(|s| s.id.clone()).collect();
    assert_eq!(ids, bobs);

    let unauthorized = list(ListSocketsRequest {
        state: SocketState::Unauthorized as i32,
        ..Default::default()
    })
    .await;
    assert_eq!(unauthorized.sockets.len(), 1);
    assert_eq!(unauthorized.sockets[0].id, anon);
    assert_eq!(unauthorized.sockets[0].user_id, "");

    join(&mut control, &[&alice, &bobs[0]], &["chat:x"]).await;
    let in_room = list(ListSocketsRequest {
        room: "chat:x".into(),
        user_id: "bob".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(
        in_room.sockets.iter().map(|s| &s.id).collect::<Vec<_>>(),
        vec![&bobs[0]]
    );

    // Pages of 2 cover everything exactly once.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(ListSocketsRequest {
            page_size: 2,
            page_token: token,
            ..Default::default()
        })
        .await;
        assert!(page.sockets.len() <= 2);
        assert_eq!(page.total, 5);
        seen.extend(page.sockets.into_iter().map(|s| s.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        seen,
        all.sockets.iter().map(|s| s.id.clone()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn list_rooms_counts_members_and_hides_internal_rooms() {
    let (_gateway, mut clients, mut control) = Scene::start().await.into_parts();
    let [a, b] = clients.logins([ws("a"), ws("b")]).await;
    join(&mut control, &[&a, &b], &["chat:1"]).await;
    join(&mut control, &[&a], &["chat:2"]).await;

    let rooms = control
        .list_rooms(ListRoomsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let listed: Vec<(String, u32)> = rooms
        .rooms
        .iter()
        .map(|r| (r.name.clone(), r.members))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("chat:1".into(), 2),
            ("chat:2".into(), 1),
            ("io-default".into(), 2),
            ("io-notification".into(), 2),
            ("user:a".into(), 1),
            ("user:b".into(), 1),
        ]
    );
    let chat = control
        .list_rooms(ListRoomsRequest {
            prefix: "chat:".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(chat.total, 2);
    assert_eq!(chat.rooms[0].name, "chat:1");
    let next = control
        .list_rooms(ListRoomsRequest {
            prefix: "chat:".into(),
            page_size: 1,
            page_token: chat.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.rooms[0].name, "chat:2");
    assert!(next.next_page_token.is_empty());
}

#[tokio::test]
async fn disconnect_sends_the_reason_first() {
    let (_gateway, mut clients, mut control) = Scene::start().await.into_parts();
    for (id, transport) in [("ws", Transport::Websocket), ("poll", Transport::Polling)] {
        let [sid, keep] = clients
            .logins([
                Login::new(id, transport),
                Login::new(&format!("{id}-keep"), transport).user("k"),
            ])
            .await;
        control
            .disconnect(DisconnectRequest {
                target: to_sockets(&[&sid]),
                reason: "banned".into(),
            })
            .await
            .unwrap();
        let notice = clients.next_event(id, "force_disconnect").await;
        assert_eq!(notice["reason"], "banned");
        assert_eq!(clients.disconnected(id).await, "io server disconnect");
        let remaining = control
            .list_sockets(ListSocketsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(remaining.sockets.iter().any(|s| s.id == keep));
        assert!(!remaining.sockets.iter().any(|s| s.id == sid));
    }
}
