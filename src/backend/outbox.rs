//! The outgoing queue of one connection: many senders (the session, the
//! backend delivering events), one receiver (the writer task), bounded.
//!
//! Why not `tokio::sync::mpsc`: its channel allocates its first block of
//! 32 slots (about 2 KiB with tungstenite's `Message`) and its shared state
//! up front, for every connection, idle or not; that was a third of an idle
//! socket's memory. Here a queue is a `VecDeque` that holds nothing while
//! empty, and the writer takes everything queued in one lock: one wake-up
//! and one flush for a batch of frames. The writer waits with an
//! `AtomicWaker`, not a `Notify`: a session polls its queue once per frame
//! it reads, and a `Notify` waiter is put on and taken off a locked list
//! each time (4% of the relay's CPU in perf).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use tokio_tungstenite::tungstenite::Message;

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer; it registers before it looks at the queue, so no
    /// wake-up is lost between its look and its wait.
    ready: AtomicWaker,
    /// Something is queued: set and cleared under the lock, read without
    /// it, so that a writer with work in hand can look without locking.
    queued: AtomicBool,
    capacity: usize,
}

struct State {
    frames: VecDeque<Message>,
    senders: usize,
    receiver_alive: bool,
}

/// The sending side; cloned for every holder.
pub(crate) struct Outbox {
    shared: Arc<Shared>,
}

/// The writer's side.
pub(crate) struct Inbox {
    shared: Arc<Shared>,
}

/// A queue of at most `capacity` frames.
pub(crate) fn outbox(capacity: usize) -> (Outbox, Inbox) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            frames: VecDeque::new(),
            senders: 1,
            receiver_alive: true,
        }),
        ready: AtomicWaker::new(),
        queued: AtomicBool::new(false),
        capacity,
    });
    (
        Outbox {
            shared: shared.clone(),
        },
        Inbox { shared },
    )
}

impl Outbox {
    /// Queues a frame; gives it back when the queue is full or the writer
    /// is gone.
    pub fn try_send(&self, frame: Message) -> Result<(), Message> {
        let first = {
            let mut st = self.shared.state.lock();
            if !st.receiver_alive || st.frames.len() >= self.shared.capacity {
                return Err(frame);
            }
            st.frames.push_back(frame);
            self.shared.queued.store(true, Ordering::Release);
            st.frames.len() == 1
        };
        // Behind other frames, the writer is already woken: whoever queued
        // the first of them wakes it once out of the lock.
        if first {
            self.shared.ready.wake();
        }
        Ok(())
    }
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.shared.state.lock().senders += 1;
        Outbox {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let last = {
            let mut st = self.shared.state.lock();
            st.senders -= 1;
            st.senders == 0
        };
        if last {
            self.shared.ready.wake();
        }
    }
}

impl Inbox {
    /// Waits for frames and takes all that are queued, in order; `None`
    /// once every sender is gone and nothing is left.
    pub async fn recv_all(&mut self) -> Option<VecDeque<Message>> {
        std::future::poll_fn(|cx| self.poll_recv_all(cx)).await
    }

    /// `recv_all` as a poll.
    pub fn poll_recv_all(&mut self, cx: &mut Context<'_>) -> Poll<Option<VecDeque<Message>>> {
        self.shared.ready.register(cx.waker());
        let mut st = self.shared.state.lock();
        if !st.frames.is_empty() {
            return Poll::Ready(Some(self.take(&mut st)));
        }
        if st.senders == 0 {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

impl Inbox {
    /// What is queued, if anything, without waiting or registering to be
    /// woken: for a writer busy with other work, which registers (with
    /// `poll_recv_all`) only before it sleeps. Without a frame queued it
    /// reads one atomic flag and takes no lock.
    pub fn try_recv_all(&mut self) -> Option<VecDeque<Message>> {
        if !self.shared.queued.load(Ordering::Acquire) {
            return None;
        }
        let mut st = self.shared.state.lock();
        (!st.frames.is_empty()).then(|| self.take(&mut st))
    }

    fn take(&self, st: &mut State) -> VecDeque<Message> {
        self.shared.queued.store(false, Ordering::Release);
        // The queue starts over empty (no allocation until the next
        // frame): an idle connection keeps no buffer.
        std::mem::take(&mut st.frames)
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock();
        st.receiver_alive = false;
        st.frames.clear();
        self.shared.queued.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Message {
        Message::text(s.to_string())
    }

    #[tokio::test]
    async fn frames_come_out_in_order_in_batches_then_none() {
        let (tx, mut rx) = outbox(3);
        let tx2 = tx.clone();
        tx.try_send(text("a")).unwrap();
        tx2.try_send(text("b")).unwrap();
        tx.try_send(text("c")).unwrap();
        assert!(tx.try_send(text("d")).is_err(), "bounded");
        let batch: Vec<_> = rx.recv_all().await.unwrap().into_iter().collect();
        assert_eq!(batch, vec![text("a"), text("b"), text("c")]);
        tx.try_send(text("e")).unwrap();
        drop(tx);
        drop(tx2);
        assert_eq!(
            rx.recv_all().await.unwrap().len(),
            1,
            "what is queued still comes"
        );
        assert!(rx.recv_all().await.is_none(), "then the end");
    }

    #[tokio::test]
    async fn try_recv_all_takes_what_is_queued_without_waiting() {
        let (tx, mut rx) = outbox(8);
        assert!(rx.try_recv_all().is_none(), "nothing queued");
        tx.try_send(text("a")).unwrap();
        tx.try_send(text("b")).unwrap();
        let got: Vec<_> = rx.try_recv_all().unwrap().into_iter().collect();
        assert_eq!(got, vec![text("a"), text("b")]);
        assert!(rx.try_recv_all().is_none(), "taken");
        tx.try_send(text("c")).unwrap();
        // Taken by the waiting side, then neither side sees it again.
        assert_eq!(rx.recv_all().await.unwrap().len(), 1);
        assert!(rx.try_recv_all().is_none());
        tx.try_send(text("d")).unwrap();
        assert_eq!(rx.try_recv_all().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_waiting_writer_is_woken_and_a_gone_writer_refuses() {
        let (tx, mut rx) = outbox(8);
        let waiter = tokio::spawn(async move {
            let got = rx.recv_all().await.unwrap();
            (got.len(), rx)
        });
        tokio::task::yield_now().await;
        tx.try_send(text("x")).unwrap();
        let (n, rx) = waiter.await.unwrap();
        assert_eq!(n, 1);
        drop(rx);
        assert!(tx.try_send(text("y")).is_err());
    }
}
