//! One PeerJS WebSocket: the handshake's checks (answered as peerjs-server
//! does, with an `ERROR` message on the opened socket, so the PeerJS client
//! reports them), then the reader loop relaying messages by `dst`.
//!
//! With `--auth`, `token` must be a JWT (as the `token` of `/ws`); without
//! it, `token` is PeerJS's own random string that lets a client reconnect
//! to its id. `--auth optional` tells the two apart by shape: a token
//! with three dot-separated parts is checked as a JWT.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::outbox::{outbox, Outbox};
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::OnUpgrade;
use serde_json::Value;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use warp::http::{HeaderMap, StatusCode};
use warp::{Filter, Reply};

use super::super::incoming::{classify, Incoming};
use super::super::ratelimit::{sdp_bucket, RateLimit};
use super::super::session::Ws;
use super::super::upgrade::{check_origin, switch, upgrade_parts, Admission};
use super::super::writer::{write_loop, CLOSE_LINGER};
use super::super::App;
use super::{relayed, server_message, valid_id, Opened, ALIVE_TIMEOUT, MAX_ID_LEN};
use crate::auth::AuthMode;
use crate::backend::conns::{close_frame, queue};

/// Peers a connection talked to, told `LEAVE` when it goes.
const MAX_TALKED: usize = 256;
/// Longest `token` (a JWT with `--auth`).
const MAX_TOKEN_LEN: usize = 8192;
/// How often a live connection renews its id's claim in cluster mode.
const REFRESH_EVERY: Duration = Duration::from_secs(10);

pub(super) fn route(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path!("peerjs" / "peerjs")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::ext::optional::<OnUpgrade>())
        .and(super::super::listen::remote())
        .map(move |headers, query, upgrade, remote| {
            handshake(app.clone(), headers, query, upgrade, remote)
        })
}

/// Who may open: the peer's id and token and its connection slot.
struct Admitted {
    id: String,
    token: String,
    admission: Admission,
}

fn handshake(
    app: Arc<App>,
    headers: HeaderMap,
    query: HashMap<String, String>,
    upgrade: Option<OnUpgrade>,
    remote: Option<SocketAddr>,
) -> warp::reply::Response {
    if app.draining.is_cancelled() || app.shutdown.is_cancelled() || !app.backend.available() {
        app.metrics.handshakes_refused.increment(1);
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if let Err(msg) = check_origin(&app.cfg.allowed_origins, &headers) {
        app.metrics.handshakes_refused.increment(1);
        return warp::reply::with_status(msg, StatusCode::FORBIDDEN).into_response();
    }
    let (accept, upgrade) = match upgrade_parts(&headers, upgrade, "GET /peerjs/peerjs") {
        Ok(parts) => parts,
        Err(refusal) => return refusal,
    };
    let verdict = admit(&app, &query, remote);
    if verdict.is_err() {
        app.metrics.handshakes_refused.increment(1);
    }
    let task_app = app.clone();
    switch(&app, accept, upgrade, move |ws| async move {
        match verdict {
            Ok(admitted) => run(task_app, ws, admitted).await,
            Err(msg) => refuse(ws, "ERROR", msg).await,
        }
    })
}

/// The checks peerjs-server makes, plus ours (token, connection caps); the
/// `ERROR` text otherwise.
fn admit(
    app: &Arc<App>,
    query: &HashMap<String, String>,
    remote: Option<SocketAddr>,
) -> Result<Admitted, &'static str> {
    let get = |k: &str| query.get(k).filter(|v| !v.is_empty());
    let (Some(id), Some(token), Some(key)) = (get("id"), get("token"), get("key")) else {
        return Err("No id, token, or key supplied to websocket server");
    };
    if *key != app.cfg.peerjs_key {
        return Err("Invalid key provided");
    }
    if !valid_id(id) {
        return Err("Invalid id provided");
    }
    if token.len() > MAX_TOKEN_LEN || token.chars().any(char::is_control) {
        return Err("Invalid token provided");
    }
    let jwt = match app.auth.mode() {
        AuthMode::Off => false,
        AuthMode::Required => true,
        AuthMode::Optional => token.split('.').count() == 3,
    };
    if jwt {
        if let Err(e) = app.auth.check(Some(token)) {
            app.metrics.auth_failures.increment(1);
            tracing::debug!(?remote, "peerjs token refused: {e}");
            return Err("Invalid token provided");
        }
    }
    let admission = Admission::take(app, remote.map(|r| r.ip())).map_err(|(status, msg)| {
        if status == StatusCode::TOO_MANY_REQUESTS {
            msg
        } else {
            "Server has reached its concurrent user limit"
        }
    })?;
    Ok(Admitted {
        id: id.clone(),
        token: token.clone(),
        admission,
    })
}

/// Sends one server message and closes the socket.
async fn refuse(mut ws: Ws, kind: &str, msg: &str) {
    let text = server_message(kind, Some(msg));
    let bye = async {
        ws.send(Message::Text(text.into())).await?;
        ws.close(None).await?;
        // Read until the client answers the close.
        while let Some(Ok(_)) = ws.next().await {}
        Ok::<_, tungstenite::Error>(())
    };
    let _ = tokio::time::timeout(CLOSE_LINGER, bye).await;
}

struct Conn {
    app: Arc<App>,
    id: String,
    tx: Outbox,
    kill: CancellationToken,
    talked: HashSet<String>,
    sdp_bucket: governor::DefaultDirectRateLimiter,
}

/// One PeerJS connection: opened (or refused with `ID-TAKEN`/`ERROR`),
/// served until it ends, then closed (its peers told `LEAVE`).
async fn run(app: Arc<App>, ws: Ws, who: Admitted) {
    let capacity = app.cfg.max_queued_messages as usize + 1;
    let (tx, rx) = outbox(capacity);
    let kill = CancellationToken::new();
    let conn_id = app.next_conn_id();
    let (sink, mut stream) = ws.split();
    let writer = tokio::spawn(write_loop(sink, rx, kill.clone()));
    let opened = app
        .peerjs
        .open(&app, &who.id, &who.token, conn_id, tx.clone(), kill.clone())
        .await;
    let refusal = match opened {
        Opened::Open => None,
        Opened::Taken => Some(server_message("ID-TAKEN", Some("ID is taken"))),
        Opened::Unavailable => Some(server_message(
            "ERROR",
            Some("the store is unavailable; try again shortly"),
        )),
    };
    if let Some(text) = refusal {
        let _ = tx.try_send(Message::Text(text.into()));
        let _ = tx.try_send(close_frame(CloseCode::Normal, ""));
        drop(tx);
        let _ = tokio::time::timeout(CLOSE_LINGER, writer).await;
        kill.cancel();
        return;
    }
    app.metrics.peerjs.connections.increment(1.0);
    let _ = tx.try_send(Message::Text(server_message("OPEN", None).into()));
    let mut conn = Conn {
        app: app.clone(),
        id: who.id.clone(),
        tx,
        kill: kill.clone(),
        talked: HashSet::new(),
        sdp_bucket: sdp_bucket(),
    };
    for (src, text) in app.peerjs.take_held(&who.id) {
        conn.remember(&src);
        queue(&conn.tx, &conn.kill, text, &app.metrics);
        app.peerjs.count_signal(&app);
    }
    conn.serve(&mut stream, &who.token, conn_id).await;
    drop(who.admission);
    app.metrics.peerjs.connections.decrement(1.0);
    conn.close(&who.token, conn_id).await;
    let _ = tokio::time::timeout(CLOSE_LINGER, writer).await;
    kill.cancel();
}

impl Conn {
    /// Reads frames until the connection ends: the peer closes or goes
    /// quiet, the server drains, or the connection is killed; refreshes the
    /// peer's claim on its id meanwhile.
    async fn serve(&mut self, stream: &mut SplitStream<Ws>, token: &str, conn_id: u64) {
        let app = self.app.clone();
        let mut last_heard = Instant::now();
        let mut last_refresh = Instant::now();
        let mut check = tokio::time::interval(Duration::from_secs(1));
        let mut limiter = RateLimit::new(app.cfg.rate_limit, app.cfg.rate_burst);
        loop {
            tokio::select! {
                frame = stream.next() => {
                    last_heard = Instant::now();
                    match classify(frame, &mut limiter, &app.metrics, &self.id) {
                        Incoming::Text(text) => {
                            if !self.on_text(&text).await {
                                return;
                            }
                        }
                        Incoming::RateLimited(_) => self.error("rate limited: too many messages per second"),
                        Incoming::Binary => self.error("binary frames are not part of the PeerJS protocol"),
                        Incoming::Close(code, reason) => {
                            let _ = self.tx.try_send(close_frame(code, reason));
                            return;
                        }
                        Incoming::End => return,
                        Incoming::Control => {}
                    }
                }
                _ = check.tick() => {
                    if last_heard.elapsed() > ALIVE_TIMEOUT {
                        return;
                    }
                    if last_refresh.elapsed() > REFRESH_EVERY {
                        last_refresh = Instant::now();
                        app.peerjs.refresh(&app, &self.id, token, conn_id).await;
                    }
                }
                _ = app.draining.cancelled() => {
                    let _ = self.tx.try_send(close_frame(CloseCode::Away, "server shutting down"));
                    return;
                }
                _ = self.kill.cancelled() => return,
            }
        }
    }

    /// Gives the id up and tells the peers it talked to that it is gone
    /// (peerjs-server leaves this to the client, which cannot say it when
    /// its page just closed); not when the same client reconnected and took
    /// its id over.
    async fn close(mut self, token: &str, conn_id: u64) {
        let app = self.app.clone();
        let gone = app.peerjs.close(&app, &self.id, token, conn_id).await;
        let talked = if gone {
            std::mem::take(&mut self.talked)
        } else {
            HashSet::new()
        };
        for other in talked {
            let text = Utf8Bytes::from(relayed("LEAVE", &self.id, &other, None));
            app.peerjs.send(&app, &other, &text).await;
        }
    }

    fn error(&self, msg: &str) {
        let text = server_message("ERROR", Some(msg));
        queue(&self.tx, &self.kill, text.into(), &self.app.metrics);
    }

    fn remember(&mut self, peer: &str) {
        if self.talked.len() < MAX_TALKED && peer != self.id {
            self.talked.insert(peer.to_string());
        }
    }

    /// One client message; false when the connection ends (`LEAVE`
    /// without `dst`).
    async fn on_text(&mut self, text: &str) -> bool {
        let app = self.app.clone();
        app.metrics.peerjs.messages_in.increment(1);
        if text.len() as u64 > app.cfg.max_message_bytes {
            self.error("message too large");
            return true;
        }
        let Ok(Value::Object(msg)) = serde_json::from_str::<Value>(text) else {
            self.error("Invalid message: not a JSON object");
            return true;
        };
        let Some(kind) = msg.get("type").and_then(Value::as_str) else {
            self.error("Invalid message: no type");
            return true;
        };
        if kind == "HEARTBEAT" {
            return true;
        }
        if !matches!(kind, "OFFER" | "ANSWER" | "CANDIDATE" | "LEAVE" | "EXPIRE") {
            self.error("Invalid message: unknown type");
            return true;
        }
        let dst = msg.get("dst").and_then(Value::as_str);
        let Some(dst) = dst else {
            // peerjs-server: a `LEAVE` without `dst` is the peer leaving.
            if kind == "LEAVE" {
                return false;
            }
            self.error("Invalid message: no dst");
            return true;
        };
        if dst.len() > MAX_ID_LEN || !valid_id(dst) {
            self.error("Invalid message: bad dst");
            return true;
        }
        let payload = msg.get("payload");
        if let Err(e) = self.check_payload(kind, payload) {
            self.error(&e);
            return true;
        }
        let received = Instant::now();
        self.remember(dst);
        let out = Utf8Bytes::from(relayed(kind, &self.id, dst, payload));
        if app.peerjs.send(&app, dst, &out).await {
            app.peerjs.count_signal(&app);
            app.metrics
                .relay_seconds
                .record(received.elapsed().as_secs_f64());
        } else if matches!(kind, "LEAVE" | "EXPIRE") {
            // For nobody: dropped, as peerjs-server does.
        } else if !app.peerjs.hold(dst, &self.id, out) {
            let expire = relayed("EXPIRE", dst, &self.id, None);
            queue(&self.tx, &self.kill, expire.into(), &app.metrics);
        }
        true
    }

    /// The checks `/ws` makes of the SDP of an offer or answer and of a
    /// candidate, where the payload carries them.
    fn check_payload(&self, kind: &str, payload: Option<&Value>) -> Result<(), String> {
        let cfg = &self.app.cfg;
        if matches!(kind, "OFFER" | "ANSWER") {
            if self.sdp_bucket.check().is_err() {
                self.app.metrics.rate_limited.increment(1);
                return Err("rate limited: too many offers and answers per second".into());
            }
            if let Some(sdp) = payload.and_then(|p| p.pointer("/sdp/sdp")) {
                let sdp = sdp.as_str().ok_or("sdp must be a string")?;
                crate::signaling::validate_sdp(sdp, cfg.max_sdp_bytes as usize)
                    .map_err(|e| format!("invalid SDP: {e}"))?;
            }
        }
        if kind == "CANDIDATE" {
            if let Some(c) = payload.and_then(|p| p.get("candidate")) {
                if let Some(line) = c.get("candidate") {
                    let line = line.as_str().ok_or("candidate must be a string")?;
                    crate::signaling::validate_candidate(line)
                        .map_err(|e| format!("invalid candidate: {e}"))?;
                }
                if let Some(mid) = c.get("sdpMid").and_then(Value::as_str) {
                    crate::signaling::validate_sdp_mid(mid)
                        .map_err(|e| format!("invalid candidate: {e}"))?;
                }
            }
        }
        Ok(())
    }
}
