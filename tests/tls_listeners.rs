//! Optional TLS on the edge (`https://` / `wss://` for the official socket.io-client) and
//! on the admin endpoint, with certificates made by the test.

mod fixture;

use std::sync::Arc;

use fixture::{
    Gateway,
    certs::{CertFiles, Pki},
    sio::{Clients, polling, ws},
};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{
    TlsConnector,
    rustls::{ClientConfig, RootCertStore},
};

fn tls_env(
    builder: fixture::GatewayBuilder,
    section: &str,
    files: &CertFiles,
) -> fixture::GatewayBuilder {
    builder
        .env(
            &format!("{section}__TLS__CERT_FILE"),
            &files.cert.display().to_string(),
        )
        .env(
            &format!("{section}__TLS__KEY_FILE"),
            &files.key.display().to_string(),
        )
}

/// `GET path` over TLS to `addr`, trusting `pki`: the raw response.
async fn https_get(addr: std::net::SocketAddr, pki: &Pki, path: &str) -> std::io::Result<String> {
    let mut roots = RootCertStore::empty();
    for cert in sockgate::tls::read_certificates("test", &pki.ca_file).unwrap() {
        roots.add(cert).unwrap();
    }
    let config = ClientConfig::builder_with_provider(sockgate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut response = String::new();
    tls.read_to_string(&mut response).await?;
    Ok(response)
}

#[tokio::test]
async fn socket_io_clients_connect_over_tls_on_both_transports() {
    let pki = Pki::new("edge");
    let gateway = tls_env(Gateway::builder(), "EDGE", &pki.server("edge"))
        .start()
        .await;
    let url = format!("https://localhost:{}", gateway.edge.port());
    let mut clients = Clients::start_trusting(&url, &pki.ca_file).await;
    clients
        .logins([
            ws("secure-ws").user("a"),
            polling("secure-polling").user("b"),
        ])
        .await;
}

#[tokio::test]
async fn the_admin_endpoint_over_tls() {
    let pki = Pki::new("admin");
    let gateway = tls_env(Gateway::builder(), "ADMIN", &pki.server("admin"))
        .start()
        .await;
    let response = https_get(gateway.admin, &pki, "/livez").await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let stranger = Pki::new("stranger");
    assert!(https_get(gateway.admin, &stranger, "/livez").await.is_err());
    // Plain HTTP gets no answer from a TLS port.
    let (status, _) = gateway.admin_get("/livez").await;
    assert_ne!(status, 200);
}

#[tokio::test]
async fn the_edge_serves_a_renewed_certificate_after_sighup() {
    let old_ca = Pki::new("edge-old");
    let new_ca = Pki::new("edge-new");
    let served = old_ca.server("edge");
    let gateway = tls_env(Gateway::builder(), "EDGE", &served)
        .env("EDGE__TLS__RELOAD_INTERVAL", "0s")
        .start()
        .await;
    let renewed = new_ca.server("renewed");
    std::fs::copy(&renewed.key, &served.key).unwrap();
    std::fs::copy(&renewed.cert, &served.cert).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &gateway.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    gateway.await_log("TLS certificate reloaded", 1).await;
    let url = format!("https://localhost:{}", gateway.edge.port());
    let mut clients = Clients::start_trusting(&url, &new_ca.ca_file).await;
    clients.login(ws("renewed").user("r")).await;
}
