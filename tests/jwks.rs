//! JWKS for the control plane's callers and the edge's sockets: keys from a JWKS URL
//! served by the test (or a file), a rotation picked up without a restart when a token
//! names a new `kid`, and removed keys dropped by the periodic refresh.

mod fixture;

use fixture::{
    Gateway,
    callers::{self, Bearer},
    certs::Pki,
    jwks::{JwksServer, SigningKey, document},
    scene::Scene,
    sio::{Transport, polling, ws},
};
use jsonwebtoken::get_current_timestamp;
use serde_json::json;
use sockgate_client::proto::GetInfoRequest;
use tonic::Code;

/// Control-plane claims granting `read`.
fn reader() -> serde_json::Value {
    callers::claims(json!("read"), json!({}))
}

async fn get_info(gateway: &Gateway, token: &str) -> Result<(), tonic::Status> {
    gateway
        .control_as(Bearer::token(token))
        .await
        .get_info(GetInfoRequest::default())
        .await
        .map(drop)
}

#[tokio::test]
async fn control_plane_keys_rotate_through_the_jwks_url() {
    let first = SigningKey::new("key-2026-01");
    let second = SigningKey::new("key-2026-02");
    let server = JwksServer::start(&[&first]).await;
    let gateway = Gateway::builder()
        .env("CONTROL__AUTH__JWKS__URL", &server.url())
        .env("CONTROL__AUTH__JWKS__MIN_REFRESH_INTERVAL", "0s")
        .env("CONTROL__AUTH__JWKS__REFRESH_INTERVAL", "1h")
        .env(
            "CONTROL__AUTH__ISSUERS",
            &format!(r#"["{}"]"#, callers::ISSUER),
        )
        .start()
        .await;
    get_info(&gateway, &first.sign(&reader()))
        .await
        .expect("a token of the published key");

    // The issuer rotates: a token with the new kid makes the gateway read the set again.
    server.publish(&[&second]);
    get_info(&gateway, &second.sign(&reader()))
        .await
        .expect("the new key is fetched on its first use");
    let refused = get_info(&gateway, &first.sign(&reader()))
        .await
        .expect_err("the withdrawn key");
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(
        refused
            .message()
            .contains("unknown key id (kid) \"key-2026-01\""),
        "{refused:?}"
    );
    // A kid nobody published is refused after one more look.
    let stranger = SigningKey::new("not-published");
    let refused = get_info(&gateway, &stranger.sign(&reader()))
        .await
        .expect_err("unknown key");
    assert_eq!(refused.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn unknown_kids_do_not_make_the_gateway_hammer_the_issuer() {
    let key = SigningKey::new("only");
    let server = JwksServer::start(&[&key]).await;
    let gateway = Gateway::builder()
        .env("CONTROL__AUTH__JWKS__URL", &server.url())
        .env("CONTROL__AUTH__JWKS__REFRESH_INTERVAL", "1h")
        .env("CONTROL__AUTH__JWKS__MIN_REFRESH_INTERVAL", "1h")
        .start()
        .await;
    server.fetched_more_than(0).await;
    get_info(&gateway, &key.sign(&reader())).await.unwrap();
    for n in 0..5 {
        let forged = SigningKey::new(&format!("forged-{n}"));
        assert!(get_info(&gateway, &forged.sign(&reader())).await.is_err());
    }
    assert_eq!(
        server.fetches(),
        1,
        "one fetch at start, none per unknown kid"
    );
}

#[tokio::test]
async fn the_periodic_refresh_drops_withdrawn_keys() {
    let old = SigningKey::new("old");
    let new = SigningKey::new("new");
    let server = JwksServer::start(&[&old, &new]).await;
    let gateway = Gateway::builder()
        .env("CONTROL__AUTH__JWKS__URL", &server.url())
        .env("CONTROL__AUTH__JWKS__REFRESH_INTERVAL", "200ms")
        .env("CONTROL__AUTH__JWKS__MIN_REFRESH_INTERVAL", "1h")
        .start()
        .await;
    server.fetched_more_than(0).await;
    get_info(&gateway, &old.sign(&reader())).await.unwrap();
    server.publish(&[&new]);
    // The refresher fetches, installs, sleeps, fetches again. A fetch counted after
    // `seen` may have read the old document; the one after it read the new one, and once
    // a third has started that one is installed.
    let seen = server.fetches();
    server.fetched_more_than(seen + 2).await;
    assert!(get_info(&gateway, &old.sign(&reader())).await.is_err());
    get_info(&gateway, &new.sign(&reader())).await.unwrap();
}

#[tokio::test]
async fn jwks_over_https_with_a_ca_file() {
    let pki = Pki::new("issuer");
    let key = SigningKey::new("tls-key");
    let server = JwksServer::start_https(&[&key], &pki.server("issuer")).await;
    assert!(server.url().starts_with("https://"));
    let gateway = Gateway::builder()
        .env("CONTROL__AUTH__JWKS__URL", &server.url())
        .env(
            "CONTROL__AUTH__JWKS__CA_FILE",
            &pki.ca_file.display().to_string(),
        )
        .start()
        .await;
    get_info(&gateway, &key.sign(&reader()))
        .await
        .expect("keys fetched over TLS");
}

#[tokio::test]
async fn jwks_file_for_the_control_plane() {
    let first = SigningKey::new("file-1");
    let second = SigningKey::new("file-2");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, document(&[&first])).unwrap();
    let gateway = Gateway::builder()
        .env("CONTROL__AUTH__JWKS__FILE", &file.display().to_string())
        .env("CONTROL__AUTH__JWKS__MIN_REFRESH_INTERVAL", "0s")
        .start()
        .await;
    get_info(&gateway, &first.sign(&reader())).await.unwrap();
    std::fs::write(&file, document(&[&first, &second])).unwrap();
    get_info(&gateway, &second.sign(&reader())).await.unwrap();
}

#[tokio::test]
async fn edge_tokens_rotate_through_the_jwks_url_too() {
    let first = SigningKey::new("edge-1");
    let second = SigningKey::new("edge-2");
    let server = JwksServer::start(&[&first]).await;
    let builder = Gateway::builder()
        .env("AUTH__JWT__JWKS__URL", &server.url())
        .env("AUTH__JWT__JWKS__MIN_REFRESH_INTERVAL", "0s");
    let (_gateway, mut clients, _) = Scene::of(builder).await.into_parts();
    let user = |name: &str| json!({"sub": name, "exp": get_current_timestamp() + 3600});
    clients
        .login(ws("alice").token(&first.sign(&user("alice"))))
        .await;
    server.publish(&[&second]);
    clients
        .login(polling("bob").token(&second.sign(&user("bob"))))
        .await;
    clients.connect("eve", Transport::Websocket).await;
    clients
        .emit(
            "eve",
            "authenticate",
            json!([{"token": first.sign(&user("eve"))}]),
        )
        .await;
    assert_eq!(
        clients.next_event("eve", "unauthenticated").await["message"],
        "Invalid token to authenticate! Please login again!"
    );
}

#[tokio::test]
async fn configured_keys_and_a_jwks_work_side_by_side() {
    let published = SigningKey::new("published");
    let server = JwksServer::start(&[&published]).await;
    let gateway = Gateway::builder()
        .control_auth()
        .env("CONTROL__AUTH__JWKS__URL", &server.url())
        .start()
        .await;
    get_info(&gateway, &published.sign(&reader()))
        .await
        .unwrap();
    // A token of the configured HMAC key whose header names a kid no set has.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("hmac-2026".into());
    let token = jsonwebtoken::encode(
        &header,
        &reader(),
        &jsonwebtoken::EncodingKey::from_secret(callers::SECRET.as_bytes()),
    )
    .unwrap();
    get_info(&gateway, &token)
        .await
        .expect("the configured key verifies it");
}
