//! The socket under a WebSocket session: reads in bursts, writes whole.
//!
//! **Reads.** tungstenite reads at most `read_buffer_size` bytes per call,
//! and that buffer stays allocated for the life of the socket, so it is
//! small (128 bytes: an idle socket's memory is the budget). Under load
//! that made a `recv` syscall for every one or two signals (perf: 1.9
//! million `recv` for 3.1 million relayed signals). Here a read asks the
//! socket for up to `BURST` bytes at once, into a buffer of the thread,
//! hands tungstenite what it asked for and keeps the rest; the rest is
//! freed as soon as it is handed over, so an idle socket holds nothing more.
//! A reader with a buffer of its own (`/ws`: `super::frames`) takes each
//! burst whole ([`Socket::poll_append`]).
//!
//! **Writes.** Two writers share the socket: the session writes its queued
//! frames itself ([`Socket::send`], encoded here), and tungstenite writes its
//! own answers to the peer's pings and close. A write is taken whole or not
//! at all: what the socket does not take at once is kept here and flushed
//! later, so frames never interleave. What is kept is freed once flushed
//! (tungstenite's own write buffer would stay at its largest size for the
//! life of the socket). A write that would grow what is kept past
//! `KEEP_MAX` waits for the socket instead.
//!
//! **A peer that reads nothing.** The server writes without being asked
//! (pongs answer pings, on every endpoint), so a peer that sends pings and
//! never reads would have what is kept grow with every ping it sends. So
//! nothing is read while something is kept: a read first waits for the
//! socket to take what was written (the reader is woken when it can), and
//! a peer that has taken nothing for the socket's write limit (the
//! heartbeat timeout) gets a read error, which ends its connection like a
//! slow reader of any other frame. At most one read's worth of pongs is
//! ever kept.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::Message;

/// The most one read takes from the socket.
const BURST: usize = 16 * 1024;

/// What a write may leave unsent before later writes wait for the socket.
const KEEP_MAX: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; BURST]);
    static FRAMES: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A socket whose reads come in bursts and whose writes are taken whole.
pub(crate) struct Socket<T> {
    io: T,
    /// Read from the socket, not yet handed over; empty (no allocation)
    /// between bursts.
    rest: Vec<u8>,
    /// How much of `rest` was handed over.
    taken: usize,
    /// Written, not yet taken by the socket; empty (no allocation) once
    /// flushed.
    unsent: Vec<u8>,
    /// When the socket last gave bytes: the arrival of every frame that
    /// read completed (one clock read per read, not per frame).
    read_at: Instant,
    /// When the socket last took some of `unsent` (or `unsent` was
    /// started); `None` while it is empty.
    kept_since: Option<Instant>,
    /// How long a peer may leave what was written unread before its reads
    /// fail (see the module's doc).
    write_limit: Duration,
}

/// The write limit of a socket nobody set one for.
const WRITE_LIMIT: Duration = Duration::from_secs(45);

impl<T> Socket<T> {
    pub fn new(io: T) -> Self {
        Socket {
            io,
            rest: Vec::new(),
            taken: 0,
            unsent: Vec::new(),
            read_at: Instant::now(),
            kept_since: None,
            write_limit: WRITE_LIMIT,
        }
    }

    /// How long the peer may take nothing of what was written before the
    /// socket's reads fail (the heartbeat timeout, for the endpoints).
    pub fn with_write_limit(mut self, limit: Duration) -> Self {
        self.write_limit = limit;
        self
    }

    /// A socket whose first reads give `read` and whose first write is
    /// preceded by `unsent`.
    pub fn with_pending(io: T, read: Vec<u8>, unsent: Vec<u8>) -> Self {
        Socket {
            rest: read,
            kept_since: (!unsent.is_empty()).then(Instant::now),
            unsent,
            ..Socket::new(io)
        }
    }

    /// When the socket last gave bytes.
    pub fn read_at(&self) -> Instant {
        self.read_at
    }

    /// Nothing is waiting to be sent.
    pub fn flushed(&self) -> bool {
        self.unsent.is_empty()
    }
}

impl<T: AsyncWrite + Unpin> Socket<T> {
    /// Writes frames, in order, up to and including the first close frame;
    /// true when a close frame went. The socket takes what it can now and
    /// the rest is kept for [`AsyncWrite::poll_flush`]; this never waits.
    pub fn send(&mut self, frames: impl IntoIterator<Item = Message>) -> io::Result<bool> {
        // The socket is only tried here: whoever flushes what it left
        // waits with a real waker.
        let cx = &mut Context::from_waker(std::task::Waker::noop());
        FRAMES.with_borrow_mut(|buf| {
            buf.clear();
            let mut closing = false;
            for m in frames {
                closing = encode(&m, buf);
                if closing {
                    break;
                }
            }
            self.put(cx, buf)?;
            // A large batch should not keep a large buffer in the thread.
            if buf.capacity() > BURST {
                *buf = Vec::new();
            }
            Ok(closing)
        })
    }

    /// Takes all of `buf`: what the socket does not take now is kept.
    fn put(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> io::Result<()> {
        if !self.unsent.is_empty() {
            self.unsent.extend_from_slice(buf);
            return Ok(());
        }
        let n = match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => 0,
        };
        if n < buf.len() {
            self.unsent.extend_from_slice(&buf[n..]);
            self.kept_since = Some(Instant::now());
        }
        Ok(())
    }

    /// Writes what is kept until the socket took all of it, then frees it;
    /// an error once the socket has taken none of it for `write_limit`.
    /// Reads go through here first (see the module's doc).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut done = 0;
        let result = loop {
            if done == self.unsent.len() {
                break Poll::Ready(Ok(()));
            }
            match Pin::new(&mut self.io).poll_write(cx, &self.unsent[done..]) {
                Poll::Ready(Ok(0)) => break Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => done += n,
                Poll::Ready(Err(e)) => break Poll::Ready(Err(e)),
                Poll::Pending => break Poll::Pending,
            }
        };
        if done == self.unsent.len() {
            self.unsent = Vec::new();
            self.kept_since = None;
        } else if done > 0 {
            self.unsent.drain(..done);
            self.kept_since = Some(Instant::now());
        } else if self
            .kept_since
            .is_some_and(|t| t.elapsed() > self.write_limit)
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer took nothing of what was written for the write limit",
            )));
        }
        result
    }
}

/// Appends one WebSocket frame, as a server sends it (final, unmasked);
/// true for a close frame.
fn encode(m: &Message, out: &mut Vec<u8>) -> bool {
    let (opcode, payload): (u8, &[u8]) = match m {
        Message::Text(t) => (0x1, t.as_bytes()),
        Message::Binary(b) => (0x2, b),
        Message::Ping(p) => (0x9, p),
        Message::Pong(p) => (0xA, p),
        Message::Close(close) => {
            out.push(0x88);
            match close {
                None => out.push(0),
                Some(c) => {
                    // A control frame's payload is at most 125 bytes.
                    let reason = truncate(c.reason.as_str(), 123);
                    out.push(2 + reason.len() as u8);
                    out.extend_from_slice(&u16::from(c.code).to_be_bytes());
                    out.extend_from_slice(reason.as_bytes());
                }
            }
            return true;
        }
        // Raw frames are never queued by the server.
        Message::Frame(_) => return false,
    };
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
    false
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Reads into `buf` what is left of `pending` from `*taken` on (bytes read
/// earlier that the reader has not had yet), and frees `pending` once all of
/// it went; false when nothing was pending.
pub(crate) fn replay(pending: &mut Vec<u8>, taken: &mut usize, buf: &mut ReadBuf<'_>) -> bool {
    if *taken >= pending.len() {
        return false;
    }
    let n = buf.remaining().min(pending.len() - *taken);
    buf.put_slice(&pending[*taken..*taken + n]);
    *taken += n;
    if *taken == pending.len() {
        *pending = Vec::new();
        *taken = 0;
    }
    true
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Socket<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if replay(&mut this.rest, &mut this.taken, buf) {
            return Poll::Ready(Ok(()));
        }
        this.poll_burst(cx, |this, got| {
            let n = buf.remaining().min(got.len());
            buf.put_slice(&got[..n]);
            if n < got.len() {
                this.rest = got[n..].to_vec();
                this.taken = 0;
            }
        })
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Socket<T> {
    /// Reads one burst into the thread's scratch buffer and hands it to
    /// `take` (an empty burst: the end of the stream).
    fn poll_burst<R>(
        &mut self,
        cx: &mut Context<'_>,
        take: impl FnOnce(&mut Self, &[u8]) -> R,
    ) -> Poll<io::Result<R>> {
        SCRATCH.with_borrow_mut(|scratch| {
            let mut burst = ReadBuf::new(&mut scratch[..]);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut burst))?;
            self.read_at = Instant::now();
            Poll::Ready(Ok(take(self, burst.filled())))
        })
    }

    /// Appends what the socket has to `out` (what a read kept back, else
    /// one burst); how many bytes, 0 at the end of the stream. For a
    /// reader with a buffer of its own (`super::frames`).
    pub fn poll_append(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Vec<u8>,
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_drain(cx))?;
        if self.taken < self.rest.len() {
            let n = self.rest.len() - self.taken;
            out.extend_from_slice(&self.rest[self.taken..]);
            self.rest = Vec::new();
            self.taken = 0;
            return Poll::Ready(Ok(n));
        }
        self.poll_burst(cx, |_, got| {
            out.extend_from_slice(got);
            got.len()
        })
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Socket<T> {
    /// Takes the whole buffer (the rest is kept), or nothing while more
    /// than `KEEP_MAX` would be kept.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.unsent.is_empty() && this.unsent.len() + buf.len() > KEEP_MAX {
            ready!(this.poll_drain(cx))?;
        }
        this.put(cx, buf)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
    use tokio_tungstenite::WebSocketStream;

    #[tokio::test]
    async fn small_reads_get_every_byte_in_order_and_the_rest_is_freed() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let sent: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&sent).await.unwrap();
        drop(client);
        let mut socket = Socket::new(server);
        let mut got = Vec::new();
        let mut chunk = [0u8; 500];
        loop {
            let n = socket.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            assert!(n <= chunk.len());
            got.extend_from_slice(&chunk[..n]);
            if socket.taken == socket.rest.len() {
                assert_eq!(socket.rest.capacity(), 0, "nothing held between bursts");
            }
        }
        assert_eq!(got, sent);
    }

    #[tokio::test]
    async fn one_read_takes_a_burst_and_later_reads_need_no_socket() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        client.write_all(&[7u8; 3000]).await.unwrap();
        let mut socket = Socket::new(server);
        let mut chunk = [0u8; 512];
        assert_eq!(socket.read(&mut chunk).await.unwrap(), 512);
        assert_eq!(
            socket.rest.len() - socket.taken,
            3000 - 512,
            "the rest is kept"
        );
        // The socket is empty now, yet the next reads are served at once.
        let mut total = 512;
        while total < 3000 {
            total += socket.read(&mut chunk).await.unwrap();
        }
        assert_eq!(total, 3000);
        assert!(socket.rest.is_empty());
    }

    fn close(code: u16, reason: &str) -> Message {
        Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        }))
    }

    /// Frames sent by `send` as a real WebSocket client reads them: every
    /// kind and length class, the batch cut after its close frame, and a
    /// socket too small to take them at once (what it leaves is kept, then
    /// flushed whole).
    #[tokio::test]
    async fn sent_frames_are_what_a_client_reads() {
        let (client, server) = tokio::io::duplex(1000);
        let mut socket = Socket::new(server);
        let long = "é".repeat(40_000);
        let frames = vec![
            Message::text("hi"),
            Message::text("x".repeat(126)),
            Message::text(long.clone()),
            Message::binary(vec![1u8, 2, 3]),
            Message::Ping(vec![9u8].into()),
            close(4001, &"r".repeat(200)),
            Message::text("after the close: not sent"),
        ];
        let closing = socket.send(frames.clone()).unwrap();
        assert!(closing);
        assert!(!socket.flushed(), "a 1000-byte pipe cannot take 80 KB");
        let reader = tokio::spawn(async move {
            let mut ws = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
            let mut got = Vec::new();
            while let Some(Ok(m)) = ws.next().await {
                let end = matches!(m, Message::Close(_));
                got.push(m);
                if end {
                    break;
                }
            }
            got
        });
        socket.flush().await.unwrap();
        assert!(socket.flushed());
        assert_eq!(socket.unsent.capacity(), 0, "freed once flushed");
        let got = reader.await.unwrap();
        let mut want = frames[..5].to_vec();
        want.push(close(4001, &"r".repeat(123)));
        assert_eq!(got, want);
    }

    /// tungstenite's own writes (its pong to a client's ping) go through
    /// the same socket and arrive whole beside the session's frames.
    #[tokio::test]
    async fn tungstenite_writes_and_session_frames_share_the_socket() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let mut server_ws =
            WebSocketStream::from_raw_socket(Socket::new(server), Role::Server, None).await;
        let mut client_ws = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        client_ws
            .send(Message::Ping(b"p".to_vec().into()))
            .await
            .unwrap();
        client_ws.send(Message::text("req")).await.unwrap();
        // The server reads the ping (tungstenite queues its pong) and the text.
        let mut texts = Vec::new();
        while texts.is_empty() {
            if let Some(Ok(Message::Text(t))) = server_ws.next().await {
                texts.push(t);
            }
        }
        server_ws.get_mut().send([Message::text("reply")]).unwrap();
        server_ws.flush().await.unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            got.push(client_ws.next().await.unwrap().unwrap());
        }
        assert!(
            got.contains(&Message::Pong(b"p".to_vec().into())),
            "{got:?}"
        );
        assert!(got.contains(&Message::text("reply")), "{got:?}");
    }
}
