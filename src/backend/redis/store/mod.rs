//! Cluster mode: several instances share one lobby through Redis.
//!
//! Rooms, seats, players, join codes, kicked lists, the matchmaking index
//! (sorted sets keyed by mode and size, scored by creation order) and the
//! counters live in Redis. Every change is one call of one Lua script
//! (`lobby.lua`, loaded once and called by SHA), so the capacity checks and
//! the seat they grant happen atomically whatever the interleaving of nodes.
//!
//! The script also sends the events: it publishes a [`notice`] to the
//! channel of each node with a recipient (the requester's reply included),
//! in the order the state changed, and appends it to the pending list of a
//! recipient whose seat is held. Each node renders notices for its own
//! connections ([`notice::Notice::render`]). This module is the store's
//! client; the server's glue is in `server::cluster`.

pub mod notice;
pub mod ops;
pub mod peerjs;
pub(crate) mod resp;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::Deserialize;
use serde_json::Value;

use crate::protocol::{ErrorCode, JsonObject, ProtoError, Stats};

/// Prefix of every key and channel.
pub const PREFIX: &str = "rv:";

/// The channels every node listens to besides its own (`lobby.lua` names
/// them too): room-list changes and announcements. No node may be named
/// after them.
pub const LIST_CHANNEL: &str = "list";
pub const ALL_CHANNEL: &str = "all";

/// The store's name of a channel: a node's own (named after the node) or
/// one of the shared ones.
pub fn channel(name: &str) -> String {
    format!("{PREFIX}ch:{name}")
}

const SCRIPT: &str = include_str!("lobby.lua");

/// Why a store call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Redis cannot be reached (or answered too late).
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The operation was refused (`room_full`, `not_host`...).
    #[error("{0}")]
    Refused(ProtoError),
}

impl From<StoreError> for ProtoError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Refused(p) => p,
            StoreError::Unavailable(m) => ProtoError::new(
                ErrorCode::Internal,
                format!("the store is unavailable ({m}); try again shortly"),
            ),
        }
    }
}

/// The client of the shared store.
pub struct Store {
    pub node: String,
    pub channel: String,
    client: redis::Client,
    conn: ConnectionManager,
    script: redis::Script,
    /// The last call reached Redis.
    up: AtomicBool,
    /// The notice subscription is live.
    pub(crate) subscribed: AtomicBool,
    /// Rooms this node's calls started while the allocation hook is on:
    /// their `game_start` waits for the allocator (see `announce`).
    pub(crate) starts: parking_lot::Mutex<Vec<String>>,
    pub(crate) starts_ready: tokio::sync::Notify,
}

#[derive(Deserialize)]
struct ScriptReply {
    #[serde(default)]
    ok: Option<Value>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    m: Option<String>,
    /// Rooms the call started (allocation hook on).
    #[serde(default, deserialize_with = "notice::list")]
    s: Vec<String>,
}

/// What `beat` reports.
#[derive(Debug, Deserialize)]
pub struct Beat {
    pub gen: String,
    #[serde(default)]
    pub reaped: u64,
    /// This node was not registered: first beat, or the others took it for
    /// dead (its players are held or gone), or Redis lost its data.
    #[serde(default)]
    pub fresh: bool,
}

/// A node id: letters, digits, `-` and `_`, 1 to 64 characters; not
/// `list` or `all`, which name the channels every node listens to (a node
/// of that name would take them for its own).
pub fn valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id != LIST_CHANNEL
        && id != ALL_CHANNEL
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Store {
    /// Sets up the (lazy) connection; nothing is sent yet, so a Redis that
    /// is down at startup only makes the node unavailable until it is up.
    pub fn new(url: &str, node: String) -> Result<Store, String> {
        use redis::IntoConnectionInfo;
        // Nagle's algorithm would hold small commands back behind unacked
        // ones; every lobby operation is one small command.
        let info = url
            .into_connection_info()
            .map_err(|e| format!("--redis-url: {e}"))?
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info).map_err(|e| format!("--redis-url: {e}"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(1000)))
            .set_response_timeout(Some(Duration::from_millis(2000)))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(1000));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| format!("--redis-url: {e}"))?;
        Ok(Store {
            channel: channel(&node),
            node,
            client,
            conn,
            script: redis::Script::new(SCRIPT),
            up: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            starts: parking_lot::Mutex::new(Vec::new()),
            starts_ready: tokio::sync::Notify::new(),
        })
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// A connection of its own (see [`resp`]), for the signal batches and
    /// the node's subscription.
    pub(crate) async fn raw(&self) -> std::io::Result<resp::Conn> {
        resp::Conn::connect(self.client.get_connection_info()).await
    }

    /// Whether the node can serve: Redis answers and notices arrive.
    pub fn available(&self) -> bool {
        self.up.load(Ordering::Relaxed) && self.subscribed.load(Ordering::Relaxed)
    }

    fn mark(&self, up: bool) {
        if self.up.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!(node = %self.node, "store reachable");
            } else {
                tracing::warn!(node = %self.node, "store unreachable");
            }
        }
    }

    async fn invoke<T: redis::FromRedisValue, O: ops::Op>(
        &self,
        args: &O,
    ) -> Result<T, StoreError> {
        let op = O::NAME;
        let args = serde_json::to_string(args).map_err(|e| {
            StoreError::Refused(ProtoError::new(
                ErrorCode::Internal,
                format!("cannot encode the arguments of {op}: {e}"),
            ))
        })?;
        let mut inv = self.script.prepare_invoke();
        inv.arg(op).arg(&self.node).arg(args);
        let mut conn = self.conn.clone();
        match inv.invoke_async::<T>(&mut conn).await {
            Ok(v) => {
                self.mark(true);
                Ok(v)
            }
            Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => {
                self.mark(false);
                Err(StoreError::Unavailable(e.to_string()))
            }
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading) => {
                Err(StoreError::Unavailable(e.to_string()))
            }
            Err(e) => {
                tracing::error!(op, "store script failed: {e}");
                Err(StoreError::Refused(ProtoError::new(
                    ErrorCode::Internal,
                    format!("store operation {op} failed"),
                )))
            }
        }
    }

    /// Runs one operation of the script; its `ok` value or the refusal.
    pub async fn run<O: ops::Op>(&self, args: &O) -> Result<Value, StoreError> {
        let op = O::NAME;
        let text: String = self.invoke(args).await?;
        let reply: ScriptReply = serde_json::from_str(&text).map_err(|e| {
            StoreError::Refused(ProtoError::new(
                ErrorCode::Internal,
                format!("bad store reply to {op}: {e}"),
            ))
        })?;
        if !reply.s.is_empty() {
            self.starts.lock().extend(reply.s);
            self.starts_ready.notify_one();
        }
        match (reply.ok, reply.e) {
            (_, Some(code)) => {
                let code = ErrorCode::from_wire(&code).unwrap_or(ErrorCode::Internal);
                Err(StoreError::Refused(ProtoError::new(
                    code,
                    reply.m.unwrap_or_default(),
                )))
            }
            (Some(v), None) => Ok(v),
            (None, None) => Ok(Value::Null),
        }
    }

    /// Raw room records of a listing (`w` waiting or `a` active).
    pub async fn list(
        &self,
        which: &str,
        mode: &str,
        limit: u64,
    ) -> Result<Vec<String>, StoreError> {
        self.invoke(&ops::ListRooms { which, mode, limit }).await
    }

    /// Recounts the whole lobby in Redis against its derived data (for
    /// tests: it scans every key).
    pub async fn recount(&self) -> Result<(), StoreError> {
        self.run(&ops::CheckInvariants {}).await.map(|_| ())
    }

    /// Sizes of the lobby's keys (for tests: it scans every key).
    pub async fn footprint(&self) -> Result<Value, StoreError> {
        self.run(&ops::Footprint {}).await
    }

    /// The connection, for the hooks' stream reader (never a blocking
    /// command on it: it is shared with every other call).
    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// One room record, if it exists.
    pub async fn room(&self, id: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(format!("{PREFIX}room:{id}"))
            .query_async(&mut conn)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// A player's presence: (name, connected, room id, last seen ms).
    pub async fn player(
        &self,
        id: &str,
    ) -> Result<Option<(String, bool, Option<String>, i64)>, StoreError> {
        let mut conn = self.conn.clone();
        let v: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(format!("{PREFIX}pl:{id}"))
            .arg(&["name", "conn", "room", "seen"])
            .query_async(&mut conn)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let Some(name) = v.first().cloned().flatten() else {
            return Ok(None);
        };
        let connected = v.get(1).cloned().flatten().as_deref() == Some("1");
        let room = v.get(2).cloned().flatten().filter(|r| !r.is_empty());
        let seen = v
            .get(3)
            .cloned()
            .flatten()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok(Some((name, connected, room, seen)))
    }

    /// Cluster-wide counters; `connections` summed over live nodes.
    pub async fn stats(&self) -> Result<Stats, StoreError> {
        let v = self.run(&ops::Stats {}).await?;
        let n = |k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0).max(0) as u64;
        let (w, a, f) = (n("waiting"), n("active"), n("finished"));
        Ok(Stats {
            total_rooms: w + a + f,
            waiting_rooms: w,
            active_rooms: a,
            finished_rooms: f,
            total_players: n("seats"),
            connections: n("connections"),
            players_waiting: n("seats_waiting"),
            held_seats: n("held"),
            matches_started: n("matches_started"),
            tickets_queued: n("tickets_queued"),
            parties: n("parties"),
            signals_relayed: n("signals_relayed"),
            messages_relayed: n("messages_relayed"),
            uptime_s: 0,
        })
    }

    /// Whether Redis answers a PING within half a second.
    pub async fn ping(&self) -> bool {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        matches!(
            tokio::time::timeout(Duration::from_millis(500), ping).await,
            Ok(Ok(_))
        )
    }

    /// Adds `n` to the lobby stat `field` (`signals_relayed`, or 1.2's
    /// `messages_relayed`: what a node relayed without a script).
    pub async fn add_stat(&self, field: &str, n: u64) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("HINCRBY")
            .arg(format!("{PREFIX}stats"))
            .arg(field)
            .arg(n)
            .query_async::<i64>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// Publishes a message on a channel (announcements, signals).
    pub async fn publish(&self, channel: &str, text: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(text)
            .query_async::<i64>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }
}

/// The matchmaking attributes of room data (or of `find_match` filters),
/// as the script's bucket-name suffixes: one `"\x1fkey\x1fvalue JSON"` per
/// scalar entry, the same keys as the in-memory index (so `1` and `"1"`
/// stay apart). The script puts `mode\x1fmax_players` in front.
pub fn attrs_json(data: &JsonObject) -> String {
    let attrs: Vec<String> = data
        .iter()
        .filter(|(_, v)| crate::lobby::is_scalar(v))
        .map(|(k, v)| format!("\u{1f}{k}\u{1f}{v}"))
        .collect();
    serde_json::to_string(&attrs).unwrap_or_else(|_| "[]".into())
}

#[cfg(test)]
mod tests {
    use super::valid_node_id;

    #[test]
    fn node_ids_are_short_plain_names_other_than_the_shared_channels() {
        let longest = "n".repeat(64);
        for ok in ["a", "bench-a", "n_1", "List", "allx", longest.as_str()] {
            assert!(valid_node_id(ok), "{ok}");
        }
        let too_long = "n".repeat(65);
        for bad in [
            "",
            "list",
            "all",
            "a b",
            "a:b",
            "é",
            "n.1",
            too_long.as_str(),
        ] {
            assert!(!valid_node_id(bad), "{bad}");
        }
    }
}
