//! Property test of tickets and parties in the whole engine: random
//! players make and leave parties, queue (alone or as a party's leader),
//! cancel, drop and come back, play and leave, while simulated time runs
//! and the lobby ticks. After every step the engine's own recount must
//! hold (no player in two tickets, in a ticket and a room, or over a
//! room's capacity), and every room formed from tickets must keep the
//! rules at the moment it formed: one pool, the skill spread within every
//! ticket's window, a common region within every RTT limit (the one
//! written to `data.region`), parties whole and in one room.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::Value;

use super::{Delivery, Lobby, LobbyConfig};
use crate::protocol::{Event, QueueMatch};

#[derive(Debug, Clone)]
enum Op {
    Queue {
        who: usize,
        max: u64,
        min: u64,
        skill: Option<u16>,
        regions: Vec<(u8, u16)>,
    },
    Cancel(usize),
    CreateParty(usize),
    JoinParty(usize, usize),
    LeaveParty(usize),
    Leave(usize),
    Drop(usize),
    Back(usize),
    Wait(u64),
}

const PLAYERS: usize = 8;

fn op() -> impl Strategy<Value = Op> {
    let who = 0..PLAYERS;
    prop_oneof![
        6 => (
            who.clone(),
            2..=4u64,
            1..=4u64,
            proptest::option::weighted(0.7, 0..1500u16),
            proptest::collection::vec((0..3u8, 0..250u16), 0..3),
        )
            .prop_map(|(who, max, min, skill, regions)| Op::Queue {
                who,
                max,
                min: min.min(max),
                skill,
                regions,
            }),
        1 => who.clone().prop_map(Op::Cancel),
        2 => who.clone().prop_map(Op::CreateParty),
        3 => (who.clone(), 0..PLAYERS).prop_map(|(a, b)| Op::JoinParty(a, b)),
        1 => who.clone().prop_map(Op::LeaveParty),
        2 => who.clone().prop_map(Op::Leave),
        1 => who.clone().prop_map(Op::Drop),
        1 => who.clone().prop_map(Op::Back),
        4 => (50..4_000u64).prop_map(Op::Wait),
    ]
}

fn pid(i: usize) -> String {
    format!("p{i}")
}

/// What a test remembers of each ticket it queued: when, and what it asked.
struct Asked {
    at: Instant,
    req: QueueMatch,
    players: Vec<String>,
}

const FILL: Duration = Duration::from_millis(2_000);

struct World {
    lobby: Lobby,
    now: Instant,
    connected: Vec<bool>,
    asked: HashMap<String, Asked>,
}

impl World {
    /// Checks every `game_start` of a ticket in `out` against the rules, as
    /// of `now`.
    fn check_formed(&self, out: &[Delivery]) -> Result<(), TestCaseError> {
        let mut rooms: BTreeMap<String, (Value, BTreeSet<String>)> = BTreeMap::new();
        for d in out {
            if let Event::GameStart {
                room,
                ticket_id: Some(t),
                ..
            } = &d.event
            {
                let v = serde_json::to_value(room).unwrap();
                let e = rooms
                    .entry(room.room_id.clone())
                    .or_insert_with(|| (v, BTreeSet::new()));
                e.1.insert(t.clone());
            }
        }
        for (room_id, (room, tickets)) in rooms {
            let players: BTreeSet<String> = room["players"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["player_id"].as_str().unwrap().to_string())
                .collect();
            let max = room["max_players"].as_u64().unwrap();
            prop_assert!(players.len() as u64 <= max);
            let asked: Vec<&Asked> = tickets.iter().filter_map(|t| self.asked.get(t)).collect();
            prop_assert_eq!(asked.len(), tickets.len(), "unknown ticket in {}", room_id);
            // A ticket's players (a whole party) sit in its room together.
            let mut ticketed = BTreeSet::new();
            for a in &asked {
                for p in &a.players {
                    prop_assert!(
                        players.contains(p),
                        "{} of its ticket is not in {}",
                        p,
                        room_id
                    );
                    ticketed.insert(p.clone());
                }
            }
            let region = room["data"]["region"].as_str();
            if ticketed != players {
                // A backfill seat: judged against the room's region.
                for a in &asked {
                    if let (Some(region), Some(r)) = (region, &a.req.regions) {
                        prop_assert!(r.get(region).is_some_and(|x| *x <= 150.0));
                    }
                }
                continue;
            }
            // A room formed from these tickets, at `now`.
            let skills: Vec<f64> = asked.iter().filter_map(|a| a.req.skill).collect();
            prop_assert!(
                skills.is_empty() || skills.len() == asked.len(),
                "skill mixed"
            );
            if let (Some(lo), Some(hi)) = (
                skills.iter().copied().reduce(f64::min),
                skills.iter().copied().reduce(f64::max),
            ) {
                let w = asked
                    .iter()
                    .map(|a| {
                        let t = self.now.saturating_duration_since(a.at).as_secs_f64();
                        (100.0 + 50.0 * t).min(1000.0)
                    })
                    .fold(f64::INFINITY, f64::min);
                prop_assert!(hi - lo <= w + 1e-9, "spread {} over window {}", hi - lo, w);
            }
            match region {
                Some(region) => {
                    for a in &asked {
                        if let Some(r) = &a.req.regions {
                            let rtt = r.get(region).copied();
                            prop_assert!(
                                rtt.is_some_and(|x| x <= 150.0),
                                "{} over its limit",
                                region
                            );
                        }
                    }
                }
                None => prop_assert!(asked.iter().all(|a| a.req.regions.is_none())),
            }
            if (players.len() as u64) < max {
                let oldest = asked.iter().map(|a| a.at).min().unwrap();
                prop_assert!(self.now.saturating_duration_since(oldest) >= FILL);
                for a in &asked {
                    prop_assert!(a.req.min_players.unwrap_or(max) <= players.len() as u64);
                }
            }
        }
        Ok(())
    }
}

impl World {
    /// Applies one operation; the deliveries it made.
    fn step(&mut self, op: Op, codes: &mut Vec<String>) -> Result<Vec<Delivery>, TestCaseError> {
        let mut out = Vec::new();
        match op {
            Op::Queue {
                who,
                max,
                min,
                skill,
                regions,
            } if self.connected[who] => {
                let req = QueueMatch {
                    max_players: Some(max),
                    min_players: Some(min),
                    skill: skill.map(f64::from),
                    regions: (!regions.is_empty()).then(|| {
                        regions
                            .iter()
                            .map(|(r, t)| (format!("r{r}"), f64::from(*t)))
                            .collect()
                    }),
                    ..QueueMatch::default()
                };
                if let Ok(t) = self
                    .lobby
                    .queue_match(&pid(who), req.clone(), self.now, &mut out)
                {
                    // Every member of the leader's party rides along.
                    let members = self.lobby.party_of(&pid(who)).map(|p| p.members.clone());
                    if let Some(m) = members.filter(|m| m.len() > 1) {
                        prop_assert_eq!(&t.players, &m);
                    }
                    self.asked.insert(
                        t.ticket_id,
                        Asked {
                            at: self.now,
                            req,
                            players: t.players,
                        },
                    );
                }
            }
            Op::Cancel(who) => {
                let _ = self.lobby.cancel_match(&pid(who), &mut out);
            }
            Op::CreateParty(who) => {
                if let Ok(p) = self.lobby.create_party(&pid(who), Some(3)) {
                    codes.push(p.code);
                }
            }
            Op::JoinParty(who, k) if !codes.is_empty() => {
                let code = codes[k % codes.len()].clone();
                let _ = self.lobby.join_party(&pid(who), &code, &mut out);
            }
            Op::LeaveParty(who) => {
                let _ = self.lobby.leave_party(&pid(who), &mut out);
            }
            Op::Leave(who) => {
                let _ = self.lobby.leave_room(&pid(who), &mut out);
            }
            Op::Drop(who) if self.connected[who] => {
                self.lobby.disconnect(&pid(who), self.now, &mut out);
                self.connected[who] = false;
            }
            Op::Back(who) if !self.connected[who] => {
                self.lobby.connect(&pid(who), &pid(who), vec![], &mut out);
                self.connected[who] = true;
            }
            Op::Wait(ms) => {
                // Tick every 100 ms of the wait, as the server does.
                let end = self.now + Duration::from_millis(ms);
                while self.now < end {
                    self.now += Duration::from_millis(100);
                    let mut o = Vec::new();
                    self.lobby.tick(self.now, &mut o);
                    self.check_formed(&o)?;
                    out.extend(o);
                }
                // A player forgotten after its grace comes back fresh.
                for i in 0..PLAYERS {
                    if !self.connected[i] && self.lobby.player(&pid(i)).is_none() {
                        self.lobby.connect(&pid(i), &pid(i), vec![], &mut out);
                        self.connected[i] = true;
                    }
                }
            }
            _ => {}
        }
        Ok(out)
    }

    /// Nobody is both queued and seated; a queued party is whole in its
    /// ticket.
    fn check_queued(&self) -> Result<(), TestCaseError> {
        for i in 0..PLAYERS {
            let p = pid(i);
            let queued = self.lobby.tickets.ticket_of(&p).map(|t| t.players.clone());
            if let Some(players) = queued {
                prop_assert!(self.lobby.player(&p).is_some_and(|x| x.room.is_none()));
                if players.len() > 1 {
                    let party = self.lobby.party_of(&p).map(|x| x.members.clone());
                    prop_assert_eq!(party, Some(players), "a party ticket follows its party");
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn tickets_and_parties_keep_every_rule(ops in proptest::collection::vec(op(), 1..60)) {
        let cfg = LobbyConfig {
            reconnect_grace: Duration::from_millis(3_000),
            ticket_ttl: Duration::from_millis(20_000),
            ticket_fill_after: FILL,
            ..LobbyConfig::default()
        };
        let mut w = World {
            lobby: Lobby::new(cfg),
            now: Instant::now(),
            connected: vec![false; PLAYERS],
            asked: HashMap::new(),
        };
        let mut out = Vec::new();
        for i in 0..PLAYERS {
            w.lobby.connect(&pid(i), &pid(i), vec![], &mut out);
            w.connected[i] = true;
        }
        out.clear();
        let mut codes: Vec<String> = Vec::new();
        for op in ops {
            let mut out = w.step(op, &mut codes)?;
            out.extend(w.lobby.take_later());
            w.check_formed(&out)?;
            if let Err(e) = w.lobby.check_invariants() {
                return Err(TestCaseError::fail(e));
            }
            w.check_queued()?;
        }
    }
}
