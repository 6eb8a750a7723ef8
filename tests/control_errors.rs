//! Bad control requests get a precise status and a message that says what is wrong, and
//! break nothing: the connected sockets keep working.

mod fixture;

use fixture::{scene::Scene, sio::ws, to_all, to_rooms, to_sockets};
use serde_json::json;
use sockgate_client::proto::{
    AckOptions, DisconnectRequest, GetSocketRequest, JoinRequest, ListRoomsRequest,
    ListSocketsRequest, SendRequest, Target,
};
use tonic::Code;

fn send(target: Option<Target>) -> SendRequest {
    SendRequest {
        event: "e".into(),
        data_json: "{}".into(),
        target,
        ..SendRequest::default()
    }
}

#[tokio::test]
async fn each_bad_request_gets_its_status() {
    let (gateway, mut clients, mut control) = Scene::start().await.into_parts();
    let sid = clients.login(ws("c").user("u")).await;
    let unknown = "AAAAAAAAAAAAAAAA";

    let cases: Vec<(&str, SendRequest, Code, &str)> = vec![
        (
            "unknown socket",
            send(to_sockets(&[unknown])),
            Code::NotFound,
            unknown,
        ),
        (
            "malformed id",
            send(to_sockets(&["nope"])),
            Code::InvalidArgument,
            "is not a socket id",
        ),
        (
            "empty target",
            send(Some(Target::default())),
            Code::InvalidArgument,
            "target is empty",
        ),
        (
            "no target",
            send(None),
            Code::InvalidArgument,
            "target is required",
        ),
        (
            "all plus rooms",
            send(Some(Target {
                all: true,
                rooms: vec!["r".into()],
                ..Target::default()
            })),
            Code::InvalidArgument,
            "cannot be combined",
        ),
        (
            "invalid JSON",
            SendRequest {
                data_json: "{not json".into(),
                ..send(to_sockets(&[&sid]))
            },
            Code::InvalidArgument,
            "data_json is not valid JSON",
        ),
        (
            "empty event",
            SendRequest {
                event: String::new(),
                ..send(to_sockets(&[&sid]))
            },
            Code::InvalidArgument,
            "event is empty",
        ),
        (
            "reserved event",
            SendRequest {
                event: "disconnect".into(),
                ..send(to_sockets(&[&sid]))
            },
            Code::InvalidArgument,
            "reserved",
        ),
        (
            "oversized payload",
            SendRequest {
                data_json: format!("\"{}\"", "x".repeat(1 << 20)),
                ..send(to_sockets(&[&sid]))
            },
            Code::InvalidArgument,
            "control.max_payload_bytes",
        ),
        (
            "ack timeout 0",
            SendRequest {
                ack: Some(AckOptions { timeout_ms: 0 }),
                ..send(to_sockets(&[&sid]))
            },
            Code::InvalidArgument,
            "ack.timeout_ms",
        ),
        (
            "reserved room",
            send(to_rooms(&["$sg:state:authenticated"])),
            Code::InvalidArgument,
            "reserved prefix",
        ),
    ];
    for (what, request, code, needle) in cases {
        let status = control.send(request).await.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(
            status.message().contains(needle),
            "{what}: {:?}",
            status.message()
        );
    }

    let status = control
        .get_socket(GetSocketRequest {
            socket_id: unknown.into(),
        })
        .await
        .expect_err("unknown socket");
    assert_eq!(status.code(), Code::NotFound);
    let status = control
        .join(JoinRequest {
            target: to_sockets(&[&sid]),
            rooms: vec![],
        })
        .await
        .expect_err("no rooms");
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = control
        .disconnect(DisconnectRequest {
            target: None,
            reason: String::new(),
        })
        .await
        .expect_err("no target");
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = control
        .list_sockets(ListSocketsRequest {
            page_size: 5000,
            ..Default::default()
        })
        .await
        .expect_err("page too large");
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = control
        .list_sockets(ListSocketsRequest {
            page_token: "not a socket id".into(),
            ..Default::default()
        })
        .await
        .expect_err("a page token that no page gave");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("page_token"), "{status:?}");
    let status = control
        .list_rooms(ListRoomsRequest {
            page_size: 5000,
            ..Default::default()
        })
        .await
        .expect_err("page too large");
    assert_eq!(status.code(), Code::InvalidArgument);

    // Nothing broke: the socket still receives.
    control
        .send(SendRequest {
            event: "still".into(),
            data_json: "true".into(),
            target: to_all(),
            ..Default::default()
        })
        .await
        .expect("send after errors");
    assert_eq!(clients.next_event("c", "still").await, json!(true));
    assert!(
        gateway.log_text().contains("control call refused"),
        "refusals are logged"
    );
}
