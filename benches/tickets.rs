//! Criterion benchmarks of ticket matchmaking (`queue_match`, issue 15):
//! the cost of queueing, cancelling and matching one ticket must not grow
//! with the number of tickets already queued, so each is measured with
//! 1 000 and 100 000 tickets waiting that never match one another (skills
//! 5 000 apart, windows of at most 100 or 4 000). The tick pass is measured
//! too, with every queued window still widening and with every window at
//! its max: it walks the skilled pools, so its cost is expected to grow
//! with the queue.
//!
//! Times are the benchmark thread's CPU time (`/proc/thread-self/schedstat`,
//! Linux), not wall-clock time: on a shared machine the wall clock counts
//! the time other processes held the CPU (three times the CPU time in the
//! runs of 2026-11-30).
//!
//! `cargo bench --bench tickets` (the 100k setups take a few seconds each).
//! Single-player tickets only (no parties).

#[path = "common/cpu.rs"]
mod cpu;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rendezvous::lobby::{Delivery, Lobby, LobbyConfig};
use rendezvous::protocol::{Event, QueueMatch};

/// Skill distance between two queued tickets: wider than any window here.
const SPACING: f64 = 5_000.0;
const SIZES: [usize; 2] = [1_000, 100_000];

/// How the pre-queued tickets' windows behave.
#[derive(Clone, Copy)]
enum Windows {
    /// 100 and never wider: the tick has nothing to look at.
    AtMax,
    /// 100, widening by 0.01 per second up to 4 000: every tick each
    /// window is a little wider (never reaching a neighbour 5 000 away
    /// within any realistic run).
    Widening,
}

fn ticket(skill: f64, w: Windows) -> QueueMatch {
    let (widen, max) = match w {
        Windows::AtMax => (50.0, 100.0),
        Windows::Widening => (0.01, 4_000.0),
    };
    QueueMatch {
        mode: Some("ranked".into()),
        max_players: Some(2),
        skill: Some(skill),
        skill_window: Some(100.0),
        skill_widen_per_s: Some(widen),
        skill_window_max: Some(max),
        ..Default::default()
    }
}

/// A lobby with `n` queued tickets of the same pool that match nothing
/// (skills 0, 5 000, 10 000, ...), queued at `t0`, plus the connected
/// players the benchmarks queue with.
fn queued_lobby(n: usize, w: Windows, t0: Instant) -> Lobby {
    let mut lobby = Lobby::new(LobbyConfig {
        // Nothing expires and no fill delay passes while a benchmark runs
        // (a cheap tick runs millions of times, 100 simulated ms each).
        ticket_ttl: Duration::from_secs(3650 * 86_400),
        ticket_fill_after: Duration::from_secs(3650 * 86_400),
        ..LobbyConfig::default()
    });
    let mut out = Vec::new();
    for i in 0..n {
        let pid = format!("q{i}");
        lobby.connect(&pid, "q", vec![], &mut out);
        lobby
            .queue_match(&pid, ticket(i as f64 * SPACING, w), t0, &mut out)
            .unwrap();
    }
    lobby.connect("probe", "probe", vec![], &mut out);
    assert!(out.is_empty(), "the pre-queued tickets formed a room");
    assert_eq!(lobby.tickets_queued(), n);
    lobby
}

/// Criterion measurement: the thread's CPU time over a batch of iterations.
struct ThreadCpu;

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        cpu::thread_cpu()
    }
    fn end(&self, start: Duration) -> Duration {
        cpu::thread_cpu().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Nanoseconds of CPU, scaled like criterion's wall-clock times.
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = match ns {
            x if x < 1e3 => (1.0, "ns cpu"),
            x if x < 1e6 => (1e-3, "µs cpu"),
            x if x < 1e9 => (1e-6, "ms cpu"),
            _ => (1e-9, "s cpu"),
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }
    fn scale_throughputs(&self, _ns: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        // Not used by these benchmarks; per CPU second if ever set.
        let n = match *t {
            Throughput::Elements(n)
            | Throughput::Bytes(n)
            | Throughput::BytesDecimal(n)
            | Throughput::Bits(n) => n as f64,
        };
        values.iter_mut().for_each(|v| *v = n * 1e9 / *v);
        "/cpu s"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// One pair's whole trip: the partner connects and queues, the matcher
/// connects and its `queue_match` forms their room at once, both leave the
/// lobby (so the room closes and the queue is back to what it was). Timing
/// the whole trip keeps the measurement to one CPU-time reading per batch
/// of iterations (the kernel updates a running thread's time at its ticks,
/// too coarse to time one call); every step of it is meant to be flat in
/// the number of queued tickets.
/// Whether the room formed.
fn pair_trip(lobby: &mut Lobby, now: Instant, out: &mut Vec<Delivery>) -> bool {
    // Halfway between two queued skills: 2 500 from either.
    let skill = SPACING / 2.0;
    lobby.connect("partner", "p", vec![], out);
    lobby
        .queue_match("partner", ticket(skill, Windows::AtMax), now, out)
        .unwrap();
    lobby.connect("matcher", "m", vec![], out);
    let t = lobby.queue_match("matcher", ticket(skill + 10.0, Windows::AtMax), now, out);
    black_box(&t);
    let formed = out
        .iter()
        .any(|d| matches!(d.event, Event::GameStart { .. }));
    lobby.remove_player("partner", out);
    lobby.remove_player("matcher", out);
    out.clear();
    formed
}

fn bench_queue(c: &mut Criterion<ThreadCpu>) {
    let mut group = c.benchmark_group("tickets");
    let t0 = Instant::now();
    for n in SIZES {
        let mut lobby = queued_lobby(n, Windows::AtMax, t0);
        let now = t0 + Duration::from_secs(1);
        group.bench_function(format!("queue_cancel/{n}_queued"), |b| {
            b.iter(|| {
                let mut out = Vec::new();
                let t = lobby.queue_match(
                    "probe",
                    ticket(SPACING / 2.0, Windows::AtMax),
                    now,
                    &mut out,
                );
                black_box(&t);
                lobby.cancel_match("probe", &mut out).unwrap();
                black_box(out);
            })
        });
        let mut out = Vec::new();
        assert!(
            pair_trip(&mut lobby, now, &mut out),
            "the pair formed no room"
        );
        group.bench_function(format!("pair_forms_room/{n}_queued"), |b| {
            b.iter(|| pair_trip(&mut lobby, now, &mut out))
        });
        assert_eq!(lobby.tickets_queued(), n);
        assert_eq!(
            lobby.stats().total_rooms,
            0,
            "formed rooms were left behind"
        );
    }
    group.finish();
}

fn bench_tick(c: &mut Criterion<ThreadCpu>) {
    let mut group = c.benchmark_group("tickets");
    let t0 = Instant::now();
    for (name, w) in [
        ("tick_widening", Windows::Widening),
        ("tick_at_max", Windows::AtMax),
    ] {
        for n in SIZES {
            let mut lobby = queued_lobby(n, w, t0);
            let mut now = t0;
            let mut out = Vec::new();
            group.bench_function(format!("{name}/{n}_queued"), |b| {
                b.iter(|| {
                    now += Duration::from_millis(100);
                    lobby.tick(now, &mut out);
                })
            });
            assert!(out.is_empty(), "a tick formed a room");
            assert_eq!(lobby.tickets_queued(), n);
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .with_measurement(ThreadCpu)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_queue, bench_tick
}
criterion_main!(benches);
