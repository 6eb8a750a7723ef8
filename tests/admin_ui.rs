//! The official Socket.IO Admin UI (`@socket.io/admin-ui` from node_modules, its `ui/dist`
//! served by the gateway at `/ui/`) in headless Chromium: the operator logs in through the
//! UI's form, sees both nodes of a cluster on a real Redis, the sockets of both and their
//! rooms, with its fonts from the gateway (`@fontsource/roboto` and `@mdi/font`) and no
//! request leaving loopback, and disconnects a socket of the other node; a wrong password
//! is refused. A
//! readonly UI advertises no action and refuses one sent anyway. Pages of other origins
//! than the port's own and `admin.ui.origins` are refused.

mod fixture;

use std::{path::PathBuf, process::Stdio};

use fixture::{
    Gateway, GatewayBuilder, redis::Redis, repo_root, scene::Scene, sio::Clients, sio::Transport,
    sio::ws,
};
use serde_json::{Value, json};
use sockgate_client::proto::GetSocketRequest;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, Command},
    sync::mpsc,
};

const OPERATOR: &str = "ops";
const PASSWORD: &str = "correct horse";
/// Starting a browser and a Vue app on a loaded machine takes a while.
const BROWSER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

fn ui_dist() -> PathBuf {
    let dist = repo_root().join("node_modules/@socket.io/admin-ui/ui/dist");
    assert!(
        dist.join("index.html").is_file(),
        "@socket.io/admin-ui is not installed: run `npm ci` (scripts/test does)"
    );
    dist
}

/// A gateway serving the Admin UI, logged into as [`OPERATOR`] with [`PASSWORD`].
fn with_admin_ui(builder: GatewayBuilder) -> GatewayBuilder {
    let hash = bcrypt::hash(PASSWORD, 4).expect("bcrypt");
    builder
        .env("ADMIN__UI__ENABLED", "true")
        .env("ADMIN__UI__USERNAME", OPERATOR)
        .env("ADMIN__UI__PASSWORD_HASH", &hash)
        .env("ADMIN__UI__STATIC_DIR", &ui_dist().display().to_string())
        .env(
            "ADMIN__UI__FONTS_DIR",
            &repo_root().join("node_modules").display().to_string(),
        )
}

/// `tests/browser/admin-ui.mjs`: commands in, one answer per command out.
struct Browser {
    _driver: Child,
    stdin: ChildStdin,
    answers: mpsc::UnboundedReceiver<Value>,
    next_req: u64,
}

impl Browser {
    async fn start() -> Browser {
        let mut driver = Command::new("node")
            .arg(repo_root().join("tests/browser/admin-ui.mjs"))
            .arg(fixture::chromium::path())
            .current_dir(repo_root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn node");
        let stdout = driver.stdout.take().unwrap();
        let (tx, answers) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let answer: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| json!({"type": "text", "text": line}));
                if tx.send(answer).is_err() {
                    break;
                }
            }
        });
        let stdin = driver.stdin.take().unwrap();
        let mut browser = Browser {
            _driver: driver,
            stdin,
            answers,
            next_req: 0,
        };
        let started = browser.next(|a| a["type"] == "browser").await;
        println!("admin ui: Chromium {}", started["version"]);
        browser
    }

    async fn next(&mut self, matches: impl Fn(&Value) -> bool) -> Value {
        loop {
            let answer = tokio::time::timeout(BROWSER_PATIENCE, self.answers.recv())
                .await
                .expect("the browser driver answers in time")
                .expect("the browser driver is running");
            assert!(answer["type"] != "pageerror", "the UI failed: {answer}");
            if matches(&answer) {
                return answer;
            }
        }
    }

    /// Runs `command` on `page`; the driver's answer.
    async fn answer(&mut self, page: &str, mut command: Value) -> Value {
        self.next_req += 1;
        let req = self.next_req;
        command["req"] = json!(req);
        command["page"] = json!(page);
        let mut line = command.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.expect("write");
        self.next(|a| a["req"] == req).await
    }

    /// Runs `command` on `page`; the value it answered.
    async fn ask(&mut self, page: &str, command: Value) -> Value {
        let answer = self.answer(page, command.clone()).await;
        assert!(answer["error"].is_null(), "{command} on {page}: {answer}");
        answer["value"].clone()
    }

    async fn act(&mut self, page: &str, command: Value) {
        self.ask(page, command).await;
    }

    /// Opens the UI served by `gateway` in a fresh context and submits its login form.
    async fn log_in(&mut self, page: &str, gateway: &Gateway, password: &str) {
        let url = format!("http://{}", gateway.admin);
        self.act(page, json!({"op": "open", "url": format!("{url}/ui/")}))
            .await;
        for (label, value) in [
            ("Server URL", url.as_str()),
            ("Username", OPERATOR),
            ("Password", password),
        ] {
            self.act(page, json!({"op": "fill", "label": label, "value": value}))
                .await;
        }
        self.act(page, json!({"op": "click", "button": "Connect"}))
            .await;
    }

    async fn wait_text(&mut self, page: &str, text: &str) {
        self.act(page, json!({"op": "waitText", "text": text}))
            .await;
    }

    async fn route(&mut self, page: &str, hash: &str) {
        self.act(page, json!({"op": "route", "hash": hash})).await;
    }
}

#[tokio::test]
async fn an_operator_sees_both_nodes_and_disconnects_a_socket_of_the_other() {
    let redis = Redis::start().await;
    let (a, mut on_a, mut control) = Scene::of(with_admin_ui(
        Gateway::builder().cluster_node(&redis, "node-a"),
    ))
    .await
    .into_parts();
    let (_b, mut on_b, _) = Scene::of(Gateway::builder().cluster_node(&redis, "node-b"))
        .await
        .into_parts();
    let alice = on_a.login(ws("alice")).await;
    let bob = on_b.login(ws("bob")).await;
    on_a.emit_with_ack("alice", "join", json!([{"rooms": ["chat:ops"]}]))
        .await;
    on_b.emit_with_ack("bob", "join", json!([{"rooms": ["chat:ops"]}]))
        .await;

    let mut browser = Browser::start().await;
    browser.log_in("ui", &a, PASSWORD).await;
    browser.route("ui", "#/servers/").await;
    browser.wait_text("ui", "node-a").await;
    browser.wait_text("ui", "node-b").await;
    browser.route("ui", "#/sockets/").await;
    browser.wait_text("ui", &alice).await;
    browser.wait_text("ui", &bob).await;
    browser.route("ui", "#/rooms/").await;
    browser.wait_text("ui", "chat:ops").await;
    for font in [
        "24px \"Material Design Icons\"",
        "16px Roboto",
        "bold 16px Roboto",
    ] {
        let faces = browser
            .ask("ui", json!({"op": "loadFont", "font": font}))
            .await;
        assert!(
            faces.as_u64() >= Some(1),
            "{font} from the gateway: {faces}"
        );
    }
    assert_eq!(
        browser.ask("ui", json!({"op": "external"})).await,
        json!([]),
        "every file of the UI comes from the gateway"
    );
    if let Some(path) = std::env::var_os("ADMIN_UI_SCREENSHOT") {
        browser.route("ui", "#/sockets/").await;
        browser.wait_text("ui", &bob).await;
        let path = path.to_string_lossy().into_owned();
        browser
            .act("ui", json!({"op": "screenshot", "path": path}))
            .await;
    }

    browser.route("ui", "#/sockets/").await;
    browser
        .act("ui", json!({"op": "clickInRow", "text": bob}))
        .await;
    on_b.disconnected("bob").await;
    a.await_log("admin ui: action performed", 1).await;
    let performed = a
        .log_text()
        .lines()
        .find(|l| l.contains("admin ui: action performed"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        performed.contains(OPERATOR) && performed.contains(&bob),
        "{performed}"
    );
    let still = control
        .get_socket(GetSocketRequest {
            socket_id: alice.clone(),
        })
        .await;
    assert!(still.is_ok(), "alice stays connected: {still:?}");

    browser.log_in("intruder", &a, "wrong password").await;
    browser.wait_text("intruder", "Invalid credentials").await;
    a.await_log("admin ui: login refused (invalid credentials)", 1)
        .await;
}

#[tokio::test]
async fn a_readonly_ui_advertises_and_performs_no_action() {
    let (gateway, mut clients, mut control) = Scene::of(
        Gateway::builder()
            .env("ADMIN__UI__ENABLED", "true")
            .env("ADMIN__UI__READONLY", "true"),
    )
    .await
    .into_parts();
    let sid = clients.login(ws("app")).await;

    // No password: the admin port is on loopback, the operator is the configured name.
    let mut operators = Clients::start(&format!("http://{}/admin", gateway.admin)).await;
    operators
        .connect_with("op", Transport::Websocket, json!({"path": "/socket.io"}))
        .await;
    assert_eq!(
        operators.next_event("op", "config").await,
        json!({"supportedFeatures": []})
    );
    let listed = operators.next_event("op", "all_sockets").await;
    assert_eq!(listed[0]["id"], sid.as_str(), "{listed}");

    operators
        .emit("op", "_disconnect", json!(["/", false, sid]))
        .await;
    gateway
        .await_log("admin ui: action refused (admin.ui.readonly)", 1)
        .await;
    control
        .get_socket(GetSocketRequest { socket_id: sid })
        .await
        .expect("the socket is still connected");
    assert!(
        !clients
            .pending()
            .iter()
            .any(|e| e["id"] == "app" && e["type"] == "disconnect")
    );
}

/// The head of the answer to a polling handshake on the admin port from a page of `origin`.
async fn handshake_from(admin: std::net::SocketAddr, origin: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut stream = tokio::net::TcpStream::connect(admin)
        .await
        .expect("connect");
    let request = format!(
        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: {admin}\r\nOrigin: {origin}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let response = String::from_utf8_lossy(&response).to_ascii_lowercase();
    response
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn only_its_own_pages_and_the_listed_origins_reach_the_admin_socket_io() {
    let gateway = Gateway::builder()
        .env("ADMIN__UI__ENABLED", "true")
        .env("ADMIN__UI__ORIGINS", r#"["https://admin.socket.io"]"#)
        .start()
        .await;
    let admin = gateway.admin;
    let foreign = handshake_from(admin, "http://evil.example").await;
    assert!(foreign.starts_with("http/1.1 403"), "{foreign}");
    let listed = handshake_from(admin, "https://admin.socket.io").await;
    assert!(listed.starts_with("http/1.1 200"), "{listed}");
    assert!(
        listed.contains("access-control-allow-origin: https://admin.socket.io")
            && listed.contains("access-control-allow-credentials: true"),
        "{listed}"
    );
    let own = handshake_from(admin, &format!("http://{admin}")).await;
    assert!(own.starts_with("http/1.1 200"), "{own}");
    gateway
        .await_log(
            "admin ui: a page of an origin not in admin.ui.origins refused",
            1,
        )
        .await;
}
