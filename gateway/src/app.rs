//! Wires the gateway together: edge and control plane on their own listeners, the
//! application ping, the ready line, and graceful shutdown.

use std::{
    hash::{BuildHasher, RandomState},
    io::Write,
    sync::Arc,
    time::Instant,
};

use anyhow::Context;
use axum::serve::ListenerExt;
use socketioxide::adapter::Emitter;
use socketioxide_core::adapter::CoreAdapter;
use sockgate_client::{FILE_DESCRIPTOR_SET, proto::socket_control_server::SocketControlServer};
use tokio_stream::{Stream, StreamExt, wrappers::TcpListenerStream};
use tonic_reflection::server::Builder;
use tracing::{info, warn};

use crate::{
    admin::Admin,
    auth::{AuthChain, CallerVerifier, RoomValidator},
    cluster::{
        Cluster, Directory,
        adapter::{self, ClusterAdapter, MemoryAdapter, RedisAdapter},
        link::Link,
    },
    config::{AdapterKind, Config, ServerTlsConfig},
    control::{
        ControlContext, ControlLimits, ControlService, LocalSockets,
        layers::{ControlLayers, LayerSettings},
    },
    edge,
    events::EventBus,
    hooks::Hooks,
    listener, shutdown,
    tls::{self, ServerTls, listener::TlsIncoming},
};

/// Most bytes a control request may have on the wire (payload limit plus envelope).
const GRPC_ENVELOPE_BYTES: usize = 64 * 1024;

/// Runs the gateway until SIGTERM / SIGINT, on the adapter `cluster.adapter` names.
pub async fn run(config: Config) -> anyhow::Result<()> {
    match config.cluster.adapter {
        AdapterKind::Memory => serve::<MemoryAdapter>(config, (), None).await,
        AdapterKind::Redis => {
            let link =
                Link::connect(&config.cluster.redis_url, config.cluster.request_timeout).await?;
            let state = adapter::redis_state(link.clone(), &config.cluster);
            serve::<RedisAdapter>(config, state, Some(link)).await
        }
    }
}

async fn serve<A: ClusterAdapter>(
    config: Config,
    adapter: <A as CoreAdapter<Emitter>>::State,
    redis: Option<Link>,
) -> anyhow::Result<()> {
    let node_id = node_id(&config);
    warn_about_open_settings(&config);

    let directory = Arc::new(Directory::default());
    let hooks = Hooks::from_config(&config.hooks).map_err(anyhow::Error::msg)?;
    let callers = CallerVerifier::from_config(&config.control.auth)?.map(Arc::new);
    let events = Arc::new(EventBus::new(node_id.clone(), &config.watch));
    let deciders = edge::Deciders {
        auth: AuthChain::from_config(&config.auth, hooks.as_ref())?,
        room_validator: RoomValidator::new(config.rooms.allow.clone()),
        hooks,
        events: events.clone(),
        directory: directory.clone(),
    };
    let (router, edge) = edge::build::<A>(&config.edge, deciders, adapter)
        .await
        .map_err(anyhow::Error::msg)?;
    let io = edge.io.clone();
    let cluster = Arc::new(match redis {
        Some(link) => {
            let uid = io.config().server_id.to_string();
            Cluster::redis(node_id.clone(), link, uid, &config.cluster, directory)
        }
        None => Cluster::memory(node_id.clone()),
    });
    cluster
        .start(
            Arc::new(LocalSockets::new(
                io.clone(),
                node_id.clone(),
                events.clone(),
            )),
            events.clone(),
        )
        .await?;

    let edge_listener = listener::bind(config.edge.listen, config.edge.listen_backlog)
        .with_context(|| format!("cannot listen on edge.listen {}", config.edge.listen))?;
    let control_listener = listener::bind(config.control.listen, listener::SERVICE_BACKLOG)
        .with_context(|| format!("cannot listen on control.listen {}", config.control.listen))?;
    let admin_listener = listener::bind(config.admin.listen, listener::SERVICE_BACKLOG)
        .with_context(|| format!("cannot listen on admin.listen {}", config.admin.listen))?;
    let edge_addr = edge_listener.local_addr()?;
    let control_addr = control_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let trigger = shutdown::Trigger::default();
    let admin = Admin::new(io.clone());
    let admin_router = admin.clone().router();
    match tls_of("admin.tls", &config.admin.tls, HTTP1)? {
        Some(tls) => tokio::spawn(
            axum::serve(TlsIncoming::new(admin_listener, tls)?, admin_router)
                .with_graceful_shutdown(trigger.wait())
                .into_future(),
        ),
        None => tokio::spawn(
            axum::serve(admin_listener, admin_router)
                .with_graceful_shutdown(trigger.wait())
                .into_future(),
        ),
    };

    let edge_task = match tls_of("edge.tls", &config.edge.tls, HTTP1)? {
        Some(tls) => tokio::spawn(edge::server::serve(
            TlsIncoming::new(edge_listener, tls)?,
            router,
            config.edge.header_timeout,
            trigger.wait(),
        )),
        None => tokio::spawn(edge::server::serve(
            edge_listener.tap_io(|tcp| listener::no_delay(tcp)),
            router,
            config.edge.header_timeout,
            trigger.wait(),
        )),
    };

    let service = ControlService::new(ControlContext {
        io: io.clone(),
        cluster: cluster.clone(),
        started: Instant::now(),
        limits: ControlLimits {
            max_payload_bytes: config.control.max_payload_bytes,
            max_ack_timeout: config.control.max_ack_timeout,
            max_ack_reply_bytes: config.control.max_ack_reply_bytes,
        },
        events,
    });
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<SocketControlServer<ControlService<A>>>()
        .await;
    let control = SocketControlServer::new(service)
        .max_decoding_message_size(config.control.max_payload_bytes + GRPC_ENVELOPE_BYTES)
        .max_encoding_message_size(usize::MAX);
    let control_tls = tls_of("control.tls", &config.control.tls, &[b"h2"])?;
    let control_router = tonic::transport::Server::builder()
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
    let control_task = match control_tls {
        Some(tls) => {
            let incoming = TlsIncoming::new(control_listener, tls)?;
            tokio::spawn(
                control_router.serve_with_incoming_shutdown(incoming.into_stream(), trigger.wait()),
            )
        }
        None => tokio::spawn(control_router.serve_with_incoming_shutdown(
            no_delay(TcpListenerStream::new(control_listener)),
            trigger.wait(),
        )),
    };

    let ping = edge::ping::spawn(io.clone(), config.edge.app_ping_interval);

    admin.set_ready(true);
    info!(%node_id, edge = %edge_addr, path = %config.edge.path, control = %control_addr, admin = %admin_addr, "sockgate ready");
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "READY edge={edge_addr} control={control_addr} admin={admin_addr}"
    );
    let _ = stdout.flush();
    drop(stdout);

    tokio::select! {
        () = shutdown::signal() => {}
        result = edge_task => {
            return Err(anyhow::anyhow!("edge server stopped: {result:?}"));
        }
    }
    info!(deadline = ?config.shutdown_timeout, delay = ?config.shutdown_delay, "shutting down");
    edge.start_draining();
    admin.set_ready(false);
    health
        .set_not_serving::<SocketControlServer<ControlService<A>>>()
        .await;
    if !config.shutdown_delay.is_zero() {
        tokio::time::sleep(config.shutdown_delay).await;
    }
    if let Some(ping) = ping {
        ping.abort();
    }
    shutdown::drain_sockets(&io, config.shutdown_timeout).await;
    cluster.leave().await;
    trigger.fire();
    if tokio::time::timeout(config.shutdown_timeout, control_task)
        .await
        .is_err()
    {
        warn!("control plane did not stop in time");
    }
    info!("stopped");
    Ok(())
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
    sockgate_client::proto::socket_control_server::SERVICE_NAME,
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
