//! HTTPS and wss:// on the listening port with rustls (the `ring` provider:
//! nothing to build beyond the Rust toolchain and a C compiler), so that a
//! browser page served over HTTPS can open its WebSocket without a proxy in
//! front.
//!
//! warp 0.4 only serves plain TCP listeners (its acceptor trait is sealed),
//! so with `--tls-cert`/`--tls-key` this module runs the accept loop itself:
//! TLS handshake, then hyper's HTTP/1.1 connection with upgrades over the
//! same warp filter. WebSocket upgrades are finished from hyper's
//! `OnUpgrade` as in plain mode, since `Upgraded` hides the stream type. The
//! client address travels in a [`PeerAddr`] extension that [`remote`] reads
//! alongside warp's own.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower_service::Service;
use warp::{Filter, Reply};

/// A client that opens a TCP connection and says nothing is dropped after
/// this long instead of holding a task and a socket.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The client address of a connection accepted here (warp's own extension
/// type is private to warp).
#[derive(Debug, Clone, Copy)]
struct PeerAddr(SocketAddr);

/// The client address, whichever loop accepted the connection.
pub(super) fn remote() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Clone {
    warp::addr::remote()
        .and(warp::ext::optional::<PeerAddr>())
        .map(|warp_addr: Option<SocketAddr>, ours: Option<PeerAddr>| {
            warp_addr.or(ours.map(|p| p.0))
        })
}

/// The TLS acceptor of a PEM certificate chain and its private key. Errors
/// name the file and the problem, for a start-up message (exit code 2).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let read = |path: &Path, flag: &str| {
        std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
    };
    let cert_pem = read(cert, "--tls-cert")?;
    let key_pem = read(key, "--tls-key")?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no PEM certificate in the file",
            cert.display()
        ));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        format!(
            "--tls-key {}: no PEM private key in the file ({e})",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            format!(
                "--tls-cert {} and --tls-key {} do not go together: {e}",
                cert.display(),
                key.display()
            )
        })?;
    // HTTP/1.1 only: WebSocket upgrades are HTTP/1.1 requests.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `filter` over TLS on `listener` until `shutdown` is cancelled,
/// then waits for open connections as warp's graceful server does
/// (upgraded WebSockets are no longer connections of hyper's, and are
/// closed by the sessions' own shutdown).
pub(super) async fn serve<F, R>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    filter: F,
    shutdown: CancellationToken,
) where
    F: Filter<Extract = (R,), Error = Infallible> + Clone + Send + Sync + 'static,
    R: Reply,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
        let acceptor = acceptor.clone();
        let service = warp::service(filter.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
                req.extensions_mut().insert(PeerAddr(peer));
                service.clone().call(req)
            });
            // HTTP/1.1 only, as ALPN says; the auto builder is the one whose
            // upgradeable connections shut down gracefully.
            let builder =
                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).http1_only();
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, "connection error: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
