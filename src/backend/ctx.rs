//! What the backend needs of the server around it, handed down once at
//! start-up: the configuration, the metrics, the hooks, the shutdown
//! signal, and a sink for the drop-in endpoints' notices. The backend
//! never sees the shell's `App` (layers point one way: server -> backend).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::hooks::Hooks;
use crate::metrics::Metrics;
use crate::protocol::{Event, PartyInfo, RoomInfo};

/// How often timers (held seats, finished and idle rooms) and stats
/// subscriptions are looked at.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// Where notices for the shell's drop-in endpoints go (cluster mode: a
/// PeerJS message relayed by another node for a peer connected here).
pub trait DropInNotices: Send + Sync {
    /// A PeerJS message for `to` (`text`), and/or the close of its
    /// connection `close` (taken over on another node).
    fn peerjs(&self, to: &str, text: Option<String>, close: Option<u64>);
}

/// The backend's narrow view of the server.
pub struct Ctx {
    pub cfg: Config,
    pub metrics: Arc<Metrics>,
    /// Webhooks and the allocation hook.
    pub hooks: Arc<Hooks>,
    /// Cancelled last on shutdown: the ticker and the backend's tasks stop.
    pub shutdown: CancellationToken,
    pub started: Instant,
    pub(crate) dropins: Arc<dyn DropInNotices>,
}

impl Ctx {
    /// The `welcome` event text of a registered connection: the one place
    /// it is built, for both backends.
    pub(crate) fn welcome(
        &self,
        player_id: &str,
        name: &str,
        token: String,
        resumed: bool,
        (room, party): (Option<RoomInfo>, Option<PartyInfo>),
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
            features: crate::protocol::FEATURES
                .iter()
                .map(|f| f.to_string())
                .collect(),
            party,
        }))
        .to_json()
    }
}
