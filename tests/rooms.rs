//! Rooms: client `join` / `leave` checked by the validator (static patterns, `{user_id}`,
//! JWT room claim), and trusted `Join` / `Leave` RPCs by socket id, room and user.

mod fixture;

use fixture::{
    eventually::eventually,
    join, rooms_of,
    scene::Scene,
    sio::{polling, ws},
    to_rooms, to_sockets, to_users, tokens,
};
use serde_json::json;
use sockgate_client::proto::{JoinRequest, LeaveRequest, SendRequest};

#[tokio::test]
async fn client_join_gets_the_allowed_subset_and_an_ack() {
    let (_gateway, mut clients, mut control) = Scene::start().await.into_parts();
    let sid = clients.login(ws("c").user("u1")).await;

    let ack = clients
        .emit_with_ack(
            "c",
            "join",
            json!([{"rooms": ["chat:general", "private:u1", "private:u2", "admin", "$sg:state:authenticated"]}]),
        )
        .await;
    assert_eq!(
        ack[0],
        json!({
            "joined": ["chat:general", "private:u1"],
            "rejected": ["$sg:state:authenticated", "admin", "private:u2"]
        })
    );
    let rooms = rooms_of(&mut control, &sid).await;
    assert!(rooms.contains(&"chat:general".to_owned()));
    assert!(rooms.contains(&"private:u1".to_owned()));
    assert!(!rooms.contains(&"admin".to_owned()));
    assert!(!rooms.contains(&"private:u2".to_owned()));

    // A refused room really is not joined: a send to it does not arrive, while a send to
    // the socket right after does.
    let send = |room: &str, event: &str| SendRequest {
        event: event.into(),
        data_json: "1".into(),
        target: to_rooms(&[room]),
        ..SendRequest::default()
    };
    control.send(send("admin", "secret")).await.expect("send");
    control
        .send(SendRequest {
            target: to_sockets(&[&sid]),
            ..send("unused", "marker")
        })
        .await
        .expect("send");
    clients.next_event("c", "marker").await;
    assert!(!clients.has_event("c", "secret"));

    let left = clients
        .emit_with_ack("c", "leave", json!([{"rooms": ["chat:general"]}]))
        .await;
    assert_eq!(left[0], json!({"left": ["chat:general"], "rejected": []}));
    assert!(
        !rooms_of(&mut control, &sid)
            .await
            .contains(&"chat:general".to_owned())
    );
}

#[tokio::test]
async fn join_without_ack_still_joins_and_bad_requests_get_an_error_ack() {
    let (_gateway, mut clients, mut control) = Scene::start().await.into_parts();
    let sid = clients.login(polling("c").user("u1")).await;
    clients
        .emit("c", "join", json!([{"rooms": ["chat:quiet"]}]))
        .await;
    // The join has no ack to await: poll the control plane until it shows.
    eventually("the join to apply", async || {
        rooms_of(&mut control, &sid)
            .await
            .contains(&"chat:quiet".to_owned())
    })
    .await;

    let bad = clients
        .emit_with_ack("c", "join", json!([{"room": "chat:x"}]))
        .await;
    assert!(
        bad[0]["error"]
            .as_str()
            .unwrap()
            .contains("expected {rooms: [string]}"),
        "{bad}"
    );
    assert_eq!(bad[0]["joined"], json!([]));
    let bad = clients
        .emit_with_ack("c", "join", json!(["not an object"]))
        .await;
    assert!(bad[0]["error"].is_string());
    let many: Vec<String> = (0..101).map(|i| format!("chat:{i}")).collect();
    let too_many = clients
        .emit_with_ack("c", "join", json!([{"rooms": many}]))
        .await;
    assert!(
        too_many[0]["error"]
            .as_str()
            .unwrap()
            .contains("limit is 100")
    );
}

#[tokio::test]
async fn jwt_room_claim_extends_the_static_rules() {
    let (_gateway, mut clients, _control) = Scene::start().await.into_parts();
    clients
        .logins([
            ws("vip").token(&tokens::with_rooms("v", &["vip:*"])),
            ws("plain").user("p"),
        ])
        .await;
    let vip = clients
        .emit_with_ack("vip", "join", json!([{"rooms": ["vip:lounge"]}]))
        .await;
    assert_eq!(vip[0]["joined"], json!(["vip:lounge"]));
    let plain = clients
        .emit_with_ack("plain", "join", json!([{"rooms": ["vip:lounge"]}]))
        .await;
    assert_eq!(plain[0]["rejected"], json!(["vip:lounge"]));
}

#[tokio::test]
async fn rpc_join_and_leave_by_id_room_and_user() {
    let (_gateway, mut clients, mut control) = Scene::start().await.into_parts();
    let [a, b] = clients
        .logins([ws("a").user("alice"), polling("b").user("bob")])
        .await;

    // Trusted: no validator, any public room name.
    join(&mut control, &[&a], &["ops"]).await;
    control
        .join(JoinRequest {
            target: to_users(&["bob"]),
            rooms: vec!["team".into()],
        })
        .await
        .expect("join by user");
    control
        .join(JoinRequest {
            target: to_rooms(&["ops"]),
            rooms: vec!["team".into()],
        })
        .await
        .expect("join by room");
    assert!(rooms_of(&mut control, &a).await.contains(&"ops".to_owned()));
    assert!(
        rooms_of(&mut control, &a)
            .await
            .contains(&"team".to_owned())
    );
    assert!(
        rooms_of(&mut control, &b)
            .await
            .contains(&"team".to_owned())
    );
    assert!(!rooms_of(&mut control, &b).await.contains(&"ops".to_owned()));

    control
        .leave(LeaveRequest {
            target: to_rooms(&["team"]),
            rooms: vec!["team".into()],
        })
        .await
        .expect("leave by room");
    assert!(
        !rooms_of(&mut control, &a)
            .await
            .contains(&"team".to_owned())
    );
    assert!(
        !rooms_of(&mut control, &b)
            .await
            .contains(&"team".to_owned())
    );

    let reserved = control
        .join(JoinRequest {
            target: to_sockets(&[&a]),
            rooms: vec!["$sg:state:authenticated".into()],
        })
        .await
        .expect_err("reserved room");
    assert_eq!(reserved.code(), tonic::Code::InvalidArgument);
    assert!(reserved.message().contains("reserved prefix"));
}
