//! Getting into and out of rooms: creating one, joining by id or code,
//! matchmaking, leaving, and closing a room for everyone.

use std::collections::{HashSet, VecDeque};
use std::time::Instant;

use chrono::Utc;
use uuid::Uuid;

use super::timers::Timer;
use super::validate::{
    check_allowed, check_data, check_filters, check_max_players, check_max_spectators, check_mode,
};
use super::{emit, err, not_in_room, Delivery, Footprint, Lobby, Matched, Room, Seat};
use crate::lobby::HookEvent;
use crate::protocol::{
    CreateRoom, ErrorCode, Event, FindMatch, JsonObject, LeaveReason, ProtoError, RoomInfo,
    RoomStatus,
};

impl Lobby {
    fn check_max_players(&self, n: Option<u64>) -> Result<u64, ProtoError> {
        check_max_players(self.cfg.max_players, n)
    }

    /// The members a party's leader moves along (after the leader itself
    /// passed `check_free`): each free, refusals naming the member.
    pub(super) fn check_members_free(&self, group: &[String]) -> Result<(), ProtoError> {
        for m in group.iter().skip(1) {
            let Some(p) = self.players.get(m) else {
                continue;
            };
            if p.room.is_some() {
                return Err(err(
                    ErrorCode::AlreadyInRoom,
                    format!("party member {m} is in a room"),
                ));
            }
            if self.tickets.ticket_of(m).is_some() {
                return Err(err(
                    ErrorCode::AlreadyQueued,
                    format!("party member {m} has a ticket in the queue"),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn check_free(&self, player_id: &str) -> Result<(), ProtoError> {
        match self.players.get(player_id) {
            None => Err(err(ErrorCode::Internal, "unknown player")),
            Some(p) if p.room.is_some() => Err(err(
                ErrorCode::AlreadyInRoom,
                "you are already in a room; leave it first",
            )),
            Some(_) if self.tickets.ticket_of(player_id).is_some() => Err(err(
                ErrorCode::AlreadyQueued,
                "you have a ticket in the queue; cancel_match first",
            )),
            Some(_) => Ok(()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn insert_room(
        &mut self,
        private: bool,
        mode: String,
        max_players: u64,
        data: JsonObject,
        allowed_players: Vec<String>,
        allowed_roles: Vec<String>,
        backfill: bool,
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
            spectators: Vec::new(),
            max_spectators: 0,
            kicked: HashSet::new(),
            allowed_players,
            allowed_roles,
            backfill,
            start_when_ready: false,
            tickets: Vec::new(),
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
    pub(super) fn seat(
        &mut self,
        room_id: Uuid,
        player_id: &str,
        out: &mut Vec<Delivery>,
    ) -> RoomInfo {
        let (name, connected) = self
            .players
            .get(player_id)
            .map(|p| (p.name.clone(), p.connected))
            .unwrap_or_default();
        let hold = self.hold_starts;
        let mut started = false;
        let mut created = false;
        self.update_room(room_id, |room| {
            // A party member seated by its leader may be away: its seat
            // is held like any dropped player's.
            let seat = Seat {
                player_id: player_id.to_string(),
                name,
                data: JsonObject::new(),
                joined_at: Utc::now(),
                connected,
                ready: false,
            };
            let others = room.member_ids();
            created = room.seats.is_empty();
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
            // A backfill room refilled while active is already started.
            if room.is_full() && room.status == RoomStatus::Waiting {
                Self::start(room, hold, out);
                started = true;
            }
        });
        if let Some(p) = self.players.get_mut(player_id) {
            p.room = Some(room_id);
        }
        // The room as the join left it: still waiting when the join is what
        // starts it (`match.started` follows).
        let snapshot = self
            .hooks
            .is_some()
            .then(|| self.hook_room(room_id))
            .flatten();
        if let Some(mut room) = snapshot {
            if started {
                room.status = RoomStatus::Waiting;
            }
            if created {
                self.hook(|_| Some(HookEvent::RoomCreated { room: room.clone() }));
            }
            self.hook(|_| {
                let player = room
                    .players
                    .iter()
                    .find(|p| p.player_id == player_id)?
                    .clone();
                Some(HookEvent::PlayerJoined { room, player })
            });
        }
        if started {
            self.started(room_id);
        }
        self.rooms[&room_id].info(true)
    }

    /// Waiting to active, with `room_status` and `game_start` to every
    /// member (`game_start` held back for the allocator with `hold`).
    pub(super) fn start(room: &mut Room, hold: bool, out: &mut Vec<Delivery>) {
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
        if !hold {
            out.push(Delivery {
                to: members,
                event: Event::game_start(room.info(true), None, None),
            });
        }
    }

    /// Counts a start, tells the hooks, and queues the room for the
    /// allocator when `game_start` is held.
    pub(super) fn started(&mut self, room_id: Uuid) {
        self.matches_started += 1;
        self.hook(|l| {
            Some(HookEvent::MatchStarted {
                room: l.hook_room(room_id)?,
            })
        });
        if self.hold_starts {
            self.starts.push(room_id);
        }
    }

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
        let max_spectators = check_max_spectators(req.max_spectators)?;
        let id = self.insert_room(
            req.private,
            mode,
            max_players,
            data,
            req.allowed_players,
            req.allowed_roles,
            req.backfill,
            now,
        )?;
        if let Some(room) = self.rooms.get_mut(&id) {
            room.max_spectators = max_spectators;
            room.start_when_ready = req.start_when_ready;
        }
        Ok(self.seat(id, player_id, out))
    }

    pub fn join_room(
        &mut self,
        player_id: &str,
        room_id: Option<&str>,
        code: Option<&str>,
        out: &mut Vec<Delivery>,
    ) -> Result<RoomInfo, ProtoError> {
        let id = self.room_to_join(player_id, room_id, code)?;
        let room = &self.rooms[&id];
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

    /// `join_room` with `"as": "spectator"`: a place among the spectators,
    /// whatever the room's status; `room_full` when none is left.
    pub fn spectate(
        &mut self,
        player_id: &str,
        room_id: Option<&str>,
        code: Option<&str>,
        out: &mut Vec<Delivery>,
    ) -> Result<RoomInfo, ProtoError> {
        let id = self.room_to_join(player_id, room_id, code)?;
        let room = &self.rooms[&id];
        if room.spectators.len() as u64 >= room.max_spectators {
            return Err(err(
                ErrorCode::RoomFull,
                format!(
                    "room {} has {} of {} spectators",
                    room.id_str,
                    room.spectators.len(),
                    room.max_spectators
                ),
            ));
        }
        let name = self.players[player_id].name.clone();
        self.update_room(id, |room| {
            let seat = Seat {
                player_id: player_id.to_string(),
                name,
                data: JsonObject::new(),
                joined_at: Utc::now(),
                connected: true,
                ready: false,
            };
            emit(
                out,
                room.member_ids(),
                Event::SpectatorJoined {
                    room_id: room.id_str.clone(),
                    player: seat.info(),
                },
            );
            room.spectators.push(seat);
            out.push(Delivery::one(
                player_id,
                Event::ChatHistory {
                    room_id: room.id_str.clone(),
                    messages: room.chat.iter().cloned().collect(),
                },
            ));
        });
        if let Some(p) = self.players.get_mut(player_id) {
            p.room = Some(id);
        }
        Ok(self.rooms[&id].info(true))
    }

    /// The room a `join_room` names (by id or code), checked for the
    /// player: free, admitted (not kicked, not restricted out).
    fn room_to_join(
        &self,
        player_id: &str,
        room_id: Option<&str>,
        code: Option<&str>,
    ) -> Result<Uuid, ProtoError> {
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
        Ok(id)
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
        let group = self.group_of(player_id)?;
        self.check_members_free(&group)?;
        check_group_size(group.len(), max_players)?;
        // Active games missing a player first, then waiting rooms; a party
        // needs a seat for each member.
        let fits = |id: &Uuid| {
            self.rooms.get(id).is_some_and(|r| {
                r.matches_filters(&filters)
                    && group.iter().all(|p| !r.kicked.contains(p))
                    && r.seats.len() + group.len() <= r.max_players as usize
            })
        };
        let found = self
            .index
            .candidates(&mode, max_players, &filters, true)
            .find(fits)
            .or_else(|| {
                self.index
                    .candidates(&mode, max_players, &filters, false)
                    .find(fits)
            });
        let max_spectators = check_max_spectators(req.max_spectators)?;
        let (id, created) = match found {
            Some(id) => (id, false),
            None => {
                let id = self.insert_room(
                    false,
                    mode,
                    max_players,
                    filters,
                    vec![],
                    vec![],
                    req.backfill,
                    now,
                )?;
                if let Some(room) = self.rooms.get_mut(&id) {
                    room.max_spectators = max_spectators;
                    room.start_when_ready = req.start_when_ready;
                }
                (id, true)
            }
        };
        let mut room = self.seat(id, player_id, out);
        for m in group.iter().skip(1) {
            room = self.seat(id, m, out);
        }
        if group.len() > 1 {
            emit(
                out,
                group[1..].to_vec(),
                Event::RoomJoined { room: room.clone() },
            );
        }
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
    pub(super) fn leave_with(
        &mut self,
        player_id: &str,
        reason: LeaveReason,
        out: &mut Vec<Delivery>,
    ) {
        let Some(room_id) = self.players.get(player_id).and_then(|p| p.room) else {
            return;
        };
        self.hook(|l| {
            l.rooms.get(&room_id)?.seat_index(player_id)?;
            Some(HookEvent::PlayerLeft {
                room_id: room_id.to_string(),
                player_id: player_id.to_string(),
                reason,
            })
        });
        let hold = self.hold_starts;
        let mut started = false;
        self.update_room(room_id, |room| {
            if let Some(i) = room.spectator_index(player_id) {
                room.spectators.remove(i);
                emit(
                    out,
                    room.member_ids(),
                    Event::SpectatorLeft {
                        room_id: room.id_str.clone(),
                        player_id: player_id.to_string(),
                        reason,
                    },
                );
                return;
            }
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
            if room.seats.is_empty() {
                // The last player left: the room closes under its
                // spectators (`drop_room` releases them).
                Self::dismiss_spectators(room, out);
                return;
            }
            if i == 0 {
                out.push(Delivery {
                    to: rest,
                    event: Event::HostChanged {
                        room_id: room.id_str.clone(),
                        host: room.seats[0].player_id.clone(),
                    },
                });
            }
            // 1.2: the rest may all be ready now.
            if room.all_ready() {
                Self::start(room, hold, out);
                started = true;
            }
        });
        if started {
            self.started(room_id);
        }
        self.release(player_id);
        self.refill(room_id, out);
    }

    /// Closes a room (admin, idle or finished timeout): every member gets
    /// `player_left` with reason `closed` for every player, itself included.
    pub fn close_room(&mut self, room_id: Uuid, out: &mut Vec<Delivery>) -> bool {
        let Some(room) = self.rooms.get(&room_id) else {
            return false;
        };
        let members = room.member_ids();
        let seated = room.seat_ids();
        for pid in &seated {
            self.hook(|_| {
                Some(HookEvent::PlayerLeft {
                    room_id: room_id.to_string(),
                    player_id: pid.clone(),
                    reason: LeaveReason::Closed,
                })
            });
        }
        let room = &self.rooms[&room_id];
        for pid in &seated {
            out.push(Delivery {
                to: members.clone(),
                event: Event::PlayerLeft {
                    room_id: room.id_str.clone(),
                    player_id: pid.clone(),
                    reason: LeaveReason::Closed,
                },
            });
        }
        Self::dismiss_spectators(room, out);
        self.drop_room(room_id);
        true
    }

    /// A closing room tells its spectators: `spectator_left` (closed) for
    /// each of them, to all of them.
    fn dismiss_spectators(room: &Room, out: &mut Vec<Delivery>) {
        let watching: Vec<String> = room
            .spectators
            .iter()
            .map(|s| s.player_id.clone())
            .collect();
        for pid in &watching {
            out.push(Delivery {
                to: watching.clone(),
                event: Event::SpectatorLeft {
                    room_id: room.id_str.clone(),
                    player_id: pid.clone(),
                    reason: LeaveReason::Closed,
                },
            });
        }
    }
}

/// A party of `n` cannot play in rooms of fewer seats.
pub(super) fn check_group_size(n: usize, max_players: u64) -> Result<(), ProtoError> {
    if n as u64 > max_players {
        return Err(ProtoError::bad_request(format!(
            "the party has {n} members, more than max_players ({max_players})"
        )));
    }
    Ok(())
}
