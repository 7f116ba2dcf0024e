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
    /// Test-only: called by a room's worker right after the critical
    /// section that follows a delivery (where it pops the event and, when
    /// the queue is empty, removes it), before it locks again or exits; a
    /// test pushes from here to land exactly in that gap.
    #[cfg(test)]
    gap_hook: Mutex<Option<GapHook>>,
}

#[cfg(test)]
type GapHook = Box<dyn FnOnce(&Arc<Outbox>) + Send>;

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
            #[cfg(test)]
            gap_hook: Mutex::new(None),
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
    ///
    /// The queue's presence in the map is the "a worker is running" flag
    /// `push` reads: the worker pops the event it delivered and, when that
    /// left the queue empty, removes it and exits, in one lock hold. So a
    /// push either lands in a queue this worker will still look at, or
    /// finds no queue after the worker has decided to exit and starts the
    /// next one: never two workers on one room.
    async fn drain_room(self: Arc<Self>, lane: Arc<Lane>, room: String) {
        let mut next = {
            let rooms = lane.rooms.lock();
            rooms
                .get(&room)
                .and_then(|q| q.front())
                .map(|i| (i.event.clone(), i.shared.clone()))
        };
        while let Some((event, shared)) = next {
            self.deliver(&lane, &event).await;
            next = {
                let mut rooms = lane.rooms.lock();
                match rooms.get_mut(&room) {
                    Some(q) => {
                        q.pop_front();
                        match q.front() {
                            Some(i) => Some((i.event.clone(), i.shared.clone())),
                            None => {
                                rooms.remove(&room);
                                None
                            }
                        }
                    }
                    None => None,
                }
            };
            #[cfg(test)]
            if let Some(hook) = self.gap_hook.lock().take() {
                hook(&self);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;

    fn metrics() -> Arc<WebhookMetrics> {
        use metrics::{Counter, Gauge, Histogram};
        Arc::new(WebhookMetrics {
            delivered: Counter::noop(),
            attempts: Counter::noop(),
            failures: Counter::noop(),
            dropped_overflow: Counter::noop(),
            dropped_expired: Counter::noop(),
            queue: Gauge::noop(),
            delivery_seconds: Histogram::noop(),
            allocations: Counter::noop(),
            allocation_failures: Counter::noop(),
        })
    }

    /// A receiver on 127.0.0.1 answering 200 to every POST and recording
    /// each one's `rendezvous-delivery` id in the order the requests came.
    async fn receiver() -> (Uri, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let log = log.clone();
                        async move {
                            let id = req.headers()["rendezvous-delivery"]
                                .to_str()
                                .unwrap()
                                .to_string();
                            let _ = req.into_body().collect().await;
                            log.lock().push(id);
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        (format!("http://{addr}/hook").parse().unwrap(), seen)
    }

    fn event(id: &str, done: Arc<Mutex<Vec<String>>>) -> Outgoing {
        let name = id.to_string();
        Outgoing {
            id: id.to_string(),
            kind: "room.updated",
            room_id: "r1".into(),
            body: Bytes::from_static(b"{}"),
            made: Instant::now(),
            done: Some(Box::new(move || done.lock().push(name))),
        }
    }

    /// Issue 35 point 1: a push landing between the worker's removal of
    /// the room's emptied queue and its next look at the map. The hook
    /// runs in exactly that gap (no timing involved) and pushes two more
    /// events for the room. Each of the three must be POSTed once, in
    /// order, each `done` called once, and `held` must come back to 0.
    /// With the old worker (remove, unlock, lock again at the top of the
    /// loop) the push made a second worker for the room while the first
    /// one went on: e2 POSTed twice, e3 popped unsent, `held` stuck at 1.
    /// One thread: the worker runs on after the hook until it awaits the
    /// POST, so what the old code did is the same every run.
    #[tokio::test]
    async fn push_in_the_workers_exit_gap_is_sent_once_in_order() {
        let (url, seen) = receiver().await;
        let outbox = Outbox::new(
            vec![url],
            Poster::new("secret"),
            100,
            Duration::from_secs(30),
            5_000,
            metrics(),
            CancellationToken::new(),
        );
        let done = Arc::new(Mutex::new(Vec::new()));
        let in_gap = done.clone();
        *outbox.gap_hook.lock() = Some(Box::new(move |outbox: &Arc<Outbox>| {
            assert!(outbox.push(event("e2", in_gap.clone())));
            assert!(outbox.push(event("e3", in_gap)));
        }));
        assert!(outbox.push(event("e1", done.clone())));

        let deadline = Instant::now() + Duration::from_secs(10);
        while (outbox.held() != 0 || done.lock().len() < 3) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(outbox.gap_hook.lock().is_none(), "the hook never ran");
        assert_eq!(
            outbox.held(),
            0,
            "held stuck; posted {:?}, done {:?}",
            seen.lock(),
            done.lock()
        );
        assert_eq!(
            *seen.lock(),
            ["e1", "e2", "e3"],
            "each posted once, in order"
        );
        assert_eq!(*done.lock(), ["e1", "e2", "e3"], "each done once, in order");
    }
}
