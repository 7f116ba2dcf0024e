//! A WebSocket session: the reader loop of one connection, its requests
//! (checked once, then answered here when they need no lobby state, or
//! handed to the backend), and the shutdown of every session.
//!
//! Each connection is one task: it reads frames, answers them, and writes
//! its bounded queue into the socket whenever something is queued (a whole
//! batch per write, encoded by `super::socket`). Replies and events go
//! through the same queue, so a client sees them in the order the state
//! changed. One task rather than a reader and a writer: an idle socket
//! costs one task, no split of the stream and no write buffer.

use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::frames::{Conn, Frame};
use super::incoming::{classify_frame, Incoming};
use super::ratelimit::{rid_of, sdp_bucket, send_bucket, RateLimit, SDP_PER_SECOND};
use super::socket::Socket;
use super::upgrade::Admission;
use super::writer::CLOSE_LINGER;
use super::App;
use crate::backend::conns::{close_frame, queue};
use crate::backend::outbox::{outbox, Inbox, Outbox};
use crate::backend::validate::{validate, validate_signal};
use crate::backend::{Caller, Registered, Registration, Reply};
use crate::protocol::{
    self, decode_request, error_reply, ok_reply, ErrorCode, Event, ProtoError, Request, Routed,
    SessionRequest,
};
use crate::relay::{self, SignalKind};

/// A drop-in endpoint's WebSocket (tungstenite's framing).
pub(super) type Ws = WebSocketStream<Socket<TokioIo<hyper::upgrade::Upgraded>>>;

/// A `/ws` session's WebSocket (its frames read by hand: `super::frames`).
type Wsc = Conn<super::listen::Stream>;

/// What a session knows of itself.
struct Session {
    app: Arc<App>,
    who: Registered,
    conn_id: u64,
    tx: Outbox,
    kill: CancellationToken,
    /// JWT roles, for `join_room`'s access lists.
    roles: Vec<String>,
    sdp_bucket: governor::DefaultDirectRateLimiter,
    /// `send` requests' bucket (1.2), made on the first `send` (boxed: an
    /// idle session should not carry it).
    send_bucket: std::sync::OnceLock<Box<governor::DefaultDirectRateLimiter>>,
    /// The player id as JSON text, stamped as `from` on relayed signals.
    from_json: String,
}

/// What the handshake hands to a new session.
pub(super) struct Start {
    pub app: Arc<App>,
    pub upgrade: Handover,
    pub name: String,
    pub resume: Option<String>,
    pub identity: Option<crate::auth::Identity>,
    pub admission: Admission,
}

/// How a session gets its connection.
pub(super) enum Handover {
    /// From hyper, once it has answered the request (TLS, or a request the
    /// accept loop left to hyper: see `super::listen`).
    Hyper(hyper::upgrade::OnUpgrade),
    /// Straight from the accept loop, which read the request head itself:
    /// the stream, what the client sent past the head, and the
    /// `101 Switching Protocols` to send with the first frames.
    Taken {
        tcp: tokio::net::TcpStream,
        read: Vec<u8>,
        answer: Vec<u8>,
    },
}

/// A registered session, with its socket and queue.
struct Live {
    session: Session,
    ws: Wsc,
    inbox: Inbox,
    admission: Admission,
}

/// How the session's loop ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    /// The peer closed, went away, or broke the protocol (a close frame
    /// may be queued for it).
    Stopped,
    /// The server sent a close frame (replaced, kicked, shutting down...).
    CloseSent,
    /// Killed (a slow client), or the socket failed: nothing more is sent.
    Cut,
}

/// The task of one connection, from the upgrade to the end. It takes one
/// box and boxes its start and its end: a task's allocation is the size of
/// its largest state, and the states an idle socket is in (the reader
/// loop) should not pay for the arguments, the registration or the
/// shutdown.
pub(super) async fn run(start: Box<Start>) {
    let Some(mut live) = boxed_open(start).await else {
        return;
    };
    // Borrowed, not taken apart: rustc keeps a moved-from local's slot
    // beside the new ones, and that doubled an idle task's size.
    let end = drive(&live.session, &mut live.ws, &mut live.inbox).await;
    boxed_finish(live, end).await;
}

// The boxes are made in plain functions: a `Box::pin(fut)` written inside
// `run` would build `fut` in `run`'s own state first (rustc keeps such a
// temporary), which is what boxing is meant to avoid.
type Boxed<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

fn boxed_open(start: Box<Start>) -> Boxed<'static, Option<Live>> {
    Box::pin(open(start))
}

fn boxed_finish(live: Live, end: End) -> Boxed<'static, ()> {
    Box::pin(finish(live, end))
}

/// Upgrades and registers; `None` when the upgrade or the registration
/// fails (the client was told).
async fn open(start: Box<Start>) -> Option<Live> {
    let Start {
        app,
        upgrade,
        name,
        resume,
        identity,
        admission,
    } = *start;
    let (stream, read, unsent) = match upgrade {
        Handover::Taken { tcp, read, answer } => {
            (tokio_util::either::Either::Left(tcp), read, answer)
        }
        Handover::Hyper(upgrade) => match upgrade.await {
            Ok(upgraded) => super::listen::stream_of(upgraded),
            Err(e) => {
                tracing::debug!("upgrade failed: {e}");
                return None;
            }
        },
    };
    let mut ws = Conn::new(
        Socket::with_pending(stream, read, unsent)
            .with_write_limit(Duration::from_millis(app.cfg.heartbeat_timeout_ms)),
        app.ws_config.max_frame_size.unwrap_or(usize::MAX),
        app.ws_config.max_message_size.unwrap_or(usize::MAX),
    );
    // Room for a full queue of held events on resume on top of the normal
    // bound (the queue allocates only for what it holds).
    let capacity = (app.cfg.max_queued_messages + app.cfg.resume_buffer + 1) as usize;
    let (tx, mut inbox) = outbox(capacity);
    let kill = CancellationToken::new();
    let conn_id = app.next_conn_id();
    let reg = Registration {
        conn_id,
        tx: tx.clone(),
        kill: kill.clone(),
        name,
        resume,
        identity,
    };
    let roles = reg.roles();
    let who = match app.backend.register(&app, reg).await {
        Ok(who) => who,
        Err(e) => {
            tracing::warn!("registration failed: {}", e.message);
            let _ = tx.try_send(close_frame(
                CloseCode::Again,
                "the store is unavailable; try again shortly",
            ));
            drop(tx);
            let _ = tokio::time::timeout(CLOSE_LINGER, flush_and_close(&mut ws, &mut inbox)).await;
            kill.cancel();
            return None;
        }
    };
    let from_json = serde_json::to_string(&who.player_id).unwrap_or_default();
    let session = Session {
        app,
        from_json,
        who,
        conn_id,
        tx,
        kill,
        roles,
        sdp_bucket: sdp_bucket(),
        send_bucket: std::sync::OnceLock::new(),
    };
    Some(Live {
        session,
        ws,
        inbox,
        admission,
    })
}

/// Reads and answers frames, and writes what is queued, until the client
/// goes, the heartbeat times out, the server closes or the connection is
/// killed.
async fn drive(session: &Session, ws: &mut Wsc, inbox: &mut Inbox) -> End {
    let app = &session.app;
    let kill = &session.kill;
    let heartbeat = Duration::from_millis(app.cfg.heartbeat_interval_ms);
    let timeout = Duration::from_millis(app.cfg.heartbeat_timeout_ms);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let mut last_heard = Instant::now();
    let mut limiter = RateLimit::new(app.cfg.rate_limit, app.cfg.rate_burst);
    // Made once: a new one per frame would put a waiter on the token's
    // locked list and take it off again for every frame.
    let mut cancelled = std::pin::pin!(kill.cancelled());
    let mut turn = Turn::default();
    loop {
        turn.read_first = !turn.read_first;
        let event =
            std::future::poll_fn(|cx| turn.poll(cx, cancelled.as_mut(), &mut ping, ws, inbox))
                .await;
        if matches!(event, Woken::Queued(_)) {
            turn.ahead = 0;
        }
        // The text of a frame is borrowed from the socket's buffer until
        // the request is done.
        let (text, received) = match event {
            Woken::Killed => return End::Cut,
            Woken::Queued(batch) => {
                // The session holds a sender, so the queue cannot end here.
                let Some(batch) = batch else {
                    return End::Stopped;
                };
                match write(ws, batch, kill, timeout).await {
                    Written::Sent => continue,
                    Written::Closed => return End::CloseSent,
                    Written::Failed => return End::Cut,
                }
            }
            Woken::Frame(frame) => {
                // When the socket read the frame: the heartbeat's and the
                // relay latency's start (one clock read per socket read,
                // not per frame).
                let now = ws.read_at();
                last_heard = now;
                match on_frame(session, &mut limiter, frame, ws) {
                    Next::Text(text) => (text, now),
                    Next::Continue => continue,
                    Next::Stop => return End::Stopped,
                }
            }
            Woken::Tick => {
                if last_heard.elapsed() > timeout {
                    tracing::debug!(player_id = %session.who.player_id, "heartbeat timeout");
                    return End::Stopped;
                }
                let _ = session.tx.try_send(Message::Ping(Default::default()));
                continue;
            }
        };
        // A signal in memory mode is relayed without a wait; what must
        // wait (a request, a relay through the cluster) comes back boxed,
        // so that an idle session's task does not carry its state.
        let wait = session.on_text(text, received);
        if let Some(wait) = wait {
            wait.await;
        }
    }
}

/// What a session looks at next, and in which order.
#[derive(Default)]
struct Turn {
    /// Which of reading and writing goes first when both are ready; it
    /// alternates, so that a socket that always has something to send is
    /// still read, and one that always sends is still written to.
    read_first: bool,
    /// Wake-ups since the kill token and the heartbeat were last looked at.
    /// A busy session looks at them every `LOOK_EVERY` wake-ups and, like an
    /// idle one, before it sleeps (that is also when its queue's waker is
    /// registered): polling the token and registering the waker took 5% of
    /// the relay's CPU when done for every frame (perf).
    busy: u32,
    /// Frames taken from the read buffer ahead of queued output since the
    /// last write.
    ahead: u32,
}

impl Turn {
    /// The next thing the session does: a frame read, a batch of queued
    /// output, a heartbeat tick, or its end. Polled until ready once per
    /// turn of the session's loop, which flips `read_first` before it.
    fn poll(
        &mut self,
        cx: &mut std::task::Context<'_>,
        mut cancelled: std::pin::Pin<&mut tokio_util::sync::WaitForCancellationFuture<'_>>,
        ping: &mut tokio::time::Interval,
        ws: &mut Wsc,
        inbox: &mut Inbox,
    ) -> Poll<Woken> {
        let look = self.busy >= LOOK_EVERY;
        if look {
            self.busy = 0;
            if std::future::Future::poll(cancelled.as_mut(), cx).is_ready() {
                return Poll::Ready(Woken::Killed);
            }
            if ping.poll_tick(cx).is_ready() {
                return Poll::Ready(Woken::Tick);
            }
        } else {
            self.busy += 1;
        }
        // A few frames already read go before queued output: the replies
        // to a short burst of requests (a `leave_room` and the close behind
        // it) then leave in one write, not one each. Only a few: each
        // request's replies wait in the queue meanwhile, and a long burst
        // (hundreds of chats in one read) would fill it and cut the client
        // off as a slow reader.
        if self.ahead < READ_AHEAD {
            if let Some(frame) = ws.buffered_frame() {
                self.ahead += 1;
                return Poll::Ready(Woken::Frame(frame));
            }
        }
        if self.read_first {
            if let Poll::Ready(frame) = ws.poll_frame(cx) {
                return Poll::Ready(Woken::Frame(frame));
            }
        }
        if let Some(batch) = inbox.try_recv_all() {
            return Poll::Ready(Woken::Queued(Some(batch)));
        }
        if !self.read_first {
            if let Poll::Ready(frame) = ws.poll_frame(cx) {
                return Poll::Ready(Woken::Frame(frame));
            }
        }
        // Nothing at hand: everything that can wake the session registers
        // before it sleeps.
        if !look && std::future::Future::poll(cancelled.as_mut(), cx).is_ready() {
            return Poll::Ready(Woken::Killed);
        }
        if let Poll::Ready(batch) = inbox.poll_recv_all(cx) {
            return Poll::Ready(Woken::Queued(batch));
        }
        if !look && ping.poll_tick(cx).is_ready() {
            return Poll::Ready(Woken::Tick);
        }
        Poll::Pending
    }
}

/// How many frames already read may go ahead of queued output.
const READ_AHEAD: u32 = 4;

/// How many wake-ups a busy session goes without looking at its kill
/// token and heartbeat timer (it always looks before it sleeps).
const LOOK_EVERY: u32 = 32;

/// What woke a session.
enum Woken {
    Killed,
    Queued(Option<std::collections::VecDeque<Message>>),
    Frame(Frame),
    Tick,
}

/// What the reader does after a frame.
enum Next<'a> {
    /// A text to handle, borrowed from the socket's buffer.
    Text(&'a str),
    Continue,
    Stop,
}

/// A frame from the socket: rate-limited, refused, or a text to handle.
fn on_frame<'a>(session: &Session, limiter: &mut RateLimit, frame: Frame, ws: &'a Wsc) -> Next<'a> {
    let app = &session.app;
    match classify_frame(frame, || ws.text(), limiter, &app.metrics) {
        Incoming::Text(text) => Next::Text(text),
        Incoming::RateLimited(text) => {
            let rid = text.map_or(Value::Null, rid_of);
            session.reply_error(
                &rid,
                &ProtoError::new(
                    ErrorCode::RateLimited,
                    format!("more than {} messages per second", app.cfg.rate_limit),
                ),
            );
            Next::Continue
        }
        Incoming::Binary => {
            session.reply_error(
                &Value::Null,
                &ProtoError::bad_request(
                    "binary frames are not part of protocol v1; send JSON text",
                ),
            );
            Next::Continue
        }
        Incoming::Close(code, reason) => {
            session.close(code, reason);
            Next::Stop
        }
        Incoming::End => Next::Stop,
        Incoming::Control => Next::Continue,
    }
}

/// How a batch went.
enum Written {
    Sent,
    /// A close frame went out (what followed it in the batch did not).
    Closed,
    /// The socket failed, the connection was killed, or the peer took
    /// nothing for `limit`.
    Failed,
}

/// Writes a batch, up to a close frame. The socket takes it at once
/// unless the peer is slow to read; only then does the session wait (in a
/// box: the wait's state, a timer among it, should not sit in every idle
/// session task), until the peer took it all, the connection is killed
/// (its queue filled: a slow client), or `limit` passed.
async fn write(
    ws: &mut Wsc,
    batch: std::collections::VecDeque<Message>,
    kill: &CancellationToken,
    limit: Duration,
) -> Written {
    let closing = match ws.send(batch) {
        Ok(closing) => closing,
        Err(_) => return Written::Failed,
    };
    if !ws.socket().flushed() && !boxed_flush(ws, kill, limit).await {
        return Written::Failed;
    }
    if closing {
        Written::Closed
    } else {
        Written::Sent
    }
}

fn boxed_flush<'a>(
    ws: &'a mut Wsc,
    kill: &'a CancellationToken,
    limit: Duration,
) -> Boxed<'a, bool> {
    Box::pin(async move {
        let flush = std::future::poll_fn(|cx| {
            tokio::io::AsyncWrite::poll_flush(std::pin::Pin::new(ws.socket_mut()), cx)
                .map(|r| r.is_ok())
        });
        tokio::select! {
            ok = flush => ok,
            _ = kill.cancelled() => false,
            _ = tokio::time::sleep(limit) => false,
        }
    })
}

/// Unregisters, then flushes the last frames (the answer to a client's
/// close included) or waits for the peer's answer to the server's close.
async fn finish(live: Live, end: End) {
    let Live {
        session,
        mut ws,
        mut inbox,
        admission,
    } = live;
    let app = session.app.clone();
    let kill = session.kill.clone();
    // The slot is free as soon as the player counts as gone (the socket
    // only lingers to flush its close).
    drop(admission);
    app.backend
        .unregister(&app, &session.who, session.conn_id)
        .await;
    // Every sender is gone now (the table's went with `unregister`): what
    // is queued is all there will be. The timeout bounds a stuck peer.
    drop(session);
    let linger = async {
        match end {
            End::Cut => {}
            End::Stopped => flush_and_close(&mut ws, &mut inbox).await,
            End::CloseSent => await_close(&mut ws).await,
        }
    };
    let _ = tokio::time::timeout(CLOSE_LINGER, linger).await;
    kill.cancel();
}

/// Writes what is queued until the queue ends (every sender gone) or a
/// close frame went out, then waits for the peer's answer to it; when the
/// queue held no close frame, the connection's own close (the answer to
/// the peer's, or a plain one) goes out with the last frames, in the same
/// write, and the socket is closed.
async fn flush_and_close(ws: &mut Wsc, inbox: &mut Inbox) {
    let never = CancellationToken::new();
    let mut frames = std::collections::VecDeque::new();
    let mut queued_close = false;
    while let Some(batch) = inbox.recv_all().await {
        queued_close = batch.iter().any(|m| matches!(m, Message::Close(_)));
        frames.extend(batch);
        if queued_close {
            break;
        }
    }
    if !queued_close {
        frames.extend(ws.closing_frame());
    }
    match write(ws, frames, &never, CLOSE_LINGER).await {
        Written::Closed if queued_close => await_close(ws).await,
        _ => {}
    }
}

/// After the server's close frame: reads (and drops) frames until the
/// peer's close or the end of the stream.
async fn await_close(ws: &mut Wsc) {
    // Until the peer's close, the end, or a violation.
    while let Frame::Text | Frame::Binary | Frame::Control =
        std::future::poll_fn(|cx| ws.poll_frame(cx)).await
    {}
}

impl Session {
    /// Queues a close frame; the session's loop sends it and stops.
    fn close(&self, code: CloseCode, reason: &'static str) {
        let _ = self.tx.try_send(close_frame(code, reason));
    }

    fn reply(&self, text: String) {
        queue(&self.tx, &self.kill, text.into(), &self.app.metrics);
    }

    fn reply_error(&self, rid: &Value, err: &ProtoError) {
        self.app.metrics.error(err.code);
        self.reply(error_reply(rid, err));
    }

    fn on_text<'a>(&'a self, text: &'a str, received: Instant) -> Option<Boxed<'a, ()>> {
        let app = &self.app;
        if text.len() as u64 > app.cfg.max_message_bytes {
            let err = ProtoError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "message is {} bytes, the limit is {}",
                    text.len(),
                    app.cfg.max_message_bytes
                ),
            );
            self.reply_error(&Value::Null, &err);
            return None;
        }
        match relay::decode(text) {
            Some(signal) => self.on_signal(signal, received),
            None => Some(Box::pin(self.on_request(text, received))),
        }
    }

    /// Any request but a signal read by the fast path.
    async fn on_request(&self, text: &str, received: Instant) {
        let app = &self.app;
        let decoded = decode_request(text);
        let request = match decoded.request {
            Ok(r) => r,
            Err(e) => {
                app.metrics.message_in(crate::metrics::INVALID);
                return self.reply_error(&decoded.rid, &e);
            }
        };
        let rid = &decoded.rid;
        app.metrics.message_in(request.kind());
        let is_signal = matches!(
            request,
            Request::Offer(_) | Request::Answer(_) | Request::IceCandidate(_)
        );
        if matches!(request, Request::Offer(_) | Request::Answer(_))
            && self.sdp_bucket.check().is_err()
        {
            app.metrics.rate_limited.increment(1);
            let e = ProtoError::new(
                ErrorCode::RateLimited,
                format!("more than {SDP_PER_SECOND} offers and answers per second"),
            );
            return self.reply_error(rid, &e);
        }
        let is_send = matches!(request, Request::Send(_));
        if is_send && !self.send_allowed() {
            app.metrics.rate_limited.increment(1);
            let e = ProtoError::new(
                ErrorCode::RateLimited,
                format!("more than {} sends per second", app.cfg.send_rate),
            );
            return self.reply_error(rid, &e);
        }
        let routed = match validate(&app.cfg, request) {
            Ok(routed) => routed,
            Err(e) => return self.reply_error(rid, &e),
        };
        let result = match routed {
            Routed::Session(request) => self.answer(request, rid).await,
            Routed::Lobby(request) => {
                let caller = Caller {
                    player_id: &self.who.player_id,
                    roles: &self.roles,
                };
                app.backend.request(app, &caller, rid, request).await
            }
        };
        match result {
            Ok(reply) => {
                if is_signal {
                    app.metrics
                        .relay_seconds
                        .record(received.elapsed().as_secs_f64());
                }
                // A signal or `send` without `rid` is fire-and-forget: no
                // `ok`.
                let quiet = (is_signal || is_send) && rid.is_null();
                if let (Reply::Fields(fields), false) = (reply, quiet) {
                    self.reply(ok_reply(rid, fields));
                }
            }
            Err(e) => self.reply_error(rid, &e),
        }
    }

    /// The requests a session answers itself (with the backend's help for
    /// `send` and the subscriptions, never through its request path).
    async fn answer(&self, request: SessionRequest, rid: &Value) -> Result<Reply, ProtoError> {
        let app = &self.app;
        match request {
            SessionRequest::Send(req) => {
                let frame = relay::message_frame(&self.from_json, &req.data);
                let to = req.to.as_deref();
                let me = &self.who.player_id;
                app.backend
                    .send_message(me, to, frame, !rid.is_null())
                    .await
                    .map(|n| {
                        app.metrics.messages_relayed.increment(1);
                        Reply::Fields(json!({ "delivered": n }))
                    })
            }
            SessionRequest::Ping => Ok(Reply::Fields(
                json!({"server_time": protocol::ts(&chrono::Utc::now())}),
            )),
            SessionRequest::SubscribeStats(req) => self.subscribe_stats(req.interval_ms).await,
            SessionRequest::UnsubscribeStats => {
                let me = &self.who.player_id;
                app.backend.table(|t| t.subscribe_stats(me, None));
                Ok(Reply::Fields(json!({})))
            }
            SessionRequest::SubscribeRooms(req) => app
                .backend
                .subscribe_rooms(&self.who.player_id, req.mode)
                .await
                .map(|rooms| Reply::Fields(json!({ "rooms": rooms })))
                .map_err(ProtoError::from),
            SessionRequest::UnsubscribeRooms => {
                app.backend.unsubscribe_rooms(&self.who.player_id);
                Ok(Reply::Fields(json!({})))
            }
        }
    }

    /// A signal read by the fast path: checked on the borrowed text, its
    /// relayed frame built outside any lock, handed to the backend; the
    /// wait for the cluster's relay when there is one.
    fn on_signal<'a>(
        &'a self,
        signal: relay::Signal<'a>,
        received: Instant,
    ) -> Option<Boxed<'a, ()>> {
        let (frame, to, rid) = self.prepare_signal(signal)?;
        let app = &self.app;
        let me = &self.who.player_id;
        let frame = match app.backend.relay_now(app, me, &to, frame) {
            Ok(result) => {
                self.relayed(result, rid, received);
                return None;
            }
            Err(frame) => frame,
        };
        Some(Box::pin(async move {
            let result = app.backend.relay(app, me, &to, frame, rid.is_some()).await;
            self.relayed(result, rid, received);
        }))
    }

    /// What follows a signal's relay: the latency, and the `ok` or error.
    fn relayed(&self, result: Result<(), ProtoError>, rid: Option<Value>, received: Instant) {
        let app = &self.app;
        match result {
            Ok(()) => {
                app.metrics
                    .relay_seconds
                    .record(received.elapsed().as_secs_f64());
                // Without `rid`, fire-and-forget: no `ok`.
                if let Some(rid) = &rid {
                    self.reply(ok_reply(rid, json!({})));
                }
            }
            Err(e) => self.reply_error(rid.as_ref().unwrap_or(&Value::Null), &e),
        }
    }

    /// The checks of a signal and its relayed frame; `None` when it was
    /// refused (the error is queued).
    fn prepare_signal<'t>(
        &self,
        signal: relay::Signal<'t>,
    ) -> Option<(Utf8Bytes, std::borrow::Cow<'t, str>, Option<Value>)> {
        let app = &self.app;
        app.metrics.signal_in(signal.kind);
        let rid = signal.rid.as_ref().unwrap_or(&Value::Null);
        if signal.kind != SignalKind::IceCandidate && self.sdp_bucket.check().is_err() {
            app.metrics.rate_limited.increment(1);
            let e = ProtoError::new(
                ErrorCode::RateLimited,
                format!("more than {SDP_PER_SECOND} offers and answers per second"),
            );
            self.reply_error(rid, &e);
            return None;
        }
        if let Err(e) = validate_signal(&app.cfg, &signal) {
            self.reply_error(rid, &e);
            return None;
        }
        let frame = signal.event(&self.from_json);
        Some((frame, signal.to, signal.rid))
    }

    /// Takes a token from the connection's `send` bucket.
    fn send_allowed(&self) -> bool {
        let cfg = &self.app.cfg;
        self.send_bucket
            .get_or_init(|| Box::new(send_bucket(cfg.send_rate, cfg.send_burst)))
            .check()
            .is_ok()
    }

    async fn subscribe_stats(&self, interval_ms: Option<u64>) -> Result<Reply, ProtoError> {
        let stats = self.app.stats_async().await?;
        let interval = Duration::from_millis(interval_ms.unwrap_or(1000));
        let me = &self.who.player_id;
        self.app
            .backend
            .table(|t| t.subscribe_stats(me, Some(interval)));
        Ok(Reply::Fields(json!({ "stats": stats })))
    }
}

/// Shutdown: every client gets `server_shutdown`, then close 1001.
pub(super) async fn close_all(app: &App, timeout: Duration) {
    let conns = app.backend.table(|t| t.handles());
    let notice = Utf8Bytes::from(
        Event::ServerShutdown {
            reconnect_after_ms: 1000,
        }
        .to_json(),
    );
    for (tx, _) in &conns {
        // Behind whatever replies are already queued: in-flight requests
        // get their answer first.
        let _ = tx.try_send(Message::Text(notice.clone()));
        let _ = tx.try_send(close_frame(CloseCode::Away, "server shutting down"));
    }
    // Wait for the clients to answer the close, then cut whatever is left.
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && app.backend.connections_here() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (_, kill) in conns {
        kill.cancel();
    }
}

#[cfg(test)]
mod tests {
    /// An idle socket's memory is mostly its session task, whose size is
    /// that of `run`'s future: what its loop keeps across the wait for a
    /// frame. Requests, cluster relays, the start and the end are boxed so
    /// that it stays small; a change that puts a large state back inline
    /// (or takes `Live` apart in `run`: rustc keeps both copies) shows here.
    #[test]
    fn an_idle_session_task_stays_small() {
        fn future_size<A, F: std::future::Future>(_: fn(A) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        let run = future_size(super::run);
        let live = std::mem::size_of::<super::Live>();
        assert!(run <= 1200, "run's future is {run} bytes (Live is {live})");
    }
}
