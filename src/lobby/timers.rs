//! Timers of the lobby: held seats that run out, finished rooms past their
//! TTL, waiting rooms left idle.
//!
//! Every timer belongs to one owner, a player or a room, which keeps the key
//! of its one pending timer and takes it along when it goes (resume, leave,
//! removal, close). So the pending timers are bounded by the rooms and held
//! seats alive, not by how much happened: a client looping `create_room` and
//! `leave_room` leaves nothing behind. An idle room's timer is not moved on
//! every activity; when it fires it looks at the room's activity counter and
//! sets itself again one timeout after the last activity if the room moved.

use std::time::Instant;

use uuid::Uuid;

use super::{Delivery, Lobby};
use crate::protocol::{LeaveReason, RoomStatus};

/// Key of a pending timer: its deadline, then a sequence number that keeps
/// timers of the same instant apart and in order.
pub(crate) type TimerKey = (Instant, u64);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Timer {
    /// A dropped player's identity, and its seat if any, held for the
    /// reconnect grace.
    Seat { player: String },
    /// A waiting room is closed unless something happened since `activity`.
    Idle { room: Uuid, activity: u64 },
    /// A finished room is closed.
    Finished { room: Uuid },
    /// A `queue_match` ticket expires.
    Ticket { ticket: String },
}

impl Lobby {
    pub(super) fn schedule(&mut self, at: Instant, timer: Timer) -> TimerKey {
        let key = (at, self.next_seq());
        self.timers.insert(key, timer);
        key
    }

    /// Holds a dropped player for the grace from `now`, replacing any
    /// earlier grace timer of the player.
    pub(super) fn arm_seat_timer(&mut self, player_id: &str, now: Instant) {
        self.cancel_seat_timer(player_id);
        let at = now + self.cfg.reconnect_grace;
        let key = self.schedule(
            at,
            Timer::Seat {
                player: player_id.to_string(),
            },
        );
        if let Some(p) = self.players.get_mut(player_id) {
            p.timer = Some(key);
        }
    }

    pub(super) fn cancel_seat_timer(&mut self, player_id: &str) {
        if let Some(key) = self.players.get_mut(player_id).and_then(|p| p.timer.take()) {
            self.timers.remove(&key);
        }
    }

    /// Sets the one timer of a room, replacing the one it had.
    pub(super) fn arm_room_timer(&mut self, room_id: Uuid, at: Instant, timer: Timer) {
        self.cancel_room_timer(room_id);
        let key = self.schedule(at, timer);
        match self.rooms.get_mut(&room_id) {
            Some(room) => room.timer = Some(key),
            None => {
                self.timers.remove(&key);
            }
        }
    }

    pub(super) fn cancel_room_timer(&mut self, room_id: Uuid) {
        if let Some(key) = self.rooms.get_mut(&room_id).and_then(|r| r.timer.take()) {
            self.timers.remove(&key);
        }
    }

    /// Fires every timer due at `now`: held seats that expired (`player_left`
    /// with reason `timeout`), finished rooms past their TTL, idle waiting
    /// rooms. Call it regularly.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Delivery>) {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            match timer {
                Timer::Seat { player } => {
                    let Some(p) = self.players.get_mut(&player) else {
                        continue;
                    };
                    p.timer = None;
                    if !p.connected {
                        // Giving up the seat forgets the player too.
                        self.leave_with(&player, LeaveReason::Timeout, out);
                        self.forget(&player);
                    }
                }
                Timer::Ticket { ticket } => self.expire_ticket(&ticket, out),
                Timer::Finished { room } => {
                    if let Some(r) = self.rooms.get_mut(&room) {
                        r.timer = None;
                    }
                    self.close_room(room, out);
                }
                Timer::Idle { room, activity } => {
                    let Some(r) = self.rooms.get_mut(&room) else {
                        continue;
                    };
                    r.timer = None;
                    if r.status != RoomStatus::Waiting {
                        continue;
                    }
                    if r.activity <= activity {
                        self.close_room(room, out);
                    } else {
                        // Something happened since: look again one timeout
                        // after the last activity.
                        let at = r.last_activity + self.cfg.room_idle_timeout;
                        let activity = r.activity;
                        self.arm_room_timer(room, at, Timer::Idle { room, activity });
                    }
                }
            }
        }
        self.tick_tickets(now, out);
    }

    /// Every pending timer is the one its owner points at, and every owner
    /// that should have a timer has one: a dropped player its grace, a
    /// waiting room its idle check, a finished room its close.
    pub(super) fn check_timers(&self) -> Result<(), String> {
        for (key, timer) in &self.timers {
            let owner_key = match timer {
                Timer::Seat { player } => self
                    .players
                    .get(player)
                    .filter(|p| !p.connected)
                    .and_then(|p| p.timer),
                Timer::Idle { room, .. } => self
                    .rooms
                    .get(room)
                    .filter(|r| r.status == RoomStatus::Waiting)
                    .and_then(|r| r.timer),
                Timer::Finished { room } => self
                    .rooms
                    .get(room)
                    .filter(|r| r.status == RoomStatus::Finished)
                    .and_then(|r| r.timer),
                Timer::Ticket { ticket } => self.tickets.get(ticket).and_then(|t| t.timer),
            };
            if owner_key != Some(*key) {
                return Err(format!("timer {timer:?} left behind by its owner"));
            }
        }
        for (pid, p) in &self.players {
            let ok = match p.timer.and_then(|k| self.timers.get(&k)) {
                Some(Timer::Seat { player }) => !p.connected && player == pid,
                Some(_) => false,
                None => p.connected && p.timer.is_none(),
            };
            if !ok {
                return Err(format!(
                    "player {pid} (connected: {}) has timer {:?}",
                    p.connected, p.timer
                ));
            }
        }
        for (id, r) in &self.rooms {
            let ok = match (r.status, r.timer.and_then(|k| self.timers.get(&k))) {
                (RoomStatus::Waiting, Some(Timer::Idle { room, .. }))
                | (RoomStatus::Finished, Some(Timer::Finished { room })) => room == id,
                (RoomStatus::Active, None) => r.timer.is_none(),
                _ => false,
            };
            if !ok {
                return Err(format!(
                    "room {id} ({}) has timer {:?}",
                    r.status.as_str(),
                    r.timer
                ));
            }
        }
        Ok(())
    }
}
