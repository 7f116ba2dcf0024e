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

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
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
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    filter: F,
    shutdown: CancellationToken,
) where
    F: Filter<Extract = (R,), Error = Infallible> + Clone + Send + Sync + 'static,
    R: Reply,
{
    // Every HTTP connection, until it ends or is handed over as a
    // WebSocket: the server waits for them when it stops.
    let connections = TaskTracker::new();
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
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut().insert(PeerAddr(peer));
            service.clone().call(req)
        });
        let shutdown = shutdown.clone();
        match &tls {
            None => {
                connections.spawn(async move { http1(tcp, svc, &shutdown, peer).await });
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
                    http1(stream, svc, &shutdown, peer).await
                });
            }
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// One HTTP/1.1 connection with upgrades, until it ends (an upgraded one
/// ends for hyper when it is handed over); once `shutdown` is cancelled it
/// finishes the request at hand and ends.
async fn http1<I, S, B>(io: I, svc: S, shutdown: &CancellationToken, peer: SocketAddr)
where
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
