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

use crate::protocol::{ErrorCode, RoomInfo, Welcome};

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

/// A connected client.
pub struct Client {
    sink: tokio::sync::Mutex<Sink>,
    waiters: Waiters,
    events: tokio::sync::Mutex<mpsc::Receiver<Value>>,
    next_rid: AtomicU64,
    closed: Arc<Mutex<Option<CloseInfo>>>,
    /// The `welcome` this connection started with.
    pub welcome: Welcome,
    /// How long requests wait for their reply.
    pub timeout: Duration,
}

impl Client {
    /// Connects to a `ws://host:port/ws?...` URL and waits for `welcome`.
    pub async fn connect(url: &str) -> Result<Client, ClientError> {
        let (ws, _resp) = tokio_tungstenite::connect_async(url).await?;
        let (sink, mut stream) = ws.split();
        let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .map_err(|_| ClientError::Timeout(Duration::from_secs(10)))?;
        let welcome: Welcome = match first {
            Some(Ok(Message::Text(t))) => {
                let v: Value =
                    serde_json::from_str(&t).map_err(|e| ClientError::Protocol(e.to_string()))?;
                if v["type"] != "welcome" {
                    return Err(ClientError::Protocol(format!("expected welcome, got {v}")));
                }
                serde_json::from_value(v).map_err(|e| ClientError::Protocol(e.to_string()))?
            }
            Some(Ok(other)) => {
                return Err(ClientError::Protocol(format!(
                    "expected welcome, got {other:?}"
                )))
            }
            Some(Err(e)) => return Err(e.into()),
            None => return Err(ClientError::Closed),
        };
        let waiters: Waiters = Arc::default();
        let closed: Arc<Mutex<Option<CloseInfo>>> = Arc::default();
        let (ev_tx, ev_rx) = mpsc::channel(4096);
        let (w, c) = (waiters.clone(), closed.clone());
        tokio::spawn(async move {
            while let Some(frame) = stream.next().await {
                match frame {
                    Ok(Message::Text(t)) => {
                        let Ok(v) = serde_json::from_str::<Value>(&t) else {
                            continue;
                        };
                        let is_reply = matches!(v["type"].as_str(), Some("ok" | "error"));
                        let waiter = match (is_reply, v["rid"].as_u64()) {
                            (true, Some(rid)) => w.lock().remove(&rid),
                            _ => None,
                        };
                        match waiter {
                            Some(tx) => {
                                let _ = tx.send(v);
                            }
                            None => {
                                if ev_tx.send(v).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    Ok(Message::Close(frame)) => {
                        *c.lock() = frame.map(|f| CloseInfo {
                            code: f.code.into(),
                            reason: f.reason.to_string(),
                        });
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            // Dropping the waiters fails every request still in flight.
            w.lock().clear();
        });
        Ok(Client {
            sink: tokio::sync::Mutex::new(sink),
            waiters,
            events: tokio::sync::Mutex::new(ev_rx),
            next_rid: AtomicU64::new(1),
            closed,
            welcome,
            timeout: Duration::from_secs(10),
        })
    }

    pub fn player_id(&self) -> &str {
        &self.welcome.player_id
    }

    /// Sends one raw text frame (for tests of malformed input).
    pub async fn send_text(&self, text: impl Into<String>) -> Result<(), ClientError> {
        let text: String = text.into();
        self.sink
            .lock()
            .await
            .send(Message::Text(text.into()))
            .await?;
        Ok(())
    }

    /// Sends any frame (binary, ping, close...).
    pub async fn send_frame(&self, msg: Message) -> Result<(), ClientError> {
        self.sink.lock().await.send(msg).await?;
        Ok(())
    }

    /// Sends a request of `kind` with `fields` (a JSON object) and waits for
    /// its reply. `Ok` carries the reply object (with `type` and `rid`).
    pub async fn request(&self, kind: &str, fields: Value) -> Result<Value, ClientError> {
        let rid = self.next_rid.fetch_add(1, Ordering::Relaxed);
        let mut obj = match fields {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        obj.insert("type".into(), Value::String(kind.into()));
        obj.insert("rid".into(), json!(rid));
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().insert(rid, tx);
        if let Err(e) = self.send_text(Value::Object(obj).to_string()).await {
            self.waiters.lock().remove(&rid);
            return Err(e);
        }
        let reply = match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(v)) => v,
            Ok(Err(_)) => return Err(ClientError::Closed),
            Err(_) => {
                self.waiters.lock().remove(&rid);
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

    pub async fn leave_room(&self) -> Result<(), ClientError> {
        self.request("leave_room", json!({})).await.map(|_| ())
    }

    pub async fn start_game(&self) -> Result<RoomInfo, ClientError> {
        Self::room_of(&self.request("start_game", json!({})).await?)
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
        self.closed.lock().clone()
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
        let mut sink = self.sink.lock().await;
        let _ = sink.send(Message::Close(None)).await;
        let _ = sink.close().await;
    }
}
