//! Data derived from the rooms: counters for `stats`, the matchmaking
//! index, the public listing and its change feed. Every change to a room goes
//! through [`Lobby::update_room`], which moves all of them from the room's
//! old [`Footprint`] to its new one; [`Lobby::check_invariants`] recounts
//! them from scratch.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use uuid::Uuid;

use super::index::{keys_of, MatchKey};
use super::{ListingChange, Lobby, Room, MAX_LIST_LIMIT};
use crate::protocol::{Event, RoomInfo, RoomStatus, Stats};

/// What a room contributes to counters, index and listings.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Footprint {
    status: RoomStatus,
    seats: u64,
    held: u64,
    matchable: Option<Vec<MatchKey>>,
    listed: bool,
    seq: u64,
}

impl Footprint {
    pub(super) fn of(room: &Room) -> Self {
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
pub(super) struct Counts {
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
    /// Pending timers: one per waiting or finished room, per held player
    /// and per queued ticket.
    pub timers: usize,
    /// Queued `queue_match` tickets.
    pub tickets: usize,
    /// Parties alive.
    pub parties: usize,
}

impl Lobby {
    /// Applies `f` to a room and moves counters, index and listings from the
    /// room's old footprint to its new one. Ends the idle timer of a room
    /// that stops waiting, and removes the room if it is empty afterwards.
    /// The one door through which rooms change.
    pub(super) fn update_room<R>(
        &mut self,
        room_id: Uuid,
        f: impl FnOnce(&mut Room) -> R,
    ) -> Option<R> {
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

    pub(super) fn apply(&mut self, id: Uuid, f: &Footprint) {
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

    pub(super) fn drop_room(&mut self, room_id: Uuid) {
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
            self.hook(|_| {
                Some(crate::lobby::HookEvent::RoomClosed {
                    room_id: room_id.to_string(),
                })
            });
            for seat in room.seats.iter().chain(&room.spectators) {
                self.release(&seat.player_id);
            }
        }
    }

    /// Public rooms of a status, oldest first, at most `limit` (capped at
    /// [`MAX_LIST_LIMIT`]).
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
            messages_relayed: self.messages_relayed,
            tickets_queued: self.tickets.len() as u64,
            parties: self.parties.len() as u64,
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
            tickets: self.tickets.len(),
            parties: self.parties.len(),
        }
    }

    /// Recounts everything from the rooms and compares with the derived data,
    /// and checks that every pending timer belongs to a live room or held
    /// player. For tests; O(n).
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
            if room.spectators.len() as u64 > room.max_spectators {
                return Err(format!("room {id} over its spectator places"));
            }
            for s in &room.spectators {
                if !seen_players.insert(s.player_id.clone()) {
                    return Err(format!("player {} is in two places", s.player_id));
                }
                match self.players.get(&s.player_id) {
                    Some(p) if p.room == Some(*id) && p.connected == s.connected => {}
                    _ => {
                        return Err(format!(
                            "spectator {} disagrees with its place",
                            s.player_id
                        ))
                    }
                }
            }
        }
        for (pid, p) in &self.players {
            if let Some(r) = p.room {
                if self.rooms.get(&r).is_none_or(|room| {
                    room.seat_index(pid).is_none() && room.spectator_index(pid).is_none()
                }) {
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
        self.check_tickets()?;
        self.check_parties()?;
        self.check_timers()
    }
}
