//! The writer task of a drop-in endpoint's connection (PeerJS, matchbox):
//! drains its bounded queue into the socket, batching what is already
//! queued into one flush, and ends the socket after a close frame (waiting
//! a moment for the peer's answer). `/ws` sessions write from their own
//! task instead (`super::session`, `super::socket`).

use std::time::Duration;

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::session::Ws;
use crate::backend::outbox::Inbox;

/// How long the server waits for the client's answer to a close frame.
pub(super) const CLOSE_LINGER: Duration = Duration::from_millis(1000);

pub(super) async fn write_loop(
    mut sink: futures_util::stream::SplitSink<Ws, Message>,
    mut rx: Inbox,
    kill: CancellationToken,
) {
    loop {
        let batch = tokio::select! {
            b = rx.recv_all() => b,
            _ = kill.cancelled() => None,
        };
        let Some(batch) = batch else { break };
        // Everything queued goes out in one flush, up to a close frame. A
        // peer that reads nothing holds the flush up: the connection's end
        // (its reader gave up on it, or it was killed) ends the wait, so
        // the socket is not kept open by a writer nobody will wake.
        let closing = tokio::select! {
            sent = write_batch(&mut sink, batch) => match sent {
                Some(closing) => closing,
                None => return,
            },
            _ = kill.cancelled() => return,
        };
        if closing {
            // Give the peer a moment to answer the close, then end the
            // session whatever it does.
            let _ = tokio::time::timeout(CLOSE_LINGER, kill.cancelled()).await;
            kill.cancel();
            return;
        }
    }
    tokio::select! {
        _ = sink.close() => {}
        _ = kill.cancelled() => {}
    }
}

/// Feeds a batch to the sink up to a close frame and flushes it; whether a
/// close frame went, `None` when the socket failed.
async fn write_batch(
    sink: &mut futures_util::stream::SplitSink<Ws, Message>,
    batch: std::collections::VecDeque<Message>,
) -> Option<bool> {
    let mut closing = false;
    for m in batch {
        closing = matches!(m, Message::Close(_));
        sink.feed(m).await.ok()?;
        if closing {
            break;
        }
    }
    sink.flush().await.ok()?;
    Some(closing)
}
