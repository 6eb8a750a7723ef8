//! Wires the gateway together: edge and control plane on their own listeners, the
//! application ping, the ready line, and graceful shutdown.

use std::{
    hash::{BuildHasher, RandomState},
    io::Write,
    net::SocketAddr,
    sync::Arc,
    time::Instant,
};

use anyhow::Context;
use axum::{Router, serve::ListenerExt};
use socketioxide::{
    SocketIo,
    adapter::{Adapter, Emitter},
};
use socketioxide_core::adapter::CoreAdapter;
use sockgate_proto::{FILE_DESCRIPTOR_SET, socket_control_server::SocketControlServer};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_stream::{Stream, StreamExt, wrappers::TcpListenerStream};
use tonic_health::server::HealthReporter;
use tonic_reflection::server::Builder;
use tracing::{info, warn};

use crate::{
    admin::{self, Admin},
    auth::{AuthChain, CallerVerifier, RoomValidator},
    cluster::{
        Cluster, ClusterError, Directory,
        adapter::{self, ClusterAdapter, MemoryAdapter, RedisAdapter},
        redis::Link,
    },
    config::{AdapterKind, Config, ControlConfig, ServerTlsConfig},
    control::{
        ControlContext, ControlLimits, ControlService, LocalSockets,
        layers::{ControlLayers, LayerSettings},
    },
    edge::{self, state::Mirrors},
    events::EventBus,
    hooks::Hooks,
    listener,
    recovery::Recovery,
    shutdown,
    tls::{self, ServerTls, listener::TlsIncoming},
};

/// Bytes a control request may have on the wire beyond its payload limit (its envelope).
const GRPC_ENVELOPE_BYTES: usize = 64 * 1024;

/// Most bytes a control request may have on the wire: a `Send` with the largest payload,
/// or a `Batch` a little over its limit, so that the handler, not the decoder, refuses it
/// with a message that names `control.max_batch_bytes`.
fn largest_control_message(control: &ControlConfig) -> usize {
    control.max_payload_bytes.max(control.max_batch_bytes) + GRPC_ENVELOPE_BYTES
}

/// Runs the gateway until SIGTERM / SIGINT, on the adapter `cluster.adapter` names.
pub async fn run(config: Config) -> anyhow::Result<()> {
    match config.cluster.adapter {
        AdapterKind::Memory => serve::<MemoryAdapter>(config, (), None).await,
        AdapterKind::Redis => {
            let link =
                Link::connect(&config.cluster.redis_url, config.cluster.command_timeout()).await?;
            let state = adapter::redis_state(link.clone(), &config.cluster);
            serve::<RedisAdapter>(config, state, Some(link)).await
        }
    }
}

/// Builds the node (edge, cluster, admin, control plane), serves until a signal or an edge
/// failure, then shuts down.
async fn serve<A: ClusterAdapter>(
    config: Config,
    adapter: <A as CoreAdapter<Emitter>>::State,
    redis: Option<Link>,
) -> anyhow::Result<()> {
    let node_id = node_id(&config);
    warn_about_open_settings(&config);

    let directory = Arc::new(Directory::default());
    let hooks = Hooks::from_config(&config.hooks)?;
    let callers = CallerVerifier::from_config(&config.control.auth)?.map(Arc::new);
    let events = Arc::new(EventBus::new(node_id.clone(), &config.watch));
    let recovery = Recovery::new(&config.recovery);
    let (router, edge) = build_edge::<A>(
        &config,
        adapter,
        hooks,
        events.clone(),
        directory.clone(),
        recovery.clone(),
    )
    .await?;
    let io = edge.io.clone();
    let mirrors = edge.mirrors.clone();
    let cluster = start_cluster(&config, &node_id, redis, directory, &edge, &events).await?;
    edge.user_limit.count_across(cluster.clone());

    let listeners = Listeners::bind(&config)?;
    let trigger = shutdown::Trigger::default();
    let control_service = ControlService::new(control_context(
        &config,
        io.clone(),
        cluster.clone(),
        events,
    ));
    let ui = admin::ui::Sources {
        control: control_service.clone(),
        cluster: cluster.clone(),
        started: Instant::now(),
    };
    let admin = serve_admin(&config, listeners.admin, io.clone(), mirrors, ui, &trigger)?;
    let edge_task = serve_edge(&config, listeners.edge, router, &trigger)?;
    let control = serve_control(
        &config,
        control_service,
        callers,
        listeners.control,
        &trigger,
    )
    .await?;
    let ping = edge::ping::spawn(io.clone(), config.edge.app_ping_interval);

    admin.set_ready(true);
    announce_ready(&node_id, &config, &listeners.addrs);
    tokio::select! {
        () = shutdown::signal() => {}
        result = edge_task => {
            return Err(anyhow::anyhow!("edge server stopped: {result:?}"));
        }
    }
    let running = Running {
        edge,
        admin,
        control,
        ping,
        cluster,
        trigger,
    };
    running.shut_down(&config).await;
    Ok(())
}

/// The Socket.IO edge and its router: the configured authenticators, room rules and hooks
/// decide; lifecycle and client events go to `events`, sockets are reported to `directory`.
async fn build_edge<A: ClusterAdapter>(
    config: &Config,
    adapter: <A as CoreAdapter<Emitter>>::State,
    hooks: Option<Arc<Hooks>>,
    events: Arc<EventBus>,
    directory: Arc<Directory>,
    recovery: Option<Arc<Recovery>>,
) -> anyhow::Result<(Router, Arc<edge::Edge<A>>)> {
    let deciders = edge::Deciders {
        auth: AuthChain::from_config(&config.auth, hooks.as_ref())?,
        room_validator: RoomValidator::new(config.rooms.allow.clone()),
        hooks,
        events,
        mirrors: Arc::new(Mirrors::new(directory, recovery.clone())),
        recovery,
    };
    Ok(edge::build::<A>(&config.edge, deciders, adapter).await?)
}

/// This node's view of the cluster, started: it answers other nodes from the edge's
/// sockets.
async fn start_cluster<A: Adapter>(
    config: &Config,
    node_id: &str,
    redis: Option<Link>,
    directory: Arc<Directory>,
    edge: &edge::Edge<A>,
    events: &Arc<EventBus>,
) -> Result<Arc<Cluster>, ClusterError> {
    let io = &edge.io;
    let cluster = Arc::new(
        match redis {
            Some(link) => {
                let uid = io.config().server_id.to_string();
                Cluster::redis(node_id.to_owned(), link, uid, &config.cluster, directory)
            }
            None => Cluster::memory(node_id.to_owned()),
        }
        .with_recovery(edge.recovery.clone()),
    );
    let mirrors = edge.mirrors.clone();
    let local = LocalSockets::new(
        io.clone(),
        mirrors,
        node_id.to_owned(),
        events.clone(),
        config.edge.parser,
    );
    cluster.start(Arc::new(local), events.clone()).await?;
    Ok(cluster)
}

/// The three listeners, bound before anything is served.
struct Listeners {
    edge: TcpListener,
    control: TcpListener,
    admin: TcpListener,
    addrs: Addresses,
}

/// Where the listeners are bound (the configured port may be 0).
struct Addresses {
    edge: SocketAddr,
    control: SocketAddr,
    admin: SocketAddr,
}

impl Listeners {
    fn bind(config: &Config) -> anyhow::Result<Self> {
        let edge = listener::bind(config.edge.listen, config.edge.listen_backlog)
            .with_context(|| format!("cannot listen on edge.listen {}", config.edge.listen))?;
        let control = listener::bind(config.control.listen, listener::SERVICE_BACKLOG)
            .with_context(|| {
                format!("cannot listen on control.listen {}", config.control.listen)
            })?;
        let admin = listener::bind(config.admin.listen, listener::SERVICE_BACKLOG)
            .with_context(|| format!("cannot listen on admin.listen {}", config.admin.listen))?;
        let addrs = Addresses {
            edge: edge.local_addr()?,
            control: control.local_addr()?,
            admin: admin.local_addr()?,
        };
        Ok(Self {
            edge,
            control,
            admin,
            addrs,
        })
    }
}

/// Serves metrics, liveness and readiness, and the Admin UI's server if enabled, until the
/// trigger fires; not ready yet.
fn serve_admin<A: Adapter>(
    config: &Config,
    listener: TcpListener,
    io: SocketIo<A>,
    mirrors: Arc<Mirrors>,
    ui: admin::ui::Sources<A>,
    trigger: &shutdown::Trigger,
) -> anyhow::Result<Admin<A>> {
    let admin = Admin::new(io, mirrors);
    let mut router = admin.clone().router();
    if config.admin.ui.enabled {
        router = admin::ui::attach(router, &config.admin.ui, ui, trigger.wait())?;
    }
    match tls_of("admin.tls", &config.admin.tls, HTTP1)? {
        Some(tls) => tokio::spawn(
            axum::serve(TlsIncoming::new(listener, tls)?, router)
                .with_graceful_shutdown(trigger.wait())
                .into_future(),
        ),
        None => tokio::spawn(
            axum::serve(listener, router)
                .with_graceful_shutdown(trigger.wait())
                .into_future(),
        ),
    };
    Ok(admin)
}

/// Serves Socket.IO until the trigger fires; the task ends early only if the server fails.
fn serve_edge(
    config: &Config,
    listener: TcpListener,
    router: Router,
    trigger: &shutdown::Trigger,
) -> anyhow::Result<JoinHandle<()>> {
    let header_timeout = config.edge.header_timeout;
    Ok(match tls_of("edge.tls", &config.edge.tls, HTTP1)? {
        Some(tls) => tokio::spawn(edge::server::serve(
            TlsIncoming::new(listener, tls)?,
            router,
            header_timeout,
            trigger.wait(),
        )),
        None => tokio::spawn(edge::server::serve(
            listener.tap_io(|tcp| listener::no_delay(tcp)),
            router,
            header_timeout,
            trigger.wait(),
        )),
    })
}

/// What the control handlers share.
fn control_context<A: Adapter>(
    config: &Config,
    io: SocketIo<A>,
    cluster: Arc<Cluster>,
    events: Arc<EventBus>,
) -> ControlContext<A> {
    ControlContext {
        io,
        cluster,
        started: Instant::now(),
        limits: ControlLimits {
            max_payload_bytes: config.control.max_payload_bytes,
            max_ack_timeout: config.control.max_ack_timeout,
            max_ack_reply_bytes: config.control.max_ack_reply_bytes,
            max_batch_commands: config.control.max_batch_commands,
            max_batch_bytes: config.control.max_batch_bytes,
        },
        parser: config.edge.parser,
        events,
    }
}

/// The control port while it runs: its health (turned off first on shutdown) and its task.
struct ControlPlane {
    health: HealthReporter,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// Serves `SocketControl`, health and reflection behind the control layers until the
/// trigger fires.
async fn serve_control<A: ClusterAdapter>(
    config: &Config,
    service: ControlService<A>,
    callers: Option<Arc<CallerVerifier>>,
    listener: TcpListener,
    trigger: &shutdown::Trigger,
) -> anyhow::Result<ControlPlane> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<SocketControlServer<ControlService<A>>>()
        .await;
    let control = SocketControlServer::new(service)
        .max_decoding_message_size(largest_control_message(&config.control))
        .max_encoding_message_size(usize::MAX);
    let tls = tls_of("control.tls", &config.control.tls, &[b"h2"])?;
    let router = tonic::transport::Server::builder()
        .layer(ControlLayers::new(LayerSettings {
            verifier: callers,
            reflection: config.control.auth.reflection,
            max_concurrent_calls: config.control.max_concurrent_calls,
            request_timeout: config.control.request_timeout,
        }))
        .add_service(control)
        .add_service(health_service)
        .add_service(reflection(Builder::build_v1)?)
        .add_service(reflection(Builder::build_v1alpha)?);
    let task = match tls {
        Some(tls) => {
            let incoming = TlsIncoming::new(listener, tls)?;
            tokio::spawn(
                router.serve_with_incoming_shutdown(incoming.into_stream(), trigger.wait()),
            )
        }
        None => tokio::spawn(router.serve_with_incoming_shutdown(
            no_delay(TcpListenerStream::new(listener)),
            trigger.wait(),
        )),
    };
    Ok(ControlPlane { health, task })
}

/// Logs that the node is ready and prints the `READY` line tests and scripts wait for.
fn announce_ready(node_id: &str, config: &Config, addrs: &Addresses) {
    let Addresses {
        edge,
        control,
        admin,
    } = addrs;
    info!(%node_id, %edge, path = %config.edge.path, %control, %admin, "sockgate ready");
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "READY edge={edge} control={control} admin={admin}");
    let _ = stdout.flush();
}

/// What a serving node stops on shutdown.
struct Running<A: Adapter> {
    edge: Arc<edge::Edge<A>>,
    admin: Admin<A>,
    control: ControlPlane,
    ping: Option<JoinHandle<()>>,
    cluster: Arc<Cluster>,
    trigger: shutdown::Trigger,
}

impl<A: ClusterAdapter> Running<A> {
    /// Stops taking new sockets and reports not ready (then waits `shutdown_delay` for load
    /// balancers to notice), tells and drains the sockets within `shutdown_timeout`, leaves
    /// the cluster, and stops the servers.
    async fn shut_down(self, config: &Config) {
        info!(deadline = ?config.shutdown_timeout, delay = ?config.shutdown_delay, "shutting down");
        self.edge.start_draining();
        self.admin.set_ready(false);
        self.control
            .health
            .set_not_serving::<SocketControlServer<ControlService<A>>>()
            .await;
        if !config.shutdown_delay.is_zero() {
            tokio::time::sleep(config.shutdown_delay).await;
        }
        if let Some(ping) = self.ping {
            ping.abort();
        }
        shutdown::drain_sockets(&self.edge.io, config.shutdown_timeout).await;
        self.cluster.leave().await;
        self.trigger.fire();
        if tokio::time::timeout(config.shutdown_timeout, self.control.task)
            .await
            .is_err()
        {
            warn!("control plane did not stop in time");
        }
        info!("stopped");
    }
}

/// The accepted connections with Nagle's algorithm off (tonic's own `tcp_nodelay` applies
/// only to listeners it binds itself, not to an incoming stream we pass it).
fn no_delay(
    incoming: TcpListenerStream,
) -> impl Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    incoming.map(|accepted| {
        if let Ok(stream) = &accepted {
            listener::no_delay(stream);
        }
        accepted
    })
}

/// ALPN of the HTTP/1.1 listeners (Socket.IO's WebSocket upgrade needs HTTP/1.1).
const HTTP1: &[&[u8]] = &[b"http/1.1"];

/// The TLS of a listener, watched for certificate changes; `None` when not configured.
fn tls_of(
    section: &'static str,
    config: &ServerTlsConfig,
    alpn: &[&[u8]],
) -> Result<Option<Arc<ServerTls>>, tls::TlsError> {
    let tls = ServerTls::load(section, config, alpn)?;
    if let Some(tls) = &tls {
        tls::reload::watch(tls.clone());
    }
    Ok(tls)
}

/// The configured node id, or `node-` and 8 random hex digits.
fn node_id(config: &Config) -> String {
    if config.node_id.is_empty() {
        let random = RandomState::new().hash_one(std::process::id()) as u32;
        format!("node-{random:08x}")
    } else {
        config.node_id.clone()
    }
}

/// The services of the control port, as reflection lists them. `sockgate.v1.SocketHooks`
/// is described in the same descriptor set but served by backends, not here, so it is not
/// listed (its messages can still be described).
const CONTROL_PORT_SERVICES: [&str; 4] = [
    sockgate_proto::socket_control_server::SERVICE_NAME,
    tonic_health::pb::health_server::SERVICE_NAME,
    tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME,
    tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME,
];

/// A reflection service (v1 or v1alpha) describing the services of the control port:
/// sockgate's API, health, and reflection in both versions (both are served; the builder
/// alone would describe only its own).
fn reflection<S>(
    build: impl FnOnce(Builder<'static>) -> Result<S, tonic_reflection::server::Error>,
) -> Result<S, tonic_reflection::server::Error> {
    let builder = Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .include_reflection_service(false)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET);
    build(
        CONTROL_PORT_SERVICES
            .into_iter()
            .fold(builder, Builder::with_service_name),
    )
}

fn warn_about_open_settings(config: &Config) {
    if config.is_dev_mode() {
        warn!(
            "DEVELOPMENT MODE: no authenticator is configured, so every socket that emits \
             `authenticate` is admitted without credentials (edge limited to loopback). \
             Configure auth.authenticators for anything else."
        );
    } else if config
        .auth
        .authenticators
        .contains(&crate::config::AuthenticatorKind::None)
    {
        warn!("auth.authenticators contains `none`: every socket is admitted without credentials");
    }
    if config.rooms.allow.is_empty() && !config.hooks.authorize_join {
        info!(
            "rooms.allow is empty and hooks.authorize_join is off: client joins are rejected \
             unless a JWT room claim allows them"
        );
    }
    if !config.control.listen.ip().is_loopback() {
        if !config.control.auth.is_enabled() {
            warn!(listen = %config.control.listen, "the control plane is unauthenticated and not on loopback");
        } else if !config.control.tls.is_enabled() {
            warn!(
                listen = %config.control.listen,
                "the control plane is not on loopback and has no TLS: bearer tokens cross the \
                 network in clear text; configure control.tls"
            );
        }
    }
}
