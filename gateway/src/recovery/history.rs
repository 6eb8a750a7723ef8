//! The history of replayable events: what was sent, to whom, at which offset, bounded in
//! events, bytes and age. A recovering socket is replayed the events of the history that
//! would have reached it, after the last offset it received.

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, SystemTime},
};

use sockgate_proto::{SendRequest, Target};

use super::offset::{Offset, unix_ms};

/// One replayable event.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Where it sits.
    pub offset: Offset,
    /// The `Send` that emitted it (never in ack mode).
    pub send: Arc<SendRequest>,
}

impl Entry {
    /// What the entry counts against the history's byte bound.
    fn bytes(&self) -> usize {
        let send = &self.send;
        let target = send.target.as_ref().map_or(0, |t| {
            let names = t.socket_ids.iter().chain(&t.rooms).chain(&t.user_ids);
            let names = names.chain(&t.except_rooms).chain(&t.except_socket_ids);
            names.map(|n| n.len() + 24).sum()
        });
        let attachments: usize = send.attachments.iter().map(|a| a.len() + 32).sum();
        128 + send.event.len() + send.data_json.len() + attachments + target
    }
}

/// The socket a replay is for, as it was when it went away.
#[derive(Clone, Copy)]
pub struct Member<'a> {
    /// Its id.
    pub sid: &'a str,
    /// Its user.
    pub user: Option<&'a str>,
    /// Whether it is in a public room.
    pub in_room: &'a (dyn Fn(&str) -> bool + Sync),
}

impl Member<'_> {
    /// Whether an event sent to `target` reached this socket (an authenticated one).
    pub fn is_reached_by(&self, target: &Target) -> bool {
        let in_any = |rooms: &[String]| rooms.iter().any(|r| (self.in_room)(r));
        let named = |ids: &[String]| ids.iter().any(|id| id == self.sid);
        let selected = target.all
            || named(&target.socket_ids)
            || self
                .user
                .is_some_and(|u| target.user_ids.iter().any(|id| id == u))
            || in_any(&target.rooms);
        selected && !named(&target.except_socket_ids) && !in_any(&target.except_rooms)
    }
}

/// Why missed events cannot be replayed exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Gap {
    /// Events after the client's offset have been forgotten (bounds or age), or the
    /// offset is older than what this history ever held.
    #[error("events after the client's offset are no longer kept")]
    Forgotten,
    /// More missed events than `recovery.max_replay_events`.
    #[error("more missed events than recovery.max_replay_events")]
    TooMany,
}

/// The entries of `entries` that reached `member`, in their order; an error when there
/// are more than `max`.
pub fn reaching<'e>(
    entries: impl IntoIterator<Item = &'e Entry>,
    member: Member<'_>,
    max: usize,
) -> Result<Vec<Entry>, Gap> {
    let mut missed = Vec::new();
    for entry in entries {
        if entry
            .send
            .target
            .as_ref()
            .is_some_and(|t| member.is_reached_by(t))
        {
            if missed.len() == max {
                return Err(Gap::TooMany);
            }
            missed.push(entry.clone());
        }
    }
    Ok(missed)
}

/// Bounds of a history.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Most events.
    pub events: usize,
    /// Most bytes.
    pub bytes: usize,
    /// Oldest event kept.
    pub age: Duration,
}

/// The events, oldest first.
#[derive(Debug)]
pub struct Log {
    entries: VecDeque<Entry>,
    bytes: usize,
    /// Every event after this offset is kept (the last one forgotten, or where the log
    /// started).
    floor: Offset,
    /// The last offset recorded or skipped.
    head: Offset,
    bounds: Bounds,
}

impl Log {
    /// An empty log that knows nothing before `now`.
    pub fn new(bounds: Bounds, now: SystemTime) -> Self {
        let start = Offset {
            ms: unix_ms(now),
            seq: 0,
        };
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            floor: start,
            head: start,
            bounds,
        }
    }

    /// Forgets everything and starts after `offset` (a cluster node, where the shared
    /// history stands when it starts reading it).
    pub fn restart_at(&mut self, offset: Offset) {
        self.entries.clear();
        self.bytes = 0;
        self.floor = offset;
        self.head = offset;
    }

    /// The last offset recorded: a socket admitted now has missed nothing up to it.
    pub fn head(&self) -> Offset {
        self.head
    }

    /// The offset the next event recorded `now` gets (single node).
    pub fn next_offset(&self, now: SystemTime) -> Offset {
        self.head.next(now)
    }

    /// Records `entry` (its offset greater than every one before), then forgets what the
    /// bounds no longer allow.
    pub fn record(&mut self, entry: Entry, now: SystemTime) {
        debug_assert!(entry.offset > self.head);
        self.head = entry.offset;
        self.bytes += entry.bytes();
        self.entries.push_back(entry);
        self.trim(now);
    }

    /// Forgets the events past the bounds or older than their age.
    pub fn trim(&mut self, now: SystemTime) {
        let oldest = unix_ms(now).saturating_sub(self.bounds.age.as_millis() as u64);
        while let Some(first) = self.entries.front() {
            let over = self.entries.len() > self.bounds.events || self.bytes > self.bounds.bytes;
            if !over && first.offset.ms >= oldest {
                break;
            }
            let first = self.entries.pop_front().expect("front exists");
            self.bytes -= first.bytes();
            self.floor = first.offset;
        }
    }

    /// The events after `after` that reached `member`, oldest first; an error when some
    /// of them may be forgotten or there are more than `max`.
    pub fn missed(&self, after: Offset, member: Member<'_>, max: usize) -> Result<Vec<Entry>, Gap> {
        if after < self.floor {
            return Err(Gap::Forgotten);
        }
        let start = self.entries.partition_point(|e| e.offset <= after);
        reaching(self.entries.range(start..), member, max)
    }

    /// Events kept and their bytes.
    pub fn size(&self) -> (usize, usize) {
        (self.entries.len(), self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(event: &str, target: Target) -> Arc<SendRequest> {
        Arc::new(SendRequest {
            event: event.into(),
            target: Some(target),
            ..SendRequest::default()
        })
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn bounds() -> Bounds {
        Bounds {
            events: 100,
            bytes: 1 << 20,
            age: Duration::from_secs(60),
        }
    }

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn a_member_is_reached_as_delivery_would_reach_it() {
        let rooms = names(&["a", "b"]);
        let in_room = |r: &str| rooms.iter().any(|x| x == r);
        let member = Member {
            sid: "s1",
            user: Some("u1"),
            in_room: &in_room,
        };
        let target = |f: fn(&mut Target)| {
            let mut t = Target::default();
            f(&mut t);
            t
        };
        assert!(member.is_reached_by(&target(|t| t.all = true)));
        assert!(member.is_reached_by(&target(|t| t.rooms = names(&["x", "b"]))));
        assert!(member.is_reached_by(&target(|t| t.user_ids = names(&["u1"]))));
        assert!(member.is_reached_by(&target(|t| t.socket_ids = names(&["s1"]))));
        assert!(!member.is_reached_by(&target(|t| t.rooms = names(&["x"]))));
        assert!(!member.is_reached_by(&target(|t| t.user_ids = names(&["u2"]))));
        assert!(!member.is_reached_by(&target(|t| {
            t.all = true;
            t.except_rooms = names(&["a"]);
        })));
        assert!(!member.is_reached_by(&target(|t| {
            t.rooms = names(&["a"]);
            t.except_socket_ids = names(&["s1"]);
        })));
    }

    #[test]
    fn missed_events_come_in_order_and_only_whole() {
        let mut log = Log::new(bounds(), at(1000));
        let start = log.head();
        let in_room = |r: &str| r == "r";
        let member = Member {
            sid: "s",
            user: None,
            in_room: &in_room,
        };
        let mut offsets = Vec::new();
        for (i, room) in ["r", "other", "r", "r"].into_iter().enumerate() {
            let offset = log.next_offset(at(1001 + i as u64));
            let target = Target {
                rooms: names(&[room]),
                ..Target::default()
            };
            log.record(
                Entry {
                    offset,
                    send: send(&format!("e{i}"), target),
                },
                at(1001),
            );
            offsets.push(offset);
        }
        let events = |after| {
            log.missed(after, member, 10)
                .unwrap()
                .iter()
                .map(|e| e.send.event.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(events(start), ["e0", "e2", "e3"]);
        assert_eq!(events(offsets[0]), ["e2", "e3"]);
        assert_eq!(events(offsets[3]), Vec::<String>::new());
        assert_eq!(log.missed(start, member, 2).unwrap_err(), Gap::TooMany);
        let before_start = Offset { ms: 999, seq: 0 };
        assert_eq!(
            log.missed(before_start, member, 10).unwrap_err(),
            Gap::Forgotten
        );
    }

    #[test]
    fn forgotten_events_make_older_offsets_unrecoverable() {
        let mut log = Log::new(
            Bounds {
                events: 2,
                ..bounds()
            },
            at(0),
        );
        let member = Member {
            sid: "s",
            user: None,
            in_room: &|_| false,
        };
        let mut offsets = Vec::new();
        for i in 0..3 {
            let offset = log.next_offset(at(10 + i));
            let target = Target {
                all: true,
                ..Target::default()
            };
            log.record(
                Entry {
                    offset,
                    send: send("e", target),
                },
                at(10 + i),
            );
            offsets.push(offset);
        }
        assert_eq!(log.size().0, 2);
        assert_eq!(
            log.missed(Offset::default(), member, 10).unwrap_err(),
            Gap::Forgotten
        );
        assert_eq!(log.missed(offsets[0], member, 10).unwrap().len(), 2);
        log.trim(at(12 + 60_001));
        assert_eq!(log.size(), (0, 0), "aged out");
        assert_eq!(
            log.missed(offsets[1], member, 10).unwrap_err(),
            Gap::Forgotten
        );
        assert!(log.missed(offsets[2], member, 10).unwrap().is_empty());
    }
}
