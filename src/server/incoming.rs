//! What a WebSocket reader does with a frame, the same on every endpoint
//! (`/ws`, `/peerjs`, `/matchbox`): the message rate limit, then text to
//! handle, binary to refuse, or the end of the connection. Each endpoint
//! only decides how it words a refusal.

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use super::metrics::Metrics;
use super::ratelimit::{Limit, RateLimit};

/// A frame, classified.
pub(super) enum Incoming {
    Text(Utf8Bytes),
    Binary,
    /// Over the message rate; the frame's text when it was text (for its
    /// `rid`).
    RateLimited(Option<Utf8Bytes>),
    /// Ends the connection with this close frame.
    Close(CloseCode, &'static str),
    /// The client closed, or the socket failed.
    End,
    /// Ping or pong (tungstenite answers pings).
    Control,
}

/// Classifies a frame read from the socket (`who` names the connection in
/// the logs), counting rate-limit refusals.
pub(super) fn classify(
    frame: Option<Result<Message, tungstenite::Error>>,
    limiter: &mut RateLimit,
    metrics: &Metrics,
    who: &str,
) -> Incoming {
    if matches!(frame, Some(Ok(Message::Text(_) | Message::Binary(_)))) {
        match limiter.check() {
            Limit::Pass => {}
            Limit::Refuse => {
                metrics.rate_limited.increment(1);
                return Incoming::RateLimited(match frame {
                    Some(Ok(Message::Text(t))) => Some(t),
                    _ => None,
                });
            }
            Limit::Close => {
                metrics.rate_limited.increment(1);
                return Incoming::Close(CloseCode::Policy, "rate limit exceeded");
            }
        }
    }
    match frame {
        Some(Ok(Message::Text(text))) => Incoming::Text(text),
        Some(Ok(Message::Binary(_))) => Incoming::Binary,
        Some(Ok(Message::Close(_))) | None => Incoming::End,
        Some(Ok(_)) => Incoming::Control,
        Some(Err(tungstenite::Error::Capacity(e))) => {
            tracing::debug!(who, "frame too large: {e}");
            Incoming::Close(CloseCode::Size, "message too large")
        }
        Some(Err(e)) => {
            tracing::debug!(who, "read error: {e}");
            Incoming::End
        }
    }
}
