//! The table of live connections of this server, whatever the backend:
//! each player's outgoing queue and kill switch, its stats subscription and
//! its room-list subscription.
//!
//! It is owned by the backend, inside the lock that also guards the lobby
//! state the backend delivers from (see `crate::backend`), so that a reply
//! and the events of the same change are queued in state order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::outbox::Outbox;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// A live connection, as the rest of the server sees it.
pub(crate) struct Conn {
    /// Tells a connection apart from a later one of the same player.
    pub id: u64,
    pub tx: Outbox,
    /// Cancelled to close the connection (slow client, takeover, shutdown).
    pub kill: CancellationToken,
    pub stats: Option<StatsSub>,
}

pub(crate) struct StatsSub {
    pub interval: Duration,
    pub next: Instant,
}

/// Queues a text frame on a connection. A queue that is full (a slow client)
/// or closed (going away) must not hold anyone up: the connection is closed,
/// and a slow client counted once.
pub(crate) fn queue(tx: &Outbox, kill: &CancellationToken, text: Utf8Bytes, metrics: &Metrics) {
    if tx.try_send(Message::Text(text)).is_ok() {
        metrics.messages_out.increment(1);
    } else if !kill.is_cancelled() {
        kill.cancel();
        metrics.slow_clients_closed.increment(1);
    }
}

/// A close frame with a fixed reason.
pub(crate) fn close_frame(code: CloseCode, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

/// The close frame of a connection taken over by a newer one of the same
/// player (4001 "replaced").
pub(crate) fn replaced() -> Message {
    close_frame(CloseCode::Library(4001), "replaced")
}

/// The close frame of a player disconnected by the admin API.
pub(crate) fn kicked_by_admin() -> Message {
    close_frame(CloseCode::Policy, "disconnected by the server")
}

/// Live connections by player id, with their subscriptions.
pub(crate) struct ConnTable {
    /// foldhash (seeded per process): looked up for every relayed signal.
    pub conns: foldhash::HashMap<String, Conn>,
    /// Subscribers of the room list, with their optional `mode`.
    pub room_subs: HashMap<String, Option<String>>,
    pub metrics: Arc<Metrics>,
}

impl ConnTable {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        ConnTable {
            conns: foldhash::HashMap::default(),
            room_subs: HashMap::new(),
            metrics,
        }
    }

    /// Queues a frame it is given (no copy of its handle: the relay's
    /// own frame goes straight into the queue); gives it back when the
    /// player has no connection here.
    pub fn send_owned(&self, player_id: &str, text: Utf8Bytes) -> Result<(), Utf8Bytes> {
        match self.conns.get(player_id) {
            Some(conn) => {
                queue(&conn.tx, &conn.kill, text, &self.metrics);
                Ok(())
            }
            None => Err(text),
        }
    }

    /// Queues a text frame shared with other recipients for a connected
    /// player; false when it has no connection here.
    pub fn send(&self, player_id: &str, text: &Utf8Bytes) -> bool {
        self.send_owned(player_id, text.clone()).is_ok()
    }

    /// Queues a room-list change for the subscribers of its mode.
    pub fn send_listing(&self, mode: &str, text: &Utf8Bytes) {
        for (pid, m) in &self.room_subs {
            if m.as_deref().is_none_or(|m| m == mode) {
                self.send(pid, text);
            }
        }
    }

    /// Queues a text frame for every connection.
    pub fn send_all(&self, text: &Utf8Bytes) {
        for conn in self.conns.values() {
            queue(&conn.tx, &conn.kill, text.clone(), &self.metrics);
        }
    }

    /// Whether this exact connection is the player's live one.
    pub fn is_current(&self, player_id: &str, conn_id: u64) -> bool {
        self.conns.get(player_id).map(|c| c.id) == Some(conn_id)
    }

    /// Ends a player's connection from the server side: it leaves the
    /// table (with its room-list subscription) and gets `frame`, which the
    /// connection writes before closing. Nothing when it has none.
    pub fn close_conn(&mut self, player_id: &str, frame: Message) {
        if let Some(old) = self.conns.remove(player_id) {
            let _ = old.tx.try_send(frame);
            self.room_subs.remove(player_id);
        }
    }

    /// Closes every connection with `frame` (the lobby state they knew is
    /// gone or unreachable: they reconnect and resume).
    pub fn close_all(&mut self, frame: Message) {
        self.room_subs.clear();
        for (_, c) in self.conns.drain() {
            let _ = c.tx.try_send(frame.clone());
        }
    }

    /// Players whose stats push is due, their next push scheduled.
    pub fn stats_due(&mut self, now: Instant) -> Vec<String> {
        let mut due = Vec::new();
        for (pid, c) in self.conns.iter_mut() {
            if let Some(sub) = c.stats.as_mut().filter(|s| s.next <= now) {
                sub.next = now + sub.interval;
                due.push(pid.clone());
            }
        }
        due
    }

    /// Sets or clears a player's stats subscription.
    pub fn subscribe_stats(&mut self, player_id: &str, interval: Option<Duration>) {
        if let Some(conn) = self.conns.get_mut(player_id) {
            conn.stats = interval.map(|interval| StatsSub {
                interval,
                next: Instant::now() + interval,
            });
        }
    }

    /// Senders and kill switches of every connection (for shutdown).
    pub fn handles(&self) -> Vec<(Outbox, CancellationToken)> {
        self.conns
            .values()
            .map(|c| (c.tx.clone(), c.kill.clone()))
            .collect()
    }
}
