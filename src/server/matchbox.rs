//! The matchbox_server protocol at `/matchbox/{room}`, so `matchbox_socket`
//! clients (Rust native and wasm, Bevy, GGRS) work against Rendezvous by
//! changing their room URL.
//!
//! A matchbox socket is a lobby player like any `/ws` client: registered
//! with the backend, seated by `find_match` in mode `matchbox:{room}` (rooms
//! of `next` players with `?next=N`, else one full mesh of up to
//! `--max-players`), its signals relayed by the lobby (same room only, the
//! same SDP and candidate checks, cluster routing for free). This module
//! only translates: lobby events become matchbox's `IdAssigned`, `NewPeer`,
//! `PeerLeft` and `Signal`, and matchbox's `Signal` requests become lobby
//! `offer`, `answer` and `ice_candidate`. matchbox's peer ids are UUIDs;
//! a lobby id `p_` + 22 base62 digits is the same 128-bit number, so the
//! two map onto each other without a table.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::outbox::{outbox, Inbox, Outbox};
use futures_util::StreamExt;
use hyper::upgrade::OnUpgrade;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use warp::http::{HeaderMap, StatusCode};
use warp::Filter;

use super::incoming::{classify, Incoming};
use super::ratelimit::{sdp_bucket, RateLimit};
use super::session::Ws;
use super::upgrade::{first_checks, refuse, switch, upgrade_parts, Admission};
use super::writer::{write_loop, CLOSE_LINGER};
use super::App;
use crate::backend::conns::close_frame;
use crate::backend::validate::validate_lobby;
use crate::backend::{Caller, Registration};
use crate::protocol::{
    CandidateField, ErrorCode, Event, FindMatch, IceCandidateInit, IceSignal, LobbyRequest,
    SdpSignal,
};

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Longest room name: the mode `matchbox:{room}` stays within 64.
const MAX_ROOM_CHARS: usize = 55;

/// The matchbox peer id (a UUID) of a lobby player id, when it has the
/// `p_` + 22 base62 digits form (anonymous players always do).
pub(crate) fn uuid_of(player_id: &str) -> Option<String> {
    let digits = player_id.strip_prefix("p_")?.as_bytes();
    if digits.len() != 22 {
        return None;
    }
    let mut n: u128 = 0;
    for d in digits.iter().rev() {
        let v = ALPHABET.iter().position(|a| a == d)? as u128;
        n = n.checked_mul(62)?.checked_add(v)?;
    }
    Some(uuid::Uuid::from_u128(n).to_string())
}

/// The lobby player id of a matchbox peer id.
pub(crate) fn player_of(peer: &str) -> Option<String> {
    let mut n = uuid::Uuid::parse_str(peer).ok()?.as_u128();
    let mut s = String::with_capacity(24);
    s.push_str("p_");
    for _ in 0..22 {
        s.push(ALPHABET[(n % 62) as usize] as char);
        n /= 62;
    }
    Some(s)
}

fn valid_room(room: &str) -> bool {
    !room.is_empty()
        && room.len() <= MAX_ROOM_CHARS
        && room
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

pub(super) fn route(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path!("matchbox" / String)
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::ext::optional::<OnUpgrade>())
        .and(super::listen::remote())
        .map(move |room: String, headers, query, upgrade, remote| {
            handshake(app.clone(), room, headers, query, upgrade, remote)
        })
}

fn handshake(
    app: Arc<App>,
    room: String,
    headers: HeaderMap,
    query: HashMap<String, String>,
    upgrade: Option<OnUpgrade>,
    remote: Option<SocketAddr>,
) -> warp::reply::Response {
    let refused = |status, code, message: &str| {
        app.metrics.handshakes_refused.increment(1);
        refuse(status, code, message)
    };
    if let Some(refusal) = first_checks(&app, &headers) {
        return refusal;
    }
    if !valid_room(&room) {
        return refused(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "the room must be 1 to 55 letters, digits, '-', '_' or '.'",
        );
    }
    let next = match query.get("next").map(|n| n.parse::<u64>()) {
        None => None,
        Some(Ok(n)) if (2..=app.cfg.max_players).contains(&n) => Some(n),
        Some(_) => {
            let msg = format!("next must be 2 to {}", app.cfg.max_players);
            return refused(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, &msg);
        }
    };
    // A token admits the socket as on /ws; the peer still gets a fresh id
    // (matchbox ids are UUIDs, a token's `sub` is not).
    if let Err(e) = app.auth.check(query.get("token").map(String::as_str)) {
        app.metrics.auth_failures.increment(1);
        return refused(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            &e.to_string(),
        );
    }
    let (accept, upgrade) = match upgrade_parts(&headers, upgrade, "GET /matchbox/{room}") {
        Ok(parts) => parts,
        Err(refusal) => return refusal,
    };
    let admission = match Admission::take(&app, remote.map(|r| r.ip())) {
        Ok(a) => a,
        Err((status, msg)) => return refused(status, ErrorCode::LimitReached, msg),
    };
    let task_app = app.clone();
    switch(&app, accept, upgrade, move |ws| {
        run(task_app, ws, room, next, admission)
    })
}

struct Conn {
    app: Arc<App>,
    me: String,
    tx: Outbox,
    sdp_bucket: governor::DefaultDirectRateLimiter,
}

async fn run(app: Arc<App>, ws: Ws, room: String, next: Option<u64>, admission: Admission) {
    let capacity = app.cfg.max_queued_messages as usize + 1;
    let (tx, rx) = outbox(capacity);
    let kill = CancellationToken::new();
    let (sink, mut stream) = ws.split();
    let writer = tokio::spawn(write_loop(sink, rx, kill.clone()));
    // The lobby writes its events (JSON of protocol v1) here; they are
    // translated before they reach the socket.
    let lobby_capacity = (app.cfg.max_queued_messages + app.cfg.resume_buffer + 1) as usize;
    let (lobby_tx, mut lobby_rx) = outbox(lobby_capacity);
    let conn_id = app.next_conn_id();
    let reg = Registration {
        conn_id,
        tx: lobby_tx,
        kill: kill.clone(),
        name: format!("matchbox:{room}").chars().take(32).collect(),
        resume: None,
        identity: None,
    };
    let who = match app.backend.register(&app, reg).await {
        Ok(who) => who,
        Err(e) => {
            tracing::warn!("matchbox registration failed: {}", e.message);
            let _ = tx.try_send(close_frame(CloseCode::Again, "try again shortly"));
            drop(tx);
            let _ = tokio::time::timeout(CLOSE_LINGER, writer).await;
            kill.cancel();
            return;
        }
    };
    app.metrics.matchbox.connections.increment(1.0);
    let conn = Conn {
        app: app.clone(),
        me: who.player_id.clone(),
        tx,
        sdp_bucket: sdp_bucket(),
    };
    let seated = match uuid_of(&who.player_id) {
        Some(id) => {
            conn.send(json!({ "IdAssigned": id }));
            conn.find_match(&room, next).await
        }
        None => false,
    };

    if seated {
        serve(&app, &conn, &mut stream, &mut lobby_rx, &kill).await;
    }
    drop(admission);
    app.metrics.matchbox.connections.decrement(1.0);
    // Leaving at once (rather than holding the seat for a reconnect that
    // matchbox clients never make) tells the others `PeerLeft` now.
    let caller = Caller {
        player_id: &who.player_id,
        roles: &[],
    };
    let _ = app
        .backend
        .request(&app, &caller, &Value::Null, LobbyRequest::LeaveRoom)
        .await;
    app.backend.unregister(&app, &who, conn_id).await;
    drop(conn);
    let _ = tokio::time::timeout(CLOSE_LINGER, writer).await;
    kill.cancel();
}

/// The socket's frames and the lobby's events until either side ends.
async fn serve(
    app: &Arc<App>,
    conn: &Conn,
    stream: &mut futures_util::stream::SplitStream<Ws>,
    lobby_rx: &mut Inbox,
    kill: &CancellationToken,
) {
    let heartbeat = Duration::from_millis(app.cfg.heartbeat_interval_ms);
    let timeout = Duration::from_millis(app.cfg.heartbeat_timeout_ms);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let mut last_heard = Instant::now();
    let mut limiter = RateLimit::new(app.cfg.rate_limit, app.cfg.rate_burst);
    loop {
        tokio::select! {
            frame = stream.next() => {
                last_heard = Instant::now();
                // matchbox has no error message: refusals are silent.
                match classify(frame, &mut limiter, &app.metrics, &conn.me) {
                    Incoming::Text(text) => conn.on_text(&text).await,
                    Incoming::Close(code, reason) => {
                        conn.close(code, reason);
                        break;
                    }
                    Incoming::End => break,
                    Incoming::RateLimited(_) | Incoming::Binary | Incoming::Control => {}
                }
            }
            batch = lobby_rx.recv_all() => {
                let Some(batch) = batch else { break };
                let mut stop = false;
                for event in batch {
                    match event {
                        Message::Text(text) if !conn.on_event(&text) => {
                            stop = true;
                            break;
                        }
                        close @ Message::Close(_) => {
                            let _ = conn.tx.try_send(close);
                            stop = true;
                            break;
                        }
                        _ => {}
                    }
                }
                if stop {
                    break;
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > timeout {
                    break;
                }
                let _ = conn.tx.try_send(Message::Ping(Default::default()));
            }
            _ = kill.cancelled() => break,
        }
    }
}

impl Conn {
    fn send(&self, event: Value) {
        if self
            .tx
            .try_send(Message::Text(event.to_string().into()))
            .is_ok()
        {
            self.app.metrics.messages_out.increment(1);
        }
    }

    fn close(&self, code: CloseCode, reason: &'static str) {
        let _ = self.tx.try_send(close_frame(code, reason));
    }

    /// Seats the peer: a room of `next`, or the path's full mesh.
    async fn find_match(&self, room: &str, next: Option<u64>) -> bool {
        let request = LobbyRequest::FindMatch(FindMatch {
            max_players: Some(next.unwrap_or(self.app.cfg.max_players)),
            mode: Some(format!("matchbox:{room}")),
            filters: None,
            backfill: false,
            max_spectators: None,
            start_when_ready: false,
        });
        if let Err(e) = validate_lobby(&self.app.cfg, &request) {
            tracing::debug!("matchbox find_match refused: {}", e.message);
            self.close(CloseCode::Policy, "cannot join the room");
            return false;
        }
        let caller = Caller {
            player_id: &self.me,
            roles: &[],
        };
        match self
            .app
            .backend
            .request(&self.app, &caller, &json!("matchbox"), request)
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!("matchbox find_match failed: {}", e.message);
                self.app.metrics.error(e.code);
                self.close(CloseCode::Again, "cannot join the room");
                false
            }
        }
    }

    /// A lobby event as matchbox events; false when the peer is out of
    /// its room (closed, kicked) and the socket should end.
    fn on_event(&self, text: &str) -> bool {
        let Ok(event) = serde_json::from_str::<Event>(text) else {
            return true; // `ok` and `error` replies, nothing for matchbox
        };
        let peer = |pid: &str| uuid_of(pid);
        let signal = |from: &str, data: Value| {
            if let Some(sender) = peer(from) {
                self.app.metrics.matchbox.signals_relayed.increment(1);
                self.send(json!({"Signal": {"sender": sender, "data": data}}));
            }
        };
        match event {
            Event::PlayerJoined { player, .. } if player.player_id != self.me => {
                if let Some(id) = peer(&player.player_id) {
                    self.send(json!({ "NewPeer": id }));
                }
            }
            Event::PlayerLeft { player_id, .. } if player_id == self.me => return false,
            Event::PlayerLeft { player_id, .. } => {
                if let Some(id) = peer(&player_id) {
                    self.send(json!({ "PeerLeft": id }));
                }
            }
            Event::Kicked { .. } => return false,
            Event::Offer { from, sdp } => signal(&from, json!({ "Offer": sdp })),
            Event::Answer { from, sdp } => signal(&from, json!({ "Answer": sdp })),
            Event::IceCandidate { from, candidate } => {
                let text = match candidate {
                    CandidateField::Init(c) => serde_json::to_string(&c).unwrap_or_default(),
                    CandidateField::Line(l) if l.is_empty() => "null".to_string(),
                    CandidateField::Line(l) => json!({ "candidate": l }).to_string(),
                };
                signal(&from, json!({ "IceCandidate": text }));
            }
            _ => {}
        }
        true
    }

    /// A client frame: `"KeepAlive"` or `{"Signal": {receiver, data}}`.
    /// Anything else is ignored, as matchbox_server does (its protocol has
    /// no error message); refused signals are dropped and counted.
    async fn on_text(&self, text: &str) {
        let app = &self.app;
        app.metrics.matchbox.messages_in.increment(1);
        if text.len() as u64 > app.cfg.max_message_bytes {
            return app.metrics.error(ErrorCode::PayloadTooLarge);
        }
        let Ok(msg) = serde_json::from_str::<Value>(text) else {
            return app.metrics.error(ErrorCode::BadRequest);
        };
        if msg == json!("KeepAlive") {
            return;
        }
        let Some(request) = signal_request(&msg) else {
            return app.metrics.error(ErrorCode::BadRequest);
        };
        if matches!(request, LobbyRequest::Offer(_) | LobbyRequest::Answer(_))
            && self.sdp_bucket.check().is_err()
        {
            app.metrics.rate_limited.increment(1);
            return;
        }
        if let Err(e) = validate_lobby(&app.cfg, &request) {
            tracing::debug!("matchbox signal refused: {}", e.message);
            return app.metrics.error(e.code);
        }
        let received = Instant::now();
        let caller = Caller {
            player_id: &self.me,
            roles: &[],
        };
        match app
            .backend
            .request(app, &caller, &Value::Null, request)
            .await
        {
            Ok(_) => app
                .metrics
                .relay_seconds
                .record(received.elapsed().as_secs_f64()),
            Err(e) => app.metrics.error(e.code),
        }
    }
}

/// matchbox's `Signal` request as the lobby's signal request.
fn signal_request(msg: &Value) -> Option<LobbyRequest> {
    let signal = msg.get("Signal")?;
    let to = player_of(signal.get("receiver")?.as_str()?)?;
    let data = signal.get("data")?.as_object()?;
    if data.len() != 1 {
        return None;
    }
    let (kind, value) = data.iter().next()?;
    let text = value.as_str()?.to_string();
    Some(match kind.as_str() {
        "Offer" => LobbyRequest::Offer(SdpSignal { to, sdp: text }),
        "Answer" => LobbyRequest::Answer(SdpSignal { to, sdp: text }),
        "IceCandidate" => {
            let candidate = if text == "null" {
                CandidateField::Line(String::new())
            } else {
                CandidateField::Init(serde_json::from_str::<IceCandidateInit>(&text).ok()?)
            };
            LobbyRequest::IceCandidate(IceSignal { to, candidate })
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lobby_ids_and_matchbox_ids_map_both_ways() {
        for _ in 0..100 {
            let pid = crate::ids::new_player_id();
            let uuid = uuid_of(&pid).expect("a lobby id has a uuid");
            assert_eq!(player_of(&uuid).as_deref(), Some(pid.as_str()));
        }
        assert_eq!(uuid_of("p_short"), None);
        assert_eq!(uuid_of("someone@example"), None);
        // 22 digits above 2^128 are no uuid.
        assert_eq!(uuid_of("p_zzzzzzzzzzzzzzzzzzzzzz"), None);
        assert_eq!(player_of("not-a-uuid"), None);
    }

    #[test]
    fn signals_translate_to_lobby_requests() {
        let to = uuid_of(&crate::ids::new_player_id()).unwrap();
        let offer = json!({"Signal": {"receiver": to, "data": {"Offer": "v=0"}}});
        assert!(matches!(
            signal_request(&offer),
            Some(LobbyRequest::Offer(_))
        ));
        let end = json!({"Signal": {"receiver": to, "data": {"IceCandidate": "null"}}});
        match signal_request(&end) {
            Some(LobbyRequest::IceCandidate(s)) => assert_eq!(s.candidate.line(), ""),
            other => panic!("{other:?}"),
        }
        let c = json!({"candidate": "candidate:1 1 udp 1 192.0.2.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": 0});
        let ice = json!({"Signal": {"receiver": to, "data": {"IceCandidate": c.to_string()}}});
        assert!(matches!(
            signal_request(&ice),
            Some(LobbyRequest::IceCandidate(_))
        ));
        for bad in [
            json!("Hello"),
            json!({"Signal": {"receiver": "x", "data": {"Offer": "v=0"}}}),
            json!({"Signal": {"receiver": to, "data": {"Nope": "v=0"}}}),
            json!({"Signal": {"receiver": to, "data": {"Offer": 5}}}),
            json!({"Signal": {"receiver": to, "data": {"IceCandidate": "{bad"}}}),
        ] {
            assert!(signal_request(&bad).is_none(), "{bad}");
        }
    }
}
