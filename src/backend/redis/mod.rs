//! The Redis backend (cluster mode): the lobby lives in Redis and is
//! changed by the store's script (`store`); this node keeps only
//! its own connections.
//!
//! The order of events holds across nodes because the script publishes
//! them: a node's channel carries notices (replies included) in the order
//! the lobby changed, and `notices` renders them one at a time into the
//! connections' queues, under this backend's lock.

mod commands;
mod hooks;
mod liveness;
mod notices;
mod relay;
mod routes;
pub mod store;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::{Caller, Footprint, Presence, Registered, Registration, Reply};
use crate::backend::conns::ConnTable;
use crate::backend::redis::store::notice::RoomRec;
use crate::backend::redis::store::{attrs_json, ops, Store, StoreError};
use crate::backend::Ctx;
use crate::protocol::{self, ErrorCode, LobbyRequest, ProtoError, RoomInfo, RoomStatus, Stats};

/// A connection waiting for its `hello` notice.
pub(crate) struct Joining {
    pub tx: crate::backend::outbox::Outbox,
    pub kill: tokio_util::sync::CancellationToken,
    pub done: tokio::sync::oneshot::Sender<(String, u64)>,
}

/// This node's share of the state, under one lock.
/// Longest wait for the notice that carries a request's reply.
const REPLY_WAIT: Duration = Duration::from_secs(5);

pub(crate) struct State {
    pub table: ConnTable,
    /// Connections waiting for their registration notice.
    pub joining: HashMap<u64, Joining>,
    /// Events caught for players whose connection ended here until the
    /// store confirms their seat is held (then they go to the store's
    /// pending list).
    pub departed: HashMap<String, Vec<Utf8Bytes>>,
    /// Rooms of this node's players, to relay signals without a script.
    pub routes: routes::Routes,
    /// Requests whose `ok` comes through a notice, by player (a session
    /// has one request in flight): told when the notice queued the reply.
    pub replies: HashMap<String, tokio::sync::oneshot::Sender<()>>,
}

pub(crate) struct Cluster {
    pub store: Arc<Store>,
    pub state: Mutex<State>,
    /// The last cluster-wide stats read (for `/metrics` and the cheap
    /// `App::stats`).
    cached: Mutex<Stats>,
    /// Signals relayed without a script, not yet added to the store's
    /// `signals_relayed` (added before every stats read and every beat).
    unflushed_signals: Arc<std::sync::atomic::AtomicU64>,
    /// `send` messages (1.2) relayed without a script, not yet added to
    /// the store's `messages_relayed` (flushed with the signals).
    unflushed_messages: Arc<std::sync::atomic::AtomicU64>,
    /// Publishes routed signals in batches (started with the tasks).
    publisher: std::sync::OnceLock<relay::Publisher>,
}

fn codes() -> Vec<String> {
    (0..4).map(|_| crate::lobby::new_code_text()).collect()
}

/// A fresh room id with candidate join codes, for a room the script may
/// create.
pub(super) fn new_room() -> ops::NewRoom {
    ops::NewRoom {
        id: uuid::Uuid::new_v4().to_string(),
        codes: codes(),
    }
}

pub(super) fn now() -> String {
    protocol::ts(&chrono::Utc::now())
}

fn raw(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

fn attrs(data: &protocol::JsonObject) -> Vec<String> {
    serde_json::from_str(&attrs_json(data)).unwrap_or_default()
}

impl Cluster {
    pub fn new(store: Arc<Store>, metrics: Arc<crate::metrics::Metrics>) -> Self {
        Cluster {
            store,
            state: Mutex::new(State {
                table: ConnTable::new(metrics),
                joining: HashMap::new(),
                departed: HashMap::new(),
                replies: HashMap::new(),
                routes: routes::Routes::default(),
            }),
            unflushed_signals: Arc::default(),
            unflushed_messages: Arc::default(),
            publisher: std::sync::OnceLock::new(),
            cached: Mutex::new(Stats::default()),
        }
    }

    pub fn table<R>(&self, f: impl FnOnce(&mut ConnTable) -> R) -> R {
        f(&mut self.state.lock().table)
    }

    pub fn available(&self) -> bool {
        self.store.available()
    }

    /// Starts the notice subscription, the liveness beats and the timers.
    pub fn spawn_tasks(ctx: &Arc<Ctx>, this: &Arc<Cluster>) {
        let unflushed = this.unflushed_signals.clone();
        let messages = this.unflushed_messages.clone();
        let _ = this
            .publisher
            .set(relay::Publisher::start(this.store.clone(), move |n, m| {
                unflushed.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                messages.fetch_add(m, std::sync::atomic::Ordering::Relaxed);
            }));
        tokio::spawn(notices::run_subscriber(ctx.clone(), this.clone()));
        tokio::spawn(liveness::run_beats(ctx.clone(), this.clone()));
        tokio::spawn(liveness::run_ticks(ctx.clone(), this.clone()));
        if ctx.hooks.webhooks_on() {
            tokio::spawn(hooks::run_webhooks(ctx.clone(), this.clone()));
        }
        if ctx.hooks.allocator_on() {
            tokio::spawn(hooks::run_allocations(ctx.clone(), this.clone()));
        }
    }

    /// Registers a new connection through the store: the player id (fresh,
    /// resumed or the JWT's) and the epoch that tells this connection
    /// apart. `welcome` and the held events are queued when the
    /// registration's notice arrives.
    pub async fn register(&self, ctx: &Ctx, reg: Registration) -> Result<Registered, ProtoError> {
        let (done, done_rx) = tokio::sync::oneshot::channel();
        let conn_id = reg.conn_id;
        self.state.lock().joining.insert(
            conn_id,
            Joining {
                tx: reg.tx,
                kill: reg.kill,
                done,
            },
        );
        let fresh = crate::ids::new_player_id();
        let token = uuid::Uuid::new_v4().simple().to_string();
        let result = self
            .store
            .run(&ops::Hello {
                conn: conn_id.to_string(),
                fresh: &fresh,
                name: &reg.name,
                resume: reg.resume.as_deref().unwrap_or(""),
                sub: reg.identity.as_ref().map(|i| i.sub.as_str()).unwrap_or(""),
                token: &token,
                rooms: vec![new_room()],
                max_rooms: ctx.cfg.max_rooms,
                idle_ms: ctx.cfg.room_idle_timeout_ms,
                fill_ms: ctx.cfg.ticket_fill_after_ms,
                now: now(),
            })
            .await;
        let registered = match result {
            Ok(v) => v,
            Err(e) => {
                self.state.lock().joining.remove(&conn_id);
                return Err(e.into());
            }
        };
        match tokio::time::timeout(Duration::from_secs(5), done_rx).await {
            Ok(Ok((player_id, epoch))) => Ok(Registered { player_id, epoch }),
            _ => {
                self.state.lock().joining.remove(&conn_id);
                // Registered in the store but never live here: hold the seat
                // like any other lost connection.
                if let (Some(pid), Some(epoch)) = (
                    registered.get("p").and_then(Value::as_str),
                    registered.get("epoch").and_then(Value::as_u64),
                ) {
                    self.bye(ctx, pid, epoch).await;
                }
                Err(ProtoError::new(
                    ErrorCode::Internal,
                    "the store is unavailable (no notice arrived); try again shortly",
                ))
            }
        }
    }

    /// The connection closed: the seat is held for the grace period (the
    /// store ignores this when a newer connection took over: its epoch
    /// moved on).
    pub async fn unregister(&self, ctx: &Ctx, who: &Registered, conn_id: u64) {
        {
            let mut st = self.state.lock();
            if st.table.is_current(&who.player_id, conn_id) {
                st.table.conns.remove(&who.player_id);
                st.table.room_subs.remove(&who.player_id);
                st.departed.insert(who.player_id.clone(), Vec::new());
            }
        }
        self.bye(ctx, &who.player_id, who.epoch).await;
    }

    async fn bye(&self, ctx: &Ctx, player_id: &str, epoch: u64) {
        let held = self
            .store
            .run(&ops::Bye {
                p: player_id,
                epoch,
                grace_ms: ctx.cfg.reconnect_grace_ms,
            })
            .await;
        match held {
            // A `gone` notice follows (held or not); it hands the caught
            // events over.
            Ok(_) => {}
            Err(e) => {
                self.state.lock().departed.remove(player_id);
                tracing::warn!(player_id, "could not hold the seat in the store: {e}");
            }
        }
    }

    /// Runs one validated lobby request against the store. Changes reply
    /// through their notice (in order with their events).
    ///
    /// The script publishes the `ok` to this node's channel before it
    /// answers the call, but the two arrive on different connections: the
    /// request ends only once the notice queued the reply, so a reply the
    /// session writes next (a `ping`'s) cannot overtake it.
    pub async fn request(
        &self,
        ctx: &Ctx,
        caller: &Caller<'_>,
        rid: &Value,
        request: LobbyRequest,
    ) -> Result<Reply, ProtoError> {
        let me = caller.player_id;
        // After the signals this node queued before it (see `relay`).
        self.barrier().await;
        let (told, replied) = tokio::sync::oneshot::channel();
        self.state.lock().replies.insert(me.to_string(), told);
        let result = self.dispatch(ctx, caller, rid, request).await;
        if matches!(result, Ok(Reply::Sent)) {
            // Bounded: a notice lost with the subscription closes the
            // node's sockets anyway (1012).
            if tokio::time::timeout(REPLY_WAIT, replied).await.is_err() {
                tracing::warn!(player_id = me, "no reply notice within {REPLY_WAIT:?}");
            }
        }
        self.state.lock().replies.remove(me);
        result
    }

    /// Runs one request against the store (see [`Cluster::request`]).
    async fn dispatch(
        &self,
        ctx: &Ctx,
        caller: &Caller<'_>,
        rid: &Value,
        request: LobbyRequest,
    ) -> Result<Reply, ProtoError> {
        let me = caller.player_id;
        let cfg = &ctx.cfg;
        let rid = || rid.to_string();
        let store = &self.store;
        match request {
            LobbyRequest::FindMatch(req) => {
                store
                    .run(&commands::find_match(cfg, me, &req, rid()))
                    .await?;
            }
            LobbyRequest::CreateRoom(req) => {
                store
                    .run(&commands::create_room(cfg, me, &req, rid()))
                    .await?;
            }
            LobbyRequest::JoinRoom(req) => {
                store
                    .run(&commands::join_room(me, caller.roles, &req, rid()))
                    .await?;
            }
            LobbyRequest::LeaveRoom => {
                store.run(&ops::LeaveRoom { p: me, rid: rid() }).await?;
            }
            LobbyRequest::QueueMatch(req) => {
                store
                    .run(&commands::queue_match(cfg, me, &req, rid())?)
                    .await?;
            }
            LobbyRequest::CancelMatch => {
                store.run(&ops::CancelMatch { p: me, rid: rid() }).await?;
            }
            LobbyRequest::CreateParty(req) => {
                store.run(&commands::create_party(me, &req, rid())?).await?;
            }
            LobbyRequest::JoinParty(req) => {
                store.run(&commands::join_party(me, &req, rid())).await?;
            }
            LobbyRequest::LeaveParty => {
                store.run(&ops::LeaveParty { p: me, rid: rid() }).await?;
            }
            LobbyRequest::ListRooms(req) => {
                let status = req.status.unwrap_or(RoomStatus::Waiting);
                let limit = req.limit.unwrap_or(crate::lobby::DEFAULT_LIST_LIMIT);
                let rooms = self.list_rooms(status, req.mode.as_deref(), limit).await?;
                return Ok(Reply::Fields(json!({ "rooms": rooms })));
            }
            LobbyRequest::StartGame => {
                store.run(&ops::StartGame { p: me, rid: rid() }).await?;
            }
            LobbyRequest::FinishGame(req) => {
                store
                    .run(&commands::finish_game(cfg, me, &req, rid()))
                    .await?;
            }
            LobbyRequest::SetRoomData(req) => {
                store.run(&commands::set_room_data(me, &req, rid())).await?;
            }
            LobbyRequest::SetPlayerData(req) => {
                store
                    .run(&commands::set_player_data(me, &req, rid()))
                    .await?;
            }
            LobbyRequest::Kick(req) => {
                store.run(&commands::kick(me, &req, rid())).await?;
            }
            LobbyRequest::SetReady(req) => {
                store.run(&commands::set_ready(me, &req, rid())).await?;
            }
            LobbyRequest::Chat(req) => {
                store.run(&commands::chat(me, &req, rid())).await?;
            }
            request @ (LobbyRequest::Offer(_)
            | LobbyRequest::Answer(_)
            | LobbyRequest::IceCandidate(_)) => {
                if let Some((to, event)) = crate::relay::signal_event(me, request.into()) {
                    self.relay(me, &to, &event.to_json(), true).await?;
                    return Ok(Reply::Fields(json!({})));
                }
            }
        }
        Ok(Reply::Sent)
    }

    /// Relays a ready signal frame from `me` to `to`. A target this node
    /// knows as a connected member of the sender's room (see `routes`) gets
    /// it through the batching publisher (`relay`), checked again by its
    /// node; anything else goes through the script (exact refusals, held
    /// seats), after the signals queued before it, so a sender's signals
    /// stay in order whichever way each one takes.
    pub async fn relay(
        &self,
        me: &str,
        to: &str,
        frame: &str,
        confirm: bool,
    ) -> Result<(), ProtoError> {
        // The publisher starts with the node's tasks, before any session.
        if let Some(publisher) = self.publisher.get() {
            publisher.ready().await?;
            // Written straight into the node's batch under the lock (a copy
            // of a few hundred bytes), so nothing is copied out first.
            let queued = {
                let st = self.state.lock();
                st.routes
                    .route(me, to)
                    .map(|(room, node)| publisher.push(node, to, me, room, frame, confirm))
            };
            match queued {
                Some(Some(answer)) => return Ok(relay::Publisher::confirmed(answer).await?),
                Some(None) => return Ok(()),
                None => {}
            }
        }
        self.barrier().await;
        self.store
            .run(&ops::Signal {
                p: me,
                to,
                event: frame,
            })
            .await?;
        Ok(())
    }

    /// Relays a `send` message (1.2) from `me`: to `to`, or to every other
    /// member. Recipients this node knows as connected members of the
    /// sender's room get it through the batching publisher, as signals do
    /// (checked again by their node); anything else (a held recipient, an
    /// unknown room, a refusal) takes the script, after what was queued
    /// before it. The number of recipients.
    pub async fn send_message(
        &self,
        me: &str,
        to: Option<&str>,
        frame: &str,
        confirm: bool,
    ) -> Result<u64, ProtoError> {
        if let Some(publisher) = self.publisher.get() {
            publisher.ready().await?;
            let queued = {
                let st = self.state.lock();
                st.routes.message_route(me, to).map(|(room, targets)| {
                    let n = targets.len() as u64;
                    (
                        n,
                        publisher.push_message(&targets, me, room, frame, confirm),
                    )
                })
            };
            match queued {
                Some((n, Some(answer))) => {
                    relay::Publisher::confirmed(answer).await?;
                    return Ok(n);
                }
                Some((n, None)) => return Ok(n),
                None => {}
            }
        }
        self.barrier().await;
        let n = self
            .store
            .run(&ops::SendMsg {
                p: me,
                to: to.unwrap_or(""),
                event: frame,
            })
            .await?;
        Ok(n.as_u64().unwrap_or(0))
    }

    /// Waits for the signals this node queued so far to be published: a
    /// script call after them must not overtake them.
    async fn barrier(&self) {
        if let Some(p) = self.publisher.get() {
            p.barrier().await;
        }
    }

    /// Adds the signals relayed without a script to the store's count.
    pub async fn flush_signal_count(&self) {
        use std::sync::atomic::Ordering;
        for (unflushed, field) in [
            (&self.unflushed_signals, "signals_relayed"),
            (&self.unflushed_messages, "messages_relayed"),
        ] {
            let n = unflushed.swap(0, Ordering::Relaxed);
            if n > 0 && self.store.add_stat(field, n).await.is_err() {
                unflushed.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Public rooms of a status, oldest first.
    pub async fn list_rooms(
        &self,
        status: RoomStatus,
        mode: Option<&str>,
        limit: u64,
    ) -> Result<Vec<RoomInfo>, StoreError> {
        let which = match status {
            RoomStatus::Waiting => "w",
            RoomStatus::Active => "a",
            RoomStatus::Finished => return Ok(Vec::new()),
        };
        let limit = limit.min(crate::lobby::MAX_LIST_LIMIT);
        let records = self.store.list(which, mode.unwrap_or(""), limit).await?;
        Ok(records
            .iter()
            .filter_map(|r| serde_json::from_str::<RoomRec>(r).ok())
            .map(|r| r.info(false))
            .collect())
    }

    /// Adds a room-list subscriber, then reads the list: a change in
    /// between arrives as an event too, so none is missed.
    pub async fn subscribe_rooms(
        &self,
        player_id: &str,
        mode: Option<String>,
    ) -> Result<Vec<RoomInfo>, StoreError> {
        let first = {
            let mut st = self.state.lock();
            let first = st.table.room_subs.is_empty();
            st.table
                .room_subs
                .insert(player_id.to_string(), mode.clone());
            first
        };
        if first {
            self.store.run(&ops::Watch { on: true }).await?;
        }
        self.list_rooms(
            RoomStatus::Waiting,
            mode.as_deref(),
            crate::lobby::MAX_LIST_LIMIT,
        )
        .await
    }

    pub fn unsubscribe_rooms(&self, player_id: &str) {
        // The beats tell the store when this node has no subscriber left.
        self.state.lock().table.room_subs.remove(player_id);
    }

    /// Exact cluster-wide stats (`connections` summed over live nodes).
    pub async fn stats(&self) -> Result<Stats, StoreError> {
        self.flush_signal_count().await;
        let s = self.store.stats().await?;
        *self.cached.lock() = s.clone();
        Ok(s)
    }

    /// The last stats read, at most a beat old.
    pub fn stats_cached(&self) -> Stats {
        self.cached.lock().clone()
    }

    pub async fn room(&self, id: &str) -> Result<Option<RoomInfo>, StoreError> {
        if id.len() > 64 {
            return Ok(None);
        }
        let Some(text) = self.store.room(id).await? else {
            return Ok(None);
        };
        serde_json::from_str::<RoomRec>(&text)
            .map(|r| Some(r.info(false)))
            .map_err(|_| {
                StoreError::Refused(ProtoError::new(ErrorCode::Internal, "bad room record"))
            })
    }

    pub async fn player(&self, id: &str) -> Result<Option<Presence>, StoreError> {
        if id.len() > 256 {
            return Ok(None);
        }
        Ok(self
            .store
            .player(id)
            .await?
            .map(|(name, connected, room_id, seen)| Presence {
                name,
                connected,
                room_id,
                last_seen: chrono::DateTime::from_timestamp_millis(seen).unwrap_or_default(),
            }))
    }

    /// An announcement for every connection of every node.
    pub async fn announce(&self, text: &str) -> Result<(), StoreError> {
        self.store
            .publish(
                &crate::backend::redis::store::channel(crate::backend::redis::store::ALL_CHANNEL),
                text,
            )
            .await
    }

    pub async fn close_room(&self, room_id: &str) -> Result<bool, StoreError> {
        if room_id.len() > 64 {
            return Ok(false);
        }
        let v = self.store.run(&ops::CloseRoom { id: room_id }).await?;
        Ok(v == Value::Bool(true))
    }

    /// The player's node closes its connection (a `kill` notice).
    pub async fn disconnect_player(&self, player_id: &str) -> Result<bool, StoreError> {
        if player_id.len() > 256 {
            return Ok(false);
        }
        let v = self
            .store
            .run(&ops::DisconnectPlayer { p: player_id })
            .await?;
        Ok(v == Value::Bool(true))
    }

    /// Graceful shutdown: whatever sessions did not hold their seats
    /// themselves yet is held now, so the players resume elsewhere.
    pub async fn hand_over(&self, ctx: &Ctx) {
        let r = self
            .store
            .run(&ops::LeaveNode {
                grace_ms: ctx.cfg.reconnect_grace_ms,
            })
            .await;
        if let Err(e) = r {
            tracing::warn!("could not hand this node's players over: {e}");
        }
    }

    pub async fn check_invariants(&self) -> Result<(), String> {
        self.store.recount().await.map_err(|e| e.to_string())
    }

    pub async fn footprint(&self) -> Result<Footprint, String> {
        let v = self.store.footprint().await.map_err(|e| e.to_string())?;
        let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0) as usize;
        let st = self.state.lock();
        Ok(Footprint {
            rooms: n("rooms"),
            codes: n("codes"),
            players: n("players"),
            index_buckets: n("index_buckets"),
            listed: n("listed"),
            tokens: n("tokens"),
            timers: n("timers"),
            pending: n("pending") + st.departed.len(),
            conns: st.table.conns.len() + st.joining.len(),
            room_subs: st.table.room_subs.len(),
            routes: st.routes.len(),
            tickets: n("tickets"),
            parties: n("parties"),
        })
    }
}

/// Queues a text for a local player: its connection, or the catch of a
/// connection that just ended. The text is moved into the queue (a
/// received signal needs no second handle to its bytes).
pub(super) fn send_local_owned(st: &mut State, pid: &str, text: Utf8Bytes) -> bool {
    match st.table.send_owned(pid, text) {
        Ok(()) => true,
        Err(text) => {
            if let Some(caught) = st.departed.get_mut(pid) {
                if caught.len() < 256 {
                    caught.push(text);
                }
            }
            false
        }
    }
}

/// `send_local_owned` for a text shared with other recipients.
pub(super) fn send_local(st: &mut State, pid: &str, text: &Utf8Bytes) -> bool {
    send_local_owned(st, pid, text.clone())
}
