//! What a WebSocket reader does with a frame, the same on every endpoint
//! (`/ws`, `/peerjs`, `/matchbox`): the message rate limit, then text to
//! handle, binary to refuse, or the end of the connection. Each endpoint
//! only decides how it words a refusal.

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use super::frames::Frame;
use super::ratelimit::{Limit, RateLimit};
use crate::metrics::Metrics;

/// A frame, classified; `S` is its text (owned from tungstenite, borrowed
/// from the socket's buffer on `/ws`).
pub(super) enum Incoming<S = Utf8Bytes> {
    Text(S),
    Binary,
    /// Over the message rate; the frame's text when it was text (for its
    /// `rid`).
    RateLimited(Option<S>),
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
        match limit(limiter, metrics) {
            Limit::Pass => {}
            Limit::Refuse => {
                return Incoming::RateLimited(match frame {
                    Some(Ok(Message::Text(t))) => Some(t),
                    _ => None,
                })
            }
            Limit::Close => return rate_close(),
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

/// The message rate limit for a text or binary frame, refusals counted.
fn limit(limiter: &mut RateLimit, metrics: &Metrics) -> Limit {
    let limited = limiter.check();
    if !matches!(limited, Limit::Pass) {
        metrics.rate_limited.increment(1);
    }
    limited
}

fn rate_close<S>() -> Incoming<S> {
    Incoming::Close(CloseCode::Policy, "rate limit exceeded")
}

/// Classifies a frame read by hand (`super::frames`): `text` is the text
/// of a [`Frame::Text`], checked for UTF-8 (only once the rate limit let
/// the frame pass, or to read the `rid` of a refused one).
pub(super) fn classify_frame<'a>(
    frame: Frame,
    text: impl FnOnce() -> Result<&'a str, std::str::Utf8Error>,
    limiter: &mut RateLimit,
    metrics: &Metrics,
) -> Incoming<&'a str> {
    let not_utf8 = || Incoming::Close(CloseCode::Invalid, "text frame is not UTF-8");
    match frame {
        Frame::Text => match (limit(limiter, metrics), text()) {
            (Limit::Pass, Ok(t)) => Incoming::Text(t),
            (Limit::Pass, Err(_)) => not_utf8(),
            (Limit::Refuse, t) => Incoming::RateLimited(t.ok()),
            (Limit::Close, _) => rate_close(),
        },
        Frame::Binary => match limit(limiter, metrics) {
            Limit::Pass => Incoming::Binary,
            Limit::Refuse => Incoming::RateLimited(None),
            Limit::Close => rate_close(),
        },
        Frame::Control => Incoming::Control,
        Frame::Close | Frame::End => Incoming::End,
        Frame::Fail(code, why) => Incoming::Close(code, why),
    }
}
