//! Webhooks and the allocation hook: telling a game's backend what
//! happened in the lobby, and asking it for a dedicated server when a match
//! starts.
//!
//! The engines say what happened (`lobby::HookEvent`); this module turns events
//! into signed POSTs (`sign`, `post`) and delivers them at least once, in
//! order per room, without ever blocking the lobby (`outbox`). In memory
//! the engine's events go straight to the outbox; in cluster mode they are
//! appended to a Redis stream by the same script that made the change, and
//! one node at a time delivers them (`backend::redis::hooks`).

mod event;
pub mod outbox;
pub mod post;
pub mod sign;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use hyper::Uri;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use event::{body, parse_filter};
use outbox::{Outbox, Outgoing};
use post::{parse_url, PostError, Poster};

use crate::metrics::WebhookMetrics;
use crate::protocol::{Allocation, JsonObject, RoomInfo};

/// What the hooks are configured with (from the CLI's `--webhook-*` and
/// `--allocator-*` flags).
#[derive(Debug, Clone, Default)]
pub struct HooksConfig {
    pub webhook_url: Vec<String>,
    pub webhook_secret: Option<String>,
    /// `--webhook-events` as given (empty: all of `known_events`).
    pub webhook_events: Vec<String>,
    /// Every event type the engines make.
    pub known_events: &'static [&'static str],
    pub webhook_queue: u64,
    pub webhook_retry_for_ms: u64,
    pub webhook_timeout_ms: u64,
    pub allocator_url: Option<String>,
    pub allocator_timeout_ms: u64,
}

/// The hooks of one server, as configured.
pub struct Hooks {
    /// Webhook delivery; `None` without `--webhook-url`.
    pub outbox: Option<Arc<Outbox>>,
    /// The event types sent.
    pub events: Vec<&'static str>,
    allocator: Option<Uri>,
    allocator_timeout_ms: u64,
    poster: Option<Poster>,
    pub metrics: Arc<WebhookMetrics>,
}

impl Hooks {
    /// Checks the flags; `Err` names the problem (exit code 2).
    pub fn new(
        cfg: &HooksConfig,
        metrics: Arc<WebhookMetrics>,
        stop: CancellationToken,
    ) -> Result<Hooks, String> {
        let events = parse_filter(&cfg.webhook_events, cfg.known_events)?;
        let urls = cfg
            .webhook_url
            .iter()
            .map(|u| parse_url("--webhook-url", u))
            .collect::<Result<Vec<_>, _>>()?;
        let allocator = cfg
            .allocator_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
            .map(|u| parse_url("--allocator-url", u.trim()))
            .transpose()?;
        let secret = cfg.webhook_secret.as_deref().unwrap_or("");
        if (!urls.is_empty() || allocator.is_some()) && secret.is_empty() {
            return Err(
                "--webhook-secret is required with --webhook-url or --allocator-url".into(),
            );
        }
        let poster = (!urls.is_empty() || allocator.is_some()).then(|| Poster::new(secret));
        let outbox = match &poster {
            Some(p) if !urls.is_empty() => Some(Outbox::new(
                urls,
                p.clone(),
                cfg.webhook_queue as usize,
                Duration::from_millis(cfg.webhook_retry_for_ms),
                cfg.webhook_timeout_ms,
                metrics.clone(),
                stop,
            )),
            _ => None,
        };
        Ok(Hooks {
            outbox,
            events,
            allocator,
            allocator_timeout_ms: cfg.allocator_timeout_ms,
            poster,
            metrics,
        })
    }

    /// Whether webhooks are sent at all.
    pub fn webhooks_on(&self) -> bool {
        self.outbox.is_some()
    }

    /// Whether events of this type are sent.
    pub fn wants(&self, kind: &str) -> bool {
        self.outbox.is_some() && self.events.contains(&kind)
    }

    pub fn allocator_on(&self) -> bool {
        self.allocator.is_some()
    }

    /// Queues an event made on this server (in-memory mode): its type, the
    /// room it is about (the events of one room are delivered in order) and
    /// its `data`, built only when the type is sent. Never waits.
    pub fn send(&self, kind: &'static str, room_id: &str, data: impl FnOnce() -> Value) {
        let Some(outbox) = &self.outbox else { return };
        if !self.wants(kind) {
            return;
        }
        let (id, body) = envelope(kind, &data());
        outbox.push(Outgoing {
            id,
            kind,
            room_id: room_id.to_string(),
            body,
            made: Instant::now(),
            done: None,
        });
    }

    /// Asks the allocator for a game server for `room` (`match.allocate`).
    /// Never fails: a refusal or a timeout gives `allocation: null` and a
    /// reason, and the game goes peer to peer.
    pub async fn allocate(&self, room: &RoomInfo) -> Allocation {
        let (Some(url), Some(poster)) = (&self.allocator, &self.poster) else {
            return Allocation::failed("no allocator configured");
        };
        let (id, body) = envelope("match.allocate", &serde_json::json!({ "room": room }));
        self.metrics.allocations.increment(1);
        let answer = poster
            .post(url, "match.allocate", &id, &body, self.allocator_timeout_ms)
            .await;
        let result = match answer {
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(obj)) => Ok(obj),
                _ => Err("the allocator's answer is not a JSON object".to_string()),
            },
            Err(PostError::Timeout(ms)) => Err(format!("allocator timeout ({ms} ms)")),
            Err(PostError::Status(s)) => Err(format!("allocator answered {s}")),
            Err(PostError::Transport(e)) => Err(format!("allocator unreachable: {e}")),
        };
        match result {
            Ok(obj) => Allocation::of(obj),
            Err(reason) => {
                self.metrics.allocation_failures.increment(1);
                tracing::warn!(room = %room.room_id, "allocation failed: {reason}");
                Allocation::failed(&reason)
            }
        }
    }
}

/// A new event made on this server: a fresh id and the body, stamped now.
fn envelope(kind: &str, data: &Value) -> (String, Bytes) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let created_at = crate::protocol::ts(&chrono::Utc::now());
    let text = body(&id, kind, &created_at, data);
    (id, Bytes::from(text))
}

impl Allocation {
    pub fn of(obj: JsonObject) -> Self {
        Allocation {
            allocation: Some(obj),
            allocation_error: None,
        }
    }

    pub fn failed(reason: &str) -> Self {
        Allocation {
            allocation: None,
            allocation_error: Some(reason.to_string()),
        }
    }
}
