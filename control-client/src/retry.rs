//! Retries with exponential backoff, for the read-only calls only (`GetInfo`, `GetSocket`,
//! `ListSockets`, `ListRooms`): a retried `Send` could deliver an event twice.

use std::{future::Future, time::Duration};

use tonic::Code;

use crate::Error;

/// How read-only calls are retried. A call is retried when it fails with `UNAVAILABLE`
/// (the gateway restarting, a connection reset, no connection yet); every other failure is
/// returned at once.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: no retry). 4 by default.
    pub attempts: u32,
    /// Wait before the first retry (100 ms by default); doubled at each retry.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts (2 s by default).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        RetryPolicy {
            attempts: 1,
            ..Self::default()
        }
    }

    fn retryable(error: &Error) -> bool {
        error.code() == Some(Code::Unavailable)
    }

    /// Runs `call` until it succeeds, fails with a non-retryable error, or the attempts
    /// are used up.
    pub(crate) async fn run<T, F, Fut>(&self, mut call: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut backoff = self.initial_backoff;
        let mut attempt = 1;
        loop {
            match call().await {
                Err(error) if attempt < self.attempts && Self::retryable(&error) => {
                    tracing::debug!(attempt, %error, "retrying a read-only call");
                    tokio::time::sleep(jitter(backoff)).await;
                    backoff = (backoff * 2).min(self.max_backoff);
                    attempt += 1;
                }
                result => return result,
            }
        }
    }
}

/// 75 % to 125 % of `backoff`, so that clients failing together do not retry together.
fn jitter(backoff: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let factor = 0.75 + f64::from(nanos % 1000) / 2000.0;
    backoff.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use tonic::Status;

    use super::*;

    fn fast(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        }
    }

    #[tokio::test]
    async fn retries_unavailable_until_success() {
        let calls = AtomicU32::new(0);
        let result = fast(4)
            .run(|| async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(Error::from(Status::unavailable("restarting")))
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn gives_up_after_the_attempts() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = fast(3)
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Error::from(Status::unavailable("down")))
            })
            .await;
        assert_eq!(result.unwrap_err().code(), Some(Code::Unavailable));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn other_failures_are_not_retried() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = fast(4)
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Error::from(Status::not_found("gone")))
            })
            .await;
        assert_eq!(result.unwrap_err().code(), Some(Code::NotFound));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
