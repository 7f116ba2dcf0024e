//! The shell around the lobby: warp routes, WebSocket sessions, the HTTP
//! API and the static web client. All lobby state is behind the
//! [`Backend`](crate::backend::Backend) seam, picked once at start-up (in
//! memory, or Redis in cluster mode); nothing here asks which one runs.

pub mod assets;
pub(crate) mod conns;
mod frames;
mod http;
mod incoming;
mod listen;
mod matchbox;
pub mod metrics;
pub(crate) mod outbox;
mod peerjs;
mod ratelimit;
mod session;
mod socket;
pub mod tls;
mod upgrade;
mod writer;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use warp::Filter;

use crate::backend::{Backend, Footprint};
use crate::cluster::StoreError;
use crate::config::Config;
use crate::protocol::{Event, Stats};

pub(crate) use upgrade::new_player_id;

/// How often timers (held seats, finished and idle rooms) and stats
/// subscriptions are looked at.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// `welcome.features`: what this server supports beyond protocol v1.
pub const FEATURES: &[&str] = &[
    "tickets",
    "parties",
    "backfill",
    "spectators",
    "peerjs",
    "matchbox",
    "webhooks",
    "ready",
    "messages",
];

/// The server state handed to every handler.
pub struct App {
    pub cfg: Config,
    pub(crate) backend: Backend,
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
    /// The PeerJS drop-in endpoint's peers.
    pub(crate) peerjs: peerjs::PeerJs,
    /// Webhooks and the allocation hook.
    pub hooks: Arc<crate::hooks::Hooks>,
}

impl App {
    pub fn new(
        cfg: Config,
        auth: crate::auth::Authenticator,
        // The Redis store of cluster mode (`--redis-url`); `None`: in memory.
        store: Option<Arc<crate::cluster::Store>>,
    ) -> Result<Arc<Self>, String> {
        let cfg = cfg.normalized();
        let max_msg = cfg.max_message_bytes as usize;
        let mut ws_config = WebSocketConfig::default();
        // tungstenite's defaults (64 MiB messages, 128 KiB read buffers) are
        // unsafe and costly for a public server with many idle sockets.
        // A small read chunk: it is a third of an idle socket's memory at
        // 4 KiB, and signaling frames are a few hundred bytes.
        ws_config.read_buffer_size = 128;
        // tungstenite's own write buffer: the drop-in endpoints' writer
        // feeds it all it has queued, then flushes (0 here would make every
        // frame a syscall); `/ws` sessions encode their frames themselves
        // (`socket.rs`), and only tungstenite's pongs and close answers pass
        // through it. It is only allocated once something is written.
        ws_config.write_buffer_size = 16 * 1024;
        ws_config.max_write_buffer_size = 4 * max_msg + 4096;
        ws_config.max_message_size = Some(4 * max_msg);
        ws_config.max_frame_size = Some(4 * max_msg);
        let metrics = Arc::new(metrics::Metrics::new());
        let shutdown = CancellationToken::new();
        let hooks = Arc::new(crate::hooks::Hooks::new(
            &cfg,
            metrics.webhook.clone(),
            shutdown.clone(),
        )?);
        let backend = Backend::new(&cfg, store, metrics.clone(), hooks.clone());
        let permits = cfg
            .max_connections
            .min(tokio::sync::Semaphore::MAX_PERMITS as u64) as usize;
        Ok(Arc::new(App {
            backend,
            hooks,
            started: Instant::now(),
            draining: CancellationToken::new(),
            shutdown,
            conn_seq: AtomicU64::new(1),
            ws_config,
            metrics,
            auth,
            conn_permits: Arc::new(tokio::sync::Semaphore::new(permits)),
            per_ip: Mutex::new(HashMap::new()),
            peerjs: peerjs::PeerJs::default(),
            cfg,
        }))
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.conn_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Lobby stats without waiting: exact on a single node; in cluster
    /// mode the last cluster-wide read (at most a beat old). See
    /// [`App::stats_async`] for exact ones.
    pub fn stats(&self) -> Stats {
        let mut s = self.backend.stats_now();
        self.add_dropins(&mut s);
        s.uptime_s = self.started.elapsed().as_secs();
        s
    }

    /// Drop-in endpoints' connections (this node's) and relays (kept here
    /// in memory; in Redis in cluster mode) in the lobby's stats.
    fn add_dropins(&self, s: &mut Stats) {
        s.connections += self.peerjs.connections();
        s.signals_relayed += self.peerjs.signals_here();
    }

    /// Exact stats, cluster-wide in cluster mode.
    pub async fn stats_async(&self) -> Result<Stats, StoreError> {
        let mut s = self.backend.stats().await?;
        s.connections += self.peerjs.connections_everywhere(self).await;
        s.signals_relayed += self.peerjs.signals_here();
        s.uptime_s = self.started.elapsed().as_secs();
        Ok(s)
    }

    /// The `welcome` event text of a registered connection: the one place
    /// it is built, for both backends.
    pub(crate) fn welcome(
        &self,
        player_id: &str,
        name: &str,
        token: String,
        resumed: bool,
        (room, party): (
            Option<crate::protocol::RoomInfo>,
            Option<crate::protocol::PartyInfo>,
        ),
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
            features: FEATURES.iter().map(|f| f.to_string()).collect(),
            party,
        }))
        .to_json()
    }

    /// Sizes of the lobby's state (in cluster mode: its keys in Redis) and
    /// of this server's connection table, for "nothing left behind" checks.
    pub async fn footprint(&self) -> Result<Footprint, String> {
        self.backend.footprint().await
    }

    /// Recounts the whole lobby (in cluster mode: in Redis) against its
    /// derived data: counters, matchmaking index, listings, seats.
    pub async fn check_invariants(&self) -> Result<(), String> {
        self.backend.check_invariants().await
    }

    /// Admin: an `announcement` to every connection (of every node).
    pub async fn announce(&self, text: &str) -> Result<(), StoreError> {
        let event = Event::Announcement {
            text: text.to_string(),
            ts: crate::protocol::ts(&chrono::Utc::now()),
        };
        self.backend.announce(&event.to_json()).await
    }

    /// Admin: closes a room; members get `player_left` reason `closed`.
    pub async fn close_room(&self, room_id: &str) -> Result<bool, StoreError> {
        self.backend.close_room(room_id).await
    }

    /// Admin: gives up the player's seat at once (`player_left` reason
    /// `closed`) and closes its connection with 1008.
    pub async fn disconnect_player(&self, player_id: &str) -> Result<bool, StoreError> {
        self.backend.disconnect_player(player_id).await
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
        self.app.backend.hand_over(&self.app).await;
        self.app.shutdown.cancel();
        let _ = tokio::time::timeout(timeout, self.task).await;
    }
}

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

/// Binds `cfg.listen` and serves until `app.shutdown` is cancelled; an
/// invalid configuration is a [`StartError::Config`], a port that cannot be
/// bound a [`StartError::Bind`].
pub async fn start(cfg: Config) -> Result<RunningServer, StartError> {
    let auth = cfg.authenticator().map_err(StartError::Config)?;
    assets::check_dir(cfg.web_dir.as_deref()).map_err(StartError::Config)?;
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key).map_err(StartError::Config)?),
        _ => None,
    };
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
    let store = crate::backend::open_store(&cfg).map_err(StartError::Config)?;
    let app = App::new(cfg, auth, store).map_err(StartError::Config)?;
    let routes = routes(app.clone());
    Backend::spawn_tasks(&app);
    peerjs::spawn_sweeper(&app);
    app.backend.ready().await;

    let shutdown = app.shutdown.clone();
    let web = assets::describe(app.cfg.web_dir.as_deref());
    let server = listen::serve(
        app.clone(),
        listener,
        tls,
        app.cfg.http_header_timeout_ms,
        routes,
        shutdown,
    );
    let task_app = app.clone();
    let task = tokio::spawn(async move {
        server.await;
        // Stopped without a drain (the app's token cancelled directly): cut
        // what is left.
        session::close_all(&task_app, Duration::from_millis(100)).await;
    });
    let tls = app.cfg.tls_cert.is_some();
    tracing::info!(%addr, tls, web, "rendezvous listening");
    Ok(RunningServer { addr, app, task })
}

fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    let ws = upgrade::route(app.clone());
    let metrics_route = {
        let app = app.clone();
        warp::path!("metrics").and(warp::get()).then(move || {
            let app = app.clone();
            async move {
                // Lobby gauges are the cluster's in cluster mode, but
                // `connections` is this node's own, so a sum over scraped
                // nodes stays right.
                let mut stats = app.stats_async().await.unwrap_or_else(|_| app.stats());
                stats.connections = app.backend.connections_here() + app.peerjs.connections();
                let text = app.metrics.render(&stats);
                warp::reply::with_header(text, "content-type", "text/plain; version=0.0.4")
            }
        })
    };
    let api = http::routes(app.clone());
    let peerjs = peerjs::routes(app.clone());
    let matchbox = matchbox::route(app.clone());
    let pages = assets::routes(app.cfg.web_dir.clone());
    ws.or(peerjs)
        .or(matchbox)
        .or(api)
        .or(metrics_route)
        .or(pages)
        .recover(http::recover)
}
