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
//!
//! The engine is split by concern: `validate` (request checks and limits),
//! `codes` (join codes),
//! `players` (connections, grace, resume tokens), `seats` (entering and
//! leaving rooms), `actions` (what members and hosts do in a room),
//! `derived` (counters, index, listings, invariants) and `timers`.

mod actions;
mod codes;
mod derived;
mod hook_event;
mod hooks;
pub mod index;
pub mod party;
mod players;
mod queue;
#[cfg(test)]
mod queue_props;
pub mod room;
mod seats;
#[cfg(test)]
mod tests;
pub mod tickets;
mod timers;
mod validate;

use std::collections::{BTreeMap, HashMap};

use foldhash::HashMap as FastMap;
use std::time::Duration;

use uuid::Uuid;

use crate::protocol::{Event, RoomInfo};
use codes::CodeSource;
pub use codes::{new_code_text, CODE_ALPHABET, CODE_LEN};
pub use derived::LobbyFootprint;
use derived::{Counts, Footprint};
pub use hook_event::{HookEvent, EVENT_TYPES};
use index::MatchIndex;
pub use players::Player;
pub use room::{Room, Seat};
use tickets::TicketQueue;
pub use tickets::TicketSpec;
use timers::{Timer, TimerKey};
pub use validate::*;

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
    /// A `queue_match` ticket expires after this long in the queue.
    pub ticket_ttl: Duration,
    /// A room smaller than `max_players` (but of at least every ticket's
    /// `min_players`) forms once its oldest ticket waited this long.
    pub ticket_fill_after: Duration,
}

impl Default for LobbyConfig {
    fn default() -> Self {
        LobbyConfig {
            max_players: 16,
            max_rooms: 100_000,
            reconnect_grace: Duration::from_millis(15_000),
            finished_room_ttl: Duration::from_millis(60_000),
            room_idle_timeout: Duration::from_millis(600_000),
            ticket_ttl: Duration::from_millis(120_000),
            ticket_fill_after: Duration::from_millis(10_000),
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

/// Result of `find_match`.
#[derive(Debug, Clone)]
pub struct Matched {
    pub room: RoomInfo,
    pub created: bool,
}

/// The whole lobby state. See the module docs.
#[derive(Debug)]
pub struct Lobby {
    cfg: LobbyConfig,
    // foldhash: seeded per process (no collisions to aim for), and a
    // fraction of SipHash's cost on the relay path's membership check.
    rooms: FastMap<Uuid, Room>,
    codes: HashMap<String, Uuid>,
    players: FastMap<String, Player>,
    /// Resume token to player id.
    tokens: HashMap<String, String>,
    index: MatchIndex,
    /// Public waiting and active rooms, oldest first, for listings.
    listing: BTreeMap<u64, Uuid>,
    /// Pending timers, each owned by the room or player that keeps its key.
    timers: BTreeMap<TimerKey, Timer>,
    counts: Counts,
    /// Creation order of rooms, and the tie-breaker of timers.
    seq: u64,
    matches_started: u64,
    signals_relayed: u64,
    /// 1.2: accepted `send` requests.
    messages_relayed: u64,
    watch_listing: bool,
    listing_changes: Vec<ListingChange>,
    code_source: CodeSource,
    /// Hook events of the current change, while webhooks are on.
    hooks: Option<Vec<crate::lobby::HookEvent>>,
    /// An allocator is asked before `game_start` (see `hooks.rs`).
    hold_starts: bool,
    starts: Vec<Uuid>,
    /// `queue_match` tickets.
    tickets: TicketQueue,
    /// When the ticket queue was last looked at by the tick.
    tickets_looked: Option<std::time::Instant>,
    /// Parties by id, and their join codes.
    parties: FastMap<String, party::Party>,
    party_codes: HashMap<String, String>,
    /// Events of changes made where no event list is at hand (a forgotten
    /// player leaving its party): delivered after the operation's own.
    later: Vec<Delivery>,
}

/// A change of the public list of waiting rooms (`room_listed`,
/// `room_updated`, `room_delisted`), for subscribers of `mode` (or of all).
#[derive(Debug, Clone)]
pub struct ListingChange {
    pub mode: String,
    pub event: Event,
}

impl Lobby {
    pub fn new(cfg: LobbyConfig) -> Self {
        Lobby {
            cfg,
            rooms: FastMap::default(),
            codes: HashMap::new(),
            players: FastMap::default(),
            tokens: HashMap::new(),
            index: MatchIndex::default(),
            listing: BTreeMap::new(),
            timers: BTreeMap::new(),
            counts: Counts::default(),
            seq: 0,
            matches_started: 0,
            signals_relayed: 0,
            messages_relayed: 0,
            watch_listing: false,
            listing_changes: Vec::new(),
            code_source: CodeSource::default(),
            hooks: None,
            hold_starts: false,
            starts: Vec::new(),
            tickets: TicketQueue::default(),
            tickets_looked: None,
            parties: FastMap::default(),
            party_codes: HashMap::new(),
            later: Vec::new(),
        }
    }

    pub fn config(&self) -> &LobbyConfig {
        &self.cfg
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Events of changes made outside an operation's event list (see
    /// `later`); deliver them after the operation's.
    pub fn take_later(&mut self) -> Vec<Delivery> {
        std::mem::take(&mut self.later)
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
}
