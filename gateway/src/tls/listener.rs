//! Accepting TLS connections: a task accepts TCP connections and runs each handshake in a
//! task of its own (under a deadline, so a slow or silent client holds nothing but its
//! own task), and hands the finished streams over a channel to tonic
//! ([`TlsIncoming::into_stream`]) or axum ([`TlsIncoming`] is an `axum::serve::Listener`).
//! At most `MAX_PENDING_HANDSHAKES` run at once. Failed handshakes are logged at debug and
//! counted (`sockgate_tls_handshake_failures_total`).

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use futures_util::Stream;
use tokio::{net::TcpListener, sync::mpsc};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, warn};

use super::ServerTls;
use crate::metrics::METRICS;

/// Longest a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes finished but not yet taken by the server.
const BACKLOG: usize = 128;

/// Handshakes in progress at once; a connection past that is closed at once (counted), so
/// clients that connect and never speak cannot pile up tasks.
const MAX_PENDING_HANDSHAKES: usize = 1024;

/// Finished TLS connections of one listener.
pub struct TlsIncoming {
    connections: mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
}

impl TlsIncoming {
    /// Starts accepting on `listener` with `tls`; stops when this value is dropped.
    pub fn new(listener: TcpListener, tls: Arc<ServerTls>) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (sender, connections) = mpsc::channel(BACKLOG);
        tokio::spawn(accept_loop(listener, tls, sender));
        Ok(Self {
            connections,
            local_addr,
        })
    }

    /// The connections as the stream `tonic`'s `serve_with_incoming` takes.
    pub fn into_stream(
        self,
    ) -> impl Stream<Item = Result<TlsStream<tokio::net::TcpStream>, io::Error>> {
        use futures_util::StreamExt;
        ReceiverStream::new(self.connections).map(|(stream, _)| Ok(stream))
    }
}

impl axum::serve::Listener for TlsIncoming {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<ServerTls>,
    sender: mpsc::Sender<(TlsStream<tokio::net::TcpStream>, SocketAddr)>,
) {
    let pending = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = sender.closed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                warn!(section = tls.section(), error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = pending.clone().try_acquire_owned() else {
            METRICS.tls_handshake_failure(tls.section());
            debug!(section = tls.section(), %peer, "too many TLS handshakes in progress; connection closed");
            continue;
        };
        crate::listener::no_delay(&tcp);
        let acceptor = tls.acceptor();
        let sender = sender.clone();
        let section = tls.section();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
            drop(slot);
            match handshake {
                Ok(Ok(stream)) => {
                    let _ = sender.send((stream, peer)).await;
                }
                Ok(Err(e)) => {
                    METRICS.tls_handshake_failure(section);
                    debug!(section, %peer, error = %e, "TLS handshake refused");
                }
                Err(_) => {
                    METRICS.tls_handshake_failure(section);
                    debug!(section, %peer, "TLS handshake timed out");
                }
            }
        });
    }
}
