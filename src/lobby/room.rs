//! One room: its seats in join order, status, data, chat backlog and access
//! rules, plus the views of it that go on the wire.
//!
//! A room knows nothing of the other rooms or of indexes; the [`super::Lobby`]
//! keeps those in step through the room's [`Footprint`].

use std::collections::{HashSet, VecDeque};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::protocol::{ChatMessage, JsonObject, PlayerInfo, RoomInfo, RoomStatus, Visibility};

/// A taken seat. The first seat in join order is the host.
#[derive(Debug, Clone)]
pub struct Seat {
    pub player_id: String,
    pub name: String,
    pub data: JsonObject,
    pub joined_at: DateTime<Utc>,
    pub connected: bool,
    /// 1.2: `set_ready`; kept while the seat is held.
    pub ready: bool,
}

#[derive(Debug, Clone)]
pub struct Room {
    pub id: Uuid,
    /// The id as text, made once: it goes into nearly every event.
    pub id_str: String,
    pub code: String,
    pub private: bool,
    pub mode: String,
    pub max_players: u64,
    pub status: RoomStatus,
    pub created_at: DateTime<Utc>,
    /// Creation order; the matchmaking index and listings sort by it.
    pub seq: u64,
    pub data: JsonObject,
    pub seats: Vec<Seat>,
    /// Who watches without a seat (1.1), in join order; never counted as
    /// players, never host.
    pub spectators: Vec<Seat>,
    pub max_spectators: u64,
    pub kicked: HashSet<String>,
    pub allowed_players: Vec<String>,
    pub allowed_roles: Vec<String>,
    /// Refilled through matchmaking while active with a free seat.
    pub backfill: bool,
    /// 1.2: starts once every seated player is ready (at least 2).
    pub start_when_ready: bool,
    /// The tickets that seated players here (`queue_match`): each ticket's
    /// id and players, for their `game_start`.
    pub tickets: Vec<(String, Vec<String>)>,
    pub chat: VecDeque<ChatMessage>,
    /// Bumped on every change a member or a listing can see; idle timers
    /// compare it to know whether the room moved since they were set.
    pub activity: u64,
    pub last_activity: Instant,
    /// The room's one pending timer: its idle check while waiting, its
    /// close while finished, none while active.
    pub(crate) timer: Option<super::timers::TimerKey>,
}

impl Room {
    pub fn host(&self) -> Option<&str> {
        self.seats.first().map(|s| s.player_id.as_str())
    }

    pub fn seat_index(&self, player_id: &str) -> Option<usize> {
        self.seats.iter().position(|s| s.player_id == player_id)
    }

    pub fn spectator_index(&self, player_id: &str) -> Option<usize> {
        self.spectators
            .iter()
            .position(|s| s.player_id == player_id)
    }

    pub fn is_full(&self) -> bool {
        self.seats.len() as u64 >= self.max_players
    }

    pub fn restricted(&self) -> bool {
        !self.allowed_players.is_empty() || !self.allowed_roles.is_empty()
    }

    /// Whether `find_match` may place players here: public, a free seat,
    /// open to anyone, and waiting (or active, for a backfill room).
    pub fn matchable(&self) -> bool {
        !self.private && !self.is_full() && !self.restricted() && self.matchable_status()
    }

    fn matchable_status(&self) -> bool {
        self.status == RoomStatus::Waiting || self.refillable()
    }

    /// An active backfill room: offered before waiting rooms.
    pub fn refillable(&self) -> bool {
        self.backfill && self.status == RoomStatus::Active
    }

    /// Whether the room shows in `list_rooms`, `/api/rooms` and room listings.
    pub fn listed(&self) -> bool {
        !self.private && self.status != RoomStatus::Finished
    }

    /// The room as it shows in the live room list (public, waiting, not
    /// empty), without its code; `None` when it does not show.
    pub fn public_view(&self) -> Option<RoomInfo> {
        (!self.private && self.status == RoomStatus::Waiting && !self.seats.is_empty())
            .then(|| self.info(false))
    }

    /// True when every filter equals the room's data under the same key.
    pub fn matches_filters(&self, filters: &JsonObject) -> bool {
        filters.iter().all(|(k, v)| self.data.get(k) == Some(v))
    }

    /// May this player join under `allowed_players` / `allowed_roles`?
    pub fn admits(&self, player_id: &str, roles: &[String]) -> bool {
        if self.kicked.contains(player_id) {
            return false;
        }
        if !self.restricted() {
            return true;
        }
        self.allowed_players.iter().any(|p| p == player_id)
            || self.allowed_roles.iter().any(|r| roles.contains(r))
    }

    /// Everyone who hears the room's events: the seated players, then the
    /// spectators.
    pub fn member_ids(&self) -> Vec<String> {
        self.seats
            .iter()
            .chain(&self.spectators)
            .map(|s| s.player_id.clone())
            .collect()
    }

    pub fn member_ids_except(&self, player_id: &str) -> Vec<String> {
        self.seats
            .iter()
            .chain(&self.spectators)
            .filter(|s| s.player_id != player_id)
            .map(|s| s.player_id.clone())
            .collect()
    }

    /// The seated players only.
    pub fn seat_ids(&self) -> Vec<String> {
        self.seats.iter().map(|s| s.player_id.clone()).collect()
    }

    /// Whether a `start_when_ready` room should start now: waiting, at
    /// least 2 seated (a full room has at least 2), every one ready.
    pub fn all_ready(&self) -> bool {
        self.start_when_ready
            && self.status == RoomStatus::Waiting
            && self.seats.len() >= 2
            && self.seats.iter().all(|s| s.ready)
    }

    pub fn held_seats(&self) -> u64 {
        self.seats.iter().filter(|s| !s.connected).count() as u64
    }

    /// The room object; `code` only for members (`for_member`).
    pub fn info(&self, for_member: bool) -> RoomInfo {
        RoomInfo {
            room_id: self.id_str.clone(),
            code: for_member.then(|| self.code.clone()),
            visibility: if self.private {
                Visibility::Private
            } else {
                Visibility::Public
            },
            mode: self.mode.clone(),
            max_players: self.max_players,
            status: self.status,
            host: self.host().map(str::to_string),
            created_at: self.created_at,
            data: self.data.clone(),
            players: self.seats.iter().map(Seat::info).collect(),
            backfill: self.backfill,
            max_spectators: self.max_spectators,
            spectators: self.spectators.iter().map(Seat::info).collect(),
            start_when_ready: self.start_when_ready,
        }
    }

    /// The (key, value) pairs of `data` that filters can ask for: scalar
    /// values only, as filters only carry scalars.
    pub fn filterable(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.data.iter().filter(|(_, v)| super::is_scalar(v))
    }
}

impl Seat {
    pub fn info(&self) -> PlayerInfo {
        PlayerInfo {
            player_id: self.player_id.clone(),
            name: self.name.clone(),
            data: self.data.clone(),
            joined_at: self.joined_at,
            connected: self.connected,
            ready: self.ready,
        }
    }
}
