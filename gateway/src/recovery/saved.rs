//! The sessions of sockets that went away and may come back, on a single node: kept in
//! memory for `recovery.max_disconnection`, each taken at most once.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use socketioxide::socket::Sid;

use super::{offset::Offset, pid::SecretDigest};
use crate::{auth::Identity, metrics::RecoveryOutcome, rooms::Owner};

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

/// The sessions away, by socket id.
#[derive(Debug)]
pub struct SavedSessions {
    window: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<Sid, Saved>,
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
