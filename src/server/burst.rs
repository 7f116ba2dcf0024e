//! Reads a socket in bursts for tungstenite's small read chunk.
//!
//! tungstenite reads at most `read_buffer_size` bytes per call, and that
//! buffer stays allocated for the life of the socket, so it is small (512
//! bytes: an idle socket's memory is the budget). Under load that made a
//! `recv` syscall for every one or two signals (perf: 1.9 million `recv`
//! for 3.1 million relayed signals). Here a read asks the socket for up to
//! `BURST` bytes at once, into a buffer of the thread, hands tungstenite
//! what it asked for and keeps the rest; the rest is freed as soon as it is
//! handed over, so an idle socket holds nothing more.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most one read takes from the socket.
const BURST: usize = 16 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; BURST]);
}

/// A socket whose reads come in bursts (writes pass through).
pub(crate) struct Burst<T> {
    io: T,
    /// Read from the socket, not yet handed over; empty (no allocation)
    /// between bursts.
    rest: Vec<u8>,
    /// How much of `rest` was handed over.
    taken: usize,
}

impl<T> Burst<T> {
    pub fn new(io: T) -> Self {
        Burst {
            io,
            rest: Vec::new(),
            taken: 0,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Burst<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.taken < this.rest.len() {
            let n = buf.remaining().min(this.rest.len() - this.taken);
            buf.put_slice(&this.rest[this.taken..this.taken + n]);
            this.taken += n;
            if this.taken == this.rest.len() {
                this.rest = Vec::new();
                this.taken = 0;
            }
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= BURST {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        SCRATCH.with_borrow_mut(|scratch| {
            let mut burst = ReadBuf::new(&mut scratch[..]);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut burst))?;
            let got = burst.filled();
            let n = buf.remaining().min(got.len());
            buf.put_slice(&got[..n]);
            if n < got.len() {
                this.rest = got[n..].to_vec();
                this.taken = 0;
            }
            Poll::Ready(Ok(()))
        })
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Burst<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn small_reads_get_every_byte_in_order_and_the_rest_is_freed() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let sent: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&sent).await.unwrap();
        drop(client);
        let mut burst = Burst::new(server);
        let mut got = Vec::new();
        let mut chunk = [0u8; 500];
        loop {
            let n = burst.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            assert!(n <= chunk.len());
            got.extend_from_slice(&chunk[..n]);
            if burst.taken == burst.rest.len() {
                assert_eq!(burst.rest.capacity(), 0, "nothing held between bursts");
            }
        }
        assert_eq!(got, sent);
    }

    #[tokio::test]
    async fn one_read_takes_a_burst_and_later_reads_need_no_socket() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        client.write_all(&[7u8; 3000]).await.unwrap();
        let mut burst = Burst::new(server);
        let mut chunk = [0u8; 512];
        assert_eq!(burst.read(&mut chunk).await.unwrap(), 512);
        assert_eq!(
            burst.rest.len() - burst.taken,
            3000 - 512,
            "the rest is kept"
        );
        // The socket is empty now, yet the next reads are served at once.
        let mut total = 512;
        while total < 3000 {
            total += burst.read(&mut chunk).await.unwrap();
        }
        assert_eq!(total, 3000);
        assert!(burst.rest.is_empty());
        // Writes pass through.
        burst.write_all(b"pong").await.unwrap();
        let mut back = [0u8; 4];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"pong");
    }
}
