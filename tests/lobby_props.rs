//! Property tests of the lobby engine over random sequences of operations:
//! no room over capacity, a player in at most one room, stats equal to a
//! recount, status only forward, the matchmaking index in agreement with the
//! rooms, and nothing left once everyone is gone.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rendezvous::lobby::{Lobby, LobbyConfig, LobbyFootprint};
use rendezvous::protocol::{CreateRoom, FindMatch, RoomStatus};
use serde_json::{json, Value};

const PLAYERS: usize = 10;

#[derive(Debug, Clone)]
enum Op {
    Connect(usize),
    Disconnect(usize),
    FindMatch(usize, u64, u8, u8),
    Create(usize, u64, bool, u8),
    JoinNth(usize, usize),
    JoinCodeOf(usize, usize),
    Leave(usize),
    Start(usize),
    Finish(usize),
    Kick(usize, usize),
    SetRoomData(usize, u8),
    Chat(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PLAYERS;
    prop_oneof![
        3 => p.clone().prop_map(Op::Connect),
        1 => p.clone().prop_map(Op::Disconnect),
        4 => (p.clone(), 2u64..5, 0u8..2, 0u8..3).prop_map(|(a, b, c, d)| Op::FindMatch(a, b, c, d)),
        2 => (p.clone(), 2u64..5, any::<bool>(), 0u8..2).prop_map(|(a, b, c, d)| Op::Create(a, b, c, d)),
        2 => (p.clone(), 0usize..8).prop_map(|(a, b)| Op::JoinNth(a, b)),
        1 => (p.clone(), 0usize..8).prop_map(|(a, b)| Op::JoinCodeOf(a, b)),
        2 => p.clone().prop_map(Op::Leave),
        1 => p.clone().prop_map(Op::Start),
        1 => p.clone().prop_map(Op::Finish),
        1 => (p.clone(), p.clone()).prop_map(|(a, b)| Op::Kick(a, b)),
        1 => (p.clone(), 0u8..3).prop_map(|(a, b)| Op::SetRoomData(a, b)),
        1 => p.clone().prop_map(Op::Chat),
        1 => (0u64..400).prop_map(Op::Advance),
    ]
}

fn pid(i: usize) -> String {
    format!("p_{i}")
}

fn filters(f: u8) -> Option<serde_json::Map<String, Value>> {
    match f {
        0 => None,
        n => json!({"k": n}).as_object().cloned(),
    }
}

struct World {
    lobby: Lobby,
    now: Instant,
    /// Last status seen per room id, to check that status only moves forward.
    seen: HashMap<String, RoomStatus>,
}

impl World {
    fn new() -> Self {
        World {
            lobby: Lobby::new(LobbyConfig {
                max_players: 4,
                max_rooms: 1000,
                reconnect_grace: Duration::from_millis(300),
                finished_room_ttl: Duration::from_millis(500),
                room_idle_timeout: Duration::from_millis(2000),
            }),
            now: Instant::now(),
            seen: HashMap::new(),
        }
    }

    fn room_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.seen.keys().cloned().collect();
        ids.sort();
        ids
    }

    fn apply(&mut self, op: &Op) {
        let mut out = Vec::new();
        let known = |l: &Lobby, i: usize| l.player(&pid(i)).is_some_and(|p| p.connected);
        match *op {
            Op::Connect(i) if !known(&self.lobby, i) => {
                self.lobby.connect(&pid(i), "n", vec![], &mut out);
                self.lobby.issue_token(&pid(i));
            }
            Op::Disconnect(i) if known(&self.lobby, i) => {
                self.lobby.disconnect(&pid(i), self.now, &mut out);
            }
            Op::FindMatch(i, max, mode, f) if known(&self.lobby, i) => {
                let req = FindMatch {
                    max_players: Some(max),
                    mode: Some(format!("m{mode}")),
                    filters: filters(f),
                };
                if let Ok(m) = self.lobby.find_match(&pid(i), req, self.now, &mut out) {
                    assert!(m.room.players.len() as u64 <= max);
                    assert_eq!(m.room.mode, format!("m{mode}"));
                    if let Some(fs) = filters(f) {
                        for (k, v) in fs {
                            assert_eq!(m.room.data.get(&k), Some(&v), "filters respected");
                        }
                    }
                }
            }
            Op::Create(i, max, private, mode) if known(&self.lobby, i) => {
                let req = CreateRoom {
                    max_players: Some(max),
                    mode: Some(format!("m{mode}")),
                    private,
                    ..Default::default()
                };
                let _ = self.lobby.create_room(&pid(i), req, self.now, &mut out);
            }
            Op::JoinNth(i, n) if known(&self.lobby, i) => {
                if let Some(id) = self.room_ids().get(n).cloned() {
                    let _ = self.lobby.join_room(&pid(i), Some(&id), None, &mut out);
                }
            }
            Op::JoinCodeOf(i, n) if known(&self.lobby, i) => {
                let code = self
                    .room_ids()
                    .get(n)
                    .and_then(|id| self.lobby.room_by_id_str(id))
                    .map(|r| r.code.clone());
                if let Some(code) = code {
                    let _ = self.lobby.join_room(&pid(i), None, Some(&code), &mut out);
                }
            }
            Op::Leave(i) => {
                let _ = self.lobby.leave_room(&pid(i), &mut out);
            }
            Op::Start(i) => {
                let _ = self.lobby.start_game(&pid(i), &mut out);
            }
            Op::Finish(i) => {
                let _ = self.lobby.finish_game(&pid(i), None, self.now, &mut out);
            }
            Op::Kick(i, j) => {
                let _ = self.lobby.kick(&pid(i), &pid(j), &mut out);
            }
            Op::SetRoomData(i, v) => {
                let data = json!({"k": v}).as_object().cloned().unwrap();
                let _ = self.lobby.set_room_data(&pid(i), data, &mut out);
            }
            Op::Chat(i) => {
                let _ = self.lobby.chat(&pid(i), "hi", &mut out);
            }
            Op::Advance(ms) => {
                self.now += Duration::from_millis(ms);
                self.lobby.tick(self.now, &mut out);
            }
            _ => {}
        }
        // Every delivery goes to someone the lobby knows or just dropped.
        for d in &out {
            assert!(!d.to.is_empty(), "empty delivery {:?}", d.event);
        }
        self.check();
    }

    fn check(&mut self) {
        self.lobby.check_invariants().unwrap();
        // Status only forward, rooms seen through the public listing and
        // through every player's room.
        let mut live = HashMap::new();
        for i in 0..PLAYERS {
            if let Some(room) = self.lobby.room_of(&pid(i)) {
                live.insert(room.id_str.clone(), room.status);
            }
        }
        for (id, status) in &live {
            if let Some(prev) = self.seen.get(id) {
                assert!(status >= prev, "room {id} went from {prev:?} to {status:?}");
            }
        }
        for (id, status) in live {
            self.seen.insert(id, status);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_over_random_operations(ops in proptest::collection::vec(op(), 1..120)) {
        let mut w = World::new();
        for op in &ops {
            w.apply(op);
        }
        // Everyone goes away; after every grace and TTL nothing is left.
        for i in 0..PLAYERS {
            if w.lobby.player(&pid(i)).is_some_and(|p| p.connected) {
                let mut out = Vec::new();
                w.lobby.disconnect(&pid(i), w.now, &mut out);
            }
        }
        w.now += Duration::from_secs(10);
        let mut out = Vec::new();
        w.lobby.tick(w.now, &mut out);
        w.lobby.check_invariants().unwrap();
        prop_assert_eq!(w.lobby.footprint(), LobbyFootprint::default());
        let s = w.lobby.stats();
        prop_assert_eq!((s.total_rooms, s.total_players, s.held_seats), (0, 0, 0));
    }
}

#[test]
fn find_match_never_overfills_under_many_joiners() {
    let mut w = World::new();
    for i in 0..PLAYERS {
        w.apply(&Op::Connect(i));
    }
    for i in 0..PLAYERS {
        w.apply(&Op::FindMatch(i, 3, 0, 0));
    }
    let s = w.lobby.stats();
    // 10 players in rooms of 3: three full active rooms and one waiting.
    assert_eq!(
        (s.active_rooms, s.waiting_rooms, s.total_players),
        (3, 1, 10)
    );
}
