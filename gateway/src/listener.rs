//! TCP listeners with an explicit listen backlog. tokio's `TcpListener::bind` (like std's)
//! listens with a backlog of 128: a connect storm of a few hundred clients (every client
//! reconnecting after a deploy) overflows it, and the kernel drops or resets what does
//! not fit before the gateway can accept it.

use std::{io, net::SocketAddr};

use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Backlog of the control and admin listeners (backends and probes, not client storms).
pub const SERVICE_BACKLOG: u32 = 1024;
/// Largest backlog accepted in the configuration (`listen(2)` takes an `int`; Linux caps
/// it at `net.core.somaxconn` anyway).
pub const MAX_BACKLOG: u32 = 65_535;

/// Binds `addr` and listens with `backlog` (with `SO_REUSEADDR` as tokio sets it, so a
/// restarted gateway can bind while old connections linger in TIME_WAIT).
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Turns Nagle's algorithm off on an accepted connection, as Node's HTTP server does: every
/// frame and response the gateway writes is small and wanted now, and Nagle's wait for the
/// peer's ACK (which the peer may delay by up to 40 ms) would hold it back.
pub fn no_delay(stream: &TcpStream) {
    // Fails only on a connection that is already gone; its next read or write says so.
    let _ = stream.set_nodelay(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepts_on_the_bound_address() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        assert_eq!(client.unwrap().local_addr().unwrap(), accepted.unwrap().1);
    }

    #[tokio::test]
    async fn a_taken_address_is_an_error() {
        let first = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        // SO_REUSEADDR does not let a second listener take a listening port on Linux.
        assert!(bind(first.local_addr().unwrap(), 16).is_err());
    }
}
