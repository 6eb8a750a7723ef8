//! The one Redis connection a node shares between socketioxide's Redis adapter and the
//! gateway's own cluster features (node registry, per-node queries, event relay).
//!
//! socketioxide-redis's own driver holds a plain multiplexed connection: when Redis
//! restarts, that connection and its subscriptions are gone for good. This driver uses
//! redis' `ConnectionManager` instead, which reconnects by itself (on the disconnect push,
//! or on the next command after its retries ran out: the heartbeat sends one every
//! `cluster.heartbeat_interval`) and subscribes again to every channel. Every command is
//! bounded by `cluster.redis_command_timeout`, so nothing waits on a Redis that is down.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use redis::{
    AsyncCommands, FromRedisValue, PushInfo, PushKind, Value,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// Why a Redis operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?} (cluster.redis_command_timeout)")]
    Timeout(Duration),
}

type Handlers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

/// A shared, self-healing Redis connection (cheap to clone).
#[derive(Clone)]
pub struct Link {
    conn: ConnectionManager,
    handlers: Handlers,
    timeout: Duration,
}

/// Why the node cannot use the configured Redis.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL cannot be parsed or does not allow RESP3.
    #[error("cluster.redis_url: {0}")]
    Url(String),
    /// Redis cannot be reached or refused the handshake.
    #[error("cannot connect to Redis at {addr}: {reason}")]
    Unreachable {
        /// host:port, without credentials.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// The server is older than Redis 7.
    #[error("Redis at {addr} is version {version}; the cluster adapter needs Redis 7 or newer")]
    TooOld {
        /// host:port.
        addr: String,
        /// What `INFO server` said.
        version: String,
    },
}

/// The URL with RESP3 asked for (socketioxide-redis receives its messages as RESP3 pushes).
fn with_resp3(url: &str) -> Result<String, ConnectError> {
    if url.contains("protocol=") {
        if url.contains("protocol=resp3") || url.contains("protocol=3") {
            return Ok(url.to_owned());
        }
        return Err(ConnectError::Url(
            "the Redis adapter needs RESP3: remove the protocol parameter or set protocol=resp3"
                .into(),
        ));
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{separator}protocol=resp3"))
}

impl Link {
    /// Connects, checks the server version, and starts receiving subscribed messages; each
    /// later command is bounded by `timeout`. Fails within about twice `timeout` when Redis
    /// cannot be used.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Self, ConnectError> {
        let client = redis::Client::open(with_resp3(url)?.as_str())
            // The error text may quote the URL, which may hold a password: not repeated.
            .map_err(|e| ConnectError::Url(format!("not a valid Redis URL ({:?})", e.kind())))?;
        let addr = client.get_connection_info().addr().to_string();
        let handlers: Handlers = Arc::default();
        let sink = handlers.clone();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1))
            .set_number_of_retries(3)
            .set_push_sender(move |push: PushInfo| {
                route(push, &sink);
                Ok::<(), std::convert::Infallible>(())
            })
            .set_automatic_resubscription();
        let unreachable = |reason: String| ConnectError::Unreachable {
            addr: addr.clone(),
            reason,
        };
        let conn = tokio::time::timeout(
            timeout * 2,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| unreachable(format!("no answer within {:?}", timeout * 2)))?
        .map_err(|e| unreachable(e.to_string()))?;
        let link = Self {
            conn,
            handlers,
            timeout,
        };
        let info: String = link
            .run(redis::cmd("INFO").arg("server"))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let version = server_version(&info);
        if major(&version) < 7 {
            return Err(ConnectError::TooOld { addr, version });
        }
        debug!(%addr, %version, "connected to Redis");
        Ok(link)
    }

    /// Runs one command within the timeout.
    pub async fn run<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, LinkError> {
        let mut conn = self.conn.clone();
        tokio::time::timeout(self.timeout, cmd.query_async(&mut conn))
            .await
            .map_err(|_| LinkError::Timeout(self.timeout))?
            .map_err(LinkError::from)
    }

    /// Runs a Lua script (atomic) within the timeout.
    pub async fn run_script<T: FromRedisValue>(
        &self,
        script: &redis::ScriptInvocation<'_>,
    ) -> Result<T, LinkError> {
        let mut conn = self.conn.clone();
        tokio::time::timeout(self.timeout, script.invoke_async(&mut conn))
            .await
            .map_err(|_| LinkError::Timeout(self.timeout))?
            .map_err(LinkError::from)
    }

    /// Runs a pipeline (its commands are sent and applied in order) within the timeout.
    pub async fn run_pipe<T: FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, LinkError> {
        let mut conn = self.conn.clone();
        tokio::time::timeout(self.timeout, pipe.query_async(&mut conn))
            .await
            .map_err(|_| LinkError::Timeout(self.timeout))?
            .map_err(LinkError::from)
    }
}

/// `redis_version` of an `INFO server` reply.
fn server_version(info: &str) -> String {
    info.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_owned()
}

/// The major version number, 0 when unreadable.
fn major(version: &str) -> u32 {
    version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

/// Hands a received pub/sub message to its channel's subscriber. A subscriber that does
/// not keep up loses the message (logged): the connection must never block.
fn route(push: PushInfo, handlers: &Handlers) {
    if !matches!(push.kind, PushKind::Message | PushKind::SMessage) || push.data.len() < 2 {
        return;
    }
    let mut data = push.data.into_iter();
    let (Some(chan), Some(payload)) = (data.next(), data.next()) else {
        return;
    };
    let (Ok(chan), Ok(payload)) = (
        String::from_redis_value(chan),
        Vec::<u8>::from_redis_value(payload),
    ) else {
        warn!("unreadable pub/sub message from Redis");
        return;
    };
    let handlers = handlers.read().unwrap_or_else(|e| e.into_inner());
    if let Some(tx) = handlers.get(&chan)
        && let Err(e) = tx.try_send((chan, payload))
    {
        warn!("a Redis subscriber is not keeping up, message dropped: {e}");
    }
}

impl Driver for Link {
    type Error = LinkError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), Self::Error> {
        let mut conn = self.conn.clone();
        tokio::time::timeout(self.timeout, conn.publish::<_, _, Value>(chan, val))
            .await
            .map_err(|_| LinkError::Timeout(self.timeout))??;
        Ok(())
    }

    async fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> Result<MessageStream<ChanItem>, Self::Error> {
        let (tx, rx) = mpsc::channel(size);
        // Registered first: Redis may deliver before SUBSCRIBE's reply is read.
        self.handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(chan.clone(), tx);
        let mut conn = self.conn.clone();
        let subscribed = tokio::time::timeout(self.timeout, conn.subscribe(chan.as_str()))
            .await
            .map_err(|_| LinkError::Timeout(self.timeout))
            .and_then(|r| r.map_err(LinkError::from));
        if let Err(e) = subscribed {
            self.handlers
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&chan);
            return Err(e);
        }
        Ok(MessageStream::new(rx))
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), Self::Error> {
        self.handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&chan);
        let mut conn = self.conn.clone();
        tokio::time::timeout(self.timeout, conn.unsubscribe(chan))
            .await
            .map_err(|_| LinkError::Timeout(self.timeout))??;
        Ok(())
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        let (_, count): (String, u16) = self
            .run(redis::cmd("PUBSUB").arg("NUMSUB").arg(chan))
            .await?;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_before_7_are_told_apart() {
        let info = "# Server\r\nredis_version:6.2.14\r\nredis_mode:standalone\r\n";
        assert_eq!(server_version(info), "6.2.14");
        assert_eq!(major(&server_version(info)), 6);
        assert_eq!(major("7.0.15"), 7);
        assert_eq!(major(&server_version("nothing")), 0);
    }

    #[test]
    fn resp3_is_added_or_checked() {
        assert_eq!(
            with_resp3("redis://127.0.0.1:6379").unwrap(),
            "redis://127.0.0.1:6379?protocol=resp3"
        );
        assert_eq!(
            with_resp3("redis://h:1/0?x=1").unwrap(),
            "redis://h:1/0?x=1&protocol=resp3"
        );
        assert!(with_resp3("redis://h:1/?protocol=resp3").is_ok());
        assert!(matches!(
            with_resp3("redis://h:1/?protocol=resp2"),
            Err(ConnectError::Url(_))
        ));
    }
}
