//! Timestamps in the formats the protocol uses.

use std::time::SystemTime;

use time::{OffsetDateTime, format_description::FormatItem, macros::format_description};

const ISO_MILLIS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Now as JavaScript's `Date.prototype.toISOString()` writes it: `2026-11-27T11:13:22.123Z`.
pub fn iso_now() -> String {
    OffsetDateTime::now_utc()
        .format(ISO_MILLIS)
        .unwrap_or_default()
}

/// `ms` (since the Unix epoch) as [`iso_now`] writes a time.
pub fn iso_from_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(ISO_MILLIS).ok())
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A protobuf timestamp from milliseconds since the Unix epoch.
pub fn timestamp_from_ms(ms: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

/// Now as a protobuf timestamp.
pub fn timestamp_now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(SystemTime::now())
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_has_millis_and_z() {
        let now = super::iso_now();
        assert_eq!(now.len(), 24, "{now}");
        assert!(now.ends_with('Z'));
        assert_eq!(&now[19..20], ".");
    }
}
