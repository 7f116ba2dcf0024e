//! Prometheus metrics at `/metrics`.
//!
//! Each server owns its own recorder (no global one), so several servers in
//! one process (as in the tests) keep separate figures. Every metric is
//! declared once here, with its description, and registered up front: the
//! hot paths only bump a handle, never look a name up. Label values come
//! from closed sets (message types, error codes), so nothing a client sends
//! can grow the number of series.

use std::collections::HashMap;

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::protocol::{ErrorCode, Stats};

/// Request types counted in `rendezvous_messages_in_total`.
pub const REQUEST_TYPES: &[&str] = &[
    "find_match",
    "create_room",
    "join_room",
    "leave_room",
    "list_rooms",
    "queue_match",
    "cancel_match",
    "create_party",
    "join_party",
    "leave_party",
    "start_game",
    "finish_game",
    "set_room_data",
    "set_player_data",
    "kick",
    "offer",
    "answer",
    "ice_candidate",
    "chat",
    "ping",
    "subscribe_stats",
    "unsubscribe_stats",
    "subscribe_rooms",
    "unsubscribe_rooms",
    "invalid",
];

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
    // Looked up per message: foldhash rather than SipHash.
    messages_in: foldhash::HashMap<&'static str, Counter>,
    pub messages_out: Counter,
    errors: HashMap<ErrorCode, Counter>,
    pub signals_relayed: Counter,
    pub relay_seconds: Histogram,
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
                Matcher::Full("rendezvous_relay_seconds".into()),
                &[
                    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005,
                    0.01,
                ],
            )
            .expect("static bucket list is not empty")
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
            "WebSocket handshakes refused (origin, limits, shutdown, bad request)",
        );
        recorder.describe_histogram(
            "rendezvous_relay_seconds".into(),
            Some(Unit::Seconds),
            "Time from reading a signal to queueing it for its target".into(),
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
        let messages_in = REQUEST_TYPES
            .iter()
            .map(|t| (*t, labeled("rendezvous_messages_in_total", "type", t)))
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
            messages_out: counter("rendezvous_messages_out_total"),
            errors,
            signals_relayed: counter("rendezvous_signals_relayed_total"),
            relay_seconds: recorder
                .register_histogram(&Key::from_static_name("rendezvous_relay_seconds"), &META),
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
        if let Some(c) = self.messages_in.get(kind) {
            c.increment(1);
        }
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
        self.handle.render()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
