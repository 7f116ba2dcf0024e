//! WebSocket sessions: the upgrade, the reader loop, the writer task, and
//! the dispatch of each request to the lobby.
//!
//! The upgrade is finished here rather than by warp's `ws()` filter, because
//! that filter fixes tungstenite's buffers at sizes that cost over 100 KiB per
//! idle socket; here every limit is set explicitly from the configuration.
//!
//! Each connection is two tasks: the reader parses frames and runs requests
//! (holding the lobby lock only inside `dispatch`), the writer drains a
//! bounded queue into the socket. Replies and events go through the same
//! queue, so a client sees them in the order the state changed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use warp::http::{HeaderMap, StatusCode};
use warp::{Filter, Reply};

use super::{close_frame, queue, App, Conn, Shared, StatsSub};
use crate::protocol::{
    self, decode_request, error_reply, ok_reply, ErrorCode, Event, Limits, ProtoError, Request,
    RoomStatus, Welcome, PROTOCOL_VERSION,
};
use crate::signaling;

/// Longest display name, in characters after trimming.
pub const MAX_NAME_CHARS: usize = 32;

/// How long the server waits for the client's answer to a close frame.
const CLOSE_LINGER: Duration = Duration::from_millis(1000);

pub(super) fn route(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path("ws")
        .and(warp::path::end())
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::ext::optional::<OnUpgrade>())
        .and(super::tls::remote())
        .map(move |headers, query, upgrade, remote| {
            handshake(app.clone(), headers, query, upgrade, remote)
        })
}

fn refuse(status: StatusCode, code: ErrorCode, message: &str) -> warp::reply::Response {
    let body = protocol::http_error_body(&ProtoError::new(code, message));
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

fn header_has(headers: &HeaderMap, name: &str, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
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
) -> warp::reply::Response {
    let refused = |status, code, message: &str| {
        app.metrics.handshakes_refused.increment(1);
        refuse(status, code, message)
    };
    if app.draining.is_cancelled() || app.shutdown.is_cancelled() {
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal,
            "the server is shutting down",
        );
    }
    if app.store.as_ref().is_some_and(|s| !s.available()) {
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal,
            "the store is unavailable; try again shortly",
        );
    }
    if let Err(msg) = check_origin(&app.cfg.allowed_origins, &headers) {
        return refused(StatusCode::FORBIDDEN, ErrorCode::Forbidden, &msg);
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
    let key = headers
        .get("sec-websocket-key")
        .map(|k| k.as_bytes().to_vec());
    let (Some(key), Some(upgrade)) = (key, upgrade) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "GET /ws expects a WebSocket upgrade",
        );
    };
    if !header_has(&headers, "upgrade", "websocket")
        || !header_has(&headers, "connection", "upgrade")
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "GET /ws expects a WebSocket upgrade",
        );
    }
    if headers
        .get("sec-websocket-version")
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return warp::reply::with_header(
            refuse(
                StatusCode::UPGRADE_REQUIRED,
                ErrorCode::BadRequest,
                "only WebSocket version 13 is supported",
            ),
            "sec-websocket-version",
            "13",
        )
        .into_response();
    }
    let token_name = identity.as_ref().and_then(|i| i.name.clone());
    let name = match query.get("name").map(|n| n.trim()) {
        _ if token_name.is_some() => token_name.unwrap_or_default(),
        None | Some("") => "player".to_string(),
        Some(n) if n.chars().count() > MAX_NAME_CHARS => {
            return refuse(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                "name must be 1 to 32 characters",
            )
        }
        Some(n) if n.chars().any(char::is_control) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                "name must not contain control characters",
            )
        }
        Some(n) => n.to_string(),
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
    let accept = tungstenite::handshake::derive_accept_key(&key);
    let resume = query
        .get("resume")
        .filter(|t| !t.is_empty() && t.len() <= 128)
        .cloned();
    tracing::debug!(?remote, "websocket upgrade");
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(app.ws_config),
                )
                .await;
                run(app, ws, name, resume, identity, admission).await;
            }
            Err(e) => tracing::debug!("upgrade failed: {e}"),
        }
    });
    let reply = warp::reply::with_status(warp::reply(), StatusCode::SWITCHING_PROTOCOLS);
    let reply = warp::reply::with_header(reply, "upgrade", "websocket");
    let reply = warp::reply::with_header(reply, "connection", "upgrade");
    warp::reply::with_header(reply, "sec-websocket-accept", accept).into_response()
}

/// The default policy without `--allowed-origins`: a browser's Origin must
/// name the host it connects to; a request without Origin (a native game,
/// a server) passes.
fn check_origin(allowed: &[String], headers: &HeaderMap) -> Result<(), String> {
    let Some(origin) = headers.get("origin") else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("").trim();
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
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
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
struct Admission {
    app: Arc<App>,
    _permit: tokio::sync::OwnedSemaphorePermit,
    ip: Option<std::net::IpAddr>,
}

impl Admission {
    fn take(
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

/// `p_` and 22 base62 characters of a random 128-bit number.
pub(super) fn new_player_id() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut n = u128::from_be_bytes(*uuid::Uuid::new_v4().as_bytes());
    let mut s = String::with_capacity(24);
    s.push_str("p_");
    for _ in 0..22 {
        s.push(ALPHABET[(n % 62) as usize] as char);
        n /= 62;
    }
    s
}

fn sdp_bucket() -> governor::DefaultDirectRateLimiter {
    let quota = governor::Quota::per_second(
        std::num::NonZeroU32::new(SDP_PER_SECOND).unwrap_or(std::num::NonZeroU32::MIN),
    )
    .allow_burst(std::num::NonZeroU32::new(SDP_BURST).unwrap_or(std::num::NonZeroU32::MIN));
    governor::RateLimiter::direct(quota)
}

/// What a session knows of itself.
struct Session {
    app: Arc<App>,
    player_id: String,
    conn_id: u64,
    tx: mpsc::Sender<Message>,
    kill: CancellationToken,
    /// Cluster mode: tells this connection apart from later ones of the
    /// same player in the store; JWT roles for `join_room`.
    epoch: u64,
    roles: Vec<String>,
    /// Offers and answers cost a full SDP parse (a few milliseconds for
    /// the largest accepted ones), so they have a bucket of their own on top
    /// of the message rate limit; real clients send a handful per peer.
    sdp_bucket: governor::DefaultDirectRateLimiter,
}

/// Offers and answers per second per connection, and their burst.
const SDP_PER_SECOND: u32 = 10;
const SDP_BURST: u32 = 20;

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

async fn run(
    app: Arc<App>,
    ws: Ws,
    name: String,
    resume: Option<String>,
    identity: Option<crate::auth::Identity>,
    admission: Admission,
) {
    // Room for a full queue of held events on resume on top of the normal
    // bound (the channel allocates its slots lazily, so this costs nothing
    // for an idle connection).
    let capacity = (app.cfg.max_queued_messages + app.cfg.resume_buffer + 1) as usize;
    let (tx, rx) = mpsc::channel(capacity);
    let kill = CancellationToken::new();
    let conn_id = app.next_conn_id();
    let (sink, mut stream) = ws.split();
    let writer = tokio::spawn(write_loop(sink, rx, kill.clone()));
    let session = match app.store.clone() {
        None => Session::register(
            app.clone(),
            conn_id,
            tx,
            kill.clone(),
            name,
            resume,
            identity,
        ),
        Some(store) => {
            match Session::register_cluster(
                &app,
                &store,
                conn_id,
                tx.clone(),
                kill.clone(),
                name,
                resume,
                identity,
            )
            .await
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("registration failed: {}", e.message);
                    let _ = tx.try_send(close_frame(
                        CloseCode::Again,
                        "the store is unavailable; try again shortly",
                    ));
                    drop(tx);
                    let _ = tokio::time::timeout(CLOSE_LINGER, writer).await;
                    kill.cancel();
                    return;
                }
            }
        }
    };

    let heartbeat = Duration::from_millis(app.cfg.heartbeat_interval_ms);
    let timeout = Duration::from_millis(app.cfg.heartbeat_timeout_ms);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let mut last_heard = Instant::now();
    let mut limiter = RateLimit::new(app.cfg.rate_limit, app.cfg.rate_burst);
    loop {
        tokio::select! {
            frame = stream.next() => {
                last_heard = Instant::now();
                let is_data = matches!(frame, Some(Ok(Message::Text(_) | Message::Binary(_))));
                if is_data {
                    match limiter.check() {
                        Limit::Pass => {}
                        Limit::Refuse => {
                            app.metrics.rate_limited.increment(1);
                            session.reply_error(&Value::Null, &ProtoError::new(
                                ErrorCode::RateLimited,
                                format!("more than {} messages per second", app.cfg.rate_limit),
                            ));
                            continue;
                        }
                        Limit::Close => {
                            app.metrics.rate_limited.increment(1);
                            session.close(CloseCode::Policy, "rate limit exceeded");
                            break;
                        }
                    }
                }
                match frame {
                    Some(Ok(Message::Text(text))) => session.on_text(&text).await,
                    Some(Ok(Message::Binary(_))) => session.reply_error(
                        &Value::Null,
                        &ProtoError::bad_request("binary frames are not part of protocol v1; send JSON text"),
                    ),
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Ok(_)) => {} // ping (answered by tungstenite), pong
                    Some(Err(tungstenite::Error::Capacity(e))) => {
                        tracing::debug!(player_id = %session.player_id, "frame too large: {e}");
                        session.close(CloseCode::Size, "message too large");
                        break;
                    }
                    Some(Err(e)) => {
                        tracing::debug!(player_id = %session.player_id, "read error: {e}");
                        break;
                    }
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > timeout {
                    tracing::debug!(player_id = %session.player_id, "heartbeat timeout");
                    break;
                }
                let _ = session.tx.try_send(Message::Ping(Default::default()));
            }
            _ = kill.cancelled() => break,
        }
    }
    // The slot is free as soon as the player counts as gone (the socket
    // only lingers to flush its close).
    drop(admission);
    session.unregister().await;
    // Let the writer flush what is queued (a close frame included) for a
    // moment, then drop the socket whatever the peer does.
    drop(session);
    let _ = tokio::time::timeout(CLOSE_LINGER, writer).await;
    kill.cancel();
}

/// The per-connection token bucket (governor), plus the rule for clients
/// that keep pushing: refused messages are answered with `rate_limited`;
/// once a client has been refused more than the burst size (at least 10)
/// without a calm second in between, it is closed with 1008.
struct RateLimit {
    bucket: governor::DefaultDirectRateLimiter,
    strikes: u32,
    max_strikes: u32,
    last_strike: Instant,
}

enum Limit {
    Pass,
    Refuse,
    Close,
}

impl RateLimit {
    fn new(per_second: u32, burst: u32) -> Self {
        use std::num::NonZeroU32;
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        RateLimit {
            bucket: governor::RateLimiter::direct(
                governor::Quota::per_second(rate).allow_burst(burst),
            ),
            strikes: 0,
            max_strikes: burst.get().max(10),
            last_strike: Instant::now(),
        }
    }

    fn check(&mut self) -> Limit {
        if self.bucket.check().is_ok() {
            if self.last_strike.elapsed() > Duration::from_secs(1) {
                self.strikes = 0;
            }
            return Limit::Pass;
        }
        self.strikes += 1;
        self.last_strike = Instant::now();
        if self.strikes > self.max_strikes {
            Limit::Close
        } else {
            Limit::Refuse
        }
    }
}

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<Ws, Message>,
    mut rx: mpsc::Receiver<Message>,
    kill: CancellationToken,
) {
    loop {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = kill.cancelled() => None,
        };
        let Some(msg) = msg else { break };
        let mut closing = matches!(msg, Message::Close(_));
        if sink.feed(msg).await.is_err() {
            return;
        }
        // Batch what is already queued into one flush.
        while !closing {
            let Ok(m) = rx.try_recv() else { break };
            closing = matches!(m, Message::Close(_));
            if sink.feed(m).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
        if closing {
            // Give the peer a moment to answer the close, then end the
            // session whatever it does.
            let _ = tokio::time::timeout(CLOSE_LINGER, kill.cancelled()).await;
            kill.cancel();
            return;
        }
    }
    let _ = sink.close().await;
}

impl Session {
    /// Sets up the connection under the lock: a resumed or new identity,
    /// `welcome` first in the queue, then the events kept while away; the
    /// room's other members learn of the return last.
    fn register(
        app: Arc<App>,
        conn_id: u64,
        tx: mpsc::Sender<Message>,
        kill: CancellationToken,
        name: String,
        resume: Option<String>,
        identity: Option<crate::auth::Identity>,
    ) -> Session {
        let cfg = &app.cfg;
        let mut guard = app.shared.lock();
        let shared = &mut *guard;
        let redeemed = resume.and_then(|t| shared.lobby.redeem_token(&t));
        let roles = identity
            .as_ref()
            .map(|i| i.roles.clone())
            .unwrap_or_default();
        let (player_id, resumed) = match identity {
            // One identity, one seat: a token's `sub` is the player id, and
            // a known one takes its seat back like a resume.
            Some(id) => {
                let known = shared.lobby.player(&id.sub).is_some();
                (id.sub, known)
            }
            None => match redeemed.filter(|pid| shared.lobby.player(pid).is_some()) {
                Some(pid) => (pid, true),
                None => (new_player_id(), false),
            },
        };
        // One identity, one connection: an older socket of the same player
        // (a drop the server has not noticed yet) is closed as replaced.
        shared.close_conn(&player_id, Shared::replaced());
        let mut out = Vec::new();
        let room = shared.lobby.connect(&player_id, &name, roles, &mut out);
        let name = shared
            .lobby
            .player(&player_id)
            .map(|p| p.name.clone())
            .unwrap_or(name);
        let token = shared.lobby.issue_token(&player_id).unwrap_or_default();
        let pending = shared.pending.remove(&player_id).unwrap_or_default();
        let now_unix = chrono::Utc::now().timestamp();
        let welcome = Event::Welcome(Box::new(Welcome {
            protocol: PROTOCOL_VERSION,
            player_id: player_id.clone(),
            name,
            resume_token: token,
            resumed,
            room,
            heartbeat_interval_ms: cfg.heartbeat_interval_ms,
            heartbeat_timeout_ms: cfg.heartbeat_timeout_ms,
            ice_servers: signaling::ice_servers(
                &cfg.stun_urls,
                &cfg.turn_urls,
                cfg.turn_secret.as_deref(),
                cfg.turn_ttl_s,
                &player_id,
                now_unix,
            ),
            limits: Limits {
                max_message_bytes: cfg.max_message_bytes,
                max_players: cfg.max_players,
            },
            server_time: protocol::ts(&chrono::Utc::now()),
            missed: pending.dropped,
        }));
        let _ = tx.try_send(Message::Text(welcome.to_json().into()));
        for text in pending.queue {
            if tx.try_send(Message::Text(text)).is_err() {
                break; // more than the queue holds: the client is told by `missed`
            }
        }
        shared.conns.insert(
            player_id.clone(),
            Conn {
                id: conn_id,
                tx: tx.clone(),
                kill: kill.clone(),
                stats: None,
            },
        );
        shared.deliver(out);
        drop(guard);
        Session {
            app,
            player_id,
            conn_id,
            tx,
            kill,
            epoch: 0,
            roles: Vec::new(),
            sdp_bucket: sdp_bucket(),
        }
    }

    /// Cluster mode: registers through the store; `welcome` and the held
    /// events are queued when the registration's notice arrives.
    #[allow(clippy::too_many_arguments)]
    async fn register_cluster(
        app: &Arc<App>,
        store: &crate::cluster::Store,
        conn_id: u64,
        tx: mpsc::Sender<Message>,
        kill: CancellationToken,
        name: String,
        resume: Option<String>,
        identity: Option<crate::auth::Identity>,
    ) -> Result<Session, ProtoError> {
        let roles = identity
            .as_ref()
            .map(|i| i.roles.clone())
            .unwrap_or_default();
        let (player_id, epoch) = super::cluster::register(
            app,
            store,
            conn_id,
            (tx.clone(), kill.clone()),
            &name,
            resume.as_deref(),
            identity.as_ref().map(|i| i.sub.as_str()),
        )
        .await?;
        Ok(Session {
            app: app.clone(),
            player_id,
            conn_id,
            tx,
            kill,
            epoch,
            roles,
            sdp_bucket: sdp_bucket(),
        })
    }

    /// The connection is gone: the seat is held (or the player forgotten).
    async fn unregister(&self) {
        if let Some(store) = &self.app.store {
            {
                let mut shared = self.app.shared.lock();
                if shared.conns.get(&self.player_id).map(|c| c.id) == Some(self.conn_id) {
                    shared.conns.remove(&self.player_id);
                    shared.room_subs.remove(&self.player_id);
                    shared.departed.insert(self.player_id.clone(), Vec::new());
                }
            }
            // The store ignores this when a newer connection took over
            // (its epoch moved on).
            super::cluster::unregister(&self.app, store, &self.player_id, self.epoch).await;
            return;
        }
        let mut shared = self.app.shared.lock();
        if shared.conns.get(&self.player_id).map(|c| c.id) != Some(self.conn_id) {
            return; // taken over by a newer connection
        }
        shared.conns.remove(&self.player_id);
        shared.subscribe_rooms(&self.player_id, None);
        let mut out = Vec::new();
        shared
            .lobby
            .disconnect(&self.player_id, Instant::now(), &mut out);
        shared.deliver(out);
    }

    /// Queues a close frame; the writer sends it and stops.
    fn close(&self, code: CloseCode, reason: &'static str) {
        let _ = self.tx.try_send(close_frame(code, reason));
    }

    /// Queues a reply on this connection (under the lock, so it keeps its
    /// place among the events).
    fn push(&self, _shared: &mut Shared, text: String) {
        queue(&self.tx, &self.kill, text.into(), &self.app.metrics);
    }

    fn reply_error(&self, rid: &Value, err: &ProtoError) {
        self.app.metrics.error(err.code);
        let mut shared = self.app.shared.lock();
        self.push(&mut shared, error_reply(rid, err));
    }

    async fn on_text(&self, text: &str) {
        if text.len() as u64 > self.app.cfg.max_message_bytes {
            let err = ProtoError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "message is {} bytes, the limit is {}",
                    text.len(),
                    self.app.cfg.max_message_bytes
                ),
            );
            return self.reply_error(&Value::Null, &err);
        }
        let received = Instant::now();
        let decoded = decode_request(text);
        let request = match decoded.request {
            Ok(r) => r,
            Err(e) => {
                self.app.metrics.message_in("invalid");
                return self.reply_error(&decoded.rid, &e);
            }
        };
        self.app.metrics.message_in(request.kind());
        // Checks that need no lock run before taking it.
        if matches!(request, Request::Offer(_) | Request::Answer(_))
            && self.sdp_bucket.check().is_err()
        {
            self.app.metrics.rate_limited.increment(1);
            let e = ProtoError::new(
                ErrorCode::RateLimited,
                format!("more than {SDP_PER_SECOND} offers and answers per second"),
            );
            return self.reply_error(&decoded.rid, &e);
        }
        if let Err(e) = precheck(&self.app, &request) {
            return self.reply_error(&decoded.rid, &e);
        }
        if let Some(store) = &self.app.store {
            let is_signal = matches!(
                request,
                Request::Offer(_) | Request::Answer(_) | Request::IceCandidate(_)
            );
            let r = super::cluster::dispatch(
                &self.app,
                store,
                &self.player_id,
                &self.roles,
                &decoded.rid,
                request,
            )
            .await;
            match r {
                Ok(None) => {}
                Ok(Some(fields)) => {
                    if is_signal {
                        self.app
                            .metrics
                            .relay_seconds
                            .record(received.elapsed().as_secs_f64());
                    }
                    queue(
                        &self.tx,
                        &self.kill,
                        ok_reply(&decoded.rid, fields).into(),
                        &self.app.metrics,
                    );
                }
                Err(e) => self.reply_error(&decoded.rid, &e),
            }
            return;
        }
        let mut shared = self.app.shared.lock();
        let mut out = Vec::new();
        let is_signal = matches!(
            request,
            Request::Offer(_) | Request::Answer(_) | Request::IceCandidate(_)
        );
        let reply = self.dispatch(&mut shared, request, &mut out);
        let text = match reply {
            Ok(fields) => {
                if is_signal {
                    self.app
                        .metrics
                        .relay_seconds
                        .record(received.elapsed().as_secs_f64());
                }
                ok_reply(&decoded.rid, fields)
            }
            Err(e) => {
                self.app.metrics.error(e.code);
                error_reply(&decoded.rid, &e)
            }
        };
        self.push(&mut shared, text);
        shared.deliver(out);
    }

    /// Runs one request against the lobby; the reply's fields or an error.
    fn dispatch(
        &self,
        shared: &mut Shared,
        request: Request,
        out: &mut Vec<crate::lobby::Delivery>,
    ) -> Result<Value, ProtoError> {
        let me = self.player_id.as_str();
        let now = Instant::now();
        let lobby = &mut shared.lobby;
        match request {
            Request::FindMatch(req) => {
                let m = lobby.find_match(me, req, now, out)?;
                Ok(json!({"room": m.room, "created": m.created}))
            }
            Request::CreateRoom(req) => {
                let room = lobby.create_room(me, req, now, out)?;
                Ok(json!({ "room": room }))
            }
            Request::JoinRoom(req) => {
                let room = lobby.join_room(me, req.room_id.as_deref(), req.code.as_deref(), out)?;
                Ok(json!({ "room": room }))
            }
            Request::LeaveRoom => {
                lobby.leave_room(me, out)?;
                Ok(json!({}))
            }
            Request::ListRooms(req) => {
                let status = req.status.unwrap_or(RoomStatus::Waiting);
                if status == RoomStatus::Finished {
                    return Err(ProtoError::bad_request("status must be waiting or active"));
                }
                let limit = req.limit.unwrap_or(crate::lobby::DEFAULT_LIST_LIMIT);
                let rooms = lobby.list_rooms(status, req.mode.as_deref(), limit);
                Ok(json!({ "rooms": rooms }))
            }
            Request::StartGame => {
                let room = lobby.start_game(me, out)?;
                Ok(json!({ "room": room }))
            }
            Request::FinishGame(req) => {
                let room = lobby.finish_game(me, req.result, now, out)?;
                Ok(json!({ "room": room }))
            }
            Request::SetRoomData(req) => {
                let room = lobby.set_room_data(me, req.data, out)?;
                Ok(json!({ "room": room }))
            }
            Request::SetPlayerData(req) => {
                let room = lobby.set_player_data(me, req.data, out)?;
                Ok(json!({ "room": room }))
            }
            Request::Kick(req) => {
                lobby.kick(me, &req.player_id, out)?;
                Ok(json!({}))
            }
            Request::Chat(req) => {
                lobby.chat(me, &req.text, out)?;
                Ok(json!({}))
            }
            Request::Ping => Ok(json!({"server_time": protocol::ts(&chrono::Utc::now())})),
            Request::SubscribeStats(req) => {
                let ms = req.interval_ms.unwrap_or(1000);
                if !(250..=60_000).contains(&ms) {
                    return Err(ProtoError::bad_request("interval_ms must be 250 to 60000"));
                }
                let stats = self.app.stats_locked(shared);
                if let Some(conn) = shared.conns.get_mut(me) {
                    let interval = Duration::from_millis(ms);
                    conn.stats = Some(StatsSub {
                        interval,
                        next: now + interval,
                    });
                }
                Ok(json!({ "stats": stats }))
            }
            Request::UnsubscribeStats => {
                if let Some(conn) = shared.conns.get_mut(me) {
                    conn.stats = None;
                }
                Ok(json!({}))
            }
            Request::Offer(sig) => {
                let from = me.to_string();
                relay_signal(shared, me, &sig.to, Event::Offer { from, sdp: sig.sdp })
            }
            Request::Answer(sig) => {
                let from = me.to_string();
                relay_signal(shared, me, &sig.to, Event::Answer { from, sdp: sig.sdp })
            }
            Request::IceCandidate(sig) => {
                let from = me.to_string();
                let event = Event::IceCandidate {
                    from,
                    candidate: sig.candidate,
                };
                relay_signal(shared, me, &sig.to, event)
            }
            Request::SubscribeRooms(req) => {
                let rooms = shared.lobby.list_rooms(
                    RoomStatus::Waiting,
                    req.mode.as_deref(),
                    crate::lobby::MAX_LIST_LIMIT,
                );
                shared.subscribe_rooms(me, Some(req.mode));
                Ok(json!({ "rooms": rooms }))
            }
            Request::UnsubscribeRooms => {
                shared.subscribe_rooms(me, None);
                Ok(json!({}))
            }
        }
    }
}

/// Validation of signals that needs no lobby state: SDP and candidates are
/// parsed before the lock is taken.
fn precheck(app: &App, request: &Request) -> Result<(), ProtoError> {
    match request {
        Request::Offer(sig) | Request::Answer(sig) => {
            signaling::validate_sdp(&sig.sdp, app.cfg.max_sdp_bytes as usize)
                .map_err(|e| ProtoError::new(ErrorCode::InvalidSdp, e.to_string()))
        }
        Request::IceCandidate(sig) => {
            let invalid = |e: String| ProtoError::new(ErrorCode::InvalidCandidate, e);
            signaling::validate_candidate(sig.candidate.line())
                .map_err(|e| invalid(e.to_string()))?;
            if let protocol::CandidateField::Init(c) = &sig.candidate {
                if let Some(mid) = &c.sdp_mid {
                    signaling::validate_sdp_mid(mid).map_err(|e| invalid(e.to_string()))?;
                }
                if c.username_fragment
                    .as_ref()
                    .is_some_and(|u| u.len() > 256 || u.chars().any(char::is_control))
                {
                    return Err(invalid(
                        "usernameFragment must be at most 256 characters without control characters"
                            .into(),
                    ));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Checks that `to` shares a room with `me`, then relays the signal; the
/// `ok` reply's (empty) fields.
fn relay_signal(
    shared: &mut Shared,
    me: &str,
    to: &str,
    event: Event,
) -> Result<Value, ProtoError> {
    shared.lobby.check_signal(me, to)?;
    relay(shared, to, event);
    Ok(json!({}))
}

/// Sends a signal to its target, or holds it for a held seat. Only signals
/// handed to a live connection count as relayed.
fn relay(shared: &mut Shared, to: &str, event: Event) {
    let text = Utf8Bytes::from(event.to_json());
    let live = shared.conns.contains_key(to);
    if shared.send_to(to, &text) && live {
        shared.lobby.count_signal();
        shared.metrics.signals_relayed.increment(1);
    }
}

/// Shutdown: every client gets `server_shutdown`, then close 1001.
pub(super) async fn close_all(app: &App, timeout: Duration) {
    let conns: Vec<(mpsc::Sender<Message>, CancellationToken)> = {
        let shared = app.shared.lock();
        shared
            .conns
            .values()
            .map(|c| (c.tx.clone(), c.kill.clone()))
            .collect()
    };
    let notice = Utf8Bytes::from(
        Event::ServerShutdown {
            reconnect_after_ms: 1000,
        }
        .to_json(),
    );
    for (tx, _) in &conns {
        // Behind whatever replies are already queued: in-flight requests
        // get their answer first.
        let _ = tx.try_send(Message::Text(notice.clone()));
        let _ = tx.try_send(close_frame(CloseCode::Away, "server shutting down"));
    }
    // Wait for the clients to answer the close, then cut whatever is left.
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !app.shared.lock().conns.is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (_, kill) in conns {
        kill.cancel();
    }
}
