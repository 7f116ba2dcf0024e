//! The shell around the lobby engine: warp routes, WebSocket sessions, event
//! delivery, the HTTP API and the static web client.
//!
//! All mutable state (the [`Lobby`] and the table of live connections) sits
//! in one [`Shared`] struct behind one `parking_lot::Mutex`. An operation
//! changes the lobby and pushes its reply and events into the recipients'
//! bounded queues before the lock is released, so every client sees events in
//! the order the state changed. Pushing is a non-blocking `try_send`; a
//! client whose queue is full is a slow client and is closed, never waited
//! for. Nothing awaits while holding the lock.

mod cluster;
mod http;
pub mod metrics;
mod session;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use warp::Filter;

use crate::config::Config;
use crate::lobby::{Delivery, Lobby};
use crate::protocol::{Event, Stats};

/// How often timers (held seats, finished and idle rooms) and stats
/// subscriptions are looked at.
const TICK: Duration = Duration::from_millis(100);

/// A live connection, as the rest of the server sees it.
pub(crate) struct Conn {
    /// Tells a connection apart from a later one of the same player.
    pub id: u64,
    pub tx: mpsc::Sender<Message>,
    /// Cancelled to close the connection (slow client, takeover, shutdown).
    pub kill: CancellationToken,
    pub stats: Option<StatsSub>,
}

pub(crate) struct StatsSub {
    pub interval: Duration,
    pub next: Instant,
}

/// Events for a player whose seat is held while its connection is gone,
/// kept for its return (bounded; the oldest go first).
#[derive(Default)]
pub(crate) struct Pending {
    pub queue: VecDeque<Utf8Bytes>,
    pub dropped: u64,
}

/// Queues a text frame on a connection. A queue that is full (a slow client)
/// or closed (going away) must not hold anyone up: the connection is closed,
/// and a slow client counted once.
pub(crate) fn queue(
    tx: &mpsc::Sender<Message>,
    kill: &CancellationToken,
    text: Utf8Bytes,
    metrics: &metrics::Metrics,
) {
    if tx.try_send(Message::Text(text)).is_ok() {
        metrics.messages_out.increment(1);
    } else if !kill.is_cancelled() {
        kill.cancel();
        metrics.slow_clients_closed.increment(1);
    }
}

/// A close frame with a fixed reason.
pub(crate) fn close_frame(
    code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode,
    reason: &'static str,
) -> Message {
    Message::Close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

/// Everything that changes, under one lock.
pub(crate) struct Shared {
    pub lobby: Lobby,
    pub conns: HashMap<String, Conn>,
    pub pending: HashMap<String, Pending>,
    /// Subscribers of the room list, with their optional `mode`.
    pub room_subs: HashMap<String, Option<String>>,
    /// Cluster mode: connections waiting for their registration notice.
    pub joining: HashMap<u64, cluster::Joining>,
    /// Cluster mode: events caught for players whose connection ended here
    /// until the store confirms their seat is held (then they go to the
    /// store's pending list).
    pub departed: HashMap<String, Vec<Utf8Bytes>>,
    pub resume_buffer: usize,
    pub metrics: Arc<metrics::Metrics>,
}

impl Shared {
    /// Queues a text frame for one player. Returns false when the player has
    /// no connection and no held seat.
    pub fn send_to(&mut self, player_id: &str, text: &Utf8Bytes) -> bool {
        if let Some(conn) = self.conns.get(player_id) {
            queue(&conn.tx, &conn.kill, text.clone(), &self.metrics);
            return true;
        }
        if self
            .lobby
            .player(player_id)
            .is_some_and(|p| !p.connected && p.room.is_some())
        {
            let p = self.pending.entry(player_id.to_string()).or_default();
            if p.queue.len() >= self.resume_buffer {
                p.queue.pop_front();
                p.dropped += 1;
            }
            p.queue.push_back(text.clone());
            return true;
        }
        false
    }

    /// Serializes each event once and queues it for every recipient; then
    /// the room-list changes for their subscribers.
    pub fn deliver(&mut self, deliveries: Vec<Delivery>) {
        for d in deliveries {
            let text = Utf8Bytes::from(d.event.to_json());
            for to in &d.to {
                self.send_to(to, &text);
            }
        }
        let changes = self.lobby.take_listing_changes();
        if !changes.is_empty() {
            let subs: Vec<(String, Option<String>)> = self
                .room_subs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for change in changes {
                let text = Utf8Bytes::from(change.event.to_json());
                for (pid, mode) in &subs {
                    if mode.as_ref().is_none_or(|m| *m == change.mode) {
                        self.send_to(pid, &text);
                    }
                }
            }
        }
        self.forget_gone();
    }

    /// Ends a player's connection from the server side: it leaves the
    /// table (with its room-list subscription) and gets `frame`, which its
    /// writer sends before closing. Nothing when it has none.
    pub fn close_conn(&mut self, player_id: &str, frame: Message) {
        if let Some(old) = self.conns.remove(player_id) {
            let _ = old.tx.try_send(frame);
            self.room_subs.remove(player_id);
        }
    }

    /// The close frame of a connection taken over by a newer one of the
    /// same player (4001 "replaced").
    pub fn replaced() -> Message {
        close_frame(
            tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Library(4001),
            "replaced",
        )
    }

    /// Adds or removes a room-list subscriber; the lobby tracks list
    /// changes only while someone listens.
    pub fn subscribe_rooms(&mut self, player_id: &str, mode: Option<Option<String>>) {
        match mode {
            Some(m) => {
                self.room_subs.insert(player_id.to_string(), m);
            }
            None => {
                self.room_subs.remove(player_id);
            }
        }
        self.lobby.watch_listing(!self.room_subs.is_empty());
    }

    /// Drops held-event queues of players the lobby no longer knows.
    fn forget_gone(&mut self) {
        if !self.pending.is_empty() {
            let lobby = &self.lobby;
            self.pending
                .retain(|pid, _| lobby.player(pid).is_some_and(|p| !p.connected));
        }
    }
}

/// The server state handed to every handler.
pub struct App {
    pub cfg: Config,
    pub(crate) shared: Mutex<Shared>,
    pub started: Instant,
    /// Cancelled first on shutdown: `/healthz` turns 503, handshakes 503.
    pub draining: CancellationToken,
    /// Cancelled last: the HTTP server and the ticker stop.
    pub shutdown: CancellationToken,
    conn_seq: AtomicU64,
    pub(crate) ws_config: WebSocketConfig,
    pub metrics: Arc<metrics::Metrics>,
    pub(crate) auth: crate::auth::Authenticator,
    /// One permit per open (or opening) WebSocket: `--max-connections`.
    pub(crate) conn_permits: Arc<tokio::sync::Semaphore>,
    /// Open WebSockets per client address: `--max-connections-per-ip`.
    pub(crate) per_ip: Mutex<HashMap<IpAddr, u64>>,
    /// Cluster mode (`--redis-url`): the shared store. `None`: in memory.
    pub store: Option<Arc<crate::cluster::Store>>,
    /// Cluster mode: the last cluster-wide stats read (for `/metrics`).
    pub(crate) cluster_stats: Mutex<Stats>,
}

impl App {
    pub fn new(
        cfg: Config,
        auth: crate::auth::Authenticator,
        store: Option<Arc<crate::cluster::Store>>,
    ) -> Arc<Self> {
        let cfg = cfg.normalized();
        let max_msg = cfg.max_message_bytes as usize;
        let mut ws_config = WebSocketConfig::default();
        // tungstenite's defaults (64 MiB messages, 128 KiB read buffers) are
        // unsafe and costly for a public server with many idle sockets.
        // A small read chunk: it is a third of an idle socket's memory at
        // 4 KiB, and signaling frames are a few hundred bytes.
        ws_config.read_buffer_size = 512;
        // Frames queued together go out in one write (the writer feeds all
        // it has, then flushes); 0 here would make every frame a syscall.
        // The buffer is only allocated once something is written.
        ws_config.write_buffer_size = 16 * 1024;
        ws_config.max_write_buffer_size = 4 * max_msg + 4096;
        ws_config.max_message_size = Some(4 * max_msg);
        ws_config.max_frame_size = Some(4 * max_msg);
        let metrics = Arc::new(metrics::Metrics::new());
        let shared = Shared {
            lobby: Lobby::new(cfg.lobby()),
            conns: HashMap::new(),
            pending: HashMap::new(),
            room_subs: HashMap::new(),
            joining: HashMap::new(),
            departed: HashMap::new(),
            resume_buffer: cfg.resume_buffer as usize,
            metrics: metrics.clone(),
        };
        let permits = cfg
            .max_connections
            .min(tokio::sync::Semaphore::MAX_PERMITS as u64) as usize;
        Arc::new(App {
            shared: Mutex::new(shared),
            started: Instant::now(),
            draining: CancellationToken::new(),
            shutdown: CancellationToken::new(),
            conn_seq: AtomicU64::new(1),
            ws_config,
            metrics,
            auth,
            conn_permits: Arc::new(tokio::sync::Semaphore::new(permits)),
            per_ip: Mutex::new(HashMap::new()),
            store,
            cluster_stats: Mutex::new(Stats::default()),
            cfg,
        })
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.conn_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Lobby stats with the server's own fields filled in. In cluster mode,
    /// the last cluster-wide stats read (at most a beat old); see
    /// [`App::stats_async`] for exact ones.
    pub fn stats(&self) -> Stats {
        if self.store.is_some() {
            let mut s = self.cluster_stats.lock().clone();
            s.uptime_s = self.started.elapsed().as_secs();
            return s;
        }
        let shared = self.shared.lock();
        self.stats_locked(&shared)
    }

    /// Exact stats: cluster-wide from the store in cluster mode.
    pub async fn stats_async(&self) -> Result<Stats, crate::cluster::StoreError> {
        let Some(store) = &self.store else {
            return Ok(self.stats());
        };
        let mut s = store.stats().await?;
        s.uptime_s = self.started.elapsed().as_secs();
        *self.cluster_stats.lock() = s.clone();
        Ok(s)
    }

    /// The `welcome` event text of a registered connection.
    pub(crate) fn welcome(
        &self,
        player_id: &str,
        name: &str,
        token: String,
        resumed: bool,
        room: Option<crate::protocol::RoomInfo>,
        missed: u64,
    ) -> String {
        let cfg = &self.cfg;
        Event::Welcome(Box::new(crate::protocol::Welcome {
            protocol: crate::protocol::PROTOCOL_VERSION,
            player_id: player_id.to_string(),
            name: name.to_string(),
            resume_token: token,
            resumed,
            room,
            heartbeat_interval_ms: cfg.heartbeat_interval_ms,
            heartbeat_timeout_ms: cfg.heartbeat_timeout_ms,
            ice_servers: crate::signaling::ice_servers(
                &cfg.stun_urls,
                &cfg.turn_urls,
                cfg.turn_secret.as_deref(),
                cfg.turn_ttl_s,
                player_id,
                chrono::Utc::now().timestamp(),
            ),
            limits: crate::protocol::Limits {
                max_message_bytes: cfg.max_message_bytes,
                max_players: cfg.max_players,
            },
            server_time: crate::protocol::ts(&chrono::Utc::now()),
            missed,
        }))
        .to_json()
    }

    pub(crate) fn stats_locked(&self, shared: &Shared) -> Stats {
        let mut s = shared.lobby.stats();
        s.connections = shared.conns.len() as u64;
        s.uptime_s = self.started.elapsed().as_secs();
        s
    }

    /// Sizes of the lobby's internal maps and of the connection table, for
    /// leak checks in tests: (rooms, codes, players, index buckets, listed
    /// rooms, resume tokens, connections, pending queues, room-list
    /// subscribers). The lobby's pending timers are not in it: every timer
    /// belongs to a room or a player, so none are left when both are zero
    /// (see [`App::lobby_footprint`] for all of the lobby's counts).
    pub fn footprint(&self) -> [usize; 9] {
        let s = self.shared.lock();
        let f = s.lobby.footprint();
        [
            f.rooms,
            f.codes,
            f.players,
            f.index_buckets,
            f.listed,
            f.tokens,
            s.conns.len(),
            s.pending.len(),
            s.room_subs.len(),
        ]
    }

    /// The sizes of the in-memory lobby's maps, pending timers included.
    pub fn lobby_footprint(&self) -> crate::lobby::LobbyFootprint {
        self.shared.lock().lobby.footprint()
    }

    /// Runs `check_invariants` on the live lobby.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.shared.lock().lobby.check_invariants()
    }

    /// Admin: an `announcement` to every connection (of every node).
    pub async fn announce(&self, text: &str) -> Result<(), crate::cluster::StoreError> {
        let event = Event::Announcement {
            text: text.to_string(),
            ts: crate::protocol::ts(&chrono::Utc::now()),
        };
        if let Some(store) = &self.store {
            return store
                .publish(&cluster::all_channel(), &event.to_json())
                .await;
        }
        let bytes = Utf8Bytes::from(event.to_json());
        let mut shared = self.shared.lock();
        let all: Vec<String> = shared.conns.keys().cloned().collect();
        for pid in all {
            shared.send_to(&pid, &bytes);
        }
        Ok(())
    }

    /// Admin: closes a room; members get `player_left` reason `closed`.
    pub async fn close_room(&self, room_id: &str) -> Result<bool, crate::cluster::StoreError> {
        if let Some(store) = &self.store {
            if room_id.len() > 64 {
                return Ok(false);
            }
            let v = store.call("close", &[room_id]).await?;
            return Ok(v == serde_json::Value::Bool(true));
        }
        let mut shared = self.shared.lock();
        let Some(id) = shared.lobby.room_by_id_str(room_id).map(|r| r.id) else {
            return Ok(false);
        };
        let mut out = Vec::new();
        shared.lobby.close_room(id, &mut out);
        shared.deliver(out);
        Ok(true)
    }

    /// Admin: gives up the player's seat at once (`player_left` reason
    /// `closed`) and closes its connection with 1008.
    pub async fn disconnect_player(
        &self,
        player_id: &str,
    ) -> Result<bool, crate::cluster::StoreError> {
        if let Some(store) = &self.store {
            if player_id.len() > 256 {
                return Ok(false);
            }
            // The player's node closes its connection (a `kill` notice).
            let v = store.call("remove", &[player_id]).await?;
            return Ok(v == serde_json::Value::Bool(true));
        }
        let mut shared = self.shared.lock();
        let mut out = Vec::new();
        if !shared.lobby.remove_player(player_id, &mut out) {
            return Ok(false);
        }
        if let Some(conn) = shared.conns.remove(player_id) {
            let _ = conn.tx.try_send(close_frame(
                tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Policy,
                "disconnected by the server",
            ));
        }
        shared.subscribe_rooms(player_id, None);
        shared.pending.remove(player_id);
        shared.deliver(out);
        Ok(true)
    }

    /// One housekeeping pass: timers of the lobby, then due stats pushes.
    fn tick(&self) {
        let now = Instant::now();
        let mut shared = self.shared.lock();
        let mut out = Vec::new();
        shared.lobby.tick(now, &mut out);
        shared.deliver(out);
        let due: Vec<String> = shared
            .conns
            .iter()
            .filter(|(_, c)| c.stats.as_ref().is_some_and(|s| s.next <= now))
            .map(|(pid, _)| pid.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        let stats = self.stats_locked(&shared);
        let text = Utf8Bytes::from(Event::Stats { stats }.to_json());
        for pid in due {
            if let Some(sub) = shared.conns.get_mut(&pid).and_then(|c| c.stats.as_mut()) {
                sub.next = now + sub.interval;
            }
            shared.send_to(&pid, &text);
        }
    }
}

/// A server that is running; dropping it does not stop it, call [`RunningServer::shutdown`].
pub struct RunningServer {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    task: JoinHandle<()>,
}

impl RunningServer {
    /// Graceful shutdown: `/healthz` turns 503 and new handshakes are
    /// refused; every client gets `server_shutdown` then close 1001; after
    /// they are gone (or `--shutdown-timeout-ms`) the server stops.
    pub async fn shutdown(self) {
        let timeout = Duration::from_millis(self.app.cfg.shutdown_timeout_ms);
        self.app.draining.cancel();
        session::close_all(&self.app, timeout).await;
        if let Some(store) = &self.app.store {
            // Whatever sessions did not hold their seats themselves yet.
            let grace = self.app.cfg.reconnect_grace_ms.to_string();
            if let Err(e) = store.call("leave_node", &[&grace]).await {
                tracing::warn!("could not hand this node's players over: {e}");
            }
        }
        self.app.shutdown.cancel();
        let _ = tokio::time::timeout(timeout, self.task).await;
    }
}

/// Binds `cfg.listen` and serves until `app.shutdown` is cancelled.
/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A configuration problem found at startup (exit code 2).
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub async fn start(cfg: Config) -> Result<RunningServer, StartError> {
    let auth = cfg.authenticator().map_err(StartError::Config)?;
    let bind_err = |source| StartError::Bind {
        addr: cfg.listen,
        source,
    };
    let listener = TcpListener::bind(cfg.listen).await.map_err(bind_err)?;
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux:
    // without it Nagle holds small frames back for up to a delayed-ACK
    // timeout (~40 ms), which is most of a signal's latency.
    if let Err(e) = socket2::SockRef::from(&listener).set_tcp_nodelay(true) {
        tracing::warn!("cannot set TCP_NODELAY: {e}");
    }
    let addr = listener.local_addr().map_err(bind_err)?;
    let store = match &cfg.redis_url {
        Some(url) => {
            let node = cfg.node_id.clone().unwrap_or_else(|| {
                format!("n-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
            });
            if !crate::cluster::valid_node_id(&node) {
                return Err(StartError::Config(format!(
                    "--node-id {node:?}: use 1 to 64 letters, digits, '-' or '_'"
                )));
            }
            Some(Arc::new(
                crate::cluster::Store::new(url, node).map_err(StartError::Config)?,
            ))
        }
        None => None,
    };
    let app = App::new(cfg, auth, store.clone());
    let routes = routes(app.clone());

    if let Some(store) = &store {
        tokio::spawn(cluster::run_subscriber(app.clone(), store.clone()));
        tokio::spawn(cluster::run_beats(app.clone(), store.clone()));
        tokio::spawn(cluster::run_ticks(app.clone(), store.clone()));
        // Serve at once when Redis is there (the beats keep it so).
        let deadline = Instant::now() + Duration::from_secs(2);
        while !store.available() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(node = %store.node, available = store.available(), "cluster mode");
    }
    let ticker_app = app.clone();
    let in_memory = store.is_none();
    let ticker = tokio::spawn(async move {
        if !in_memory {
            return;
        }
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => ticker_app.tick(),
                _ = ticker_app.shutdown.cancelled() => break,
            }
        }
    });

    let shutdown = app.shutdown.clone();
    let server = warp::serve(routes)
        .incoming(listener)
        .graceful(async move { shutdown.cancelled().await });
    let task_app = app.clone();
    let task = tokio::spawn(async move {
        server.run().await;
        let _ = ticker.await;
        // Stopped without a drain (the app's token cancelled directly): cut
        // what is left.
        session::close_all(&task_app, Duration::from_millis(100)).await;
    });
    tracing::info!(%addr, "rendezvous listening");
    Ok(RunningServer { addr, app, task })
}

fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    let ws = session::route(app.clone());
    let metrics_route = {
        let app = app.clone();
        warp::path!("metrics").and(warp::get()).then(move || {
            let app = app.clone();
            async move {
                // Lobby gauges are the cluster's in cluster mode, but
                // `connections` is this node's own, so a sum over scraped
                // nodes stays right.
                let mut stats = app.stats_async().await.unwrap_or_else(|_| app.stats());
                stats.connections = app.shared.lock().conns.len() as u64;
                let text = app.metrics.render(&stats);
                warp::reply::with_header(text, "content-type", "text/plain; version=0.0.4")
            }
        })
    };
    let api = http::routes(app.clone());
    let web_dir = app.cfg.web_dir.clone();
    let dashboard = warp::path("dashboard")
        .and(warp::path::end())
        .and(warp::fs::file(web_dir.join("dashboard.html")));
    let static_files = warp::fs::dir(web_dir);
    ws.or(api)
        .or(metrics_route)
        .or(dashboard)
        .or(static_files)
        .recover(http::recover)
}
