//! `[cluster]`: one node or several, on Redis.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Which adapter connects the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdapterKind {
    /// One node, state in memory: no dependency.
    Memory,
    /// Several nodes sharing a Redis (socketioxide-redis).
    Redis,
}

/// Scale-out: the adapter and, with Redis, how the nodes find and ask each other.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `memory` (one node) or `redis`.
    pub adapter: AdapterKind,
    /// `redis://[user:password@]host:port[/db]` of a Redis >= 7; RESP3 is used (added to
    /// the URL when it has no `protocol`; RESP2 is refused).
    pub redis_url: String,
    /// Prefix of every Redis channel and key, so several deployments can share a Redis.
    pub key_prefix: String,
    /// Deadline of one question to the cluster, everything included: a listing, a socket
    /// lookup, `GetInfo`, counts before a `Send`, a `Join` / `Leave`, a `Disconnect`
    /// barrier, the adapter's wait for other nodes (ack mode waits the ack timeout plus this).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest wait for one Redis command (heartbeat, directory write, publish, and each
    /// command of a question; also connecting at start, twice this); unset means
    /// `request_timeout`, as one command can never use more than the question it is part
    /// of, and a longer value is refused. Lower it to notice a stalled Redis sooner.
    #[serde(default, with = "humantime_serde")]
    pub redis_command_timeout: Option<Duration>,
    /// How often a node publishes its presence and counts (the freshness of other nodes'
    /// counts in `GetInfo`).
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A node that has not published its presence for this long is dropped from the node
    /// list and the counts (at least twice `heartbeat_interval`).
    #[serde(with = "humantime_serde")]
    pub node_ttl: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            adapter: AdapterKind::Memory,
            redis_url: String::new(),
            key_prefix: "sockgate".to_owned(),
            request_timeout: Duration::from_secs(2),
            redis_command_timeout: None,
            heartbeat_interval: Duration::from_secs(1),
            node_ttl: Duration::from_secs(5),
        }
    }
}

impl ClusterConfig {
    /// The bound on one Redis command: `cluster.redis_command_timeout`, or
    /// `cluster.request_timeout` when unset.
    pub fn command_timeout(&self) -> Duration {
        self.redis_command_timeout.unwrap_or(self.request_timeout)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: &str| Err(ConfigError::Invalid(msg.to_owned()));
        match self.adapter {
            AdapterKind::Memory if !self.redis_url.is_empty() => {
                return invalid("cluster.redis_url is set but cluster.adapter is `memory`");
            }
            AdapterKind::Redis if self.redis_url.is_empty() => {
                return invalid("cluster.adapter `redis` needs cluster.redis_url");
            }
            _ => {}
        }
        let prefix_ok = !self.key_prefix.is_empty()
            && self
                .key_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
        if !prefix_ok {
            return invalid(
                "cluster.key_prefix must be 1 or more of the characters a-z A-Z 0-9 - _ . :",
            );
        }
        if self.request_timeout.is_zero()
            || self.command_timeout().is_zero()
            || self.heartbeat_interval.is_zero()
        {
            return invalid(
                "cluster.request_timeout, cluster.redis_command_timeout and \
                 cluster.heartbeat_interval must be more than 0",
            );
        }
        if self.command_timeout() > self.request_timeout {
            return Err(ConfigError::Invalid(format!(
                "cluster.redis_command_timeout ({:?}) must not be longer than \
                 cluster.request_timeout ({:?}): a question to the cluster would give up \
                 before its Redis command does",
                self.command_timeout(),
                self.request_timeout
            )));
        }
        if self.node_ttl < self.heartbeat_interval * 2 {
            return invalid("cluster.node_ttl must be at least twice cluster.heartbeat_interval");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn cluster_settings_are_checked() {
        let check = |edit: &dyn Fn(&mut Config)| {
            let mut config = Config::default();
            edit(&mut config);
            config.validate().err().map(|e| e.to_string())
        };
        assert_eq!(
            check(&|c| {
                c.cluster.adapter = AdapterKind::Redis;
                c.cluster.redis_url = "redis://127.0.0.1:6379".into();
            }),
            None
        );
        let redis_without_url = check(&|c| c.cluster.adapter = AdapterKind::Redis).unwrap();
        assert!(redis_without_url.contains("needs cluster.redis_url"));
        let url_without_redis = check(&|c| c.cluster.redis_url = "redis://h:1".into()).unwrap();
        assert!(url_without_redis.contains("cluster.adapter is `memory`"));
        let bad_prefix = check(&|c| c.cluster.key_prefix = "a b".into()).unwrap();
        assert!(bad_prefix.contains("cluster.key_prefix"));
        let short_ttl = check(&|c| c.cluster.node_ttl = Duration::from_millis(1500)).unwrap();
        assert!(short_ttl.contains("twice"));
        let slow_command = check(&|c| {
            c.cluster.redis_command_timeout = Some(Duration::from_secs(3));
        })
        .unwrap();
        assert!(slow_command.contains("cluster.redis_command_timeout"));
        assert_eq!(
            check(&|c| c.cluster.redis_command_timeout = Some(Duration::from_secs(2))),
            None
        );
        let bad_node_id = check(&|c| c.node_id = "a#b".into()).unwrap();
        assert!(bad_node_id.contains("node_id"));
    }

    #[test]
    fn the_redis_command_timeout_defaults_to_the_request_timeout() {
        use figment::{
            Figment,
            providers::{Format, Serialized, Toml},
        };
        let load = |toml: &str| -> ClusterConfig {
            Figment::from(Serialized::defaults(Config::default()))
                .merge(Toml::string(toml))
                .extract::<Config>()
                .unwrap()
                .cluster
        };
        let unset = load("[cluster]\nrequest_timeout = \"3s\"");
        assert_eq!(unset.redis_command_timeout, None);
        assert_eq!(unset.command_timeout(), Duration::from_secs(3));
        let set = load("[cluster]\nredis_command_timeout = \"500ms\"");
        assert_eq!(set.command_timeout(), Duration::from_millis(500));
        assert_eq!(set.request_timeout, Duration::from_secs(2));
    }
}
