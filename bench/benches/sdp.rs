//! Criterion bench of the SDP check that Rendezvous runs on every relayed
//! offer and answer (`rendezvous::signaling::validate_sdp`), on a real
//! Chromium offer with audio, video and a data channel: the per-signal cost
//! that the relay benchmark's candidate payload does not exercise.
//!
//! `cargo bench -p rendezvous-bench --bench sdp`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rendezvous::signaling::validate_sdp;

const OFFER_AV: &str = include_str!("../../tests/fixtures/sdp/chromium-offer-av-data.sdp");
const OFFER_DC: &str = include_str!("../../tests/fixtures/sdp/chromium-offer-datachannel.sdp");

fn bench_validate_sdp(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate_sdp");
    for (name, sdp) in [
        ("chromium-offer-av-data", OFFER_AV),
        ("chromium-offer-datachannel", OFFER_DC),
    ] {
        validate_sdp(sdp, 32 * 1024).expect("the fixture is valid");
        group.throughput(Throughput::Bytes(sdp.len() as u64));
        group.bench_function(name, |b| b.iter(|| validate_sdp(black_box(sdp), 32 * 1024)));
    }
    group.finish();
}

criterion_group!(benches, bench_validate_sdp);
criterion_main!(benches);
