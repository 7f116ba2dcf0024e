//! The WebSocket frames of a `/ws` session, read by hand (RFC 6455, server
//! side, no extensions).
//!
//! tungstenite read every frame into a buffer of its own, split it off as
//! `Bytes`, built a `Message`, and registered two wakers per poll: 13% of
//! the relay's CPU (perf, 2026-12-01). Here a read takes a burst from the
//! socket into the connection's buffer, frames are unmasked in place and a
//! text frame is handed over as a slice of that buffer; nothing is
//! allocated per frame. The buffer is freed once every frame in it was
//! handed over, so an idle socket holds no buffer at all.
//!
//! What tungstenite did besides, this does too: pings are answered with a
//! pong, a peer's close is answered with the same code (or 1002 for a code
//! that may not be sent), fragmented messages are put together, and a
//! frame or message over the limits ends the connection with 1009. A
//! protocol violation (reserved bits, an unmasked frame, an unknown
//! opcode, a fragmented or long control frame, a continuation out of
//! place) ends it with 1002, a text that is not UTF-8 with 1007.
//! The drop-in endpoints (`/peerjs`, `/matchbox`) still use tungstenite.

use std::io;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::socket::Socket;

/// What the next frame was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Frame {
    /// A whole text message: [`Conn::text`] has it until the next poll.
    Text,
    /// A whole binary message (its bytes are dropped).
    Binary,
    /// A ping (answered) or a pong.
    Control,
    /// The peer's close frame (an answer is sent by [`Conn::close`]).
    Close,
    /// The socket ended or failed.
    End,
    /// The peer broke the protocol or a limit: close with this.
    Fail(CloseCode, &'static str),
}

/// Where the last text message is.
#[derive(Debug, Clone, Copy)]
enum Held {
    None,
    /// In `buf`, at this range.
    Buf(usize, usize),
    /// In `message` (it came in fragments).
    Message,
}

/// A server-side WebSocket over a [`Socket`].
pub(super) struct Conn<T> {
    socket: Socket<T>,
    /// Read, not yet handed over from `at` on; freed when all of it was.
    buf: Vec<u8>,
    at: usize,
    /// The fragments of a message being put together, and its opcode
    /// (0 while there is none).
    message: Vec<u8>,
    message_op: u8,
    held: Held,
    max_frame: usize,
    max_message: usize,
    /// The peer's close, to be answered: its code when it gave one.
    peer_close: Option<Option<CloseCode>>,
    close_sent: bool,
    ended: bool,
}

impl<T: AsyncWrite + Unpin> Conn<T> {
    pub fn new(socket: Socket<T>, max_frame: usize, max_message: usize) -> Self {
        Conn {
            socket,
            buf: Vec::new(),
            at: 0,
            message: Vec::new(),
            message_op: 0,
            held: Held::None,
            max_frame,
            max_message,
            peer_close: None,
            close_sent: false,
            ended: false,
        }
    }

    pub fn socket(&self) -> &Socket<T> {
        &self.socket
    }

    pub fn socket_mut(&mut self) -> &mut Socket<T> {
        &mut self.socket
    }

    /// The text message of the last [`Frame::Text`], if it is UTF-8.
    pub fn text(&self) -> Result<&str, std::str::Utf8Error> {
        let bytes = match self.held {
            Held::None => &[][..],
            Held::Buf(from, to) => &self.buf[from..to],
            Held::Message => &self.message[..],
        };
        // The SIMD check first (every signal goes through here); std's
        // for the error, which says where the text went wrong.
        simdutf8::basic::from_utf8(bytes).or_else(|_| std::str::from_utf8(bytes))
    }

    /// Lets go of the last message; frees what no frame needs any more.
    fn release(&mut self) {
        if let Held::Message = self.held {
            self.message = Vec::new();
        }
        self.held = Held::None;
        if self.at == self.buf.len() {
            self.buf = Vec::new();
            self.at = 0;
        }
    }

    /// The next frame in `buf`, if it is all there; consumes it.
    fn parse(&mut self) -> Option<Result<Frame, Frame>> {
        let b = &self.buf[self.at..];
        if b.len() < 2 {
            return None;
        }
        let (b0, b1) = (b[0], b[1]);
        let fin = b0 & 0x80 != 0;
        let op = b0 & 0x0f;
        if b0 & 0x70 != 0 {
            return Some(Err(protocol("reserved bits set")));
        }
        if b1 & 0x80 == 0 {
            return Some(Err(protocol("client frames must be masked")));
        }
        let (len, head) = match b1 & 0x7f {
            126 => {
                let bytes: [u8; 2] = b.get(2..4)?.try_into().ok()?;
                (u64::from(u16::from_be_bytes(bytes)), 4)
            }
            127 => {
                let bytes: [u8; 8] = b.get(2..10)?.try_into().ok()?;
                (u64::from_be_bytes(bytes), 10)
            }
            n => (u64::from(n), 2),
        };
        if len > self.max_frame as u64 {
            return Some(Err(too_large()));
        }
        let len = len as usize;
        let total = head + 4 + len;
        let have = b.len();
        if have < total {
            // The rest of the frame is to come: room for all of it at once.
            self.buf.reserve(total - have);
            return None;
        }
        let mask: [u8; 4] = b[head..head + 4].try_into().ok()?;
        let from = self.at + head + 4;
        let to = from + len;
        self.at += total;
        unmask(&mut self.buf[from..to], mask);
        Some(self.frame(fin, op, from, to))
    }

    /// A whole frame, unmasked at `buf[from..to]`.
    fn frame(&mut self, fin: bool, op: u8, from: usize, to: usize) -> Result<Frame, Frame> {
        let len = to - from;
        if op >= 0x8 {
            if !fin {
                return Err(protocol("fragmented control frame"));
            }
            if len > 125 {
                return Err(protocol("control frame over 125 bytes"));
            }
        }
        match op {
            // Continuation.
            0x0 => {
                if self.message_op == 0 {
                    return Err(protocol("continuation without a message"));
                }
                if self.message.len() + len > self.max_message {
                    return Err(too_large());
                }
                self.message.extend_from_slice(&self.buf[from..to]);
                if !fin {
                    return Ok(Frame::Control);
                }
                let op = std::mem::take(&mut self.message_op);
                if op == 0x1 {
                    self.held = Held::Message;
                    Ok(Frame::Text)
                } else {
                    self.message = Vec::new();
                    Ok(Frame::Binary)
                }
            }
            0x1 | 0x2 => {
                if self.message_op != 0 {
                    return Err(protocol("a new message inside a fragmented one"));
                }
                if len > self.max_message {
                    return Err(too_large());
                }
                if !fin {
                    self.message_op = op;
                    self.message.extend_from_slice(&self.buf[from..to]);
                    return Ok(Frame::Control);
                }
                if op == 0x1 {
                    self.held = Held::Buf(from, to);
                    Ok(Frame::Text)
                } else {
                    Ok(Frame::Binary)
                }
            }
            // Close: a code (and a reason, UTF-8) or nothing.
            0x8 => {
                let payload = &self.buf[from..to];
                let code = match payload.len() {
                    0 => None,
                    1 => return Err(protocol("close frame of one byte")),
                    _ => {
                        if std::str::from_utf8(&payload[2..]).is_err() {
                            return Err(Frame::Fail(
                                CloseCode::Invalid,
                                "close reason is not UTF-8",
                            ));
                        }
                        Some(CloseCode::from(u16::from_be_bytes([
                            payload[0], payload[1],
                        ])))
                    }
                };
                if self.peer_close.is_none() {
                    self.peer_close = Some(code);
                }
                Ok(Frame::Close)
            }
            0x9 => {
                if !self.close_sent && self.peer_close.is_none() {
                    let pong = Message::Pong(self.buf[from..to].to_vec().into());
                    // Taken whole or kept for the next flush; a failed
                    // socket shows at the next read.
                    let _ = self.socket.send([pong]);
                }
                Ok(Frame::Control)
            }
            0xA => Ok(Frame::Control),
            _ => Err(protocol("unknown opcode")),
        }
    }
}

fn protocol(why: &'static str) -> Frame {
    Frame::Fail(CloseCode::Protocol, why)
}

fn too_large() -> Frame {
    Frame::Fail(CloseCode::Size, "message too large")
}

/// XORs `data` with the four-byte `mask`, eight bytes at a time.
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let word = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let v = u64::from_ne_bytes((&*chunk).try_into().unwrap_or([0; 8])) ^ word;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Conn<T> {
    /// The next frame. After [`Frame::Text`], [`Conn::text`] has its text
    /// until the next call.
    pub fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Frame> {
        loop {
            if let Some(frame) = self.buffered_frame() {
                return Poll::Ready(frame);
            }
            if ready!(self.poll_fill(cx)) == 0 {
                self.ended = true;
                return Poll::Ready(Frame::End);
            }
        }
    }

    /// The next frame if it is all in what was read already (no read from
    /// the socket), as [`Conn::poll_frame`] gives it.
    pub fn buffered_frame(&mut self) -> Option<Frame> {
        self.release();
        if self.ended {
            return Some(Frame::End);
        }
        match self.parse()? {
            Ok(frame) => Some(frame),
            Err(fail) => {
                // Nothing more is read after a violation.
                self.ended = true;
                self.buf = Vec::new();
                self.at = 0;
                Some(fail)
            }
        }
    }

    /// Reads a burst onto the end of `buf`; how many bytes (0: the end).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<usize> {
        // What was handed over goes first.
        if self.at > 0 {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        match ready!(self.socket.poll_append(cx, &mut self.buf)) {
            Ok(n) => Poll::Ready(n),
            Err(e) => {
                tracing::debug!("read error: {e}");
                Poll::Ready(0)
            }
        }
    }

    /// Writes frames now, as far as the socket takes them (see
    /// [`Socket::send`]); true when a close frame went.
    pub fn send(&mut self, frames: impl IntoIterator<Item = Message>) -> io::Result<bool> {
        if self.close_sent {
            return Ok(true);
        }
        let closing = self.socket.send(frames)?;
        self.close_sent |= closing;
        Ok(closing)
    }

    /// Writes what the socket has not taken yet.
    #[cfg(test)]
    pub async fn flush(&mut self) -> io::Result<()> {
        tokio::io::AsyncWriteExt::flush(&mut self.socket).await
    }

    /// Sends a close frame unless one went already (the answer to the
    /// peer's: its code, or 1002 for a code that may not be sent; else
    /// one without a code), and flushes.
    #[cfg(test)]
    pub async fn close(&mut self) -> io::Result<()> {
        if let Some(frame) = self.closing_frame() {
            self.send([frame])?;
        }
        self.flush().await
    }

    /// The close frame [`Conn::close`] would send: none once one went.
    pub fn closing_frame(&self) -> Option<Message> {
        if self.close_sent {
            return None;
        }
        let frame = match self.peer_close {
            Some(Some(code)) if code.is_allowed() => Some(CloseFrame {
                code,
                reason: Default::default(),
            }),
            Some(Some(_)) => Some(CloseFrame {
                code: CloseCode::Protocol,
                reason: "Protocol violation".into(),
            }),
            Some(None) | None => None,
        };
        Some(Message::Close(frame))
    }

    /// When the socket last gave bytes.
    pub fn read_at(&self) -> Instant {
        self.socket.read_at()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::WebSocketStream;

    const MAX: usize = 1000;

    async fn pair() -> (
        Conn<tokio::io::DuplexStream>,
        WebSocketStream<tokio::io::DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(256 * 1024);
        let conn = Conn::new(Socket::new(a), MAX, MAX);
        let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        (conn, client)
    }

    async fn next(conn: &mut Conn<tokio::io::DuplexStream>) -> Frame {
        std::future::poll_fn(|cx| conn.poll_frame(cx)).await
    }

    /// Texts of every length class, fragmented or not, come out as sent,
    /// with binary and control frames in between; the buffer is freed once
    /// all was handed over.
    #[tokio::test]
    async fn frames_from_a_real_client_come_out_whole_and_in_order() {
        let (mut conn, mut client) = pair().await;
        let texts = ["", "hi", &"é".repeat(100), &"x".repeat(MAX)];
        for t in texts {
            client.feed(Message::text(t)).await.unwrap();
            client.feed(Message::binary(vec![1u8, 2])).await.unwrap();
            client
                .feed(Message::Pong(b"p".to_vec().into()))
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
        for t in texts {
            assert_eq!(next(&mut conn).await, Frame::Text);
            assert_eq!(conn.text().unwrap(), t);
            assert_eq!(next(&mut conn).await, Frame::Binary);
            assert_eq!(next(&mut conn).await, Frame::Control);
        }
        assert!(conn.buf.capacity() > 0);
        // Nothing more to read: the poll waits, and has let go of the buffer.
        let waker = std::task::Waker::noop();
        assert!(conn
            .poll_frame(&mut Context::from_waker(waker))
            .is_pending());
        assert_eq!(conn.buf.capacity(), 0, "an idle connection holds no buffer");
    }

    /// The raw bytes of a masked client frame.
    fn raw(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![first];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= 0xffff {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// Fragments (with a ping between them) make one message; bytes that
    /// arrive one at a time make the same frames.
    #[tokio::test]
    async fn fragments_and_byte_by_byte_delivery() {
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        let mut conn = Conn::new(Socket::new(a), MAX, MAX);
        let mut bytes = raw(0x01, b"hel", [1, 2, 3, 4]);
        bytes.extend(raw(0x89, b"ping", [5, 6, 7, 8]));
        bytes.extend(raw(0x00, "lo é".as_bytes(), [9, 9, 9, 9]));
        bytes.extend(raw(0x80, b"!", [0, 0, 0, 0]));
        bytes.extend(raw(0x81, &[b'y'; 300], [0xde, 0xad, 0xbe, 0xef]));
        let writer = tokio::spawn(async move {
            for byte in bytes {
                b.write_all(&[byte]).await.unwrap();
                tokio::task::yield_now().await;
            }
            b
        });
        let mut got = Vec::new();
        while got.len() < 5 {
            let f = next(&mut conn).await;
            let text = (f == Frame::Text).then(|| conn.text().unwrap().to_string());
            got.push((f, text));
        }
        let _b = writer.await.unwrap();
        assert_eq!(
            got,
            vec![
                (Frame::Control, None),
                (Frame::Control, None),
                (Frame::Control, None),
                (Frame::Text, Some("hello é!".to_string())),
                (Frame::Text, Some("y".repeat(300))),
            ]
        );
    }

    /// Each violation ends the connection with its code, and nothing after
    /// it is read.
    #[tokio::test]
    async fn violations_fail_with_their_close_code() {
        let cases: Vec<(Vec<u8>, CloseCode)> = vec![
            (raw(0xC1, b"x", [1, 1, 1, 1]), CloseCode::Protocol),
            (vec![0x81, 0x01, b'x'], CloseCode::Protocol),
            (raw(0x83, b"x", [1, 1, 1, 1]), CloseCode::Protocol),
            (raw(0x09, b"x", [1, 1, 1, 1]), CloseCode::Protocol),
            (raw(0x89, &[0; 126], [1, 1, 1, 1]), CloseCode::Protocol),
            (raw(0x80, b"x", [1, 1, 1, 1]), CloseCode::Protocol),
            (
                [raw(0x01, b"x", [1, 1, 1, 1]), raw(0x81, b"y", [1, 1, 1, 1])].concat(),
                CloseCode::Protocol,
            ),
            (raw(0x88, &[3], [1, 1, 1, 1]), CloseCode::Protocol),
            (
                raw(0x81, &vec![b'x'; MAX + 1], [1, 1, 1, 1]),
                CloseCode::Size,
            ),
            (
                [
                    raw(0x01, &[b'x'; 600], [1, 1, 1, 1]),
                    raw(0x80, &[b'x'; 600], [2, 2, 2, 2]),
                ]
                .concat(),
                CloseCode::Size,
            ),
            // A header that announces more than the limit fails at once.
            (vec![0x81, 0xff, 0, 0, 0, 0, 0, 1, 0, 0], CloseCode::Size),
        ];
        for (bytes, code) in cases {
            let (a, mut b) = tokio::io::duplex(64 * 1024);
            let mut conn = Conn::new(Socket::new(a), MAX, MAX);
            b.write_all(&bytes).await.unwrap();
            b.write_all(&raw(0x81, b"after", [1, 1, 1, 1]))
                .await
                .unwrap();
            let mut last = next(&mut conn).await;
            while last == Frame::Control {
                last = next(&mut conn).await;
            }
            assert!(
                matches!(last, Frame::Fail(c, _) if c == code),
                "{bytes:?}: {last:?}"
            );
            assert_eq!(next(&mut conn).await, Frame::End, "nothing read after");
        }
    }

    /// A text that is not UTF-8 is reported as such by `text`.
    #[tokio::test]
    async fn text_that_is_not_utf8_is_refused() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut conn = Conn::new(Socket::new(a), MAX, MAX);
        b.write_all(&raw(0x81, &[0xff, 0xfe], [7, 7, 7, 7]))
            .await
            .unwrap();
        assert_eq!(next(&mut conn).await, Frame::Text);
        assert!(conn.text().is_err());
    }

    /// A real client's ping is answered with its payload; its close is
    /// answered with its code, and the client sees the handshake finish.
    #[tokio::test]
    async fn pings_and_closes_are_answered() {
        let (mut conn, mut client) = pair().await;
        client
            .send(Message::Ping(b"abc".to_vec().into()))
            .await
            .unwrap();
        assert_eq!(next(&mut conn).await, Frame::Control);
        assert_eq!(
            client.next().await.unwrap().unwrap(),
            Message::Pong(b"abc".to_vec().into())
        );
        client
            .close(Some(CloseFrame {
                code: CloseCode::Away,
                reason: "bye".into(),
            }))
            .await
            .unwrap();
        assert_eq!(next(&mut conn).await, Frame::Close);
        conn.close().await.unwrap();
        closed_with(conn, client, CloseCode::Away).await;
        // A close the server sent itself is not followed by another.
        let (mut conn, client) = pair().await;
        let ours = Message::Close(Some(CloseFrame {
            code: CloseCode::Policy,
            reason: "no".into(),
        }));
        assert!(conn.send([ours]).unwrap());
        conn.close().await.unwrap();
        closed_with(conn, client, CloseCode::Policy).await;
    }

    /// The client reads one close frame with `code`, then, once the server
    /// ends the TCP connection, the end of a finished handshake: not an
    /// error (a frame after the close, bytes cut short, no close at all).
    async fn closed_with(
        conn: Conn<tokio::io::DuplexStream>,
        mut client: WebSocketStream<tokio::io::DuplexStream>,
        code: CloseCode,
    ) {
        match client.next().await {
            Some(Ok(Message::Close(Some(c)))) => assert_eq!(c.code, code),
            other => panic!("{other:?}"),
        }
        // The client's answer to a close it did not start goes out while
        // the server still reads (it would fail on a dropped pipe).
        client.flush().await.unwrap();
        drop(conn);
        match client.next().await {
            None => {}
            other => panic!("after the close: {other:?}"),
        }
    }

    #[test]
    fn unmask_is_the_bytewise_xor() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
            let mask = [0x12, 0x34, 0x56, 0x78];
            let mut got = data.clone();
            unmask(&mut got, mask);
            let want: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(got, want, "len {len}");
        }
    }
}
