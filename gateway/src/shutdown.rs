//! Graceful shutdown: SIGTERM or SIGINT stops the listeners, tells every socket, and gives
//! the connections a deadline to drain.

use std::time::Duration;

use socketioxide::{SocketIo, adapter::Adapter};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::edge::protocol;

/// Resolves on SIGTERM or SIGINT.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => info!("SIGINT received"),
        () = term => info!("SIGTERM received"),
    }
}

/// A one-shot broadcast of "shutting down" to the servers.
#[derive(Clone)]
pub struct Trigger(watch::Sender<bool>);

impl Default for Trigger {
    fn default() -> Self {
        Self(watch::channel(false).0)
    }
}

impl Trigger {
    /// Fires it.
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }

    /// Resolves once fired.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.subscribe();
        async move {
            let _ = rx.wait_for(|fired| *fired).await;
        }
    }
}

/// Tells the sockets of this node, then closes them within `deadline`.
pub async fn drain_sockets<A: Adapter>(io: &SocketIo<A>, deadline: Duration) {
    let payload = protocol::ForceDisconnect::now("server shutting down");
    let _ = io.local().emit(protocol::FORCE_DISCONNECT, &payload).await;
    if tokio::time::timeout(deadline, io.close()).await.is_err() {
        warn!(?deadline, "sockets did not close in time");
    }
}
