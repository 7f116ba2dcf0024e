//! The PeerJS server protocol under `/peerjs`, so the `peerjs` browser
//! client (1.5.x) configured with `{host, port, path: '/peerjs'}` works
//! against Rendezvous unchanged, and gets its connection caps, rate limit,
//! signal checks, metrics and cluster mode.
//!
//! The protocol is peerjs-server's: `GET /peerjs/{key}/id` hands out a
//! fresh id, the WebSocket `/peerjs/peerjs?key=&id=&token=` opens a peer,
//! and `OFFER`/`ANSWER`/`CANDIDATE`/`LEAVE`/`EXPIRE` messages are relayed
//! by `dst` with `src` stamped. A message for an id nobody holds yet is
//! kept for [`EXPIRE_AFTER`]; then its sender gets `EXPIRE`. PeerJS peers
//! are not lobby players: this registry of ids lives beside the lobby, and
//! in cluster mode [`crate::backend::redis::store::peerjs`] tells which node holds an id.

mod session;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::outbox::Outbox;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;
use warp::http::StatusCode;
use warp::{Filter, Reply};

use super::App;
use crate::backend::conns::{queue, replaced};
use crate::backend::Backend;
use crate::metrics::Metrics;

/// How long a message for an absent peer is kept before its sender gets
/// `EXPIRE` (peerjs-server's `expire_timeout`).
pub(crate) const EXPIRE_AFTER: Duration = Duration::from_millis(5000);
/// A peer that sent nothing (its client sends `HEARTBEAT` every 5 s) for
/// this long is closed (peerjs-server's `alive_timeout`).
pub(crate) const ALIVE_TIMEOUT: Duration = Duration::from_secs(90);
/// Held messages per absent peer, and absent peers with held messages:
/// beyond, the sender gets `EXPIRE` at once.
const MAX_HELD_PER_PEER: usize = 64;
const MAX_HELD_PEERS: usize = 10_000;
/// Longest peer id and token accepted.
const MAX_ID_LEN: usize = 64;
/// How often held messages are looked at.
const SWEEP: Duration = Duration::from_millis(250);

/// A peer id as the PeerJS client itself accepts them: letters and digits,
/// with single spaces, `-` or `_` between them.
pub(crate) fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_ID_LEN
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b' ' | b'-' | b'_'))
        && !b
            .windows(2)
            .any(|w| !w[0].is_ascii_alphanumeric() && !w[1].is_ascii_alphanumeric())
}

/// A server message without `src`/`dst` (`OPEN`, `ERROR`, `ID-TAKEN`).
pub(crate) fn server_message(kind: &str, msg: Option<&str>) -> String {
    match msg {
        Some(m) => json!({"type": kind, "payload": {"msg": m}}).to_string(),
        None => json!({ "type": kind }).to_string(),
    }
}

/// A relayed message as the target receives it.
pub(crate) fn relayed(kind: &str, src: &str, dst: &str, payload: Option<&Value>) -> String {
    let mut m = json!({"type": kind, "src": src, "dst": dst});
    if let Some(p) = payload {
        m["payload"] = p.clone();
    }
    m.to_string()
}

struct Peer {
    conn_id: u64,
    token: String,
    tx: Outbox,
    kill: CancellationToken,
}

/// Messages kept for an id nobody holds (yet).
struct Held {
    since: Instant,
    /// (sender id, message text)
    msgs: Vec<(String, Utf8Bytes)>,
}

/// The PeerJS peers of this server and the messages held for absent ones.
pub(crate) struct PeerJs {
    peers: Mutex<HashMap<String, Peer>>,
    held: Mutex<HashMap<String, Held>>,
    /// Relayed messages (in memory; in cluster mode they count in Redis).
    signals: AtomicU64,
    metrics: Arc<Metrics>,
}

impl PeerJs {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        PeerJs {
            peers: Mutex::default(),
            held: Mutex::default(),
            signals: AtomicU64::new(0),
            metrics,
        }
    }
}

/// Cluster mode: PeerJS messages that another node relayed to a peer here.
impl crate::backend::DropInNotices for PeerJs {
    fn peerjs(&self, to: &str, text: Option<String>, close: Option<u64>) {
        self.on_notice(to, text, close)
    }
}

/// What opening a peer found.
pub(crate) enum Opened {
    Open,
    Taken,
    Unavailable,
}

impl PeerJs {
    /// PeerJS connections of this server.
    pub(crate) fn connections(&self) -> u64 {
        self.peers.lock().len() as u64
    }

    /// PeerJS connections of the whole cluster (of this server in memory).
    pub(crate) async fn connections_everywhere(&self, app: &App) -> u64 {
        match &*app.backend {
            Backend::Redis(c) => c
                .store
                .peerjs_count_all()
                .await
                .unwrap_or_else(|_| self.connections()),
            Backend::Memory(_) => self.connections(),
        }
    }

    /// Cluster mode: publishes this node's count after a change (and from
    /// the sweeper, so it does not lapse).
    async fn publish_count(&self, app: &App) {
        if let Backend::Redis(c) = &*app.backend {
            let n = self.connections();
            if let Err(e) = c.store.peerjs_set_count(n).await {
                tracing::debug!("peerjs count not published: {e}");
            }
        }
    }

    /// Relayed messages not counted in the lobby's `signals_relayed`.
    pub(crate) fn signals_here(&self) -> u64 {
        self.signals.load(Ordering::Relaxed)
    }

    /// Claims `id` for a connection: refused when another token holds it
    /// (here or, in cluster mode, on any node); the same token takes it
    /// over, as a PeerJS client reconnecting does.
    async fn open(
        &self,
        app: &App,
        id: &str,
        token: &str,
        conn_id: u64,
        tx: Outbox,
        kill: CancellationToken,
    ) -> Opened {
        if self.peers.lock().get(id).is_some_and(|p| p.token != token) {
            return Opened::Taken;
        }
        if let Backend::Redis(c) = &*app.backend {
            let holder =
                crate::backend::redis::store::peerjs::Holder::new(&c.store.node, conn_id, token);
            match c.store.peerjs_claim(id, &holder).await {
                Ok(crate::backend::redis::store::peerjs::Claimed::Taken) => return Opened::Taken,
                Ok(crate::backend::redis::store::peerjs::Claimed::TakenOver { node, conn })
                    if node != c.store.node =>
                {
                    let notice = json!({"t": "peer_js", "to": id, "close": conn}).to_string();
                    let _ = c.store.peerjs_publish(&node, &notice).await;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("peerjs claim failed: {e}");
                    return Opened::Unavailable;
                }
            }
        }
        {
            let mut peers = self.peers.lock();
            if peers.get(id).is_some_and(|p| p.token != token) {
                return Opened::Taken;
            }
            let peer = Peer {
                conn_id,
                token: token.to_string(),
                tx,
                kill,
            };
            if let Some(old) = peers.insert(id.to_string(), peer) {
                let _ = old.tx.try_send(replaced());
            }
        }
        self.publish_count(app).await;
        Opened::Open
    }

    /// The connection ended: its id is free again, unless a later
    /// connection took it over (then false: the peer did not go).
    async fn close(&self, app: &App, id: &str, token: &str, conn_id: u64) -> bool {
        let mine = {
            let mut peers = self.peers.lock();
            let mine = peers.get(id).is_some_and(|p| p.conn_id == conn_id);
            if mine {
                peers.remove(id);
            }
            mine
        };
        self.publish_count(app).await;
        if let Backend::Redis(c) = &*app.backend {
            let holder =
                crate::backend::redis::store::peerjs::Holder::new(&c.store.node, conn_id, token);
            if let Err(e) = c.store.peerjs_release(id, &holder).await {
                tracing::debug!("peerjs release failed: {e}");
            }
        }
        mine
    }

    /// Cluster mode: keeps the claim of a live connection.
    async fn refresh(&self, app: &App, id: &str, token: &str, conn_id: u64) {
        if let Backend::Redis(c) = &*app.backend {
            let holder =
                crate::backend::redis::store::peerjs::Holder::new(&c.store.node, conn_id, token);
            if let Err(e) = c.store.peerjs_refresh(id, &holder).await {
                tracing::debug!("peerjs refresh failed: {e}");
            }
        }
    }

    fn send_here(&self, app: &App, dst: &str, text: &Utf8Bytes) -> bool {
        let peers = self.peers.lock();
        match peers.get(dst) {
            Some(p) => {
                queue(&p.tx, &p.kill, text.clone(), &app.metrics);
                true
            }
            None => false,
        }
    }

    /// Hands a message to `dst`, on this node or (cluster mode) the one
    /// holding it; false when nobody holds `dst`.
    async fn send(&self, app: &App, dst: &str, text: &Utf8Bytes) -> bool {
        if self.send_here(app, dst, text) {
            return true;
        }
        let Backend::Redis(c) = &*app.backend else {
            return false;
        };
        match c.store.peerjs_node(dst).await {
            Ok(Some(node)) if node != c.store.node => {
                let notice = json!({"t": "peer_js", "to": dst, "x": text.as_str()}).to_string();
                c.store
                    .peerjs_publish(&node, &notice)
                    .await
                    .unwrap_or(false)
            }
            _ => false,
        }
    }

    /// Counts a relayed message in `signals_relayed` and the metrics.
    fn count_signal(&self, app: &App) {
        app.metrics.signals_relayed.increment(1);
        app.metrics.peerjs.signals_relayed.increment(1);
        match &*app.backend {
            Backend::Memory(_) => {
                self.signals.fetch_add(1, Ordering::Relaxed);
            }
            Backend::Redis(c) => {
                let store = c.store.clone();
                tokio::spawn(async move {
                    let _ = store.peerjs_count_signal().await;
                });
            }
        }
    }

    /// Keeps a message for an absent `dst`; false when there is no room
    /// for it.
    fn hold(&self, dst: &str, src: &str, text: Utf8Bytes) -> bool {
        let mut held = self.held.lock();
        if !held.contains_key(dst) && held.len() >= MAX_HELD_PEERS {
            return false;
        }
        let h = held.entry(dst.to_string()).or_insert_with(|| Held {
            since: Instant::now(),
            msgs: Vec::new(),
        });
        if h.msgs.len() >= MAX_HELD_PER_PEER {
            return false;
        }
        h.msgs.push((src.to_string(), text));
        true
    }

    /// The messages held for `id`, now that it connected here.
    fn take_held(&self, id: &str) -> Vec<(String, Utf8Bytes)> {
        self.held
            .lock()
            .remove(id)
            .map(|h| h.msgs)
            .unwrap_or_default()
    }

    /// A notice of another node for a peer of this one.
    fn on_notice(&self, to: &str, text: Option<String>, close: Option<u64>) {
        let mut peers = self.peers.lock();
        if let Some(conn) = close {
            // Taken over elsewhere: no longer this node's peer.
            if peers.get(to).is_some_and(|p| p.conn_id == conn) {
                if let Some(p) = peers.remove(to) {
                    let _ = p.tx.try_send(replaced());
                }
            }
        }
        let Some(p) = peers.get(to) else { return };
        if let Some(text) = text {
            queue(&p.tx, &p.kill, text.into(), &self.metrics);
        }
    }

    /// Delivers held messages whose target is now here or (cluster mode)
    /// on another node, and answers expired ones with `EXPIRE`.
    async fn sweep(&self, app: &App) {
        let now = Instant::now();
        let (expired, waiting): (Vec<_>, Vec<_>) = {
            let held = self.held.lock();
            held.iter()
                .map(|(dst, h)| (dst.clone(), now.duration_since(h.since) >= EXPIRE_AFTER))
                .partition(|(_, old)| *old)
        };
        if let Backend::Redis(c) = &*app.backend {
            // Taken out of the hold only once a holder is known, so a peer
            // opening here meanwhile still finds its messages.
            for (dst, _) in waiting.iter().take(100) {
                let Ok(Some(_)) = c.store.peerjs_node(dst).await else {
                    continue;
                };
                for (_, text) in self.take_held(dst) {
                    if self.send(app, dst, &text).await {
                        self.count_signal(app);
                    }
                }
            }
        }
        for (dst, _) in expired {
            let msgs = self.take_held(&dst);
            let mut told: Vec<&str> = Vec::new();
            for (src, _) in &msgs {
                if told.contains(&src.as_str()) {
                    continue;
                }
                told.push(src);
                let text = Utf8Bytes::from(relayed("EXPIRE", &dst, src, None));
                self.send(app, src, &text).await;
            }
        }
    }

    /// Every peer id (`--peerjs-discovery`): this server's, or the
    /// cluster's.
    async fn ids(&self, app: &App) -> Option<Vec<String>> {
        match &*app.backend {
            Backend::Memory(_) => Some(self.peers.lock().keys().cloned().collect()),
            Backend::Redis(c) => c.store.peerjs_ids(10_000).await.ok(),
        }
    }

    /// A fresh id nobody here holds.
    fn fresh_id(&self) -> String {
        loop {
            let id = uuid::Uuid::new_v4().to_string();
            if !self.peers.lock().contains_key(&id) {
                return id;
            }
        }
    }
}

/// Looks at held messages 4 times a second until shutdown.
pub(super) fn spawn_sweeper(app: &Arc<App>) {
    let app = app.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(SWEEP);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                _ = interval.tick() => {
                    app.peerjs.sweep(&app).await;
                    ticks += 1;
                    if ticks.is_multiple_of(40) {
                        app.peerjs.publish_count(&app).await;
                    }
                }
                _ = app.shutdown.cancelled() => break,
            }
        }
    });
}

/// `GET /peerjs/{key}/id`, `GET /peerjs/{key}/peers`, `GET /peerjs` and the
/// WebSocket `/peerjs/peerjs`.
pub(super) fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let ws = session::route(app.clone());
    let id = {
        let app = app.clone();
        warp::path!("peerjs" / String / "id")
            .and(warp::get())
            .map(move |key: String| {
                if key != app.cfg.peerjs_key {
                    return cors(
                        warp::reply::with_status("Invalid key provided", StatusCode::UNAUTHORIZED)
                            .into_response(),
                    );
                }
                let reply = warp::reply::with_header(
                    app.peerjs.fresh_id(),
                    "content-type",
                    "text/plain; charset=utf-8",
                );
                cors(warp::reply::with_header(reply, "cache-control", "no-store").into_response())
            })
    };
    let peers = {
        let app = app.clone();
        warp::path!("peerjs" / String / "peers")
            .and(warp::get())
            .then(move |key: String| {
                let app = app.clone();
                async move {
                    if key != app.cfg.peerjs_key || !app.cfg.peerjs_discovery {
                        return cors(StatusCode::UNAUTHORIZED.into_response());
                    }
                    match app.peerjs.ids(&app).await {
                        Some(ids) => cors(warp::reply::json(&ids).into_response()),
                        None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
                    }
                }
            })
    };
    let info = warp::path!("peerjs").and(warp::get()).map(|| {
        cors(
            warp::reply::json(&json!({
                "name": "Rendezvous",
                "description": "PeerJS server protocol of Rendezvous",
            }))
            .into_response(),
        )
    });
    ws.or(id).unify().or(peers).unify().or(info).unify()
}

/// peerjs-server answers its HTTP API to any origin; ids are not secret
/// (the WebSocket itself keeps the origin policy).
fn cors(mut r: warp::reply::Response) -> warp::reply::Response {
    r.headers_mut().insert(
        "access-control-allow-origin",
        warp::http::HeaderValue::from_static("*"),
    );
    r
}
