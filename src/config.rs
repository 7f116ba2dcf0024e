//! Server configuration: every flag is also an environment variable
//! `RENDEZVOUS_<FLAG>`, so the same binary is configured the same way on a
//! laptop, in a container and in CI. A bad value is a clear error and exit
//! code 2 (clap's usage error).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::auth::{AuthMode, AuthSettings, Authenticator};
use crate::lobby::LobbyConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "rendezvous",
    version,
    about = "Game lobby and WebRTC signaling server"
)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port; the chosen address is
    /// printed on stdout as `listening on http://ADDR`).
    #[arg(long, env = "RENDEZVOUS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Serve the demo, the dashboard and `rendezvous.js` from this folder
    /// instead of the copies compiled into the binary (for editing them
    /// without a rebuild); files it lacks still come from the binary.
    #[arg(long, env = "RENDEZVOUS_WEB_DIR")]
    pub web_dir: Option<PathBuf>,

    /// PEM file of the TLS certificate chain: with `--tls-key`, the port
    /// serves HTTPS and wss:// instead of HTTP and ws://.
    #[arg(long, env = "RENDEZVOUS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file of the private key of `--tls-cert` (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "RENDEZVOUS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Largest `max_players` a room may have (2 to 255).
    #[arg(long, env = "RENDEZVOUS_MAX_PLAYERS", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(2..=255))]
    pub max_players: u64,

    /// Most rooms alive at once.
    #[arg(long, env = "RENDEZVOUS_MAX_ROOMS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub max_rooms: u64,

    /// How long a dropped player's seat is held for a reconnect.
    #[arg(long, env = "RENDEZVOUS_RECONNECT_GRACE_MS", default_value_t = 15_000)]
    pub reconnect_grace_ms: u64,

    /// How long a finished room lives before it is closed.
    #[arg(
        long,
        env = "RENDEZVOUS_FINISHED_ROOM_TTL_MS",
        default_value_t = 60_000
    )]
    pub finished_room_ttl_ms: u64,

    /// Waiting rooms with no activity for this long are closed.
    #[arg(
        long,
        env = "RENDEZVOUS_ROOM_IDLE_TIMEOUT_MS",
        default_value_t = 600_000
    )]
    pub room_idle_timeout_ms: u64,

    /// A `queue_match` ticket that formed no room for this long expires
    /// (`ticket_expired`).
    #[arg(long, env = "RENDEZVOUS_TICKET_TTL_MS", default_value_t = 120_000,
          value_parser = clap::value_parser!(u64).range(1_000..=86_400_000))]
    pub ticket_ttl_ms: u64,

    /// A ticket room smaller than `max_players` (at least every ticket's
    /// `min_players`) forms once its oldest ticket waited this long.
    #[arg(long, env = "RENDEZVOUS_TICKET_FILL_AFTER_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(0..=86_400_000))]
    pub ticket_fill_after_ms: u64,

    /// Events and signals kept per held seat for the player's return; when
    /// more arrive the oldest go, and `welcome.missed` says how many.
    #[arg(long, env = "RENDEZVOUS_RESUME_BUFFER", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub resume_buffer: u64,

    /// Largest accepted WebSocket message; larger ones get `payload_too_large`
    /// and ones over 4 times this close the connection with 1009.
    #[arg(long, env = "RENDEZVOUS_MAX_MESSAGE_BYTES", default_value_t = 65_536,
          value_parser = clap::value_parser!(u64).range(1024..=16_777_216))]
    pub max_message_bytes: u64,

    /// Outbound messages queued per connection before it counts as a slow
    /// client and is closed.
    #[arg(long, env = "RENDEZVOUS_MAX_QUEUED_MESSAGES", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(8..=65_536))]
    pub max_queued_messages: u64,

    /// Interval of WebSocket pings sent by the server.
    #[arg(long, env = "RENDEZVOUS_HEARTBEAT_INTERVAL_MS", default_value_t = 15_000,
          value_parser = clap::value_parser!(u64).range(50..))]
    pub heartbeat_interval_ms: u64,

    /// A client silent (no frame, no pong) for this long is dropped; its seat is held.
    #[arg(long, env = "RENDEZVOUS_HEARTBEAT_TIMEOUT_MS", default_value_t = 45_000,
          value_parser = clap::value_parser!(u64).range(100..))]
    pub heartbeat_timeout_ms: u64,

    /// Largest SDP accepted in `offer`/`answer`, in bytes.
    #[arg(long, env = "RENDEZVOUS_MAX_SDP_BYTES", default_value_t = 32_768)]
    pub max_sdp_bytes: u64,

    /// Largest `data` of a `send` (1.2), in bytes of its JSON as sent.
    #[arg(long, env = "RENDEZVOUS_MAX_SEND_BYTES", default_value_t = 4096,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_send_bytes: u64,

    /// `send` requests (1.2) per second a connection may make (a token
    /// bucket of its own, apart from signals; every `send` also counts in
    /// `--rate-limit`).
    #[arg(long, env = "RENDEZVOUS_SEND_RATE", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub send_rate: u32,

    /// `send` requests a connection may make in one burst.
    #[arg(long, env = "RENDEZVOUS_SEND_BURST", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub send_burst: u32,

    /// STUN server URLs for `welcome.ice_servers`, comma separated.
    #[arg(long, env = "RENDEZVOUS_STUN_URLS", value_delimiter = ',')]
    pub stun_urls: Vec<String>,

    /// TURN server URLs for `welcome.ice_servers`, comma separated.
    #[arg(long, env = "RENDEZVOUS_TURN_URLS", value_delimiter = ',')]
    pub turn_urls: Vec<String>,

    /// Shared secret of the TURN server (coturn `static-auth-secret`); when
    /// set, each player gets time-limited TURN credentials.
    #[arg(long, env = "RENDEZVOUS_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,

    /// Lifetime of TURN credentials.
    #[arg(long, env = "RENDEZVOUS_TURN_TTL_S", default_value_t = 86_400)]
    pub turn_ttl_s: u64,

    /// Most WebSocket connections at once; beyond, handshakes get 503.
    #[arg(long, env = "RENDEZVOUS_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_connections: u64,

    /// Most WebSocket connections from one IP address; beyond, 429.
    #[arg(long, env = "RENDEZVOUS_MAX_CONNECTIONS_PER_IP", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_connections_per_ip: u64,

    /// Messages per second a connection may send (token bucket refill).
    #[arg(long, env = "RENDEZVOUS_RATE_LIMIT", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_limit: u32,

    /// Messages a connection may send in one burst.
    #[arg(long, env = "RENDEZVOUS_RATE_BURST", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_burst: u32,

    /// Browser origins allowed to open a WebSocket: a comma list of exact
    /// origins (`https://game.example`), or `*`. Empty (the default): same
    /// origin only (Origin must match Host). Requests without Origin
    /// (native games) always pass.
    #[arg(long, env = "RENDEZVOUS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// How long a connection may take to send a complete HTTP request head
    /// (the WebSocket upgrade included) before it is closed: a client that
    /// connects and says nothing, or sends its headers a byte at a time,
    /// does not hold a socket and a task. Also how long an idle keep-alive
    /// HTTP connection stays open.
    #[arg(long, env = "RENDEZVOUS_HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub http_header_timeout_ms: u64,

    /// How long a graceful shutdown waits for clients to go before it cuts them.
    #[arg(long, env = "RENDEZVOUS_SHUTDOWN_TIMEOUT_MS", default_value_t = 5_000)]
    pub shutdown_timeout_ms: u64,

    /// Bearer token of the admin API (announce, close room, disconnect
    /// player); without one the admin routes answer 404.
    #[arg(long, env = "RENDEZVOUS_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Player authentication: `off` (tokens ignored), `optional` (a token,
    /// when sent, must be valid), `required` (no valid token, no connection).
    #[arg(long, env = "RENDEZVOUS_AUTH", value_enum, default_value_t = AuthMode::Off)]
    pub auth: AuthMode,

    /// HS256 shared secret for player tokens.
    #[arg(long, env = "RENDEZVOUS_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// PEM file of an RSA (RS256) or EC P-256 (ES256) public key for player tokens.
    #[arg(long, env = "RENDEZVOUS_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

    /// Required `aud` claim of player tokens.
    #[arg(long, env = "RENDEZVOUS_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Required `iss` claim of player tokens.
    #[arg(long, env = "RENDEZVOUS_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Cluster mode: the Redis server that several instances share
    /// (`redis://host:port/db`). Without it, everything stays in memory.
    #[arg(long, env = "RENDEZVOUS_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// This instance's name in a cluster (letters, digits, `-`, `_`; at
    /// most 64). Default: a random one per start.
    #[arg(long, env = "RENDEZVOUS_NODE_ID")]
    pub node_id: Option<String>,

    /// Cluster mode: a node that has not beaten (written its liveness to
    /// Redis) for this long is taken for dead, and its players are handed
    /// to the reconnect grace. Nodes beat every third of it.
    #[arg(long, env = "RENDEZVOUS_NODE_TTL_MS", default_value_t = 3_000,
          value_parser = clap::value_parser!(u64).range(300..=600_000))]
    pub node_ttl_ms: u64,

    /// The API key PeerJS clients must give (`key` of `new Peer`) on the
    /// PeerJS endpoint under `/peerjs`.
    #[arg(long, env = "RENDEZVOUS_PEERJS_KEY", default_value = "peerjs")]
    pub peerjs_key: String,

    /// Lets PeerJS clients list every connected peer id
    /// (`GET /peerjs/{key}/peers`, `allow_discovery` of the PeerJS server).
    #[arg(long, env = "RENDEZVOUS_PEERJS_DISCOVERY", value_parser = clap::builder::BoolishValueParser::new())]
    pub peerjs_discovery: bool,

    /// Webhook receivers: every lobby event of `--webhook-events` is POSTed,
    /// signed, to each of these URLs (http or https).
    #[arg(long, env = "RENDEZVOUS_WEBHOOK_URL", value_delimiter = ',')]
    pub webhook_url: Vec<String>,

    /// The HMAC-SHA256 key of `Rendezvous-Signature` (webhooks and the
    /// allocation hook); required with `--webhook-url` or `--allocator-url`.
    #[arg(long, env = "RENDEZVOUS_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,

    /// Event types to send (`room.created`, `player.joined`, `player.left`,
    /// `match.started`, `room.finished`, `room.closed`); default all.
    #[arg(long, env = "RENDEZVOUS_WEBHOOK_EVENTS", value_delimiter = ',')]
    pub webhook_events: Vec<String>,

    /// How long an undelivered event is retried before it is dropped.
    #[arg(
        long,
        env = "RENDEZVOUS_WEBHOOK_RETRY_FOR_MS",
        default_value_t = 3_600_000
    )]
    pub webhook_retry_for_ms: u64,

    /// How long one webhook POST may take (connect, send, answer).
    #[arg(long, env = "RENDEZVOUS_WEBHOOK_TIMEOUT_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub webhook_timeout_ms: u64,

    /// Most webhook events waiting on this node; beyond, new events are
    /// dropped and counted (`rendezvous_webhook_dropped_total`).
    #[arg(long, env = "RENDEZVOUS_WEBHOOK_QUEUE", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub webhook_queue: u64,

    /// The allocation hook: asked (`match.allocate`) for a dedicated game
    /// server each time a room becomes active; its answer rides in
    /// `game_start` as `allocation`.
    #[arg(long, env = "RENDEZVOUS_ALLOCATOR_URL")]
    pub allocator_url: Option<String>,

    /// How long `game_start` waits for the allocator.
    #[arg(long, env = "RENDEZVOUS_ALLOCATOR_TIMEOUT_MS", default_value_t = 3_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub allocator_timeout_ms: u64,

    /// Log format on stderr.
    #[arg(long, env = "RENDEZVOUS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Config {
    /// The defaults, as the binary would use them without flags.
    pub fn defaults() -> Self {
        Config::parse_from(["rendezvous"])
    }

    /// What the webhook and allocation hooks take of the flags.
    pub fn hooks(&self) -> crate::hooks::HooksConfig {
        crate::hooks::HooksConfig {
            webhook_url: self.webhook_url.clone(),
            webhook_secret: self.webhook_secret.clone(),
            webhook_events: self.webhook_events.clone(),
            known_events: crate::lobby::EVENT_TYPES,
            webhook_queue: self.webhook_queue,
            webhook_retry_for_ms: self.webhook_retry_for_ms,
            webhook_timeout_ms: self.webhook_timeout_ms,
            allocator_url: self.allocator_url.clone(),
            allocator_timeout_ms: self.allocator_timeout_ms,
        }
    }

    /// Drops blanks from the URL lists (`--stun-urls ""` means none).
    pub fn normalized(mut self) -> Self {
        for list in [
            &mut self.stun_urls,
            &mut self.turn_urls,
            &mut self.allowed_origins,
            &mut self.webhook_url,
            &mut self.webhook_events,
        ] {
            list.retain(|u| !u.trim().is_empty());
            for u in list.iter_mut() {
                *u = u.trim().to_string();
            }
        }
        self
    }

    /// The authenticator of `--auth` and the JWT flags; an error names the
    /// problem (missing key, unreadable PEM...) for a startup message.
    pub fn authenticator(&self) -> Result<Authenticator, String> {
        let pem = match &self.jwt_public_key {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| format!("--jwt-public-key {}: {e}", path.display()))?,
            ),
            None => None,
        };
        Authenticator::new(AuthSettings {
            mode: self.auth,
            jwt_secret: self.jwt_secret.clone(),
            jwt_public_key_pem: pem,
            audience: self.jwt_audience.clone(),
            issuer: self.jwt_issuer.clone(),
            leeway_s: 30,
        })
        .map_err(|e| format!("auth configuration: {e}"))
    }

    pub fn lobby(&self) -> LobbyConfig {
        LobbyConfig {
            max_players: self.max_players,
            max_rooms: self.max_rooms as usize,
            reconnect_grace: Duration::from_millis(self.reconnect_grace_ms),
            finished_room_ttl: Duration::from_millis(self.finished_room_ttl_ms),
            room_idle_timeout: Duration::from_millis(self.room_idle_timeout_ms),
            ticket_ttl: Duration::from_millis(self.ticket_ttl_ms),
            ticket_fill_after: Duration::from_millis(self.ticket_fill_after_ms),
        }
    }
}
