//! The writer task of a connection: drains its bounded queue into the
//! socket, batching what is already queued into one flush, and ends the
//! socket after a close frame (waiting a moment for the peer's answer).

use std::time::Duration;

use futures_util::SinkExt;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::session::Ws;

/// How long the server waits for the client's answer to a close frame.
pub(super) const CLOSE_LINGER: Duration = Duration::from_millis(1000);

pub(super) async fn write_loop(
    mut sink: futures_util::stream::SplitSink<Ws, Message>,
    mut rx: mpsc::Receiver<Message>,
    kill: CancellationToken,
) {
    loop {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = kill.cancelled() => None,
        };
        let Some(msg) = msg else { break };
        let mut closing = matches!(msg, Message::Close(_));
        if sink.feed(msg).await.is_err() {
            return;
        }
        // Batch what is already queued into one flush.
        while !closing {
            let Ok(m) = rx.try_recv() else { break };
            closing = matches!(m, Message::Close(_));
            if sink.feed(m).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
        if closing {
            // Give the peer a moment to answer the close, then end the
            // session whatever it does.
            let _ = tokio::time::timeout(CLOSE_LINGER, kill.cancelled()).await;
            kill.cancel();
            return;
        }
    }
    let _ = sink.close().await;
}
