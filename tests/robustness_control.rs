//! Property-based requests at every `SocketControl` RPC: well-formed protobuf with hostile
//! contents (empty, huge, unicode, NUL and reserved names; bogus and real socket ids;
//! extreme numbers and unknown enum values; invalid JSON; oversized attachments), from a
//! seeded generator, many in parallel, while real sockets are connected. Every reply (and
//! every command's result in a `Batch` of hostile commands) is a success or a precise
//! refusal (never `INTERNAL` or `UNKNOWN`), and afterwards the
//! process is alive, its log shows no panic, and sockets, rooms, watchers, tasks and file
//! descriptors are back to baseline.
//!
//! `CONTROL_REQUESTS` sets the number of requests (4000 by default); `ROBUSTNESS_SEED`
//! replays a run.

mod fixture;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use fixture::{Gateway, raw, rng::Rng, tokens};
use futures_util::{SinkExt, StreamExt};
use sockgate_client::proto::{
    AckOptions, BatchCommand, BatchRequest, DisconnectRequest, GetInfoRequest, GetSocketRequest,
    JoinRequest, LeaveRequest, ListRoomsRequest, ListSocketsRequest, SendRequest, Target,
    WatchEventsRequest,
};
use tokio_tungstenite::tungstenite::Message;
use tonic::Code;

const PARALLEL: usize = 16;
const SOCKETS: usize = 6;

/// Codes a hostile request may get. `INTERNAL`, `UNKNOWN`, `UNAVAILABLE` (no cluster
/// here), `UNIMPLEMENTED` and `DATA_LOSS` would be bugs.
const ACCEPTABLE: &[Code] = &[
    Code::Ok,
    Code::InvalidArgument,
    Code::NotFound,
    Code::ResourceExhausted,
    Code::FailedPrecondition,
    Code::OutOfRange,
];

struct Strings {
    sids: Vec<String>,
}

impl Strings {
    fn string(&self, rng: &mut Rng) -> String {
        match rng.below(22) {
            0 => String::new(),
            1 => " ".into(),
            2 => "x".repeat(257),
            3 => "é".repeat(rng.below(300)),
            4 => "💥🚀\u{202e}".into(),
            5 => "a\u{0}b".into(),
            6 => "$sg:state:authenticated".into(),
            7 => "$sg:sid:".to_owned() + &"A".repeat(16),
            8 => "*".into(),
            9 => "user:alice".into(),
            10 => "chat:general".into(),
            11 => "io-default".into(),
            12 | 13 => rng.pick(&self.sids).clone(),
            14 => "AAAAAAAAAAAAAAAA".into(),
            15 => "not-a-socket-id".into(),
            16 => "\u{ffff}\u{fffe}".into(),
            17 => "../../etc/passwd".into(),
            18 => "%s%n%x".into(),
            19 => "x".repeat(70_000),
            20 => "{user_id}".into(),
            _ => format!("room-{}", rng.below(10)),
        }
    }

    fn strings(&self, rng: &mut Rng) -> Vec<String> {
        match rng.below(10) {
            0 => Vec::new(),
            1 => vec![String::new(); 3],
            2 => (0..10_001).map(|i| format!("r{i}")).collect(),
            3 => (0..rng.below(200)).map(|_| self.string(rng)).collect(),
            _ => (0..rng.below(4) + 1).map(|_| self.string(rng)).collect(),
        }
    }

    fn json(&self, rng: &mut Rng) -> String {
        rng.pick(&[
            "",
            "null",
            "{",
            "[1,2",
            "{\"a\":1}",
            "\"text\"",
            "1e999",
            "-0",
            "18446744073709551616",
            "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]",
            "\"\\ud800\"",
            "{\"__proto__\":{}}",
            "NaN",
            "true false",
            "{\"_placeholder\":true,\"num\":0}",
        ])
        .to_string()
    }

    fn target(&self, rng: &mut Rng) -> Option<Target> {
        if rng.chance(8) {
            return None;
        }
        let mut target = Target::default();
        match rng.below(5) {
            0 => target.socket_ids = self.strings(rng),
            1 => target.rooms = self.strings(rng),
            2 => target.user_ids = self.strings(rng),
            3 => target.all = true,
            _ => {
                target.socket_ids = self.strings(rng);
                target.rooms = self.strings(rng);
                target.user_ids = self.strings(rng);
                target.all = rng.chance(30);
            }
        }
        if rng.chance(30) {
            target.except_rooms = self.strings(rng);
        }
        Some(target)
    }

    fn number(&self, rng: &mut Rng) -> u32 {
        *rng.pick(&[0, 1, 2, 999, 1000, 1001, 65_535, i32::MAX as u32, u32::MAX])
    }

    fn enum_value(&self, rng: &mut Rng) -> i32 {
        *rng.pick(&[0, 1, 2, 3, 4, 7, 8, 9, -1, 99, i32::MAX, i32::MIN])
    }
}

/// Sends one random request; returns the RPC name and the status code.
async fn one_request(
    control: &mut sockgate_client::SocketControlClient<tonic::transport::Channel>,
    strings: &Strings,
    rng: &mut Rng,
) -> (&'static str, Code, String) {
    let code = |r: Result<(), tonic::Status>| match r {
        Ok(()) => (Code::Ok, String::new()),
        Err(s) => (s.code(), s.message().to_owned()),
    };
    let (rpc, (status, message)) = match rng.below(10) {
        0 => {
            let ack = match rng.below(4) {
                0 => Some(AckOptions {
                    timeout_ms: *rng.pick(&[0, 1, 50, 60_001, u32::MAX]),
                }),
                _ => None,
            };
            let attachments = match rng.below(6) {
                0 => vec![vec![0u8; 2 << 20]],
                1 => (0..rng.below(50)).map(|i| vec![i as u8; i]).collect(),
                _ => Vec::new(),
            };
            let request = SendRequest {
                event: strings.string(rng),
                data_json: strings.json(rng),
                attachments: attachments.into_iter().map(Into::into).collect(),
                target: strings.target(rng),
                ack,
                count_recipients: rng.chance(50),
            };
            ("Send", code(control.send(request).await.map(|_| ())))
        }
        1 => (
            "Join",
            code(
                control
                    .join(JoinRequest {
                        target: strings.target(rng),
                        rooms: strings.strings(rng),
                    })
                    .await
                    .map(|_| ()),
            ),
        ),
        2 => (
            "Leave",
            code(
                control
                    .leave(LeaveRequest {
                        target: strings.target(rng),
                        rooms: strings.strings(rng),
                    })
                    .await
                    .map(|_| ()),
            ),
        ),
        3 => (
            "ListSockets",
            code(
                control
                    .list_sockets(ListSocketsRequest {
                        room: strings.string(rng),
                        user_id: strings.string(rng),
                        state: strings.enum_value(rng),
                        page_size: strings.number(rng),
                        page_token: strings.string(rng),
                    })
                    .await
                    .map(|_| ()),
            ),
        ),
        4 => (
            "GetSocket",
            code(
                control
                    .get_socket(GetSocketRequest {
                        socket_id: strings.string(rng),
                    })
                    .await
                    .map(|_| ()),
            ),
        ),
        5 => (
            "ListRooms",
            code(
                control
                    .list_rooms(ListRoomsRequest {
                        prefix: strings.string(rng),
                        page_size: strings.number(rng),
                        page_token: strings.string(rng),
                    })
                    .await
                    .map(|_| ()),
            ),
        ),
        6 => (
            "GetInfo",
            code(control.get_info(GetInfoRequest {}).await.map(|_| ())),
        ),
        7 => {
            // Rarely: disconnecting everyone would end the run's sockets early.
            let mut target = strings.target(rng);
            if let Some(t) = target.as_mut()
                && t.all
                && rng.chance(90)
            {
                t.all = false;
            }
            (
                "Disconnect",
                code(
                    control
                        .disconnect(DisconnectRequest {
                            target,
                            reason: strings.string(rng),
                        })
                        .await
                        .map(|_| ()),
                ),
            )
        }
        8 => {
            let commands = (0..rng.below(12))
                .map(|_| hostile_command(strings, rng))
                .collect();
            let parallel = rng.chance(50);
            let outcome = control
                .batch(BatchRequest { commands, parallel })
                .await
                .map(|r| r.into_inner().results);
            // The call's own status, or the first command whose status is not precise.
            let status = match outcome {
                Err(status) => (status.code(), status.message().to_owned()),
                Ok(results) => results
                    .into_iter()
                    .map(|r| (Code::from(r.code as i32), r.message))
                    .find(|(code, message)| {
                        !ACCEPTABLE.contains(code) || (*code != Code::Ok && message.is_empty())
                    })
                    .unwrap_or((Code::Ok, String::new())),
            };
            ("Batch", status)
        }
        _ => {
            let request = WatchEventsRequest {
                kinds: (0..rng.below(4)).map(|_| strings.enum_value(rng)).collect(),
                event_names: strings.strings(rng),
                room: strings.string(rng),
            };
            let watched = match control.watch_events(request).await {
                // Read what comes for a moment, then hang up.
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    let _ = tokio::time::timeout(Duration::from_millis(5), stream.next()).await;
                    Ok(())
                }
                Err(status) => Err(status),
            };
            ("WatchEvents", code(watched))
        }
    };
    (rpc, status, message)
}

/// One command of a hostile `Batch` (sometimes none at all).
fn hostile_command(strings: &Strings, rng: &mut Rng) -> BatchCommand {
    let mut target = strings.target(rng);
    // Rarely: disconnecting everyone would end the run's sockets early.
    if let Some(t) = target.as_mut()
        && t.all
        && rng.chance(90)
    {
        t.all = false;
    }
    match rng.below(5) {
        0 => SendRequest {
            event: strings.string(rng),
            data_json: strings.json(rng),
            target,
            count_recipients: rng.chance(20),
            ..SendRequest::default()
        }
        .into(),
        1 => JoinRequest {
            target,
            rooms: strings.strings(rng),
        }
        .into(),
        2 => LeaveRequest {
            target,
            rooms: strings.strings(rng),
        }
        .into(),
        3 => DisconnectRequest {
            target,
            reason: strings.string(rng),
        }
        .into(),
        _ => BatchCommand::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_precise_statuses() {
    let total: usize = std::env::var("CONTROL_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4000);
    let mut rng = Rng::from_env("robustness_control");
    let gateway = Arc::new(
        Gateway::builder()
            .log_filter("sockgate=info,warn")
            .start()
            .await,
    );
    let baseline = gateway.snapshot().await;

    // Real sockets for the requests to act on: authenticated ones and one that is not.
    let mut sids = Vec::new();
    let mut readers = Vec::new();
    for n in 0..SOCKETS {
        let mut ws = raw::ws_open(gateway.edge).await.expect("socket connects");
        let sid = raw::ws_connect_ns(&mut ws).await.expect("sid");
        if n > 0 {
            ws.send(Message::text(format!(
                r#"42["authenticate",{{"token":"{}"}}]"#,
                tokens::for_user(&format!("alice{}", n % 2))
            )))
            .await
            .unwrap();
            raw::ws_until(&mut ws, r#"42["authenticated""#)
                .await
                .expect("authenticated");
        }
        sids.push(sid);
        readers.push(tokio::spawn(async move {
            while raw::ws_next_text(&mut ws).await.is_some() {}
        }));
    }
    let strings = Arc::new(Strings { sids });

    let outcomes = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
    let bad = Arc::new(Mutex::new(Vec::<String>::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..PARALLEL {
        let mut rng = rng.fork(worker as u64);
        let (gateway, strings, outcomes, bad) = (
            gateway.clone(),
            strings.clone(),
            outcomes.clone(),
            bad.clone(),
        );
        let share = total / PARALLEL + usize::from(worker < total % PARALLEL);
        tasks.push(tokio::spawn(async move {
            let mut control = gateway.control().await;
            for _ in 0..share {
                let (rpc, code, message) = one_request(&mut control, &strings, &mut rng).await;
                *outcomes
                    .lock()
                    .unwrap()
                    .entry(format!("{rpc} {code:?}"))
                    .or_default() += 1;
                if std::env::var_os("CONTROL_TRACE").is_some() && code != Code::Ok {
                    println!(
                        "{rpc}: {code:?} {}",
                        message.chars().take(200).collect::<String>()
                    );
                }
                // A status the client made up (the connection failed) is no reply.
                let precise = code == Code::Ok
                    || !(message.is_empty()
                        || message.contains("protocol error")
                        || message.contains("transport error"));
                if !ACCEPTABLE.contains(&code) || !precise {
                    bad.lock()
                        .unwrap()
                        .push(format!("{rpc}: {code:?} {message:?}"));
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("request worker");
    }
    println!(
        "robustness_control: {total} requests in {:?}, {PARALLEL} in parallel: {:?}",
        started.elapsed(),
        outcomes.lock().unwrap()
    );
    let bad = bad.lock().unwrap().clone();
    assert!(
        bad.is_empty(),
        "{} replies were not precise statuses, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(10)]
    );
    let outcomes = outcomes.lock().unwrap().clone();
    for rpc in [
        "Send",
        "Join",
        "Leave",
        "ListSockets",
        "GetSocket",
        "ListRooms",
        "GetInfo",
        "Disconnect",
        "WatchEvents",
        "Batch",
    ] {
        assert!(
            outcomes.keys().any(|k| k.starts_with(&format!("{rpc} "))),
            "{rpc} was never called: {outcomes:?}"
        );
    }
    assert!(
        outcomes.keys().any(|k| k.ends_with("InvalidArgument")),
        "no request was refused: the generator is not hostile enough"
    );

    gateway.assert_healthy().await;
    for reader in readers {
        reader.abort();
    }
    let settled = gateway.await_baseline(&baseline).await;
    println!("robustness_control: back to baseline {settled:?} after the last request");
    gateway.assert_healthy().await;
}
