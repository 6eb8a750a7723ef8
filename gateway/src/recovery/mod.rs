//! Connection state recovery (Socket.IO 4.6+): a client whose connection drops comes
//! back, within `recovery.max_disconnection`, as the same socket, and receives the events
//! it missed, exactly once and in order, or nothing at all.
//!
//! - Each socket gets a private session id (`pid`, [`pid`]) in its CONNECT reply.
//! - Each replayable event (a `Send` without ack) is recorded in the [`history`] at an
//!   [`offset`] and carries that offset as its last argument; the client sends back the
//!   last one it received, with its pid, when it reconnects.
//! - A socket that goes away for a reason Socket.IO deems recoverable leaves its session
//!   ([`saved`]): identity, rooms, and the offset from which events are owed to it.
//! - On reconnect, [`Recovery::resolve`] decides before the socket exists which id it
//!   gets: its old one when the session can be restored exactly, a new one otherwise.
//!
//! Recording an event and emitting it happen under one lock (the history's), and so does
//! replaying a recovered socket's missed events and putting it back in its rooms: every
//! event reaches a socket once, in offset order, replayed or live. The lock is a blocking
//! one, held only across synchronous work (recording, queueing packets on this node's
//! sockets), never across an await: a `Send` waiting for it would otherwise park and leave
//! its worker thread to run the socket writers of the event being emitted, one packet per
//! write (measured: twice the CPU per delivery of a burst, see `bench/README.md`).

pub mod history;
pub mod offset;
pub mod pid;
pub mod saved;
pub mod store;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, OnceLock},
    time::{Duration, Instant, SystemTime},
};

use serde_json::Value;
use socketioxide::socket::Sid;
use sockgate_proto::SendRequest;

use crate::{config::RecoveryConfig, metrics::RecoveryOutcome};
use history::{Bounds, Entry, Gap, Log, Member};
use offset::Offset;
use pid::PrivateId;
use saved::{Saved, SavedSessions};
use store::{Memory, Store};

/// The keys of the CONNECT `auth` object the client's recovery uses.
pub const PID_KEY: &str = "pid";
/// See [`PID_KEY`].
pub const OFFSET_KEY: &str = "offset";

/// How long a resolved CONNECT waits for its socket to be set up before it is forgotten.
const PENDING_TTL: Duration = Duration::from_secs(60);
/// How many resolutions may wait before the old ones are swept.
const PENDING_SWEEP: usize = 4096;

/// What a CONNECT resolved to, until its socket is set up.
#[derive(Debug)]
pub struct Resolved {
    /// The socket's pid (none only when the system's random source failed: that socket
    /// cannot be recovered).
    pub pid: Option<PrivateId>,
    /// The session to restore, when the client presented one that can be.
    pub restore: Option<Restore>,
}

/// A session to restore and where its replay starts.
#[derive(Debug)]
pub struct Restore {
    /// The session.
    pub saved: Saved,
    /// The replay is of the events after this offset.
    pub after: Offset,
}

/// What recovery keeps with a live socket.
#[derive(Debug, Clone, Copy)]
pub struct Resumable {
    /// The digest of its pid's secret.
    pub digest: pid::SecretDigest,
    /// Nothing recorded up to this offset is owed to it.
    pub since: Offset,
    /// It is a recovered session.
    pub recovered: bool,
}

/// Recovery on this node.
pub struct Recovery {
    config: RecoveryConfig,
    log: Mutex<Log>,
    /// Set by a cluster backend when it starts; a single node keeps sessions in memory.
    store: OnceLock<Arc<dyn Store>>,
    pending: Mutex<HashMap<Sid, (Instant, Resolved)>>,
}

impl std::fmt::Debug for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recovery")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Recovery {
    /// Recovery as configured; `None` when it is off.
    pub fn new(config: &RecoveryConfig) -> Option<Arc<Self>> {
        config.enabled.then(|| {
            let bounds = Bounds {
                events: config.max_history_events,
                bytes: config.max_history_bytes,
                age: config.max_disconnection,
            };
            Arc::new(Self {
                config: config.clone(),
                log: Mutex::new(Log::new(bounds, SystemTime::now())),
                store: OnceLock::new(),
                pending: Mutex::default(),
            })
        })
    }

    /// Decides the id of a socket connecting with `auth`: the session it presents when it
    /// can be restored exactly (its socket id), else a new id. Either way the socket gets
    /// a pid, and what was decided waits for [`Recovery::take`].
    /// A session whose socket is still `connected` here is not restored.
    pub async fn resolve(
        &self,
        auth: Option<&Value>,
        connected: impl Fn(Sid) -> bool,
    ) -> (Sid, Option<PrivateId>) {
        let presented = auth.and_then(|a| a.get(PID_KEY)).and_then(Value::as_str);
        let restored = match presented {
            Some(pid) => {
                let offset = auth.and_then(|a| a.get(OFFSET_KEY));
                let outcome = self.restorable(pid, offset, connected).await;
                crate::metrics::METRICS.recovery(match &outcome {
                    Ok(_) => RecoveryOutcome::Recovered,
                    Err(outcome) => *outcome,
                });
                outcome.ok()
            }
            None => None,
        };
        let (sid, resolved) = match restored {
            Some((pid, restore)) => (
                pid.sid,
                Resolved {
                    pid: Some(pid),
                    restore: Some(restore),
                },
            ),
            None => {
                let sid = Sid::new();
                let pid = PrivateId::generate(sid)
                    .inspect_err(|e| tracing::error!(error = %e, "no pid for a new socket"))
                    .ok();
                (sid, Resolved { pid, restore: None })
            }
        };
        let pid = resolved.pid.clone();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // Resolutions whose socket never got set up (a connect refused by socketioxide):
        // swept when there are more than a connect storm leaves in flight.
        if pending.len() >= PENDING_SWEEP {
            pending.retain(|_, (at, _)| now.duration_since(*at) < PENDING_TTL);
        }
        pending.insert(sid, (now, resolved));
        (sid, pid)
    }

    /// The session `pid` names, taken, if it can be restored exactly after `offset`.
    async fn restorable(
        &self,
        pid: &str,
        offset: Option<&Value>,
        connected: impl Fn(Sid) -> bool,
    ) -> Result<(PrivateId, Restore), RecoveryOutcome> {
        let pid = PrivateId::parse(pid).map_err(|_| RecoveryOutcome::Unknown)?;
        if connected(pid.sid) {
            return Err(RecoveryOutcome::StillConnected);
        }
        let now = SystemTime::now();
        let saved = self.store().take(pid.sid, &pid.digest()).await?;
        if saved
            .identity
            .expires_at
            .is_some_and(|exp| offset::unix_ms(now) / 1000 >= exp)
        {
            return Err(RecoveryOutcome::TokenExpired);
        }
        let after = match offset {
            None | Some(Value::Null) => saved.since,
            Some(Value::String(text)) => text
                .parse::<Offset>()
                .map_err(|_| RecoveryOutcome::Forgotten)?
                .max(saved.since),
            Some(_) => return Err(RecoveryOutcome::Forgotten),
        };
        let restore = Restore { saved, after };
        self.missed(pid.sid, &restore).await?;
        Ok((pid, restore))
    }

    /// What [`Recovery::resolve`] decided for `sid`, once.
    pub fn take(&self, sid: Sid) -> Option<Resolved> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.remove(&sid).map(|(_, resolved)| resolved)
    }

    /// The history, locked: events are recorded and emitted, and recovered sockets
    /// replayed and put back in their rooms, while holding it, so that each socket gets
    /// events in offset order. Never held across an await.
    pub fn order(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a replayable `send`: its offset, which the emitted event must carry.
    pub fn record(log: &mut Log, send: Arc<SendRequest>) -> Offset {
        let now = SystemTime::now();
        let offset = log.next_offset(now);
        log.record(Entry { offset, send }, now);
        offset
    }

    /// The events `restore` missed, oldest first, as of now (a check: the history moves
    /// on once it returns).
    async fn missed(&self, sid: Sid, restore: &Restore) -> Result<Vec<Entry>, RecoveryOutcome> {
        let max = self.config.max_replay_events;
        let here = restore.missed_here(&self.order(), restore.after, sid, max);
        match here {
            Err(Missed::Older(until)) => self.missed_older(sid, restore, until).await,
            here => here.map_err(Missed::outcome),
        }
    }

    /// Runs `apply` with the events `restore` missed, oldest first, under the history's
    /// lock (so that no event is recorded between the replay and what `apply` does), or
    /// says why they cannot be replayed exactly. In a cluster, those this node no longer
    /// has are read from the shared history first, without the lock; the rest, under it.
    pub async fn restore_with<T>(
        &self,
        sid: Sid,
        restore: &Restore,
        apply: impl FnOnce(&Log, Vec<Entry>) -> T,
    ) -> Result<T, RecoveryOutcome> {
        let max = self.config.max_replay_events;
        let older = {
            let log = self.order();
            match restore.missed_here(&log, restore.after, sid, max) {
                Ok(missed) => return Ok(apply(&log, missed)),
                Err(Missed::Older(until)) => until,
                Err(missed) => return Err(missed.outcome()),
            }
        };
        let mut missed = self.missed_older(sid, restore, older).await?;
        let log = self.order();
        let left = max.saturating_sub(missed.len());
        // What was recorded since has an offset after `older`; what this node forgot
        // meanwhile is `Forgotten` (no partial replay).
        let more = restore
            .missed_here(&log, older, sid, left)
            .map_err(Missed::outcome)?;
        missed.extend(more);
        Ok(apply(&log, missed))
    }

    /// The events after `restore.after` up to `until` that reached the session, from the
    /// shared history (a cluster's; none: forgotten).
    async fn missed_older(
        &self,
        sid: Sid,
        restore: &Restore,
        until: Offset,
    ) -> Result<Vec<Entry>, RecoveryOutcome> {
        let shared = self.store().shared().ok_or(RecoveryOutcome::Forgotten)?;
        let entries = shared
            .range(restore.after, until)
            .await
            .map_err(|_| RecoveryOutcome::StoreFailed)?
            .ok_or(RecoveryOutcome::Forgotten)?;
        restore.reaching(&entries, sid, self.config.max_replay_events)
    }

    /// Where sessions are kept: a cluster's store, else this node's memory.
    pub fn store(&self) -> &Arc<dyn Store> {
        self.store
            .get_or_init(|| Arc::new(Memory(SavedSessions::new(self.config.max_disconnection))))
    }

    /// Keeps sessions in `store` (a cluster backend, at start, before any socket).
    pub fn use_store(&self, store: Arc<dyn Store>) {
        let _ = self.store.set(store);
    }

    /// The settings.
    pub fn config(&self) -> &RecoveryConfig {
        &self.config
    }

    /// Whether `sid` is away and may still come back.
    pub async fn is_away(&self, sid: Sid) -> bool {
        self.store().is_away(sid).await
    }
}

/// Why missed events are not all in this node's history.
enum Missed {
    /// Some are older than what it keeps: in a cluster, the shared history may have those
    /// after the offset and up to this one (the node's head then).
    Older(Offset),
    /// They cannot be replayed exactly.
    Gap(Gap),
}

impl Missed {
    fn outcome(self) -> RecoveryOutcome {
        match self {
            Missed::Older(_) | Missed::Gap(Gap::Forgotten) => RecoveryOutcome::Forgotten,
            Missed::Gap(Gap::TooMany) => RecoveryOutcome::TooMany,
        }
    }
}

impl Restore {
    /// The events after `after` that reached the session, oldest first, from `log`.
    fn missed_here(
        &self,
        log: &Log,
        after: Offset,
        sid: Sid,
        max: usize,
    ) -> Result<Vec<Entry>, Missed> {
        self.with_member(sid, |member| match log.missed(after, member, max) {
            Err(Gap::Forgotten) => Err(Missed::Older(log.head())),
            missed => missed.map_err(Missed::Gap),
        })
    }

    /// The entries of `entries` that reached the session, in their order.
    fn reaching(
        &self,
        entries: &[Entry],
        sid: Sid,
        max: usize,
    ) -> Result<Vec<Entry>, RecoveryOutcome> {
        self.with_member(sid, |member| history::reaching(entries, member, max))
            .map_err(|gap| Missed::Gap(gap).outcome())
    }

    fn with_member<T>(&self, sid: Sid, f: impl FnOnce(Member<'_>) -> T) -> T {
        let in_room = |room: &str| self.saved.gets_back(room);
        let sid = sid.to_string();
        f(Member {
            sid: &sid,
            user: self.saved.identity.user_id.as_deref(),
            in_room: &in_room,
        })
    }
}
