//! `queue_match` and `cancel_match` (1.1): tickets in the [`TicketQueue`],
//! rooms formed from them, backfill seats offered to them, expiry, and
//! players who drop while queued.
//!
//! Forming is atomic: the group's tickets leave the queue and every player
//! takes a seat in one step under the lobby's lock, or, at the room limit,
//! nothing happens and the tickets wait.

use std::collections::BTreeSet;
use std::time::Instant;

use chrono::Utc;
use serde_json::Value;
use uuid::Uuid;

use super::tickets::{Formed, Ticket, TicketSpec, SCAN_CAP};
use super::timers::Timer;
use super::{emit, err, Delivery, Lobby, Seat};
use crate::lobby::HookEvent;
use crate::protocol::{
    ErrorCode, Event, JsonObject, ProtoError, QueueMatch, RoomStatus, TicketInfo,
};

/// Tickets offered a backfill seat that just opened, per pool.
const REFILL_OFFERS: usize = 8;

impl Lobby {
    /// `queue_match`: a ticket for the caller, seated at once in a backfill
    /// room that fits, or queued (and formed into a room as soon as it can).
    pub fn queue_match(
        &mut self,
        player_id: &str,
        req: QueueMatch,
        now: Instant,
        out: &mut Vec<Delivery>,
    ) -> Result<TicketInfo, ProtoError> {
        self.check_free(player_id)?;
        let spec = TicketSpec::from_request(&req, self.cfg.max_players)?;
        let players = self.group_of(player_id)?;
        self.check_members_free(&players)?;
        super::seats::check_group_size(players.len(), spec.max_players)?;
        let seq = self.next_seq();
        // Members whose connection is gone hold the ticket back until they
        // are back.
        let away = players
            .iter()
            .filter(|p| self.players.get(*p).is_some_and(|p| !p.connected))
            .cloned()
            .collect::<BTreeSet<_>>();
        let ticket = Ticket {
            id: Uuid::new_v4().to_string(),
            players,
            spec,
            seq,
            queued: now,
            queued_at: Utc::now(),
            away,
            timer: None,
        };
        let info = ticket.info();
        // The other members learn of the ticket before any room it forms.
        emit(
            out,
            info.players
                .iter()
                .filter(|p| *p != player_id)
                .cloned()
                .collect(),
            Event::TicketQueued {
                ticket: info.clone(),
            },
        );
        let room = if ticket.away.is_empty() {
            self.backfill_room_for(&ticket, now)
        } else {
            None
        };
        if let Some(room) = room {
            self.seat_ticket(room, ticket, out);
            return Ok(info);
        }
        let id = ticket.id.clone();
        self.tickets.add(ticket);
        let key = self.schedule(
            now + self.cfg.ticket_ttl,
            Timer::Ticket { ticket: id.clone() },
        );
        if let Some(t) = self.tickets.get_mut(&id) {
            t.timer = Some(key);
        }
        self.look_at(vec![id], now, out);
        Ok(info)
    }

    /// `cancel_match`: the caller's ticket leaves the queue (a party's
    /// only by its leader; the other members get `ticket_cancelled`).
    pub fn cancel_match(
        &mut self,
        player_id: &str,
        out: &mut Vec<Delivery>,
    ) -> Result<(), ProtoError> {
        let Some(t) = self.tickets.ticket_of(player_id) else {
            return Err(err(ErrorCode::NotQueued, "you have no ticket in the queue"));
        };
        if t.players[0] != player_id {
            return Err(err(
                ErrorCode::NotPartyLeader,
                "only the party's leader can cancel the party's ticket",
            ));
        }
        let id = t.id.clone();
        if let Some(t) = self.drop_ticket(&id) {
            emit(
                out,
                t.players.into_iter().filter(|p| p != player_id).collect(),
                Event::TicketCancelled { ticket_id: t.id },
            );
        }
        Ok(())
    }

    /// Takes a ticket out of the queue with its expiry timer.
    pub(super) fn drop_ticket(&mut self, ticket_id: &str) -> Option<Ticket> {
        let t = self.tickets.remove(ticket_id)?;
        if let Some(key) = t.timer {
            self.timers.remove(&key);
        }
        Some(t)
    }

    /// The ticket's TTL ran out: `ticket_expired` to its players.
    pub(super) fn expire_ticket(&mut self, ticket_id: &str, out: &mut Vec<Delivery>) {
        if let Some(t) = self.tickets.get_mut(ticket_id) {
            t.timer = None; // the timer is the one firing
        }
        if let Some(t) = self.drop_ticket(ticket_id) {
            emit(out, t.players, Event::TicketExpired { ticket_id: t.id });
        }
    }

    /// The periodic pass: the tickets that something may let form now
    /// (see [`super::tickets::TicketQueue::due`]).
    pub(super) fn tick_tickets(&mut self, now: Instant, out: &mut Vec<Delivery>) {
        let last = self.tickets_looked.replace(now).unwrap_or(now);
        if self.tickets.is_empty() {
            return;
        }
        let due = self.tickets.due(last, now, self.cfg.ticket_fill_after);
        self.look_at(due, now, out);
    }

    /// Each ticket (oldest first) takes a backfill seat that fits, or
    /// anchors a group that forms a room.
    fn look_at(&mut self, mut ids: Vec<String>, now: Instant, out: &mut Vec<Delivery>) {
        ids.sort_by_key(|id| self.tickets.get(id).map_or(u64::MAX, |t| t.seq));
        ids.dedup();
        for id in ids {
            let Some(t) = self.tickets.get(&id) else {
                continue;
            };
            if !t.away.is_empty() {
                continue;
            }
            if let Some(room) = self.backfill_room_for(t, now) {
                if let Some(t) = self.drop_ticket(&id) {
                    self.seat_ticket(room, t, out);
                }
                continue;
            }
            if self.rooms.len() >= self.cfg.max_rooms {
                continue; // no room can be made: the tickets wait
            }
            let formed = self
                .tickets
                .form(vec![id], now, self.cfg.ticket_fill_after, 1);
            for f in formed {
                self.seat_formed(f, now, out);
            }
        }
    }

    /// A formed group's room: created `active` with every player seated in
    /// ticket order (the first one host), each ticket's players told with
    /// `game_start` and their `ticket_id`.
    fn seat_formed(&mut self, f: Formed, now: Instant, out: &mut Vec<Delivery>) {
        for t in &f.tickets {
            if let Some(key) = t.timer {
                self.timers.remove(&key);
            }
        }
        let spec = &f.tickets[0].spec;
        let mut data: JsonObject = spec.filters.clone();
        if let Some(region) = &f.region {
            data.insert("region".into(), Value::String(region.clone()));
        }
        let backfill = f.tickets.iter().any(|t| t.spec.backfill);
        let Ok(room_id) = self.insert_room(
            false,
            spec.mode.clone(),
            spec.max_players,
            data,
            vec![],
            vec![],
            backfill,
            now,
        ) else {
            // Checked by the caller; should it happen, the tickets stay.
            for t in f.tickets {
                self.tickets.add(t);
            }
            return;
        };
        self.cancel_room_timer(room_id);
        let seats: Vec<Seat> = f
            .tickets
            .iter()
            .flat_map(|t| &t.players)
            .map(|pid| Seat {
                player_id: pid.clone(),
                name: self
                    .players
                    .get(pid)
                    .map(|p| p.name.clone())
                    .unwrap_or_default(),
                data: JsonObject::new(),
                joined_at: Utc::now(),
                connected: true,
                ready: false,
            })
            .collect();
        let hold = self.hold_starts;
        self.update_room(room_id, |room| {
            room.seats = seats;
            room.status = RoomStatus::Active;
            room.tickets = f
                .tickets
                .iter()
                .map(|t| (t.id.clone(), t.players.clone()))
                .collect();
            if !hold {
                let info = room.info(true);
                for (ticket, players) in &room.tickets {
                    emit(
                        out,
                        players.clone(),
                        Event::game_start(info.clone(), None, Some(ticket.clone())),
                    );
                }
            }
        });
        for t in &f.tickets {
            for pid in &t.players {
                if let Some(p) = self.players.get_mut(pid) {
                    p.room = Some(room_id);
                }
            }
        }
        // The hooks see the room as formed: created, every player joined,
        // started.
        self.hook(|l| {
            Some(HookEvent::RoomCreated {
                room: l.hook_room(room_id)?,
            })
        });
        for t in &f.tickets {
            for pid in &t.players {
                self.hook(|l| {
                    let room = l.hook_room(room_id)?;
                    let player = room.players.iter().find(|p| &p.player_id == pid)?.clone();
                    Some(HookEvent::PlayerJoined { room, player })
                });
            }
        }
        self.started(room_id);
    }

    /// Seats a ticket's players in an active backfill room (they get
    /// `game_start` with the ticket, the members `player_joined`).
    fn seat_ticket(&mut self, room_id: Uuid, t: Ticket, out: &mut Vec<Delivery>) {
        for pid in &t.players {
            self.seat(room_id, pid, out);
        }
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.tickets.push((t.id.clone(), t.players.clone()));
            out.push(Delivery {
                to: t.players.clone(),
                event: Event::game_start(room.info(true), None, Some(t.id)),
            });
        }
    }

    /// The oldest active backfill room with enough free seats that admits
    /// every player of the ticket under its skill and region rules.
    fn backfill_room_for(&self, t: &Ticket, now: Instant) -> Option<Uuid> {
        let s = &t.spec;
        self.index
            .candidates(&s.mode, s.max_players, &s.filters, true)
            .take(SCAN_CAP)
            .find(|id| {
                self.rooms
                    .get(id)
                    .is_some_and(|room| room.matches_filters(&s.filters) && room_fits(room, t, now))
            })
    }

    /// A backfill seat opened in `room_id`: the oldest fitting tickets of
    /// its mode and size take it.
    fn offer_seats(&mut self, room_id: Uuid, now: Instant, out: &mut Vec<Delivery>) {
        loop {
            let Some(room) = self.rooms.get(&room_id) else {
                return;
            };
            if !room.matchable() || !room.refillable() {
                return;
            }
            let found = self
                .tickets
                .oldest_of(&room.mode, room.max_players, REFILL_OFFERS)
                .into_iter()
                .find(|t| room.matches_filters(&t.spec.filters) && room_fits(room, t, now))
                .map(|t| t.id.clone());
            let Some(id) = found else {
                return;
            };
            let Some(t) = self.drop_ticket(&id) else {
                return;
            };
            self.seat_ticket(room_id, t, out);
        }
    }

    /// The player's connection dropped: its ticket waits without it.
    pub(super) fn ticket_away(&mut self, player_id: &str) {
        self.tickets.set_away(player_id, true);
    }

    /// The player is back: its ticket may form a room at once.
    pub(super) fn ticket_back(&mut self, player_id: &str, out: &mut Vec<Delivery>) {
        let Some(t) = self.tickets.ticket_of(player_id) else {
            return;
        };
        let id = t.id.clone();
        self.tickets.set_away(player_id, false);
        if self.tickets.get(&id).is_some_and(|t| t.away.is_empty()) {
            self.look_at(vec![id], Instant::now(), out);
        }
    }

    /// The player is forgotten: its ticket goes with it.
    pub(super) fn forget_ticket(&mut self, player_id: &str) {
        if let Some(id) = self.tickets.ticket_of(player_id).map(|t| t.id.clone()) {
            self.drop_ticket(&id);
        }
    }

    /// A seat opened in a room: if it is an active backfill room (checked
    /// by `offer_seats`), queued tickets take the seat at once.
    pub(super) fn refill(&mut self, room_id: Uuid, out: &mut Vec<Delivery>) {
        if !self.tickets.is_empty() {
            self.offer_seats(room_id, Instant::now(), out);
        }
    }

    pub fn tickets_queued(&self) -> usize {
        self.tickets.len()
    }

    /// The queue's own indexes, and every ticket's players known, in no
    /// room, and its expiry timer pending.
    pub(super) fn check_tickets(&self) -> Result<(), String> {
        self.tickets.check()?;
        for t in self.tickets.iter() {
            for pid in &t.players {
                match self.players.get(pid) {
                    Some(p) if p.room.is_none() => {}
                    _ => return Err(format!("ticket {} holds {pid}, seated or unknown", t.id)),
                }
            }
            match t.timer.and_then(|k| self.timers.get(&k)) {
                Some(Timer::Ticket { ticket }) if *ticket == t.id => {}
                _ => return Err(format!("ticket {} has no expiry timer", t.id)),
            }
        }
        Ok(())
    }
}

/// Whether a backfill room can take the ticket now: free seats for all its
/// players, none of them kicked, the room's `data.skill` (when set) within
/// the ticket's window, the room's `data.region` (when set) within the
/// ticket's RTT limit.
fn room_fits(room: &super::Room, t: &Ticket, now: Instant) -> bool {
    if (room.seats.len() as u64 + t.size()) > room.max_players
        || t.players.iter().any(|p| room.kicked.contains(p))
    {
        return false;
    }
    if let Some(room_skill) = room.data.get("skill").and_then(Value::as_f64) {
        match t.spec.skill {
            Some(s) if (s - room_skill).abs() <= t.window(now) => {}
            _ => return false,
        }
    }
    if let (Some(region), Some(ok)) = (
        room.data.get("region").and_then(Value::as_str),
        t.acceptable_regions(),
    ) {
        if !ok.contains_key(region) {
            return false;
        }
    }
    true
}
