//! A mutex that does not poison: the client's shared state stays usable in the user's
//! process even if a thread panicked while holding a lock.
//!
//! Every critical section here is a few map or `Option` operations (callbacks and handlers
//! are cloned out and called after the lock is released), so a panic cannot leave the data
//! half-updated; refusing it afterwards would only turn one panic into many.

use std::sync::{MutexGuard, PoisonError};

/// [`std::sync::Mutex`] whose [`lock`](Mutex::lock) ignores poisoning.
#[derive(Debug, Default)]
pub(super) struct Mutex<T>(std::sync::Mutex<T>);

impl<T> Mutex<T> {
    pub(super) fn new(value: T) -> Self {
        Self(std::sync::Mutex::new(value))
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_locked_does_not_make_the_lock_fail() {
        let mutex = std::sync::Arc::new(Mutex::new(1));
        let holder = mutex.clone();
        let panicked = std::thread::spawn(move || {
            let _guard = holder.lock();
            panic!("while holding the lock");
        })
        .join();
        assert!(panicked.is_err());
        *mutex.lock() += 1;
        assert_eq!(*mutex.lock(), 2);
    }
}
