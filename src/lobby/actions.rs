//! What members and hosts do inside a room: start and finish the game,
//! set room and player data, kick, chat, and the check before a signal is
//! relayed.

use std::time::Instant;

use chrono::Utc;
use uuid::Uuid;

use super::timers::Timer;
use super::validate::{check_chat_text, check_data};
use super::{err, not_in_room, Delivery, Lobby, CHAT_HISTORY};
use crate::protocol::{
    ts, ChatMessage, ErrorCode, Event, JsonObject, LeaveReason, ProtoError, RoomInfo, RoomStatus,
};

impl Lobby {
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
        let hold = self.hold_starts;
        self.update_room(id, |room| Self::start(room, hold, out));
        self.started(id);
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
        let hook_result = result.clone();
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
        self.hook(|l| {
            Some(crate::lobby::HookEvent::RoomFinished {
                room: l.hook_room(id)?,
                result: hook_result,
            })
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
        if self.rooms[&id].seat_index(player_id).is_none() {
            return Err(err(ErrorCode::Forbidden, "spectators have no player data"));
        }
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

    /// `set_ready` (1.2): a seated player's ready flag. Members hear of a
    /// change (setting the same value again is silent); a
    /// `start_when_ready` room whose seated players are now all ready
    /// starts as by `start_game`.
    pub fn set_ready(
        &mut self,
        player_id: &str,
        ready: bool,
        out: &mut Vec<Delivery>,
    ) -> Result<RoomInfo, ProtoError> {
        let (id, _) = self.my_room(player_id)?;
        let room = &self.rooms[&id];
        let Some(i) = room.seat_index(player_id) else {
            return Err(err(ErrorCode::Forbidden, "spectators are never ready"));
        };
        if room.status != RoomStatus::Waiting {
            return Err(err(
                ErrorCode::RoomNotWaiting,
                format!("the room is {}", room.status.as_str()),
            ));
        }
        if room.seats[i].ready == ready {
            return Ok(room.info(true));
        }
        let hold = self.hold_starts;
        let mut started = false;
        self.update_room(id, |room| {
            room.seats[i].ready = ready;
            out.push(Delivery {
                to: room.member_ids(),
                event: Event::PlayerReady {
                    room_id: room.id_str.clone(),
                    player_id: player_id.to_string(),
                    ready,
                },
            });
            if room.all_ready() {
                Self::start(room, hold, out);
                started = true;
            }
        });
        if started {
            self.started(id);
        }
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
        let room = &self.rooms[&id];
        if room.seat_index(target).is_none() && room.spectator_index(target).is_none() {
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

    /// Checks that a signal may go from `from` to `to`: both in the same
    /// room, and at least one of them seated (spectators signal players,
    /// not each other). Returns the target's room id.
    pub fn check_signal(&self, from: &str, to: &str) -> Result<Uuid, ProtoError> {
        let room = self.room_of(from).ok_or_else(not_in_room)?;
        let seated = room.seat_index(to).is_some();
        if to == from || !(seated || room.spectator_index(to).is_some()) {
            return Err(err(
                ErrorCode::PeerNotFound,
                format!("no player {to:?} in your room"),
            ));
        }
        if !seated && room.seat_index(from).is_none() {
            return Err(err(
                ErrorCode::Forbidden,
                "spectators exchange signals with players only",
            ));
        }
        Ok(room.id)
    }

    pub fn count_signal(&mut self) {
        self.signals_relayed += 1;
    }

    /// The recipients of a `send` (1.2) from `from`: `to` alone, or every
    /// other member of its room (spectators included). A spectator sends
    /// to the whole room only (`forbidden`); a `to` that is no other member
    /// is `peer_not_found`.
    pub fn message_targets(&self, from: &str, to: Option<&str>) -> Result<Vec<String>, ProtoError> {
        let room = self.room_of(from).ok_or_else(not_in_room)?;
        let Some(to) = to else {
            return Ok(room.member_ids_except(from));
        };
        if room.seat_index(from).is_none() {
            return Err(err(
                ErrorCode::Forbidden,
                "spectators send to the whole room only",
            ));
        }
        if to == from || (room.seat_index(to).is_none() && room.spectator_index(to).is_none()) {
            return Err(err(
                ErrorCode::PeerNotFound,
                format!("no player {to:?} in your room"),
            ));
        }
        Ok(vec![to.to_string()])
    }

    /// Counts an accepted `send` (1.2), once whatever its recipients.
    pub fn count_message(&mut self) {
        self.messages_relayed += 1;
    }
}
