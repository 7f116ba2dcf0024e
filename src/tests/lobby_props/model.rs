//! The reference model of `lobby_props`: players and rooms as plain data,
//! the outcome each operation must have, and the comparison with the engine.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::lobby::{Delivery, Lobby, LobbyConfig, LobbyFootprint};
use crate::protocol::{CreateRoom, ErrorCode, Event, FindMatch, ProtoError, RoomStatus};
use serde_json::json;

use super::{filters, pid, Op, GRACE, IDLE, MAX_PLAYERS, PLAYERS, TTL};

#[derive(Debug, Clone)]
struct MPlayer {
    connected: bool,
    room: Option<String>,
    dropped_at: Option<Instant>,
}

#[derive(Debug, Clone)]
struct MRoom {
    id: String,
    code: String,
    max: u64,
    private: bool,
    mode: u8,
    status: RoomStatus,
    /// Join order; the first is the host.
    members: Vec<usize>,
    kicked: HashSet<usize>,
    /// The value under "k" in the room's data.
    k: Option<u8>,
    /// Something happened since the creator took its seat.
    touched: bool,
    created_at: Instant,
    finished_at: Option<Instant>,
}

/// Which timers fired in a run, for the coverage check.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fired {
    pub seat: bool,
    pub finished: bool,
    pub idle: bool,
}

pub struct World {
    pub lobby: Lobby,
    now: Instant,
    players: HashMap<usize, MPlayer>,
    /// Live rooms, oldest first (the order of the matchmaking index).
    rooms: Vec<MRoom>,
    pub fired: Fired,
}

/// Result of an operation as the model sees it.
fn code_of<T>(r: &Result<T, ProtoError>) -> Result<(), ErrorCode> {
    match r {
        Ok(_) => Ok(()),
        Err(e) => Err(e.code),
    }
}

impl World {
    /// A lobby with every player connected.
    pub fn with_players() -> Self {
        let mut w = World::new();
        for i in 0..PLAYERS {
            w.apply(&Op::Connect(i));
        }
        w
    }

    fn new() -> Self {
        World {
            lobby: Lobby::new(LobbyConfig {
                max_players: MAX_PLAYERS,
                max_rooms: 1000,
                reconnect_grace: GRACE,
                finished_room_ttl: TTL,
                room_idle_timeout: IDLE,
                ..LobbyConfig::default()
            }),
            now: Instant::now(),
            players: HashMap::new(),
            rooms: Vec::new(),
            fired: Fired::default(),
        }
    }

    fn connected(&self, i: usize) -> bool {
        self.players.get(&i).is_some_and(|p| p.connected)
    }

    fn room_idx(&self, id: &str) -> usize {
        self.rooms
            .iter()
            .position(|r| r.id == id)
            .expect("model room")
    }

    /// The model room of a player and whether it hosts it.
    fn my_room(&self, i: usize) -> Result<(usize, bool), ErrorCode> {
        let id = self.players[&i].room.as_ref().ok_or(ErrorCode::NotInRoom)?;
        let r = self.room_idx(id);
        Ok((r, self.rooms[r].members[0] == i))
    }

    fn my_room_as_host(&self, i: usize) -> Result<usize, ErrorCode> {
        match self.my_room(i)? {
            (r, true) => Ok(r),
            _ => Err(ErrorCode::NotHost),
        }
    }

    fn free(&self, i: usize) -> Result<(), ErrorCode> {
        match self.players[&i].room {
            Some(_) => Err(ErrorCode::AlreadyInRoom),
            None => Ok(()),
        }
    }

    fn join_check(&self, i: usize, r: usize) -> Result<(), ErrorCode> {
        self.free(i)?;
        let room = &self.rooms[r];
        if room.kicked.contains(&i) {
            Err(ErrorCode::Forbidden)
        } else if room.members.len() as u64 >= room.max {
            Err(ErrorCode::RoomFull)
        } else if room.status != RoomStatus::Waiting {
            Err(ErrorCode::RoomNotWaiting)
        } else {
            Ok(())
        }
    }

    /// Seats `i` in room `r`; a full room starts.
    fn seat(&mut self, i: usize, r: usize) {
        let room = &mut self.rooms[r];
        room.members.push(i);
        room.touched = true;
        if room.members.len() as u64 == room.max {
            room.status = RoomStatus::Active;
        }
        let id = room.id.clone();
        self.players.get_mut(&i).unwrap().room = Some(id);
    }

    fn new_room(&mut self, id: &str, code: &str, max: u64, private: bool, mode: u8, k: Option<u8>) {
        self.rooms.push(MRoom {
            id: id.to_string(),
            code: code.to_string(),
            max,
            private,
            mode,
            status: RoomStatus::Waiting,
            members: Vec::new(),
            kicked: HashSet::new(),
            k,
            touched: false,
            created_at: self.now,
            finished_at: None,
        });
    }

    /// The player gives up its seat; a held player is forgotten with it.
    /// Returns the new host if the host left and others remain.
    fn unseat(&mut self, i: usize) -> Option<usize> {
        let id = self.players.get_mut(&i)?.room.take()?;
        let r = self.room_idx(&id);
        let room = &mut self.rooms[r];
        let pos = room.members.iter().position(|m| *m == i).unwrap();
        room.members.remove(pos);
        room.touched = true;
        let new_host = (pos == 0).then(|| room.members.first().copied()).flatten();
        if room.members.is_empty() {
            self.rooms.remove(r);
        }
        if !self.players[&i].connected {
            self.players.remove(&i);
        }
        new_host
    }

    fn close(&mut self, r: usize) {
        let room = self.rooms.remove(r);
        for m in room.members {
            if self.players[&m].connected {
                self.players.get_mut(&m).unwrap().room = None;
            } else {
                self.players.remove(&m);
            }
        }
    }

    fn touch_room_of(&mut self, i: usize) {
        if let Some(id) = self.players.get(&i).and_then(|p| p.room.clone()) {
            let r = self.room_idx(&id);
            self.rooms[r].touched = true;
        }
    }

    pub fn apply(&mut self, op: &Op) {
        let mut out: Vec<Delivery> = Vec::new();
        match *op {
            Op::Connect(i) if !self.connected(i) => {
                let room = self.lobby.connect(&pid(i), "n", vec![], &mut out);
                self.touch_room_of(i);
                let p = self.players.entry(i).or_insert(MPlayer {
                    connected: true,
                    room: None,
                    dropped_at: None,
                });
                p.connected = true;
                p.dropped_at = None;
                assert_eq!(room.map(|r| r.room_id), p.room, "resume returns the room");
                assert!(self.lobby.issue_token(&pid(i)).is_some());
            }
            Op::Disconnect(i) if self.connected(i) => {
                self.lobby.disconnect(&pid(i), self.now, &mut out);
                let p = self.players.get_mut(&i).unwrap();
                p.connected = false;
                p.dropped_at = Some(self.now);
                self.touch_room_of(i);
            }
            Op::FindMatch(i, max, mode, f) if self.connected(i) => {
                self.find_match(op, i, max, mode, f, &mut out);
            }
            Op::Create(i, max, private, mode) if self.connected(i) => {
                self.create(op, i, max, private, mode, &mut out);
            }
            Op::JoinNth(i, n) if self.connected(i) && !self.rooms.is_empty() => {
                let r = n % self.rooms.len();
                let id = self.rooms[r].id.clone();
                let got = self.lobby.join_room(&pid(i), Some(&id), None, &mut out);
                self.after_join(i, r, got.map(|room| room.room_id), &out, op);
            }
            Op::JoinCodeOf(i, n, lower) if self.connected(i) && !self.rooms.is_empty() => {
                let r = n % self.rooms.len();
                let code = &self.rooms[r].code;
                let typed = if lower {
                    format!(" {} ", code.to_lowercase())
                } else {
                    code.clone()
                };
                let got = self.lobby.join_room(&pid(i), None, Some(&typed), &mut out);
                self.after_join(i, r, got.map(|room| room.room_id), &out, op);
            }
            Op::JoinUnknownCode(i) if self.connected(i) => {
                // Not in the alphabet, so no live room can have it.
                let got = self
                    .lobby
                    .join_room(&pid(i), None, Some("000000"), &mut out);
                let want = self.free(i).and(Err::<(), _>(ErrorCode::RoomNotFound));
                assert_eq!(code_of(&got), want, "{op:?}");
            }
            Op::Leave(i) if self.connected(i) => {
                self.leave(op, i, &mut out);
            }
            Op::Start(i) if self.connected(i) => {
                self.start(op, i, &mut out);
            }
            Op::Finish(i) if self.connected(i) => {
                self.finish(op, i, &mut out);
            }
            Op::Kick(i, j) if self.connected(i) => {
                self.kick(op, i, j, &mut out);
            }
            Op::SetRoomData(i, v) if self.connected(i) => {
                self.set_room_data(op, i, v, &mut out);
            }
            Op::Chat(i) if self.connected(i) => {
                let got = self.lobby.chat(&pid(i), "hi", &mut out);
                let want = self.my_room(i).map(|_| ());
                assert_eq!(code_of(&got), want, "{op:?}");
                self.touch_room_of(i);
            }
            Op::HostStarts(n) | Op::HostFinishes(n) if !self.rooms.is_empty() => {
                let host = self.rooms[n % self.rooms.len()].members[0];
                let op = match op {
                    Op::HostStarts(_) => Op::Start(host),
                    _ => Op::Finish(host),
                };
                return self.apply(&op);
            }
            Op::Advance(ms) => {
                self.now += Duration::from_millis(ms);
                self.lobby.tick(self.now, &mut out);
                self.expire();
            }
            _ => {}
        }
        for d in &out {
            assert!(!d.to.is_empty(), "empty delivery {:?}", d.event);
        }
        self.compare();
    }

    fn find_match(
        &mut self,
        op: &Op,
        i: usize,
        max: u64,
        mode: u8,
        f: u8,
        out: &mut Vec<Delivery>,
    ) {
        let req = FindMatch {
            max_players: Some(max),
            mode: Some(format!("m{mode}")),
            filters: filters(f),
            // The model has no backfill rooms (the differential
            // test and lobby_ws cover them).
            backfill: false,
            max_spectators: None,
            start_when_ready: false,
        };
        let got = self.lobby.find_match(&pid(i), req, self.now, out);
        let want = self.free(i).and_then(|()| {
            if max > MAX_PLAYERS {
                return Err(ErrorCode::BadRequest);
            }
            Ok(self.rooms.iter().position(|r| {
                !r.private
                    && r.status == RoomStatus::Waiting
                    && (r.members.len() as u64) < r.max
                    && r.max == max
                    && r.mode == mode
                    && (f == 0 || r.k == Some(f))
                    && !r.kicked.contains(&i)
            }))
        });
        assert_eq!(code_of(&got), want.map(|_| ()), "{op:?}");
        if let (Ok(m), Ok(found)) = (got, want) {
            assert_eq!(m.created, found.is_none(), "{op:?}");
            let r = match found {
                Some(r) => {
                    assert_eq!(m.room.room_id, self.rooms[r].id, "oldest match");
                    r
                }
                None => {
                    let k = (f != 0).then_some(f);
                    let code = m.room.code.clone().unwrap();
                    self.new_room(&m.room.room_id, &code, max, false, mode, k);
                    self.rooms.len() - 1
                }
            };
            self.seat(i, r);
            if found.is_none() {
                self.rooms[r].touched = false;
            }
        }
    }

    fn start(&mut self, op: &Op, i: usize, out: &mut Vec<Delivery>) {
        let got = self.lobby.start_game(&pid(i), out);
        let want = self.my_room_as_host(i).and_then(|r| {
            let room = &self.rooms[r];
            if room.status != RoomStatus::Waiting {
                Err(ErrorCode::RoomNotWaiting)
            } else if room.members.len() < 2 {
                Err(ErrorCode::NotEnoughPlayers)
            } else {
                Ok(r)
            }
        });
        assert_eq!(code_of(&got), want.map(|_| ()), "{op:?}");
        if let Ok(r) = want {
            self.rooms[r].status = RoomStatus::Active;
            self.rooms[r].touched = true;
        }
    }

    fn finish(&mut self, op: &Op, i: usize, out: &mut Vec<Delivery>) {
        let got = self.lobby.finish_game(&pid(i), None, self.now, out);
        let want = self
            .my_room_as_host(i)
            .and_then(|r| match self.rooms[r].status {
                RoomStatus::Active => Ok(r),
                _ => Err(ErrorCode::RoomNotActive),
            });
        assert_eq!(code_of(&got), want.map(|_| ()), "{op:?}");
        if let Ok(r) = want {
            self.rooms[r].status = RoomStatus::Finished;
            self.rooms[r].finished_at = Some(self.now);
        }
    }

    fn kick(&mut self, op: &Op, i: usize, j: usize, out: &mut Vec<Delivery>) {
        let got = self.lobby.kick(&pid(i), &pid(j), out);
        let want = self.my_room_as_host(i).and_then(|r| {
            if i == j {
                Err(ErrorCode::BadRequest)
            } else if !self.rooms[r].members.contains(&j) {
                Err(ErrorCode::PeerNotFound)
            } else {
                Ok(r)
            }
        });
        assert_eq!(code_of(&got), want.map(|_| ()), "{op:?}");
        if let Ok(r) = want {
            self.rooms[r].kicked.insert(j);
            assert!(
                out.iter()
                    .any(|d| d.to == [pid(j)] && matches!(d.event, Event::Kicked { .. })),
                "the kicked player is told"
            );
            self.unseat(j);
        }
    }
    fn create(
        &mut self,
        op: &Op,
        i: usize,
        max: u64,
        private: bool,
        mode: u8,
        out: &mut Vec<Delivery>,
    ) {
        let req = CreateRoom {
            max_players: Some(max),
            mode: Some(format!("m{mode}")),
            private,
            ..Default::default()
        };
        let got = self.lobby.create_room(&pid(i), req, self.now, out);
        assert_eq!(code_of(&got), self.free(i), "{op:?}");
        if let Ok(room) = got {
            self.new_room(&room.room_id, &room.code.unwrap(), max, private, mode, None);
            let r = self.rooms.len() - 1;
            self.seat(i, r);
            self.rooms[r].touched = false;
        }
    }

    fn set_room_data(&mut self, op: &Op, i: usize, v: u8, out: &mut Vec<Delivery>) {
        let data = json!({ "k": v }).as_object().cloned().unwrap();
        let got = self.lobby.set_room_data(&pid(i), data, out);
        let want = self.my_room_as_host(i);
        assert_eq!(code_of(&got), want.map(|_| ()), "{op:?}");
        if let Ok(r) = want {
            self.rooms[r].k = Some(v);
            self.rooms[r].touched = true;
        }
    }
    fn leave(&mut self, op: &Op, i: usize, out: &mut Vec<Delivery>) {
        let got = self.lobby.leave_room(&pid(i), out);
        let want = self.my_room(i).map(|_| ());
        assert_eq!(code_of(&got), want, "{op:?}");
        if got.is_ok() {
            let new_host = self.unseat(i);
            self.check_host_change(new_host, out);
        }
    }
    fn after_join(
        &mut self,
        i: usize,
        r: usize,
        got: Result<String, ProtoError>,
        out: &[Delivery],
        op: &Op,
    ) {
        let want = self.join_check(i, r);
        assert_eq!(code_of(&got), want, "{op:?}");
        if got.is_ok() {
            let before: Vec<String> = self.rooms[r].members.iter().map(|m| pid(*m)).collect();
            let told = out
                .iter()
                .find(|d| matches!(d.event, Event::PlayerJoined { .. }))
                .map(|d| d.to.clone())
                .unwrap_or_default();
            assert_eq!(told, before, "the members are told of the joiner");
            self.seat(i, r);
        }
    }

    fn check_host_change(&self, new_host: Option<usize>, out: &[Delivery]) {
        let announced = out.iter().find_map(|d| match &d.event {
            Event::HostChanged { host, .. } => Some(host.clone()),
            _ => None,
        });
        assert_eq!(announced, new_host.map(pid), "host hand-over");
    }

    /// Applies what the timers due at `now` must do, and what they may do
    /// (an idle room that saw activity) as the engine did it.
    fn expire(&mut self) {
        let now = self.now;
        let seats: Vec<usize> = self
            .players
            .iter()
            .filter(|(_, p)| p.dropped_at.is_some_and(|t| t + GRACE <= now))
            .map(|(i, _)| *i)
            .collect();
        for i in seats {
            self.fired.seat = true;
            if self.players[&i].room.is_some() {
                self.unseat(i);
            } else {
                self.players.remove(&i);
            }
        }
        let mut r = 0;
        while r < self.rooms.len() {
            let room = &self.rooms[r];
            let finished = room.finished_at.is_some_and(|t| t + TTL <= now);
            let idle_due = room.status == RoomStatus::Waiting && room.created_at + IDLE <= now;
            let idle = idle_due && (!room.touched || self.lobby.room_by_id_str(&room.id).is_none());
            if finished || idle {
                self.fired.finished |= finished;
                self.fired.idle |= idle;
                self.close(r);
            } else {
                r += 1;
            }
        }
    }

    /// The engine's state equals the model's.
    fn compare(&self) {
        self.lobby.check_invariants().unwrap();
        for i in 0..PLAYERS {
            let got = self.lobby.player(&pid(i));
            let want = self.players.get(&i);
            match (got, want) {
                (None, None) => {}
                (Some(g), Some(w)) => {
                    assert_eq!(g.connected, w.connected, "player {i} connected");
                    assert_eq!(g.room.map(|id| id.to_string()), w.room, "player {i} room");
                }
                _ => panic!("player {i}: engine {got:?}, model {want:?}"),
            }
        }
        for room in &self.rooms {
            let got = self
                .lobby
                .room_by_id_str(&room.id)
                .unwrap_or_else(|| panic!("room {} gone from the engine", room.id));
            let members: Vec<String> = room.members.iter().map(|m| pid(*m)).collect();
            assert_eq!(got.member_ids(), members, "members of {}", room.id);
            assert_eq!(got.status, room.status, "status of {}", room.id);
            assert_eq!(got.code, room.code);
            for s in &got.seats {
                let i: usize = s.player_id[2..].parse().unwrap();
                assert_eq!(s.connected, self.players[&i].connected);
            }
        }
        let s = self.lobby.stats();
        assert_eq!(s.total_rooms, self.rooms.len() as u64, "no extra rooms");
        let seated: usize = self.rooms.iter().map(|r| r.members.len()).sum();
        assert_eq!(s.total_players, seated as u64);
        let held = self.players.values().filter(|p| !p.connected).count();
        let f = self.lobby.footprint();
        assert_eq!(f.players, self.players.len());
        // One timer per held player and per waiting or finished room.
        let room_timers = self
            .rooms
            .iter()
            .filter(|r| r.status != RoomStatus::Active)
            .count();
        assert_eq!(f.timers, held + room_timers, "pending timers");
    }

    /// Everyone goes away; after every grace and TTL nothing is left.
    pub fn drain(&mut self) {
        for i in 0..PLAYERS {
            if self.connected(i) {
                self.apply(&Op::Disconnect(i));
            }
        }
        self.apply(&Op::Advance(10_000));
        assert_eq!(self.lobby.footprint(), LobbyFootprint::default());
        let s = self.lobby.stats();
        assert_eq!((s.total_rooms, s.total_players, s.held_seats), (0, 0, 0));
    }
}
