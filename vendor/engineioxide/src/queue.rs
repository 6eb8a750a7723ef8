//! The bounded queue of packets waiting to be written to a socket's transport.
//!
//! It replaces a tokio `mpsc` channel, which allocates a block of 32 slots when it is
//! created (about 5 KiB with [`PacketBuf`](engineioxide_core::PacketBuf) slots) and may keep
//! several blocks after a burst, for every socket, idle or not. This queue stores its packets
//! in a `VecDeque` that grows with its content and is given back as soon as the consumer
//! has drained it, so an idle socket holds no slot at all. It keeps the channel's semantics:
//! bounded (`try_send` / `try_reserve` fail with `Full` past the capacity, counting reserved
//! permits), a single consumer that drains what is buffered after `close`, senders that
//! fail with `Closed` after it, and `closed()` to wait for that.
//!
//! It also holds the socket's latest volatile item (one slot, overwritten by the next,
//! read after the buffered items), which took a `watch` channel of its own per socket.
//!
//! A sender can also `finish` it: queue a last item (the close packet of a session the
//! server closes), after which senders fail with `Closed` while the consumer still reads
//! what is buffered, the last item last, and can tell when it has read it
//! (`is_finished`). The queue is closed only when the consumer closes it.
//!
//! The error types are tokio's, so the public API of [`Socket`](crate::Socket) is unchanged.

use std::{
    collections::VecDeque,
    fmt,
    future::poll_fn,
    pin::pin,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Waker},
};

use tokio::sync::{
    Notify,
    mpsc::error::{SendError, TryRecvError, TrySendError},
};

struct State<T> {
    items: VecDeque<T>,
    /// Permits handed out and not used yet: they count against the capacity.
    reserved: usize,
    closed: bool,
    /// A last item was queued (`Sender::finish`): nothing can be queued after it.
    finished: bool,
    receiver: Option<Waker>,
    /// The latest volatile item, not counted against the capacity.
    volatile: Option<T>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    /// Mirrors `state.closed` for lock-free reads.
    closed: AtomicBool,
    /// Mirrors `state.finished` for lock-free reads.
    finished: AtomicBool,
    /// Wakes senders waiting for room (`send`) and waiters of `closed()`.
    changed: Notify,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // No code panics while holding the lock; recover the data if it ever did.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_full(&self, state: &State<T>) -> bool {
        state.items.len() + state.reserved >= self.capacity
    }

    /// Pushes under the lock and wakes the consumer after releasing it.
    fn push(&self, mut state: MutexGuard<'_, State<T>>, item: T) {
        state.items.push_back(item);
        let waker = state.receiver.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        let waker = state.receiver.take();
        drop(state);
        self.closed.store(true, Ordering::Release);
        self.changed.notify_waiters();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Creates a queue holding at most `capacity` items.
pub(crate) fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(capacity > 0, "the queue capacity must be positive");
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            reserved: 0,
            closed: false,
            finished: false,
            receiver: None,
            volatile: None,
        }),
        capacity,
        closed: AtomicBool::new(false),
        finished: AtomicBool::new(false),
        changed: Notify::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// The producing side (several threads may use it at once).
pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// A reserved slot: sending with it cannot fail.
pub(crate) struct Permit<'a, T> {
    shared: &'a Shared<T>,
}

/// The consuming side.
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// Why [`Sender::finish`] did not queue its item.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotFinished<T> {
    /// A last item was queued already.
    Finished(T),
    /// The queue is full.
    Full(T),
    /// The queue is closed.
    Closed(T),
}

impl<T> Sender<T> {
    /// Queues `item` unless the queue is full or closed.
    pub(crate) fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let state = self.shared.lock();
        if state.closed || state.finished {
            return Err(TrySendError::Closed(item));
        }
        if self.shared.is_full(&state) {
            return Err(TrySendError::Full(item));
        }
        self.shared.push(state, item);
        Ok(())
    }

    /// Reserves a slot unless the queue is full or closed.
    pub(crate) fn try_reserve(&self) -> Result<Permit<'_, T>, TrySendError<()>> {
        let mut state = self.shared.lock();
        if state.closed || state.finished {
            return Err(TrySendError::Closed(()));
        }
        if self.shared.is_full(&state) {
            return Err(TrySendError::Full(()));
        }
        state.reserved += 1;
        Ok(Permit {
            shared: &self.shared,
        })
    }

    /// Queues `item`, waiting for room if the queue is full; fails once it is closed.
    pub(crate) async fn send(&self, item: T) -> Result<(), SendError<T>> {
        let mut item = item;
        loop {
            let mut changed = pin!(self.shared.changed.notified());
            changed.as_mut().enable();
            match self.try_send(item) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(back)) => return Err(SendError(back)),
                Err(TrySendError::Full(back)) => item = back,
            }
            changed.await;
        }
    }

    /// Queues `item` as the last one unless the queue is full, closed or finished: from
    /// now on senders fail with `Closed`, and the volatile item is dropped (it would come
    /// after the last one).
    pub(crate) fn finish(&self, item: T) -> Result<(), NotFinished<T>> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(NotFinished::Closed(item));
        }
        if state.finished {
            return Err(NotFinished::Finished(item));
        }
        if self.shared.is_full(&state) {
            return Err(NotFinished::Full(item));
        }
        state.finished = true;
        state.volatile = None;
        self.shared.finished.store(true, Ordering::Release);
        self.shared.push(state, item);
        Ok(())
    }

    /// Replaces the volatile item; false if the queue is closed or finished.
    pub(crate) fn set_volatile(&self, item: T) -> bool {
        let mut state = self.shared.lock();
        if state.closed || state.finished {
            return false;
        }
        state.volatile = Some(item);
        let waker = state.receiver.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    /// Whether nothing more can be sent: the queue is closed or finished.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire) || self.shared.finished.load(Ordering::Acquire)
    }

    /// Waits until the queue is closed (by the consumer: a finished queue is closed once
    /// its consumer is done with it).
    pub(crate) async fn closed(&self) {
        loop {
            let mut changed = pin!(self.shared.changed.notified());
            changed.as_mut().enable();
            if self.shared.closed.load(Ordering::Acquire) {
                return;
            }
            changed.await;
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        // The only sender: the consumer must not wait for items that cannot come.
        self.shared.close();
    }
}

impl<T> Permit<'_, T> {
    /// Queues `item` in the reserved slot.
    pub(crate) fn send(self, item: T) {
        let shared = self.shared;
        std::mem::forget(self);
        let mut state = shared.lock();
        state.reserved -= 1;
        // As with tokio's permits, an item sent with a permit taken before `close` is
        // still delivered. One taken before `finish` goes before the last item, or is
        // dropped if the consumer has read that one already.
        if state.finished {
            if let Some(before_last) = state.items.len().checked_sub(1) {
                state.items.insert(before_last, item);
            }
            return;
        }
        shared.push(state, item);
    }
}

impl<T> Drop for Permit<'_, T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        let was_full = self.shared.is_full(&state);
        state.reserved -= 1;
        drop(state);
        if was_full {
            self.shared.changed.notify_waiters();
        }
    }
}

impl<T> Receiver<T> {
    /// The next item; `None` once the queue is closed and drained. (The transports use
    /// `poll_next_any`; this serves the `__test_harness` sockets and the tests.)
    #[allow(dead_code)]
    pub(crate) async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next item; `None` once the queue is closed and drained.
    #[allow(dead_code)]
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.shared.lock();
        if let Some((item, was_full)) = self.pop(&mut state) {
            drop(state);
            self.after_pop(was_full);
            return Poll::Ready(Some(item));
        }
        if state.closed {
            return Poll::Ready(None);
        }
        match &state.receiver {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.receiver = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Polls for the next buffered item or, when none is buffered, the volatile one
    /// (`true` with it); `None` once the queue is closed and drained.
    pub(crate) fn poll_next_any(&mut self, cx: &mut Context<'_>) -> Poll<Option<(T, bool)>> {
        let mut state = self.shared.lock();
        if let Some((item, was_full)) = self.pop(&mut state) {
            drop(state);
            self.after_pop(was_full);
            return Poll::Ready(Some((item, false)));
        }
        if state.closed {
            return Poll::Ready(None);
        }
        if let Some(item) = state.volatile.take() {
            return Poll::Ready(Some((item, true)));
        }
        match &state.receiver {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.receiver = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next item if there is one.
    pub(crate) fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.shared.lock();
        match self.pop(&mut state) {
            Some((item, was_full)) => {
                drop(state);
                self.after_pop(was_full);
                Ok(item)
            }
            None if state.closed => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Whether the queue was finished and holds only its last item.
    pub(crate) fn holds_only_last(&self) -> bool {
        let state = self.shared.lock();
        state.finished && state.items.len() == 1
    }

    /// Whether the queue was finished and its last item has been received.
    pub(crate) fn is_finished(&self) -> bool {
        let state = self.shared.lock();
        state.finished && state.items.is_empty()
    }

    /// Closes the queue: senders fail from now on, buffered items can still be received.
    pub(crate) fn close(&mut self) {
        self.shared.close();
    }

    /// The first item, and whether the queue was full before.
    fn pop(&self, state: &mut State<T>) -> Option<(T, bool)> {
        let was_full = self.shared.is_full(state);
        let item = state.items.pop_front()?;
        if state.items.is_empty() && state.items.capacity() > 0 {
            // Drained: give the storage back, an idle socket holds none.
            state.items = VecDeque::new();
        }
        Some((item, was_full))
    }

    fn after_pop(&self, was_full: bool) {
        // Only a full queue can have a sender waiting for room (`send`, used during
        // transport upgrades).
        if was_full {
            self.shared.changed.notify_waiters();
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("Receiver")
            .field("len", &state.items.len())
            .field("closed", &state.closed)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;

    #[test]
    fn bounded_by_items_and_permits() {
        let (tx, mut rx) = channel::<u32>(2);
        let permit = tx.try_reserve().unwrap();
        tx.try_send(1).unwrap();
        assert!(matches!(tx.try_send(2), Err(TrySendError::Full(2))));
        assert!(matches!(tx.try_reserve(), Err(TrySendError::Full(()))));
        permit.send(0);
        assert_eq!(rx.try_recv().unwrap(), 1);
        assert_eq!(rx.try_recv().unwrap(), 0);
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
        // An unused permit gives its slot back.
        let permit = tx.try_reserve().unwrap();
        drop(permit);
        tx.try_send(3).unwrap();
        tx.try_send(4).unwrap();
        assert!(tx.try_send(5).is_err());
    }

    #[test]
    fn storage_is_given_back_once_drained() {
        let (tx, mut rx) = channel::<u32>(128);
        assert_eq!(rx.shared.lock().items.capacity(), 0);
        for i in 0..100 {
            tx.try_send(i).unwrap();
        }
        assert!(rx.shared.lock().items.capacity() >= 100);
        for i in 0..100 {
            assert_eq!(rx.try_recv().unwrap(), i);
        }
        assert_eq!(rx.shared.lock().items.capacity(), 0);
    }

    #[test]
    fn close_drains_then_ends() {
        let (tx, mut rx) = channel::<u32>(4);
        let permit = tx.try_reserve().unwrap();
        tx.try_send(1).unwrap();
        rx.close();
        assert!(tx.is_closed());
        assert!(matches!(tx.try_send(2), Err(TrySendError::Closed(2))));
        assert!(matches!(tx.try_reserve(), Err(TrySendError::Closed(()))));
        permit.send(9);
        assert_eq!(rx.try_recv().unwrap(), 1);
        assert_eq!(rx.try_recv().unwrap(), 9);
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Disconnected)));
    }

    #[tokio::test]
    async fn a_finished_queue_takes_nothing_after_its_last_item_until_closed() {
        let (tx, mut rx) = channel::<u32>(4);
        let permit = tx.try_reserve().unwrap();
        tx.try_send(1).unwrap();
        assert!(tx.set_volatile(5));
        tx.finish(100).unwrap();
        assert!(tx.is_closed(), "nothing more can be sent");
        assert!(matches!(tx.try_send(2), Err(TrySendError::Closed(2))));
        assert!(matches!(tx.try_reserve(), Err(TrySendError::Closed(()))));
        assert!(!tx.set_volatile(6));
        assert_eq!(tx.finish(101), Err(NotFinished::Finished(101)));
        // A permit taken before goes before the last item.
        permit.send(9);
        assert_eq!(rx.try_recv().unwrap(), 1);
        assert_eq!(rx.try_recv().unwrap(), 9);
        assert!(rx.holds_only_last());
        assert!(!rx.is_finished(), "the last item is still buffered");
        assert_eq!(rx.try_recv().unwrap(), 100);
        assert!(rx.is_finished());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(
            rx.poll_next_any(&mut cx).is_pending(),
            "the volatile item went"
        );
        // Closed only when the consumer closes it.
        let waiter = tokio::spawn(async move { tx.closed().await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        rx.close();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("closed() resolves")
            .unwrap();
    }

    #[test]
    fn a_full_or_closed_queue_cannot_be_finished() {
        let (tx, mut rx) = channel::<u32>(1);
        tx.try_send(1).unwrap();
        assert_eq!(tx.finish(2), Err(NotFinished::Full(2)));
        rx.close();
        assert_eq!(tx.finish(3), Err(NotFinished::Closed(3)));
    }

    #[tokio::test]
    async fn receiver_wakes_on_send_and_close() {
        let (tx, mut rx) = channel::<u32>(4);
        let tx = Arc::new(tx);
        let sender = tx.clone();
        let reader = tokio::spawn(async move {
            let first = rx.recv().await;
            let second = rx.recv().await;
            (first, second)
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        sender.try_send(7).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let closing = tx.clone();
        let waiter = tokio::spawn(async move { closing.closed().await });
        sender.shared.close();
        assert_eq!(reader.await.unwrap(), (Some(7), None));
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("closed() resolves")
            .unwrap();
    }

    #[test]
    fn volatile_items_come_after_buffered_ones_and_are_overwritten() {
        let (tx, mut rx) = channel::<u32>(1);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(rx.poll_next_any(&mut cx).is_pending());
        assert!(tx.set_volatile(10));
        assert!(tx.set_volatile(11));
        tx.try_send(1).unwrap();
        // A full buffer does not refuse a volatile item.
        assert!(tx.set_volatile(12));
        assert_eq!(rx.poll_next_any(&mut cx), Poll::Ready(Some((1, false))));
        assert_eq!(rx.poll_next_any(&mut cx), Poll::Ready(Some((12, true))));
        assert!(rx.poll_next_any(&mut cx).is_pending());
        rx.close();
        assert!(!tx.set_volatile(13));
        assert_eq!(rx.poll_next_any(&mut cx), Poll::Ready(None));
    }

    #[tokio::test]
    async fn send_waits_for_room() {
        let (tx, mut rx) = channel::<u32>(1);
        let tx = Arc::new(tx);
        tx.try_send(1).unwrap();
        let sender = tx.clone();
        let blocked = tokio::spawn(async move { sender.send(2).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!blocked.is_finished());
        assert_eq!(rx.recv().await, Some(1));
        tokio::time::timeout(Duration::from_secs(1), blocked)
            .await
            .expect("send completes once there is room")
            .unwrap()
            .unwrap();
        assert_eq!(rx.recv().await, Some(2));
    }
}
