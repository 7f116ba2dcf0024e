//! Players: connections opening and closing, the identity and seat held
//! for the reconnect grace, and single-use resume tokens.

use std::time::Instant;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::timers::TimerKey;
use super::{emit, Delivery, Lobby};
use crate::protocol::{Event, LeaveReason, RoomInfo};

/// What the outside can know of a player.
#[derive(Clone)]
pub struct Player {
    pub name: String,
    pub room: Option<Uuid>,
    pub connected: bool,
    pub roles: Vec<String>,
    pub last_seen: DateTime<Utc>,
    /// The grace timer of a dropped player; `None` while connected.
    pub(super) timer: Option<TimerKey>,
    /// The one valid resume token of this player, if any.
    pub(super) token: Option<String>,
    /// The party it is in (1.1).
    pub(super) party: Option<String>,
}

/// Never shows the resume token: a `Player` may be printed in logs and
/// test failures, and the token is a credential.
impl std::fmt::Debug for Player {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Player")
            .field("name", &self.name)
            .field("room", &self.room)
            .field("connected", &self.connected)
            .field("roles", &self.roles)
            .field("last_seen", &self.last_seen)
            .field("timer", &self.timer)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("party", &self.party)
            .finish()
    }
}

impl Lobby {
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
                let back = !p.connected;
                p.connected = true;
                p.roles = roles;
                p.last_seen = now;
                let room_id = p.room;
                self.cancel_seat_timer(player_id);
                // Back (not a takeover): the party sees it connected again.
                if back {
                    self.party_presence(player_id, out);
                }
                self.ticket_back(player_id, out);
                let room_id = room_id?;
                self.update_room(room_id, |room| {
                    // A spectator's return is silent.
                    if let Some(i) = room.spectator_index(player_id) {
                        room.spectators[i].connected = true;
                    }
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
                        party: None,
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
        self.ticket_away(player_id);
        self.party_presence(player_id, out);
        let Some(room_id) = room_id else {
            return;
        };
        self.update_room(room_id, |room| {
            // A spectator's drop is silent; its place is held the same.
            if let Some(i) = room.spectator_index(player_id) {
                room.spectators[i].connected = false;
            }
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

    /// Removes a player with its resume token and grace timer.
    pub(super) fn forget(&mut self, player_id: &str) {
        let mut later = std::mem::take(&mut self.later);
        self.drop_from_party(player_id, &mut later);
        self.later = later;
        self.forget_ticket(player_id);
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
    pub(super) fn release(&mut self, player_id: &str) {
        if let Some(p) = self.players.get_mut(player_id) {
            p.room = None;
            if !p.connected {
                self.forget(player_id);
            }
        }
    }
}
