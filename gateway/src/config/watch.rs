//! `[watch]`: `WatchEvents` streams.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `WatchEvents` streams.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchConfig {
    /// Events buffered per watcher; past that, events are dropped and the watcher gets an
    /// `EVENT_KIND_DROPPED` marker with the count.
    pub buffer: usize,
    /// Bytes (encoded events) queued per watcher; past that, events are dropped the same
    /// way. Client events carry what clients send, so a count alone would let a stalled
    /// watcher hold `buffer` times `edge.max_payload_bytes`. One event larger than that
    /// still goes into an empty queue.
    pub buffer_bytes: usize,
    /// Most concurrent watchers per node; more get `RESOURCE_EXHAUSTED`.
    pub max_watchers: usize,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            buffer: 1024,
            buffer_bytes: 16 * 1024 * 1024,
            max_watchers: 64,
        }
    }
}

impl WatchConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.buffer == 0 || self.buffer_bytes == 0 {
            return Err(ConfigError::Invalid(
                "watch.buffer and watch.buffer_bytes must be more than 0".into(),
            ));
        }
        Ok(())
    }
}
