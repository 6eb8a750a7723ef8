//! Where the edge reports this node's sockets (connected, authentication changed,
//! disconnected) for a backend that keeps a socket directory: the Redis backend writes them
//! to Redis (`redis/directory.rs`). The edge only queues a change, never awaits; until a
//! backend takes the queue (never, on a single node) reports are dropped.

use std::sync::{
    OnceLock,
    atomic::{AtomicBool, Ordering},
};

use socketioxide::socket::Sid;
use tokio::sync::{Notify, mpsc};

/// Changes queued for the backend before the directory is marked lost.
const QUEUE: usize = 65_536;

/// A change of one of this node's sockets.
pub(super) enum Change {
    /// Connected, or its authentication changed.
    Present(Sid, bool),
    /// Disconnected.
    Gone(Sid),
}

/// This node's side of the socket directory: the edge reports its sockets here.
#[derive(Default)]
pub struct Directory {
    changes: OnceLock<mpsc::Sender<Change>>,
    /// Some change did not reach the backend's copy: it must be rewritten whole.
    lost: AtomicBool,
    rewrite: Notify,
}

impl Directory {
    /// A connected socket (or one whose authentication changed) of this node.
    pub fn present(&self, sid: Sid, authenticated: bool) {
        self.queue(Change::Present(sid, authenticated));
    }

    /// A socket of this node disconnected.
    pub fn gone(&self, sid: Sid) {
        self.queue(Change::Gone(sid));
    }

    fn queue(&self, change: Change) {
        if let Some(changes) = self.changes.get()
            && changes.try_send(change).is_err()
        {
            self.lost.store(true, Ordering::Release);
        }
    }

    /// The queue of changes, for the one backend that keeps the directory; `None` when it
    /// was taken already.
    pub(super) fn take_changes(&self) -> Option<mpsc::Receiver<Change>> {
        let (tx, rx) = mpsc::channel(QUEUE);
        self.changes.set(tx).ok().map(|()| rx)
    }

    /// Some change did not reach the backend's copy (a failed write, a copy that expired).
    pub(super) fn mark_lost(&self) {
        self.lost.store(true, Ordering::Release);
    }

    /// Asks for a rewrite if some change was lost.
    pub(super) fn rewrite_if_lost(&self) {
        if self.lost.load(Ordering::Acquire) {
            self.rewrite.notify_one();
        }
    }

    /// Waits until a rewrite is asked for.
    pub(super) async fn rewrite_asked(&self) {
        self.rewrite.notified().await;
    }

    /// Whether a change was lost since the last call (the caller rewrites the whole copy).
    pub(super) fn take_lost(&self) -> bool {
        self.lost.swap(false, Ordering::AcqRel)
    }
}
