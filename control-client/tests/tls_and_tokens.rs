//! The client's token, TLS and retry behaviour against a `SocketControl` server run in the
//! test over real gRPC (and TLS with certificates made by rcgen): the server records the
//! `authorization` metadata of each call and, like a gateway with control-plane auth
//! configured, refuses a missing or wrong token. `sockctl` is checked against it too.

use std::{
    net::SocketAddr,
    path::Path,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use futures_util::Stream;
use serde_json::json;
use sockgate_client::{
    Client, ErrorKind, RetryPolicy, TlsOptions, TokenSource,
    proto::{
        BatchRequest, BatchResponse, BatchResult, DisconnectRequest, DisconnectResponse,
        GetInfoRequest, GetInfoResponse, GetSocketRequest, GetSocketResponse, JoinRequest,
        JoinResponse, LeaveRequest, LeaveResponse, ListRoomsRequest, ListRoomsResponse,
        ListSocketsRequest, ListSocketsResponse, SendRequest, SendResponse, WatchEventsRequest,
        WatchEventsResponse,
        batch_command::Command,
        batch_result::Reply,
        socket_control_server::{SocketControl, SocketControlServer},
    },
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{
    Code, Request, Response, Status,
    transport::{Certificate, Identity, Server, ServerTlsConfig},
};

const GOOD: &str = "good-token";
const READ_ONLY: &str = "read-only-token";

#[derive(Default)]
struct Fake {
    /// The `authorization` value of every call, in order.
    seen: Mutex<Vec<String>>,
    /// Whether a token is required (as a gateway with control-plane auth).
    require_token: bool,
    /// `GetInfo` fails with `UNAVAILABLE` this many times first.
    info_failures: AtomicU32,
    info_calls: AtomicU32,
    send_calls: AtomicU32,
}

impl Fake {
    /// Records the token and checks it; `write` calls need more than the read-only token.
    fn check<T>(&self, request: &Request<T>, write: bool) -> Result<(), Status> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap_or("<binary>").to_owned())
            .unwrap_or_default();
        self.seen.lock().unwrap().push(header.clone());
        if !self.require_token {
            return Ok(());
        }
        match header.strip_prefix("Bearer ") {
            Some(GOOD) => Ok(()),
            Some(READ_ONLY) if !write => Ok(()),
            Some(READ_ONLY) => Err(Status::permission_denied("the token lacks the send scope")),
            Some(_) => Err(Status::unauthenticated("invalid token")),
            None => Err(Status::unauthenticated("missing bearer token")),
        }
    }
}

/// The gRPC service over a shared [`Fake`].
struct Service(Arc<Fake>);

impl std::ops::Deref for Service {
    type Target = Fake;
    fn deref(&self) -> &Fake {
        &self.0
    }
}

type Events = Pin<Box<dyn Stream<Item = Result<WatchEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl SocketControl for Service {
    async fn send(&self, request: Request<SendRequest>) -> Result<Response<SendResponse>, Status> {
        self.check(&request, true)?;
        self.send_calls.fetch_add(1, Ordering::SeqCst);
        if request.get_ref().event == "flaky" {
            return Err(Status::unavailable("node restarting"));
        }
        Ok(Response::new(SendResponse::default()))
    }
    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        self.check(&request, true)?;
        Ok(Response::new(JoinResponse {}))
    }
    async fn leave(
        &self,
        request: Request<LeaveRequest>,
    ) -> Result<Response<LeaveResponse>, Status> {
        self.check(&request, true)?;
        Ok(Response::new(LeaveResponse {}))
    }
    async fn list_sockets(
        &self,
        request: Request<ListSocketsRequest>,
    ) -> Result<Response<ListSocketsResponse>, Status> {
        self.check(&request, false)?;
        Ok(Response::new(ListSocketsResponse::default()))
    }
    async fn get_socket(
        &self,
        request: Request<GetSocketRequest>,
    ) -> Result<Response<GetSocketResponse>, Status> {
        self.check(&request, false)?;
        if request.get_ref().socket_id == "slow" {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Err(Status::not_found("no such socket"))
    }
    async fn list_rooms(
        &self,
        request: Request<ListRoomsRequest>,
    ) -> Result<Response<ListRoomsResponse>, Status> {
        self.check(&request, false)?;
        Ok(Response::new(ListRoomsResponse::default()))
    }
    async fn get_info(
        &self,
        request: Request<GetInfoRequest>,
    ) -> Result<Response<GetInfoResponse>, Status> {
        self.check(&request, false)?;
        self.info_calls.fetch_add(1, Ordering::SeqCst);
        let failures = self.info_failures.load(Ordering::SeqCst);
        if failures > 0 {
            self.info_failures.store(failures - 1, Ordering::SeqCst);
            return Err(Status::unavailable("starting up"));
        }
        Ok(Response::new(GetInfoResponse {
            version: "fake".into(),
            node_id: "n1".into(),
            adapter: "memory".into(),
            ..GetInfoResponse::default()
        }))
    }
    async fn disconnect(
        &self,
        request: Request<DisconnectRequest>,
    ) -> Result<Response<DisconnectResponse>, Status> {
        self.check(&request, true)?;
        Ok(Response::new(DisconnectResponse {}))
    }
    /// A result per command: a `send` of event `missing` is `NOT_FOUND`, the rest succeed.
    async fn batch(
        &self,
        request: Request<BatchRequest>,
    ) -> Result<Response<BatchResponse>, Status> {
        self.check(&request, true)?;
        let results = request
            .into_inner()
            .commands
            .into_iter()
            .map(|command| match command.command {
                Some(Command::Send(send)) if send.event == "missing" => BatchResult {
                    code: Code::NotFound as u32,
                    message: "no connected socket".into(),
                    reply: None,
                },
                Some(Command::Send(_)) => BatchResult {
                    reply: Some(Reply::Send(SendResponse::default())),
                    ..BatchResult::default()
                },
                _ => BatchResult {
                    reply: Some(Reply::Join(JoinResponse {})),
                    ..BatchResult::default()
                },
            })
            .collect();
        Ok(Response::new(BatchResponse { results }))
    }
    type WatchEventsStream = Events;
    async fn watch_events(
        &self,
        request: Request<WatchEventsRequest>,
    ) -> Result<Response<Events>, Status> {
        self.check(&request, false)?;
        Ok(Response::new(Box::pin(tokio_stream::empty())))
    }
}

/// Serves `fake` on a free port, with TLS when given.
async fn serve(fake: Arc<Fake>, tls: Option<ServerTlsConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut server = Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls).unwrap();
    }
    tokio::spawn(
        server
            .add_service(SocketControlServer::new(Service(fake)))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr
}

fn requiring_tokens() -> Arc<Fake> {
    Arc::new(Fake {
        require_token: true,
        ..Fake::default()
    })
}

#[tokio::test]
async fn a_batch_gives_a_result_per_command_with_its_own_status() {
    let fake = requiring_tokens();
    let addr = serve(fake.clone(), None).await;
    let client = Client::builder(addr.to_string())
        .token(TokenSource::fixed(GOOD))
        .connect()
        .await
        .unwrap();
    let send = |event: &str| -> sockgate_client::proto::BatchCommand {
        SendRequest {
            event: event.into(),
            target: Some(sockgate_client::Target::sockets(["s"])),
            ..SendRequest::default()
        }
        .into()
    };
    let join = JoinRequest {
        target: Some(sockgate_client::Target::sockets(["s"])),
        rooms: vec!["r".into()],
    };
    let results = client
        .batch(vec![send("e"), send("missing"), join.into()], false)
        .await
        .unwrap();
    assert_eq!(results.len(), 3);
    assert!(matches!(results[0], Ok(Reply::Send(_))), "{results:?}");
    let missing = results[1].as_ref().unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    assert_eq!(missing.to_string(), "not found: no connected socket");
    assert!(matches!(results[2], Ok(Reply::Join(_))), "{results:?}");
    assert_eq!(*fake.seen.lock().unwrap(), [format!("Bearer {GOOD}")]);

    // The read-only token cannot batch: the call itself fails.
    let reader = Client::builder(addr.to_string())
        .token(TokenSource::fixed(READ_ONLY))
        .connect()
        .await
        .unwrap();
    let refused = reader.batch(vec![send("e")], true).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::PermissionDenied);
}

#[tokio::test]
async fn the_token_is_sent_with_every_call() {
    let fake = requiring_tokens();
    let addr = serve(fake.clone(), None).await;

    let client = Client::builder(addr.to_string())
        .token(TokenSource::fixed(GOOD))
        .connect()
        .await
        .unwrap();
    client.info().await.unwrap();
    client.send_to_room("r", "e", &json!({})).await.unwrap();
    assert_eq!(
        *fake.seen.lock().unwrap(),
        [format!("Bearer {GOOD}"), format!("Bearer {GOOD}")]
    );

    // A refreshing token: the callback is asked on each call.
    fake.seen.lock().unwrap().clear();
    let asked = Arc::new(AtomicU32::new(0));
    let counter = asked.clone();
    let refreshing = Client::builder(addr.to_string())
        .token(TokenSource::refreshing(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(GOOD.to_owned())
        }))
        .connect()
        .await
        .unwrap();
    refreshing.info().await.unwrap();
    refreshing
        .join(sockgate_client::Target::sockets(["s"]), ["r"])
        .await
        .unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    assert_eq!(fake.seen.lock().unwrap().len(), 2);

    let none = Client::builder(addr.to_string()).connect().await.unwrap();
    let error = none.info().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthenticated);
    assert_eq!(error.to_string(), "unauthenticated: missing bearer token");

    let wrong = Client::builder(addr.to_string())
        .token(TokenSource::fixed("forged"))
        .connect()
        .await
        .unwrap();
    let error = wrong.info().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthenticated);
    assert_eq!(error.status().unwrap().message(), "invalid token");

    let read_only = Client::builder(addr.to_string())
        .token(TokenSource::fixed(READ_ONLY))
        .connect()
        .await
        .unwrap();
    read_only.info().await.unwrap();
    let error = read_only.broadcast("e", &json!({})).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PermissionDenied);

    // A failing provider fails the call before anything is sent.
    let before = fake.seen.lock().unwrap().len();
    let failing = Client::builder(addr.to_string())
        .token(TokenSource::refreshing(|| Err("vault sealed".into())))
        .connect()
        .await
        .unwrap();
    let error = failing.info().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthenticated);
    assert!(error.to_string().contains("vault sealed"), "{error}");
    assert_eq!(fake.seen.lock().unwrap().len(), before);
}

#[tokio::test]
async fn only_read_only_calls_are_retried() {
    let fake = Arc::new(Fake::default());
    fake.info_failures.store(2, Ordering::SeqCst);
    let addr = serve(fake.clone(), None).await;
    let client = Client::builder(addr.to_string())
        .retry(RetryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
        })
        .connect()
        .await
        .unwrap();
    assert_eq!(client.info().await.unwrap().version, "fake");
    assert_eq!(fake.info_calls.load(Ordering::SeqCst), 3);

    let error = client
        .send_to_room("r", "flaky", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(Code::Unavailable));
    assert_eq!(
        fake.send_calls.load(Ordering::SeqCst),
        1,
        "Send is never retried"
    );

    fake.info_failures.store(5, Ordering::SeqCst);
    let error = client.info().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    assert_eq!(
        fake.info_calls.load(Ordering::SeqCst),
        6,
        "3 more attempts, then the error"
    );

    let before = fake.seen.lock().unwrap().len();
    let error = client.get_socket("AAAAAAAAAAAAAAAA").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound);
    assert_eq!(
        fake.seen.lock().unwrap().len(),
        before + 1,
        "NOT_FOUND is not retried"
    );

    let quick = Client::builder(addr.to_string())
        .deadline(Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    let error = quick.get_socket("slow").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::DeadlineExceeded, "{error}");
}

/// A CA, a server certificate for `localhost` and a client certificate, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca: String,
    server: Identity,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf("localhost");
    let (client_cert, client_key) = leaf("backend");
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("ca.pem", &ca.pem());
    write("client.pem", &client_cert);
    write("client.key", &client_key);
    Pki {
        ca: ca.pem(),
        server: Identity::from_pem(server_cert, server_key),
        dir,
    }
}

impl Pki {
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Server TLS that requires a client certificate signed by the CA.
    fn mutual(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.server.clone())
            .client_ca_root(Certificate::from_pem(&self.ca))
    }
}

#[tokio::test]
async fn tls_with_a_ca_and_a_client_certificate() {
    let pki = pki();
    let fake = requiring_tokens();
    let addr = serve(fake.clone(), Some(pki.mutual())).await;
    let endpoint = format!("https://{addr}");
    let tls = TlsOptions::new()
        .ca_file(pki.path("ca.pem"))
        .unwrap()
        .domain("localhost");

    let client = Client::builder(&endpoint)
        .tls(
            tls.clone()
                .identity_files(pki.path("client.pem"), pki.path("client.key"))
                .unwrap(),
        )
        .token(TokenSource::fixed(GOOD))
        .connect()
        .await
        .unwrap();
    assert_eq!(client.info().await.unwrap().version, "fake");
    assert_eq!(*fake.seen.lock().unwrap(), [format!("Bearer {GOOD}")]);

    // Without the client certificate the server refuses the handshake.
    let anonymous = Client::builder(&endpoint)
        .tls(tls.clone())
        .token(TokenSource::fixed(GOOD))
        .connect_lazy()
        .unwrap();
    let error = anonymous.info().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");

    // A certificate for another name, and the system roots, are both refused.
    let wrong_name = Client::builder(&endpoint)
        .tls(TlsOptions::new().ca_pem(pki.ca.clone()).domain("elsewhere"))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(wrong_name.kind(), ErrorKind::Unavailable, "{wrong_name}");
    let system_roots = Client::builder(&endpoint)
        .tls(TlsOptions::new().domain("localhost"))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(
        system_roots.kind(),
        ErrorKind::Unavailable,
        "{system_roots}"
    );

    // Plaintext to a TLS port fails too.
    let plain = Client::builder(addr.to_string())
        .connect_lazy()
        .unwrap()
        .info()
        .await
        .unwrap_err();
    assert_eq!(plain.kind(), ErrorKind::Unavailable, "{plain}");
}

async fn sockctl(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sockctl"))
        .env_clear()
        .envs(envs.iter().copied())
        .args(args)
        .output()
        .await
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn sockctl_sends_tokens_and_speaks_tls() {
    let pki = pki();
    let fake = requiring_tokens();
    let plain = serve(fake.clone(), None).await.to_string();
    let addr = plain.as_str();

    let (code, stdout, _) =
        sockctl(&["--addr", addr, "--token", GOOD, "info", "--json"], &[]).await;
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["version"],
        "fake"
    );

    let (code, _, stderr) = sockctl(
        &["info"],
        &[("SOCKGATE_ADDR", addr), ("SOCKGATE_TOKEN", "forged")],
    )
    .await;
    assert_eq!(code, 4, "{stderr}");
    assert_eq!(stderr, "sockctl: unauthenticated: invalid token\n");
    let (code, _, stderr) = sockctl(&["--addr", addr, "info"], &[]).await;
    assert_eq!(
        (code, stderr.as_str()),
        (4, "sockctl: unauthenticated: missing bearer token\n")
    );

    let (code, _, stderr) = sockctl(
        &[
            "--addr", addr, "--token", READ_ONLY, "send", "--all", "e", "{}",
        ],
        &[],
    )
    .await;
    assert_eq!(code, 5, "{stderr}");
    assert!(
        stderr.starts_with("sockctl: permission denied:"),
        "{stderr}"
    );

    let token_file = pki.dir.path().join("token");
    std::fs::write(&token_file, format!("{GOOD}\n")).unwrap();
    let token_file = token_file.display().to_string();
    fake.seen.lock().unwrap().clear();
    let (code, _, stderr) = sockctl(
        &["rooms"],
        &[
            ("SOCKGATE_ADDR", addr),
            ("SOCKGATE_TOKEN_FILE", &token_file),
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        *fake.seen.lock().unwrap(),
        [format!("Bearer {GOOD}")],
        "the file's token, trimmed"
    );

    let (code, _, stderr) = sockctl(
        &[
            "--addr",
            addr,
            "--token",
            GOOD,
            "--timeout",
            "200ms",
            "socket",
            "slow",
        ],
        &[],
    )
    .await;
    assert_eq!(code, 8, "{stderr}");
    assert!(stderr.starts_with("sockctl: deadline exceeded"), "{stderr}");

    let tls_addr = format!("https://{}", serve(fake.clone(), Some(pki.mutual())).await);
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("client.pem"),
        pki.path("client.key"),
    );
    let (code, stdout, stderr) = sockctl(
        &["info", "--json"],
        &[
            ("SOCKGATE_ADDR", &tls_addr),
            ("SOCKGATE_TOKEN", GOOD),
            ("SOCKGATE_CA", &ca),
            ("SOCKGATE_CERT", &cert),
            ("SOCKGATE_KEY", &key),
            ("SOCKGATE_TLS_DOMAIN", "localhost"),
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["node_id"],
        "n1"
    );

    let (code, _, stderr) = sockctl(
        &[
            "--addr",
            &tls_addr,
            "--token",
            GOOD,
            "--ca",
            &ca,
            "--tls-domain",
            "localhost",
            "info",
        ],
        &[],
    )
    .await;
    assert_eq!(code, 3, "without the client certificate: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let (code, _, _) = sockctl(&["--addr", &tls_addr, "--cert", &cert, "info"], &[]).await;
    assert_eq!(code, 2, "--cert without --key is a usage error");
    assert!(Path::new(&key).exists());
}
