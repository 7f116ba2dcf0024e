//! Signals between nodes, batched: the sessions of a node queue their
//! routed signals here, and one task publishes everything queued at once,
//! one `PUBLISH` per target node carrying all of that node's signals, all
//! nodes in one pipelined round trip.
//!
//! A batch travels on the target node's notice channel, so it is ordered
//! with the notices: a signal sent before a change of the room reaches the
//! target's node before that change. The sender's own requests that take
//! the script wait for the batches queued before them (`barrier`), so a
//! session's signals and requests reach the store in the order it sent
//! them.
//!
//! The batch format is not JSON, to spare escaping the frames: `S`, then
//! four length-prefixed fields per signal (`<bytes>:<text>`): target,
//! sender, room, frame.
//!
//! `send` messages (1.2) travel the same way, one entry per recipient,
//! their frame a `message` event (which is how the target's node tells
//! them from signals).
//!
//! Batches go out on a connection of their own ([`crate::backend::redis::store::resp`]),
//! each written from the buffer it was built in: its `PUBLISH` header goes
//! in room kept free in front of it ([`HEAD`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};

use crate::backend::redis::store::{channel, resp, Store, StoreError};

/// Signals queued by the sessions of this node, at most: a session that
/// finds the queue full waits for the round trip under way.
const QUEUE: u64 = 65_536;
/// A batch is closed at this size and the node's next signals start
/// another (one `PUBLISH` each, in order), so that no message nears the
/// store's limits for a subscriber's output buffer.
const BATCH_BYTES: usize = 1 << 20;

/// Room in front of each batch for its `PUBLISH` header: the header of
/// the longest channel name (64-byte node id) and a batch of at most
/// [`BATCH_BYTES`] fits with room to spare; a longer one would be written
/// on its own.
const HEAD: usize = 128;
/// How long a round may take (connecting included) before its signals
/// count as lost and the connection is dropped.
const ROUND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Emptied batches kept for reuse, at most, and the largest kept.
const FREE_KEPT: usize = 8;
const FREE_MAX_BYTES: usize = 256 * 1024;

/// Signals waiting for the next round trip, written in place: each is
/// appended to its node's batch as it is routed (no entry, no queue item,
/// no copy into a batch later).
#[derive(Default)]
struct Pending {
    /// (node, batch) in the order the batches were opened; a node can have
    /// several when one filled up. A batch starts with [`HEAD`] spaces.
    batches: Vec<(String, String)>,
    /// Entries (signals and message copies) queued.
    signals: u64,
    /// Of those, entries of `send` messages, and the messages they carry
    /// (counted once each, whatever their recipients).
    message_entries: u64,
    messages: u64,
    /// Told whether the round trip that carries their signal succeeded.
    confirms: Vec<oneshot::Sender<bool>>,
    /// Told when every signal queued before them is published.
    barriers: Vec<oneshot::Sender<()>>,
    /// Emptied batches of earlier rounds, reused before any new one.
    free: Vec<String>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.signals == 0 && self.barriers.is_empty()
    }

    /// Appends one signal to `node`'s open batch (opening one if needed).
    fn push(&mut self, node: &str, to: &str, from: &str, room: &str, frame: &str) {
        let need = to.len() + from.len() + room.len() + frame.len() + 4 * 8;
        let open = self
            .batches
            .iter()
            .rposition(|(n, _)| n == node)
            .filter(|&i| self.batches[i].1.len() - HEAD + need <= BATCH_BYTES);
        let batch = match open {
            Some(i) => &mut self.batches[i].1,
            None => {
                let mut b = self
                    .free
                    .pop()
                    .unwrap_or_else(|| String::with_capacity(HEAD + need.max(16 * 1024)));
                b.extend(std::iter::repeat_n(' ', HEAD));
                b.push('S');
                self.batches.push((node.to_string(), b));
                &mut self.batches.last_mut().expect("just pushed").1
            }
        };
        put_entry(batch, to, from, room, frame);
        self.signals += 1;
    }
}

/// Appends one signal as a batch entry: four length-prefixed fields.
fn put_entry(batch: &mut String, to: &str, from: &str, room: &str, frame: &str) {
    for field in [to, from, room, frame] {
        crate::relay::push_decimal(batch, field.len() as u64);
        batch.push(':');
        batch.push_str(field);
    }
}

/// One signal as a batch entry.
#[cfg(test)]
pub(crate) fn entry(to: &str, from: &str, room: &str, frame: &str) -> String {
    let mut s = String::new();
    put_entry(&mut s, to, from, room, frame);
    s
}

/// A signal read back from a batch.
pub(crate) struct Entry<'a> {
    pub to: &'a str,
    pub from: &'a str,
    pub room: &'a str,
    pub frame: &'a str,
}

/// Reads a batch (without its `S`); `None` for a malformed one.
pub(crate) fn entries(text: &str) -> Option<Vec<Entry<'_>>> {
    fn field<'a>(text: &mut &'a str) -> Option<&'a str> {
        let colon = text.find(':')?;
        let len: usize = text[..colon].parse().ok()?;
        let value = text.get(colon + 1..colon + 1 + len)?;
        *text = &text[colon + 1 + len..];
        Some(value)
    }
    let mut rest = text;
    let mut out = Vec::new();
    while !rest.is_empty() {
        out.push(Entry {
            to: field(&mut rest)?,
            from: field(&mut rest)?,
            room: field(&mut rest)?,
            frame: field(&mut rest)?,
        });
    }
    Some(out)
}

struct Shared {
    pending: Mutex<Pending>,
    /// Signals queued and not yet published (in `pending` or on their way).
    queued: AtomicU64,
    /// Wakes the publishing task: `pending` went from empty to not.
    work: Notify,
    /// Wakes senders waiting for room in the queue.
    room: Notify,
    /// The publishing task ended (the runtime is shutting down).
    stopped: AtomicBool,
}

pub(crate) struct Publisher {
    shared: Arc<Shared>,
}

impl Publisher {
    /// `on_published(signals, messages)` counts what each round delivered
    /// to the store.
    pub fn start(store: Arc<Store>, on_published: impl Fn(u64, u64) + Send + 'static) -> Publisher {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            queued: AtomicU64::new(0),
            work: Notify::new(),
            room: Notify::new(),
            stopped: AtomicBool::new(false),
        });
        // The guard goes in as an argument: dropped with the task even if
        // the task is never polled (a runtime shutting down).
        tokio::spawn(run(store, StopGuard(shared.clone()), on_published));
        Publisher { shared }
    }

    /// Waits while the queue is full; an error once the publisher stopped.
    pub async fn ready(&self) -> Result<(), StoreError> {
        let sh = &self.shared;
        loop {
            if sh.stopped.load(Ordering::Acquire) {
                return Err(StoreError::Unavailable("the signal relay stopped".into()));
            }
            if sh.queued.load(Ordering::Acquire) < QUEUE {
                return Ok(());
            }
            // Registered from here on, so a publish between the check
            // above and the wait below still wakes it.
            let room = sh.room.notified();
            if sh.queued.load(Ordering::Acquire) < QUEUE || sh.stopped.load(Ordering::Acquire) {
                continue;
            }
            room.await;
        }
    }

    /// Queues a signal for `node` (call `ready` first; it may overshoot the
    /// queue's bound by the sessions that passed `ready` together). With
    /// `confirm`, the answer says whether the store took it.
    pub fn push(
        &self,
        node: &str,
        to: &str,
        from: &str,
        room: &str,
        frame: &str,
        confirm: bool,
    ) -> Option<oneshot::Receiver<bool>> {
        self.enqueue(confirm, 1, |p| p.push(node, to, from, room, frame))
    }

    /// Queues a `send` message (1.2) for its recipients, each `(node,
    /// player)`, all in this round; counted as one message once published.
    /// Call `ready` first.
    pub fn push_message(
        &self,
        to: &[(String, String)],
        from: &str,
        room: &str,
        frame: &str,
        confirm: bool,
    ) -> Option<oneshot::Receiver<bool>> {
        self.enqueue(confirm, to.len() as u64, |p| {
            for (node, pid) in to {
                p.push(node, pid, from, room, frame);
            }
            p.message_entries += to.len() as u64;
            p.messages += 1;
        })
    }

    /// Adds `entries` entries to the open round with `add`, under its lock;
    /// with `confirm`, the answer says whether the store took them.
    fn enqueue(
        &self,
        confirm: bool,
        entries: u64,
        add: impl FnOnce(&mut Pending),
    ) -> Option<oneshot::Receiver<bool>> {
        let sh = &self.shared;
        let mut p = sh.pending.lock();
        if sh.stopped.load(Ordering::Acquire) {
            // Nobody will publish it (checked under the lock the stopping
            // task drains under): refused at once, never left waiting.
            return confirm.then(|| {
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(false);
                rx
            });
        }
        let was_empty = p.is_empty();
        add(&mut p);
        sh.queued.fetch_add(entries, Ordering::AcqRel);
        let answer = confirm.then(|| {
            let (tx, rx) = oneshot::channel();
            p.confirms.push(tx);
            rx
        });
        drop(p);
        if was_empty {
            sh.work.notify_one();
        }
        answer
    }

    /// Waits for the answer of a confirmed `push`.
    pub async fn confirmed(answer: oneshot::Receiver<bool>) -> Result<(), StoreError> {
        match answer.await {
            Ok(true) => Ok(()),
            _ => Err(StoreError::Unavailable(
                "the store did not take the signal".into(),
            )),
        }
    }

    /// Waits until every signal queued before now is published.
    pub async fn barrier(&self) {
        let sh = &self.shared;
        if sh.queued.load(Ordering::Acquire) == 0 || sh.stopped.load(Ordering::Acquire) {
            return;
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut p = sh.pending.lock();
            if sh.stopped.load(Ordering::Acquire) {
                return;
            }
            let was_empty = p.is_empty();
            p.barriers.push(tx);
            if was_empty {
                sh.work.notify_one();
            }
        }
        let _ = rx.await;
    }
}

/// Marks the publisher stopped when its task ends, however it ends.
struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        // Under the lock, so that a push or barrier either sees `stopped`
        // or is drained here: no one is left waiting for a publish.
        let round = {
            let mut p = self.0.pending.lock();
            self.0.stopped.store(true, Ordering::Release);
            std::mem::take(&mut *p)
        };
        for done in round.confirms {
            let _ = done.send(false);
        }
        for done in round.barriers {
            let _ = done.send(());
        }
        self.0.room.notify_waiters();
    }
}

async fn run(store: Arc<Store>, guard: StopGuard, on_published: impl Fn(u64, u64)) {
    let shared = &guard.0;
    let mut conn: Option<resp::Conn> = None;
    loop {
        shared.work.notified().await;
        let round = {
            let mut p = shared.pending.lock();
            if p.is_empty() {
                continue;
            }
            let free = std::mem::take(&mut p.free);
            std::mem::replace(
                &mut *p,
                Pending {
                    free,
                    ..Pending::default()
                },
            )
        };
        let signals = round.signals;
        let messages = round.messages;
        let message_entries = round.message_entries;
        let mut batches: Vec<(String, Vec<u8>)> = round
            .batches
            .into_iter()
            .map(|(node, batch)| (node, batch.into_bytes()))
            .collect();
        let ok = if batches.is_empty() {
            true
        } else {
            let sent =
                tokio::time::timeout(ROUND_TIMEOUT, publish(&store, &mut conn, &mut batches)).await;
            let failed = match sent {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {ROUND_TIMEOUT:?}")),
            };
            match failed {
                None => true,
                Some(e) => {
                    // Its state is unknown: the next round connects anew.
                    conn = None;
                    tracing::warn!("{signals} signals lost: {e}");
                    false
                }
            }
        };
        if ok && signals > 0 {
            on_published(signals - message_entries, messages);
        }
        shared.queued.fetch_sub(signals, Ordering::AcqRel);
        shared.room.notify_waiters();
        for done in round.confirms {
            let _ = done.send(ok);
        }
        for done in round.barriers {
            let _ = done.send(());
        }
        // Emptied, the batches serve the next rounds (a few, of a usual
        // size: a burst's megabyte batches are let go).
        let mut p = shared.pending.lock();
        for (_, mut batch) in batches {
            if p.free.len() < FREE_KEPT && batch.capacity() <= FREE_MAX_BYTES {
                batch.clear();
                p.free
                    .push(String::from_utf8(batch).expect("an empty buffer is UTF-8"));
            }
        }
    }
}

/// Publishes a round's batches (connecting first when there is no
/// connection), each one `PUBLISH` written from its own buffer, all before
/// the first answer is read; an error if any of them was refused.
async fn publish(
    store: &Store,
    conn: &mut Option<resp::Conn>,
    batches: &mut [(String, Vec<u8>)],
) -> std::io::Result<()> {
    if conn.is_none() {
        *conn = Some(store.raw().await?);
    }
    let c = conn.as_mut().expect("connected above");
    for (node, batch) in batches.iter_mut() {
        let head = resp::publish_head(&channel(node), batch.len() - HEAD);
        batch.extend_from_slice(b"\r\n");
        if head.len() <= HEAD {
            let at = HEAD - head.len();
            batch[at..HEAD].copy_from_slice(&head);
            c.write_all(&batch[at..]).await?;
        } else {
            c.write_all(&head).await?;
            c.write_all(&batch[HEAD..]).await?;
        }
    }
    for _ in 0..batches.len() {
        c.next(|r| r.ok().map(|_| ())).await??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_back_what_was_written() {
        let mut batch = entry("p:1", "p é", "r", r#"{"type":"offer","sdp":"a:b\r\n"}"#);
        batch.push_str(&entry("", "x", "9:9", "{}"));
        let e = entries(&batch).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].to, e[0].from, e[0].room), ("p:1", "p é", "r"));
        assert_eq!(e[0].frame, r#"{"type":"offer","sdp":"a:b\r\n"}"#);
        assert_eq!((e[1].to, e[1].room, e[1].frame), ("", "9:9", "{}"));
        assert!(entries("3:ab").is_none(), "short field");
        assert!(entries("1:a1:b").is_none(), "missing fields");
        assert!(entries("x:a").is_none(), "bad length");
        assert!(entries("1:\u{e9}").is_none(), "not on a char boundary");
        assert_eq!(entries("").map(|e| e.len()), Some(0));
    }

    fn publisher_on(url: &str) -> Publisher {
        let store = Store::new(url, "n1".into()).expect("a valid url");
        Publisher::start(Arc::new(store), |_, _| {})
    }

    #[tokio::test]
    async fn a_store_that_is_down_refuses_confirmed_signals_and_frees_barriers() {
        // Port 1 on loopback: nothing listens, the connection is refused.
        let p = publisher_on("redis://127.0.0.1:1");
        p.ready().await.expect("room in the queue");
        let answer = p
            .push("n2", "b", "a", "r", "{}", true)
            .expect("asked to confirm");
        let refused = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            Publisher::confirmed(answer),
        )
        .await
        .expect("answered");
        assert!(refused.is_err());
        tokio::time::timeout(std::time::Duration::from_secs(10), p.barrier())
            .await
            .expect("the barrier is let through once the round is over");
        assert_eq!(p.shared.queued.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_stopped_publisher_leaves_no_one_waiting() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Queued while the publishing task has not run yet, then the
        // runtime (and the task with it) goes away.
        let (p, queued) = rt.block_on(async {
            let p = publisher_on("redis://127.0.0.1:1");
            let queued = p.push("n2", "b", "a", "r", "{}", true).unwrap();
            (p, queued)
        });
        drop(rt);
        assert!(p.shared.stopped.load(Ordering::Acquire));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let wait = std::time::Duration::from_secs(5);
            let first = tokio::time::timeout(wait, Publisher::confirmed(queued)).await;
            assert!(first.expect("answered by the stopping task").is_err());
            assert!(p.ready().await.is_err(), "the relay stopped");
            let late = p.push("n2", "b", "a", "r", "{}", true).unwrap();
            let late = tokio::time::timeout(wait, Publisher::confirmed(late)).await;
            assert!(late.expect("answered at once").is_err());
            tokio::time::timeout(wait, p.barrier())
                .await
                .expect("no wait");
        });
    }

    /// Reads every batch of a round: (node, [(to, frame)]).
    fn read_round(p: &Pending) -> Vec<(String, Vec<(String, String)>)> {
        p.batches
            .iter()
            .map(|(node, b)| {
                let e =
                    entries(b[HEAD..].strip_prefix('S').expect("batch mark")).expect("well formed");
                let e = e.iter().map(|e| (e.to.to_string(), e.frame.to_string()));
                (node.clone(), e.collect())
            })
            .collect()
    }

    #[test]
    fn pending_signals_go_to_their_node_batch_in_order() {
        let mut p = Pending::default();
        assert!(p.is_empty());
        p.push("n2", "b", "a", "r1", "1");
        p.push("n3", "c", "a", "r1", "2");
        p.push("n2", "b", "a", "r1", "3");
        assert_eq!(p.signals, 3);
        assert!(!p.is_empty());
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            read_round(&p),
            vec![
                ("n2".to_string(), pairs(&[("b", "1"), ("b", "3")])),
                ("n3".to_string(), pairs(&[("c", "2")])),
            ]
        );
        // An emptied batch is reused for the next node that needs one.
        let mut next = Pending::default();
        let mut old = p.batches.remove(0).1;
        old.clear();
        let at = old.as_ptr();
        next.free.push(old);
        next.push("n9", "z", "y", "r", "f");
        assert_eq!(next.batches[0].1.as_ptr(), at);
        assert_eq!(read_round(&next)[0].1, pairs(&[("z", "f")]));
    }

    #[test]
    fn a_full_batch_is_closed_and_the_next_one_follows_it() {
        let mut p = Pending::default();
        let frame = "x".repeat(100_000);
        for i in 0..25 {
            p.push("n2", &i.to_string(), "a", "r", &frame);
            p.push("n3", "c", "a", "r", "small");
        }
        let round = read_round(&p);
        let n2: Vec<&(String, Vec<(String, String)>)> =
            round.iter().filter(|(n, _)| n == "n2").collect();
        assert!(n2.len() >= 3, "25 signals of 100 kB make several batches");
        assert!(p.batches.iter().all(|(_, b)| b.len() - HEAD <= BATCH_BYTES));
        // In order across the batches, none lost.
        let order: Vec<String> = n2
            .iter()
            .flat_map(|(_, e)| e.iter().map(|(to, _)| to.clone()))
            .collect();
        let want: Vec<String> = (0..25).map(|i: i32| i.to_string()).collect();
        assert_eq!(order, want);
        let n3: usize = round
            .iter()
            .filter(|(n, _)| n == "n3")
            .map(|(_, e)| e.len())
            .sum();
        assert_eq!(n3, 25);
    }
}
