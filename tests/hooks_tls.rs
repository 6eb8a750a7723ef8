//! The hooks client over `https://`: a tonic `SocketHooks` backend serving TLS that
//! requires client certificates (mutual TLS), with certificates made by the test.

mod fixture;

use fixture::{
    Gateway,
    certs::Pki,
    hooks::HookBackend,
    scene::Scene,
    sio::{Transport, ws},
};
use serde_json::json;

const FAILED: &str = "Failed to authenticate connection! Please login again!";

fn hook_gateway(backend: &HookBackend, pki: &Pki) -> fixture::GatewayBuilder {
    Gateway::builder()
        .env("AUTH__AUTHENTICATORS", r#"["hook"]"#)
        .env("HOOKS__ENDPOINT", &backend.url())
        .env("HOOKS__TIMEOUT", "5s")
        .env("HOOKS__TLS__CA_FILE", &pki.ca_file.display().to_string())
}

#[tokio::test]
async fn hooks_over_mutual_tls() {
    let pki = Pki::new("hooks");
    let backend = HookBackend::start_tls(&pki.server("backend"), &pki.ca_file).await;
    assert!(backend.url().starts_with("https://"));
    let gateway_cert = pki.client("gateway");
    let builder = hook_gateway(&backend, &pki)
        .env(
            "HOOKS__TLS__CERT_FILE",
            &gateway_cert.cert.display().to_string(),
        )
        .env(
            "HOOKS__TLS__KEY_FILE",
            &gateway_cert.key.display().to_string(),
        );
    let (_gateway, mut clients, _) = Scene::of(builder).await.into_parts();
    clients.login(ws("alice").token("allow:alice")).await;
}

#[tokio::test]
async fn hooks_without_a_client_certificate_fail_closed() {
    let pki = Pki::new("hooks");
    let backend = HookBackend::start_tls(&pki.server("backend"), &pki.ca_file).await;
    // The gateway trusts the backend but has no certificate to show it.
    let (gateway, mut clients, _) = Scene::of(hook_gateway(&backend, &pki)).await.into_parts();
    clients.connect("eve", Transport::Websocket).await;
    clients
        .emit("eve", "authenticate", json!([{"token": "allow:eve"}]))
        .await;
    assert_eq!(
        clients.next_event("eve", "unauthenticated").await["message"],
        FAILED
    );
    let (_, metrics) = gateway.admin_get("/metrics").await;
    assert!(
        metrics.contains(r#"sockgate_hook_calls_total{hook="Authenticate",outcome="error"} 1"#)
            || metrics
                .contains(r#"sockgate_hook_calls_total{hook="Authenticate",outcome="timeout"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn tls_settings_need_an_https_endpoint() {
    let stderr = Gateway::builder()
        .env("HOOKS__ENDPOINT", "http://127.0.0.1:1")
        .env("HOOKS__ON_EVENT", "true")
        .env("HOOKS__TLS__CA_FILE", "/nonexistent/ca.pem")
        .start_expecting_failure()
        .await;
    assert!(stderr.contains("not an https:// URL"), "{stderr}");
}
