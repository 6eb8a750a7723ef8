//! The sessions of sockets that went away and may come back, on a single node: kept in
//! memory for `recovery.max_disconnection`, each taken at most once.

use std::{
    collections::{BTreeMap, VecDeque},
    ops::Bound,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use socketioxide::socket::Sid;

use super::{offset::Offset, pid::SecretDigest, store::AwayFilter};
use crate::{auth::Identity, edge::index::Page, metrics::RecoveryOutcome, rooms::Owner};

/// What a socket's recovery restores.
#[derive(Debug, Clone)]
pub struct Saved {
    /// The digest of its pid's secret.
    pub digest: SecretDigest,
    /// Who it was authenticated as.
    pub identity: Arc<Identity>,
    /// Its public rooms and who put it in each.
    pub rooms: Vec<(String, Owner)>,
    /// Nothing recorded up to this offset is owed to it (where it was admitted or last
    /// recovered).
    pub since: Offset,
    /// When it went away.
    pub away_since: SystemTime,
}

impl Saved {
    /// Whether it gets `room` back when it recovers.
    pub fn gets_back(&self, room: &str) -> bool {
        self.rooms.iter().any(|(r, _)| r == room)
    }
}

/// The sessions away, by socket id.
#[derive(Debug)]
pub struct SavedSessions {
    window: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// In socket id order, for listings.
    sessions: BTreeMap<Sid, Saved>,
    /// Sessions in the order they went away, to forget them when their window closes.
    expiry: VecDeque<(SystemTime, Sid)>,
}

impl SavedSessions {
    /// Sessions kept for `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            inner: Mutex::default(),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the session of a socket that went away.
    pub fn put(&self, sid: Sid, saved: Saved) {
        let mut inner = self.inner();
        self.forget_expired(&mut inner, saved.away_since);
        inner.expiry.push_back((saved.away_since, sid));
        inner.sessions.insert(sid, saved);
    }

    /// Takes the session of `sid` if `digest` is its pid's and its window is open: it
    /// cannot be taken twice.
    pub fn take(
        &self,
        sid: Sid,
        digest: &SecretDigest,
        now: SystemTime,
    ) -> Result<Saved, RecoveryOutcome> {
        let mut inner = self.inner();
        self.forget_expired(&mut inner, now);
        match inner.sessions.get(&sid) {
            Some(saved) if saved.digest == *digest => {
                Ok(inner.sessions.remove(&sid).expect("present"))
            }
            _ => Err(RecoveryOutcome::Unknown),
        }
    }

    /// Whether `sid` is away and may still come back.
    pub fn is_away(&self, sid: Sid, now: SystemTime) -> bool {
        let mut inner = self.inner();
        self.forget_expired(&mut inner, now);
        inner.sessions.contains_key(&sid)
    }

    /// The session of `sid` if it is away at `now`.
    pub fn get(&self, sid: Sid, now: SystemTime) -> Option<Saved> {
        let mut inner = self.inner();
        self.forget_expired(&mut inner, now);
        inner.sessions.get(&sid).cloned()
    }

    /// The first `limit` sessions away at `now` that `filter` keeps, after `after`.
    pub fn page(
        &self,
        filter: AwayFilter<'_>,
        after: Option<Sid>,
        limit: usize,
        now: SystemTime,
    ) -> Page<(Sid, Saved)> {
        let mut inner = self.inner();
        self.forget_expired(&mut inner, now);
        let matched = if filter.is_empty() {
            inner.sessions.len()
        } else {
            inner
                .sessions
                .values()
                .filter(|s| filter.matches(s))
                .count()
        };
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut hits = inner
            .sessions
            .range((start, Bound::Unbounded))
            .filter(|(_, saved)| filter.matches(saved));
        let items = hits
            .by_ref()
            .take(limit)
            .map(|(sid, saved)| (*sid, saved.clone()))
            .collect();
        Page {
            items,
            matched: matched as u32,
            more: hits.next().is_some(),
        }
    }

    /// Sessions away whose window is open at `now`.
    pub fn count(&self, now: SystemTime) -> usize {
        let mut inner = self.inner();
        self.forget_expired(&mut inner, now);
        inner.sessions.len()
    }

    fn forget_expired(&self, inner: &mut Inner, now: SystemTime) {
        while let Some(&(away_since, sid)) = inner.expiry.front() {
            if away_since + self.window > now {
                break;
            }
            inner.expiry.pop_front();
            // The socket may have come back and gone away again since: then its entry is
            // a later one.
            if inner
                .sessions
                .get(&sid)
                .is_some_and(|s| s.away_since == away_since)
            {
                inner.sessions.remove(&sid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(digest: u8, away_since: SystemTime) -> Saved {
        Saved {
            digest: [digest; 32],
            identity: Arc::default(),
            rooms: Vec::new(),
            since: Offset::default(),
            away_since,
        }
    }

    #[test]
    fn a_session_is_taken_once_with_its_secret_within_its_window() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let store = SavedSessions::new(Duration::from_secs(60));
        let (a, b) = (Sid::new(), Sid::new());
        store.put(a, saved(1, t0));
        store.put(b, saved(2, t0 + Duration::from_secs(30)));
        assert_eq!(
            store.take(a, &[9; 32], t0).unwrap_err(),
            RecoveryOutcome::Unknown,
            "wrong secret"
        );
        assert!(store.take(a, &[1; 32], t0).is_ok());
        assert!(store.take(a, &[1; 32], t0).is_err(), "single use");
        assert!(store.is_away(b, t0 + Duration::from_secs(60)));
        assert!(
            !store.is_away(b, t0 + Duration::from_secs(90)),
            "window closed"
        );
        assert_eq!(store.count(t0 + Duration::from_secs(90)), 0);
    }

    #[test]
    fn sessions_are_listed_in_id_order_filtered_and_paged() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let store = SavedSessions::new(Duration::from_secs(60));
        let mut sids: Vec<Sid> = (0..4).map(|_| Sid::new()).collect();
        for (i, sid) in sids.iter().enumerate() {
            let mut session = saved(1, t0 + Duration::from_secs(i as u64 * 20));
            if i % 2 == 0 {
                session.rooms.push(("chat:x".into(), Owner::Client));
            }
            store.put(*sid, session);
        }
        let ids =
            |page: &Page<(Sid, Saved)>| page.items.iter().map(|(s, _)| *s).collect::<Vec<_>>();
        let expired_first = sids.remove(0);
        let now = t0 + Duration::from_secs(70);
        sids.sort();

        let first = store.page(AwayFilter::default(), None, 2, now);
        assert_eq!(
            (first.matched, first.more),
            (3, true),
            "the first one expired"
        );
        assert_eq!(ids(&first), sids[..2].to_vec());
        let rest = store.page(AwayFilter::default(), Some(sids[1]), 2, now);
        assert_eq!((rest.matched, rest.more), (3, false));
        assert_eq!(ids(&rest), sids[2..].to_vec());

        let room = AwayFilter {
            room: Some("chat:x"),
            user: None,
        };
        let in_room = store.page(room, None, 10, now);
        assert_eq!(in_room.matched, 1, "one of the two in chat:x expired");
        assert_ne!(in_room.items[0].0, expired_first);
        assert!(store.get(expired_first, now).is_none());
        let user = AwayFilter {
            room: None,
            user: Some("alice"),
        };
        assert_eq!(store.page(user, None, 10, now).matched, 0, "no user");
    }

    #[test]
    fn a_session_saved_again_lives_its_new_window() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let store = SavedSessions::new(Duration::from_secs(60));
        let a = Sid::new();
        store.put(a, saved(1, t0));
        store.take(a, &[1; 32], t0).unwrap();
        store.put(a, saved(1, t0 + Duration::from_secs(50)));
        assert!(store.is_away(a, t0 + Duration::from_secs(70)));
    }
}
