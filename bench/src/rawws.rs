//! A lean client side of an open WebSocket, for the relay scenario's busy
//! players: frames are written into one buffer and read out of another by
//! hand, one task per connection drives both directions, and nothing is
//! allocated per frame.
//!
//! The load generator shares two cores with the server under test; through
//! tokio-tungstenite (split halves, a task per direction, a message and a
//! string per frame, the read buffer zeroed before every read) it used a
//! whole core at half of Rendezvous's relay rate, so the latency measured
//! there was the generator's own queueing as much as the server's.
//!
//! The handshake and the scenario's setup still go through tungstenite;
//! [`RawWs::take`] then takes the socket over after a ping round trip, so
//! that nothing is left in tungstenite's read buffer.

use std::io;
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::target::Ws;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;

pub struct RawWs {
    pub tcp: TcpStream,
    mask: [u8; 4],
    /// Frames queued and not yet written.
    out: Vec<u8>,
    /// Bytes read and not yet taken as frames: `inbuf[start..]`.
    inbuf: Vec<u8>,
    start: usize,
}

/// What the server sent, one frame.
pub enum Incoming<'a> {
    /// A text (or binary) message, and when the read that completed it
    /// returned ([`crate::util::now_ns`]: one clock read per read, not
    /// per frame).
    Text(&'a [u8], u64),
    /// The server closed (or sent a frame this client cannot read).
    Closed,
}

impl RawWs {
    /// Takes over `ws` once a ping sent now has its pong back.
    pub async fn take(mut ws: Ws, limit: Duration) -> anyhow::Result<RawWs> {
        let token = crate::util::now_ns().to_le_bytes().to_vec();
        ws.send(Message::Ping(token.clone().into())).await?;
        tokio::time::timeout(limit, async {
            while let Some(m) = ws.next().await {
                if let Message::Pong(p) = m? {
                    if p[..] == token[..] {
                        return Ok(());
                    }
                }
            }
            bail!("closed before the pong")
        })
        .await
        .context("no pong")??;
        let tcp = ws.into_inner();
        tcp.set_nodelay(true)?;
        let seed = crate::util::now_ns() as u32 ^ 0x9e37_79b9;
        Ok(RawWs {
            tcp,
            mask: seed.to_le_bytes(),
            out: Vec::with_capacity(READ_CHUNK),
            inbuf: Vec::with_capacity(READ_CHUNK),
            start: 0,
        })
    }

    /// Queues a text frame whose payload is `parts` end to end.
    pub fn put_text(&mut self, parts: &[&[u8]]) {
        self.put_frame(0x1, parts);
    }

    /// Queues a close frame (normal closure).
    pub fn put_close(&mut self) {
        self.put_frame(0x8, &[&1000u16.to_be_bytes()]);
    }

    fn put_frame(&mut self, opcode: u8, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.out.push(0x80 | opcode);
        if len < 126 {
            self.out.push(0x80 | len as u8);
        } else if len <= 0xffff {
            self.out.push(0x80 | 126);
            self.out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.out.push(0x80 | 127);
            self.out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        self.out.extend_from_slice(&self.mask);
        let at = self.out.len();
        for p in parts {
            self.out.extend_from_slice(p);
        }
        mask(&mut self.out[at..], self.mask);
    }

    pub fn has_unsent(&self) -> bool {
        !self.out.is_empty()
    }

    /// Writes what is queued, as far as the socket takes it now.
    pub fn try_flush(&mut self) -> io::Result<()> {
        let mut done = 0;
        while done < self.out.len() {
            match self.tcp.try_write(&self.out[done..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        self.out.drain(..done);
        Ok(())
    }

    /// Reads what the socket has now and hands every complete frame to
    /// `on`: text as such, a close or an unreadable frame as `Closed`.
    /// Pings are answered (queued; flushed with the next write). Returns
    /// false once the connection is over.
    pub fn try_read(&mut self, mut on: impl FnMut(Incoming<'_>)) -> io::Result<bool> {
        loop {
            if self.start > 0 && self.start == self.inbuf.len() {
                self.inbuf.clear();
                self.start = 0;
            }
            self.inbuf.reserve(READ_CHUNK);
            let cap = self.inbuf.capacity() - self.inbuf.len();
            let n = match self.tcp.try_read_buf(&mut self.inbuf) {
                Ok(0) => {
                    on(Incoming::Closed);
                    return Ok(false);
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) => return Err(e),
            };
            let read_ns = crate::util::now_ns();
            if !self.take_frames(&mut on, read_ns) {
                return Ok(false);
            }
            if n < cap {
                return Ok(true);
            }
        }
    }

    /// Takes the complete frames out of `inbuf`; false after a close.
    fn take_frames(&mut self, on: &mut impl FnMut(Incoming<'_>), read_ns: u64) -> bool {
        loop {
            let b = &self.inbuf[self.start..];
            if b.len() < 2 {
                break;
            }
            let (fin, opcode) = (b[0] & 0x80 != 0, b[0] & 0x0f);
            if b[1] & 0x80 != 0 || !fin && opcode != 0 {
                // A server never masks; fragments are not used by any
                // server measured (their frames are small).
                on(Incoming::Closed);
                return false;
            }
            let (len, head) = match b[1] & 0x7f {
                126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
                127 if b.len() >= 10 => {
                    let mut l = [0u8; 8];
                    l.copy_from_slice(&b[2..10]);
                    (u64::from_be_bytes(l) as usize, 10)
                }
                126 | 127 => break,
                l => (l as usize, 2),
            };
            if b.len() < head + len {
                break;
            }
            let payload = &b[head..head + len];
            match opcode {
                0x1 | 0x2 => on(Incoming::Text(payload, read_ns)),
                0x9 => {
                    let p = payload.to_vec();
                    self.start += head + len;
                    self.put_frame(0xA, &[&p]);
                    continue;
                }
                0x8 => {
                    on(Incoming::Closed);
                    return false;
                }
                _ => {}
            }
            self.start += head + len;
        }
        if self.start > 0 && self.start < self.inbuf.len() && self.start >= READ_CHUNK {
            self.inbuf.drain(..self.start);
            self.start = 0;
        }
        true
    }
}

/// XORs `data` with the masking key, eight bytes at a time.
fn mask(data: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes(c.try_into().expect("eight bytes")) ^ wide;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_matches_the_bytewise_definition() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
            let mut fast = data.clone();
            mask(&mut fast, key);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert_eq!(fast, slow, "len {len}");
        }
    }
}
