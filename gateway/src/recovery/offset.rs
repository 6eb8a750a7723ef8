//! Offsets: where an event sits in the history. Written as Redis stream ids
//! (`{milliseconds}-{sequence}`), which the cluster's stream assigns and a single node
//! imitates, so that both order the same way and a client cannot tell them apart.

use std::{fmt, str::FromStr, time::SystemTime};

/// A position in the history; later events have greater offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset {
    /// Milliseconds since the Unix epoch when the event was recorded.
    pub ms: u64,
    /// Order among events of the same millisecond.
    pub seq: u64,
}

impl Offset {
    /// The offset after `self` for an event recorded `now`: the same rule as a Redis
    /// stream's automatic ids, so offsets grow even if the clock steps back.
    pub fn next(self, now: SystemTime) -> Self {
        let ms = unix_ms(now);
        if ms > self.ms {
            Self { ms, seq: 0 }
        } else {
            Self {
                ms: self.ms,
                seq: self.seq + 1,
            }
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Text that is not an offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an offset")]
pub struct NotAnOffset;

impl FromStr for Offset {
    type Err = NotAnOffset;

    fn from_str(text: &str) -> Result<Self, NotAnOffset> {
        let (ms, seq) = text.split_once('-').ok_or(NotAnOffset)?;
        let number = |s: &str| {
            (!s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
                .ok_or(NotAnOffset)
        };
        Ok(Self {
            ms: number(ms)?,
            seq: number(seq)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn offsets_grow_whatever_the_clock_does() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1000);
        let a = Offset::default().next(t);
        assert_eq!(a, Offset { ms: 1000, seq: 0 });
        let b = a.next(t);
        assert_eq!(b, Offset { ms: 1000, seq: 1 });
        let c = b.next(t - Duration::from_millis(5));
        assert!(c > b, "a clock stepping back does not go back");
        assert!(c.next(t + Duration::from_millis(1)) > c);
    }

    #[test]
    fn offsets_read_back_and_nothing_else_is_one() {
        let offset = Offset {
            ms: 1733550000000,
            seq: 7,
        };
        assert_eq!(offset.to_string().parse(), Ok(offset));
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "1",
            "a-1",
            "1-2-3",
            "+1-2",
            "1 -2",
            "99999999999999999999999-0",
        ] {
            assert_eq!(bad.parse::<Offset>(), Err(NotAnOffset), "{bad:?}");
        }
    }
}
