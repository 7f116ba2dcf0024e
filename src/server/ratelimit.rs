//! Per-connection rate limits: the message bucket with its rule for clients
//! that keep pushing, and the separate bucket of offers and answers (each
//! costs a full SDP parse).

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

/// Offers and answers per second per connection, and their burst.
pub(super) const SDP_PER_SECOND: u32 = 10;
const SDP_BURST: u32 = 20;

/// Offers and answers cost a full SDP parse (a few milliseconds for the
/// largest accepted ones), so they have a bucket of their own on top of the
/// message rate limit; real clients send a handful per peer.
pub(super) fn sdp_bucket() -> governor::DefaultDirectRateLimiter {
    let quota =
        governor::Quota::per_second(NonZeroU32::new(SDP_PER_SECOND).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(SDP_BURST).unwrap_or(NonZeroU32::MIN));
    governor::RateLimiter::direct_with_clock(quota, clock())
}

/// The bucket of `send` requests (1.2): `--send-rate` per second,
/// `--send-burst` at once, per connection, apart from signals.
pub(super) fn send_bucket(per_second: u32, burst: u32) -> governor::DefaultDirectRateLimiter {
    let quota = governor::Quota::per_second(NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
    governor::RateLimiter::direct_with_clock(quota, clock())
}

/// The clock of every bucket, made once. `RateLimiter::direct` makes a new
/// `quanta` clock per bucket, and making one asks the CPU (`cpuid`) whether
/// its counter can be used: under a hypervisor each `cpuid` traps, and two
/// buckets per connection were 40% of the server's CPU in the churn
/// benchmark (perf, 2026-12-01). A clone is a plain copy.
fn clock() -> governor::clock::DefaultClock {
    static CLOCK: std::sync::LazyLock<governor::clock::DefaultClock> =
        std::sync::LazyLock::new(Default::default);
    CLOCK.clone()
}

/// The per-connection token bucket (governor), plus the rule for clients
/// that keep pushing: refused messages are answered with `rate_limited`;
/// once a client has been refused more than the burst size (at least 10)
/// without a calm second in between, it is closed with 1008.
pub(super) struct RateLimit {
    bucket: governor::DefaultDirectRateLimiter,
    strikes: u32,
    max_strikes: u32,
    last_strike: Instant,
}

pub(super) enum Limit {
    Pass,
    Refuse,
    Close,
}

impl RateLimit {
    pub fn new(per_second: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        RateLimit {
            bucket: governor::RateLimiter::direct_with_clock(
                governor::Quota::per_second(rate).allow_burst(burst),
                clock(),
            ),
            strikes: 0,
            max_strikes: burst.get().max(10),
            last_strike: Instant::now(),
        }
    }

    pub fn check(&mut self) -> Limit {
        if self.bucket.check().is_ok() {
            if self.strikes > 0 && self.last_strike.elapsed() > Duration::from_secs(1) {
                self.strikes = 0;
            }
            return Limit::Pass;
        }
        self.strikes += 1;
        self.last_strike = Instant::now();
        if self.strikes > self.max_strikes {
            Limit::Close
        } else {
            Limit::Refuse
        }
    }
}

/// The `rid` of a frame the rate limit refused, when a cheap look finds
/// one (the rest of the message is skipped, not decoded), so the client's
/// pending request gets its answer; `null` otherwise.
pub(super) fn rid_of(text: &str) -> Value {
    #[derive(Deserialize)]
    struct RidOnly {
        #[serde(default)]
        rid: Value,
    }
    match serde_json::from_str::<RidOnly>(text) {
        Ok(r) if crate::protocol::valid_rid(&r.rid) => r.rid,
        _ => Value::Null,
    }
}
