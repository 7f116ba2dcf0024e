//! The one seam between the shell (sessions, HTTP API, shutdown, ticker)
//! and the lobby state: [`Backend`], chosen once at start-up, with an
//! in-memory implementation (the `lobby` engine under one lock) and a
//! Redis one (cluster mode, the store's Lua engine). Session and HTTP code
//! never ask which one runs.
//!
//! Requests are checked once, by [`validate::validate`], in one order,
//! before either engine sees them: the same request gets the same error
//! code and message whatever the store. The engines decide only what needs
//! state.

pub(crate) mod conns;
mod ctx;
pub(crate) mod memory;
pub(crate) mod outbox;
pub mod redis;
pub mod validate;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use crate::auth::Identity;
use conns::ConnTable;
pub(crate) use ctx::TICK;
pub use ctx::{Ctx, DropInNotices};
use redis::store::StoreError;

use crate::protocol::{LobbyRequest, ProtoError, RoomInfo, RoomStatus, Stats};

/// A connection asking to be registered.
pub(crate) struct Registration {
    pub conn_id: u64,
    pub tx: crate::backend::outbox::Outbox,
    pub kill: CancellationToken,
    pub name: String,
    pub resume: Option<String>,
    pub identity: Option<Identity>,
}

impl Registration {
    /// The JWT roles of the player (for `join_room`'s access lists).
    pub fn roles(&self) -> Vec<String> {
        self.identity
            .as_ref()
            .map(|i| i.roles.clone())
            .unwrap_or_default()
    }
}

/// A registered connection: its player and, in the Redis store, the
/// epoch that tells it apart from later connections of the same player.
#[derive(Debug, Clone)]
pub(crate) struct Registered {
    pub player_id: String,
    pub epoch: u64,
}

/// Who sends a request.
pub(crate) struct Caller<'a> {
    pub player_id: &'a str,
    pub roles: &'a [String],
}

/// How a request was answered.
pub(crate) enum Reply {
    /// The backend queued the `ok` itself, in order with the change's
    /// events.
    Sent,
    /// The session replies `ok` with these fields.
    Fields(Value),
}

/// A player's presence (`GET /api/players/{id}`).
pub struct Presence {
    pub name: String,
    pub connected: bool,
    pub room_id: Option<String>,
    pub last_seen: DateTime<Utc>,
}

/// Sizes of everything the lobby and the connection table keep, for "nothing
/// left behind" checks in tests. In the Redis store, counts of keys.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Footprint {
    pub rooms: usize,
    pub codes: usize,
    pub players: usize,
    pub index_buckets: usize,
    pub listed: usize,
    pub tokens: usize,
    /// Pending timers (idle and finished rooms, held seats).
    pub timers: usize,
    /// Queues of events kept for held seats.
    pub pending: usize,
    pub conns: usize,
    pub room_subs: usize,
    /// Cluster mode: the rooms and players a node keeps to route signals.
    pub routes: usize,
    /// Queued `queue_match` tickets.
    pub tickets: usize,
    /// Parties alive.
    pub parties: usize,
}

impl Footprint {
    /// True when nothing is left at all.
    pub fn is_empty(&self) -> bool {
        *self == Footprint::default()
    }
}

/// The store of cluster mode when `--redis-url` is given: connected lazily,
/// so a Redis that is down at start-up only makes the node unavailable
/// until it is up.
pub fn open_store(
    cfg: &crate::config::Config,
) -> Result<Option<Arc<crate::backend::redis::store::Store>>, String> {
    let Some(url) = &cfg.redis_url else {
        return Ok(None);
    };
    let node = cfg
        .node_id
        .clone()
        .unwrap_or_else(|| format!("n-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
    if !crate::backend::redis::store::valid_node_id(&node) {
        return Err(format!(
            "--node-id {node:?}: use 1 to 64 letters, digits, '-' or '_' (not \"list\" or \"all\")"
        ));
    }
    Ok(Some(Arc::new(crate::backend::redis::store::Store::new(
        url, node,
    )?)))
}

/// The lobby state: in this process, or in Redis.
// One per server, never moved after start-up: boxing the larger variant
// would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Backend {
    Memory(Arc<memory::Memory>),
    Redis(Arc<redis::Cluster>),
}

impl Backend {
    /// The Redis backend over `store`, or the in-memory one without.
    pub fn new(ctx: &Ctx, store: Option<Arc<redis::store::Store>>) -> Backend {
        match store {
            None => Backend::Memory(Arc::new(memory::Memory::new(
                &ctx.cfg,
                ctx.metrics.clone(),
                ctx.hooks.clone(),
            ))),
            Some(store) => {
                Backend::Redis(Arc::new(redis::Cluster::new(store, ctx.metrics.clone())))
            }
        }
    }

    /// This server's connection table, under the backend's lock.
    pub fn table<R>(&self, f: impl FnOnce(&mut ConnTable) -> R) -> R {
        match self {
            Backend::Memory(m) => m.table(f),
            Backend::Redis(c) => c.table(f),
        }
    }

    /// Whether requests can be served now (Redis reachable and notices
    /// arriving, in cluster mode).
    pub fn available(&self) -> bool {
        match self {
            Backend::Memory(_) => true,
            Backend::Redis(c) => c.available(),
        }
    }

    // The cluster's futures (Redis round trips) are boxed: a session task
    // holds the largest future it may await, and an idle socket should not
    // pay for a Redis call's state machine it is not in.

    /// Waits (up to 2 s) until requests can be served, so a node whose
    /// Redis is there serves from its first request.
    pub async fn ready(&self) {
        if let Backend::Redis(c) = self {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while !c.available() && std::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            tracing::info!(node = %c.store.node, available = c.available(), "cluster mode");
        }
    }

    /// Starts the backend's housekeeping tasks (timers, stats pushes; in
    /// cluster mode also the notice subscription and liveness beats).
    pub fn spawn_tasks(&self, ctx: &Arc<Ctx>) {
        match self {
            Backend::Memory(m) => {
                if ctx.hooks.allocator_on() {
                    tokio::spawn(memory::Memory::run_allocations(ctx.clone(), m.clone()));
                }
                let ctx = ctx.clone();
                let m = m.clone();
                tokio::spawn(async move {
                    let mut interval = tokio::time::interval(crate::backend::TICK);
                    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            _ = interval.tick() => m.tick(&ctx),
                            _ = ctx.shutdown.cancelled() => break,
                        }
                    }
                });
            }
            Backend::Redis(c) => redis::Cluster::spawn_tasks(ctx, c),
        }
    }

    pub async fn register(&self, ctx: &Ctx, reg: Registration) -> Result<Registered, ProtoError> {
        match self {
            Backend::Memory(m) => Ok(m.register(ctx, reg)),
            Backend::Redis(c) => Box::pin(c.register(ctx, reg)).await,
        }
    }

    pub async fn unregister(&self, ctx: &Ctx, who: &Registered, conn_id: u64) {
        match self {
            Backend::Memory(m) => m.unregister(&who.player_id, conn_id),
            Backend::Redis(c) => Box::pin(c.unregister(ctx, who, conn_id)).await,
        }
    }

    /// Runs a lobby request that passed [`validate::validate`].
    pub async fn request(
        &self,
        ctx: &Ctx,
        caller: &Caller<'_>,
        rid: &Value,
        request: LobbyRequest,
    ) -> Result<Reply, ProtoError> {
        match self {
            Backend::Memory(m) => m.request(ctx, caller, rid, request),
            Backend::Redis(c) => Box::pin(c.request(ctx, caller, rid, request)).await,
        }
    }

    /// The relay of a signal when it needs no wait (memory mode, where
    /// `relay` would not wait either); the frame back: call `relay`.
    pub fn relay_now(
        &self,
        ctx: &Ctx,
        me: &str,
        to: &str,
        frame: Utf8Bytes,
    ) -> Result<Result<(), ProtoError>, Utf8Bytes> {
        match self {
            Backend::Memory(m) => Ok(m.relay(ctx, me, to, frame)),
            Backend::Redis(_) => Err(frame),
        }
    }

    /// Relays a signal frame built by the fast path (`crate::relay`) from
    /// `me` to `to`, a member of the same room. `confirm`: the sender waits
    /// for an `ok` (it gave a `rid`), so the relay must be done, not only
    /// queued (cluster mode batches the others).
    pub async fn relay(
        &self,
        ctx: &Ctx,
        me: &str,
        to: &str,
        frame: Utf8Bytes,
        confirm: bool,
    ) -> Result<(), ProtoError> {
        match self {
            Backend::Memory(m) => m.relay(ctx, me, to, frame),
            Backend::Redis(c) => Box::pin(c.relay(me, to, frame.as_str(), confirm)).await,
        }
    }

    /// Relays a `send` message (1.2): `frame` is the `message` event,
    /// `from` set; `confirm` when the sender waits for its `ok`. The number
    /// of recipients.
    pub async fn send_message(
        &self,
        me: &str,
        to: Option<&str>,
        frame: Utf8Bytes,
        confirm: bool,
    ) -> Result<u64, ProtoError> {
        match self {
            Backend::Memory(m) => m.send_message(me, to, frame),
            Backend::Redis(c) => Box::pin(c.send_message(me, to, frame.as_str(), confirm)).await,
        }
    }

    pub async fn list_rooms(
        &self,
        status: RoomStatus,
        mode: Option<&str>,
        limit: u64,
    ) -> Result<Vec<RoomInfo>, StoreError> {
        match self {
            Backend::Memory(m) => Ok(m.list_rooms(status, mode, limit)),
            Backend::Redis(c) => Box::pin(c.list_rooms(status, mode, limit)).await,
        }
    }

    pub async fn subscribe_rooms(
        &self,
        player_id: &str,
        mode: Option<String>,
    ) -> Result<Vec<RoomInfo>, StoreError> {
        match self {
            Backend::Memory(m) => Ok(m.subscribe_rooms(player_id, mode)),
            Backend::Redis(c) => Box::pin(c.subscribe_rooms(player_id, mode)).await,
        }
    }

    pub fn unsubscribe_rooms(&self, player_id: &str) {
        match self {
            Backend::Memory(m) => m.unsubscribe_rooms(player_id),
            Backend::Redis(c) => c.unsubscribe_rooms(player_id),
        }
    }

    /// Exact stats (cluster-wide in cluster mode), without `uptime_s`.
    pub async fn stats(&self) -> Result<Stats, StoreError> {
        match self {
            Backend::Memory(m) => Ok(m.stats()),
            Backend::Redis(c) => Box::pin(c.stats()).await,
        }
    }

    /// Stats without waiting: exact in memory, the last read in cluster
    /// mode (at most a beat old).
    pub fn stats_now(&self) -> Stats {
        match self {
            Backend::Memory(m) => m.stats(),
            Backend::Redis(c) => c.stats_cached(),
        }
    }

    /// Connections of this server (not of the cluster).
    pub fn connections_here(&self) -> u64 {
        self.table(|t| t.conns.len() as u64)
    }

    pub async fn room(&self, id: &str) -> Result<Option<RoomInfo>, StoreError> {
        match self {
            Backend::Memory(m) => Ok(m.room(id)),
            Backend::Redis(c) => Box::pin(c.room(id)).await,
        }
    }

    pub async fn player(&self, id: &str) -> Result<Option<Presence>, StoreError> {
        match self {
            Backend::Memory(m) => Ok(m.player(id)),
            Backend::Redis(c) => Box::pin(c.player(id)).await,
        }
    }

    /// Admin: an event text for every connection (of every node).
    pub async fn announce(&self, text: &str) -> Result<(), StoreError> {
        match self {
            Backend::Memory(m) => {
                m.announce(&Utf8Bytes::from(text.to_string()));
                Ok(())
            }
            Backend::Redis(c) => Box::pin(c.announce(text)).await,
        }
    }

    /// Admin: closes a room; members get `player_left` reason `closed`.
    pub async fn close_room(&self, room_id: &str) -> Result<bool, StoreError> {
        match self {
            Backend::Memory(m) => Ok(m.close_room(room_id)),
            Backend::Redis(c) => Box::pin(c.close_room(room_id)).await,
        }
    }

    /// Admin: gives up the player's seat at once (`player_left` reason
    /// `closed`) and closes its connection with 1008.
    pub async fn disconnect_player(&self, player_id: &str) -> Result<bool, StoreError> {
        match self {
            Backend::Memory(m) => Ok(m.disconnect_player(player_id)),
            Backend::Redis(c) => Box::pin(c.disconnect_player(player_id)).await,
        }
    }

    /// Graceful shutdown, after the sessions were closed: in cluster mode
    /// the seats of this node's players are held for their return
    /// elsewhere.
    pub async fn hand_over(&self, ctx: &Ctx) {
        if let Backend::Redis(c) = self {
            c.hand_over(ctx).await;
        }
    }

    /// Recounts everything and compares it with the derived data.
    pub async fn check_invariants(&self) -> Result<(), String> {
        match self {
            Backend::Memory(m) => m.check_invariants(),
            Backend::Redis(c) => Box::pin(c.check_invariants()).await,
        }
    }

    pub async fn footprint(&self) -> Result<Footprint, String> {
        match self {
            Backend::Memory(m) => Ok(m.footprint()),
            Backend::Redis(c) => Box::pin(c.footprint()).await,
        }
    }
}
