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
    /// the URL when absent).
    pub redis_url: String,
    /// Prefix of every Redis channel and key, so several deployments can share a Redis.
    pub key_prefix: String,
    /// Longest wait for the other nodes' answers (and for Redis) in one cluster operation.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How often a node publishes its presence and counts.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A node that has not published its presence for this long is dropped from the node
    /// list and the counts.
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
            heartbeat_interval: Duration::from_secs(1),
            node_ttl: Duration::from_secs(5),
        }
    }
}

impl ClusterConfig {
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
        if self.request_timeout.is_zero() || self.heartbeat_interval.is_zero() {
            return invalid(
                "cluster.request_timeout and cluster.heartbeat_interval must be more than 0",
            );
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
        let bad_node_id = check(&|c| c.node_id = "a#b".into()).unwrap();
        assert!(bad_node_id.contains("node_id"));
    }
}
