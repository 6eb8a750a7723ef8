//! The write buffer under a WebSocket connection, which gives its memory back after a burst.
//!
//! tungstenite collects the frames written between two flushes in a `Vec` that keeps the
//! capacity of the largest batch it ever held, for the connection's whole life: after a
//! burst of messages, every socket keeps a buffer as large as its largest batch. Here
//! tungstenite writes each frame through at once (`write_buffer_size(0)`: its own buffer
//! then holds one frame) into this buffer, which collects them until the flush as
//! tungstenite did (one write to the connection per batch), and drops its storage once a
//! flush has emptied it: an idle socket holds no write buffer, whatever it received
//! before. That costs one allocation per flush, next to the `write` it comes with.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Buffered bytes past which they are written out before taking more, as tungstenite's
/// default `write_buffer_size` does.
const WRITE_OUT: usize = 128 * 1024;

/// Buffers what is written to `inner` until a flush.
#[derive(Debug)]
pub(crate) struct WriteBuffer<S> {
    inner: S,
    buf: Vec<u8>,
    /// How much of `buf` is already written to `inner`.
    written: usize,
}

impl<S> WriteBuffer<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            written: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> WriteBuffer<S> {
    /// Writes the buffered bytes to `inner` (without flushing it), then releases the
    /// buffer.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.written = 0;
        self.buf = Vec::new();
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteBuffer<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.buf.len() >= WRITE_OUT {
            ready!(this.poll_write_out(cx))?;
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteBuffer<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::*;

    #[tokio::test]
    async fn writes_at_the_flush_and_releases_the_buffer() {
        let (server, mut client) = duplex(1 << 20);
        let mut buffer = WriteBuffer::new(server);
        buffer.write_all(b"hello ").await.unwrap();
        buffer.write_all(b"world").await.unwrap();
        let mut read = [0; 64];
        let pending =
            tokio::time::timeout(std::time::Duration::from_millis(20), client.read(&mut read));
        assert!(pending.await.is_err(), "nothing written before the flush");

        buffer.flush().await.unwrap();
        let n = client.read(&mut read).await.unwrap();
        assert_eq!(&read[..n], b"hello world");
        assert_eq!(buffer.buf.capacity(), 0, "released");

        let burst = vec![b'x'; 4096];
        for chunk in burst.chunks(100) {
            buffer.write_all(chunk).await.unwrap();
        }
        buffer.flush().await.unwrap();
        assert_eq!(buffer.buf.capacity(), 0, "released after a burst");
        let mut received = vec![0; burst.len()];
        client.read_exact(&mut received).await.unwrap();
        assert_eq!(received, burst);
    }

    #[tokio::test]
    async fn a_slow_reader_holds_the_flush_and_loses_nothing() {
        let (server, mut client) = duplex(64);
        let mut buffer = WriteBuffer::new(server);
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        buffer.write_all(&data).await.unwrap();
        let flush = tokio::spawn(async move {
            buffer.flush().await.unwrap();
            buffer
        });
        let mut received = vec![0; data.len()];
        client.read_exact(&mut received).await.unwrap();
        assert_eq!(received, data);
        let buffer = flush.await.unwrap();
        assert_eq!(buffer.buf.capacity(), 0);
    }

    #[tokio::test]
    async fn reads_go_through() {
        let (server, mut client) = duplex(64);
        let mut buffer = WriteBuffer::new(server);
        client.write_all(b"ping").await.unwrap();
        let mut read = [0; 4];
        buffer.read_exact(&mut read).await.unwrap();
        assert_eq!(&read, b"ping");
    }
}
