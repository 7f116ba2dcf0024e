//! A minimal RESP2 connection for the two paths every cross-node signal
//! takes: publishing signal batches and receiving the node's channel.
//!
//! redis-rs copies a published batch three times on the way out (into the
//! command's arguments, into the packed pipeline, into its codec's buffer)
//! and once more on the way in (its parser's owned message), and its
//! parser is a general combinator one: in `perf`, about a seventh of a
//! node's CPU in a cross-node relay run. Here a batch is written from the
//! buffer it was built in (its `PUBLISH` header goes in space kept free
//! in front of it), and a message is handed over as a slice of the read
//! buffer. Everything else (scripts, reads, the other commands) still goes
//! through redis-rs.
//!
//! Replies are parsed without trusting their lengths beyond Redis's own
//! limit for a bulk string, and without recursion beyond a small depth.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Redis's own largest bulk string (`proto-max-bulk-len`'s default).
const MAX_BULK: usize = 512 << 20;
/// Most elements in one array reply.
const MAX_ARRAY: usize = 1 << 20;
/// Deepest nesting of arrays (a pub/sub message is one level).
const MAX_DEPTH: usize = 4;
/// Longest line of a simple string, an error or a length.
const MAX_LINE: usize = 64 * 1024;
/// Room kept free in the read buffer before each read.
const READ_CHUNK: usize = 64 * 1024;
/// An empty read buffer larger than this is let go (a burst's batches).
const KEEP_BYTES: usize = 4 << 20;

/// One reply, borrowed from the read buffer.
#[derive(Debug, PartialEq)]
pub(crate) enum Reply<'a> {
    Simple(&'a [u8]),
    Error(&'a [u8]),
    Int(i64),
    Bulk(Option<&'a [u8]>),
    Array(Option<Vec<Reply<'a>>>),
}

impl Reply<'_> {
    /// An error reply as an error; anything else as itself.
    pub fn ok(self) -> io::Result<Self> {
        match self {
            Reply::Error(e) => Err(io::Error::other(format!(
                "redis: {}",
                String::from_utf8_lossy(e)
            ))),
            r => Ok(r),
        }
    }
}

/// Parses the reply at the start of `buf`: `Ok(None)` while it is not all
/// there yet, else the reply and the number of bytes it took.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, String> {
    parse_at(buf, 0, 0)
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Reply<'_>, usize)>, String> {
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let rest = &buf[at + 1..];
    let Some(cr) = rest.iter().take(MAX_LINE + 1).position(|&b| b == b'\r') else {
        return if rest.len() > MAX_LINE {
            Err("reply line too long".into())
        } else {
            Ok(None)
        };
    };
    match rest.get(cr + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err("a reply line not ended by CRLF".into()),
    }
    let line = &rest[..cr];
    let next = at + 1 + cr + 2;
    let reply = match kind {
        b'+' => Reply::Simple(line),
        b'-' => Reply::Error(line),
        b':' => Reply::Int(int(line)?),
        b'$' => {
            let Some(n) = length(line, MAX_BULK, "bulk")? else {
                return Ok(Some((Reply::Bulk(None), next)));
            };
            let end = next + n;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err("a bulk string not ended by CRLF".into());
            }
            return Ok(Some((Reply::Bulk(Some(&buf[next..end])), end + 2)));
        }
        b'*' => {
            let Some(n) = length(line, MAX_ARRAY, "array")? else {
                return Ok(Some((Reply::Array(None), next)));
            };
            if depth >= MAX_DEPTH {
                return Err("replies nested too deep".into());
            }
            let mut items = Vec::with_capacity(n.min(16));
            let mut pos = next;
            for _ in 0..n {
                match parse_at(buf, pos, depth + 1)? {
                    Some((item, after)) => {
                        items.push(item);
                        pos = after;
                    }
                    None => return Ok(None),
                }
            }
            return Ok(Some((Reply::Array(Some(items)), pos)));
        }
        other => return Err(format!("unexpected reply type {other:#04x}")),
    };
    Ok(Some((reply, next)))
}

/// The length of a bulk string or an array, at most `max`; `None` for
/// `-1` (a null one).
fn length(line: &[u8], max: usize, what: &str) -> Result<Option<usize>, String> {
    match int(line)? {
        -1 => Ok(None),
        n => usize::try_from(n)
            .ok()
            .filter(|&n| n <= max)
            .map(Some)
            .ok_or_else(|| format!("bad {what} length {n}")),
    }
}

fn int(line: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad integer {:?}", String::from_utf8_lossy(line)))
}

/// Appends one command (an array of bulk strings) to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    encode_first(out, args.len(), args);
}

/// The start of a command of `count` arguments: its first ones, `args`.
fn encode_first(out: &mut Vec<u8>, count: usize, args: &[&[u8]]) {
    out.push(b'*');
    push_len(out, count);
    for a in args {
        out.push(b'$');
        push_len(out, a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn push_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The head of a `PUBLISH channel <payload>` whose payload is `len` bytes:
/// what goes in front of the payload (then `\r\n` after it).
pub(crate) fn publish_head(channel: &str, len: usize) -> Vec<u8> {
    let mut head = Vec::with_capacity(48 + channel.len());
    encode_first(&mut head, 3, &[b"PUBLISH", channel.as_bytes()]);
    head.push(b'$');
    push_len(&mut head, len);
    head
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One connection to Redis, with its read buffer.
pub(crate) struct Conn {
    io: Box<dyn Stream>,
    buf: Vec<u8>,
    /// First byte of `buf` not yet taken by a reply.
    start: usize,
}

impl Conn {
    /// Connects as the url says (TCP or a Unix socket) and authenticates
    /// when it has a password. No timeout here: the caller sets one.
    pub async fn connect(info: &redis::ConnectionInfo) -> io::Result<Conn> {
        let io: Box<dyn Stream> = match info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => {
                let s = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                // Each write is a whole batch: nothing to gain from Nagle.
                s.set_nodelay(true)?;
                Box::new(s)
            }
            #[cfg(unix)]
            redis::ConnectionAddr::Unix(path) => {
                Box::new(tokio::net::UnixStream::connect(path).await?)
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("redis address {other} is not supported"),
                ))
            }
        };
        let mut conn = Conn {
            io,
            buf: Vec::new(),
            start: 0,
        };
        let settings = info.redis_settings();
        if let Some(password) = settings.password() {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = settings.username() {
                args.push(user.as_bytes());
            }
            args.push(password.as_bytes());
            conn.send(&args).await?;
            conn.next(|r| r.ok().map(|_| ())).await??;
        }
        Ok(conn)
    }

    /// Sends one command.
    pub async fn send(&mut self, args: &[&[u8]]) -> io::Result<()> {
        let mut out = Vec::new();
        encode(&mut out, args);
        self.io.write_all(&out).await
    }

    /// Writes bytes as they are (a command already encoded).
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.write_all(bytes).await
    }

    /// Waits for the next whole reply and hands it to `take`, borrowed from
    /// the read buffer.
    pub async fn next<R>(&mut self, take: impl FnOnce(Reply<'_>) -> R) -> io::Result<R> {
        loop {
            match parse(&self.buf[self.start..]) {
                Ok(Some((reply, used))) => {
                    let out = take(reply);
                    self.start += used;
                    if self.start == self.buf.len() {
                        self.buf.clear();
                        self.start = 0;
                        if self.buf.capacity() > KEEP_BYTES {
                            self.buf = Vec::new();
                        }
                    }
                    return Ok(out);
                }
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            if self.start > 0 {
                // The start of a reply that is not all here yet.
                self.buf.drain(..self.start);
                self.start = 0;
            }
            self.buf.reserve(READ_CHUNK);
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "redis closed the connection",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(buf: &[u8]) -> (Reply<'_>, usize) {
        parse(buf).expect("valid").expect("complete")
    }

    #[test]
    fn parses_every_kind_and_says_how_much_it_took() {
        assert_eq!(whole(b"+OK\r\n"), (Reply::Simple(b"OK"), 5));
        assert_eq!(whole(b"-ERR no\r\n"), (Reply::Error(b"ERR no"), 9));
        assert_eq!(whole(b":-42\r\nrest"), (Reply::Int(-42), 6));
        assert_eq!(whole(b"$3\r\na\rb\r\n"), (Reply::Bulk(Some(b"a\rb")), 9));
        assert_eq!(whole(b"$0\r\n\r\n"), (Reply::Bulk(Some(b"")), 6));
        assert_eq!(whole(b"$-1\r\n"), (Reply::Bulk(None), 5));
        assert_eq!(whole(b"*-1\r\n"), (Reply::Array(None), 5));
        let msg = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nS1:ab\r\n";
        let (r, used) = whole(msg);
        assert_eq!(used, msg.len());
        assert_eq!(
            r,
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"message")),
                Reply::Bulk(Some(b"ch")),
                Reply::Bulk(Some(b"S1:ab")),
            ]))
        );
    }

    #[test]
    fn a_reply_cut_anywhere_is_incomplete_not_wrong() {
        let msg = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nS1:ab\r\n";
        for cut in 0..msg.len() {
            assert_eq!(parse(&msg[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn hostile_replies_are_errors() {
        for bad in [
            &b"?x\r\n"[..],
            b":12a\r\n",
            b"$-2\r\n",
            b"$99999999999\r\n",
            b"*-5\r\n",
            b"*9999999\r\n",
            b"$1\r\nabc",
            b"+OK\rX",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = vec![b'+'; MAX_LINE + 10];
        assert!(parse(&long).is_err(), "a line with no end");
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&mut out, &[b"SUBSCRIBE", b"a", b""]);
        assert_eq!(out, b"*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$0\r\n\r\n");
        let mut publish = publish_head("rv:ch:n1", 3);
        publish.extend_from_slice(b"xyz\r\n");
        let mut want = Vec::new();
        encode(&mut want, &[b"PUBLISH", b"rv:ch:n1", b"xyz"]);
        assert_eq!(publish, want);
    }

    /// A fake Redis on loopback that, step by step, reads the bytes it
    /// expects and answers with the reply of that step, then closes.
    async fn fake(
        steps: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> (redis::ConnectionInfo, tokio::task::JoinHandle<()>) {
        use redis::IntoConnectionInfo;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            for (expect, reply) in steps {
                let mut got = vec![0; expect.len()];
                s.read_exact(&mut got).await.unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&expect)
                );
                // Dribbled out a few bytes at a time.
                for chunk in reply.chunks(3) {
                    s.write_all(chunk).await.unwrap();
                    s.flush().await.unwrap();
                    tokio::task::yield_now().await;
                }
            }
        });
        let url = format!("redis://user:secret@127.0.0.1:{port}/");
        (url.into_connection_info().unwrap(), task)
    }

    #[tokio::test]
    async fn authenticates_and_reads_replies_that_arrive_in_pieces() {
        let (mut auth, mut ping) = (Vec::new(), Vec::new());
        encode(&mut auth, &[b"AUTH", b"user", b"secret"]);
        encode(&mut ping, &[b"PING"]);
        let big = "x".repeat(200_000);
        let replies = format!("${}\r\n{big}\r\n:7\r\n", big.len()).into_bytes();
        let (info, task) = fake(vec![(auth, b"+OK\r\n".to_vec()), (ping, replies)]).await;
        let mut conn = Conn::connect(&info).await.expect("authenticated");
        conn.send(&[b"PING"]).await.unwrap();
        let len = conn
            .next(|r| match r {
                Reply::Bulk(Some(b)) => b.len(),
                other => panic!("{other:?}"),
            })
            .await
            .unwrap();
        assert_eq!(len, big.len());
        assert!(conn.next(|r| r == Reply::Int(7)).await.unwrap());
        let end = conn.next(|_| ()).await.expect_err("closed");
        assert_eq!(end.kind(), io::ErrorKind::UnexpectedEof);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_refused_password_is_an_error() {
        let mut auth = Vec::new();
        encode(&mut auth, &[b"AUTH", b"user", b"secret"]);
        let (info, task) = fake(vec![(auth, b"-WRONGPASS invalid\r\n".to_vec())]).await;
        let err = Conn::connect(&info).await.err().expect("refused");
        assert!(err.to_string().contains("WRONGPASS"), "{err}");
        task.await.unwrap();
    }
}
