//! Criterion benchmarks of the lobby engine: `find_match` with 1k and 1M
//! open rooms (its cost must not grow with the number of rooms), join and
//! leave, and stats.
//!
//! `cargo bench --bench lobby` (the 1M setup takes a few seconds).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use rendezvous::lobby::{Lobby, LobbyConfig};
use rendezvous::protocol::{CreateRoom, FindMatch};
use serde_json::json;

/// A lobby with `rooms` open public rooms of 4 (one player each), in mode
/// "m", half of them with data `{"map": "a"}` and half `{"map": "b"}`.
fn lobby_with_rooms(rooms: usize) -> Lobby {
    let mut lobby = Lobby::new(LobbyConfig {
        max_rooms: rooms + 1000,
        room_idle_timeout: Duration::from_secs(3600),
        ..LobbyConfig::default()
    });
    let now = Instant::now();
    let mut out = Vec::new();
    for i in 0..rooms {
        let pid = format!("host{i}");
        lobby.connect(&pid, "h", vec![], &mut out);
        let map = if i % 2 == 0 { "a" } else { "b" };
        lobby
            .create_room(
                &pid,
                CreateRoom {
                    max_players: Some(4),
                    mode: Some("m".into()),
                    data: json!({"map": map}).as_object().cloned(),
                    ..Default::default()
                },
                now,
                &mut out,
            )
            .unwrap();
        out.clear();
    }
    lobby
}

/// One find_match then a leave, so the lobby is the same after each round.
fn match_and_leave(lobby: &mut Lobby, filters: Option<serde_json::Map<String, serde_json::Value>>) {
    let mut out = Vec::new();
    let m = lobby
        .find_match(
            "seeker",
            FindMatch {
                max_players: Some(4),
                mode: Some("m".into()),
                filters,
                backfill: false,
                max_spectators: None,
                start_when_ready: false,
            },
            Instant::now(),
            &mut out,
        )
        .unwrap();
    black_box(&m);
    lobby.leave_room("seeker", &mut out).unwrap();
    black_box(out);
}

fn bench_find_match(c: &mut Criterion) {
    let mut group = c.benchmark_group("find_match");
    for &n in &[1_000usize, 1_000_000] {
        let mut lobby = lobby_with_rooms(n);
        let mut out = Vec::new();
        lobby.connect("seeker", "s", vec![], &mut out);
        group.bench_function(format!("no_filter/{n}_rooms"), |b| {
            b.iter(|| match_and_leave(&mut lobby, None))
        });
        let filters = json!({"map": "b"}).as_object().cloned();
        group.bench_function(format!("filter/{n}_rooms"), |b| {
            b.iter(|| match_and_leave(&mut lobby, filters.clone()))
        });
        group.bench_function(format!("stats/{n}_rooms"), |b| {
            b.iter(|| black_box(lobby.stats()))
        });
    }
    group.finish();
}

fn bench_join_leave(c: &mut Criterion) {
    c.bench_function("create_join_leave_2_players", |b| {
        b.iter_batched(
            || {
                let mut lobby = Lobby::new(LobbyConfig::default());
                let mut out = Vec::new();
                lobby.connect("a", "a", vec![], &mut out);
                lobby.connect("b", "b", vec![], &mut out);
                lobby
            },
            |mut lobby| {
                let mut out = Vec::new();
                let room = lobby
                    .create_room(
                        "a",
                        CreateRoom {
                            max_players: Some(3),
                            ..Default::default()
                        },
                        Instant::now(),
                        &mut out,
                    )
                    .unwrap();
                lobby
                    .join_room("b", Some(&room.room_id), None, &mut out)
                    .unwrap();
                lobby.leave_room("b", &mut out).unwrap();
                lobby.leave_room("a", &mut out).unwrap();
                black_box(out);
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench_find_match, bench_join_leave);
criterion_main!(benches);
