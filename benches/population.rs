//! A simulated population for ticket matchmaking (issue 15): what players
//! would see (how long they wait, how far apart in skill the rooms they
//! land in are, how many tickets expire) and how many tickets per second
//! of real CPU the lobby engine handles, in simulated time (an `Instant`
//! base plus offsets, never sleeping), so a 4-minute run takes seconds.
//!
//! Players arrive at a steady rate for 120 simulated seconds, skill drawn
//! from Normal(1500, 300); half ask for rooms of 2, half for rooms of 4
//! that may start with 2 after the fill delay; 30% give 2 or 3 of
//! eu/us/asia with RTTs drawn from 10-200 ms (default `max_rtt_ms` 150);
//! default skill windows (100, +50/s, max 1000) and lobby defaults (fill
//! delay 10 s, TTL 120 s). The lobby ticks every 100 simulated ms, and runs
//! on until every ticket formed a room or expired. A player leaves the
//! lobby when its `game_start` arrives (the game is played elsewhere).
//! Single-player tickets only (no parties).
//!
//! `cargo bench --bench population` prints a markdown table;
//! `POP_RATES=200,2000` picks the arrival rates (players per second),
//! `POP_RTT_MAX=150` the highest RTT drawn (ms; with 150 every ticket with
//! regions has one within its limit, so none is left that can never match).

#[path = "common/cpu.rs"]
mod cpu;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rendezvous::lobby::{Delivery, Lobby, LobbyConfig};
use rendezvous::protocol::{Event, QueueMatch};

const ARRIVAL_SECS: u64 = 120;
const TICK: Duration = Duration::from_millis(100);
const REGIONS: [&str; 3] = ["eu", "us", "asia"];

/// SplitMix64: small, seeded, and good enough for drawing a population
/// (no new dependency for it).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Normal(mean, sd) by Box-Muller (one of the pair is enough here).
    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]: ln is finite
        let u2 = self.unit();
        mean + sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

struct Arrival {
    at: Duration,
    skill: f64,
    req: QueueMatch,
}

fn population(rate: u64, rtt_max: f64, rng: &mut Rng) -> Vec<Arrival> {
    (0..rate * ARRIVAL_SECS)
        .map(|i| {
            let skill = rng.normal(1500.0, 300.0);
            let four = rng.unit() < 0.5;
            let regions = (rng.unit() < 0.3).then(|| {
                let count = if rng.unit() < 0.5 { 2 } else { 3 };
                let skip = (rng.next_u64() % 3) as usize;
                (0..3)
                    .filter(|r| count == 3 || *r != skip)
                    .map(|r| (REGIONS[r].to_string(), 10.0 + (rtt_max - 10.0) * rng.unit()))
                    .collect()
            });
            Arrival {
                at: Duration::from_secs_f64(i as f64 / rate as f64),
                skill,
                req: QueueMatch {
                    mode: Some("ranked".into()),
                    max_players: Some(if four { 4 } else { 2 }),
                    min_players: Some(2),
                    skill: Some(skill),
                    regions,
                    ..Default::default()
                },
            }
        })
        .collect()
}

#[derive(Default)]
struct Outcome {
    /// Simulated seconds from `queue_match` to `game_start`, per player,
    /// by room size asked (2 or 4).
    waits: [Vec<f64>; 2],
    /// Highest minus lowest skill of each formed room, by size asked.
    spreads: [Vec<f64>; 2],
    /// Rooms formed, by size asked and the number of players they started
    /// with (index 2..=4).
    rooms_by_players: [[u64; 5]; 2],
    waits_regions: Vec<f64>,
    waits_no_regions: Vec<f64>,
    expired: u64,
    /// Tickets refused at `queue_match` (no region within their limit).
    refused: u64,
    max_queued: usize,
    left_queued: usize,
    wall: Duration,
    /// CPU time of the run (this thread), and of the ticks alone.
    cpu: Duration,
    tick_cpu: Duration,
    ticks: u64,
}

fn run(rate: u64, rtt_max: f64) -> (usize, Outcome) {
    let mut rng = Rng(0x5eed_0000 + rate);
    let pop = population(rate, rtt_max, &mut rng);
    let cfg = LobbyConfig {
        max_rooms: 1_000_000,
        ..LobbyConfig::default()
    };
    let end = Duration::from_secs(ARRIVAL_SECS) + cfg.ticket_ttl + Duration::from_secs(1);
    let mut lobby = Lobby::new(cfg);
    let base = Instant::now();
    let mut o = Outcome::default();
    let mut seen_rooms = HashSet::new();
    let mut out: Vec<Delivery> = Vec::new();
    let mut gone: Vec<Delivery> = Vec::new();
    let mut next = 0;
    let mut tick_at = TICK;
    let wall = Instant::now();
    let cpu_at_start = cpu::thread_cpu();
    while tick_at <= end {
        while next < pop.len() && pop[next].at <= tick_at {
            let a = &pop[next];
            let pid = format!("p{next}");
            lobby.connect(&pid, "p", vec![], &mut out);
            if let Err(e) = lobby.queue_match(&pid, a.req.clone(), base + a.at, &mut out) {
                // A ticket that could never form a room (no region within
                // its limit): refused, and the player goes.
                assert_eq!(e.code, rendezvous::protocol::ErrorCode::BadRequest, "{e:?}");
                o.refused += 1;
                lobby.remove_player(&pid, &mut gone);
            }
            record(
                &mut lobby,
                &pop,
                &mut out,
                &mut gone,
                a.at,
                &mut seen_rooms,
                &mut o,
            );
            next += 1;
        }
        let t = cpu::thread_cpu();
        lobby.tick(base + tick_at, &mut out);
        // The kernel updates a running thread's CPU time at its scheduler
        // ticks (4 ms here): one reading is coarse, their sum is not.
        o.tick_cpu += cpu::thread_cpu().saturating_sub(t);
        o.ticks += 1;
        record(
            &mut lobby,
            &pop,
            &mut out,
            &mut gone,
            tick_at,
            &mut seen_rooms,
            &mut o,
        );
        o.max_queued = o.max_queued.max(lobby.tickets_queued());
        tick_at += TICK;
    }
    o.wall = wall.elapsed();
    o.cpu = cpu::thread_cpu().saturating_sub(cpu_at_start);
    o.left_queued = lobby.tickets_queued();
    (pop.len(), o)
}

/// Reads what the last step delivered: each `game_start` gives its
/// players' waits and (once per room) its skill spread; `ticket_expired`
/// is counted. Players that are done leave the lobby.
fn record(
    lobby: &mut Lobby,
    pop: &[Arrival],
    out: &mut Vec<Delivery>,
    gone: &mut Vec<Delivery>,
    now: Duration,
    seen_rooms: &mut HashSet<String>,
    o: &mut Outcome,
) {
    let index = |pid: &str| pid[1..].parse::<usize>().expect("player ids are p<n>");
    for d in out.drain(..) {
        match d.event {
            Event::GameStart {
                room,
                ticket_id: Some(_),
                ..
            } => {
                let kind = usize::from(room.max_players == 4);
                for pid in &d.to {
                    let a = &pop[index(pid)];
                    let wait = (now - a.at).as_secs_f64();
                    o.waits[kind].push(wait);
                    if a.req.regions.is_some() {
                        o.waits_regions.push(wait);
                    } else {
                        o.waits_no_regions.push(wait);
                    }
                    lobby.remove_player(pid, gone);
                }
                if seen_rooms.insert(room.room_id.clone()) {
                    let skills = room.players.iter().map(|p| pop[index(&p.player_id)].skill);
                    let lo = skills.clone().fold(f64::INFINITY, f64::min);
                    let hi = skills.fold(f64::NEG_INFINITY, f64::max);
                    o.spreads[kind].push(hi - lo);
                    o.rooms_by_players[kind][room.players.len().min(4)] += 1;
                }
            }
            Event::TicketExpired { .. } => {
                o.expired += 1;
                for pid in &d.to {
                    lobby.remove_player(pid, gone);
                }
            }
            _ => {}
        }
    }
    gone.clear();
}

/// The `p`-quantile (nearest rank) of `v`, sorted in place.
fn quantile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn main() {
    let rates: Vec<u64> = std::env::var("POP_RATES")
        .unwrap_or_else(|_| "200,2000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rtt_max: f64 = std::env::var("POP_RTT_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v: &f64| *v >= 10.0)
        .unwrap_or(200.0);
    println!(
        "Simulated population, {ARRIVAL_SECS} s of arrivals, RTTs drawn from 10-{rtt_max} ms, \
         tick every {} ms, default windows and lobby settings\n",
        TICK.as_millis()
    );
    println!(
        "| arrivals/s | rooms of | players | rooms formed (2 / 3 / 4 players) | wait median / p99 (s) | skill spread median / p99 |"
    );
    println!("|---:|---:|---:|---|---:|---:|");
    let mut totals = Vec::new();
    for rate in rates {
        let (players, mut o) = run(rate, rtt_max);
        for (kind, size) in [(0, 2), (1, 4)] {
            let r = o.rooms_by_players[kind];
            let rooms = if kind == 0 {
                format!("{} / - / -", r[2])
            } else {
                format!("{} / {} / {}", r[2], r[3], r[4])
            };
            let seated = o.waits[kind].len();
            println!(
                "| {rate} | {size} | {seated} seated | {rooms} | {:.1} / {:.1} | {:.0} / {:.0} |",
                quantile(&mut o.waits[kind], 0.5),
                quantile(&mut o.waits[kind], 0.99),
                quantile(&mut o.spreads[kind], 0.5),
                quantile(&mut o.spreads[kind], 0.99),
            );
        }
        totals.push((rate, players, o));
    }
    println!(
        "\n| arrivals/s | tickets | refused | expired | left queued | most queued | wait median / p99, with regions (s) | without regions (s) | tickets/s, wall clock / per CPU s | tick mean, CPU µs |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (rate, players, mut o) in totals {
        println!(
            "| {rate} | {players} | {} | {} | {} | {} | {:.1} / {:.1} | {:.1} / {:.1} | {:.0} / {:.0} | {:.0} |",
            o.refused,
            o.expired,
            o.left_queued,
            o.max_queued,
            quantile(&mut o.waits_regions, 0.5),
            quantile(&mut o.waits_regions, 0.99),
            quantile(&mut o.waits_no_regions, 0.5),
            quantile(&mut o.waits_no_regions, 0.99),
            players as f64 / o.wall.as_secs_f64(),
            players as f64 / o.cpu.as_secs_f64(),
            o.tick_cpu.as_secs_f64() * 1e6 / o.ticks as f64,
        );
    }
}
