//! The one validation of requests: everything that can be checked without
//! lobby state, in one order, before either engine runs. Both stores then
//! refuse the same bad request with the same code and message, and a
//! seated player's malformed `find_match` is a `bad_request` everywhere
//! (not `already_in_room` in one store and `bad_request` in the other).

use crate::config::Config;
use crate::lobby::{
    check_allowed, check_chat_text, check_data, check_filters, check_join_role, check_max_players,
    check_max_spectators, check_mode,
};
use crate::protocol::{
    self, ErrorCode, LobbyRequest, ProtoError, Request, RoomStatus, Routed, SessionRequest,
};
use crate::signaling;

/// Longest room id or join code looked up; longer ones name no room.
const MAX_ID_CHARS: usize = 64;
/// Longest player id a request may name.
const MAX_PLAYER_ID_CHARS: usize = 256;

/// Checks a request's fields and routes it: what comes back `Ok` goes to
/// the backend ([`Routed::Lobby`], where only the lobby's state can still
/// refuse it) or to the session ([`Routed::Session`]).
pub fn validate(cfg: &Config, request: Request) -> Result<Routed, ProtoError> {
    let routed = request.route();
    match &routed {
        Routed::Lobby(request) => validate_lobby(cfg, request)?,
        Routed::Session(request) => validate_session(cfg, request)?,
    }
    Ok(routed)
}

/// The checks of a request for the backend.
pub fn validate_lobby(cfg: &Config, request: &LobbyRequest) -> Result<(), ProtoError> {
    match request {
        LobbyRequest::FindMatch(req) => {
            check_max_players(cfg.max_players, req.max_players)?;
            check_mode(req.mode.as_deref())?;
            if let Some(filters) = &req.filters {
                check_filters(filters)?;
            }
            check_max_spectators(req.max_spectators).map(|_| ())
        }
        LobbyRequest::CreateParty(req) => {
            crate::lobby::party::check_party_size(req.max_size).map(|_| ())
        }
        LobbyRequest::JoinParty(req) => {
            if req.code.chars().count() > MAX_ID_CHARS {
                return Err(ProtoError::new(
                    ErrorCode::PartyNotFound,
                    format!("no party with code {:?}", req.code),
                ));
            }
            Ok(())
        }
        LobbyRequest::QueueMatch(req) => {
            crate::lobby::TicketSpec::from_request(req, cfg.max_players).map(|_| ())
        }
        LobbyRequest::CreateRoom(req) => {
            check_max_players(cfg.max_players, req.max_players)?;
            check_mode(req.mode.as_deref())?;
            if let Some(data) = &req.data {
                check_data(data, "data")?;
            }
            check_allowed(&req.allowed_players, &req.allowed_roles)?;
            check_max_spectators(req.max_spectators).map(|_| ())
        }
        LobbyRequest::JoinRoom(req) => check_join_room(req),
        LobbyRequest::ListRooms(req) => {
            if req.status == Some(RoomStatus::Finished) {
                return Err(ProtoError::bad_request("status must be waiting or active"));
            }
            check_mode_filter(req.mode.as_deref())
        }
        LobbyRequest::FinishGame(req) => match &req.result {
            Some(r) => check_data(r, "result"),
            None => Ok(()),
        },
        LobbyRequest::SetRoomData(req) | LobbyRequest::SetPlayerData(req) => {
            check_data(&req.data, "data")
        }
        LobbyRequest::Kick(req) => check_player_id(&req.player_id),
        LobbyRequest::Chat(req) => check_chat_text(&req.text),
        LobbyRequest::Offer(sig) | LobbyRequest::Answer(sig) => {
            check_player_id(&sig.to)?;
            check_sdp(cfg, &sig.sdp)
        }
        LobbyRequest::IceCandidate(sig) => {
            check_player_id(&sig.to)?;
            check_candidate_field(&sig.candidate)
        }
        LobbyRequest::LeaveRoom
        | LobbyRequest::SetReady(_)
        | LobbyRequest::CancelMatch
        | LobbyRequest::LeaveParty
        | LobbyRequest::StartGame => Ok(()),
    }
}

/// The checks of a request the session answers.
fn validate_session(cfg: &Config, request: &SessionRequest) -> Result<(), ProtoError> {
    match request {
        SessionRequest::Send(req) => check_send(cfg, req),
        SessionRequest::SubscribeRooms(req) => check_mode_filter(req.mode.as_deref()),
        SessionRequest::SubscribeStats(req) => {
            let ms = req.interval_ms.unwrap_or(1000);
            if !(250..=60_000).contains(&ms) {
                return Err(ProtoError::bad_request("interval_ms must be 250 to 60000"));
            }
            Ok(())
        }
        SessionRequest::Ping
        | SessionRequest::UnsubscribeStats
        | SessionRequest::UnsubscribeRooms => Ok(()),
    }
}

/// `join_room`'s target: a room id or a code no longer than any can be.
fn check_join_room(req: &protocol::JoinRoom) -> Result<(), ProtoError> {
    check_join_role(req.role.as_deref())?;
    match (&req.room_id, &req.code) {
        (Some(id), _) if id.chars().count() > MAX_ID_CHARS => Err(ProtoError::new(
            ErrorCode::RoomNotFound,
            format!("no room {id:?}"),
        )),
        (None, Some(code)) if code.chars().count() > MAX_ID_CHARS => Err(ProtoError::new(
            ErrorCode::RoomNotFound,
            format!("no room with code {code:?}"),
        )),
        (None, None) => Err(ProtoError::bad_request("join_room needs room_id or code")),
        _ => Ok(()),
    }
}

/// `send` (1.2): a target that can be a player id, and `data` within
/// `--max-send-bytes` as sent.
fn check_send(cfg: &Config, req: &protocol::SendMessage) -> Result<(), ProtoError> {
    if let Some(to) = &req.to {
        check_player_id(to)?;
    }
    let n = req.data.get().len() as u64;
    if n > cfg.max_send_bytes {
        return Err(ProtoError::new(
            ErrorCode::PayloadTooLarge,
            format!("data is {n} bytes, the limit is {}", cfg.max_send_bytes),
        ));
    }
    Ok(())
}

/// An `ice_candidate`'s candidate, in either of its forms.
fn check_candidate_field(candidate: &protocol::CandidateField) -> Result<(), ProtoError> {
    match candidate {
        protocol::CandidateField::Line(line) => check_candidate(line, None, None),
        protocol::CandidateField::Init(c) => check_candidate(
            &c.candidate,
            c.sdp_mid.as_deref(),
            c.username_fragment.as_deref(),
        ),
    }
}

/// A `mode` a listing is narrowed to: a mode a room can have (so `""` is
/// refused rather than read as "every mode" by one store and "none" by
/// the other).
fn check_mode_filter(mode: Option<&str>) -> Result<(), ProtoError> {
    match mode {
        Some(m) => check_mode(Some(m)).map(|_| ()),
        None => Ok(()),
    }
}

/// A player id named by a request: no player has a longer one.
fn check_player_id(id: &str) -> Result<(), ProtoError> {
    // No more bytes than the limit means no more characters: counting them
    // (every signal names one) is only for the longer ones.
    if id.len() > MAX_PLAYER_ID_CHARS && id.chars().count() > MAX_PLAYER_ID_CHARS {
        return Err(ProtoError::bad_request(format!(
            "player ids are at most {MAX_PLAYER_ID_CHARS} characters"
        )));
    }
    Ok(())
}

/// The checks of a signal read by the fast path (`crate::relay`): the
/// same functions, in the same order, as for the general path's requests.
pub fn validate_signal(cfg: &Config, sig: &crate::relay::Signal<'_>) -> Result<(), ProtoError> {
    use crate::relay::Payload;
    check_player_id(&sig.to)?;
    match &sig.payload {
        Payload::Sdp(sdp) => check_sdp(cfg, sdp),
        Payload::CandidateLine(line) => check_candidate(line, None, None),
        Payload::Candidate(c) => check_candidate(
            &c.candidate,
            c.sdp_mid.as_deref(),
            c.username_fragment.as_deref(),
        ),
    }
}

fn check_sdp(cfg: &Config, sdp: &str) -> Result<(), ProtoError> {
    signaling::validate_sdp(sdp, cfg.max_sdp_bytes as usize)
        .map_err(|e| ProtoError::new(ErrorCode::InvalidSdp, e.to_string()))
}

/// A candidate line and the optional fields of its `RTCIceCandidateInit`.
fn check_candidate(line: &str, mid: Option<&str>, ufrag: Option<&str>) -> Result<(), ProtoError> {
    let invalid = |e: String| ProtoError::new(ErrorCode::InvalidCandidate, e);
    signaling::validate_candidate(line).map_err(|e| invalid(e.to_string()))?;
    if let Some(mid) = mid {
        signaling::validate_sdp_mid(mid).map_err(|e| invalid(e.to_string()))?;
    }
    if ufrag.is_some_and(|u| u.len() > 256 || u.chars().any(char::is_control)) {
        return Err(invalid(
            "usernameFragment must be at most 256 characters without control characters".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use serde_json::json;

    use super::*;
    use crate::protocol::decode_request;

    fn cfg() -> Config {
        Config::parse_from(["rendezvous", "--max-players", "8"])
    }

    /// The code (and the message's start) each refusal gives, for a frame
    /// sent as is: one line per check, in the order they run.
    #[test]
    fn every_request_is_checked_before_an_engine_runs() {
        let cfg = cfg();
        let cases = [
            (
                json!({"type": "find_match", "max_players": 9}),
                "max_players must be 2 to 8",
            ),
            (json!({"type": "find_match", "mode": ""}), "mode"),
            (
                json!({"type": "find_match", "filters": {"a": [1]}}),
                "filter",
            ),
            (
                json!({"type": "create_room", "max_players": 1}),
                "max_players must be 2 to 8",
            ),
            (
                json!({"type": "create_room", "data": {"x": "y".repeat(20_000)}}),
                "data",
            ),
            (
                json!({"type": "create_room", "max_spectators": 101}),
                "max_spectators must be 0 to 100",
            ),
            (
                json!({"type": "join_room"}),
                "join_room needs room_id or code",
            ),
            (
                json!({"type": "join_room", "room_id": "r", "as": "ghost"}),
                "as must be",
            ),
            (
                json!({"type": "list_rooms", "status": "finished"}),
                "status must be waiting or active",
            ),
            (json!({"type": "list_rooms", "mode": ""}), "mode"),
            (json!({"type": "subscribe_rooms", "mode": ""}), "mode"),
            (
                json!({"type": "finish_game", "result": {"x": "y".repeat(20_000)}}),
                "result",
            ),
            (
                json!({"type": "set_room_data", "data": {"x": "y".repeat(20_000)}}),
                "data",
            ),
            (
                json!({"type": "set_player_data", "data": {"x": "y".repeat(20_000)}}),
                "data",
            ),
            (
                json!({"type": "kick", "player_id": "p".repeat(MAX_PLAYER_ID_CHARS + 1)}),
                "player ids are at most",
            ),
            (
                json!({"type": "offer", "to": "p".repeat(MAX_PLAYER_ID_CHARS + 1), "sdp": "v=0"}),
                "player ids are at most",
            ),
            (json!({"type": "chat", "text": "   "}), ""),
            (
                json!({"type": "subscribe_stats", "interval_ms": 100}),
                "interval_ms must be 250 to 60000",
            ),
            (
                json!({"type": "subscribe_stats", "interval_ms": 60_001}),
                "interval_ms must be 250 to 60000",
            ),
            (json!({"type": "offer", "to": "p", "sdp": "v=0"}), ""),
            (
                json!({"type": "ice_candidate", "to": "p", "candidate": "nonsense"}),
                "",
            ),
        ];
        for (frame, message) in cases {
            let request = decode_request(&frame.to_string())
                .request
                .unwrap_or_else(|e| panic!("{frame} does not decode: {e:?}"));
            let err = validate(&cfg, request).expect_err(&frame.to_string());
            assert!(
                err.message.contains(message),
                "{frame}: {:?} lacks {message:?}",
                err.message
            );
        }
    }

    #[test]
    fn long_ids_are_unknown_rooms_and_sane_requests_pass() {
        let cfg = cfg();
        let long = "x".repeat(MAX_ID_CHARS + 1);
        for frame in [
            json!({"type": "join_room", "room_id": long}),
            json!({"type": "join_room", "code": long}),
        ] {
            let request = decode_request(&frame.to_string()).request.unwrap();
            assert_eq!(
                validate(&cfg, request).unwrap_err().code,
                ErrorCode::RoomNotFound
            );
        }
        // The limits themselves are allowed.
        let longest = "x".repeat(MAX_ID_CHARS);
        let longest_player = "p".repeat(MAX_PLAYER_ID_CHARS);
        for frame in [
            json!({"type": "join_room", "room_id": longest}),
            json!({"type": "join_room", "code": longest}),
            json!({"type": "kick", "player_id": longest_player}),
            json!({"type": "find_match", "max_players": 8, "filters": {"map": "a"}}),
            json!({"type": "create_room", "max_spectators": 100, "backfill": true}),
            json!({"type": "join_room", "code": "ABCDEF", "as": "spectator"}),
            json!({"type": "join_room", "room_id": "r", "as": "player"}),
            json!({"type": "list_rooms", "status": "active"}),
            json!({"type": "subscribe_stats", "interval_ms": 250}),
            json!({"type": "chat", "text": "hi"}),
            json!({"type": "kick", "player_id": "p_1"}),
            json!({"type": "leave_room"}),
        ] {
            let request = decode_request(&frame.to_string()).request.unwrap();
            assert_eq!(validate(&cfg, request).map(|_| ()), Ok(()), "{frame}");
        }
    }

    const OFFER: &str = include_str!("../../tests/fixtures/sdp/chromium-offer-datachannel.sdp");
    const LINE: &str = "candidate:1 1 udp 2122260223 192.168.1.2 54321 typ host generation 0";

    fn check_frame(frame: serde_json::Value) -> Result<(), ProtoError> {
        let text = frame.to_string();
        // The fast path and the general path run the same checks.
        let fast = crate::relay::decode(&text).map(|sig| validate_signal(&cfg(), &sig));
        let general = validate(&cfg(), decode_request(&text).request.unwrap()).map(|_| ());
        if let Some(fast) = fast {
            assert_eq!(fast, general, "{text}");
        }
        general
    }

    #[test]
    fn signals_are_checked_alike_on_both_paths() {
        let ok = |f| assert_eq!(check_frame(f), Ok(()));
        let refused = |f: serde_json::Value, code| {
            assert_eq!(check_frame(f.clone()).unwrap_err().code, code, "{f}")
        };
        ok(json!({"type": "offer", "to": "p_1", "sdp": OFFER}));
        ok(json!({"type": "ice_candidate", "to": "p_1", "candidate": LINE}));
        let init = |ufrag: &str| {
            json!({"type": "ice_candidate", "to": "p_1",
                   "candidate": {"candidate": LINE, "sdpMid": "0", "usernameFragment": ufrag}})
        };
        ok(init(&"u".repeat(256)));
        refused(init(&"u".repeat(257)), ErrorCode::InvalidCandidate);
        refused(init("a\u{1}b"), ErrorCode::InvalidCandidate);
        refused(
            json!({"type": "ice_candidate", "to": "p_1",
                   "candidate": {"candidate": LINE, "sdpMid": "a\nb"}}),
            ErrorCode::InvalidCandidate,
        );
        refused(
            json!({"type": "offer", "to": "p_1", "sdp": "v=0 nonsense"}),
            ErrorCode::InvalidSdp,
        );
        refused(
            json!({"type": "answer", "to": "p".repeat(MAX_PLAYER_ID_CHARS + 1), "sdp": OFFER}),
            ErrorCode::BadRequest,
        );
        ok(json!({"type": "answer", "to": "p".repeat(MAX_PLAYER_ID_CHARS), "sdp": OFFER}));
    }
}
