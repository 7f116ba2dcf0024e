//! The in-memory backend: the `lobby` engine and this server's connection
//! table under one `parking_lot::Mutex`.
//!
//! An operation changes the lobby and pushes its reply and events into the
//! recipients' bounded queues before the lock is released, so every client
//! sees events in the order the state changed. Nothing awaits while holding
//! the lock.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use uuid::Uuid;

use super::{Caller, Footprint, Presence, Registered, Registration, Reply};
use crate::backend::conns::{kicked_by_admin, replaced, Conn, ConnTable};
use crate::backend::Ctx;
use crate::hooks::Hooks;
use crate::lobby::{Delivery, Lobby};
use crate::protocol::{
    ok_reply, ok_room_reply, Event, LobbyRequest, ProtoError, RoomInfo, RoomStatus, Stats,
};

/// Events for a player whose seat is held while its connection is gone,
/// kept for its return (bounded; the oldest go first).
#[derive(Default)]
struct Pending {
    queue: VecDeque<Utf8Bytes>,
    dropped: u64,
}

/// Everything that changes, under one lock.
pub(crate) struct State {
    pub lobby: Lobby,
    pub table: ConnTable,
    pending: HashMap<String, Pending>,
    resume_buffer: usize,
    hooks: Arc<Hooks>,
    /// Rooms that started and wait for the allocator before `game_start`.
    starts: Vec<(Uuid, RoomInfo)>,
}

pub(crate) struct Memory {
    state: Mutex<State>,
    /// Wakes the allocation task when `starts` has rooms.
    starts_ready: Notify,
}

impl State {
    /// Queues a text frame for one player: its connection, or the queue of
    /// its held seat. False when it has neither.
    fn send_to(&mut self, player_id: &str, text: &Utf8Bytes) -> bool {
        if self.table.send(player_id, text) {
            return true;
        }
        // A held seat, or a held player with a ticket (its
        // `ticket_expired`), as the cluster store keeps them.
        if self.lobby.player(player_id).is_some_and(|p| !p.connected) {
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
    fn deliver(&mut self, mut deliveries: Vec<Delivery>) {
        deliveries.extend(self.lobby.take_later());
        for d in deliveries {
            let text = Utf8Bytes::from(d.event.to_json());
            for to in &d.to {
                self.send_to(to, &text);
            }
        }
        for change in self.lobby.take_listing_changes() {
            let text = Utf8Bytes::from(change.event.to_json());
            self.table.send_listing(&change.mode, &text);
        }
        if !self.pending.is_empty() {
            let lobby = &self.lobby;
            self.pending
                .retain(|pid, _| lobby.player(pid).is_some_and(|p| !p.connected));
        }
        for event in self.lobby.take_hooks() {
            self.hooks
                .send(event.kind(), event.room_id(), || event.data());
        }
        for id in self.lobby.take_starts() {
            if let Some(room) = self.lobby.room(&id) {
                self.starts.push((id, room.info(true)));
            }
        }
    }

    fn watch_listing(&mut self) {
        let on = !self.table.room_subs.is_empty();
        self.lobby.watch_listing(on);
    }
}

impl Memory {
    pub fn new(
        app_cfg: &crate::config::Config,
        metrics: Arc<crate::metrics::Metrics>,
        hooks: Arc<Hooks>,
    ) -> Self {
        let mut lobby = Lobby::new(app_cfg.lobby());
        lobby.record_hooks(hooks.webhooks_on());
        lobby.hold_starts(hooks.allocator_on());
        Memory {
            state: Mutex::new(State {
                lobby,
                table: ConnTable::new(metrics),
                pending: HashMap::new(),
                resume_buffer: app_cfg.resume_buffer as usize,
                hooks,
                starts: Vec::new(),
            }),
            starts_ready: Notify::new(),
        }
    }

    /// Delivers the changes of one locked operation, and wakes the
    /// allocation task when rooms started.
    fn finish(&self, st: &mut State, out: Vec<Delivery>) {
        st.deliver(out);
        if !st.starts.is_empty() {
            self.starts_ready.notify_one();
        }
    }

    /// The allocation hook's task: asks the allocator for every room that
    /// started, each in its own task, then sends its `game_start`.
    pub async fn run_allocations(ctx: Arc<Ctx>, m: Arc<Memory>) {
        loop {
            tokio::select! {
                _ = m.starts_ready.notified() => {}
                _ = ctx.shutdown.cancelled() => return,
            }
            let starts = std::mem::take(&mut m.state.lock().starts);
            for (id, room) in starts {
                let ctx = ctx.clone();
                let m = m.clone();
                tokio::spawn(async move {
                    let alloc = ctx.hooks.allocate(&room).await;
                    let mut guard = m.state.lock();
                    let mut out = Vec::new();
                    guard.lobby.announce_start(id, &alloc, &mut out);
                    m.finish(&mut guard, out);
                });
            }
        }
    }

    pub fn table<R>(&self, f: impl FnOnce(&mut ConnTable) -> R) -> R {
        f(&mut self.state.lock().table)
    }

    /// Sets up the connection under the lock: a resumed or new identity,
    /// `welcome` first in the queue, then the events kept while away; the
    /// room's other members learn of the return last.
    pub fn register(&self, ctx: &Ctx, reg: Registration) -> Registered {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let roles = reg.roles();
        let redeemed = reg.resume.and_then(|t| st.lobby.redeem_token(&t));
        let (player_id, resumed) = match reg.identity {
            // One identity, one seat: a token's `sub` is the player id, and
            // a known one takes its seat back like a resume.
            Some(id) => {
                let known = st.lobby.player(&id.sub).is_some();
                (id.sub, known)
            }
            None => match redeemed.filter(|pid| st.lobby.player(pid).is_some()) {
                Some(pid) => (pid, true),
                None => (crate::ids::new_player_id(), false),
            },
        };
        // One identity, one connection: an older socket of the same player
        // (a drop the server has not noticed yet) is closed as replaced.
        st.table.close_conn(&player_id, replaced());
        let mut out = Vec::new();
        let room = st.lobby.connect(&player_id, &reg.name, roles, &mut out);
        let name = st
            .lobby
            .player(&player_id)
            .map(|p| p.name.clone())
            .unwrap_or(reg.name);
        let token = st.lobby.issue_token(&player_id).unwrap_or_default();
        let pending = st.pending.remove(&player_id).unwrap_or_default();
        let party = st
            .lobby
            .party_of(&player_id)
            .and_then(|p| st.lobby.party_info(&p.id.clone()));
        let welcome = ctx.welcome(
            &player_id,
            &name,
            token,
            resumed,
            (room, party),
            pending.dropped,
        );
        let _ = reg.tx.try_send(Message::Text(welcome.into()));
        for text in pending.queue {
            if reg.tx.try_send(Message::Text(text)).is_err() {
                break; // more than the queue holds: the client is told by `missed`
            }
        }
        st.table.conns.insert(
            player_id.clone(),
            Conn {
                id: reg.conn_id,
                tx: reg.tx,
                kill: reg.kill,
                stats: None,
            },
        );
        self.finish(st, out);
        Registered {
            player_id,
            epoch: 0,
        }
    }

    /// The connection is gone: the seat is held (or the player forgotten),
    /// unless a newer connection of the player took over.
    pub fn unregister(&self, player_id: &str, conn_id: u64) {
        let mut st = self.state.lock();
        if !st.table.is_current(player_id, conn_id) {
            return;
        }
        st.table.conns.remove(player_id);
        st.table.room_subs.remove(player_id);
        st.watch_listing();
        let mut out = Vec::new();
        st.lobby.disconnect(player_id, Instant::now(), &mut out);
        self.finish(&mut st, out);
    }

    /// Runs one validated lobby request. Success replies are queued here,
    /// under the lock, ahead of the change's events.
    pub fn request(
        &self,
        ctx: &Ctx,
        caller: &Caller<'_>,
        rid: &Value,
        request: LobbyRequest,
    ) -> Result<Reply, ProtoError> {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let mut out = Vec::new();
        let fields = apply(ctx, st, caller, request, &mut out)?;
        let text = match fields {
            Some(Fields::Room(room, created)) => ok_room_reply(rid, &room, created),
            Some(Fields::Other(fields)) => ok_reply(rid, fields),
            None => String::new(),
        };
        if !text.is_empty() {
            st.table.send(caller.player_id, &text.into());
        }
        self.finish(st, out);
        Ok(Reply::Sent)
    }

    pub fn list_rooms(&self, status: RoomStatus, mode: Option<&str>, limit: u64) -> Vec<RoomInfo> {
        self.state.lock().lobby.list_rooms(status, mode, limit)
    }

    /// Adds a room-list subscriber and returns the list as it is, in one
    /// step, so no change falls between the two.
    pub fn subscribe_rooms(&self, player_id: &str, mode: Option<String>) -> Vec<RoomInfo> {
        let mut st = self.state.lock();
        let rooms = st.lobby.list_rooms(
            RoomStatus::Waiting,
            mode.as_deref(),
            crate::lobby::MAX_LIST_LIMIT,
        );
        st.table.room_subs.insert(player_id.to_string(), mode);
        st.watch_listing();
        rooms
    }

    pub fn unsubscribe_rooms(&self, player_id: &str) {
        let mut st = self.state.lock();
        st.table.room_subs.remove(player_id);
        st.watch_listing();
    }

    /// Exact lobby stats with this server's connection count.
    pub fn stats(&self) -> Stats {
        let st = self.state.lock();
        let mut s = st.lobby.stats();
        s.connections = st.table.conns.len() as u64;
        s
    }

    pub fn room(&self, id: &str) -> Option<RoomInfo> {
        self.state
            .lock()
            .lobby
            .room_by_id_str(id)
            .map(|r| r.info(false))
    }

    pub fn player(&self, id: &str) -> Option<Presence> {
        let st = self.state.lock();
        st.lobby.player(id).map(|p| Presence {
            name: p.name.clone(),
            connected: p.connected,
            room_id: p.room.map(|r| r.to_string()),
            last_seen: p.last_seen,
        })
    }

    pub fn announce(&self, text: &Utf8Bytes) {
        self.state.lock().table.send_all(text);
    }

    pub fn close_room(&self, room_id: &str) -> bool {
        let mut st = self.state.lock();
        let Some(id) = st.lobby.room_by_id_str(room_id).map(|r| r.id) else {
            return false;
        };
        let mut out = Vec::new();
        st.lobby.close_room(id, &mut out);
        self.finish(&mut st, out);
        true
    }

    pub fn disconnect_player(&self, player_id: &str) -> bool {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let mut out = Vec::new();
        if !st.lobby.remove_player(player_id, &mut out) {
            return false;
        }
        st.table.close_conn(player_id, kicked_by_admin());
        st.watch_listing();
        st.pending.remove(player_id);
        self.finish(st, out);
        true
    }

    /// One housekeeping pass: timers of the lobby, then due stats pushes.
    pub fn tick(&self, ctx: &Ctx) {
        let now = Instant::now();
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let mut out = Vec::new();
        st.lobby.tick(now, &mut out);
        self.finish(st, out);
        let due = st.table.stats_due(now);
        if due.is_empty() {
            return;
        }
        let mut stats = st.lobby.stats();
        stats.connections = st.table.conns.len() as u64;
        stats.uptime_s = ctx.started.elapsed().as_secs();
        let text = Utf8Bytes::from(Event::Stats { stats }.to_json());
        for pid in due {
            st.table.send(&pid, &text);
        }
    }

    pub fn check_invariants(&self) -> Result<(), String> {
        self.state.lock().lobby.check_invariants()
    }

    pub fn footprint(&self) -> Footprint {
        let st = self.state.lock();
        let f = st.lobby.footprint();
        Footprint {
            rooms: f.rooms,
            codes: f.codes,
            players: f.players,
            index_buckets: f.index_buckets,
            listed: f.listed,
            tokens: f.tokens,
            timers: f.timers,
            pending: st.pending.len(),
            conns: st.table.conns.len(),
            room_subs: st.table.room_subs.len(),
            routes: 0,
            tickets: f.tickets,
            parties: f.parties,
        }
    }
}

/// The fields of an `ok`: most replies carry a room, serialized straight
/// from the view (no `Value` tree).
enum Fields {
    Room(RoomInfo, Option<bool>),
    Other(Value),
}

/// One request against the lobby: the reply's fields, or `None` when it
/// sends nothing back (no request, today), or the refusal.
fn apply(
    ctx: &Ctx,
    st: &mut State,
    caller: &Caller<'_>,
    request: LobbyRequest,
    out: &mut Vec<Delivery>,
) -> Result<Option<Fields>, ProtoError> {
    let me = caller.player_id;
    let now = Instant::now();
    let lobby = &mut st.lobby;
    let fields = match request {
        LobbyRequest::FindMatch(req) => {
            let m = lobby.find_match(me, req, now, out)?;
            return Ok(Some(Fields::Room(m.room, Some(m.created))));
        }
        LobbyRequest::CreateRoom(req) => Fields::Room(lobby.create_room(me, req, now, out)?, None),
        LobbyRequest::JoinRoom(req) => {
            let (id, code) = (req.room_id.as_deref(), req.code.as_deref());
            let room = if req.as_spectator() {
                lobby.spectate(me, id, code, out)?
            } else {
                lobby.join_room(me, id, code, out)?
            };
            Fields::Room(room, None)
        }
        LobbyRequest::LeaveRoom => {
            lobby.leave_room(me, out)?;
            Fields::Other(json!({}))
        }
        LobbyRequest::QueueMatch(req) => {
            let ticket = lobby.queue_match(me, req, now, out)?;
            Fields::Other(json!({ "ticket": ticket }))
        }
        LobbyRequest::CancelMatch => {
            lobby.cancel_match(me, out)?;
            Fields::Other(json!({}))
        }
        LobbyRequest::CreateParty(req) => {
            Fields::Other(json!({ "party": lobby.create_party(me, req.max_size)? }))
        }
        LobbyRequest::JoinParty(req) => {
            Fields::Other(json!({ "party": lobby.join_party(me, &req.code, out)? }))
        }
        LobbyRequest::LeaveParty => {
            lobby.leave_party(me, out)?;
            Fields::Other(json!({}))
        }
        LobbyRequest::ListRooms(req) => {
            let status = req.status.unwrap_or(RoomStatus::Waiting);
            let limit = req.limit.unwrap_or(crate::lobby::DEFAULT_LIST_LIMIT);
            Fields::Other(json!({ "rooms": lobby.list_rooms(status, req.mode.as_deref(), limit) }))
        }
        LobbyRequest::StartGame => Fields::Room(lobby.start_game(me, out)?, None),
        LobbyRequest::FinishGame(req) => {
            Fields::Room(lobby.finish_game(me, req.result, now, out)?, None)
        }
        LobbyRequest::SetRoomData(req) => {
            Fields::Room(lobby.set_room_data(me, req.data, out)?, None)
        }
        LobbyRequest::SetPlayerData(req) => {
            Fields::Room(lobby.set_player_data(me, req.data, out)?, None)
        }
        LobbyRequest::Kick(req) => {
            lobby.kick(me, &req.player_id, out)?;
            Fields::Other(json!({}))
        }
        LobbyRequest::Chat(req) => {
            lobby.chat(me, &req.text, out)?;
            Fields::Other(json!({}))
        }
        LobbyRequest::SetReady(req) => Fields::Room(lobby.set_ready(me, req.ready, out)?, None),
        request @ (LobbyRequest::Offer(_)
        | LobbyRequest::Answer(_)
        | LobbyRequest::IceCandidate(_)) => {
            let Some((to, event)) = crate::relay::signal_event(me, request.into()) else {
                return Ok(None);
            };
            relay_locked(ctx, st, me, &to, Utf8Bytes::from(event.to_json()))?;
            Fields::Other(json!({}))
        }
    };
    Ok(Some(fields))
}

/// Checks that `to` shares a room with `me`, then sends the signal to its
/// target, or holds it for a held seat. Only signals handed to a live
/// connection count as relayed. The frame is built before the lock is
/// taken: under it, only the membership check and the queue push.
fn relay_locked(
    ctx: &Ctx,
    st: &mut State,
    me: &str,
    to: &str,
    frame: Utf8Bytes,
) -> Result<(), ProtoError> {
    st.lobby.check_signal(me, to)?;
    match st.table.send_owned(to, frame) {
        Ok(()) => {
            st.lobby.count_signal();
            ctx.metrics.signals_relayed.increment(1);
        }
        Err(frame) => {
            st.send_to(to, &frame);
        }
    }
    Ok(())
}

impl Memory {
    /// Relays a `send` message (1.2) from `me` to `to` (or every other
    /// member): to each connection, or kept for a held seat, under the
    /// lock. The number of recipients.
    pub fn send_message(
        &self,
        me: &str,
        to: Option<&str>,
        frame: Utf8Bytes,
    ) -> Result<u64, ProtoError> {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let targets = st.lobby.message_targets(me, to)?;
        for pid in &targets {
            st.send_to(pid, &frame);
        }
        st.lobby.count_message();
        Ok(targets.len() as u64)
    }

    /// Relays a ready signal frame from `me` to `to` (see `relay_locked`).
    pub fn relay(&self, ctx: &Ctx, me: &str, to: &str, frame: Utf8Bytes) -> Result<(), ProtoError> {
        relay_locked(ctx, &mut self.state.lock(), me, to, frame)
    }
}
