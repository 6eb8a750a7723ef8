//! `Batch`: mixed commands in order with one result each (a bad one fails alone), the
//! parallel mode, the scope of each command, the limits of a batch, and a Python (grpcio)
//! caller.

mod fixture;

use fixture::{
    Gateway,
    callers::{self, Bearer},
    scene::Scene,
    sio::{polling, ws},
    to_rooms, to_sockets,
};
use serde_json::json;
use sockgate_client::proto::{
    BatchCommand, BatchRequest, BatchResult, DisconnectRequest, JoinRequest, LeaveRequest,
    SendRequest, batch_result::Reply,
};
use tonic::Code;

fn send(
    target: Option<sockgate_client::proto::Target>,
    name: &str,
    data: serde_json::Value,
) -> BatchCommand {
    SendRequest {
        event: name.into(),
        data_json: data.to_string(),
        target,
        ..SendRequest::default()
    }
    .into()
}

fn join(target: Option<sockgate_client::proto::Target>, room: &str) -> BatchCommand {
    JoinRequest {
        target,
        rooms: vec![room.into()],
    }
    .into()
}

fn codes(results: &[BatchResult]) -> Vec<Code> {
    results.iter().map(|r| Code::from(r.code as i32)).collect()
}

#[tokio::test]
async fn commands_run_in_order_and_a_bad_one_fails_alone() {
    let (_gateway, mut clients, mut control) = Scene::start().await.into_parts();
    let [a, b] = clients
        .logins([ws("a").user("alice"), polling("b").user("bob")])
        .await;
    let commands = vec![
        // The join comes first: the send to the room after it reaches b.
        join(to_sockets(&[&b]), "news"),
        send(to_rooms(&["news"]), "headline", json!({"n": 1})),
        send(to_sockets(&["AAAAAAAAAAAAAAAA"]), "lost", json!({})),
        send(to_sockets(&[&a]), "disconnect", json!({})),
        BatchCommand::default(),
        send(to_sockets(&[&a]), "direct", json!("first")),
        LeaveRequest {
            target: to_sockets(&[&b]),
            rooms: vec!["news".into()],
        }
        .into(),
        send(to_rooms(&["news"]), "headline", json!({"n": 2})),
        send(to_sockets(&[&a]), "direct", json!("last")),
        DisconnectRequest {
            target: to_sockets(&[&a]),
            reason: "batch done".into(),
        }
        .into(),
    ];
    let results = control
        .batch(BatchRequest {
            commands,
            parallel: false,
        })
        .await
        .expect("the batch as a whole")
        .into_inner()
        .results;
    use Code::{InvalidArgument, NotFound, Ok};
    assert_eq!(
        codes(&results),
        [
            Ok,
            Ok,
            NotFound,
            InvalidArgument,
            InvalidArgument,
            Ok,
            Ok,
            Ok,
            Ok,
            Ok
        ]
    );
    assert!(
        results[2].message.contains("AAAAAAAAAAAAAAAA"),
        "{:?}",
        results[2]
    );
    assert!(results[3].message.contains("reserved"), "{:?}", results[3]);
    assert!(
        results[4].message.contains("commands[4] sets none of"),
        "{:?}",
        results[4]
    );
    assert!(matches!(results[0].reply, Some(Reply::Join(_))));
    assert!(matches!(results[1].reply, Some(Reply::Send(_))));
    assert!(matches!(results[6].reply, Some(Reply::Leave(_))));
    assert!(matches!(results[9].reply, Some(Reply::Disconnect(_))));
    assert!(results[2].reply.is_none());

    assert_eq!(clients.next_event("b", "headline").await, json!({"n": 1}));
    // In order on a's connection: both events, then the notice, then the disconnect.
    assert_eq!(clients.next_event("a", "direct").await, json!("first"));
    assert_eq!(clients.next_event("a", "direct").await, json!("last"));
    assert_eq!(
        clients.next_event("a", "force_disconnect").await["reason"],
        "batch done"
    );
    clients.disconnected("a").await;
    // b left the room before the second headline.
    control
        .send(SendRequest {
            target: to_sockets(&[&b]),
            event: "marker".into(),
            ..SendRequest::default()
        })
        .await
        .unwrap();
    clients.next_event("b", "marker").await;
    assert!(
        !clients.has_event("b", "headline"),
        "b got the second headline"
    );
}

#[tokio::test]
async fn a_parallel_batch_runs_every_command() {
    let (_gateway, mut clients, mut control) = Scene::start().await.into_parts();
    let [a, b] = clients.logins([ws("a"), ws("b")]).await;
    let commands = (0..100)
        .map(|n| {
            let to = if n % 2 == 0 { &a } else { &b };
            send(to_sockets(&[to]), "tick", json!(n))
        })
        .collect();
    let results = control
        .batch(BatchRequest {
            commands,
            parallel: true,
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(codes(&results), vec![Code::Ok; 100]);
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen.push(clients.next_event("a", "tick").await.as_u64().unwrap());
        seen.push(clients.next_event("b", "tick").await.as_u64().unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..100).collect::<Vec<u64>>());
}

#[tokio::test]
async fn each_command_needs_the_scope_of_its_method() {
    let (gateway, mut clients, _) = Scene::of(Gateway::builder().control_auth())
        .await
        .into_parts();
    let a = clients.login(ws("a")).await;
    let batch = || BatchRequest {
        commands: vec![
            send(to_sockets(&[&a]), "hello", json!(1)),
            join(to_sockets(&[&a]), "r"),
            DisconnectRequest {
                target: to_sockets(&[&a]),
                reason: String::new(),
            }
            .into(),
        ],
        parallel: false,
    };

    let mut sender = gateway
        .control_as(Bearer::token(&callers::token("send")))
        .await;
    let results = sender.batch(batch()).await.unwrap().into_inner().results;
    use Code::{Ok, PermissionDenied};
    assert_eq!(codes(&results), [Ok, PermissionDenied, PermissionDenied]);
    assert!(
        results[1]
            .message
            .contains("commands[1] (Join) needs scope `membership`"),
        "{:?}",
        results[1]
    );
    assert!(
        results[2]
            .message
            .contains("commands[2] (Disconnect) needs scope `disconnect`"),
        "{:?}",
        results[2]
    );
    assert_eq!(clients.next_event("a", "hello").await, json!(1));

    // A token with none of the scopes: the call passes, every command is refused.
    let mut nobody = gateway.control_as(Bearer::token(&callers::token(""))).await;
    let results = nobody.batch(batch()).await.unwrap().into_inner().results;
    assert_eq!(codes(&results), [PermissionDenied; 3]);

    // Admin may do everything.
    let mut admin = gateway
        .control_as(Bearer::token(&callers::token("admin")))
        .await;
    let results = admin.batch(batch()).await.unwrap().into_inner().results;
    assert_eq!(codes(&results), [Ok; 3]);
    assert_eq!(clients.next_event("a", "hello").await, json!(1));
    clients.disconnected("a").await;

    // No token: the call itself is refused.
    let mut anonymous = gateway.control_as(Bearer::raw(None)).await;
    let refused = anonymous.batch(batch()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(
        refused.message().contains("Batch needs a valid token"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_batch_over_its_limits_is_refused_whole() {
    let builder = Gateway::builder()
        .env("CONTROL__MAX_BATCH_COMMANDS", "3")
        .env("CONTROL__MAX_BATCH_BYTES", "2000");
    let (_gateway, mut clients, mut control) = Scene::of(builder).await.into_parts();
    let a = clients.login(ws("a")).await;

    let too_many = control
        .batch(BatchRequest {
            commands: (0..4)
                .map(|_| send(to_sockets(&[&a]), "many", json!(0)))
                .collect(),
            parallel: false,
        })
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), Code::InvalidArgument, "{too_many:?}");
    assert!(
        too_many
            .message()
            .contains("4 commands; the limit is 3 (control.max_batch_commands)"),
        "{too_many:?}"
    );

    let too_big = control
        .batch(BatchRequest {
            commands: (0..2)
                .map(|_| send(to_sockets(&[&a]), "big", json!("x".repeat(1500))))
                .collect(),
            parallel: false,
        })
        .await
        .unwrap_err();
    assert_eq!(too_big.code(), Code::ResourceExhausted, "{too_big:?}");
    assert!(
        too_big
            .message()
            .contains("the limit is 2000 (control.max_batch_bytes)"),
        "{too_big:?}"
    );

    // Within the limits it runs; nothing of the refused batches was sent.
    let results = control
        .batch(BatchRequest {
            commands: vec![send(to_sockets(&[&a]), "fits", json!("x".repeat(1500)))],
            parallel: false,
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(codes(&results), [Code::Ok]);
    clients.next_event("a", "fits").await;
    assert!(!clients.has_event("a", "many") && !clients.has_event("a", "big"));
}

#[tokio::test]
async fn a_python_grpcio_backend_calls_batch() {
    assert!(
        fixture::repo_root().join("gen/python").is_dir(),
        "gen/python is missing: run `npx buf generate` (scripts/test does)"
    );
    let (gateway, mut clients, _) = Scene::start().await.into_parts();
    let a = clients.login(ws("a")).await;
    let output = tokio::process::Command::new("python3")
        .current_dir(fixture::repo_root())
        .arg("tests/python/batch_client.py")
        .arg(gateway.control.to_string())
        .arg(&a)
        .output()
        .await
        .expect("run python3");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let codes: Vec<u64> = results
        .iter()
        .map(|r| r["code"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, [0, 0, 0, Code::NotFound as u64], "{results:?}");
    assert_eq!(results[0]["reply"], "send");
    assert_eq!(results[1]["reply"], "join");
    assert!(results[3]["reply"].is_null());
    assert_eq!(clients.next_event("a", "py:direct").await, json!({"n": 1}));
    assert_eq!(clients.next_event("a", "py:room").await, json!("hello"));
}

#[tokio::test]
async fn with_recovery_a_batched_send_is_recorded_like_a_unary_one() {
    let builder = Gateway::builder().env("RECOVERY__ENABLED", "true");
    let (_gateway, mut clients, mut control) = Scene::of(builder).await.into_parts();
    let a = clients.login(ws("a")).await;
    let results = control
        .batch(BatchRequest {
            commands: vec![send(to_sockets(&[&a]), "kept", json!({"n": 1}))],
            parallel: false,
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(codes(&results), [Code::Ok]);
    // The data, then the offset that a recovered socket would resume from.
    let args = clients.next_event_args("a", "kept").await;
    assert_eq!(args[0], json!({"n": 1}), "{args}");
    assert!(
        args[1].is_string(),
        "a replayable event carries an offset: {args}"
    );
}
