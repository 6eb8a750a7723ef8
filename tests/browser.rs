//! A real browser: headless Chromium (Debian's `chromium`, driven by playwright-core from
//! `tests/browser/drive.mjs`) loads a page from another origin (a static server this test
//! starts on its own port), which uses the browser build of the official socket.io-client
//! with the JWT in `auth.token`, authenticates over websocket and over polling, and
//! receives a `Send` the test issues through `SocketControl`. The gateway allows exactly
//! that page's origin: a page from a third origin cannot connect over polling. With
//! `edge.parser = "msgpack"`, the official client's build with socket.io-msgpack-parser
//! joins with an ack, receives a `Send`'s data and binary attachment, and answers an
//! ack-mode `Send`. With connection state recovery on, the browser loses its network for a
//! few seconds (DevTools offline) and its pages come back as the same sockets with what was
//! sent meanwhile.

mod fixture;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
};

use fixture::{
    Gateway, PATIENCE, next_watched, repo_root, to_all, to_rooms, to_sockets, to_users, tokens,
};
use serde_json::{Value, json};
use sockgate_client::proto::{AckOptions, EventKind, SendRequest, Target, WatchEventsRequest};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    process::{Child, ChildStdin, Command},
    sync::mpsc,
};

/// Starting a browser on a loaded machine takes a while.
const BROWSER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// Serves the test page and the socket.io-client browser build on its own port (its
/// own origin).
async fn static_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let root = repo_root();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, root.clone()));
        }
    });
    addr
}

async fn serve(mut stream: TcpStream, root: PathBuf) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .split('?')
        .next()
        .unwrap_or("/");
    let file: Option<(&Path, &str)> = match path {
        "/page.html" => Some((Path::new("tests/browser/page.html"), "text/html")),
        "/socket.io.min.js" => Some((
            Path::new("node_modules/socket.io-client/dist/socket.io.min.js"),
            "text/javascript",
        )),
        // The official build of the client with socket.io-msgpack-parser.
        "/socket.io.msgpack.min.js" => Some((
            Path::new("node_modules/socket.io-client/dist/socket.io.msgpack.min.js"),
            "text/javascript",
        )),
        _ => None,
    };
    let response = match file.and_then(|(p, t)| Some((std::fs::read(root.join(p)).ok()?, t))) {
        Some((body, content_type)) => {
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend(body);
            r
        }
        None => {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
        }
    };
    let _ = stream.write_all(&response).await;
}

struct Reports {
    lines: mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
}

impl Reports {
    /// Waits for the first report matching `matches`.
    async fn take(&mut self, matches: impl Fn(&Value) -> bool, what: &str) -> Value {
        if let Some(at) = self.seen.iter().position(&matches) {
            return self.seen.remove(at);
        }
        let deadline = tokio::time::Instant::now() + BROWSER_PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(report)) if matches(&report) => return report,
                Ok(Some(report)) => {
                    assert!(report["type"] != "pageerror", "the page failed: {report}");
                    self.seen.push(report);
                }
                Ok(None) => panic!(
                    "the browser driver exited while waiting for {what}; reports: {:#?}",
                    self.seen
                ),
                Err(_) => panic!("timed out waiting for {what}; reports: {:#?}", self.seen),
            }
        }
    }
}

/// The browser driver (`tests/browser/drive.mjs`) and what its pages report.
struct Browser {
    driver: Child,
    commands: ChildStdin,
    reports: Reports,
}

impl Browser {
    /// Starts Chromium with one tab per page URL; returns once it runs.
    async fn start(pages: &[String]) -> Browser {
        let chromium = fixture::chromium::path();
        assert!(
            repo_root().join("node_modules/playwright-core").is_dir(),
            "playwright-core is not installed: run `npm ci` (scripts/test does)"
        );
        let mut driver = Command::new("node")
            .arg(repo_root().join("tests/browser/drive.mjs"))
            .arg(&chromium)
            .args(pages)
            .current_dir(repo_root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn node");
        let stdout = driver.stdout.take().unwrap();
        let commands = driver.stdin.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut stdout = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = stdout.next_line().await {
                let report = serde_json::from_str(&line)
                    .unwrap_or_else(|_| json!({"type": "text", "text": line}));
                if tx.send(report).is_err() {
                    break;
                }
            }
        });
        let mut reports = Reports {
            lines,
            seen: Vec::new(),
        };
        let browser = reports
            .take(|r| r["type"] == "browser", "the browser to start")
            .await;
        println!("browser: Chromium {}", browser["version"]);
        Browser {
            driver,
            commands,
            reports,
        }
    }

    /// Takes every page off the network (`offline`) or back (`online`); returns once done.
    async fn network(&mut self, op: &str) {
        let line = format!("{}\n", json!({ "op": op }));
        self.commands
            .write_all(line.as_bytes())
            .await
            .expect("driver stdin");
        self.reports
            .take(|r| r["type"] == op, &format!("the browser to go {op}"))
            .await;
    }

    /// Closes the browser.
    async fn close(mut self) {
        drop(self.commands);
        let _ = tokio::time::timeout(PATIENCE, self.driver.wait()).await;
    }
}

/// The URL of the test page on `origin`: it connects to `gateway` as `user` over
/// `transport`, reporting as `label`, and `extra` query parameters.
fn page_url(
    origin: SocketAddr,
    gateway: &Gateway,
    (transport, label, user): (&str, &str, &str),
    extra: &str,
) -> String {
    format!(
        "http://{origin}/page.html?transport={transport}&label={label}&edge=http://{}&token={}{extra}",
        gateway.edge,
        tokens::for_user(user)
    )
}

#[tokio::test]
async fn chromium_authenticates_over_both_transports_and_receives_a_send() {
    let site = static_server().await;
    let other_site = static_server().await;
    let gateway = Gateway::builder()
        .env("EDGE__CORS_ORIGINS", &format!(r#"["http://{site}"]"#))
        .start()
        .await;
    let pages = [
        page_url(site, &gateway, ("websocket", "websocket", "browser-ws"), ""),
        page_url(
            site,
            &gateway,
            ("polling", "polling", "browser-polling"),
            "",
        ),
        page_url(
            other_site,
            &gateway,
            ("polling", "foreign", "browser-foreign"),
            "",
        ),
    ];
    let mut browser = Browser::start(&pages).await;

    let mut control = gateway.control().await;
    for transport in ["websocket", "polling"] {
        let connected = browser
            .reports
            .take(
                |r| r["label"] == transport && r["type"] == "connect",
                &format!("the {transport} page to connect"),
            )
            .await;
        assert_eq!(connected["transport"], transport, "{connected}");
        let sid = connected["sid"].as_str().expect("sid").to_owned();
        let authenticated = browser
            .reports
            .take(
                |r| {
                    r["label"] == transport && r["type"] == "event" && r["event"] == "authenticated"
                },
                &format!("the {transport} page to authenticate"),
            )
            .await;
        assert_eq!(
            authenticated["args"][0]["id"],
            sid.as_str(),
            "{authenticated}"
        );

        control
            .send(SendRequest {
                event: "browser:hello".into(),
                data_json: json!({"over": transport}).to_string(),
                target: to_sockets(&[&sid]),
                ..SendRequest::default()
            })
            .await
            .expect("Send to the browser");
        let received = browser
            .reports
            .take(
                |r| {
                    r["label"] == transport && r["type"] == "event" && r["event"] == "browser:hello"
                },
                &format!("the {transport} page to receive the Send"),
            )
            .await;
        assert_eq!(received["args"][0]["over"], transport, "{received}");
        assert_eq!(received["transport"], transport, "{received}");
    }

    // The origin the gateway does not allow: the browser refuses the polling responses.
    let refused = browser
        .reports
        .take(
            |r| r["label"] == "foreign" && r["type"] == "connect_error",
            "the page of a foreign origin to fail",
        )
        .await;
    println!("browser: foreign origin refused: {}", refused["message"]);
    assert!(
        !browser
            .reports
            .seen
            .iter()
            .any(|r| r["label"] == "foreign" && r["type"] == "connect"),
        "a page of an origin not allowed connected: {:#?}",
        browser.reports.seen
    );

    browser.close().await;
    gateway.assert_healthy().await;
}

#[tokio::test]
async fn chromium_with_the_msgpack_client_joins_receives_binary_and_acks() {
    let site = static_server().await;
    let gateway = Gateway::builder()
        .env("EDGE__PARSER", "msgpack")
        .env("EDGE__CORS_ORIGINS", &format!(r#"["http://{site}"]"#))
        .start()
        .await;
    let pages = ["websocket", "polling"].map(|t| {
        let user = format!("msgpack-{t}");
        page_url(
            site,
            &gateway,
            (t, t, &user),
            "&parser=msgpack&join=chat:msgpack",
        )
    });
    let mut browser = Browser::start(&pages).await;
    let mut control = gateway.control().await;
    let mut sids = Vec::new();
    for transport in ["websocket", "polling"] {
        let joined = browser
            .reports
            .take(
                |r| r["label"] == transport && r["type"] == "joined",
                &format!("the {transport} page to join"),
            )
            .await;
        assert_eq!(
            joined["ack"],
            json!({"joined": ["chat:msgpack"], "rejected": []}),
            "{joined}"
        );
        let connected = browser
            .reports
            .take(
                |r| r["label"] == transport && r["type"] == "connect",
                &format!("the {transport} page to connect"),
            )
            .await;
        sids.push(connected["sid"].as_str().expect("sid").to_owned());
    }

    control
        .send(SendRequest {
            event: "browser:file".into(),
            data_json: json!({"name": "f.bin", "n": [1, 2.5, null]}).to_string(),
            attachments: vec![vec![0u8, 1, 255].into()],
            target: to_rooms(&["chat:msgpack"]),
            ..SendRequest::default()
        })
        .await
        .expect("Send to the room");
    for transport in ["websocket", "polling"] {
        let received = browser
            .reports
            .take(
                |r| r["label"] == transport && r["type"] == "event" && r["event"] == "browser:file",
                &format!("the {transport} page to receive the Send"),
            )
            .await;
        assert_eq!(
            received["args"],
            json!([{"name": "f.bin", "n": [1, 2.5, null]}, {"bytes": [0, 1, 255]}]),
            "{received}"
        );
    }

    let sids: Vec<&str> = sids.iter().map(String::as_str).collect();
    let response = control
        .send(SendRequest {
            event: "browser:question".into(),
            data_json: "{}".into(),
            target: to_sockets(&sids),
            ack: Some(AckOptions { timeout_ms: 10_000 }),
            ..SendRequest::default()
        })
        .await
        .expect("ack-mode Send")
        .into_inner();
    assert_eq!(response.acks.len(), 2, "{response:?}");
    for ack in &response.acks {
        assert_eq!(
            serde_json::from_str::<Value>(&ack.data_json).unwrap(),
            json!({"answered": "browser:question"})
        );
    }

    browser.close().await;
    gateway.assert_healthy().await;
}

/// The next application event `label`'s page reported (not `authenticated`).
async fn next_app_event(reports: &mut Reports, label: &str) -> Value {
    reports
        .take(
            |r| r["label"] == label && r["type"] == "event" && r["event"] != "authenticated",
            &format!("an event on the {label} page"),
        )
        .await
}

fn send(event: &str, n: u32, target: Option<Target>) -> SendRequest {
    SendRequest {
        event: event.into(),
        data_json: json!({ "n": n }).to_string(),
        target,
        ..SendRequest::default()
    }
}

#[tokio::test]
async fn chromium_offline_for_a_few_seconds_recovers_its_sockets_and_missed_events() {
    let site = static_server().await;
    let gateway = Gateway::builder()
        .env("EDGE__CORS_ORIGINS", &format!(r#"["http://{site}"]"#))
        .env("RECOVERY__ENABLED", "true")
        // The gateway notices that the browser is gone when a pong is late: after a ping
        // interval plus a ping timeout.
        .env("EDGE__PING_INTERVAL", "1s")
        .env("EDGE__PING_TIMEOUT", "2s")
        .start()
        .await;
    let transports = ["websocket", "polling"];
    let user = |transport: &str| format!("offline-{transport}");
    let pages = transports.map(|t| page_url(site, &gateway, (t, t, &user(t)), "&reconnect=1"));
    let mut browser = Browser::start(&pages).await;
    let mut control = gateway.control().await;

    let mut sids = Vec::new();
    for transport in transports {
        let connected = browser
            .reports
            .take(
                |r| r["label"] == transport && r["type"] == "connect",
                &format!("the {transport} page to connect"),
            )
            .await;
        assert_eq!(connected["recovered"], false, "{connected}");
        let sid = connected["sid"].as_str().expect("sid").to_owned();
        browser
            .reports
            .take(
                |r| r["label"] == transport && r["event"] == "authenticated",
                &format!("the {transport} page to authenticate"),
            )
            .await;
        control
            .send(send("before", 0, to_sockets(&[&sid])))
            .await
            .expect("Send");
        let before = next_app_event(&mut browser.reports, transport).await;
        assert!(before["args"][1].is_string(), "an offset: {before}");
        sids.push(sid);
    }

    let mut events = control
        .watch_events(WatchEventsRequest {
            kinds: vec![EventKind::Disconnected as i32],
            ..WatchEventsRequest::default()
        })
        .await
        .expect("watch")
        .into_inner();
    browser.network("offline").await;
    for transport in transports {
        let gone = browser
            .reports
            .take(
                |r| r["label"] == transport && r["type"] == "disconnect",
                &format!("the {transport} page to notice"),
            )
            .await;
        println!("browser: {transport} page offline: {}", gone["reason"]);
    }
    // Back online only once the gateway has kept both sessions.
    let mut away = Vec::new();
    while away.len() < sids.len() {
        let gone = next_watched(&mut events).await;
        assert!(gone.recoverable, "{gone:?}");
        away.push(gone.socket_id);
    }
    let mut expected = sids.clone();
    expected.sort();
    away.sort();
    assert_eq!(away, expected);

    for (transport, sid) in transports.iter().zip(&sids) {
        for request in [
            send("missed", 1, to_sockets(&[sid])),
            send("missed", 2, to_users(&[&user(transport)])),
        ] {
            control.send(request).await.expect("accepted while away");
        }
    }
    control
        .send(send("missed", 3, to_all()))
        .await
        .expect("accepted while away");
    browser.network("online").await;

    for (transport, sid) in transports.iter().zip(&sids) {
        let connected = browser
            .reports
            .take(
                |r| r["label"] == *transport && r["type"] == "connect",
                &format!("the {transport} page to reconnect"),
            )
            .await;
        assert_eq!(
            connected["recovered"], true,
            "socket.recovered: {connected}"
        );
        assert_eq!(connected["sid"], sid.as_str(), "the same socket id");
        let mut offsets = Vec::new();
        for n in 1..=3 {
            let missed = next_app_event(&mut browser.reports, transport).await;
            assert_eq!(missed["event"], "missed", "{missed}");
            assert_eq!(missed["args"][0]["n"], n, "in order: {missed}");
            offsets.push(missed["args"][1].as_str().expect("an offset").to_owned());
        }
        offsets.dedup();
        assert_eq!(offsets.len(), 3, "three events: {offsets:?}");
        let authenticated = browser
            .reports
            .take(
                |r| r["label"] == *transport && r["event"] == "authenticated",
                &format!("the {transport} page to authenticate again"),
            )
            .await;
        assert_eq!(authenticated["args"][0]["id"], sid.as_str());

        control
            .send(send("after", 4, to_sockets(&[sid])))
            .await
            .expect("Send");
        let after = next_app_event(&mut browser.reports, transport).await;
        assert_eq!(after["event"], "after", "each missed event once: {after}");
    }
    browser.close().await;
    gateway.assert_healthy().await;
}
