//! The WebSocket upgrade of `GET /ws`: the checks before it (draining,
//! store availability, origin, token, name, connection caps), then the
//! handshake finished by hand from hyper's `OnUpgrade`.
//!
//! The upgrade is finished here rather than by warp's `ws()` filter, because
//! that filter fixes tungstenite's buffers at sizes that cost over 100 KiB per
//! idle socket; here every limit is set explicitly from the configuration.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;
use warp::http::{HeaderMap, StatusCode};
use warp::{Filter, Reply};

use super::session::Handover;
use super::App;
use crate::protocol::{self, ErrorCode, ProtoError};

/// Longest display name, in characters after trimming.
pub const MAX_NAME_CHARS: usize = 32;

pub(super) fn route(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path("ws")
        .and(warp::path::end())
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::ext::optional::<OnUpgrade>())
        .and(super::listen::remote())
        .and(warp::ext::optional::<super::listen::HoldWrites>())
        .map(move |headers, query, upgrade, remote, hold| {
            handshake(app.clone(), headers, query, upgrade, remote, hold)
        })
}

pub(super) fn refuse(status: StatusCode, code: ErrorCode, message: &str) -> warp::reply::Response {
    let body = protocol::http_error_body(&ProtoError::new(code, message));
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

fn header_has(headers: &HeaderMap, name: &str, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| has_token(v, token))
}

/// Whether a comma-separated header value lists `token` (any case).
fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Checks the upgrade request and the query, answers 101 and spawns the
/// session; or refuses with an HTTP status and the JSON error body.
fn handshake(
    app: Arc<App>,
    headers: HeaderMap,
    query: HashMap<String, String>,
    upgrade: Option<OnUpgrade>,
    remote: Option<SocketAddr>,
    hold: Option<super::listen::HoldWrites>,
) -> warp::reply::Response {
    let refused = |status, code, message: &str| {
        app.metrics.handshakes_refused.increment(1);
        refuse(status, code, message)
    };
    if let Some(refusal) = first_checks(&app, &headers) {
        return refusal;
    }
    let identity = match app.auth.check(query.get("token").map(String::as_str)) {
        Ok(identity) => identity,
        Err(e) => {
            // The reason, never the token.
            app.metrics.auth_failures.increment(1);
            tracing::debug!(?remote, "token refused: {e}");
            return refused(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                &e.to_string(),
            );
        }
    };
    let (accept, upgrade) = match upgrade_parts(&headers, upgrade, "GET /ws") {
        Ok(parts) => parts,
        Err(refusal) => return refusal,
    };
    let name = match player_name(identity.as_ref(), query.get("name").map(String::as_str)) {
        Ok(name) => name,
        Err(msg) => return refused(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, msg),
    };
    let admission = match Admission::take(&app, remote.map(|r| r.ip())) {
        Ok(a) => a,
        Err((status, msg)) => {
            let code = if status == StatusCode::TOO_MANY_REQUESTS {
                ErrorCode::RateLimited
            } else {
                ErrorCode::LimitReached
            };
            return refused(status, code, msg);
        }
    };
    let resume = resume_token(query.get("resume").map(String::as_str));
    tracing::debug!(?remote, "websocket upgrade");
    // The session is spawned with its start boxed (see `session::run`):
    // an idle socket's task is then only the reader loop.
    let start = super::session::Start {
        app,
        upgrade: Handover::Hyper(upgrade),
        name,
        resume,
        identity,
        admission,
    };
    tokio::spawn(super::session::run(Box::new(start)));
    // The 101 waits in the connection for the session's first frames (the
    // welcome, or a close): one write for both.
    if let Some(hold) = hold {
        hold.start();
    }
    switching_protocols(accept)
}

/// The display name: the token's, else the `name` parameter (trimmed;
/// `player` when absent or empty), or why the parameter is refused.
fn player_name(
    identity: Option<&crate::auth::Identity>,
    query_name: Option<&str>,
) -> Result<String, &'static str> {
    if let Some(name) = identity.and_then(|i| i.name.clone()) {
        return Ok(name);
    }
    match query_name.map(str::trim) {
        None | Some("") => Ok("player".to_string()),
        Some(n) if n.chars().count() > MAX_NAME_CHARS => Err("name must be 1 to 32 characters"),
        Some(n) if n.chars().any(char::is_control) => {
            Err("name must not contain control characters")
        }
        Some(n) => Ok(n.to_string()),
    }
}

/// The `resume` parameter, when it can be a resume token at all.
fn resume_token(query_resume: Option<&str>) -> Option<String> {
    query_resume
        .filter(|t| !t.is_empty() && t.len() <= 128)
        .map(str::to_string)
}

/// The most headers a `GET /ws` head may have to be taken by [`fast`]
/// (more go to hyper, which takes up to 100).
const FAST_MAX_HEADERS: usize = 32;

/// A `GET /ws` upgrade answered from the request head the accept loop read
/// itself (a plain TCP connection: `super::listen`), without hyper's
/// connection, warp's filters or hyper's upgrade hand-over. Only a request
/// that passes every check is taken: `None` for anything else (not this
/// route, an unusual head, a refusal), and hyper then serves the request
/// as before, so that refusals keep one implementation and are counted
/// once. [`FastUpgrade::start`] spawns the session on the stream, with the
/// 101 to send before its first frames.
pub(super) fn fast(app: &Arc<App>, head: &[u8], remote: SocketAddr) -> Option<FastUpgrade> {
    let mut headers = [httparse::EMPTY_HEADER; FAST_MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        return None;
    }
    if req.method != Some("GET") || req.version != Some(1) {
        return None;
    }
    let (path, query) = match req.path?.split_once('?') {
        Some((path, query)) => (path, query),
        None => (req.path?, ""),
    };
    if path != "/ws" {
        return None;
    }
    let mut origin = None;
    let mut host = None;
    let mut key = None;
    let mut version = None;
    let (mut upgrade, mut connection) = (false, false);
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("origin") {
            origin = origin.or(Some(text(h.value)?));
        } else if name.eq_ignore_ascii_case("host") {
            host = host.or(Some(text(h.value)?));
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            key = key.or(Some(h.value));
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            version = version.or(Some(h.value));
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(text(h.value)?, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= has_token(text(h.value)?, "upgrade");
        } else if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            // A body before the upgrade: hyper's business.
            return None;
        }
    }
    if !(upgrade && connection) || version != Some(b"13".as_slice()) {
        return None;
    }
    let key = key?;
    if app.draining.is_cancelled() || app.shutdown.is_cancelled() || !app.backend.available() {
        return None;
    }
    origin_allowed(&app.cfg.allowed_origins, origin, host.unwrap_or("")).ok()?;
    // As warp's query filter reads it into a map: the last value of a
    // repeated parameter counts.
    let (mut token, mut name, mut resume) = (None, None, None);
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "token" => token = Some(v),
            "name" => name = Some(v),
            "resume" => resume = Some(v),
            _ => {}
        }
    }
    let identity = app.auth.check(token.as_deref()).ok()?;
    let name = player_name(identity.as_ref(), name.as_deref()).ok()?;
    let admission = Admission::take(app, Some(remote.ip())).ok()?;
    tracing::debug!(?remote, "websocket upgrade");
    let accept = tungstenite::handshake::derive_accept_key(key);
    let mut answer = Vec::with_capacity(160);
    answer.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: ",
    );
    answer.extend_from_slice(accept.as_bytes());
    answer.extend_from_slice(b"\r\n\r\n");
    Some(FastUpgrade {
        app: app.clone(),
        answer,
        name,
        resume: resume_token(resume.as_deref()),
        identity,
        admission,
    })
}

/// A header's value as hyper's `HeaderValue::to_str` gives it; any other
/// byte in a header [`fast`] reads leaves the request to hyper.
fn text(v: &[u8]) -> Option<&str> {
    if v.iter().all(|&b| (b >= 32 && b != 127) || b == b'\t') {
        std::str::from_utf8(v).ok()
    } else {
        None
    }
}

/// A `/ws` upgrade [`fast`] accepted: the session to start on the socket.
pub(super) struct FastUpgrade {
    app: Arc<App>,
    answer: Vec<u8>,
    name: String,
    resume: Option<String>,
    identity: Option<crate::auth::Identity>,
    admission: Admission,
}

impl FastUpgrade {
    /// Spawns the session on `tcp`; `read` is what the client sent past the
    /// request head.
    pub(super) fn start(self, tcp: tokio::net::TcpStream, read: Vec<u8>) {
        let start = super::session::Start {
            app: self.app,
            upgrade: Handover::Taken {
                tcp,
                read,
                answer: self.answer,
            },
            name: self.name,
            resume: self.resume,
            identity: self.identity,
            admission: self.admission,
        };
        tokio::spawn(super::session::run(Box::new(start)));
    }
}

/// The 101 answer that hands the socket over.
fn switching_protocols(accept: String) -> warp::reply::Response {
    let reply = warp::reply::with_status(warp::reply(), StatusCode::SWITCHING_PROTOCOLS);
    let reply = warp::reply::with_header(reply, "upgrade", "websocket");
    let reply = warp::reply::with_header(reply, "connection", "upgrade");
    warp::reply::with_header(reply, "sec-websocket-accept", accept).into_response()
}

/// The checks of a WebSocket upgrade request (`what` names the route in
/// the refusal): the `Sec-WebSocket-Accept` value and the pending upgrade,
/// or the HTTP refusal.
// The refusal is the reply itself, built once per bad request: boxing it
// would buy nothing.
#[allow(clippy::result_large_err)]
pub(super) fn upgrade_parts(
    headers: &HeaderMap,
    upgrade: Option<OnUpgrade>,
    what: &str,
) -> Result<(String, OnUpgrade), warp::reply::Response> {
    let expects = format!("{what} expects a WebSocket upgrade");
    let key = headers
        .get("sec-websocket-key")
        .map(|k| k.as_bytes().to_vec());
    let (Some(key), Some(upgrade)) = (key, upgrade) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            &expects,
        ));
    };
    if !header_has(headers, "upgrade", "websocket") || !header_has(headers, "connection", "upgrade")
    {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            &expects,
        ));
    }
    if headers
        .get("sec-websocket-version")
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(warp::reply::with_header(
            refuse(
                StatusCode::UPGRADE_REQUIRED,
                ErrorCode::BadRequest,
                "only WebSocket version 13 is supported",
            ),
            "sec-websocket-version",
            "13",
        )
        .into_response());
    }
    Ok((tungstenite::handshake::derive_accept_key(&key), upgrade))
}

/// Answers 101 and runs `session` on the socket once hyper hands it over,
/// with the server's WebSocket limits.
pub(super) fn switch<F, Fut>(
    app: &Arc<App>,
    accept: String,
    upgrade: OnUpgrade,
    session: F,
) -> warp::reply::Response
where
    F: FnOnce(super::session::Ws) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let config = app.ws_config;
    let write_limit = std::time::Duration::from_millis(app.cfg.heartbeat_timeout_ms);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    super::socket::Socket::new(TokioIo::new(upgraded))
                        .with_write_limit(write_limit),
                    Role::Server,
                    Some(config),
                )
                .await;
                session(ws).await;
            }
            Err(e) => tracing::debug!("upgrade failed: {e}"),
        }
    });
    switching_protocols(accept)
}

/// The checks every WebSocket endpoint makes first (counted as refused
/// handshakes): the server is draining, the store is unreachable, or the
/// browser's origin is not allowed.
pub(super) fn first_checks(app: &App, headers: &HeaderMap) -> Option<warp::reply::Response> {
    let refused = |status, code, message: &str| {
        app.metrics.handshakes_refused.increment(1);
        Some(refuse(status, code, message))
    };
    if app.draining.is_cancelled() || app.shutdown.is_cancelled() {
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal,
            "the server is shutting down",
        );
    }
    if !app.backend.available() {
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal,
            "the store is unavailable; try again shortly",
        );
    }
    if let Err(msg) = check_origin(&app.cfg.allowed_origins, headers) {
        return refused(StatusCode::FORBIDDEN, ErrorCode::Forbidden, &msg);
    }
    None
}

/// The default policy without `--allowed-origins`: a browser's Origin must
/// name the host it connects to; a request without Origin (a native game,
/// a server) passes.
pub(super) fn check_origin(allowed: &[String], headers: &HeaderMap) -> Result<(), String> {
    let Some(origin) = headers.get("origin") else {
        return Ok(());
    };
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    origin_allowed(allowed, Some(origin.to_str().unwrap_or("")), host)
}

/// [`check_origin`] on the header values (`None`: no Origin header).
fn origin_allowed(allowed: &[String], origin: Option<&str>, host: &str) -> Result<(), String> {
    let Some(origin) = origin else {
        return Ok(());
    };
    let origin = origin.trim();
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return Ok(());
    }
    if allowed.is_empty() {
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        if !authority.is_empty() && authority.eq_ignore_ascii_case(host) {
            return Ok(());
        }
    }
    let shown: String = origin.chars().take(100).collect();
    Err(format!("origin {shown:?} is not allowed"))
}

/// A connection slot: a permit of `--max-connections` and a count against
/// the client address, both given back when dropped.
pub(super) struct Admission {
    app: Arc<App>,
    _permit: tokio::sync::OwnedSemaphorePermit,
    ip: Option<std::net::IpAddr>,
}

impl Admission {
    pub(super) fn take(
        app: &Arc<App>,
        ip: Option<std::net::IpAddr>,
    ) -> Result<Admission, (StatusCode, &'static str)> {
        let permit = app
            .conn_permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| (StatusCode::SERVICE_UNAVAILABLE, "the server is full"))?;
        if let Some(ip) = ip {
            let mut per_ip = app.per_ip.lock();
            let n = per_ip.entry(ip).or_insert(0);
            if *n >= app.cfg.max_connections_per_ip {
                if *n == 0 {
                    per_ip.remove(&ip);
                }
                return Err((
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many connections from this address",
                ));
            }
            *n += 1;
        }
        Ok(Admission {
            app: app.clone(),
            _permit: permit,
            ip,
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut per_ip = self.app.per_ip.lock();
            if let Some(n) = per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
    }
}
