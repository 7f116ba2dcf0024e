//! One adapter per benchmarked server, so every scenario is written once:
//! how to open a session (URL, first message, own id), how to put two
//! sessions in touch (a room of two, a shared path, or ids known up front),
//! how a signal frame to a peer looks, and what the relayed frame looks like
//! on arrival. The wire formats follow each server's own source:
//!
//! - Rendezvous: `/ws`, `welcome` first, `ice_candidate`/`offer` with `to`,
//!   relayed with `from`; every request also gets an `ok` reply (discarded).
//! - matchbox_server 0.15: the URL path is the room, `?next=N` groups peers
//!   by N; `{"IdAssigned":id}` first, `{"NewPeer":id}` to the earlier peers,
//!   `{"Signal":{"receiver":id,"data":..}}` relayed as `{"Signal":{"sender":..}}`.
//! - PeerJS server 1.0: `/peerjs?key=peerjs&id=..&token=..`, `{"type":"OPEN"}`
//!   first, `{"type":"CANDIDATE","dst":id,"payload":..}` relayed with `src`.
//! - bare relay (this crate): the URL path is a pair key; the two sockets of
//!   a key get `{"type":"paired"}` and then each other's frames verbatim.
//!
//! Every payload carries the sender's timestamp as `@T<nanoseconds>`, so the
//! receiver finds it with a substring search and no JSON parse.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;

/// How long one handshake or one expected message may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// The real SDP offer relayed in `offer` mode (Chromium, one data channel).
const SDP_OFFER: &str = include_str!("../../tests/fixtures/sdp/chromium-offer-datachannel.sdp");

/// A valid RFC 8839 candidate line, as browsers trickle them.
const CANDIDATE_LINE: &str = "candidate:1 1 udp 2113937151 192.0.2.1 5000 typ host";

/// Where a frame's timestamp is written.
const TS_MARK: &str = "@T";
const TS_SLOT: &str = "@T#TS#";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Rendezvous,
    Matchbox,
    Peerjs,
    Bare,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Rendezvous, Kind::Matchbox, Kind::Peerjs, Kind::Bare];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Rendezvous => "rendezvous",
            Kind::Matchbox => "matchbox",
            Kind::Peerjs => "peerjs",
            Kind::Bare => "bare",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Rendezvous => "Rendezvous",
            Kind::Matchbox => "matchbox_server",
            Kind::Peerjs => "PeerJS server",
            Kind::Bare => "bare relay",
        }
    }

    /// Whether the server pairs players itself (`find_match`, `?next=N`).
    pub fn has_matchmaking(self) -> bool {
        matches!(self, Kind::Rendezvous | Kind::Matchbox)
    }
}

/// What a relayed signal carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Payload {
    /// An ICE candidate object (about 130 bytes).
    Candidate,
    /// A real Chromium SDP offer (about 1.4 KiB).
    Offer,
}

/// WebSocket settings of generator sockets: small buffers, since thousands
/// of them live in one process; busy sockets (relay) coalesce the frames of
/// one flush into one write with `write_buffer`.
pub fn client_config(read_buffer: usize, write_buffer: usize) -> WebSocketConfig {
    let mut c = WebSocketConfig::default();
    c.read_buffer_size = read_buffer;
    c.write_buffer_size = write_buffer;
    c.max_message_size = Some(1 << 20);
    c.max_frame_size = Some(1 << 20);
    c
}

/// The `i`-th source address of `n` (127.0.0.2 onwards): spreading client
/// sockets over several addresses lifts the ephemeral-port limit, which is
/// per (source, destination) pair.
pub fn src_ip(i: usize, n: usize) -> Ipv4Addr {
    let k = i % n.clamp(1, 250);
    Ipv4Addr::new(127, 0, 0, 2 + k as u8)
}

/// Opens a WebSocket from `src` to `ws://addr{path}`.
pub async fn connect(
    addr: SocketAddr,
    path: &str,
    src: Ipv4Addr,
    cfg: WebSocketConfig,
) -> anyhow::Result<Ws> {
    let sock = TcpSocket::new_v4()?;
    sock.set_reuseaddr(true)?;
    sock.bind(SocketAddr::new(src.into(), 0))
        .with_context(|| format!("binding {src}"))?;
    let stream = timeout(STEP_TIMEOUT, sock.connect(addr))
        .await
        .context("TCP connect timed out")?
        .with_context(|| format!("connecting {src} -> {addr}"))?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{addr}{path}");
    let (ws, _) = timeout(
        STEP_TIMEOUT,
        tokio_tungstenite::client_async_with_config(url, stream, Some(cfg)),
    )
    .await
    .context("WebSocket handshake timed out")?
    .context("WebSocket handshake")?;
    Ok(ws)
}

/// The next text frame, within `wait` (pings are answered by tungstenite).
pub async fn next_text(ws: &mut Ws, wait: Duration) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| anyhow!("no message within {wait:?}"))?;
        match msg {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_string()),
            Some(Ok(Message::Close(f))) => bail!("closed by the server: {f:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection ended"),
        }
    }
}

/// Closes politely: a close frame, then a short wait for the server's.
pub async fn close(ws: Ws) {
    close_after(ws, None).await
}

/// Sends `last` and a close frame in one write, then waits a little for
/// the server's close.
pub async fn close_after(mut ws: Ws, last: Option<Message>) {
    let _ = timeout(Duration::from_secs(1), async {
        if let Some(m) = last {
            if ws.feed(m).await.is_err() {
                return;
            }
        }
        if ws.close(None).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}

/// An open session and the id others address it by.
pub struct Session {
    pub ws: Ws,
    pub id: String,
}

/// Where a session goes: `room` is the matchbox room / bare pair key (and
/// the PeerJS id), `next` matchbox's group size.
pub struct Spot<'a> {
    pub room: &'a str,
    pub next: Option<usize>,
}

/// Opens a session and reads its first message.
pub async fn open(
    kind: Kind,
    addr: SocketAddr,
    spot: &Spot<'_>,
    src: Ipv4Addr,
    cfg: WebSocketConfig,
) -> anyhow::Result<Session> {
    match kind {
        Kind::Rendezvous => {
            let mut ws = connect(addr, "/ws?name=bench", src, cfg).await?;
            let text = next_text(&mut ws, STEP_TIMEOUT).await?;
            // Typed, reading only what is needed (no JSON tree): in churn
            // the generator's own CPU bounds the cycle rate.
            #[derive(serde::Deserialize)]
            struct Welcome {
                #[serde(rename = "type")]
                kind: String,
                player_id: Option<String>,
            }
            let first: Welcome = serde_json::from_str(&text)?;
            if first.kind != "welcome" {
                bail!("expected welcome, got {text}");
            }
            let id = first.player_id.context("no player_id")?;
            Ok(Session { id, ws })
        }
        Kind::Matchbox => {
            let path = match spot.next {
                Some(n) => format!("/{}?next={n}", spot.room),
                None => format!("/{}", spot.room),
            };
            let mut ws = connect(addr, &path, src, cfg).await?;
            let text = next_text(&mut ws, STEP_TIMEOUT).await?;
            #[derive(serde::Deserialize)]
            struct First {
                #[serde(rename = "IdAssigned")]
                id: Option<String>,
            }
            let first: First = serde_json::from_str(&text)?;
            let id = first
                .id
                .with_context(|| format!("expected IdAssigned, got {text}"))?;
            Ok(Session { id, ws })
        }
        Kind::Peerjs => {
            let id = spot.room;
            let path = format!("/peerjs?key=peerjs&id={id}&token=t{id}");
            let mut ws = connect(addr, &path, src, cfg).await?;
            let first = next_text(&mut ws, STEP_TIMEOUT).await?;
            if !first.contains("\"OPEN\"") {
                bail!("expected OPEN, got {first}");
            }
            Ok(Session {
                id: id.to_string(),
                ws,
            })
        }
        Kind::Bare => {
            let ws = connect(addr, &format!("/{}", spot.room), src, cfg).await?;
            Ok(Session {
                id: spot.room.to_string(),
                ws,
            })
        }
    }
}

/// Sends one request and waits for its `ok` (Rendezvous); events read on
/// the way are dropped.
pub async fn rdv_request(ws: &mut Ws, request: Value) -> anyhow::Result<Value> {
    let rid = request["rid"].clone();
    ws.send(Message::text(request.to_string())).await?;
    loop {
        let text = next_text(ws, STEP_TIMEOUT).await?;
        let v: Value = serde_json::from_str(&text)?;
        if v["rid"] == rid && (v["type"] == "ok" || v["type"] == "error") {
            if v["type"] == "error" {
                bail!("{}: {}", v["code"], v["message"]);
            }
            return Ok(v);
        }
    }
}

/// A Rendezvous player object, read for its id alone.
#[derive(serde::Deserialize)]
pub struct PlayerRef {
    pub player_id: String,
}

/// Sends `find_match` (rid 1) and waits for its answer; the ids of the
/// room's players. Typed, reading only those (no JSON tree of the room).
pub async fn rdv_find_match(ws: &mut Ws, request: &str) -> anyhow::Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Reply {
        #[serde(rename = "type")]
        kind: String,
        rid: Option<u64>,
        room: Option<Room>,
        code: Option<String>,
        message: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Room {
        players: Vec<PlayerRef>,
    }
    ws.send(Message::text(request)).await?;
    loop {
        let text = next_text(ws, STEP_TIMEOUT).await?;
        // Events (without a rid) are passed over unparsed.
        if !text.contains("\"rid\"") {
            continue;
        }
        let r: Reply = serde_json::from_str(&text)?;
        match (r.kind.as_str(), r.rid) {
            ("ok", Some(1)) => {
                let room = r.room.context("find_match answered without a room")?;
                return Ok(room.players.into_iter().map(|p| p.player_id).collect());
            }
            ("error", Some(1)) => bail!(
                "{}: {}",
                r.code.unwrap_or_default(),
                r.message.unwrap_or_default()
            ),
            _ => {}
        }
    }
}

/// Reads until a text frame for which `pick` gives a value.
pub async fn wait_for<T>(
    ws: &mut Ws,
    wait: Duration,
    mut pick: impl FnMut(&str) -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let text = next_text(ws, left).await?;
        if let Some(t) = pick(&text) {
            return Ok(t);
        }
    }
}

/// Opens two sessions that can signal each other: a room of two
/// (Rendezvous), a shared room path (matchbox), two known ids (PeerJS), or
/// a pair key (bare relay). Returns once both can send.
pub async fn open_pair(
    kind: Kind,
    addr: SocketAddr,
    key: &str,
    srcs: (Ipv4Addr, Ipv4Addr),
    cfg: WebSocketConfig,
) -> anyhow::Result<(Session, Session)> {
    open_pair_across(kind, (addr, addr), key, srcs, cfg).await
}

/// [`open_pair`] with the first session on `addrs.0` and the second on
/// `addrs.1`: two instances of one Rendezvous cluster (the room is created
/// on the first and joined by id on the second). Other servers share no
/// state between processes, so for them both addresses must be the same.
pub async fn open_pair_across(
    kind: Kind,
    addrs: (SocketAddr, SocketAddr),
    key: &str,
    srcs: (Ipv4Addr, Ipv4Addr),
    cfg: WebSocketConfig,
) -> anyhow::Result<(Session, Session)> {
    if kind != Kind::Rendezvous && addrs.0 != addrs.1 {
        bail!("{} has no cluster mode: one address only", kind.label());
    }
    let addr = addrs.0;
    match kind {
        Kind::Rendezvous => {
            let spot = Spot {
                room: key,
                next: None,
            };
            let mut a = open(kind, addrs.0, &spot, srcs.0, cfg).await?;
            let mut b = open(kind, addrs.1, &spot, srcs.1, cfg).await?;
            let created = rdv_request(
                &mut a.ws,
                serde_json::json!({"type": "create_room", "rid": 1, "max_players": 2, "mode": "bench"}),
            )
            .await?;
            let room_id = created["room"]["room_id"].clone();
            rdv_request(
                &mut b.ws,
                serde_json::json!({"type": "join_room", "rid": 1, "room_id": room_id}),
            )
            .await?;
            Ok((a, b))
        }
        Kind::Matchbox => {
            let spot = Spot {
                room: key,
                next: None,
            };
            let mut a = open(kind, addr, &spot, srcs.0, cfg).await?;
            let b = open(kind, addr, &spot, srcs.1, cfg).await?;
            // `NewPeer` is sent once `b` is registered and can be reached.
            let want = b.id.clone();
            wait_for(&mut a.ws, STEP_TIMEOUT, |t| {
                (t.contains("NewPeer") && t.contains(&want)).then_some(())
            })
            .await?;
            Ok((a, b))
        }
        Kind::Peerjs => {
            let (ka, kb) = (format!("{key}a"), format!("{key}b"));
            let a = open(
                kind,
                addr,
                &Spot {
                    room: &ka,
                    next: None,
                },
                srcs.0,
                cfg,
            )
            .await?;
            let b = open(
                kind,
                addr,
                &Spot {
                    room: &kb,
                    next: None,
                },
                srcs.1,
                cfg,
            )
            .await?;
            Ok((a, b))
        }
        Kind::Bare => {
            let spot = Spot {
                room: key,
                next: None,
            };
            let mut a = open(kind, addr, &spot, srcs.0, cfg).await?;
            let mut b = open(kind, addr, &spot, srcs.1, cfg).await?;
            for s in [&mut a, &mut b] {
                wait_for(&mut s.ws, STEP_TIMEOUT, |t| {
                    t.contains("paired").then_some(())
                })
                .await?;
            }
            Ok((a, b))
        }
    }
}

/// A signal frame to `to`, pre-split around its timestamp so that sending
/// costs two copies and an integer format.
#[derive(Clone)]
pub struct Frame {
    head: String,
    tail: String,
}

impl Frame {
    pub fn new(kind: Kind, payload: Payload, to: &str) -> Frame {
        let text = frame_text(kind, payload, to);
        let at = text.find(TS_SLOT).expect("frame has a timestamp slot") + TS_MARK.len();
        Frame {
            head: text[..at].to_string(),
            tail: text[at + TS_SLOT.len() - TS_MARK.len()..].to_string(),
        }
    }

    /// The frame stamped with `ts` nanoseconds.
    pub fn stamped(&self, ts: u64) -> Message {
        let mut s = String::with_capacity(self.head.len() + self.tail.len() + 20);
        s.push_str(&self.head);
        s.push_str(&ts.to_string());
        s.push_str(&self.tail);
        Message::text(s)
    }

    pub fn len(&self) -> usize {
        self.head.len() + self.tail.len() + 12
    }

    /// The text before and after the timestamp.
    pub fn parts(&self) -> (&str, &str) {
        (&self.head, &self.tail)
    }
}

fn frame_text(kind: Kind, payload: Payload, to: &str) -> String {
    use serde_json::json;
    let candidate = json!({
        "candidate": CANDIDATE_LINE,
        "sdpMid": "0",
        "sdpMLineIndex": 0,
        "usernameFragment": TS_SLOT,
    });
    let sdp = SDP_OFFER.replacen("\r\ns=-\r\n", &format!("\r\ns={TS_SLOT}\r\n"), 1);
    let data = match payload {
        Payload::Candidate => candidate.clone(),
        Payload::Offer => json!({"type": "offer", "sdp": sdp}),
    };
    let v = match (kind, payload) {
        (Kind::Rendezvous, Payload::Candidate) => {
            json!({"type": "ice_candidate", "to": to, "candidate": candidate})
        }
        (Kind::Rendezvous, Payload::Offer) => json!({"type": "offer", "to": to, "sdp": sdp}),
        (Kind::Matchbox, _) => json!({"Signal": {"receiver": to, "data": data}}),
        (Kind::Peerjs, Payload::Candidate) => {
            json!({"type": "CANDIDATE", "dst": to, "payload": data})
        }
        (Kind::Peerjs, Payload::Offer) => json!({"type": "OFFER", "dst": to, "payload": data}),
        (Kind::Bare, Payload::Candidate) => json!({"type": "ice_candidate", "candidate": data}),
        (Kind::Bare, Payload::Offer) => json!({"type": "offer", "sdp": sdp}),
    };
    v.to_string()
}

/// The timestamp of a relayed signal, if `text` is one.
pub fn timestamp_of(text: &str) -> Option<u64> {
    let at = text.find(TS_MARK)? + TS_MARK.len();
    let digits = text[at..].bytes().take_while(u8::is_ascii_digit).count();
    text[at..at + digits].parse().ok()
}

/// Whether a frame that is not a signal reports an error to the sender.
pub fn is_error(kind: Kind, text: &str) -> bool {
    match kind {
        Kind::Rendezvous => text.contains("\"type\":\"error\""),
        Kind::Peerjs => text.contains("\"type\":\"ERROR\"") || text.contains("\"EXPIRE\""),
        Kind::Matchbox | Kind::Bare => false,
    }
}

/// The sender of a relayed signal (matchbox only: the second peer of a
/// group learns its peer from the first signal).
pub fn matchbox_sender(text: &str) -> Option<String> {
    let v: Value = serde_json::from_str(text).ok()?;
    v["Signal"]["sender"].as_str().map(str::to_string)
}

/// The id in a matchbox `{"NewPeer": id}` or `{"PeerLeft": id}` event.
pub fn matchbox_event(text: &str, event: &str) -> Option<String> {
    if !text.contains(event) {
        return None;
    }
    let v: Value = serde_json::from_str(text).ok()?;
    v[event].as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_timestamps() {
        for kind in Kind::ALL {
            for payload in [Payload::Candidate, Payload::Offer] {
                let f = Frame::new(kind, payload, "peer1");
                let Message::Text(t) = f.stamped(1234567) else {
                    panic!("text frame expected")
                };
                let v: Value = serde_json::from_str(&t).expect("valid JSON");
                assert_eq!(timestamp_of(&t), Some(1234567), "{kind:?} {payload:?}: {v}");
                assert!(!t.contains("#TS#"));
            }
        }
    }

    #[test]
    fn offer_frame_keeps_crlf_and_stamps_the_session_name() {
        let f = Frame::new(Kind::Rendezvous, Payload::Offer, "p");
        let Message::Text(t) = f.stamped(42) else {
            panic!()
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        let sdp = v["sdp"].as_str().unwrap();
        assert!(sdp.contains("\r\ns=@T42\r\n"), "{sdp}");
    }

    #[test]
    fn source_addresses_stay_in_loopback() {
        for i in 0..1000 {
            let ip = src_ip(i, 300);
            assert!(ip.is_loopback() && ip != Ipv4Addr::new(127, 0, 0, 1));
        }
    }
}
