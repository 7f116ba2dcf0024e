//! The accept loop: each TCP connection (after a TLS handshake when the
//! server has a certificate) is served by hyper as HTTP/1.1 with upgrades,
//! over the warp filter of all routes.
//!
//! warp's own `serve` is not used: its acceptor trait is sealed (no TLS),
//! and it serves every connection with hyper-util's auto builder, which
//! first reads 24 bytes on their own to tell an HTTP/2 preface from
//! HTTP/1.1 (it does so even when told HTTP/1.1 only): a `recvfrom` more
//! for every connection, for HTTP/2 without TLS (h2c), which no browser
//! speaks and a WebSocket upgrade cannot use. Here hyper's HTTP/1.1
//! connection is used directly.
//!
//! WebSocket upgrades are finished from hyper's `OnUpgrade`. The client
//! address travels in a [`PeerAddr`] extension that [`remote`] reads.
//!
//! On a plain TCP connection the accept loop reads the first request head
//! itself ([`read_head`]): an ordinary `GET /ws` upgrade that passes every
//! check is answered from it without hyper (`super::upgrade::fast`: the
//! session gets the stream, the bytes behind the head and the 101 to send
//! with its welcome), which skips hyper's connection, warp's filters and
//! the upgrade hand-over (about 20 000 of 159 000 instructions per churn
//! player cycle). Anything else (another route, a refusal, an unusual
//! head) goes to hyper with the bytes read, as if hyper had read them.
//!
//! A plain TCP connection is served through [`PlainIo`], so that a `/ws`
//! session can take its socket back from hyper ([`stream_of`]): its reads
//! and writes then go straight to the `TcpStream`, not through hyper's boxed
//! `Upgraded`, and hyper's `101 Switching Protocols` is held back
//! ([`HoldWrites`]) to leave in the same write as the `welcome` (one
//! `sendto` less per connection, and one wake-up less for the client).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;
use warp::{Filter, Reply};

/// A client that opens a TCP connection and never finishes its TLS
/// handshake is dropped after this long instead of holding a task and a
/// socket.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The client address of a connection accepted here (warp's own extension
/// type is private to warp).
#[derive(Debug, Clone, Copy)]
struct PeerAddr(SocketAddr);

/// The client address of the request's connection.
pub(super) fn remote() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Clone {
    warp::ext::optional::<PeerAddr>().map(|ours: Option<PeerAddr>| ours.map(|p| p.0))
}

/// Serves `filter` on `listener` (over TLS with `tls`) until `shutdown` is
/// cancelled, then waits for open HTTP connections to finish, as warp's
/// graceful server does (upgraded WebSockets are no longer connections of
/// hyper's, and are closed by the sessions' own shutdown).
pub(super) async fn serve<F, R>(
    app: Arc<super::App>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    header_timeout_ms: u64,
    filter: F,
    shutdown: CancellationToken,
) where
    F: Filter<Extract = (R,), Error = Infallible> + Clone + Send + Sync + 'static,
    R: Reply,
{
    // Every HTTP connection, until it ends or is handed over as a
    // WebSocket: the server waits for them when it stops.
    let connections = TaskTracker::new();
    let head_timeout = Duration::from_millis(header_timeout_ms);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: let some close.
                    tracing::warn!("accept error: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let service = warp::service(filter.clone());
        // Only a plain connection's writes can be held: a TLS session keeps
        // hyper's `Upgraded` (see `stream_of`).
        let flag = Arc::new(AtomicBool::new(false));
        let hold = tls.is_none().then(|| HoldWrites(flag.clone()));
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut().insert(PeerAddr(peer));
            if let Some(h) = &hold {
                req.extensions_mut().insert(h.clone());
            }
            service.clone().call(req)
        });
        let shutdown = shutdown.clone();
        match &tls {
            None => {
                let app = app.clone();
                connections.spawn(async move {
                    let deadline = tokio::time::Instant::now() + head_timeout;
                    let mut head = Vec::new();
                    match read_head(&tcp, &mut head, deadline, &shutdown).await {
                        FirstRead::Head(n) => {
                            if let Some(upgrade) = super::upgrade::fast(&app, &head[..n], peer) {
                                upgrade.start(tcp, head[n..].to_vec());
                                return;
                            }
                        }
                        FirstRead::Partial => {}
                        FirstRead::Gone => return,
                    }
                    let io = PlainIo {
                        tcp,
                        hold: flag,
                        held: Vec::new(),
                        head,
                        head_read: 0,
                    };
                    http1(io, svc, head_timeout, &shutdown, peer).await
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                connections.spawn(async move {
                    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                    let stream = tokio::select! {
                        done = handshake => match done {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, "TLS handshake failed: {e}");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        },
                        _ = shutdown.cancelled() => return,
                    };
                    http1(stream, svc, head_timeout, &shutdown, peer).await
                });
            }
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// The most of a plain connection's first request head read before hyper
/// is given the connection (a head this long is not an ordinary `/ws`
/// upgrade; hyper takes heads up to about 400 KiB).
const FIRST_HEAD_MAX: usize = 8 * 1024;

/// What the first reads of a plain connection gave.
enum FirstRead {
    /// A whole request head of this many bytes (more may follow it).
    Head(usize),
    /// Bytes that are not a whole head within [`FIRST_HEAD_MAX`], or a
    /// head the client ended the stream in (hyper answers them).
    Partial,
    /// Nothing came before the deadline, the shutdown or the end of the
    /// stream, or the socket failed: the connection is dropped.
    Gone,
}

/// Reads a plain connection's first request head into `buf`, as hyper would
/// read it first (the bytes go to hyper when the accept loop does not take
/// the request itself): the `/ws` upgrade of a game or a browser is then
/// answered without hyper (`super::upgrade::fast`).
async fn read_head(
    tcp: &TcpStream,
    buf: &mut Vec<u8>,
    deadline: tokio::time::Instant,
    shutdown: &CancellationToken,
) -> FirstRead {
    let expired = tokio::time::sleep_until(deadline);
    let mut expired = std::pin::pin!(expired);
    loop {
        tokio::select! {
            ready = tcp.readable() => if ready.is_err() {
                return FirstRead::Gone;
            },
            _ = expired.as_mut() => return FirstRead::Gone,
            _ = shutdown.cancelled() => return FirstRead::Gone,
        }
        if buf.len() == buf.capacity() {
            buf.reserve(if buf.is_empty() { 2048 } else { buf.len() });
        }
        let before = buf.len();
        match tcp.try_read_buf(buf) {
            Ok(0) if buf.is_empty() => return FirstRead::Gone,
            Ok(0) => return FirstRead::Partial,
            Ok(_) => {
                // The end of the head is in what came now (or straddles it).
                let from = before.saturating_sub(3);
                if let Some(at) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
                    return FirstRead::Head(from + at + 4);
                }
                if buf.len() >= FIRST_HEAD_MAX {
                    return FirstRead::Partial;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return FirstRead::Gone,
        }
    }
}

/// One HTTP/1.1 connection with upgrades, until it ends (an upgraded one
/// ends for hyper when it is handed over); once `shutdown` is cancelled it
/// finishes the request at hand and ends. A request head (the first, or
/// the next on a kept-alive connection) must be complete within
/// `head_timeout`.
async fn http1<I, S, B>(
    io: I,
    svc: S,
    head_timeout: Duration,
    shutdown: &CancellationToken,
    peer: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<B>,
        > + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, "connection error: {e}");
    }
}

/// In the requests of a plain TCP connection: the `/ws` handshake turns it
/// on just before answering 101, and from then on what hyper writes is held
/// in the [`PlainIo`] for the session to send with its first frames.
#[derive(Clone)]
pub(super) struct HoldWrites(Arc<AtomicBool>);

impl HoldWrites {
    pub(super) fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A plain TCP connection as hyper sees it: the stream, the request head
/// read before hyper was given it (read first), and the writes held once
/// [`HoldWrites`] is on.
pub(crate) struct PlainIo {
    tcp: TcpStream,
    hold: Arc<AtomicBool>,
    held: Vec<u8>,
    head: Vec<u8>,
    head_read: usize,
}

impl PlainIo {
    fn holding(&self) -> bool {
        self.hold.load(Ordering::Relaxed)
    }
}

impl AsyncRead for PlainIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if super::socket::replay(&mut this.head, &mut this.head_read, buf) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for PlainIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.holding() {
            this.held.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.holding() {
            let mut n = 0;
            for b in bufs {
                this.held.extend_from_slice(b);
                n += b.len();
            }
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.holding() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// The stream of a `/ws` session: the TCP stream taken back from hyper, or
/// (over TLS) hyper's `Upgraded`.
pub(crate) type Stream = Either<TcpStream, TokioIo<hyper::upgrade::Upgraded>>;

/// The session's stream, with what hyper read past the request (the client
/// may send frames before it reads the 101) and what it wrote but was held
/// back (the 101): they go first.
pub(crate) fn stream_of(upgraded: hyper::upgrade::Upgraded) -> (Stream, Vec<u8>, Vec<u8>) {
    match upgraded.downcast::<TokioIo<PlainIo>>() {
        Ok(parts) => {
            let io = parts.io.into_inner();
            // What hyper read past the request, then what it did not read
            // of the head read before it.
            let mut read = parts.read_buf.to_vec();
            read.extend_from_slice(&io.head[io.head_read..]);
            (Either::Left(io.tcp), read, io.held)
        }
        Err(upgraded) => (
            Either::Right(TokioIo::new(upgraded)),
            Vec::new(),
            Vec::new(),
        ),
    }
}
