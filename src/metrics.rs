//! Prometheus metrics at `/metrics`.
//!
//! Each server owns its own recorder (no global one), so several servers in
//! one process (as in the tests) keep separate figures. Every metric is
//! declared once here, with its description, and registered up front: the
//! hot paths only bump a handle, never look a name up. Label values come
//! from closed sets (message types, error codes), so nothing a client sends
//! can grow the number of series.
//!
//! What is counted for every relayed signal (messages in and out, signals
//! relayed, the relay latency) is counted in plain atomics ([`Fast`],
//! [`Latency`]) and handed to the exporter when `/metrics` is read: the
//! exporter's own handles cost two atomics per increment and a lock-free
//! bucket push per sample, about 5% of the relay's CPU (perf).

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::protocol::SignalKind;
use crate::protocol::{ErrorCode, Stats};

/// The signals, in the order of `Metrics::signals_in`.
const SIGNAL_KINDS: [SignalKind; 3] = [
    SignalKind::Offer,
    SignalKind::Answer,
    SignalKind::IceCandidate,
];

/// The label of `rendezvous_messages_in_total` for a frame that decoded to
/// no request; the others are the request table's types
/// ([`crate::protocol::REQUEST_TYPES`]).
pub const INVALID: &str = "invalid";

const ERROR_CODES: &[ErrorCode] = &[
    ErrorCode::BadRequest,
    ErrorCode::UnknownType,
    ErrorCode::PayloadTooLarge,
    ErrorCode::RateLimited,
    ErrorCode::Unauthorized,
    ErrorCode::Forbidden,
    ErrorCode::LimitReached,
    ErrorCode::RoomNotFound,
    ErrorCode::RoomFull,
    ErrorCode::RoomNotWaiting,
    ErrorCode::RoomNotActive,
    ErrorCode::NotInRoom,
    ErrorCode::AlreadyInRoom,
    ErrorCode::NotHost,
    ErrorCode::NotEnoughPlayers,
    ErrorCode::PeerNotFound,
    ErrorCode::PlayerNotFound,
    ErrorCode::InvalidSdp,
    ErrorCode::InvalidCandidate,
    ErrorCode::AlreadyQueued,
    ErrorCode::NotQueued,
    ErrorCode::NotPartyLeader,
    ErrorCode::AlreadyInParty,
    ErrorCode::PartyNotFound,
    ErrorCode::PartyFull,
    ErrorCode::NotInParty,
    ErrorCode::Internal,
];

static META: Metadata<'static> = Metadata::new(module_path!(), metrics::Level::INFO, None);

pub struct Metrics {
    /// Kept alive with its handles; `handle` renders from it.
    #[allow(dead_code)]
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    // Looked up per message: foldhash rather than SipHash. Signals are not
    // in it: `signals_in` is indexed by their kind.
    messages_in: foldhash::HashMap<&'static str, Fast>,
    signals_in: [Fast; 3],
    pub messages_out: Fast,
    errors: HashMap<ErrorCode, Counter>,
    pub signals_relayed: Fast,
    /// 1.2: accepted `send` requests (counted by the sender's node).
    pub messages_relayed: Counter,
    pub relay_seconds: Latency,
    pub slow_clients_closed: Counter,
    pub auth_failures: Counter,
    pub rate_limited: Counter,
    pub handshakes_refused: Counter,
    connections: Gauge,
    rooms: [Gauge; 3],
    players: Gauge,
    held_seats: Gauge,
    matches_started: Gauge,
    /// The drop-in endpoints for other signaling clients.
    pub peerjs: Endpoint,
    pub matchbox: Endpoint,
    pub webhook: std::sync::Arc<WebhookMetrics>,
}

/// The webhook and allocation figures (`rendezvous_webhook_*`).
pub struct WebhookMetrics {
    pub delivered: Counter,
    pub attempts: Counter,
    pub failures: Counter,
    pub dropped_overflow: Counter,
    pub dropped_expired: Counter,
    /// Events waiting for delivery on this node.
    pub queue: Gauge,
    /// From the event's making to its 2xx.
    pub delivery_seconds: Histogram,
    pub allocations: Counter,
    pub allocation_failures: Counter,
}

/// The figures of one drop-in endpoint, labelled `endpoint="peerjs"`...
/// Its connections and relays also count in the totals.
pub struct Endpoint {
    pub connections: Gauge,
    pub messages_in: Counter,
    pub signals_relayed: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("rendezvous_webhook_delivery_seconds".into()),
                &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0],
            )
            .expect("static bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        let describe = |name: &'static str, unit: Option<Unit>, text: &'static str| {
            recorder.describe_counter(name.into(), unit, text.into());
        };
        describe(
            "rendezvous_messages_in_total",
            None,
            "WebSocket requests received, by type",
        );
        describe(
            "rendezvous_messages_out_total",
            None,
            "Replies and events queued to clients",
        );
        describe(
            "rendezvous_errors_total",
            None,
            "Error replies sent, by code",
        );
        describe(
            "rendezvous_signals_relayed_total",
            None,
            "Offers, answers and ICE candidates handed to their target",
        );
        describe(
            "rendezvous_messages_relayed_total",
            None,
            "send requests accepted and relayed to the room (one per request)",
        );
        describe(
            "rendezvous_slow_clients_closed_total",
            None,
            "Connections closed because their outbound queue was full",
        );
        describe(
            "rendezvous_auth_failures_total",
            None,
            "Handshakes refused for a bad or missing token",
        );
        describe(
            "rendezvous_rate_limited_total",
            None,
            "Messages refused by the per-connection rate limit",
        );
        describe(
            "rendezvous_handshakes_refused_total",
            None,
            "WebSocket handshakes refused (origin, token, limits, shutdown, bad parameters; not requests that are no upgrade)",
        );
        describe(
            "rendezvous_endpoint_messages_in_total",
            None,
            "Messages received on a drop-in endpoint (peerjs, matchbox)",
        );
        describe(
            "rendezvous_endpoint_signals_relayed_total",
            None,
            "Signals relayed on a drop-in endpoint (peerjs, matchbox)",
        );
        for (name, text) in [
            (
                "rendezvous_webhook_delivered_total",
                "Webhook events delivered (2xx), per URL",
            ),
            (
                "rendezvous_webhook_attempts_total",
                "Webhook POSTs made, retries included",
            ),
            (
                "rendezvous_webhook_failures_total",
                "Webhook POSTs that failed (non-2xx, timeout, no connection)",
            ),
            (
                "rendezvous_webhook_dropped_total",
                "Webhook events given up: queue overflow or --webhook-retry-for-ms expired",
            ),
            (
                "rendezvous_allocations_total",
                "Allocation hook calls (match.allocate)",
            ),
            (
                "rendezvous_allocation_failures_total",
                "Allocation hook calls without a usable answer",
            ),
        ] {
            describe(name, None, text);
        }
        recorder.describe_histogram(
            "rendezvous_webhook_delivery_seconds".into(),
            Some(Unit::Seconds),
            "Time from a webhook event's making to its delivery".into(),
        );
        for (name, text) in [
            (
                "rendezvous_webhook_queue",
                "Webhook events waiting for delivery on this node",
            ),
            ("rendezvous_connections", "Open WebSocket connections"),
            (
                "rendezvous_endpoint_connections",
                "Open connections of a drop-in endpoint (peerjs, matchbox)",
            ),
            ("rendezvous_rooms", "Rooms, by status"),
            (
                "rendezvous_players",
                "Seats taken in rooms, connected or held",
            ),
            (
                "rendezvous_held_seats",
                "Seats held for a disconnected player",
            ),
            (
                "rendezvous_matches_started",
                "Rooms that became active since start",
            ),
        ] {
            recorder.describe_gauge(name.into(), None, text.into());
        }
        let counter =
            |name: &'static str| recorder.register_counter(&Key::from_static_name(name), &META);
        let labeled = |name: &'static str, label: &'static str, value: &'static str| {
            recorder.register_counter(
                &Key::from_parts(name, vec![Label::new(label, value)]),
                &META,
            )
        };
        let gauge =
            |name: &'static str| recorder.register_gauge(&Key::from_static_name(name), &META);
        let room_gauge = |status: &'static str| {
            recorder.register_gauge(
                &Key::from_parts("rendezvous_rooms", vec![Label::new("status", status)]),
                &META,
            )
        };
        let signals_in = SIGNAL_KINDS
            .map(|k| Fast::new(labeled("rendezvous_messages_in_total", "type", k.as_str())));
        let messages_in = crate::protocol::REQUEST_TYPES
            .iter()
            .chain([INVALID].iter())
            .filter(|t| !SIGNAL_KINDS.iter().any(|k| k.as_str() == **t))
            .map(|t| {
                let c = labeled("rendezvous_messages_in_total", "type", t);
                (*t, Fast::new(c))
            })
            .collect();
        let errors = ERROR_CODES
            .iter()
            .map(|c| (*c, labeled("rendezvous_errors_total", "code", c.as_str())))
            .collect();
        let endpoint = |name: &'static str| {
            let label = || vec![Label::new("endpoint", name)];
            Endpoint {
                connections: recorder.register_gauge(
                    &Key::from_parts("rendezvous_endpoint_connections", label()),
                    &META,
                ),
                messages_in: recorder.register_counter(
                    &Key::from_parts("rendezvous_endpoint_messages_in_total", label()),
                    &META,
                ),
                signals_relayed: recorder.register_counter(
                    &Key::from_parts("rendezvous_endpoint_signals_relayed_total", label()),
                    &META,
                ),
            }
        };
        let webhook = WebhookMetrics {
            delivered: counter("rendezvous_webhook_delivered_total"),
            attempts: counter("rendezvous_webhook_attempts_total"),
            failures: counter("rendezvous_webhook_failures_total"),
            dropped_overflow: labeled("rendezvous_webhook_dropped_total", "reason", "overflow"),
            dropped_expired: labeled("rendezvous_webhook_dropped_total", "reason", "expired"),
            queue: gauge("rendezvous_webhook_queue"),
            delivery_seconds: recorder.register_histogram(
                &Key::from_static_name("rendezvous_webhook_delivery_seconds"),
                &META,
            ),
            allocations: counter("rendezvous_allocations_total"),
            allocation_failures: counter("rendezvous_allocation_failures_total"),
        };
        Metrics {
            webhook: std::sync::Arc::new(webhook),
            peerjs: endpoint("peerjs"),
            matchbox: endpoint("matchbox"),
            messages_in,
            signals_in,
            messages_out: Fast::new(counter("rendezvous_messages_out_total")),
            errors,
            signals_relayed: Fast::new(counter("rendezvous_signals_relayed_total")),
            messages_relayed: counter("rendezvous_messages_relayed_total"),
            relay_seconds: Latency::default(),
            slow_clients_closed: counter("rendezvous_slow_clients_closed_total"),
            auth_failures: counter("rendezvous_auth_failures_total"),
            rate_limited: counter("rendezvous_rate_limited_total"),
            handshakes_refused: counter("rendezvous_handshakes_refused_total"),
            connections: gauge("rendezvous_connections"),
            rooms: [
                room_gauge("waiting"),
                room_gauge("active"),
                room_gauge("finished"),
            ],
            players: gauge("rendezvous_players"),
            held_seats: gauge("rendezvous_held_seats"),
            matches_started: gauge("rendezvous_matches_started"),
            handle,
            recorder,
        }
    }

    /// Counts one received request by its type (`invalid` when it could
    /// not be decoded).
    pub fn message_in(&self, kind: &str) {
        if let Some(k) = SignalKind::parse(kind) {
            self.signal_in(k);
        } else if let Some(c) = self.messages_in.get(kind) {
            c.increment(1);
        }
    }

    /// `message_in` of a signal, without a lookup.
    pub fn signal_in(&self, kind: SignalKind) {
        let k = match kind {
            SignalKind::Offer => 0,
            SignalKind::Answer => 1,
            SignalKind::IceCandidate => 2,
        };
        self.signals_in[k].increment(1);
    }

    pub fn error(&self, code: ErrorCode) {
        if let Some(c) = self.errors.get(&code) {
            c.increment(1);
        }
    }

    /// The Prometheus text, with the gauges set from `stats` first.
    pub fn render(&self, stats: &Stats) -> String {
        self.connections.set(stats.connections as f64);
        self.rooms[0].set(stats.waiting_rooms as f64);
        self.rooms[1].set(stats.active_rooms as f64);
        self.rooms[2].set(stats.finished_rooms as f64);
        self.players.set(stats.total_players as f64);
        self.held_seats.set(stats.held_seats as f64);
        self.matches_started.set(stats.matches_started as f64);
        for c in self.messages_in.values().chain(&self.signals_in) {
            c.sync();
        }
        self.messages_out.sync();
        self.signals_relayed.sync();
        let mut text = self.handle.render();
        self.relay_seconds.render(&mut text);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A counter bumped on the hot path with one relaxed atomic; the exporter's
/// counter is set to it when `/metrics` is read.
pub struct Fast {
    value: AtomicU64,
    exported: Counter,
}

impl Fast {
    fn new(exported: Counter) -> Self {
        Fast {
            value: AtomicU64::new(0),
            exported,
        }
    }

    pub fn increment(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    fn sync(&self) {
        self.exported.absolute(self.value.load(Ordering::Relaxed));
    }
}

/// `rendezvous_relay_seconds`: time from reading a signal to queueing it
/// for its target, a Prometheus histogram kept in atomics (one bucket
/// count, the count and the sum per sample) and rendered here.
pub struct Latency {
    /// Samples at or below each bound (not cumulative; summed on render).
    buckets: [AtomicU64; LATENCY_BOUNDS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

const LATENCY_BOUNDS: [f64; 10] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01,
];

impl Default for Latency {
    fn default() -> Self {
        Latency {
            buckets: Default::default(),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }
}

impl Latency {
    pub fn record(&self, seconds: f64) {
        if let Some(i) = LATENCY_BOUNDS.iter().position(|b| seconds <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let ns = (seconds * 1e9).clamp(0.0, u64::MAX as f64) as u64;
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String) {
        let name = "rendezvous_relay_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from reading a signal to queueing it for its target\n\
             # TYPE {name} histogram"
        );
        // The count first: a sample recorded while this renders then shows
        // in no bucket rather than in a bucket past `+Inf`.
        let count = self.count.load(Ordering::Relaxed);
        let mut below = 0;
        for (bound, n) in LATENCY_BOUNDS.iter().zip(&self.buckets) {
            below += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", below.min(count));
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_renders_a_cumulative_prometheus_histogram() {
        let l = Latency::default();
        for s in [0.000_005, 0.000_03, 0.000_03, 0.003, 2.0] {
            l.record(s);
        }
        let mut text = String::new();
        l.render(&mut text);
        let value = |series: &str| -> f64 {
            let line = text
                .lines()
                .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
                .unwrap_or_else(|| panic!("{series} missing:\n{text}"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert!(text.contains("# TYPE rendezvous_relay_seconds histogram"));
        assert_eq!(
            value("rendezvous_relay_seconds_bucket{le=\"0.00001\"}"),
            1.0
        );
        assert_eq!(
            value("rendezvous_relay_seconds_bucket{le=\"0.00005\"}"),
            3.0
        );
        assert_eq!(value("rendezvous_relay_seconds_bucket{le=\"0.005\"}"), 4.0);
        assert_eq!(value("rendezvous_relay_seconds_bucket{le=\"0.01\"}"), 4.0);
        assert_eq!(value("rendezvous_relay_seconds_bucket{le=\"+Inf\"}"), 5.0);
        assert_eq!(value("rendezvous_relay_seconds_count"), 5.0);
        let sum = value("rendezvous_relay_seconds_sum");
        assert!((sum - 2.003_065).abs() < 1e-6, "{sum}");
    }

    #[test]
    fn fast_counters_reach_the_exporter_when_rendered() {
        let m = Metrics::new();
        m.messages_out.increment(3);
        m.signals_relayed.increment(2);
        m.message_in("ice_candidate");
        m.signal_in(SignalKind::IceCandidate);
        m.signal_in(SignalKind::Offer);
        m.message_in("answer");
        m.message_in("find_match");
        let text = m.render(&Stats::default());
        for (kind, n) in [
            ("ice_candidate", 2),
            ("offer", 1),
            ("answer", 1),
            ("find_match", 1),
        ] {
            let line = format!("rendezvous_messages_in_total{{type=\"{kind}\"}} {n}");
            assert!(text.contains(&line), "{line} in {text}");
        }
        assert!(text.contains("rendezvous_messages_out_total 3"), "{text}");
        assert!(
            text.contains("rendezvous_signals_relayed_total 2"),
            "{text}"
        );
    }
}
