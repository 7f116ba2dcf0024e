//! Delivery of webhook events: one lane per URL, and in each lane one queue
//! per room, so the events of a room reach a URL in the order they happened
//! while a slow room (or a receiver refusing one room's event) never holds
//! the others back.
//!
//! An event is retried with exponential backoff (0.5 s, 1 s, 2 s... at most
//! 60 s apart) until it is delivered or `--webhook-retry-for-ms` has passed
//! since it was made; the same id and body go out every time. The number of
//! events held (over all URLs) is bounded by `--webhook-queue`: what does
//! not fit is dropped, counted and logged, never waited for, so the lobby
//! never blocks on a receiver.
//!
//! `done` is called once per event when every URL has delivered or given
//! it up: in cluster mode it acknowledges the Redis stream entry.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use hyper::Uri;
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::post::{PostError, Poster};
use crate::metrics::WebhookMetrics;

/// Most POSTs in flight to one URL at once.
const PER_URL: usize = 32;
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// One event, ready to send.
pub struct Outgoing {
    pub id: String,
    pub kind: &'static str,
    pub room_id: String,
    pub body: Bytes,
    /// When the event was made (expiry counts from here, even for an event
    /// another node made before it died).
    pub made: Instant,
    /// Called when every lane is done with the event.
    pub done: Option<Box<dyn FnOnce() + Send + Sync>>,
}

struct Shared {
    out: Mutex<Option<Box<dyn FnOnce() + Send + Sync>>>,
    lanes_left: AtomicUsize,
}

struct Item {
    event: Arc<Outgoing>,
    shared: Arc<Shared>,
}

struct Lane {
    url: Uri,
    rooms: Mutex<HashMap<String, VecDeque<Item>>>,
    permits: Semaphore,
}

pub struct Outbox {
    lanes: Vec<Arc<Lane>>,
    poster: Poster,
    /// Events held (each counted once, however many URLs).
    held: AtomicUsize,
    cap: usize,
    retry_for: Duration,
    timeout_ms: u64,
    metrics: Arc<WebhookMetrics>,
    stop: CancellationToken,
}

impl Outbox {
    pub fn new(
        urls: Vec<Uri>,
        poster: Poster,
        cap: usize,
        retry_for: Duration,
        timeout_ms: u64,
        metrics: Arc<WebhookMetrics>,
        stop: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Outbox {
            lanes: urls
                .into_iter()
                .map(|url| {
                    Arc::new(Lane {
                        url,
                        rooms: Mutex::new(HashMap::new()),
                        permits: Semaphore::new(PER_URL),
                    })
                })
                .collect(),
            poster,
            held: AtomicUsize::new(0),
            cap,
            retry_for,
            timeout_ms,
            metrics,
            stop,
        })
    }

    /// Events held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// How many more events fit.
    pub fn room_left(&self) -> usize {
        self.cap.saturating_sub(self.held())
    }

    /// Queues an event on every lane; false (dropped, counted) when the
    /// outbox is full. Never waits.
    pub fn push(self: &Arc<Self>, mut event: Outgoing) -> bool {
        if self.held() >= self.cap {
            self.metrics.dropped_overflow.increment(1);
            tracing::warn!(
                id = %event.id, kind = event.kind, room = %event.room_id,
                "webhook queue full ({}): event dropped", self.cap
            );
            if let Some(done) = event.done.take() {
                done();
            }
            return false;
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        self.metrics.queue.set(self.held() as f64);
        let shared = Arc::new(Shared {
            out: Mutex::new(event.done.take()),
            lanes_left: AtomicUsize::new(self.lanes.len()),
        });
        let event = Arc::new(event);
        for lane in &self.lanes {
            let item = Item {
                event: event.clone(),
                shared: shared.clone(),
            };
            let start = {
                let mut rooms = lane.rooms.lock();
                match rooms.get_mut(&event.room_id) {
                    Some(q) => {
                        q.push_back(item);
                        false
                    }
                    None => {
                        rooms.insert(event.room_id.clone(), VecDeque::from([item]));
                        true
                    }
                }
            };
            if start {
                let me = self.clone();
                let lane = lane.clone();
                let room = event.room_id.clone();
                tokio::spawn(async move { me.drain_room(lane, room).await });
            }
        }
        true
    }

    /// Sends a room's events to one URL, one after the other, until its
    /// queue is empty (a worker per room and URL while it has events).
    async fn drain_room(self: Arc<Self>, lane: Arc<Lane>, room: String) {
        loop {
            let next = {
                let rooms = lane.rooms.lock();
                rooms
                    .get(&room)
                    .and_then(|q| q.front())
                    .map(|i| (i.event.clone(), i.shared.clone()))
            };
            let Some((event, shared)) = next else { return };
            self.deliver(&lane, &event).await;
            {
                let mut rooms = lane.rooms.lock();
                if let Some(q) = rooms.get_mut(&room) {
                    q.pop_front();
                    if q.is_empty() {
                        rooms.remove(&room);
                    }
                }
            }
            if shared.lanes_left.fetch_sub(1, Ordering::AcqRel) == 1 {
                self.held.fetch_sub(1, Ordering::Relaxed);
                self.metrics.queue.set(self.held() as f64);
                if let Some(done) = shared.out.lock().take() {
                    done();
                }
            }
            if self.stop.is_cancelled() {
                return;
            }
        }
    }

    /// Tries until delivered, expired or the server stops.
    async fn deliver(&self, lane: &Lane, event: &Outgoing) {
        let mut wait = FIRST_RETRY;
        loop {
            if event.made.elapsed() > self.retry_for {
                self.metrics.dropped_expired.increment(1);
                tracing::warn!(
                    id = %event.id, kind = event.kind, url = %lane.url,
                    "webhook given up after --webhook-retry-for-ms"
                );
                return;
            }
            let result = {
                let _permit = lane.permits.acquire().await;
                self.metrics.attempts.increment(1);
                let r = tokio::select! {
                    r = self.poster.post(&lane.url, event.kind, &event.id, &event.body, self.timeout_ms) => r,
                    _ = self.stop.cancelled() => return,
                };
                if r.is_ok() {
                    self.metrics
                        .delivery_seconds
                        .record(event.made.elapsed().as_secs_f64());
                }
                r
            };
            match result {
                Ok(_) => {
                    self.metrics.delivered.increment(1);
                    return;
                }
                Err(e) => {
                    self.metrics.failures.increment(1);
                    log_failure(lane, event, &e, wait);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop.cancelled() => return,
            }
            wait = (wait * 2).min(MAX_RETRY);
        }
    }
}

fn log_failure(lane: &Lane, event: &Outgoing, e: &PostError, wait: Duration) {
    tracing::info!(
        id = %event.id, kind = event.kind, url = %lane.url,
        "webhook not delivered ({e}); retry in {} ms", wait.as_millis()
    );
}
