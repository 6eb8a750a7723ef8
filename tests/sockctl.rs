//! `sockctl`, the real binary, against the real gateway: every subcommand's table and JSON
//! output, and its exit codes. (Token and TLS handling against a server that requires
//! them: `control-client/tests/tls_and_tokens.rs`.)

mod fixture;

use std::{process::Stdio, time::Duration};

use fixture::{
    Gateway, PATIENCE,
    eventually::eventually,
    scene::Scene,
    sio::{Transport, ws},
    sockctl::{self, run},
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A well-formed socket id that is connected nowhere.
const UNKNOWN_SID: &str = "AAAAAAAAAAAAAAAA";

fn one_line_error(run: &sockctl::Run, starts: &str) {
    let stderr = run.stderr.trim_end();
    assert!(
        stderr.starts_with(starts) && !stderr.contains('\n'),
        "expected one line starting {starts:?}, got {stderr:?}"
    );
}

#[tokio::test]
async fn read_subcommands_print_tables_and_json() {
    sockctl::binary(); // built before any client connects: the auth timeout runs meanwhile
    let (gateway, mut clients, _) = Scene::start().await.into_parts();
    let alice = clients.login(ws("alice")).await;
    let anon = clients.connect("anon", Transport::Polling).await;

    let info = run(&gateway, &["info"]).await;
    assert_eq!(info.code, 0, "{info:?}");
    assert!(info.stdout.contains("adapter: memory"), "{}", info.stdout);
    assert!(
        info.stdout
            .contains("sockets: 2 (1 authenticated, 0 authenticating, 1 unauthorized)"),
        "{}",
        info.stdout
    );
    let info = run(&gateway, &["info", "--json"]).await.json();
    assert_eq!(info["sockets"]["total"], 2);
    assert_eq!(info["sockets"]["authenticated"], 1);
    assert_eq!(info["nodes"], json!([info["node_id"]]));

    let table = run(&gateway, &["sockets"]).await;
    assert_eq!(table.code, 0);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("ID  "), "{}", table.stdout);
    assert_eq!(lines.len(), 3, "{}", table.stdout);
    let alice_line = lines.iter().find(|l| l.starts_with(&alice)).unwrap();
    assert!(alice_line.contains("alice") && alice_line.contains("authenticated"));
    assert!(alice_line.contains("websocket") && alice_line.contains("user:alice"));

    let all = run(&gateway, &["sockets", "--json"]).await.json();
    let mut ids: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut expected = vec![alice.as_str(), anon.as_str()];
    expected.sort();
    assert_eq!(ids, expected);

    let ids_of = |value: Value| -> Vec<String> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let by_user = run(&gateway, &["sockets", "--user", "alice", "--json"]).await;
    assert_eq!(ids_of(by_user.json()), vec![alice.clone()]);
    let by_state = run(&gateway, &["sockets", "--state", "unauthorized", "--json"]).await;
    assert_eq!(ids_of(by_state.json()), vec![anon.clone()]);
    let by_room = run(&gateway, &["sockets", "--room", "user:alice", "--json"]).await;
    assert_eq!(ids_of(by_room.json()), vec![alice.clone()]);

    let socket = run(&gateway, &["socket", &alice]).await;
    assert_eq!(socket.code, 0);
    assert!(
        socket.stdout.contains(&format!("id:        {alice}")),
        "{}",
        socket.stdout
    );
    assert!(
        socket.stdout.contains("user:      alice"),
        "{}",
        socket.stdout
    );
    let socket = run(&gateway, &["socket", &alice, "--json"]).await.json();
    assert_eq!(socket["user_id"], "alice");
    assert_eq!(socket["state"], "authenticated");
    assert_eq!(socket["transport"], "websocket");
    assert!(
        socket["rooms"]
            .as_array()
            .unwrap()
            .contains(&json!("user:alice"))
    );
    assert!(socket["connected_at"].as_str().unwrap().ends_with('Z'));

    let rooms = run(&gateway, &["rooms"]).await;
    assert_eq!(rooms.code, 0);
    assert!(rooms.stdout.starts_with("ROOM"), "{}", rooms.stdout);
    assert!(rooms.stdout.contains("io-default"), "{}", rooms.stdout);
    let rooms = run(&gateway, &["rooms", "--prefix", "user:", "--json"])
        .await
        .json();
    assert_eq!(rooms, json!([{"name": "user:alice", "members": 1}]));

    let missing = run(&gateway, &["socket", UNKNOWN_SID]).await;
    assert_eq!(missing.code, 6, "{missing:?}");
    one_line_error(&missing, "sockctl: not found:");
    let malformed = run(&gateway, &["socket", "nope"]).await;
    assert_eq!(malformed.code, 7, "{malformed:?}");
    one_line_error(&malformed, "sockctl: invalid argument:");
}

#[tokio::test]
async fn write_subcommands_act_on_sockets() {
    sockctl::binary(); // built before any client connects: the auth timeout runs meanwhile
    let (gateway, mut clients, _) = Scene::start().await.into_parts();
    let [alice, bob] = clients.logins([ws("alice"), ws("bob")]).await;
    let rooms_of =
        |value: Value| -> Vec<String> { serde_json::from_value(value["rooms"].clone()).unwrap() };

    let joined = run(&gateway, &["join", &alice, "chat:a", "chat:b"]).await;
    assert_eq!(joined.code, 0, "{joined:?}");
    assert_eq!(joined.stdout, format!("{alice} joined chat:a, chat:b\n"));
    let rooms = rooms_of(run(&gateway, &["socket", &alice, "--json"]).await.json());
    assert!(rooms.contains(&"chat:a".into()) && rooms.contains(&"chat:b".into()));
    let left = run(&gateway, &["leave", &alice, "chat:b", "--json"])
        .await
        .json();
    assert_eq!(left, json!({"ok": true}));
    let rooms = rooms_of(run(&gateway, &["socket", &alice, "--json"]).await.json());
    assert!(rooms.contains(&"chat:a".into()) && !rooms.contains(&"chat:b".into()));

    let sent = run(
        &gateway,
        &["send", "--socket", &alice, "direct", r#"{"n":1}"#],
    )
    .await;
    assert_eq!(sent.code, 0, "{sent:?}");
    assert_eq!(sent.stdout, "sent to 1 socket(s)\n");
    assert_eq!(clients.next_event("alice", "direct").await, json!({"n": 1}));

    let sent = run(
        &gateway,
        &["send", "--room", "chat:a", "room", "[1,2]", "--json"],
    )
    .await;
    assert_eq!(sent.json()["recipients"], 1);
    assert_eq!(clients.next_event("alice", "room").await, json!([1, 2]));

    let sent = run(&gateway, &["send", "--socket", &alice, "negative", "-1.5"]).await;
    assert_eq!(sent.code, 0, "{sent:?}");
    assert_eq!(clients.next_event("alice", "negative").await, json!(-1.5));

    let sent = run(&gateway, &["send", "--user", "bob", "user", r#""hi""#]).await;
    assert_eq!(sent.code, 0);
    assert_eq!(clients.next_event("bob", "user").await, json!("hi"));

    let sent = run(
        &gateway,
        &[
            "send",
            "--all",
            "everyone",
            "{}",
            "--except-room",
            "chat:a",
            "--json",
        ],
    )
    .await;
    assert_eq!(sent.json()["recipients"], 1);
    clients.next_event("bob", "everyone").await;
    run(&gateway, &["send", "--socket", &alice, "marker", "{}"]).await;
    clients.next_event("alice", "marker").await;
    assert!(
        !clients.has_event("alice", "everyone"),
        "except-room was ignored"
    );

    clients.reply_to("alice", "poll", json!({"ok": true})).await;
    let acked = run(
        &gateway,
        &[
            "send", "--socket", &alice, "poll", "{}", "--ack", "5s", "--json",
        ],
    )
    .await
    .json();
    assert_eq!(
        acked["acks"],
        json!([{"socket_id": alice, "data": {"ok": true}}])
    );
    assert_eq!(acked["timed_out"], json!([]));
    let table = run(
        &gateway,
        &["send", "--socket", &alice, "poll", "{}", "--ack", "5s"],
    )
    .await;
    assert_eq!(table.code, 0);
    assert!(table.stdout.contains("SOCKET") && table.stdout.contains(r#"{"ok":true}"#));

    let unanswered = run(
        &gateway,
        &[
            "send", "--socket", &bob, "quiz", "{}", "--ack", "300ms", "--json",
        ],
    )
    .await;
    assert_eq!(unanswered.code, 9, "{unanswered:?}");
    let report: Value = serde_json::from_str(&unanswered.stdout).unwrap();
    assert_eq!(report["timed_out"], json!([bob]));
    one_line_error(
        &unanswered,
        "sockctl: 1 socket(s) did not acknowledge in time",
    );

    let bad_json = run(&gateway, &["send", "--socket", &alice, "e", "{nope"]).await;
    assert_eq!(bad_json.code, 2, "{bad_json:?}");
    one_line_error(&bad_json, "sockctl: invalid argument: the data is not JSON");
    let reserved = run(&gateway, &["send", "--socket", &alice, "ping", "{}"]).await;
    assert_eq!(reserved.code, 7, "{reserved:?}");
    one_line_error(&reserved, "sockctl: invalid argument:");
    let no_target = run(&gateway, &["send", "e", "{}"]).await;
    assert_eq!(no_target.code, 2, "{no_target:?}");
    let two_targets = run(&gateway, &["send", "--all", "--room", "r", "e", "{}"]).await;
    assert_eq!(two_targets.code, 2, "{two_targets:?}");
    let missing = run(&gateway, &["send", "--socket", UNKNOWN_SID, "e", "{}"]).await;
    assert_eq!(missing.code, 6);
    let missing = run(&gateway, &["join", UNKNOWN_SID, "chat:a"]).await;
    assert_eq!(missing.code, 6);
    let bad_room = run(&gateway, &["join", &alice, "$sg:internal"]).await;
    assert_eq!(bad_room.code, 7, "{bad_room:?}");

    let gone = run(&gateway, &["disconnect", &bob, "--reason", "maintenance"]).await;
    assert_eq!(gone.code, 0, "{gone:?}");
    assert_eq!(gone.stdout, format!("{bob} disconnected\n"));
    assert_eq!(
        clients.next_event("bob", "force_disconnect").await["reason"],
        "maintenance"
    );
    assert_eq!(clients.disconnected("bob").await, "io server disconnect");
    assert_eq!(run(&gateway, &["socket", &bob]).await.code, 6);
    assert_eq!(run(&gateway, &["disconnect", &bob]).await.code, 6);
}

#[tokio::test]
async fn send_leaves_out_the_sockets_named_in_except_socket() {
    sockctl::binary(); // built before any client connects: the auth timeout runs meanwhile
    let (gateway, mut clients, _) = Scene::start().await.into_parts();
    let mut ids = Vec::new();
    for user in ["alice", "bob", "carol"] {
        let id = clients.login(ws(user)).await;
        let joined = run(&gateway, &["join", &id, "chat:x"]).await;
        assert_eq!(joined.code, 0, "{joined:?}");
        ids.push(id);
    }
    let [alice, _bob, carol] = &ids[..] else {
        unreachable!("three sockets")
    };

    let sent = run(
        &gateway,
        &[
            "send",
            "--room",
            "chat:x",
            "news",
            r#"{"n":1}"#,
            "--except-socket",
            alice,
            "--except-socket",
            carol,
            "--json",
        ],
    )
    .await;
    assert_eq!(sent.code, 0, "{sent:?}");
    assert_eq!(sent.json()["recipients"], 1);
    assert_eq!(clients.next_event("bob", "news").await, json!({"n": 1}));
    // A socket's events arrive in order: once the marker sent after `news` is in, `news`
    // would be too.
    for (name, id) in [("alice", alice), ("carol", carol)] {
        run(&gateway, &["send", "--socket", id, "marker", "{}"]).await;
        clients.next_event(name, "marker").await;
        assert!(
            !clients.has_event(name, "news"),
            "--except-socket {name} was ignored"
        );
    }
}

#[tokio::test]
async fn watch_streams_json_lines_until_interrupted() {
    sockctl::binary(); // built before any client connects: the auth timeout runs meanwhile
    let (gateway, mut clients, _) = Scene::start().await.into_parts();
    let alice = clients.login(ws("alice")).await;
    let mut watch = sockctl::command(&gateway)
        .args([
            "watch",
            "--json",
            "--kind",
            "client-event",
            "--event",
            "chat:*",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sockctl watch");
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();

    // The watch subscribes at some point after it starts: emit until one arrives.
    let first = eventually("watch to print an event", async || {
        clients
            .emit("alice", "other", json!([{"skip": true}]))
            .await;
        clients.emit("alice", "chat:msg", json!([{"t": 1}])).await;
        let line = tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await;
        line.ok().map(|line| line.unwrap().expect("a line"))
    })
    .await;
    let event: Value = serde_json::from_str(&first).expect("one JSON object per line");
    assert_eq!(event["kind"], "client_event");
    assert_eq!(event["event"], "chat:msg");
    assert_eq!(event["data"], json!({"t": 1}));
    assert_eq!(event["socket_id"], alice.as_str());
    assert_eq!(event["user_id"], "alice");

    let pid = watch.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let status = tokio::time::timeout(PATIENCE, watch.wait())
        .await
        .expect("watch stops on SIGINT")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    // Every line it printed is one JSON object of the filtered kind.
    while let Some(line) = lines.next_line().await.unwrap() {
        let event: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(event["event"], "chat:msg");
    }
}

#[tokio::test]
async fn watch_prints_a_line_per_event() {
    sockctl::binary(); // built before any client connects: the auth timeout runs meanwhile
    let (gateway, mut clients, _) = Scene::start().await.into_parts();
    let mut watch = sockctl::command(&gateway)
        .args(["watch", "--kind", "connected", "--kind", "auth_failed"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn sockctl watch");
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut n = 0;
    let mut sids = Vec::new();
    let line = eventually("watch to print an event", async || {
        n += 1;
        sids.push(
            clients
                .connect(&format!("c{n}"), Transport::Websocket)
                .await,
        );
        let line = tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await;
        line.ok().map(|line| line.unwrap().expect("a line"))
    })
    .await;
    // `TIME  connected  SOCKET  -`: one of the sockets connected so far (the watch may
    // have subscribed after the first ones).
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.len(), 4, "{line}");
    assert_eq!((words[1], words[3]), ("connected", "-"), "{line}");
    assert!(sids.iter().any(|sid| sid == words[2]), "{line}");

    // Whoever reads stops reading (`sockctl watch | head -1`): the next event ends it.
    drop(lines);
    let status = eventually("watch to exit once its output is closed", async || {
        n += 1;
        clients
            .connect(&format!("c{n}"), Transport::Websocket)
            .await;
        let status = tokio::time::timeout(Duration::from_millis(200), watch.wait()).await;
        status.ok().map(Result::unwrap)
    })
    .await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn failures_have_their_own_exit_codes_and_one_line_messages() {
    sockctl::binary(); // built before any client connects: the auth timeout runs meanwhile
    let gateway = Gateway::start().await;

    let refused = run(&gateway, &["--addr", "127.0.0.1:1", "info"]).await;
    assert_eq!(refused.code, 3, "{refused:?}");
    one_line_error(&refused, "sockctl: unavailable:");
    assert!(
        refused.stderr.contains("Connection refused"),
        "{}",
        refused.stderr
    );

    let no_file = run(&gateway, &["--token-file", "/nonexistent/token", "info"]).await;
    assert_eq!(no_file.code, 2, "{no_file:?}");
    one_line_error(&no_file, "sockctl: cannot read /nonexistent/token");
    let no_ca = run(&gateway, &["--ca", "/nonexistent/ca.pem", "info"]).await;
    assert_eq!(no_ca.code, 2, "{no_ca:?}");
    let https_plain = run(&gateway, &["--tls", "info"]).await;
    assert_eq!(
        https_plain.code, 3,
        "TLS to a plaintext port: {https_plain:?}"
    );
    one_line_error(&https_plain, "sockctl: unavailable:");

    // The gateway does not require a token yet (control-plane auth is configured
    // separately): one is sent and accepted.
    let with_token = run(&gateway, &["--token", "abc", "info", "--json"]).await;
    assert_eq!(with_token.json()["adapter"], "memory");

    let usage = run(&gateway, &["sockets", "--state", "sleepy"]).await;
    assert_eq!(usage.code, 2);
    let help = run(&gateway, &["--help"]).await;
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("Exit codes:"), "{}", help.stdout);
    for sub in [
        "info",
        "sockets",
        "socket",
        "rooms",
        "send",
        "join",
        "leave",
        "disconnect",
        "watch",
        "completions",
    ] {
        let help = run(&gateway, &[sub, "--help"]).await;
        assert_eq!(help.code, 0);
        assert!(
            help.stdout.contains(&format!("Examples:\n  sockctl {sub}")),
            "{sub} --help: {}",
            help.stdout
        );
    }
    for shell in ["bash", "zsh", "fish"] {
        let script = run(&gateway, &["completions", shell]).await;
        assert_eq!(script.code, 0);
        assert!(script.stdout.contains("sockctl"), "{shell}");
        assert!(script.stdout.contains("disconnect"), "{shell}");
    }
}

/// Against a gateway whose control plane authenticates callers (`control.auth`): the token
/// from `--token`, `SOCKGATE_TOKEN` or `--token-file` reaches it, and each refusal has its
/// exit code.
#[tokio::test]
async fn tokens_reach_a_gateway_that_requires_them() {
    sockctl::binary();
    let gateway = Gateway::builder().control_auth().start().await;
    let read = fixture::callers::token("read");
    let send = fixture::callers::token("read send");

    let missing = run(&gateway, &["info"]).await;
    assert_eq!(missing.code, 4, "{missing:?}");
    one_line_error(&missing, "sockctl: unauthenticated:");
    let forged = run(&gateway, &["--token", "not-a-jwt", "info"]).await;
    assert_eq!(forged.code, 4, "{forged:?}");
    let info = run(&gateway, &["--token", &read, "info", "--json"])
        .await
        .json();
    assert_eq!(info["adapter"], "memory");
    let denied = run(&gateway, &["--token", &read, "send", "--all", "e", "{}"]).await;
    assert_eq!(denied.code, 5, "{denied:?}");
    one_line_error(&denied, "sockctl: permission denied:");
    let file = gateway.dir().join("caller-token");
    std::fs::write(&file, format!("{send}\n")).unwrap();
    let sent = run(
        &gateway,
        &[
            "--token-file",
            file.to_str().unwrap(),
            "send",
            "--all",
            "e",
            "{}",
        ],
    )
    .await;
    assert_eq!(sent.code, 0, "{sent:?}");

    // The library too, with a refreshing token.
    let client = sockgate_client::Client::builder(gateway.control.to_string())
        .token(sockgate_client::TokenSource::refreshing(move || {
            Ok(send.clone())
        }))
        .connect()
        .await
        .unwrap();
    client.broadcast("e", &json!({})).await.unwrap();
    let anonymous = sockgate_client::Client::builder(gateway.control.to_string())
        .connect()
        .await
        .unwrap();
    let error = anonymous.info().await.unwrap_err();
    assert_eq!(error.kind(), sockgate_client::ErrorKind::Unauthenticated);
}

#[tokio::test]
async fn batch_reads_json_lines_from_stdin_and_prints_a_result_each() {
    sockctl::binary();
    let (gateway, mut clients, _) = Scene::start().await.into_parts();
    let alice = clients.login(ws("alice")).await;
    let lines = [
        json!({"send": {"event": "note", "data": {"n": 1}, "target": {"socket_ids": [alice]}}})
            .to_string(),
        String::new(),
        json!({"join": {"target": {"socket_ids": [alice]}, "rooms": ["chat:a"]}}).to_string(),
        json!({"send": {"event": "note", "target": {"socket_ids": [UNKNOWN_SID]}}}).to_string(),
        json!({"send": {"event": "note", "data": "room", "target": {"rooms": ["chat:a"]}}})
            .to_string(),
    ];
    let batch = |args: &[&str]| {
        let mut command = sockctl::command(&gateway);
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("run sockctl batch");
        let input = lines.join("\n");
        async move {
            use tokio::io::AsyncWriteExt;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(input.as_bytes()).await.unwrap();
            drop(stdin);
            let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
                .await
                .expect("sockctl finishes")
                .unwrap();
            sockctl::Run {
                code: output.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }
        }
    };

    // Two calls of at most two commands; line numbers count the blank line.
    let text = batch(&["batch", "--batch-size", "2"]).await;
    assert_eq!(text.code, 6, "the first failure is a NOT_FOUND: {text:?}");
    let rows: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(rows.len(), 4, "{}", text.stdout);
    assert!(rows[0].starts_with("1\tok\tsent"), "{}", text.stdout);
    assert_eq!(rows[1], "3\tok\tjoined");
    assert!(
        rows[2].starts_with("4\tnot found\tno connected socket with id"),
        "{}",
        text.stdout
    );
    assert!(rows[3].starts_with("5\tok\tsent"), "{}", text.stdout);
    assert_eq!(clients.next_event("alice", "note").await, json!({"n": 1}));
    assert_eq!(clients.next_event("alice", "note").await, json!("room"));

    let json_run = batch(&["batch", "-", "--json"]).await;
    let results: Vec<Value> = json_run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 4, "{json_run:?}");
    assert_eq!(results[0]["line"], 1);
    assert_eq!(results[0]["ok"], true);
    assert_eq!(results[2]["ok"], false);
    assert_eq!(results[2]["code"], 5);
    assert_eq!(results[2]["status"], "not found");

    // An unreadable file, or a line that is not a command: a usage error, nothing sent.
    let missing = run(&gateway, &["batch", "/nonexistent/commands.jsonl"]).await;
    assert_eq!(missing.code, 2, "{missing:?}");
    let path = gateway.dir().join("commands.jsonl");
    std::fs::write(&path, "{\"kick\": {}}\n").unwrap();
    let bad = run(&gateway, &["batch", path.to_str().unwrap()]).await;
    assert_eq!(bad.code, 2, "{bad:?}");
    one_line_error(&bad, "sockctl: invalid argument: line 1:");
}
