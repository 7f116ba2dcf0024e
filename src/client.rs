//! A small async client of the protocol, over tokio-tungstenite: used by the
//! integration tests, the load generator and Rust games.
//!
//! A background task reads the socket: replies (`ok`/`error` with a `rid`
//! this client sent) complete the matching request future; everything else
//! is an event, handed out in order by [`Client::next_event`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::protocol::{ErrorCode, PartyInfo, RoomInfo, TicketInfo, Welcome};

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;
type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// Everything that can go wrong for a client call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an `error` reply.
    #[error("{code}: {message}")]
    Server { code: ErrorCode, message: String },
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("the connection is closed")]
    Closed,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("unexpected message: {0}")]
    Protocol(String),
    /// `ClientOptions::tls_root_pem` is no PEM certificate.
    #[error("TLS configuration: {0}")]
    Tls(String),
}

impl ClientError {
    /// The server's error code, if this is a server error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// How the server closed the socket, if it sent a close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    pub code: u16,
    pub reason: String,
}

/// Connection options.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Reconnect with the resume token when the connection drops (not after
    /// [`Client::close`], a `replaced` close, or a policy close).
    pub reconnect: bool,
    /// Backoff between reconnection attempts: doubles from `min_backoff` up
    /// to `max_backoff`, with jitter.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Attempts before giving up (the event stream then ends).
    pub max_attempts: u32,
    /// For `wss://` URLs: PEM certificates trusted besides the Mozilla
    /// roots (webpki-roots), for a self-signed or private-CA server.
    pub tls_root_pem: Option<Vec<u8>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            reconnect: true,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            max_attempts: 30,
            tls_root_pem: None,
        }
    }
}

type Stream = futures_util::stream::SplitStream<WebSocketStream<MaybeTlsStream<TcpStream>>>;

/// What the client and its reader task share.
struct Inner {
    sink: tokio::sync::Mutex<Option<Sink>>,
    waiters: Waiters,
    closed: Mutex<Option<CloseInfo>>,
    current: Mutex<Welcome>,
    /// Set by `close()`: no reconnection after that.
    user_closed: std::sync::atomic::AtomicBool,
    /// Cut the current socket without a close frame (`drop_connection`).
    cut: tokio::sync::Notify,
}

/// A connected client.
pub struct Client {
    inner: Arc<Inner>,
    events: tokio::sync::Mutex<mpsc::Receiver<Value>>,
    next_rid: AtomicU64,
    /// The `welcome` this connection started with (see [`Client::current_welcome`]
    /// after a reconnection).
    pub welcome: Welcome,
    /// How long requests wait for their reply.
    pub timeout: Duration,
}

/// The rustls configuration of `wss://` URLs: the ring provider (the one the
/// server uses), the Mozilla roots, and the options' extra roots.
fn tls_connector(opts: &ClientOptions) -> Result<tokio_tungstenite::Connector, ClientError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots =
        rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = &opts.tls_root_pem {
        let certs = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        if certs.is_empty() {
            return Err(ClientError::Tls(
                "no PEM certificate in tls_root_pem".into(),
            ));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| ClientError::Tls(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_tungstenite::Connector::Rustls(Arc::new(config)))
}

/// Opens a socket and reads its `welcome`; `tls` is used for `wss://` URLs.
async fn open(
    url: &str,
    tls: &Option<tokio_tungstenite::Connector>,
) -> Result<(Sink, Stream, Welcome, Value), ClientError> {
    let connector = if url.starts_with("wss:") {
        tls.clone()
    } else {
        None
    };
    let (ws, _resp) =
        tokio_tungstenite::connect_async_tls_with_config(url, None, false, connector).await?;
    let (sink, mut stream) = ws.split();
    let wait = Duration::from_secs(10);
    let first = tokio::time::timeout(wait, stream.next())
        .await
        .map_err(|_| ClientError::Timeout(wait))?;
    match first {
        Some(Ok(Message::Text(t))) => {
            let v: Value =
                serde_json::from_str(&t).map_err(|e| ClientError::Protocol(e.to_string()))?;
            if v["type"] != "welcome" {
                return Err(ClientError::Protocol(format!("expected welcome, got {v}")));
            }
            let w: Welcome = serde_json::from_value(v.clone())
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            Ok((sink, stream, w, v))
        }
        Some(Ok(other)) => Err(ClientError::Protocol(format!(
            "expected welcome, got {other:?}"
        ))),
        Some(Err(e)) => Err(e.into()),
        None => Err(ClientError::Closed),
    }
}

/// `url` with `resume=<token>` set (replacing any earlier one).
fn with_resume(url: &str, token: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut parts: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("resume="))
        .collect();
    let resume = format!("resume={token}");
    parts.push(&resume);
    format!("{base}?{}", parts.join("&"))
}

impl Inner {
    /// Reads one socket until it ends. Returns true when the client should
    /// try to reconnect.
    async fn pump(&self, mut stream: Stream, events: &mpsc::Sender<Value>) -> bool {
        loop {
            let frame = tokio::select! {
                f = stream.next() => f,
                _ = self.cut.notified() => return true,
            };
            match frame {
                Some(Ok(Message::Text(t))) => {
                    let Ok(v) = serde_json::from_str::<Value>(&t) else {
                        continue;
                    };
                    let is_reply = matches!(v["type"].as_str(), Some("ok" | "error"));
                    let waiter = match (is_reply, v["rid"].as_u64()) {
                        (true, Some(rid)) => self.waiters.lock().remove(&rid),
                        _ => None,
                    };
                    match waiter {
                        Some(tx) => {
                            let _ = tx.send(v);
                        }
                        None => {
                            if events.send(v).await.is_err() {
                                return false;
                            }
                        }
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let info = frame.map(|f| CloseInfo {
                        code: f.code.into(),
                        reason: f.reason.to_string(),
                    });
                    // Replaced by another connection, refused by policy, or a
                    // normal close: coming back would be wrong or useless.
                    let final_close = info
                        .as_ref()
                        .is_some_and(|c| matches!(c.code, 1000 | 1008 | 4001));
                    *self.closed.lock() = info;
                    return !final_close;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return true,
            }
        }
    }
}

impl Client {
    /// Connects to a `ws://host:port/ws?...` URL and waits for `welcome`,
    /// with the default options (reconnection on).
    pub async fn connect(url: &str) -> Result<Client, ClientError> {
        Self::connect_with(url, ClientOptions::default()).await
    }

    /// Connects with explicit options.
    pub async fn connect_with(url: &str, opts: ClientOptions) -> Result<Client, ClientError> {
        let tls = if url.starts_with("wss:") {
            Some(tls_connector(&opts)?)
        } else {
            None
        };
        let (sink, stream, welcome, _) = open(url, &tls).await?;
        let inner = Arc::new(Inner {
            sink: tokio::sync::Mutex::new(Some(sink)),
            waiters: Arc::default(),
            closed: Mutex::new(None),
            current: Mutex::new(welcome.clone()),
            user_closed: false.into(),
            cut: tokio::sync::Notify::new(),
        });
        let (ev_tx, ev_rx) = mpsc::channel(4096);
        let task_inner = inner.clone();
        let url = url.to_string();
        tokio::spawn(async move {
            let inner = task_inner;
            let mut stream = stream;
            loop {
                let again = inner.pump(stream, &ev_tx).await;
                *inner.sink.lock().await = None;
                // Requests in flight on the old socket fail with `Closed`.
                inner.waiters.lock().clear();
                if !again || !opts.reconnect || inner.user_closed.load(Ordering::Relaxed) {
                    return;
                }
                let mut attempt = 0u32;
                stream = loop {
                    attempt += 1;
                    if attempt > opts.max_attempts || inner.user_closed.load(Ordering::Relaxed) {
                        return;
                    }
                    let backoff = opts
                        .min_backoff
                        .saturating_mul(1 << (attempt - 1).min(16))
                        .min(opts.max_backoff);
                    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 50;
                    tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
                    let token = inner.current.lock().resume_token.clone();
                    match open(&with_resume(&url, &token), &tls).await {
                        Ok((sink, stream, welcome, raw)) => {
                            *inner.current.lock() = welcome;
                            *inner.sink.lock().await = Some(sink);
                            *inner.closed.lock() = None;
                            // The new welcome is an event: the game learns
                            // whether its seat was kept (`resumed`).
                            if ev_tx.send(raw).await.is_err() {
                                return;
                            }
                            break stream;
                        }
                        Err(_) => continue,
                    }
                };
            }
        });
        Ok(Client {
            inner,
            events: tokio::sync::Mutex::new(ev_rx),
            next_rid: AtomicU64::new(1),
            welcome,
            timeout: Duration::from_secs(10),
        })
    }

    /// The latest `welcome` (a reconnection brings a new one, with a fresh
    /// resume token).
    pub fn current_welcome(&self) -> Welcome {
        self.inner.current.lock().clone()
    }

    /// Cuts the socket without a close frame, as a network drop would. With
    /// reconnection on, the client then comes back with its resume token.
    pub fn drop_connection(&self) {
        self.inner.cut.notify_one();
    }

    pub fn player_id(&self) -> &str {
        &self.welcome.player_id
    }

    /// Sends one raw text frame (for tests of malformed input).
    pub async fn send_text(&self, text: impl Into<String>) -> Result<(), ClientError> {
        let text: String = text.into();
        self.send_frame(Message::Text(text.into())).await
    }

    /// Sends any frame (binary, ping, close...).
    pub async fn send_frame(&self, msg: Message) -> Result<(), ClientError> {
        let mut sink = self.inner.sink.lock().await;
        let sink = sink.as_mut().ok_or(ClientError::Closed)?;
        sink.send(msg).await?;
        Ok(())
    }

    /// Sends a request of `kind` with `fields` (a JSON object) and waits for
    /// its reply. `Ok` carries the reply object (with `type` and `rid`).
    /// Sends a message without `rid` and waits for nothing: fire-and-forget
    /// (PROTOCOL.md 1.1). A refused signal still comes back, as an `error`
    /// event with `rid: null`.
    pub async fn send(&self, kind: &str, fields: Value) -> Result<(), ClientError> {
        let mut obj = match fields {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        obj.insert("type".into(), Value::String(kind.into()));
        self.send_text(Value::Object(obj).to_string()).await
    }

    /// Sends a trickled ICE candidate (an `RTCIceCandidateInit` object, or
    /// `""` for the end of candidates) fire-and-forget, as browsers'
    /// `onicecandidate` fires them: no `ok` to wait for.
    pub async fn send_ice_candidate(&self, to: &str, candidate: Value) -> Result<(), ClientError> {
        self.send("ice_candidate", json!({ "to": to, "candidate": candidate }))
            .await
    }

    pub async fn request(&self, kind: &str, fields: Value) -> Result<Value, ClientError> {
        let rid = self.next_rid.fetch_add(1, Ordering::Relaxed);
        let mut obj = match fields {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        obj.insert("type".into(), Value::String(kind.into()));
        obj.insert("rid".into(), json!(rid));
        let (tx, rx) = oneshot::channel();
        self.inner.waiters.lock().insert(rid, tx);
        if let Err(e) = self.send_text(Value::Object(obj).to_string()).await {
            self.inner.waiters.lock().remove(&rid);
            return Err(e);
        }
        let reply = match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(v)) => v,
            Ok(Err(_)) => return Err(ClientError::Closed),
            Err(_) => {
                self.inner.waiters.lock().remove(&rid);
                return Err(ClientError::Timeout(self.timeout));
            }
        };
        if reply["type"] == "error" {
            let code = serde_json::from_value(reply["code"].clone())
                .map_err(|_| ClientError::Protocol(format!("unknown error code in {reply}")))?;
            return Err(ClientError::Server {
                code,
                message: reply["message"].as_str().unwrap_or_default().to_string(),
            });
        }
        Ok(reply)
    }

    fn room_of(reply: &Value) -> Result<RoomInfo, ClientError> {
        serde_json::from_value(reply["room"].clone())
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// `find_match`: the room and whether it was created.
    pub async fn find_match(
        &self,
        max_players: u64,
        mode: &str,
        filters: Value,
    ) -> Result<(RoomInfo, bool), ClientError> {
        let r = self
            .request(
                "find_match",
                json!({"max_players": max_players, "mode": mode, "filters": filters}),
            )
            .await?;
        Ok((Self::room_of(&r)?, r["created"].as_bool().unwrap_or(false)))
    }

    /// `create_room` with any of its fields.
    pub async fn create_room(&self, fields: Value) -> Result<RoomInfo, ClientError> {
        Self::room_of(&self.request("create_room", fields).await?)
    }

    pub async fn join_room(&self, room_id: &str) -> Result<RoomInfo, ClientError> {
        Self::room_of(
            &self
                .request("join_room", json!({"room_id": room_id}))
                .await?,
        )
    }

    pub async fn join_code(&self, code: &str) -> Result<RoomInfo, ClientError> {
        Self::room_of(&self.request("join_room", json!({"code": code})).await?)
    }

    /// `join_room` as a spectator (1.1): by room id.
    pub async fn spectate(&self, room_id: &str) -> Result<RoomInfo, ClientError> {
        Self::room_of(
            &self
                .request("join_room", json!({"room_id": room_id, "as": "spectator"}))
                .await?,
        )
    }

    /// `queue_match` (1.1) with any of its fields: the queued ticket. The
    /// room comes later, as a `game_start` event carrying its `ticket_id`.
    pub async fn queue_match(&self, fields: Value) -> Result<TicketInfo, ClientError> {
        let r = self.request("queue_match", fields).await?;
        serde_json::from_value(r["ticket"].clone())
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// `create_party` (1.1): a party led by this player.
    pub async fn create_party(&self, max_size: Option<u64>) -> Result<PartyInfo, ClientError> {
        let fields = match max_size {
            Some(n) => json!({ "max_size": n }),
            None => json!({}),
        };
        let r = self.request("create_party", fields).await?;
        serde_json::from_value(r["party"].clone()).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// `join_party` (1.1) by its code.
    pub async fn join_party(&self, code: &str) -> Result<PartyInfo, ClientError> {
        let r = self.request("join_party", json!({ "code": code })).await?;
        serde_json::from_value(r["party"].clone()).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// `leave_party` (1.1).
    pub async fn leave_party(&self) -> Result<(), ClientError> {
        self.request("leave_party", json!({})).await.map(|_| ())
    }

    /// `cancel_match` (1.1): the ticket leaves the queue.
    pub async fn cancel_match(&self) -> Result<(), ClientError> {
        self.request("cancel_match", json!({})).await.map(|_| ())
    }

    pub async fn leave_room(&self) -> Result<(), ClientError> {
        self.request("leave_room", json!({})).await.map(|_| ())
    }

    pub async fn start_game(&self) -> Result<RoomInfo, ClientError> {
        Self::room_of(&self.request("start_game", json!({})).await?)
    }

    /// `finish_game`, with the game's result (`Value::Null` for none).
    pub async fn finish_game(&self, result: Value) -> Result<RoomInfo, ClientError> {
        let fields = if result.is_null() {
            json!({})
        } else {
            json!({ "result": result })
        };
        Self::room_of(&self.request("finish_game", fields).await?)
    }

    /// `set_room_data` (host only): replaces the room's `data`.
    pub async fn set_room_data(&self, data: Value) -> Result<RoomInfo, ClientError> {
        Self::room_of(
            &self
                .request("set_room_data", json!({ "data": data }))
                .await?,
        )
    }

    /// `set_player_data`: replaces this player's `data`.
    pub async fn set_player_data(&self, data: Value) -> Result<RoomInfo, ClientError> {
        Self::room_of(
            &self
                .request("set_player_data", json!({ "data": data }))
                .await?,
        )
    }

    /// `kick` (host only): the player leaves and cannot rejoin the room.
    pub async fn kick(&self, player_id: &str) -> Result<(), ClientError> {
        self.request("kick", json!({ "player_id": player_id }))
            .await
            .map(|_| ())
    }

    /// `chat`: a line to every member, this player included.
    pub async fn chat(&self, text: &str) -> Result<(), ClientError> {
        self.request("chat", json!({ "text": text }))
            .await
            .map(|_| ())
    }

    /// `ping`: the server's time.
    pub async fn ping(&self) -> Result<String, ClientError> {
        let r = self.request("ping", json!({})).await?;
        Ok(r["server_time"].as_str().unwrap_or_default().to_string())
    }

    /// `list_rooms` with any of its fields (`status`, `mode`, `limit`).
    pub async fn list_rooms(&self, fields: Value) -> Result<Vec<RoomInfo>, ClientError> {
        let r = self.request("list_rooms", fields).await?;
        serde_json::from_value(r["rooms"].clone()).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// `subscribe_stats`: the stats now, then `stats` events every
    /// `interval_ms` (the server's default for `None`).
    pub async fn subscribe_stats(&self, interval_ms: Option<u64>) -> Result<Value, ClientError> {
        let fields = match interval_ms {
            Some(ms) => json!({ "interval_ms": ms }),
            None => json!({}),
        };
        Ok(self.request("subscribe_stats", fields).await?["stats"].take())
    }

    pub async fn unsubscribe_stats(&self) -> Result<(), ClientError> {
        self.request("unsubscribe_stats", json!({}))
            .await
            .map(|_| ())
    }

    /// `subscribe_rooms`: the public waiting rooms now (of `mode`, or all),
    /// then `room_listed`, `room_updated` and `room_delisted` events.
    pub async fn subscribe_rooms(&self, mode: Option<&str>) -> Result<Vec<RoomInfo>, ClientError> {
        let fields = match mode {
            Some(m) => json!({ "mode": m }),
            None => json!({}),
        };
        let r = self.request("subscribe_rooms", fields).await?;
        serde_json::from_value(r["rooms"].clone()).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    pub async fn unsubscribe_rooms(&self) -> Result<(), ClientError> {
        self.request("unsubscribe_rooms", json!({}))
            .await
            .map(|_| ())
    }

    /// `offer` with a `rid`: returns once the server relayed it.
    pub async fn offer(&self, to: &str, sdp: &str) -> Result<(), ClientError> {
        self.request("offer", json!({ "to": to, "sdp": sdp }))
            .await
            .map(|_| ())
    }

    /// `answer` with a `rid`: returns once the server relayed it.
    pub async fn answer(&self, to: &str, sdp: &str) -> Result<(), ClientError> {
        self.request("answer", json!({ "to": to, "sdp": sdp }))
            .await
            .map(|_| ())
    }

    /// `ice_candidate` with a `rid` (see [`Client::send_ice_candidate`] for
    /// the fire-and-forget form browsers use).
    pub async fn ice_candidate(&self, to: &str, candidate: Value) -> Result<(), ClientError> {
        self.request("ice_candidate", json!({ "to": to, "candidate": candidate }))
            .await
            .map(|_| ())
    }

    /// 1.2: sets this seated player's ready flag; the room as it is then
    /// (already `active` when this made a `start_when_ready` room start).
    pub async fn set_ready(&self, ready: bool) -> Result<RoomInfo, ClientError> {
        Self::room_of(&self.request("set_ready", json!({ "ready": ready })).await?)
    }

    /// 1.2: relays `data` to `to`, or (`None`) to every other member of the
    /// room, fire-and-forget: no `ok` to wait for; a refusal comes back as
    /// an `error` event with `rid: null`.
    pub async fn send_message(&self, data: Value, to: Option<&str>) -> Result<(), ClientError> {
        self.send("send", message_fields(data, to)).await
    }

    /// 1.2: [`Client::send_message`] with a reply: the number of
    /// recipients (`delivered`).
    pub async fn send_message_with_reply(
        &self,
        data: Value,
        to: Option<&str>,
    ) -> Result<u64, ClientError> {
        let reply = self.request("send", message_fields(data, to)).await?;
        reply["delivered"]
            .as_u64()
            .ok_or_else(|| ClientError::Protocol(format!("no delivered in {reply}")))
    }

    /// The next event, waiting at most `wait`.
    pub async fn next_event_within(&self, wait: Duration) -> Result<Value, ClientError> {
        let mut rx = self.events.lock().await;
        match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::Timeout(wait)),
        }
    }

    /// The next event, waiting at most the client's timeout.
    pub async fn next_event(&self) -> Result<Value, ClientError> {
        self.next_event_within(self.timeout).await
    }

    /// Skips events until one of type `kind` arrives.
    pub async fn wait_for(&self, kind: &str) -> Result<Value, ClientError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let ev = self.next_event_within(left).await?;
            if ev["type"] == kind {
                return Ok(ev);
            }
        }
    }

    /// The close frame the server sent, once the connection has ended.
    pub fn close_info(&self) -> Option<CloseInfo> {
        self.inner.closed.lock().clone()
    }

    /// Waits until the server ends the connection; returns its close frame.
    pub async fn wait_closed(&self, wait: Duration) -> Result<Option<CloseInfo>, ClientError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event_within(left).await {
                Ok(_) => continue,
                Err(ClientError::Closed) => return Ok(self.close_info()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Closes the connection politely (the seat is held, as for any drop).
    pub async fn close(&self) {
        self.inner.user_closed.store(true, Ordering::Relaxed);
        let mut sink = self.inner.sink.lock().await;
        if let Some(sink) = sink.as_mut() {
            let _ = sink.send(Message::Close(None)).await;
            let _ = sink.close().await;
        }
    }
}

/// The fields of a `send` (1.2).
fn message_fields(data: Value, to: Option<&str>) -> Value {
    match to {
        Some(to) => json!({ "to": to, "data": data }),
        None => json!({ "data": data }),
    }
}
