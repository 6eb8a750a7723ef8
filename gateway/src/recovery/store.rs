//! Where sessions are kept between a socket going away and coming back, and where the
//! history lives: this node's memory on a single node, Redis in a cluster (see
//! `cluster::redis::recovery`), behind one trait so that the edge and the control plane
//! do not know which.

use std::time::SystemTime;

use futures_util::future::BoxFuture;
use socketioxide::socket::Sid;
use sockgate_proto::SendRequest;

use super::{
    history::Entry,
    offset::Offset,
    pid::SecretDigest,
    saved::{Saved, SavedSessions},
};
use crate::{edge::index::Page, metrics::RecoveryOutcome};

/// Why the shared history could not be used.
#[derive(Debug, thiserror::Error)]
#[error("recovery history unavailable: {0}")]
pub struct HistoryError(pub String);

/// Why the sessions away could not be read.
#[derive(Debug, thiserror::Error)]
#[error("recovery sessions unavailable: {0}")]
pub struct SessionsError(pub String);

/// Which sessions away a listing wants (both filters apply).
#[derive(Debug, Clone, Copy, Default)]
pub struct AwayFilter<'a> {
    /// Sessions that get this room back.
    pub room: Option<&'a str>,
    /// Sessions of this user.
    pub user: Option<&'a str>,
}

impl AwayFilter<'_> {
    /// Whether it keeps every session.
    pub fn is_empty(&self) -> bool {
        self.room.is_none() && self.user.is_none()
    }

    /// Whether `saved` passes.
    pub fn matches(&self, saved: &Saved) -> bool {
        self.room.is_none_or(|room| saved.gets_back(room))
            && self
                .user
                .is_none_or(|user| saved.identity.user_id.as_deref() == Some(user))
    }
}

/// What keeps sessions (and, in a cluster, the history).
pub trait Store: Send + Sync + 'static {
    /// Whether [`Store::live`] keeps anything (the caller saves building the session).
    fn keeps_live(&self) -> bool {
        false
    }
    /// A live socket's session changed (admitted, recovered, rooms): kept so that it
    /// survives a crash of this node. Queued, in order; nothing on a single node.
    fn live(&self, sid: Sid, saved: &Saved);
    /// The socket left for good: its session is dropped.
    fn forget(&self, sid: Sid);
    /// The socket went away recoverably: its session is kept for the window.
    fn away(&self, sid: Sid, saved: Saved);
    /// Takes the session of `sid` if `digest` is its pid's and its window is open: it
    /// cannot be taken twice.
    fn take<'a>(
        &'a self,
        sid: Sid,
        digest: &'a SecretDigest,
    ) -> BoxFuture<'a, Result<Saved, RecoveryOutcome>>;
    /// Whether `sid` is away and may still come back.
    fn is_away(&self, sid: Sid) -> BoxFuture<'_, bool>;
    /// How many sessions are away (0 when the store cannot tell now).
    fn away_count(&self) -> BoxFuture<'_, u32>;
    /// The first `limit` sessions away that `filter` keeps, with a socket id after
    /// `after`, in socket id order; `matched` counts all those `filter` keeps.
    fn away_page<'a>(
        &'a self,
        filter: AwayFilter<'a>,
        after: Option<Sid>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Page<(Sid, Saved)>, SessionsError>>;
    /// The session of `sid` if it is away (a session kept after a disconnection; as in
    /// [`Store::away_page`], not one left live by a node that was killed).
    fn away_session(&self, sid: Sid) -> BoxFuture<'_, Result<Option<Saved>, SessionsError>>;
    /// The history every node shares, in a cluster.
    fn shared(&self) -> Option<&dyn SharedHistory> {
        None
    }
}

/// The history of a cluster: one ordered log every node appends to and delivers from.
pub trait SharedHistory: Send + Sync {
    /// Appends replayable sends, in order, in one round trip: each one's offset, or why it
    /// was not appended. Every node (this one too) delivers them to its own sockets as it
    /// reads them from the log.
    fn append<'a>(
        &'a self,
        sends: &'a [SendRequest],
    ) -> BoxFuture<'a, Vec<Result<Offset, HistoryError>>>;
    /// The entries after `after` up to `until` (included), oldest first; `None` when
    /// entries after `after` have been trimmed.
    fn range(
        &self,
        after: Offset,
        until: Offset,
    ) -> BoxFuture<'_, Result<Option<Vec<Entry>>, HistoryError>>;
}

/// A single node's store: sessions in memory.
pub struct Memory(pub SavedSessions);

impl Store for Memory {
    fn live(&self, _: Sid, _: &Saved) {}

    fn forget(&self, _: Sid) {}

    fn away(&self, sid: Sid, saved: Saved) {
        self.0.put(sid, saved);
    }

    fn take<'a>(
        &'a self,
        sid: Sid,
        digest: &'a SecretDigest,
    ) -> BoxFuture<'a, Result<Saved, RecoveryOutcome>> {
        Box::pin(async move { self.0.take(sid, digest, SystemTime::now()) })
    }

    fn is_away(&self, sid: Sid) -> BoxFuture<'_, bool> {
        Box::pin(async move { self.0.is_away(sid, SystemTime::now()) })
    }

    fn away_count(&self) -> BoxFuture<'_, u32> {
        Box::pin(async move { self.0.count(SystemTime::now()) as u32 })
    }

    fn away_page<'a>(
        &'a self,
        filter: AwayFilter<'a>,
        after: Option<Sid>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Page<(Sid, Saved)>, SessionsError>> {
        Box::pin(async move { Ok(self.0.page(filter, after, limit, SystemTime::now())) })
    }

    fn away_session(&self, sid: Sid) -> BoxFuture<'_, Result<Option<Saved>, SessionsError>> {
        Box::pin(async move { Ok(self.0.get(sid, SystemTime::now())) })
    }
}
