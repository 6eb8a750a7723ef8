//! The heartbeat of every socket of an engine, driven by one task.
//!
//! Engine.IO v4: the server pings each socket every `ping_interval` and closes it with
//! [`DisconnectReason::HeartbeatTimeout`] when no pong came within `ping_timeout` of the
//! ping (or when the ping cannot be queued: the client is not reading). Engine.IO v3: the
//! client pings, the server answers at once and closes a socket that did not ping for
//! `ping_interval + ping_timeout`.
//!
//! The published crate runs a task per socket for this, which every socket pays for, idle
//! or not (a task cell and its timer, about 640 B). Here a socket is one entry (a weak
//! reference and a due time) in one of a few queues, and one task per engine sleeps until
//! the earliest due time. Every socket of an engine has the same interval and timeout, so
//! each queue receives its entries in the order of their due times: it is a FIFO, a pass
//! pops only the entries that are due (never a sweep over every socket) and pushing is
//! O(1). The task ends when the queues are empty and is started again by the next socket.
//!
//! A socket's cycle (v4): a ping due at P (skipped while the transport is upgrading, as
//! before) → a check at P + timeout: no pong since the ping closes the socket, else the next
//! ping is due at P + interval (at once if the timeout is the longer one). The first ping is
//! sent when the heartbeat starts. A pong counts only if it comes after the ping.
//!
//! Wake-ups are rounded up to [`resolution`] so that sockets due at nearly the same time
//! share one; a ping or a timeout may come that much later than its exact time, never
//! earlier.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard, Weak, atomic::Ordering},
    time::Duration,
};

use engineioxide_core::Packet;
#[cfg(feature = "v3")]
use engineioxide_core::ProtocolVersion;
use tokio::{sync::Notify, time::Instant};

use crate::socket::{DisconnectReason, Socket};

/// The granularity of the heartbeat's wake-ups: 1/64 of the shorter of the interval and
/// the timeout, between 1 and 50 ms (50 ms with the default 25 s / 20 s).
pub(crate) fn resolution(interval: Duration, timeout: Duration) -> Duration {
    (interval.min(timeout) / 64).clamp(Duration::from_millis(1), Duration::from_millis(50))
}

/// The heartbeat of an engine's sockets.
pub(crate) struct Heartbeat<D: Default + Send + Sync + 'static> {
    interval: Duration,
    timeout: Duration,
    resolution: Duration,
    /// Wake-ups fall on `epoch + k · resolution`.
    epoch: Instant,
    queues: Mutex<Queues<D>>,
    /// Tells the task that an entry may be due before the wake-up it sleeps until.
    wake: Notify,
}

struct Queues<D: Default + Send + Sync + 'static> {
    /// v4: sockets waiting for their next ping.
    pings: Queue<D>,
    /// v4: sockets waiting for the pong of the ping sent at `due - timeout`.
    pongs: Queue<D>,
    /// v3: sockets that must have pinged by `due`.
    #[cfg(feature = "v3")]
    client_pings: Queue<D>,
    /// Whether the task runs.
    running: bool,
}

/// Entries in the order of their due times.
struct Queue<D: Default + Send + Sync + 'static>(VecDeque<Entry<D>>);

struct Entry<D: Default + Send + Sync + 'static> {
    due: Instant,
    socket: Weak<Socket<D>>,
}

#[derive(Clone, Copy)]
enum Kind {
    Ping,
    Pong,
    #[cfg(feature = "v3")]
    ClientPing,
}

impl<D: Default + Send + Sync + 'static> Queue<D> {
    /// Appends an entry; a due time before the last one's is moved up to it, so the queue
    /// stays in order (the entries of one pass may be pushed slightly out of order).
    fn push(&mut self, due: Instant, socket: Weak<Socket<D>>) {
        let due = self.0.back().map_or(due, |last| due.max(last.due));
        self.0.push_back(Entry { due, socket });
    }

    fn pop_due(&mut self, now: Instant) -> Option<Entry<D>> {
        if self.0.front()?.due <= now {
            self.0.pop_front()
        } else {
            None
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.0.front().map(|entry| entry.due)
    }
}

impl<D: Default + Send + Sync + 'static> Queues<D> {
    fn queue(&mut self, kind: Kind) -> &mut Queue<D> {
        match kind {
            Kind::Ping => &mut self.pings,
            Kind::Pong => &mut self.pongs,
            #[cfg(feature = "v3")]
            Kind::ClientPing => &mut self.client_pings,
        }
    }

    fn next_due(&self) -> Option<Instant> {
        let next = [self.pings.next_due(), self.pongs.next_due()];
        #[cfg(feature = "v3")]
        let next = [next[0], next[1], self.client_pings.next_due()];
        next.into_iter().flatten().min()
    }
}

impl<D: Default + Send + Sync + 'static> Heartbeat<D> {
    pub(crate) fn new(interval: Duration, timeout: Duration) -> Self {
        Self {
            interval,
            timeout,
            resolution: resolution(interval, timeout),
            epoch: Instant::now(),
            queues: Mutex::new(Queues {
                pings: Queue(VecDeque::new()),
                pongs: Queue(VecDeque::new()),
                #[cfg(feature = "v3")]
                client_pings: Queue(VecDeque::new()),
                running: false,
            }),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queues<D>> {
        // No code panics while holding the lock; recover the data if it ever did.
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the heartbeat of a socket whose transport is set up (v4: sends the first
    /// ping now).
    pub(crate) fn start(self: &Arc<Self>, socket: &Arc<Socket<D>>) {
        self.start_at(socket, Instant::now());
    }

    fn start_at(self: &Arc<Self>, socket: &Arc<Socket<D>>, now: Instant) {
        #[cfg(feature = "v3")]
        if socket.protocol == ProtocolVersion::V3 {
            socket.awaiting_pong.store(true, Ordering::Relaxed);
            self.schedule(Kind::ClientPing, now + self.interval + self.timeout, socket);
            return;
        }
        if ping(socket) {
            self.schedule(Kind::Pong, now + self.timeout, socket);
        }
    }

    fn schedule(self: &Arc<Self>, kind: Kind, due: Instant, socket: &Arc<Socket<D>>) {
        let mut queues = self.lock();
        let queue = queues.queue(kind);
        let was_empty = queue.0.is_empty();
        queue.push(due, Arc::downgrade(socket));
        if !queues.running {
            queues.running = true;
            drop(queues);
            tokio::spawn(
                Task {
                    heartbeat: self.clone(),
                    ended: false,
                }
                .run(),
            );
        } else if was_empty {
            // The other queues' entries may all be due later than this one.
            drop(queues);
            self.wake.notify_one();
        }
    }

    fn round_up(&self, instant: Instant) -> Instant {
        let since = instant.saturating_duration_since(self.epoch).as_nanos();
        let step = self.resolution.as_nanos();
        u64::try_from(since.div_ceil(step) * step)
            .ok()
            .and_then(|nanos| self.epoch.checked_add(Duration::from_nanos(nanos)))
            .unwrap_or(instant)
    }

    /// Handles every entry due at `now` (`due` is a scratch buffer kept between passes).
    fn pass(&self, now: Instant, due: &mut Vec<(Kind, Entry<D>)>) {
        {
            let mut queues = self.lock();
            let kinds = [Kind::Ping, Kind::Pong];
            #[cfg(feature = "v3")]
            let kinds = [kinds[0], kinds[1], Kind::ClientPing];
            for kind in kinds {
                let queue = queues.queue(kind);
                while let Some(entry) = queue.pop_due(now) {
                    due.push((kind, entry));
                }
            }
        }
        // Sockets are pinged and closed without the lock; what is due next is put back
        // under it.
        due.retain_mut(|(kind, entry)| match self.handle(*kind, entry) {
            Some((next_kind, next_due)) => {
                *kind = next_kind;
                entry.due = next_due;
                true
            }
            None => false,
        });
        let mut queues = self.lock();
        for (kind, entry) in due.drain(..) {
            queues.queue(kind).push(entry.due, entry.socket);
        }
    }

    /// Handles an entry that is due; returns where and when the socket is due next, if
    /// it is still open.
    fn handle(&self, kind: Kind, entry: &Entry<D>) -> Option<(Kind, Instant)> {
        let socket = entry.socket.upgrade()?;
        if socket.cancellation_token.is_cancelled() {
            return None;
        }
        match kind {
            Kind::Ping => {}
            Kind::Pong if socket.awaiting_pong.load(Ordering::Relaxed) => {
                timed_out(&socket);
                return None;
            }
            // Answered: the next ping is due at ping + interval, at once if the timeout is
            // the longer one.
            Kind::Pong if self.interval > self.timeout => {
                return Some((Kind::Ping, entry.due + (self.interval - self.timeout)));
            }
            Kind::Pong => {}
            #[cfg(feature = "v3")]
            Kind::ClientPing if socket.awaiting_pong.swap(true, Ordering::Relaxed) => {
                timed_out(&socket);
                return None;
            }
            #[cfg(feature = "v3")]
            Kind::ClientPing => {
                return Some((Kind::ClientPing, entry.due + self.interval + self.timeout));
            }
        }
        ping(&socket).then_some((Kind::Pong, entry.due + self.timeout))
    }
}

/// The engine's heartbeat task.
struct Task<D: Default + Send + Sync + 'static> {
    heartbeat: Arc<Heartbeat<D>>,
    ended: bool,
}

impl<D: Default + Send + Sync + 'static> Task<D> {
    /// Handles the due entries until the queues are empty.
    async fn run(mut self) {
        let mut due = Vec::new();
        loop {
            let next = {
                let mut queues = self.heartbeat.lock();
                match queues.next_due() {
                    Some(next) => next,
                    None => {
                        queues.running = false;
                        drop(queues);
                        self.ended = true;
                        return;
                    }
                }
            };
            tokio::select! {
                biased;
                () = self.heartbeat.wake.notified() => continue,
                () = tokio::time::sleep_until(self.heartbeat.round_up(next)) => {}
            }
            self.heartbeat.pass(Instant::now(), &mut due);
        }
    }
}

impl<D: Default + Send + Sync + 'static> Drop for Task<D> {
    fn drop(&mut self) {
        // Dropped before it ended (its runtime shut down): the next socket starts another.
        if !self.ended {
            self.heartbeat.lock().running = false;
        }
    }
}

/// Sends a ping unless the transport is upgrading; false if it could not be queued (the
/// socket is then closed).
fn ping<D: Default + Send + Sync + 'static>(socket: &Socket<D>) -> bool {
    if socket.is_upgrading() {
        // Paused during an upgrade, as before: the check that follows finds no pong due.
        socket.awaiting_pong.store(false, Ordering::Relaxed);
        return true;
    }
    socket.awaiting_pong.store(true, Ordering::Relaxed);
    if socket.closing_reason().is_some() {
        // Nothing can be queued after the close packet (`Socket::close`): the client has
        // until the timeout to read it, as it would have to answer a ping.
        return true;
    }
    #[cfg(feature = "tracing")]
    tracing::trace!(sid = ?socket.id, "emitting ping");
    if socket.send(Packet::Ping).is_err() {
        timed_out(socket);
        return false;
    }
    true
}

fn timed_out<D: Default + Send + Sync + 'static>(socket: &Socket<D>) {
    #[cfg(feature = "tracing")]
    tracing::debug!(sid = ?socket.id, "heartbeat timeout");
    socket.close(DisconnectReason::HeartbeatTimeout);
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use engineioxide_core::{ProtocolVersion, Str, TransportType};

    use super::*;
    use crate::config::EngineIoConfig;

    const INTERVAL: Duration = Duration::from_millis(100);
    const TIMEOUT: Duration = Duration::from_millis(50);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    struct Client {
        socket: Arc<Socket<()>>,
        closed: Arc<StdMutex<Option<DisconnectReason>>>,
    }

    fn client(max_buffer_size: usize) -> Client {
        client_of(ProtocolVersion::V4, max_buffer_size)
    }

    fn client_of(protocol: ProtocolVersion, max_buffer_size: usize) -> Client {
        let closed = Arc::new(StdMutex::new(None));
        let on_close = closed.clone();
        let config = EngineIoConfig::builder()
            .max_buffer_size(max_buffer_size)
            .build();
        let socket = Arc::new(Socket::new(
            protocol,
            TransportType::Websocket,
            &config,
            http::Request::<()>::default().into_parts().0,
            Box::new(move |_, reason| {
                on_close.lock().unwrap().get_or_insert(reason);
            }),
            false,
        ));
        Client { socket, closed }
    }

    impl Client {
        /// Whether a ping was queued since the last call.
        fn took_ping(&self) -> bool {
            let mut rx = self.socket.internal_rx.try_lock().unwrap();
            let mut ping = false;
            while let Ok(item) = rx.buffered_rx.try_recv() {
                ping |= item.into_first() == Packet::Ping;
            }
            ping
        }
        fn closed(&self) -> Option<DisconnectReason> {
            self.closed.lock().unwrap().clone()
        }
    }

    /// A heartbeat driven by hand (its task is never started): `pass` at chosen times.
    fn driven(interval: Duration, timeout: Duration) -> (Arc<Heartbeat<()>>, Instant) {
        let heartbeat = Arc::new(Heartbeat::new(interval, timeout));
        heartbeat.lock().running = true;
        (heartbeat, Instant::now())
    }

    /// Runs a pass every millisecond of `from..to` (ms after `t0`); a ping is answered at
    /// once when `answer(client index, now)`. Returns each client's ping times and the
    /// time each was closed.
    fn drive(
        heartbeat: &Heartbeat<()>,
        t0: Instant,
        clients: &[&Client],
        (from, to): (u64, u64),
        answer: impl Fn(usize, Duration) -> bool,
    ) -> (Vec<Vec<Duration>>, Vec<Option<Duration>>) {
        let mut pings = vec![Vec::new(); clients.len()];
        let mut closed = vec![None; clients.len()];
        let mut scratch = Vec::new();
        for now in (from..to).map(ms) {
            heartbeat.pass(t0 + now, &mut scratch);
            for (i, client) in clients.iter().enumerate() {
                if client.took_ping() {
                    pings[i].push(now);
                    if answer(i, now) {
                        client.socket.heartbeat_received();
                    }
                }
                if closed[i].is_none() && client.closed().is_some() {
                    closed[i] = Some(now);
                }
            }
        }
        (pings, closed)
    }

    fn every(period: Duration, from: Duration, count: u32) -> Vec<Duration> {
        (0..count).map(|k| from + period * k).collect()
    }

    #[test]
    fn pings_every_interval_while_the_client_answers() {
        let (heartbeat, t0) = driven(INTERVAL, TIMEOUT);
        let client = client(128);
        heartbeat.start_at(&client.socket, t0);
        let (pings, closed) = drive(&heartbeat, t0, &[&client], (0, 550), |_, _| true);
        assert_eq!(pings[0], every(INTERVAL, ms(0), 6));
        assert_eq!(closed[0], None);
    }

    #[test]
    fn a_missing_pong_closes_the_socket_at_the_timeout() {
        let (heartbeat, t0) = driven(INTERVAL, TIMEOUT);
        let client = client(128);
        heartbeat.start_at(&client.socket, t0);
        let answer_until = INTERVAL * 2;
        let (pings, closed) = drive(&heartbeat, t0, &[&client], (0, 500), |_, now| {
            now < answer_until
        });
        assert_eq!(pings[0], every(INTERVAL, ms(0), 3));
        assert_eq!(closed[0], Some(INTERVAL * 2 + TIMEOUT));
        assert_eq!(client.closed(), Some(DisconnectReason::HeartbeatTimeout));
        assert_eq!(heartbeat.lock().next_due(), None, "its entry is gone");
    }

    #[test]
    fn a_late_pong_within_the_timeout_counts_and_an_early_one_does_not() {
        let (heartbeat, t0) = driven(INTERVAL, TIMEOUT);
        let client = client(128);
        client.socket.heartbeat_received(); // before the first ping
        heartbeat.start_at(&client.socket, t0);
        let (pings, closed) = drive(&heartbeat, t0, &[&client], (0, 40), |_, _| false);
        assert_eq!((pings[0].as_slice(), closed[0]), (&[ms(0)][..], None));
        client.socket.heartbeat_received(); // at 40 ms, in time
        client.took_ping();
        let (pings, closed) = drive(&heartbeat, t0, &[&client], (40, 400), |_, _| false);
        assert_eq!(pings[0], vec![INTERVAL]);
        assert_eq!(closed[0], Some(INTERVAL + TIMEOUT));
    }

    #[test]
    fn sockets_keep_their_own_phase() {
        let (heartbeat, t0) = driven(INTERVAL, TIMEOUT);
        let (first, second) = (client(128), client(128));
        heartbeat.start_at(&first.socket, t0);
        let (pings, _) = drive(&heartbeat, t0, &[&first], (0, 30), |_, _| true);
        assert_eq!(pings[0], vec![ms(0)]);
        heartbeat.start_at(&second.socket, t0 + ms(30));
        let (pings, closed) = drive(&heartbeat, t0, &[&first, &second], (30, 260), |_, _| true);
        assert_eq!(pings[0], every(INTERVAL, INTERVAL, 2));
        assert_eq!(pings[1], every(INTERVAL, ms(30), 3));
        assert_eq!(closed, vec![None, None]);
    }

    #[test]
    fn a_timeout_longer_than_the_interval_waits_for_the_pong() {
        let (interval, timeout) = (ms(50), ms(120));
        let (heartbeat, t0) = driven(interval, timeout);
        let client = client(128);
        heartbeat.start_at(&client.socket, t0);
        let (pings, _) = drive(&heartbeat, t0, &[&client], (0, 100), |_, _| false);
        assert_eq!(pings[0], vec![ms(0)], "no ping while one is unanswered");
        client.socket.heartbeat_received();
        let (pings, closed) = drive(&heartbeat, t0, &[&client], (100, 400), |_, _| false);
        // The next ping at the end of the first one's timeout (past ping + interval).
        assert_eq!(pings[0], vec![timeout]);
        assert_eq!(closed[0], Some(timeout * 2));
    }

    #[test]
    fn no_ping_while_the_transport_upgrades() {
        let (heartbeat, t0) = driven(INTERVAL, TIMEOUT);
        let client = client(128);
        heartbeat.start_at(&client.socket, t0);
        let (pings, _) = drive(&heartbeat, t0, &[&client], (0, 50), |_, _| true);
        assert_eq!(pings[0], vec![ms(0)]);
        client.socket.start_upgrade();
        let (pings, closed) = drive(&heartbeat, t0, &[&client], (50, 250), |_, _| false);
        assert_eq!((pings[0].len(), closed[0]), (0, None));
        client.socket.upgrade_to_websocket();
        let (pings, closed) = drive(&heartbeat, t0, &[&client], (250, 350), |_, _| true);
        assert_eq!(
            (pings[0].as_slice(), closed[0]),
            (&[INTERVAL * 3][..], None)
        );
    }

    #[test]
    fn a_ping_that_cannot_be_queued_closes_the_socket() {
        let (heartbeat, t0) = driven(INTERVAL, TIMEOUT);
        let client = client(1);
        client.socket.emit(Str::from("unread")).unwrap();
        heartbeat.start_at(&client.socket, t0);
        assert_eq!(client.closed(), Some(DisconnectReason::HeartbeatTimeout));
        assert_eq!(heartbeat.lock().next_due(), None, "nothing scheduled");

        // Later: a full queue at a ping closes the socket too.
        let client = self::client(1);
        heartbeat.start_at(&client.socket, t0);
        drive(&heartbeat, t0, &[&client], (0, 60), |_, _| true);
        client.socket.emit(Str::from("unread")).unwrap();
        assert_eq!(client.closed(), None);
        heartbeat.pass(t0 + INTERVAL, &mut Vec::new());
        assert_eq!(client.closed(), Some(DisconnectReason::HeartbeatTimeout));
    }

    #[test]
    fn closed_sockets_leave_the_queues() {
        let (heartbeat, t0) = driven(INTERVAL, TIMEOUT);
        let (open, cancelled) = (client(128), client(128));
        heartbeat.start_at(&open.socket, t0);
        heartbeat.start_at(&cancelled.socket, t0);
        cancelled.socket.cancellation_token.cancel();
        let dropped = client(128);
        heartbeat.start_at(&dropped.socket, t0);
        drop(dropped);
        let (pings, closed) = drive(&heartbeat, t0, &[&open, &cancelled], (0, 250), |_, _| true);
        assert_eq!(pings[0].len(), 3);
        assert_eq!(pings[1], vec![ms(0)], "only the first ping");
        assert_eq!(closed, vec![None, None], "not closed by the heartbeat");
        let queues = heartbeat.lock();
        assert_eq!(queues.pings.0.len() + queues.pongs.0.len(), 1);
    }

    #[cfg(feature = "v3")]
    #[test]
    fn v3_clients_ping_and_are_closed_when_they_stop() {
        let (heartbeat, t0) = driven(INTERVAL, TIMEOUT);
        let client = client_of(ProtocolVersion::V3, 128);
        heartbeat.start_at(&client.socket, t0);
        let window = (INTERVAL + TIMEOUT).as_millis() as u64;
        let mut scratch = Vec::new();
        for now in 0..window * 4 {
            if now % INTERVAL.as_millis() as u64 == 10 && now < window * 2 {
                client.socket.heartbeat_received();
                let mut rx = client.socket.internal_rx.try_lock().unwrap();
                let pong = rx
                    .buffered_rx
                    .try_recv()
                    .expect("a pong at once")
                    .into_first();
                assert_eq!(pong, Packet::Pong);
            }
            heartbeat.pass(t0 + ms(now), &mut scratch);
            if client.closed().is_some() {
                // The last ping at 210 ms: closed at the end of the first window without
                // one, never before 210 + interval + timeout.
                assert!(now >= 210 + window && now <= 210 + 2 * window, "{now}");
                assert_eq!(client.closed(), Some(DisconnectReason::HeartbeatTimeout));
                return;
            }
        }
        panic!("not closed");
    }

    #[test]
    fn wake_ups_are_rounded_up_to_the_resolution() {
        let s = Duration::from_secs;
        assert_eq!(resolution(s(25), s(20)), ms(50));
        assert_eq!(resolution(s(1), ms(640)), ms(10));
        assert_eq!(resolution(INTERVAL, TIMEOUT), ms(1));
        let heartbeat = Heartbeat::<()>::new(s(25), s(20));
        let epoch = heartbeat.epoch;
        assert_eq!(heartbeat.round_up(epoch), epoch);
        assert_eq!(heartbeat.round_up(epoch + ms(1)), epoch + ms(50));
        assert_eq!(heartbeat.round_up(epoch + ms(50)), epoch + ms(50));
        assert_eq!(heartbeat.round_up(epoch + ms(12_345)), epoch + ms(12_350));
        // Past 2^32 steps (50 days at 1 ms).
        let fine = Heartbeat::<()>::new(INTERVAL, TIMEOUT);
        let days = fine.epoch + Duration::from_secs(60 * 86_400);
        assert_eq!(
            fine.round_up(days + Duration::from_micros(1500)),
            days + ms(2)
        );
    }

    /// The task, on the real clock: pings, closes a silent socket, ends with the last
    /// socket and starts again with the next.
    #[tokio::test]
    async fn the_task_drives_the_heartbeat() {
        // Long enough for the reader to answer on a loaded machine.
        let heartbeat = Arc::new(Heartbeat::new(ms(100), ms(80)));
        let silent = client(128);
        let answering = client(128);
        let reader = answering.socket.clone();
        let reading = tokio::spawn(async move {
            let mut rx = reader.internal_rx.lock().await;
            let mut pings = 0;
            while let Some(item) = rx.buffered_rx.recv().await {
                if item.into_first() == Packet::Ping {
                    pings += 1;
                    reader.heartbeat_received();
                }
                if pings == 4 {
                    return pings;
                }
            }
            pings
        });
        let started = Instant::now();
        heartbeat.start(&silent.socket);
        heartbeat.start(&answering.socket);
        assert!(silent.took_ping(), "the first ping at once");

        let pings = tokio::time::timeout(Duration::from_secs(10), reading).await;
        assert_eq!(pings.expect("four pings").unwrap(), 4);
        assert!(started.elapsed() >= ms(300), "pings every 100 ms");
        assert_eq!(silent.closed(), Some(DisconnectReason::HeartbeatTimeout));
        assert_eq!(answering.closed(), None);

        // Its pong not read, the answering socket is closed too; then the task ends.
        let wait = async {
            while heartbeat.lock().running {
                tokio::time::sleep(ms(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("the task ends");
        assert_eq!(answering.closed(), Some(DisconnectReason::HeartbeatTimeout));

        let next = client(128);
        heartbeat.start(&next.socket);
        assert!(heartbeat.lock().running, "started again");
        next.socket.cancellation_token.cancel();
    }

    #[test]
    fn a_task_dropped_with_its_runtime_is_started_again() {
        let heartbeat = Arc::new(Heartbeat::new(INTERVAL, TIMEOUT));
        let first = client(128);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async { heartbeat.start(&first.socket) });
        drop(runtime);
        assert!(!heartbeat.lock().running);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            heartbeat.start(&client(128).socket);
            assert!(heartbeat.lock().running);
        });
    }
}
