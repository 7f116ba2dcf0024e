//! Property tests of the lobby engine against a small reference model.
//!
//! Random sequences of operations go to the engine and to the model, which
//! predicts for each one whether it succeeds or with which error code, who
//! hosts which room, who is held, and which timers must fire: a held seat
//! runs out one grace after the drop, a finished room one TTL after the
//! finish, an untouched waiting room one idle timeout after its creation. A
//! waiting room that saw activity is re-checked against the real clock, so
//! the model only knows it cannot close before its first deadline and
//! follows the engine after that. After every step the two states are
//! compared and the engine recounts its own invariants.

mod model;

use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{json, Value};

use model::World;

const PLAYERS: usize = 10;
const MAX_PLAYERS: u64 = 4;
const GRACE: Duration = Duration::from_millis(300);
const TTL: Duration = Duration::from_millis(500);
const IDLE: Duration = Duration::from_millis(2000);

#[derive(Debug, Clone)]
enum Op {
    Connect(usize),
    Disconnect(usize),
    /// player, max_players (5 is over the limit), mode, filter value (0: none)
    FindMatch(usize, u64, u8, u8),
    /// player, max_players, private, mode
    Create(usize, u64, bool, u8),
    /// player, index into the live rooms
    JoinNth(usize, usize),
    /// player, index into the live rooms, code typed in lower case
    JoinCodeOf(usize, usize, bool),
    JoinUnknownCode(usize),
    Leave(usize),
    Start(usize),
    Finish(usize),
    /// The host of the nth live room starts its game, or finishes it.
    HostStarts(usize),
    HostFinishes(usize),
    Kick(usize, usize),
    SetRoomData(usize, u8),
    Chat(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PLAYERS;
    prop_oneof![
        3 => p.clone().prop_map(Op::Connect),
        2 => p.clone().prop_map(Op::Disconnect),
        4 => (p.clone(), 2u64..=5, 0u8..2, 0u8..3).prop_map(|(a, b, c, d)| Op::FindMatch(a, b, c, d)),
        2 => (p.clone(), 2u64..=4, any::<bool>(), 0u8..2).prop_map(|(a, b, c, d)| Op::Create(a, b, c, d)),
        3 => (p.clone(), 0usize..8).prop_map(|(a, b)| Op::JoinNth(a, b)),
        1 => (p.clone(), 0usize..8, any::<bool>()).prop_map(|(a, b, c)| Op::JoinCodeOf(a, b, c)),
        1 => p.clone().prop_map(Op::JoinUnknownCode),
        2 => p.clone().prop_map(Op::Leave),
        1 => p.clone().prop_map(Op::Start),
        1 => p.clone().prop_map(Op::Finish),
        2 => (0usize..8).prop_map(Op::HostStarts),
        3 => (0usize..8).prop_map(Op::HostFinishes),
        1 => (p.clone(), p.clone()).prop_map(|(a, b)| Op::Kick(a, b)),
        1 => (p.clone(), 0u8..3).prop_map(|(a, b)| Op::SetRoomData(a, b)),
        1 => p.clone().prop_map(Op::Chat),
        // Short steps, steps across the grace and the TTL, and jumps past
        // the idle timeout, so every kind of timer fires in many cases.
        2 => (0u64..200).prop_map(Op::Advance),
        2 => (250u64..700).prop_map(Op::Advance),
        1 => (2000u64..2600).prop_map(Op::Advance),
    ]
}

fn pid(i: usize) -> String {
    format!("p_{i}")
}

fn filters(f: u8) -> Option<serde_json::Map<String, Value>> {
    match f {
        0 => None,
        n => json!({ "k": n }).as_object().cloned(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn engine_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..150)) {
        let mut w = World::with_players();
        for op in &ops {
            w.apply(op);
        }
        w.drain();
    }
}

/// The operation mix reaches every kind of timer in a good share of runs,
/// so the property above really compares expiries, not only requests.
#[test]
fn every_timer_kind_fires_in_many_runs() {
    let mut runner = TestRunner::deterministic();
    let strategy = proptest::collection::vec(op(), 1..150);
    let runs = 200;
    let (mut seat, mut finished, mut idle) = (0, 0, 0);
    for _ in 0..runs {
        let ops = strategy.new_tree(&mut runner).unwrap().current();
        let mut w = World::with_players();
        for op in &ops {
            w.apply(op);
        }
        seat += w.fired.seat as usize;
        finished += w.fired.finished as usize;
        idle += w.fired.idle as usize;
    }
    eprintln!("of {runs} runs: seat {seat}, finished {finished}, idle {idle}");
    for (kind, n) in [
        ("held seat", seat),
        ("finished room", finished),
        ("idle room", idle),
    ] {
        assert!(
            n * 5 >= runs * 2,
            "{kind} timers fired in only {n} of {runs} runs"
        );
    }
}

#[test]
fn find_match_never_overfills_under_many_joiners() {
    let mut w = World::with_players();
    for i in 0..PLAYERS {
        w.apply(&Op::FindMatch(i, 3, 0, 0));
    }
    let s = w.lobby.stats();
    // 10 players in rooms of 3: three full active rooms and one waiting.
    assert_eq!(
        (s.active_rooms, s.waiting_rooms, s.total_players),
        (3, 1, 10)
    );
    w.drain();
}
