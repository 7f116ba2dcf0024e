//! One server (in memory, or in cluster mode on its own redis-server) with
//! its logical players on raw WebSocket connections: applies a step, brings
//! the server to quiescence and records everything observable, normalized.
//!
//! Quiescence: after a step's own reply (and, for a connection that ended,
//! after `connections` in the stats shows it), an announcement is sent
//! through the admin API and every connected player reads until it. In
//! memory the announcement is queued under the lobby lock behind every
//! event queued before. In cluster mode the script of every finished change
//! published its notices before its caller got its answer, and the
//! announcement is published after that on a channel of the same pub/sub
//! connection, which Redis delivers in publish order and the node renders
//! one message at a time: so each player's queue holds all earlier events
//! before the announcement. No sleep is involved.

use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use rendezvous::config::Config;
use rendezvous::server::RunningServer;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::norm::Norm;
use super::steps::{CodeRef, PlayerRef, Req, RoomRef, Step};
use super::wire::{urlenc, Resolve};
use crate::support::dechunk;
use crate::support::hooks::Receiver;
use crate::support::RedisServer;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub const ADMIN: &str = "diff-admin-token";
const HOOK_SECRET: &str = "diff-hook-secret";
pub const GRACE_MS: u64 = 600;
pub const FINISHED_TTL_MS: u64 = 500;
/// How long one read may wait for a frame the server owes.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A logical player's connection and the tokens it was given.
#[derive(Default)]
struct Slot {
    ws: Option<Ws>,
    pid: Option<String>,
    tokens: Vec<String>,
    /// Identities this slot had (fresh sessions), for naming.
    identities: usize,
}

/// When a timer of the server may fire: not before `lo`, surely by `hi`.
#[derive(Debug, Clone)]
pub struct Deadline {
    pub key: String,
    pub lo: Instant,
    pub hi: Instant,
}

pub struct World {
    pub server: Option<RunningServer>,
    _redis: Option<RedisServer>,
    slots: Vec<Slot>,
    pub norm: Norm,
    /// Frames each slot received during the current step.
    got: Vec<Vec<Value>>,
    /// Timers this step started, and identities that came back.
    pub deadlines: Vec<Deadline>,
    pub resumed: Vec<String>,
    admin_status: Option<u16>,
    /// The webhook receiver of this server: both engines must report the
    /// same events, room by room.
    pub hooks: Receiver,
}

impl World {
    pub async fn start(cluster: bool, n: usize, extra: &[&str]) -> World {
        let web = concat!(env!("CARGO_MANIFEST_DIR"), "/web");
        let (grace, ttl) = (GRACE_MS.to_string(), FINISHED_TTL_MS.to_string());
        let hooks = Receiver::start(HOOK_SECRET).await;
        let hook_url = hooks.url();
        let mut argv = vec![
            "rendezvous",
            "--listen",
            "127.0.0.1:0",
            "--web-dir",
            web,
            "--max-connections-per-ip",
            "100000",
            "--rate-limit",
            "10000",
            "--rate-burst",
            "10000",
            "--reconnect-grace-ms",
            &grace,
            "--finished-room-ttl-ms",
            &ttl,
            "--admin-token",
            ADMIN,
            "--max-players",
            "8",
            "--shutdown-timeout-ms",
            "300",
            "--stun-urls",
            "stun:stun.example.org:3478",
            "--webhook-url",
            &hook_url,
            "--webhook-secret",
            HOOK_SECRET,
        ];
        if !extra.contains(&"--room-idle-timeout-ms") {
            argv.extend_from_slice(&["--room-idle-timeout-ms", "600000"]);
        }
        // Ticket rooms form only when full, and tickets never expire,
        // within a case: what forms never depends on timing.
        argv.extend_from_slice(&[
            "--ticket-fill-after-ms",
            "86400000",
            "--ticket-ttl-ms",
            "86400000",
        ]);
        argv.extend_from_slice(extra);
        let redis = cluster.then(RedisServer::start);
        let url = redis.as_ref().map(RedisServer::url);
        if let Some(url) = &url {
            argv.extend_from_slice(&["--redis-url", url]);
        }
        let cfg = Config::try_parse_from(argv).expect("config");
        let server = rendezvous::server::start(cfg).await.expect("server starts");
        World {
            server: Some(server),
            _redis: redis,
            slots: (0..n).map(|_| Slot::default()).collect(),
            norm: Norm::default(),
            got: vec![Vec::new(); n],
            deadlines: Vec::new(),
            resumed: Vec::new(),
            admin_status: None,
            hooks,
        }
    }

    /// Whether every webhook event made so far was delivered: nothing held
    /// by the server's outbox and, in cluster mode, nothing left in the
    /// Redis stream.
    async fn hooks_settled(&self) -> bool {
        let app = &self.server.as_ref().expect("running").app;
        if app.hooks.outbox.as_ref().is_some_and(|o| o.held() > 0) {
            return false;
        }
        let Some(redis) = &self._redis else {
            return true;
        };
        let Ok(client) = redis::Client::open(redis.url()) else {
            return false;
        };
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            return false;
        };
        let len: redis::RedisResult<u64> = redis::cmd("XLEN")
            .arg("rv:hooks")
            .query_async(&mut conn)
            .await;
        len == Ok(0)
    }

    /// The webhook events delivered, normalized (ids of events dropped),
    /// by room in delivery order, once the server has delivered them all
    /// and nothing more arrives for a moment.
    pub async fn hook_record(&mut self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = usize::MAX;
        loop {
            let settled = self.hooks_settled().await;
            let n = self.hooks.hits().len();
            if settled && n == last {
                break;
            }
            if Instant::now() > deadline {
                panic!("webhooks did not settle within 15 s ({n} received)");
            }
            last = if settled { n } else { usize::MAX };
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let mut rooms: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
        for hit in self.hooks.delivered() {
            let mut body = hit.json.clone();
            if let Some(m) = body.as_object_mut() {
                m.remove("id");
            }
            let body = self.norm.normalize(&body);
            let d = &body["data"];
            let room = d["room"]["room_id"]
                .as_str()
                .or_else(|| d["room_id"].as_str())
                .unwrap_or("")
                .to_string();
            rooms.entry(room).or_default().push(body);
        }
        json!(rooms)
    }

    pub async fn stop(mut self) {
        for s in &mut self.slots {
            s.ws = None;
        }
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }

    fn addr(&self) -> String {
        self.server.as_ref().expect("running").addr.to_string()
    }

    fn connected(&self) -> u64 {
        self.slots.iter().filter(|s| s.ws.is_some()).count() as u64
    }

    /// Applies one step, waits for quiescence, and returns the normalized
    /// record of everything observable. `seq` is the same on both servers.
    pub async fn apply(&mut self, step: &Step, seq: u64) -> Value {
        let n = self.slots.len();
        self.got = vec![Vec::new(); n];
        self.deadlines.clear();
        self.resumed.clear();
        self.admin_status = None;
        match step {
            Step::Connect(i) => {
                if self.slots[i % n].ws.is_none() {
                    self.connect(i % n, None).await;
                }
            }
            Step::Close(i) => self.close(i % n, true).await,
            Step::Drop(i) => self.close(i % n, false).await,
            Step::Resume(i) => {
                let tok = self.slots[i % n].tokens.last().cloned();
                self.connect(i % n, Some(tok.unwrap_or_else(|| "unknown-token".into())))
                    .await;
            }
            Step::ResumeStale(i) => {
                let s = &self.slots[i % n];
                if s.ws.is_none() {
                    let len = s.tokens.len();
                    let tok = if len >= 2 {
                        s.tokens[len - 2].clone()
                    } else {
                        "stale-token".into()
                    };
                    self.connect(i % n, Some(tok)).await;
                }
            }
            Step::WaitTimers | Step::Sleep(_) => {}
            Step::AdminCloseRoom(r) => {
                let path = format!("/api/rooms/{}", urlenc(&self.room(*r)));
                self.admin_status = Some(self.http("DELETE", &path, None).await.0);
            }
            Step::AdminDisconnect(p) => {
                let path = format!("/api/players/{}", urlenc(&self.player(*p)));
                self.admin_status = Some(self.http("DELETE", &path, None).await.0);
            }
            Step::Send(i, req) => self.send(i % n, req, seq).await,
        }
        self.quiesce(seq).await;
        self.record().await
    }

    /// No step: the record of the server at rest (after timers fired).
    pub async fn rest(&mut self, seq: u64) -> Value {
        self.got = vec![Vec::new(); self.slots.len()];
        self.admin_status = None;
        self.quiesce(seq).await;
        self.record().await
    }

    /// Reads the server side to rest: an announcement read by everyone.
    pub async fn quiesce(&mut self, seq: u64) {
        let text = format!("barrier-{seq}");
        let body = json!({ "text": text }).to_string();
        let (status, _) = self.http("POST", "/api/announce", Some(&body)).await;
        assert_eq!(status, 204, "announce for the barrier");
        for i in 0..self.slots.len() {
            if self.slots[i].ws.is_some() {
                self.read_until(i, |v| v["type"] == "announcement" && v["text"] == text)
                    .await;
            }
        }
    }

    /// A fresh connection (`resume: None`) or one with a token. A connected
    /// slot is taken over: the old socket's last frames are recorded first.
    async fn connect(&mut self, i: usize, resume: Option<String>) {
        let mut url = format!("ws://{}/ws?name=s{i}", self.addr());
        if let Some(t) = &resume {
            url.push_str(&format!("&resume={}", urlenc(t)));
        }
        let (ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("handshake");
        // The new socket's welcome first: the takeover happens when it
        // registers. Then the old socket's last frames (up to its close) are
        // recorded before the new one's: the order between two sockets is
        // not defined, this one is fixed.
        let old = self.slots[i].ws.replace(ws);
        let mark = self.got[i].len();
        let welcome = self.read_until(i, |_| true).await;
        let fresh = self.got[i].split_off(mark);
        if let Some(old) = old {
            let new = self.slots[i].ws.replace(old);
            self.got[i].push(json!({"socket": "previous connection"}));
            self.read_until(i, |_| false).await;
            self.slots[i].ws = new;
            self.got[i].push(json!({"socket": "new connection"}));
        }
        self.got[i].extend(fresh);
        let Some(w) = welcome.filter(|w| w["type"] == "welcome") else {
            return;
        };
        let pid = w["player_id"].as_str().unwrap_or_default().to_string();
        let s = &mut self.slots[i];
        if let Some(tok) = w["resume_token"].as_str() {
            s.tokens.push(tok.to_string());
        }
        if s.pid.as_deref() != Some(pid.as_str()) {
            let name = if s.identities == 0 {
                format!("P{i}")
            } else {
                format!("P{i}.{}", s.identities)
            };
            s.identities += 1;
            s.pid = Some(pid.clone());
            self.norm.add_player(&pid, name);
        }
        if w["resumed"] == true {
            if let Some(name) = self.norm.player_name(&pid) {
                self.resumed.push(name.to_string());
            }
        }
        self.wait_connections().await;
    }

    /// Ends a slot's connection: a close handshake, or a reset (RST).
    async fn close(&mut self, i: usize, clean: bool) {
        let Some(mut ws) = self.slots[i].ws.take() else {
            return;
        };
        let lo = Instant::now();
        if clean {
            // The server's answer to the close is not waited for: the
            // seat's grace runs from here (and the cluster server answers
            // only after a linger of a second, see the report).
            let _ = ws.send(Message::Close(None)).await;
            self.wait_connections().await;
        } else if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
        }
        drop(ws);
        self.wait_connections().await;
        if let Some(name) = self.slots[i]
            .pid
            .as_deref()
            .and_then(|p| self.norm.player_name(p))
        {
            self.deadlines
                .push(deadline(name.to_string(), lo, GRACE_MS));
        }
    }

    /// Waits until the server counts exactly the connections open here.
    async fn wait_connections(&mut self) {
        let want = self.connected();
        let until = Instant::now() + READ_TIMEOUT;
        loop {
            let (_, stats) = self.http("GET", "/api/stats", None).await;
            let got = serde_json::from_str::<Value>(&stats).unwrap_or(Value::Null)["connections"]
                .as_u64();
            if got == Some(want) || Instant::now() > until {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn send(&mut self, i: usize, req: &Req, seq: u64) {
        if self.slots[i].ws.is_none() {
            // A player sends only while connected: it resumes first.
            let tok = self.slots[i].tokens.last().cloned();
            self.connect(i, tok).await;
            self.got[i].push(json!({"then": "request"}));
        }
        let (msg, rid_less_signal) = super::wire::render(req, seq, self);
        let sent = Instant::now();
        let ws = self.slots[i].ws.as_mut().expect("connected");
        if ws.send(msg).await.is_err() {
            self.got[i].push(json!({"send": "failed"}));
            return;
        }
        if rid_less_signal {
            // No reply unless refused: a ping behind it on the same
            // connection is answered after it was handled.
            let ping = json!({"type": "ping", "rid": format!("sync-{seq}")}).to_string();
            let _ = ws.send(Message::Text(ping.into())).await;
            let sync = json!(format!("sync-{seq}"));
            self.read_until(i, |v| v["type"] == "ok" && v["rid"] == sync)
                .await;
            return;
        }
        let reply = self
            .read_until(i, |v| v["type"] == "ok" || v["type"] == "error")
            .await;
        if matches!(req, Req::Finish(_)) && reply.is_some_and(|r| r["type"] == "ok") {
            let room = self.slots[i]
                .pid
                .clone()
                .map(|_| format!("finished-by-P{i}-{seq}"));
            if let Some(key) = room {
                let mut d = deadline(key, sent, FINISHED_TTL_MS);
                d.hi = Instant::now() + Duration::from_millis(FINISHED_TTL_MS + 300);
                self.deadlines.push(d);
            }
        }
    }

    /// Reads slot `i` until a frame satisfies `stop` (returned), the socket
    /// ends (recorded, the slot is then disconnected) or nothing comes for
    /// [`READ_TIMEOUT`] (recorded). Every frame read is recorded, except a
    /// barrier announcement that ends the read.
    async fn read_until(&mut self, i: usize, stop: impl Fn(&Value) -> bool) -> Option<Value> {
        loop {
            let ws = self.slots[i].ws.as_mut()?;
            let frame = match tokio::time::timeout(READ_TIMEOUT, ws.next()).await {
                Err(_) => {
                    self.got[i].push(json!({"timeout": "nothing more came"}));
                    return None;
                }
                Ok(f) => f,
            };
            let v = match frame {
                Some(Ok(Message::Text(t))) => {
                    serde_json::from_str(t.as_str()).unwrap_or_else(|_| json!({"text": t.as_str()}))
                }
                Some(Ok(Message::Binary(_))) => json!({"binary": true}),
                Some(Ok(Message::Close(c))) => {
                    let (code, reason) = c
                        .map(|c| (u16::from(c.code), c.reason.to_string()))
                        .unwrap_or((0, String::new()));
                    self.got[i].push(json!({"close": code, "reason": reason}));
                    self.end_socket(i).await;
                    return None;
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => {
                    self.got[i].push(json!({"closed": "without a close frame"}));
                    self.slots[i].ws = None;
                    return None;
                }
            };
            let barrier = v["type"] == "announcement"
                && v["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("barrier-"));
            if stop(&v) {
                if !barrier {
                    self.got[i].push(v.clone());
                }
                return Some(v);
            }
            self.got[i].push(v);
        }
    }

    /// After a close frame: answer it (tungstenite does) and drain to EOF.
    async fn end_socket(&mut self, i: usize) {
        if let Some(mut ws) = self.slots[i].ws.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
        }
    }

    /// The step's normalized record: frames per slot, the admin call's
    /// status, the public listings, the stats, each player's presence.
    async fn record(&mut self) -> Value {
        let mut raw = serde_json::Map::new();
        if let Some(st) = self.admin_status {
            raw.insert("admin_http_status".into(), json!(st));
        }
        let frames: Vec<Value> = self.got.iter().map(|g| Value::Array(g.clone())).collect();
        raw.insert("frames".into(), Value::Array(frames));
        for status in ["waiting", "active"] {
            let (code, body) = self
                .http("GET", &format!("/api/rooms?status={status}"), None)
                .await;
            let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            raw.insert(
                format!("rooms_{status}"),
                json!({"http": code, "body": body}),
            );
        }
        let (_, stats) = self.http("GET", "/api/stats", None).await;
        raw.insert(
            "stats".into(),
            serde_json::from_str(&stats).unwrap_or(Value::Null),
        );
        let mut presence = Vec::new();
        for s in &self.slots {
            if let Some(pid) = &s.pid {
                let (code, body) = self.http("GET", &format!("/api/players/{pid}"), None).await;
                let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                presence.push(json!({"http": code, "body": body}));
            } else {
                presence.push(Value::Null);
            }
        }
        raw.insert("presence".into(), Value::Array(presence));
        self.norm.normalize(&Value::Object(raw))
    }

    /// A small HTTP/1.1 request: (status, body).
    pub async fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let host = self.addr();
        let mut s = TcpStream::connect(&host).await.expect("http connect");
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
             Authorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.expect("http write");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.expect("http read");
        let text = String::from_utf8_lossy(&buf).to_string();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(rest)
        } else {
            rest.to_string()
        };
        (status, body)
    }
}

fn deadline(key: String, lo: Instant, ms: u64) -> Deadline {
    let lo = lo + Duration::from_millis(ms);
    Deadline {
        key,
        lo,
        // The timer is set when the server notices, then the tick (every
        // 100 ms) fires it; generous for a loaded machine.
        hi: Instant::now() + Duration::from_millis(ms + 300),
    }
}

impl Resolve for World {
    fn player(&self, r: PlayerRef) -> String {
        match r {
            PlayerRef::Slot(i) => self.slots[i % self.slots.len()]
                .pid
                .clone()
                .unwrap_or_else(|| "p_never_connected".into()),
            PlayerRef::Bad(s) => s.to_string(),
        }
    }

    fn room(&self, r: RoomRef) -> String {
        match r {
            RoomRef::Known(k) if !self.norm.rooms.is_empty() => {
                self.norm.rooms[k % self.norm.rooms.len()].clone()
            }
            RoomRef::Known(_) => "11111111-1111-1111-1111-111111111111".into(),
            RoomRef::Bad(s) => s.to_string(),
        }
    }

    fn code(&self, r: CodeRef) -> String {
        match r {
            CodeRef::Known { index, lower } if !self.norm.codes.is_empty() => {
                let c = &self.norm.codes[index % self.norm.codes.len()];
                if lower {
                    c.to_lowercase()
                } else {
                    c.clone()
                }
            }
            CodeRef::Known { .. } => "YYYYYY".into(),
            CodeRef::Bad(s) => s.to_string(),
        }
    }
}
