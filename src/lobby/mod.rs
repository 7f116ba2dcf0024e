//! The lobby engine: rooms, seats, matchmaking, timers and stats, with no I/O
//! and no async.
//!
//! Every operation takes a command, changes the state and returns the reply
//! plus the events to deliver (pushed into an `out` list of [`Delivery`]).
//! The server holds the whole `Lobby` behind one lock, so an operation is
//! atomic by construction: two requests can never take the same last seat.
//!
//! Counters, the matchmaking index and the listings are derived data. Each
//! change to a room goes through [`Lobby::update_room`], which takes the
//! room's [`Footprint`] before and after and moves all of them in step;
//! [`Lobby::check_invariants`] recounts everything from scratch.

pub mod index;
pub mod room;
#[cfg(test)]
mod tests;
mod timers;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::protocol::{
    ts, ChatMessage, CreateRoom, ErrorCode, Event, FindMatch, JsonObject, LeaveReason, ProtoError,
    RoomInfo, RoomStatus, Stats,
};
use index::{keys_of, MatchIndex, MatchKey};
pub use room::{Room, Seat};
use timers::{Timer, TimerKey};

/// Characters of join codes: no 0/O, 1/I/L look-alikes.
pub const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
pub const CODE_LEN: usize = 6;
/// Chat lines kept per room for `chat_history`.
pub const CHAT_HISTORY: usize = 20;
pub const MAX_CHAT_CHARS: usize = 500;
pub const MAX_MODE_CHARS: usize = 64;
/// Serialized size cap of room or player `data`, and of a `finish_game` result.
pub const MAX_DATA_BYTES: usize = 16 * 1024;
pub const MAX_FILTERS: usize = 16;
pub const MAX_ALLOWED: usize = 256;
pub const MAX_LIST_LIMIT: u64 = 500;
pub const DEFAULT_LIST_LIMIT: u64 = 50;

/// Limits and timings of the engine.
#[derive(Debug, Clone)]
pub struct LobbyConfig {
    /// Largest `max_players` a room may have.
    pub max_players: u64,
    /// Most rooms alive at once; `create_room` and `find_match` answer
    /// `limit_reached` beyond.
    pub max_rooms: usize,
    pub reconnect_grace: Duration,
    pub finished_room_ttl: Duration,
    /// Waiting rooms with no activity for this long are closed.
    pub room_idle_timeout: Duration,
}

impl Default for LobbyConfig {
    fn default() -> Self {
        LobbyConfig {
            max_players: 16,
            max_rooms: 100_000,
            reconnect_grace: Duration::from_millis(15_000),
            finished_room_ttl: Duration::from_millis(60_000),
            room_idle_timeout: Duration::from_millis(600_000),
        }
    }
}

/// An event for some players. The server serializes `event` once and hands
/// the same bytes to every recipient.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub to: Vec<String>,
    pub event: Event,
}

impl Delivery {
    fn one(to: &str, event: Event) -> Self {
        Delivery {
            to: vec![to.to_string()],
            event,
        }
    }
}

/// Queues an event unless nobody would receive it.
fn emit(out: &mut Vec<Delivery>, to: Vec<String>, event: Event) {
    if !to.is_empty() {
        out.push(Delivery { to, event });
    }
}

/// What the outside can know of a player.
#[derive(Debug, Clone)]
pub struct Player {
    pub name: String,
    pub room: Option<Uuid>,
    pub connected: bool,
    pub roles: Vec<String>,
    pub last_seen: DateTime<Utc>,
    /// The grace timer of a dropped player; `None` while connected.
    timer: Option<TimerKey>,
    /// The one valid resume token of this player, if any.
    token: Option<String>,
}

/// Result of `find_match`.
#[derive(Debug, Clone)]
pub struct Matched {
    pub room: RoomInfo,
    pub created: bool,
}

/// What a room contributes to counters, index and listings.
#[derive(Debug, Clone, PartialEq)]
struct Footprint {
    status: RoomStatus,
    seats: u64,
    held: u64,
    matchable: Option<Vec<MatchKey>>,
    listed: bool,
    seq: u64,
}

impl Footprint {
    fn of(room: &Room) -> Self {
        Footprint {
            status: room.status,
            seats: room.seats.len() as u64,
            held: room.held_seats(),
            matchable: room.matchable().then(|| keys_of(room)),
            listed: room.listed(),
            seq: room.seq,
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Counts {
    rooms: [u64; 3],
    seats: u64,
    seats_waiting: u64,
    held: u64,
}

fn status_idx(s: RoomStatus) -> usize {
    match s {
        RoomStatus::Waiting => 0,
        RoomStatus::Active => 1,
        RoomStatus::Finished => 2,
    }
}

/// Sizes of the lobby's maps, for leak checks: each follows live rooms and
/// players, never past activity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LobbyFootprint {
    pub rooms: usize,
    /// Join codes in use (one per room).
    pub codes: usize,
    /// Connected players and dropped ones still held for the grace.
    pub players: usize,
    /// Buckets of the matchmaking index.
    pub index_buckets: usize,
    /// Rooms in the public listing.
    pub listed: usize,
    /// Resume tokens that can still be redeemed.
    pub tokens: usize,
    /// Pending timers: one per waiting or finished room and per held player.
    pub timers: usize,
}

/// The whole lobby state. See the module docs.
#[derive(Debug)]
pub struct Lobby {
    cfg: LobbyConfig,
    rooms: HashMap<Uuid, Room>,
    codes: HashMap<String, Uuid>,
    players: HashMap<String, Player>,
    /// Resume token to player id.
    tokens: HashMap<String, String>,
    index: MatchIndex,
    /// Public waiting and active rooms, oldest first, for listings.
    listing: BTreeMap<u64, Uuid>,
    timers: BTreeMap<(Instant, u64), Timer>,
    counts: Counts,
    seq: u64,
    matches_started: u64,
    signals_relayed: u64,
    watch_listing: bool,
    listing_changes: Vec<ListingChange>,
}

/// A change of the public list of waiting rooms (`room_listed`,
/// `room_updated`, `room_delisted`), for subscribers of `mode` (or of all).
#[derive(Debug, Clone)]
pub struct ListingChange {
    pub mode: String,
    pub event: Event,
}

pub(crate) fn err(code: ErrorCode, msg: impl Into<String>) -> ProtoError {
    ProtoError::new(code, msg)
}

fn not_in_room() -> ProtoError {
    err(ErrorCode::NotInRoom, "you are not in a room")
}

pub(crate) fn check_data(data: &JsonObject, what: &str) -> Result<(), ProtoError> {
    let len = serde_json::to_string(data).map(|s| s.len()).unwrap_or(0);
    if len > MAX_DATA_BYTES {
        return Err(ProtoError::bad_request(format!(
            "{what} is {len} bytes of JSON, the limit is {MAX_DATA_BYTES}"
        )));
    }
    Ok(())
}

pub(crate) fn check_mode(mode: Option<&str>) -> Result<String, ProtoError> {
    let mode = mode.unwrap_or("default");
    if mode.is_empty() || mode.chars().count() > MAX_MODE_CHARS {
        return Err(ProtoError::bad_request(format!(
            "mode must be 1 to {MAX_MODE_CHARS} characters"
        )));
    }
    Ok(mode.to_string())
}

/// Whether a data value can be asked for by a filter (and is indexed for
/// matchmaking): strings, numbers and booleans.
pub fn is_scalar(v: &Value) -> bool {
    matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

/// `max_players` of a request (default 2) against the server's limit.
pub(crate) fn check_max_players(limit: u64, n: Option<u64>) -> Result<u64, ProtoError> {
    let n = n.unwrap_or(2);
    if n < 2 || n > limit {
        return Err(ProtoError::bad_request(format!(
            "max_players must be 2 to {limit}, got {n}"
        )));
    }
    Ok(n)
}

/// `find_match` filters: few, scalar, and small.
pub(crate) fn check_filters(filters: &JsonObject) -> Result<(), ProtoError> {
    if filters.len() > MAX_FILTERS {
        return Err(ProtoError::bad_request(format!(
            "at most {MAX_FILTERS} filters"
        )));
    }
    if let Some((k, _)) = filters.iter().find(|(_, v)| !is_scalar(v)) {
        return Err(ProtoError::bad_request(format!(
            "filter {k:?} must be a string, number or boolean"
        )));
    }
    check_data(filters, "filters")
}

/// `create_room`'s access lists.
pub(crate) fn check_allowed(players: &[String], roles: &[String]) -> Result<(), ProtoError> {
    if players.len() > MAX_ALLOWED || roles.len() > MAX_ALLOWED {
        return Err(ProtoError::bad_request(format!(
            "allowed_players and allowed_roles take at most {MAX_ALLOWED} entries"
        )));
    }
    Ok(())
}

pub(crate) fn check_chat_text(text: &str) -> Result<(), ProtoError> {
    let n = text.chars().count();
    if n == 0 || n > MAX_CHAT_CHARS || text.trim().is_empty() {
        return Err(ProtoError::bad_request(format!(
            "chat text must be 1 to {MAX_CHAT_CHARS} characters, not blank"
        )));
    }
    Ok(())
}

/// A random join code (not checked for uniqueness).
pub fn new_code_text() -> String {
    random_bytes()[..CODE_LEN]
        .iter()
        .map(|b| CODE_ALPHABET[*b as usize % CODE_ALPHABET.len()] as char)
        .collect()
}

/// Random bytes from the OS generator, through `uuid` (which the crate has
/// anyway) rather than another dependency.
fn random_bytes() -> [u8; 16] {
    *Uuid::new_v4().as_bytes()
}

impl Lobby {
    pub fn new(cfg: LobbyConfig) -> Self {
        Lobby {
            cfg,
            rooms: HashMap::new(),
            codes: HashMap::new(),
            players: HashMap::new(),
            tokens: HashMap::new(),
            index: MatchIndex::default(),
            listing: BTreeMap::new(),
            timers: BTreeMap::new(),
            counts: Counts::default(),
            seq: 0,
            matches_started: 0,
            signals_relayed: 0,
            watch_listing: false,
            listing_changes: Vec::new(),
        }
    }

    pub fn config(&self) -> &LobbyConfig {
        &self.cfg
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    // ----- players -------------------------------------------------------

    /// A connection opened for `player_id`. If the player holds a seat (a
    /// resume or a takeover), it is marked connected again and the room's
    /// other members are told; the player's room is returned.
    pub fn connect(
        &mut self,
        player_id: &str,
        name: &str,
        roles: Vec<String>,
        out: &mut Vec<Delivery>,
    ) -> Option<RoomInfo> {
        let now = Utc::now();
        match self.players.get_mut(player_id) {
            Some(p) => {
                p.connected = true;
                p.roles = roles;
                p.last_seen = now;
                let room_id = p.room;
                self.cancel_seat_timer(player_id);
                let room_id = room_id?;
                self.update_room(room_id, |room| {
                    if let Some(i) = room.seat_index(player_id) {
                        if !room.seats[i].connected {
                            room.seats[i].connected = true;
                            emit(
                                out,
                                room.member_ids_except(player_id),
                                Event::PlayerReconnected {
                                    room_id: room.id_str.clone(),
                                    player_id: player_id.to_string(),
                                },
                            );
                        }
                    }
                });
                self.rooms.get(&room_id).map(|r| r.info(true))
            }
            None => {
                self.players.insert(
                    player_id.to_string(),
                    Player {
                        name: name.to_string(),
                        room: None,
                        connected: true,
                        roles,
                        last_seen: now,
                        timer: None,
                        token: None,
                    },
                );
                None
            }
        }
    }

    /// The player's connection closed without `leave_room`. Its identity,
    /// and its seat if it has one, are held for the reconnect grace.
    pub fn disconnect(&mut self, player_id: &str, now: Instant, out: &mut Vec<Delivery>) {
        let Some(p) = self.players.get_mut(player_id) else {
            return;
        };
        p.connected = false;
        p.last_seen = Utc::now();
        // A player in no room keeps its identity for the grace too, so a
        // brief drop while browsing does not change its player_id.
        let room_id = p.room;
        self.arm_seat_timer(player_id, now);
        let Some(room_id) = room_id else {
            return;
        };
        self.update_room(room_id, |room| {
            if let Some(i) = room.seat_index(player_id) {
                room.seats[i].connected = false;
                emit(
                    out,
                    room.member_ids_except(player_id),
                    Event::PlayerDisconnected {
                        room_id: room.id_str.clone(),
                        player_id: player_id.to_string(),
                    },
                );
            }
        });
    }

    /// Removes a player entirely (admin disconnect): its seat is given up
    /// now with reason `closed`.
    pub fn remove_player(&mut self, player_id: &str, out: &mut Vec<Delivery>) -> bool {
        let Some(p) = self.players.get(player_id) else {
            return false;
        };
        if p.room.is_some() {
            self.leave_with(player_id, LeaveReason::Closed, out);
        }
        self.forget(player_id);
        true
    }

    pub fn player(&self, player_id: &str) -> Option<&Player> {
        self.players.get(player_id)
    }

    pub fn room_of(&self, player_id: &str) -> Option<&Room> {
        let id = self.players.get(player_id)?.room?;
        self.rooms.get(&id)
    }

    pub fn room(&self, room_id: &Uuid) -> Option<&Room> {
        self.rooms.get(room_id)
    }

    /// Looks a room up by its id text, as clients send it.
    pub fn room_by_id_str(&self, room_id: &str) -> Option<&Room> {
        let id = Uuid::parse_str(room_id).ok()?;
        self.rooms.get(&id)
    }

    // ----- room changes ----------------------------------------------------

    /// Applies `f` to a room and moves counters, index and listings from the
    /// room's old footprint to its new one. Removes the room if it is empty
    /// afterwards. The one door through which rooms change.
    fn update_room<R>(&mut self, room_id: Uuid, f: impl FnOnce(&mut Room) -> R) -> Option<R> {
        let watch = self.watch_listing;
        let room = self.rooms.get_mut(&room_id)?;
        let before = Footprint::of(room);
        let view_before = if watch { room.public_view() } else { None };
        let r = f(room);
        room.activity += 1;
        room.last_activity = Instant::now();
        let after = Footprint::of(room);
        let empty = room.seats.is_empty();
        if watch {
            let change = match (view_before, room.public_view()) {
                (None, Some(v)) => Some(Event::RoomListed { room: v }),
                (Some(a), Some(b)) if a != b => Some(Event::RoomUpdated { room: b }),
                (Some(_), None) => Some(Event::RoomDelisted {
                    room_id: room.id_str.clone(),
                }),
                _ => None,
            };
            if let Some(event) = change {
                self.listing_changes.push(ListingChange {
                    mode: room.mode.clone(),
                    event,
                });
            }
        }
        if before != after {
            self.unapply(room_id, &before);
            self.apply(room_id, &after);
        }
        // Only waiting rooms go idle; a finished room gets its own timer.
        if before.status == RoomStatus::Waiting && after.status != RoomStatus::Waiting {
            self.cancel_room_timer(room_id);
        }
        if empty {
            self.drop_room(room_id);
        }
        Some(r)
    }

    /// Turns tracking of room-list changes on or off (on while anyone has
    /// `subscribe_rooms`; off, updates skip the comparison of views).
    pub fn watch_listing(&mut self, on: bool) {
        self.watch_listing = on;
        if !on {
            self.listing_changes.clear();
        }
    }

    /// Room-list changes since the last call, in order.
    pub fn take_listing_changes(&mut self) -> Vec<ListingChange> {
        std::mem::take(&mut self.listing_changes)
    }

    fn apply(&mut self, id: Uuid, f: &Footprint) {
        self.counts.rooms[status_idx(f.status)] += 1;
        self.counts.seats += f.seats;
        self.counts.held += f.held;
        if f.status == RoomStatus::Waiting {
            self.counts.seats_waiting += f.seats;
        }
        if let Some(keys) = &f.matchable {
            self.index.insert(keys, f.seq, id);
        }
        if f.listed {
            self.listing.insert(f.seq, id);
        }
    }

    fn unapply(&mut self, _id: Uuid, f: &Footprint) {
        self.counts.rooms[status_idx(f.status)] -= 1;
        self.counts.seats -= f.seats;
        self.counts.held -= f.held;
        if f.status == RoomStatus::Waiting {
            self.counts.seats_waiting -= f.seats;
        }
        if let Some(keys) = &f.matchable {
            self.index.remove(keys, f.seq);
        }
        if f.listed {
            self.listing.remove(&f.seq);
        }
    }

    fn drop_room(&mut self, room_id: Uuid) {
        if let Some(room) = self.rooms.get(&room_id) {
            if self.watch_listing && room.public_view().is_some() {
                self.listing_changes.push(ListingChange {
                    mode: room.mode.clone(),
                    event: Event::RoomDelisted {
                        room_id: room.id_str.clone(),
                    },
                });
            }
            let fp = Footprint::of(room);
            self.unapply(room_id, &fp);
            self.cancel_room_timer(room_id);
            let room = self.rooms.remove(&room_id).expect("room present");
            self.codes.remove(&room.code);
            for seat in &room.seats {
                self.release(&seat.player_id);
            }
        }
    }

    /// Removes a player and its resume token.
    fn forget(&mut self, player_id: &str) {
        if let Some(p) = self.players.remove(player_id) {
            if let Some(t) = p.token {
                self.tokens.remove(&t);
            }
            if let Some(k) = p.timer {
                self.timers.remove(&k);
            }
        }
    }

    /// Hands out a fresh single-use resume token for a player; its previous
    /// token stops working.
    pub fn issue_token(&mut self, player_id: &str) -> Option<String> {
        let p = self.players.get_mut(player_id)?;
        let token = Uuid::new_v4().simple().to_string();
        if let Some(old) = p.token.replace(token.clone()) {
            self.tokens.remove(&old);
        }
        self.tokens.insert(token.clone(), player_id.to_string());
        Some(token)
    }

    /// Uses up a resume token: the player it belongs to, if it is still
    /// known (connected, or holding a seat).
    pub fn redeem_token(&mut self, token: &str) -> Option<String> {
        let pid = self.tokens.remove(token)?;
        if let Some(p) = self.players.get_mut(&pid) {
            p.token = None;
        }
        Some(pid)
    }

    /// The player has no seat any more: forgotten if its connection is gone
    /// too, so no player is kept with neither.
    fn release(&mut self, player_id: &str) {
        if let Some(p) = self.players.get_mut(player_id) {
            p.room = None;
            if !p.connected {
                self.forget(player_id);
            }
        }
    }

    fn new_code(&self) -> String {
        loop {
            let code = new_code_text();
            if !self.codes.contains_key(&code) {
                return code;
            }
        }
    }

    fn check_max_players(&self, n: Option<u64>) -> Result<u64, ProtoError> {
        check_max_players(self.cfg.max_players, n)
    }

    fn check_free(&self, player_id: &str) -> Result<(), ProtoError> {
        match self.players.get(player_id) {
            None => Err(err(ErrorCode::Internal, "unknown player")),
            Some(p) if p.room.is_some() => Err(err(
                ErrorCode::AlreadyInRoom,
                "you are already in a room; leave it first",
            )),
            Some(_) => Ok(()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_room(
        &mut self,
        private: bool,
        mode: String,
        max_players: u64,
        data: JsonObject,
        allowed_players: Vec<String>,
        allowed_roles: Vec<String>,
        now: Instant,
    ) -> Result<Uuid, ProtoError> {
        if self.rooms.len() >= self.cfg.max_rooms {
            return Err(err(
                ErrorCode::LimitReached,
                format!(
                    "the server holds its maximum of {} rooms",
                    self.cfg.max_rooms
                ),
            ));
        }
        let id = Uuid::new_v4();
        let code = self.new_code();
        let seq = self.next_seq();
        let room = Room {
            id,
            id_str: id.to_string(),
            code: code.clone(),
            private,
            mode,
            max_players,
            status: RoomStatus::Waiting,
            created_at: Utc::now(),
            seq,
            data,
            seats: Vec::new(),
            kicked: HashSet::new(),
            allowed_players,
            allowed_roles,
            chat: VecDeque::new(),
            activity: 0,
            last_activity: now,
            timer: None,
        };
        // An empty room has no footprint yet: it is applied on first join.
        self.apply(id, &Footprint::of(&room));
        self.rooms.insert(id, room);
        self.codes.insert(code, id);
        // Seating the creator is the room's first activity.
        self.arm_room_timer(
            id,
            now + self.cfg.room_idle_timeout,
            Timer::Idle {
                room: id,
                activity: 1,
            },
        );
        Ok(id)
    }

    /// Seats a player whose eligibility was checked; sends `player_joined`
    /// to the others, `chat_history` to the joiner, and starts the game if
    /// the room is now full.
    fn seat(&mut self, room_id: Uuid, player_id: &str, out: &mut Vec<Delivery>) -> RoomInfo {
        let name = self
            .players
            .get(player_id)
            .map(|p| p.name.clone())
            .unwrap_or_default();
        let mut started = false;
        self.update_room(room_id, |room| {
            let seat = Seat {
                player_id: player_id.to_string(),
                name,
                data: JsonObject::new(),
                joined_at: Utc::now(),
                connected: true,
            };
            let others = room.member_ids();
            if !others.is_empty() {
                out.push(Delivery {
                    to: others,
                    event: Event::PlayerJoined {
                        room_id: room.id_str.clone(),
                        player: seat.info(),
                    },
                });
            }
            room.seats.push(seat);
            out.push(Delivery::one(
                player_id,
                Event::ChatHistory {
                    room_id: room.id_str.clone(),
                    messages: room.chat.iter().cloned().collect(),
                },
            ));
            if room.is_full() {
                Self::start(room, out);
                started = true;
            }
        });
        if started {
            self.matches_started += 1;
        }
        if let Some(p) = self.players.get_mut(player_id) {
            p.room = Some(room_id);
        }
        self.rooms[&room_id].info(true)
    }

    /// Waiting to active, with `room_status` and `game_start` to every member.
    fn start(room: &mut Room, out: &mut Vec<Delivery>) {
        room.status = RoomStatus::Active;
        let members = room.member_ids();
        out.push(Delivery {
            to: members.clone(),
            event: Event::RoomStatus {
                room_id: room.id_str.clone(),
                status: RoomStatus::Active,
                result: None,
            },
        });
        out.push(Delivery {
            to: members,
            event: Event::GameStart {
                room: room.info(true),
            },
        });
    }

    // ----- requests --------------------------------------------------------

    pub fn create_room(
        &mut self,
        player_id: &str,
        req: CreateRoom,
        now: Instant,
        out: &mut Vec<Delivery>,
    ) -> Result<RoomInfo, ProtoError> {
        self.check_free(player_id)?;
        let max_players = self.check_max_players(req.max_players)?;
        let mode = check_mode(req.mode.as_deref())?;
        let data = req.data.unwrap_or_default();
        check_data(&data, "data")?;
        check_allowed(&req.allowed_players, &req.allowed_roles)?;
        let id = self.insert_room(
            req.private,
            mode,
            max_players,
            data,
            req.allowed_players,
            req.allowed_roles,
            now,
        )?;
        Ok(self.seat(id, player_id, out))
    }

    pub fn join_room(
        &mut self,
        player_id: &str,
        room_id: Option<&str>,
        code: Option<&str>,
        out: &mut Vec<Delivery>,
    ) -> Result<RoomInfo, ProtoError> {
        self.check_free(player_id)?;
        let id = match (room_id, code) {
            (Some(id), _) => Uuid::parse_str(id)
                .ok()
                .filter(|id| self.rooms.contains_key(id))
                .ok_or_else(|| err(ErrorCode::RoomNotFound, format!("no room {id:?}")))?,
            (None, Some(code)) => *self
                .codes
                .get(&code.trim().to_ascii_uppercase())
                .ok_or_else(|| {
                    err(
                        ErrorCode::RoomNotFound,
                        format!("no room with code {code:?}"),
                    )
                })?,
            (None, None) => return Err(ProtoError::bad_request("join_room needs room_id or code")),
        };
        let room = &self.rooms[&id];
        let roles = &self.players[player_id].roles;
        if !room.admits(player_id, roles) {
            let why = if room.kicked.contains(player_id) {
                "you were kicked from this room"
            } else {
                "this room is restricted to other players"
            };
            return Err(err(ErrorCode::Forbidden, why));
        }
        // A full room is reported as full even though filling it also
        // started it: that is the more useful reason for the joiner.
        if room.is_full() {
            return Err(err(
                ErrorCode::RoomFull,
                format!(
                    "room {} has {} of {} players",
                    room.id_str,
                    room.seats.len(),
                    room.max_players
                ),
            ));
        }
        if room.status != RoomStatus::Waiting {
            return Err(err(
                ErrorCode::RoomNotWaiting,
                format!("room {} is {}", room.id_str, room.status.as_str()),
            ));
        }
        Ok(self.seat(id, player_id, out))
    }

    pub fn find_match(
        &mut self,
        player_id: &str,
        req: FindMatch,
        now: Instant,
        out: &mut Vec<Delivery>,
    ) -> Result<Matched, ProtoError> {
        self.check_free(player_id)?;
        let max_players = self.check_max_players(req.max_players)?;
        let mode = check_mode(req.mode.as_deref())?;
        let filters = req.filters.unwrap_or_default();
        check_filters(&filters)?;
        let found = self
            .index
            .candidates(&mode, max_players, &filters)
            .find(|id| {
                self.rooms
                    .get(id)
                    .is_some_and(|r| r.matches_filters(&filters) && !r.kicked.contains(player_id))
            });
        let (id, created) = match found {
            Some(id) => (id, false),
            None => (
                self.insert_room(false, mode, max_players, filters, vec![], vec![], now)?,
                true,
            ),
        };
        let room = self.seat(id, player_id, out);
        Ok(Matched { room, created })
    }

    /// `leave_room`: gives up the seat now.
    pub fn leave_room(
        &mut self,
        player_id: &str,
        out: &mut Vec<Delivery>,
    ) -> Result<(), ProtoError> {
        if self.room_of(player_id).is_none() {
            return Err(not_in_room());
        }
        self.leave_with(player_id, LeaveReason::Left, out);
        Ok(())
    }

    /// Removes the player's seat and tells the others; hands the host role
    /// on when the host left.
    fn leave_with(&mut self, player_id: &str, reason: LeaveReason, out: &mut Vec<Delivery>) {
        let Some(room_id) = self.players.get(player_id).and_then(|p| p.room) else {
            return;
        };
        self.update_room(room_id, |room| {
            let Some(i) = room.seat_index(player_id) else {
                return;
            };
            room.seats.remove(i);
            let rest = room.member_ids();
            if rest.is_empty() {
                return;
            }
            out.push(Delivery {
                to: rest.clone(),
                event: Event::PlayerLeft {
                    room_id: room.id_str.clone(),
                    player_id: player_id.to_string(),
                    reason,
                },
            });
            if i == 0 {
                out.push(Delivery {
                    to: rest,
                    event: Event::HostChanged {
                        room_id: room.id_str.clone(),
                        host: room.seats[0].player_id.clone(),
                    },
                });
            }
        });
        self.release(player_id);
    }

    /// The room of a player or `not_in_room`, and whether the player hosts it.
    fn my_room(&self, player_id: &str) -> Result<(Uuid, bool), ProtoError> {
        let room = self.room_of(player_id).ok_or_else(not_in_room)?;
        Ok((room.id, room.host() == Some(player_id)))
    }

    fn my_room_as_host(&self, player_id: &str) -> Result<Uuid, ProtoError> {
        match self.my_room(player_id)? {
            (id, true) => Ok(id),
            (_, false) => Err(err(ErrorCode::NotHost, "only the host can do that")),
        }
    }

    pub fn start_game(
        &mut self,
        player_id: &str,
        out: &mut Vec<Delivery>,
    ) -> Result<RoomInfo, ProtoError> {
        let id = self.my_room_as_host(player_id)?;
        let room = &self.rooms[&id];
        if room.status != RoomStatus::Waiting {
            return Err(err(
                ErrorCode::RoomNotWaiting,
                format!("the room is {}", room.status.as_str()),
            ));
        }
        if room.seats.len() < 2 {
            return Err(err(
                ErrorCode::NotEnoughPlayers,
                "a game needs at least 2 players",
            ));
        }
        self.update_room(id, |room| Self::start(room, out));
        self.matches_started += 1;
        Ok(self.rooms[&id].info(true))
    }

    pub fn finish_game(
        &mut self,
        player_id: &str,
        result: Option<JsonObject>,
        now: Instant,
        out: &mut Vec<Delivery>,
    ) -> Result<RoomInfo, ProtoError> {
        let id = self.my_room_as_host(player_id)?;
        if let Some(r) = &result {
            check_data(r, "result")?;
        }
        let room = &self.rooms[&id];
        if room.status != RoomStatus::Active {
            return Err(err(
                ErrorCode::RoomNotActive,
                format!("the room is {}", room.status.as_str()),
            ));
        }
        self.update_room(id, |room| {
            room.status = RoomStatus::Finished;
            out.push(Delivery {
                to: room.member_ids(),
                event: Event::RoomStatus {
                    room_id: room.id_str.clone(),
                    status: RoomStatus::Finished,
                    result,
                },
            });
        });
        self.arm_room_timer(
            id,
            now + self.cfg.finished_room_ttl,
            Timer::Finished { room: id },
        );
        Ok(self.rooms[&id].info(true))
    }

    pub fn set_room_data(
        &mut self,
        player_id: &str,
        data: JsonObject,
        out: &mut Vec<Delivery>,
    ) -> Result<RoomInfo, ProtoError> {
        let id = self.my_room_as_host(player_id)?;
        check_data(&data, "data")?;
        self.update_room(id, |room| {
            room.data = data;
            out.push(Delivery {
                to: room.member_ids(),
                event: Event::RoomData {
                    room_id: room.id_str.clone(),
                    data: room.data.clone(),
                },
            });
        });
        Ok(self.rooms[&id].info(true))
    }

    pub fn set_player_data(
        &mut self,
        player_id: &str,
        data: JsonObject,
        out: &mut Vec<Delivery>,
    ) -> Result<RoomInfo, ProtoError> {
        let (id, _) = self.my_room(player_id)?;
        check_data(&data, "data")?;
        self.update_room(id, |room| {
            if let Some(i) = room.seat_index(player_id) {
                room.seats[i].data = data;
                out.push(Delivery {
                    to: room.member_ids(),
                    event: Event::PlayerData {
                        room_id: room.id_str.clone(),
                        player_id: player_id.to_string(),
                        data: room.seats[i].data.clone(),
                    },
                });
            }
        });
        Ok(self.rooms[&id].info(true))
    }

    pub fn kick(
        &mut self,
        player_id: &str,
        target: &str,
        out: &mut Vec<Delivery>,
    ) -> Result<(), ProtoError> {
        let id = self.my_room_as_host(player_id)?;
        if target == player_id {
            return Err(ProtoError::bad_request(
                "the host cannot kick itself; use leave_room",
            ));
        }
        if self.rooms[&id].seat_index(target).is_none() {
            return Err(err(
                ErrorCode::PeerNotFound,
                format!("no player {target:?} in your room"),
            ));
        }
        self.update_room(id, |room| {
            room.kicked.insert(target.to_string());
            out.push(Delivery::one(
                target,
                Event::Kicked {
                    room_id: room.id_str.clone(),
                },
            ));
        });
        self.leave_with(target, LeaveReason::Kicked, out);
        Ok(())
    }

    pub fn chat(
        &mut self,
        player_id: &str,
        text: &str,
        out: &mut Vec<Delivery>,
    ) -> Result<(), ProtoError> {
        let (id, _) = self.my_room(player_id)?;
        check_chat_text(text)?;
        let name = self.players[player_id].name.clone();
        self.update_room(id, |room| {
            let msg = ChatMessage {
                room_id: room.id_str.clone(),
                from: player_id.to_string(),
                name,
                text: text.to_string(),
                ts: ts(&Utc::now()),
            };
            if room.chat.len() == CHAT_HISTORY {
                room.chat.pop_front();
            }
            room.chat.push_back(msg.clone());
            out.push(Delivery {
                to: room.member_ids(),
                event: Event::Chat(msg),
            });
        });
        Ok(())
    }

    /// Public rooms of a status (waiting by default), oldest first.
    pub fn list_rooms(&self, status: RoomStatus, mode: Option<&str>, limit: u64) -> Vec<RoomInfo> {
        let limit = limit.min(MAX_LIST_LIMIT) as usize;
        self.listing
            .values()
            .filter_map(|id| self.rooms.get(id))
            .filter(|r| r.status == status && mode.is_none_or(|m| r.mode == m))
            .take(limit)
            .map(|r| r.info(false))
            .collect()
    }

    /// Checks that a signal may go from `from` to `to`: both in the same
    /// room. Returns the target's room id.
    pub fn check_signal(&self, from: &str, to: &str) -> Result<Uuid, ProtoError> {
        let room = self.room_of(from).ok_or_else(not_in_room)?;
        if to == from || room.seat_index(to).is_none() {
            return Err(err(
                ErrorCode::PeerNotFound,
                format!("no player {to:?} in your room"),
            ));
        }
        Ok(room.id)
    }

    pub fn count_signal(&mut self) {
        self.signals_relayed += 1;
    }

    /// Closes a room (admin, idle or finished timeout): every member gets
    /// `player_left` with reason `closed` for every player, itself included.
    pub fn close_room(&mut self, room_id: Uuid, out: &mut Vec<Delivery>) -> bool {
        let Some(room) = self.rooms.get(&room_id) else {
            return false;
        };
        let members = room.member_ids();
        for pid in &members {
            out.push(Delivery {
                to: members.clone(),
                event: Event::PlayerLeft {
                    room_id: room.id_str.clone(),
                    player_id: pid.clone(),
                    reason: LeaveReason::Closed,
                },
            });
        }
        self.drop_room(room_id);
        true
    }

    // ----- stats and checks -----------------------------------------------

    /// Lobby counters; `connections` and `uptime_s` are the server's to fill.
    pub fn stats(&self) -> Stats {
        Stats {
            total_rooms: self.counts.rooms.iter().sum(),
            waiting_rooms: self.counts.rooms[0],
            active_rooms: self.counts.rooms[1],
            finished_rooms: self.counts.rooms[2],
            total_players: self.counts.seats,
            connections: 0,
            players_waiting: self.counts.seats_waiting,
            held_seats: self.counts.held,
            matches_started: self.matches_started,
            signals_relayed: self.signals_relayed,
            uptime_s: 0,
        }
    }

    /// Sizes of the internal maps, to prove nothing is left behind.
    pub fn footprint(&self) -> LobbyFootprint {
        LobbyFootprint {
            rooms: self.rooms.len(),
            codes: self.codes.len(),
            players: self.players.len(),
            index_buckets: self.index.bucket_count(),
            listed: self.listing.len(),
            tokens: self.tokens.len(),
            timers: self.timers.len(),
        }
    }

    /// Recounts everything from the rooms and compares with the derived data.
    /// Used by the property tests; O(n).
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut counts = Counts::default();
        let mut seen_players = HashSet::new();
        let mut listing = BTreeMap::new();
        let mut index: HashSet<(MatchKey, u64, Uuid)> = HashSet::new();
        for (id, room) in &self.rooms {
            if room.seats.is_empty() {
                return Err(format!("room {id} is empty but alive"));
            }
            if room.seats.len() as u64 > room.max_players {
                return Err(format!("room {id} over capacity"));
            }
            if self.codes.get(&room.code) != Some(id) {
                return Err(format!("room {id} code not indexed"));
            }
            let fp = Footprint::of(room);
            counts.rooms[status_idx(fp.status)] += 1;
            counts.seats += fp.seats;
            counts.held += fp.held;
            if fp.status == RoomStatus::Waiting {
                counts.seats_waiting += fp.seats;
            }
            if let Some(keys) = fp.matchable {
                for k in keys {
                    index.insert((k, room.seq, *id));
                }
            }
            if fp.listed {
                listing.insert(room.seq, *id);
            }
            for seat in &room.seats {
                if !seen_players.insert(seat.player_id.clone()) {
                    return Err(format!("player {} has two seats", seat.player_id));
                }
                match self.players.get(&seat.player_id) {
                    Some(p) if p.room == Some(*id) && p.connected == seat.connected => {}
                    _ => return Err(format!("player {} disagrees with its seat", seat.player_id)),
                }
            }
        }
        for (pid, p) in &self.players {
            if let Some(r) = p.room {
                if self
                    .rooms
                    .get(&r)
                    .is_none_or(|room| room.seat_index(pid).is_none())
                {
                    return Err(format!("player {pid} points at a room without its seat"));
                }
            }
        }
        for (token, pid) in &self.tokens {
            if self.players.get(pid).and_then(|p| p.token.as_deref()) != Some(token.as_str()) {
                return Err(format!("token of {pid} is stale"));
            }
        }
        if self.codes.len() != self.rooms.len() {
            return Err("codes and rooms differ".into());
        }
        if counts != self.counts {
            return Err(format!("counts {:?} != recount {:?}", self.counts, counts));
        }
        if listing != self.listing {
            return Err("listing differs from recount".into());
        }
        let actual: HashSet<(MatchKey, u64, Uuid)> = self
            .index
            .entries()
            .map(|(k, s, id)| (k.clone(), s, id))
            .collect();
        if actual != index {
            return Err(format!(
                "index has {} entries, recount {}",
                actual.len(),
                index.len()
            ));
        }
        self.check_timers()
    }
}
