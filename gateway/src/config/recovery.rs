//! `[recovery]`: Socket.IO connection state recovery.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Connection state recovery: a client whose connection drops comes back as the same
/// socket (same id, identity and rooms) and receives what was sent to it meanwhile, on
/// any node of the cluster (see the README, "Reconnecting without losing messages").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecoveryConfig {
    /// Turns recovery on: each socket's CONNECT reply carries a private session id, each
    /// replayable event an offset as its last argument. Off by default, as in Socket.IO.
    pub enabled: bool,
    /// How long a disconnected socket's session can be recovered.
    #[serde(with = "humantime_serde")]
    pub max_disconnection: Duration,
    /// Most missed events replayed to one socket; a socket that missed more is not
    /// recovered (it gets a new session and nothing is replayed).
    pub max_replay_events: usize,
    /// Most bytes of events the history keeps (in memory on each node; in Redis, the
    /// stream is trimmed to about `max_history_events`). Older events are forgotten, and a
    /// socket that missed one of them is not recovered.
    pub max_history_bytes: usize,
    /// Most events the history keeps, in memory and in the Redis stream.
    pub max_history_events: usize,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_disconnection: Duration::from_secs(120),
            max_replay_events: 1000,
            max_history_bytes: 64 * 1024 * 1024,
            max_history_events: 100_000,
        }
    }
}

impl RecoveryConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        if self.max_disconnection.is_zero()
            || self.max_replay_events == 0
            || self.max_history_bytes == 0
            || self.max_history_events == 0
        {
            return Err(ConfigError::Invalid(
                "recovery.max_disconnection, recovery.max_replay_events, \
                 recovery.max_history_bytes and recovery.max_history_events must be more than 0"
                    .into(),
            ));
        }
        Ok(())
    }
}
