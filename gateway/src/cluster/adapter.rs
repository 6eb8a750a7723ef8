//! The adapters the gateway runs on. Everything else is generic over socketioxide's
//! `Adapter`; this is the one place that names the concrete ones, and `app` picks one
//! from `cluster.adapter`.

use futures_util::future::BoxFuture;
use socketioxide::adapter::{Adapter, Emitter, LocalAdapter};
use socketioxide_core::adapter::DefinedAdapter;
use socketioxide_redis::{CustomRedisAdapter, InitError, RedisAdapterConfig, RedisAdapterCtr};

use super::redis::Link;
use crate::config::ClusterConfig;

/// socketioxide's in-memory adapter: one node.
pub type MemoryAdapter = LocalAdapter;

/// socketioxide-redis's adapter on the gateway's self-healing Redis connection.
pub type RedisAdapter = CustomRedisAdapter<Emitter, Link>;

/// The Redis adapter's state: its channels under `cluster.key_prefix`, waiting at most
/// `cluster.request_timeout` for other nodes' answers (its questions are cluster questions
/// too: fetching sockets, acks of a broadcast).
pub fn redis_state(link: Link, config: &ClusterConfig) -> RedisAdapterCtr<Link> {
    RedisAdapterCtr::new_with_driver(
        link,
        RedisAdapterConfig::new()
            .with_prefix(config.key_prefix.clone())
            .with_request_timeout(config.request_timeout),
    )
}

/// Why the adapter could not set up a namespace (the Redis adapter subscribes to its
/// channels).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct InitializationError(#[from] InitError<Link>);

/// An adapter whose namespace initialization the gateway can wait for.
pub trait ClusterAdapter: Adapter + DefinedAdapter {
    /// Waits until the namespace is ready (the Redis adapter subscribes to its channels).
    fn initialized(init: Self::InitRes) -> BoxFuture<'static, Result<(), InitializationError>>;
}

impl ClusterAdapter for LocalAdapter {
    fn initialized((): ()) -> BoxFuture<'static, Result<(), InitializationError>> {
        Box::pin(async { Ok(()) })
    }
}

impl ClusterAdapter for RedisAdapter {
    fn initialized(init: Self::InitRes) -> BoxFuture<'static, Result<(), InitializationError>> {
        Box::pin(async move { Ok(init.await?) })
    }
}
