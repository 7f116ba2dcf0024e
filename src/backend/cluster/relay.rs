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

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::cluster::{Store, StoreError, PREFIX};

/// Signals queued by the sessions of this node, at most.
const QUEUE: usize = 65_536;
/// Signals published in one round trip, at most.
const BATCH: usize = 4096;

enum Item {
    Signal {
        node: String,
        entry: String,
        done: Option<oneshot::Sender<bool>>,
    },
    Barrier(oneshot::Sender<()>),
}

pub(crate) struct Publisher {
    tx: mpsc::Sender<Item>,
    /// Signals queued and not yet published (a barrier with none to wait
    /// for costs nothing).
    queued: Arc<AtomicU64>,
}

/// One signal as a batch entry.
pub(crate) fn entry(to: &str, from: &str, room: &str, frame: &str) -> String {
    let mut s = String::with_capacity(to.len() + from.len() + room.len() + frame.len() + 24);
    for field in [to, from, room, frame] {
        let _ = write!(s, "{}:", field.len());
        s.push_str(field);
    }
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

impl Publisher {
    pub fn start(store: Arc<Store>, on_published: impl Fn(u64) + Send + 'static) -> Publisher {
        let (tx, rx) = mpsc::channel(QUEUE);
        let queued = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(store, rx, queued.clone(), on_published));
        Publisher { tx, queued }
    }

    /// Queues a signal for `node`; with `confirm`, waits until it is
    /// published and says whether it was.
    pub async fn send(&self, node: String, entry: String, confirm: bool) -> Result<(), StoreError> {
        let (done, rx) = if confirm {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.queued.fetch_add(1, Ordering::AcqRel);
        if self
            .tx
            .send(Item::Signal { node, entry, done })
            .await
            .is_err()
        {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(StoreError::Unavailable("the signal relay stopped".into()));
        }
        let Some(rx) = rx else { return Ok(()) };
        match rx.await {
            Ok(true) => Ok(()),
            _ => Err(StoreError::Unavailable(
                "the store did not take the signal".into(),
            )),
        }
    }

    /// Waits until every signal queued before now is published.
    pub async fn barrier(&self) {
        if self.queued.load(Ordering::Acquire) == 0 {
            return;
        }
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Item::Barrier(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(
    store: Arc<Store>,
    mut rx: mpsc::Receiver<Item>,
    queued: Arc<AtomicU64>,
    on_published: impl Fn(u64),
) {
    let mut items = Vec::new();
    while rx.recv_many(&mut items, BATCH).await > 0 {
        // Per node, in queue order; each batch sized once (a batch can be
        // a megabyte: growing it by doubling copied it over and over).
        let mut sizes: HashMap<&str, usize> = HashMap::new();
        for item in &items {
            if let Item::Signal { node, entry, .. } = item {
                *sizes.entry(node.as_str()).or_insert(1) += entry.len();
            }
        }
        let mut batches: HashMap<&str, String> = HashMap::new();
        let mut order: Vec<&str> = Vec::new();
        let mut signals = 0u64;
        for item in &items {
            if let Item::Signal { node, entry, .. } = item {
                let b = batches.entry(node.as_str()).or_insert_with(|| {
                    order.push(node.as_str());
                    let mut b = String::with_capacity(sizes[node.as_str()]);
                    b.push('S');
                    b
                });
                b.push_str(entry);
                signals += 1;
            }
        }
        let ok = if order.is_empty() {
            true
        } else {
            let mut pipe = redis::pipe();
            for node in &order {
                pipe.cmd("PUBLISH")
                    .arg(format!("{PREFIX}ch:{node}"))
                    .arg(&batches[node])
                    .ignore();
            }
            match store.pipeline(&pipe).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!("{signals} signals lost: {e}");
                    false
                }
            }
        };
        drop(batches);
        if ok {
            on_published(signals);
        }
        queued.fetch_sub(signals, Ordering::AcqRel);
        for item in items.drain(..) {
            match item {
                Item::Signal {
                    done: Some(done), ..
                } => {
                    let _ = done.send(ok);
                }
                Item::Signal { .. } => {}
                Item::Barrier(done) => {
                    let _ = done.send(());
                }
            }
        }
    }
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
}
