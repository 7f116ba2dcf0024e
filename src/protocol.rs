//! The wire protocol (PROTOCOL.md, version 1) as serde types, shared by the
//! server, the Rust client and the tests.
//!
//! Requests are decoded in two steps: a cheap [`Envelope`] pass that only
//! reads `type` and `rid` (so a request with bad fields can still be answered
//! with its own `rid`), then the typed fields of that request. Events and room
//! views are serialized from borrowed data so a broadcast costs one
//! serialization whatever the number of recipients.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

/// Version number sent in `welcome`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest accepted string `rid`.
pub const MAX_RID_LEN: usize = 64;

/// Arbitrary JSON object, as used for room and player `data`.
pub type JsonObject = Map<String, Value>;

/// Every error code of the protocol. Clients act on these; `message` is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    UnknownType,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    Forbidden,
    LimitReached,
    RoomNotFound,
    RoomFull,
    RoomNotWaiting,
    RoomNotActive,
    NotInRoom,
    AlreadyInRoom,
    NotHost,
    NotEnoughPlayers,
    PeerNotFound,
    PlayerNotFound,
    InvalidSdp,
    InvalidCandidate,
    /// 1.1: `queue_match` while the player already has a ticket.
    AlreadyQueued,
    /// 1.1: `cancel_match` without a ticket.
    NotQueued,
    /// 1.1: `queue_match`, `find_match` or `cancel_match` by a party member
    /// who does not lead it.
    NotPartyLeader,
    AlreadyInParty,
    PartyNotFound,
    PartyFull,
    NotInParty,
    Internal,
    /// HTTP only: no such route.
    NotFound,
}

impl ErrorCode {
    /// The code of its wire name (`"room_full"`), if it is one.
    pub fn from_wire(name: &str) -> Option<ErrorCode> {
        serde_json::from_value(Value::String(name.to_string())).ok()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::LimitReached => "limit_reached",
            ErrorCode::RoomNotFound => "room_not_found",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::RoomNotWaiting => "room_not_waiting",
            ErrorCode::RoomNotActive => "room_not_active",
            ErrorCode::NotInRoom => "not_in_room",
            ErrorCode::AlreadyInRoom => "already_in_room",
            ErrorCode::AlreadyQueued => "already_queued",
            ErrorCode::NotQueued => "not_queued",
            ErrorCode::NotPartyLeader => "not_party_leader",
            ErrorCode::AlreadyInParty => "already_in_party",
            ErrorCode::PartyNotFound => "party_not_found",
            ErrorCode::PartyFull => "party_full",
            ErrorCode::NotInParty => "not_in_party",
            ErrorCode::NotHost => "not_host",
            ErrorCode::NotEnoughPlayers => "not_enough_players",
            ErrorCode::PeerNotFound => "peer_not_found",
            ErrorCode::PlayerNotFound => "player_not_found",
            ErrorCode::InvalidSdp => "invalid_sdp",
            ErrorCode::InvalidCandidate => "invalid_candidate",
            ErrorCode::Internal => "internal",
            ErrorCode::NotFound => "not_found",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A protocol error: a code for programs and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProtoError {
    pub code: ErrorCode,
    pub message: String,
}

impl ProtoError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtoError {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
}

/// Timestamps go on the wire as RFC 3339 with milliseconds and `Z`.
pub fn ts(t: &DateTime<Utc>) -> String {
    match ts_bytes(t).map(|b| std::str::from_utf8(&b).map(str::to_string)) {
        Some(Ok(s)) => s,
        _ => t.to_rfc3339_opts(SecondsFormat::Millis, true),
    }
}

/// `t` as chrono's `to_rfc3339_opts(SecondsFormat::Millis, true)` writes
/// it, on the stack and without the formatting machinery (a room's
/// listing carries one per player); `None` outside years 0 to 9999 and in
/// a leap second, which chrono writes.
fn ts_bytes(t: &DateTime<Utc>) -> Option<[u8; 24]> {
    use chrono::Timelike;
    // 0000-01-01T00:00:00Z and 10000-01-01T00:00:00Z, in Unix seconds.
    const FIRST: i64 = -62_167_219_200;
    const END: i64 = 253_402_300_800;
    let secs = t.timestamp();
    let nanos = t.nanosecond();
    if !(FIRST..END).contains(&secs) || nanos >= 1_000_000_000 {
        return None;
    }
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    // Days to a civil date (proleptic Gregorian; H. Hinnant's algorithm),
    // from an era starting on 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097) as u32;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = (era * 400 + i64::from(yoe) + i64::from(month <= 2)) as u32;
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, digits: usize, mut n: u32| {
        for i in (at..at + digits).rev() {
            b[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, rest / 3600);
    put(14, 2, rest / 60 % 60);
    put(17, 2, rest % 60);
    put(20, 3, nanos / 1_000_000);
    Some(b)
}

mod ts_millis {
    use super::*;
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        match ts_bytes(t) {
            // ASCII digits and separators only.
            Some(b) => s.serialize_str(std::str::from_utf8(&b).unwrap_or_default()),
            None => s.serialize_str(&ts(t)),
        }
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        DateTime::<Utc>::deserialize(d)
    }
}

// ---------------------------------------------------------------------------
// Client to server
// ---------------------------------------------------------------------------

/// The first decoding pass: only `type` and `rid`; every other field is skipped
/// without being built. Both are kept as raw JSON values so that a wrong type
/// can be reported precisely instead of failing the whole frame.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    #[serde(rename = "type", default)]
    pub kind: Option<Value>,
    #[serde(default)]
    pub rid: Option<Value>,
}

/// Checks a request id: an integer or a string of at most 64 characters.
/// Anything else (float, object, longer string) is not echoed.
pub fn valid_rid(rid: &Value) -> bool {
    match rid {
        Value::Number(n) => n.is_i64() || n.is_u64(),
        Value::String(s) => s.chars().count() <= MAX_RID_LEN,
        _ => false,
    }
}

/// Fields of `find_match`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FindMatch {
    pub max_players: Option<u64>,
    pub mode: Option<String>,
    pub filters: Option<JsonObject>,
    /// 1.1: the room it creates is refilled when a player leaves it active.
    pub backfill: bool,
    /// Places for spectators in the room it creates (our addition, as
    /// `create_room`'s).
    pub max_spectators: Option<u64>,
    /// 1.2: the room it creates starts once every seated player is ready.
    pub start_when_ready: bool,
}

/// Fields of `queue_match` (1.1), as sent; defaults are applied by
/// [`crate::lobby::TicketSpec::from_request`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueMatch {
    pub mode: Option<String>,
    pub max_players: Option<u64>,
    pub min_players: Option<u64>,
    pub skill: Option<f64>,
    pub skill_window: Option<f64>,
    pub skill_widen_per_s: Option<f64>,
    pub skill_window_max: Option<f64>,
    /// Region name to the round-trip time in ms the client measured.
    pub regions: Option<std::collections::BTreeMap<String, f64>>,
    pub max_rtt_ms: Option<f64>,
    pub filters: Option<JsonObject>,
    pub backfill: bool,
}

/// A queued ticket as the wire shows it (`queue_match`'s reply).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketInfo {
    pub ticket_id: String,
    pub players: Vec<String>,
    #[serde(with = "ts_millis")]
    pub queued_at: DateTime<Utc>,
}

/// Fields of `create_room`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateRoom {
    pub max_players: Option<u64>,
    pub mode: Option<String>,
    pub private: bool,
    pub data: Option<JsonObject>,
    pub allowed_players: Vec<String>,
    pub allowed_roles: Vec<String>,
    /// 1.1: refill the room through matchmaking when a player leaves it
    /// active.
    pub backfill: bool,
    /// 1.1: places for spectators (default 0).
    pub max_spectators: Option<u64>,
    /// 1.2: the room starts once every seated player is ready (and at
    /// least 2 are seated).
    pub start_when_ready: bool,
}

/// Fields of `join_room`: one of the two.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JoinRoom {
    pub room_id: Option<String>,
    pub code: Option<String>,
    /// 1.1: `"player"` (default) or `"spectator"`.
    #[serde(rename = "as")]
    pub role: Option<String>,
}

impl JoinRoom {
    pub fn as_spectator(&self) -> bool {
        self.role.as_deref() == Some("spectator")
    }
}

/// Fields of `list_rooms`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ListRooms {
    pub status: Option<RoomStatus>,
    pub mode: Option<String>,
    pub limit: Option<u64>,
}

/// Fields of `finish_game`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FinishGame {
    pub result: Option<JsonObject>,
}

/// Fields of `set_room_data` and `set_player_data`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetData {
    pub data: JsonObject,
}

/// Fields of `create_party` (1.1).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateParty {
    pub max_size: Option<u64>,
}

/// Fields of `join_party` (1.1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinParty {
    pub code: String,
}

/// A party as the wire shows it; the leader is the first member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartyInfo {
    pub party_id: String,
    pub code: String,
    pub leader: String,
    pub members: Vec<PartyMember>,
    pub max_size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartyMember {
    pub player_id: String,
    pub name: String,
    pub connected: bool,
}

/// Fields of `kick`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Kick {
    pub player_id: String,
}

/// Fields of `chat`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Chat {
    pub text: String,
}

/// Fields of `set_ready` (1.2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetReady {
    pub ready: bool,
}

/// Fields of `send` (1.2): `data` is kept as sent (its size is checked on
/// that text, and it is relayed byte for byte).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendMessage {
    #[serde(default)]
    pub to: Option<String>,
    pub data: Box<serde_json::value::RawValue>,
}

/// Fields of `subscribe_stats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SubscribeStats {
    pub interval_ms: Option<u64>,
}

/// Fields of `subscribe_rooms`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SubscribeRooms {
    pub mode: Option<String>,
}

/// Fields of `offer` and `answer`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SdpSignal {
    pub to: String,
    pub sdp: String,
}

/// The `candidate` object of `ice_candidate`, as `RTCIceCandidateInit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IceCandidateInit {
    pub candidate: String,
    #[serde(rename = "sdpMid", default)]
    pub sdp_mid: Option<String>,
    #[serde(rename = "sdpMLineIndex", default)]
    pub sdp_m_line_index: Option<u16>,
    #[serde(rename = "usernameFragment", default)]
    pub username_fragment: Option<String>,
}

/// The `candidate` field of `ice_candidate`: an `RTCIceCandidateInit`
/// object, or a bare string (`""` is the end of candidates). Relayed in the
/// form it was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CandidateField {
    Init(IceCandidateInit),
    Line(String),
}

impl CandidateField {
    /// The `candidate:` line ("" for end of candidates).
    pub fn line(&self) -> &str {
        match self {
            CandidateField::Init(c) => &c.candidate,
            CandidateField::Line(l) => l,
        }
    }
}

/// Fields of `ice_candidate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IceSignal {
    pub to: String,
    pub candidate: CandidateField,
}

/// `welcome.features`: what this server supports beyond protocol v1.
pub const FEATURES: &[&str] = &[
    "tickets",
    "parties",
    "backfill",
    "spectators",
    "peerjs",
    "matchbox",
    "webhooks",
    "ready",
    "messages",
];

/// The one request table: every request type is named here once, with its
/// wire `type` and its fields' struct (none for a request without fields),
/// in one of two sections: `lobby`, the requests the lobby state decides
/// (the backend's, in either engine), and `session`, the ones a session
/// answers itself. From it come [`Request`], [`Request::kind`],
/// [`Request::route`] (a [`LobbyRequest`] for the backend, or a
/// [`SessionRequest`]), the decoding in [`decode_request`] and
/// [`REQUEST_TYPES`] (the metrics labels, the decoder fuzz, the clients'
/// completeness tests).
macro_rules! requests {
    (
        lobby { $($(#[$ldoc:meta])* $lv:ident $(($lf:ty))? = $lw:literal,)* }
        session { $($(#[$sdoc:meta])* $sv:ident $(($sf:ty))? = $sw:literal,)* }
    ) => {
        /// A decoded request. The variant names are the wire `type`s.
        #[derive(Debug, Clone)]
        pub enum Request {
            $($(#[$ldoc])* $lv $(($lf))?,)*
            $($(#[$sdoc])* $sv $(($sf))?,)*
        }

        /// A request the lobby state decides: what the backend takes.
        #[derive(Debug, Clone)]
        pub enum LobbyRequest {
            $($(#[$ldoc])* $lv $(($lf))?,)*
        }

        /// A request the session answers itself (it never reaches the
        /// backend's request path).
        #[derive(Debug, Clone)]
        pub enum SessionRequest {
            $($(#[$sdoc])* $sv $(($sf))?,)*
        }

        /// Where a request goes.
        #[derive(Debug, Clone)]
        pub enum Routed {
            Lobby(LobbyRequest),
            Session(SessionRequest),
        }

        /// Every request type, as on the wire, in the table's order.
        pub const REQUEST_TYPES: &[&str] = &[$($lw,)* $($sw,)*];

        impl Request {
            /// The wire `type` of the request.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(requests!(@ctor Request $lv _ $(($lf))?) => $lw,)*
                    $(requests!(@ctor Request $sv _ $(($sf))?) => $sw,)*
                }
            }

            /// The request for the backend, or for the session.
            pub fn route(self) -> Routed {
                match self {
                    $(requests!(@ctor Request $lv x $(($lf))?) =>
                        Routed::Lobby(requests!(@ctor LobbyRequest $lv x $(($lf))?)),)*
                    $(requests!(@ctor Request $sv x $(($sf))?) =>
                        Routed::Session(requests!(@ctor SessionRequest $sv x $(($sf))?)),)*
                }
            }
        }

        impl From<LobbyRequest> for Request {
            fn from(request: LobbyRequest) -> Request {
                match request {
                    $(requests!(@ctor LobbyRequest $lv x $(($lf))?) =>
                        requests!(@ctor Request $lv x $(($lf))?),)*
                }
            }
        }

        /// The request of wire type `kind` with its fields read from `text`,
        /// or `None` for a type not in the table.
        fn decode_fields(kind: &str, text: &str) -> Option<Result<Request, ProtoError>> {
            Some(match kind {
                $($lw => requests!(@decode text, kind, $lv $(($lf))?),)*
                $($sw => requests!(@decode text, kind, $sv $(($sf))?),)*
                _ => return None,
            })
        }
    };
    // A variant as a pattern or a value, its fields (if any) bound to `$x`
    // (or `_`).
    (@ctor $e:ident $v:ident $x:tt ($f:ty)) => { $e::$v($x) };
    (@ctor $e:ident $v:ident $x:tt) => { $e::$v };
    (@decode $text:ident, $kind:ident, $variant:ident ($fields:ty)) => {
        fields::<$fields>($text, $kind).map(Request::$variant)
    };
    (@decode $text:ident, $kind:ident, $variant:ident) => { Ok(Request::$variant) };
}

requests! {
    lobby {
        FindMatch(FindMatch) = "find_match",
        CreateRoom(CreateRoom) = "create_room",
        JoinRoom(JoinRoom) = "join_room",
        LeaveRoom = "leave_room",
        ListRooms(ListRooms) = "list_rooms",
        QueueMatch(QueueMatch) = "queue_match",
        CancelMatch = "cancel_match",
        CreateParty(CreateParty) = "create_party",
        JoinParty(JoinParty) = "join_party",
        LeaveParty = "leave_party",
        StartGame = "start_game",
        FinishGame(FinishGame) = "finish_game",
        SetRoomData(SetData) = "set_room_data",
        SetPlayerData(SetData) = "set_player_data",
        Kick(Kick) = "kick",
        Offer(SdpSignal) = "offer",
        Answer(SdpSignal) = "answer",
        IceCandidate(IceSignal) = "ice_candidate",
        Chat(Chat) = "chat",
        /// 1.2: ready check.
        SetReady(SetReady) = "set_ready",
    }
    session {
        /// 1.2: game data relayed by the server (routed like a signal).
        Send(SendMessage) = "send",
        Ping = "ping",
        SubscribeStats(SubscribeStats) = "subscribe_stats",
        UnsubscribeStats = "unsubscribe_stats",
        SubscribeRooms(SubscribeRooms) = "subscribe_rooms",
        UnsubscribeRooms = "unsubscribe_rooms",
    }
}

/// The three signal types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalKind {
    Offer,
    Answer,
    IceCandidate,
}

impl SignalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::Offer => "offer",
            SignalKind::Answer => "answer",
            SignalKind::IceCandidate => "ice_candidate",
        }
    }

    pub fn parse(kind: &str) -> Option<SignalKind> {
        match kind {
            "offer" => Some(SignalKind::Offer),
            "answer" => Some(SignalKind::Answer),
            "ice_candidate" => Some(SignalKind::IceCandidate),
            _ => None,
        }
    }
}

/// A frame decoded as far as it could be: the `rid` to echo, and the request
/// or the error to answer with.
#[derive(Debug)]
pub struct Decoded {
    pub rid: Value,
    pub request: Result<Request, ProtoError>,
}

fn fields<'a, T: Deserialize<'a>>(text: &'a str, kind: &str) -> Result<T, ProtoError> {
    serde_json::from_str(text)
        .map_err(|e| ProtoError::bad_request(format!("bad fields for {kind}: {}", strip_pos(&e))))
}

/// serde_json's messages end with "at line 1 column 37"; the column is noise
/// for a client that sent one frame, the rest is the useful part.
fn strip_pos(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Decodes one text frame. Never fails: a frame that cannot be understood
/// becomes a `bad_request` or `unknown_type` error with the best `rid` known.
pub fn decode_request(text: &str) -> Decoded {
    // serde would read a JSON array as the struct's fields in order; only
    // objects are messages.
    if !text.trim_start().starts_with('{') {
        let msg = match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => "a message must be a JSON object".to_string(),
            Err(e) => format!("not valid JSON: {}", strip_pos(&e)),
        };
        return Decoded {
            rid: Value::Null,
            request: Err(ProtoError::bad_request(msg)),
        };
    }
    let env: Envelope = match serde_json::from_str(text) {
        Ok(env) => env,
        Err(e) => {
            // An object whose envelope does not fit (a field given twice):
            // serde's reason, not "must be an object".
            let msg = if e.is_data() {
                format!("bad message: {}", strip_pos(&e))
            } else {
                format!("not valid JSON: {}", strip_pos(&e))
            };
            return Decoded {
                rid: Value::Null,
                request: Err(ProtoError::bad_request(msg)),
            };
        }
    };
    let rid = match env.rid {
        None | Some(Value::Null) => Value::Null,
        Some(r) if valid_rid(&r) => r,
        Some(_) => {
            return Decoded {
                rid: Value::Null,
                request: Err(ProtoError::bad_request(
                    "rid must be an integer or a string of at most 64 characters",
                )),
            }
        }
    };
    let kind = match env.kind {
        Some(Value::String(s)) => s,
        Some(_) => {
            return Decoded {
                rid,
                request: Err(ProtoError::bad_request("type must be a string")),
            }
        }
        None => {
            return Decoded {
                rid,
                request: Err(ProtoError::bad_request("missing field type")),
            }
        }
    };
    let request = decode_fields(&kind, text).unwrap_or_else(|| {
        let shown: String = kind.chars().take(64).collect();
        Err(ProtoError::new(
            ErrorCode::UnknownType,
            format!("unknown message type {shown:?}"),
        ))
    });
    Decoded { rid, request }
}

// ---------------------------------------------------------------------------
// Server to client
// ---------------------------------------------------------------------------

/// Room status; moves only forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomStatus {
    Waiting,
    Active,
    Finished,
}

impl RoomStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomStatus::Waiting => "waiting",
            RoomStatus::Active => "active",
            RoomStatus::Finished => "finished",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    Public,
    Private,
}

/// Why a player left a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    Left,
    Kicked,
    Timeout,
    Closed,
}

/// A player as shown inside a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlayerInfo {
    pub player_id: String,
    pub name: String,
    pub data: JsonObject,
    #[serde(with = "ts_millis")]
    pub joined_at: DateTime<Utc>,
    pub connected: bool,
    /// 1.2: the player's ready flag (`set_ready`); always false for
    /// spectators.
    #[serde(default)]
    pub ready: bool,
}

/// The room object of PROTOCOL.md. `code` is present only in views for members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomInfo {
    pub room_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub visibility: Visibility,
    pub mode: String,
    pub max_players: u64,
    pub status: RoomStatus,
    pub host: Option<String>,
    #[serde(with = "ts_millis")]
    pub created_at: DateTime<Utc>,
    pub data: JsonObject,
    pub players: Vec<PlayerInfo>,
    /// 1.1: shown (true) only for rooms made with `backfill`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub backfill: bool,
    /// 1.1: shown only for rooms with places for spectators.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_spectators: u64,
    /// 1.1: who watches without a seat, in join order (shown with
    /// `max_spectators`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spectators: Vec<PlayerInfo>,
    /// 1.2: shown (true) only for rooms made with `start_when_ready`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub start_when_ready: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Lobby statistics (`GET /api/stats`, `subscribe_stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub total_rooms: u64,
    pub waiting_rooms: u64,
    pub active_rooms: u64,
    pub finished_rooms: u64,
    pub total_players: u64,
    pub connections: u64,
    pub players_waiting: u64,
    pub held_seats: u64,
    pub matches_started: u64,
    pub signals_relayed: u64,
    /// 1.2: accepted `send` requests (one each, whatever the number of
    /// recipients).
    #[serde(default)]
    pub messages_relayed: u64,
    /// 1.1: tickets waiting in `queue_match`'s queue (one per party).
    #[serde(default)]
    pub tickets_queued: u64,
    /// 1.1: parties alive.
    #[serde(default)]
    pub parties: u64,
    pub uptime_s: u64,
}

/// One chat line, as sent in `chat` events and kept for `chat_history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub room_id: String,
    pub from: String,
    pub name: String,
    pub text: String,
    pub ts: String,
}

/// Limits announced in `welcome`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub max_message_bytes: u64,
    pub max_players: u64,
}

/// The first message of every connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Welcome {
    pub protocol: u32,
    pub player_id: String,
    pub name: String,
    pub resume_token: String,
    pub resumed: bool,
    pub room: Option<RoomInfo>,
    pub heartbeat_interval_ms: u64,
    pub heartbeat_timeout_ms: u64,
    pub ice_servers: Vec<crate::signaling::IceServer>,
    pub limits: Limits,
    pub server_time: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub missed: u64,
    /// What the server supports beyond protocol v1 (v1.1).
    #[serde(default)]
    pub features: Vec<String>,
    /// 1.1 (our addition): the party a resumed player is still in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub party: Option<PartyInfo>,
}

/// A field that is present (even as `null`) is `Some`.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// What the allocation hook gave for a room (`game_start`'s `allocation`
/// and `allocation_error`).
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    pub allocation: Option<JsonObject>,
    pub allocation_error: Option<String>,
}

impl Event {
    /// `game_start` for `room`; with an allocation when the allocator ran,
    /// and the `ticket_id` of a player seated by a ticket.
    pub fn game_start(
        room: RoomInfo,
        alloc: Option<&Allocation>,
        ticket_id: Option<String>,
    ) -> Event {
        Event::GameStart {
            room,
            allocation: alloc.map(|a| a.allocation.clone()),
            allocation_error: alloc.and_then(|a| a.allocation_error.clone()),
            ticket_id,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Server-pushed events. Serialized with the wire `type` as tag.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Welcome(Box<Welcome>),
    PlayerJoined {
        room_id: String,
        player: PlayerInfo,
    },
    PlayerLeft {
        room_id: String,
        player_id: String,
        reason: LeaveReason,
    },
    PlayerDisconnected {
        room_id: String,
        player_id: String,
    },
    PlayerReconnected {
        room_id: String,
        player_id: String,
    },
    HostChanged {
        room_id: String,
        host: String,
    },
    RoomStatus {
        room_id: String,
        status: RoomStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<JsonObject>,
    },
    GameStart {
        room: RoomInfo,
        /// With `--allocator-url`: the allocator's answer, or `null` when
        /// it failed (see `allocation_error`); absent without an allocator.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        allocation: Option<Option<JsonObject>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        allocation_error: Option<String>,
        /// 1.1: the ticket that seated this player, for rooms formed by
        /// `queue_match`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ticket_id: Option<String>,
    },
    /// 1.1: a ticket waited `--ticket-ttl-ms` without forming a room.
    TicketExpired {
        ticket_id: String,
    },
    /// 1.1: the party's leader queued a ticket for every member.
    TicketQueued {
        ticket: TicketInfo,
    },
    /// 1.1 (our addition): a party's ticket left the queue without a room:
    /// the leader cancelled it, or the party changed.
    TicketCancelled {
        ticket_id: String,
    },
    /// 1.1: the party changed (members, leader, connections).
    PartyUpdated {
        party: PartyInfo,
    },
    /// 1.1 (our addition): the party's leader's `find_match` seated this
    /// member in `room`.
    RoomJoined {
        room: RoomInfo,
    },
    RoomData {
        room_id: String,
        data: JsonObject,
    },
    PlayerData {
        room_id: String,
        player_id: String,
        data: JsonObject,
    },
    /// 1.2: a seated player's ready flag changed.
    PlayerReady {
        room_id: String,
        player_id: String,
        ready: bool,
    },
    /// 1.2: game data relayed from a member (`send`).
    Message {
        from: String,
        data: Value,
    },
    Kicked {
        room_id: String,
    },
    /// 1.1: someone started watching the room.
    SpectatorJoined {
        room_id: String,
        player: PlayerInfo,
    },
    /// 1.1: a spectator left (`left`, `kicked`, `timeout`, `closed`).
    SpectatorLeft {
        room_id: String,
        player_id: String,
        reason: LeaveReason,
    },
    Offer {
        from: String,
        sdp: String,
    },
    Answer {
        from: String,
        sdp: String,
    },
    IceCandidate {
        from: String,
        candidate: CandidateField,
    },
    Chat(ChatMessage),
    ChatHistory {
        room_id: String,
        messages: Vec<ChatMessage>,
    },
    Announcement {
        text: String,
        ts: String,
    },
    Stats {
        stats: Stats,
    },
    RoomListed {
        room: RoomInfo,
    },
    RoomUpdated {
        room: RoomInfo,
    },
    RoomDelisted {
        room_id: String,
    },
    ServerShutdown {
        reconnect_after_ms: u64,
    },
}

impl Event {
    /// The JSON text of this event, built once per broadcast.
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: no maps with non-string keys,
        // no custom serializers that error.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// Builds `{"type":"ok","rid":...,<fields>}`.
pub fn ok_reply(rid: &Value, fields: Value) -> String {
    // The common case on the relay path (`{}`): no map to build.
    if fields.as_object().is_some_and(|m| m.is_empty()) {
        return format!(r#"{{"type":"ok","rid":{rid}}}"#);
    }
    let mut obj = Map::new();
    obj.insert("type".into(), Value::String("ok".into()));
    obj.insert("rid".into(), rid.clone());
    if let Value::Object(map) = fields {
        for (k, v) in map {
            obj.insert(k, v);
        }
    }
    Value::Object(obj).to_string()
}

/// Builds `{"type":"ok","rid":...,"room":...}` (and `created` for
/// `find_match`) straight from the room view, without a `Value` tree.
pub fn ok_room_reply(rid: &Value, room: &RoomInfo, created: Option<bool>) -> String {
    #[derive(Serialize)]
    struct OkRoom<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        rid: &'a Value,
        room: &'a RoomInfo,
        #[serde(skip_serializing_if = "Option::is_none")]
        created: Option<bool>,
    }
    serde_json::to_string(&OkRoom {
        kind: "ok",
        rid,
        room,
        created,
    })
    .unwrap_or_else(|_| String::from("{}"))
}

/// Builds `{"type":"error","rid":...,"code":...,"message":...}`.
pub fn error_reply(rid: &Value, err: &ProtoError) -> String {
    serde_json::json!({
        "type": "error",
        "rid": rid,
        "code": err.code,
        "message": err.message,
    })
    .to_string()
}

/// The HTTP error body: `{"error":{"code":...,"message":...}}`.
pub fn http_error_body(err: &ProtoError) -> Value {
    serde_json::json!({"error": {"code": err.code, "message": err.message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_as_chrono_writes_them() {
        use chrono::TimeZone;
        let chrono_ts = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut times = vec![
            Utc::now(),
            DateTime::<Utc>::UNIX_EPOCH,
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap()
                + chrono::Duration::milliseconds(999),
            // Outside four-digit years chrono writes a sign: kept.
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 6, 15, 12, 30, 0).unwrap(),
            // Sub-millisecond parts are cut, not rounded.
            DateTime::<Utc>::from_timestamp(1_700_000_000, 999_999_999).unwrap(),
            // A leap second.
            Utc.with_ymd_and_hms(2016, 12, 31, 23, 59, 59).unwrap()
                + chrono::Duration::nanoseconds(0),
        ];
        if let Some(leap) = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_milli_opt(23, 59, 59, 1_500))
        {
            times.push(leap.and_utc());
        }
        // Spread over years 0 to 9999, at every millisecond digit.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let ms = (x % 315_537_897_600_000) as i64 - 62_167_219_200_000;
            times.push(DateTime::<Utc>::from_timestamp_millis(ms).unwrap());
        }
        for t in &times {
            assert_eq!(ts(t), chrono_ts(t), "{t:?}");
            assert_eq!(
                serde_json::to_value(PlayerInfo {
                    player_id: "p".into(),
                    name: "n".into(),
                    data: JsonObject::new(),
                    joined_at: *t,
                    connected: true,
                    ready: false,
                })
                .unwrap()["joined_at"],
                Value::String(chrono_ts(t)),
                "{t:?}"
            );
        }
    }

    #[test]
    fn join_room_as_spectator_only_when_asked() {
        let role = |text: &str| match decode_request(text).request.unwrap() {
            Request::JoinRoom(j) => j.as_spectator(),
            other => panic!("{other:?}"),
        };
        assert!(role(
            r#"{"type":"join_room","room_id":"r","as":"spectator"}"#
        ));
        assert!(!role(r#"{"type":"join_room","room_id":"r","as":"player"}"#));
        assert!(!role(r#"{"type":"join_room","room_id":"r"}"#));
        assert!(!role(
            r#"{"type":"join_room","room_id":"r","as":"Spectator"}"#
        ));
    }

    #[test]
    fn backfill_shows_only_when_on() {
        let mut room = RoomInfo {
            room_id: "r".into(),
            code: None,
            visibility: Visibility::Public,
            mode: "m".into(),
            max_players: 2,
            status: RoomStatus::Waiting,
            host: None,
            created_at: Utc::now(),
            data: JsonObject::new(),
            players: vec![],
            backfill: false,
            max_spectators: 0,
            spectators: vec![],
            start_when_ready: false,
        };
        let v = serde_json::to_value(&room).unwrap();
        assert!(v.get("backfill").is_none(), "{v}");
        room.backfill = true;
        assert_eq!(serde_json::to_value(&room).unwrap()["backfill"], true);
    }

    #[test]
    fn decode_keeps_rid_for_bad_fields() {
        let d = decode_request(r#"{"type":"kick","rid":"a1"}"#);
        assert_eq!(d.rid, Value::String("a1".into()));
        assert_eq!(d.request.unwrap_err().code, ErrorCode::BadRequest);
    }

    #[test]
    fn decode_rejects_float_rid_and_non_objects() {
        assert_eq!(
            decode_request(r#"{"type":"ping","rid":1.5}"#).rid,
            Value::Null
        );
        for bad in ["[]", "3", "\"x\"", "null", "", "{", "{\"type\":5}"] {
            let d = decode_request(bad);
            assert_eq!(d.request.unwrap_err().code, ErrorCode::BadRequest, "{bad}");
        }
    }

    #[test]
    fn a_field_given_twice_is_named_in_the_refusal() {
        for (text, field) in [
            (r#"{"type":"ping","type":"ping"}"#, "type"),
            (r#"{"type":"ping","rid":1,"rid":2}"#, "rid"),
        ] {
            let err = decode_request(text).request.unwrap_err();
            assert_eq!(err.code, ErrorCode::BadRequest, "{text}");
            assert_eq!(
                err.message,
                format!("bad message: duplicate field `{field}`"),
                "{text}"
            );
        }
    }

    #[test]
    fn unknown_type_is_its_own_code() {
        let d = decode_request(r#"{"type":"teleport","rid":3}"#);
        assert_eq!(d.rid, serde_json::json!(3));
        assert_eq!(d.request.unwrap_err().code, ErrorCode::UnknownType);
    }

    fn room() -> RoomInfo {
        RoomInfo {
            room_id: "r1".into(),
            code: Some("ABCDEF".into()),
            visibility: Visibility::Public,
            mode: "duel".into(),
            max_players: 2,
            status: RoomStatus::Waiting,
            host: Some("p1".into()),
            created_at: DateTime::parse_from_rfc3339("2026-11-30T09:00:00.123Z")
                .unwrap()
                .with_timezone(&Utc),
            data: JsonObject::new(),
            players: Vec::new(),
            backfill: false,
            max_spectators: 0,
            spectators: Vec::new(),
            start_when_ready: false,
        }
    }

    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"))
    }

    /// The frames every reply and event is built with, field by field: the
    /// integration suites see them through a socket, these without one.
    #[test]
    fn replies_and_events_have_their_wire_shape() {
        let rid = serde_json::json!(7);
        assert_eq!(
            parsed(&ok_reply(&rid, serde_json::json!({}))),
            serde_json::json!({"type": "ok", "rid": 7})
        );
        assert_eq!(
            parsed(&ok_reply(&rid, serde_json::json!({"rooms": []}))),
            serde_json::json!({"type": "ok", "rid": 7, "rooms": []})
        );
        let v = parsed(&ok_room_reply(&rid, &room(), Some(true)));
        assert_eq!(v["type"], "ok");
        assert_eq!(v["rid"], 7);
        assert_eq!(v["created"], true);
        assert_eq!(v["room"]["room_id"], "r1");
        assert_eq!(v["room"]["status"], "waiting");
        assert_eq!(v["room"]["created_at"], "2026-11-30T09:00:00.123Z");
        assert!(parsed(&ok_room_reply(&rid, &room(), None))
            .get("created")
            .is_none());
        let err = ProtoError::new(ErrorCode::RoomFull, "full");
        assert_eq!(
            parsed(&error_reply(&rid, &err)),
            serde_json::json!({"type": "error", "rid": 7, "code": "room_full", "message": "full"})
        );
        assert_eq!(
            http_error_body(&err),
            serde_json::json!({"error": {"code": "room_full", "message": "full"}})
        );
        let ev = Event::RoomStatus {
            room_id: "r1".into(),
            status: RoomStatus::Finished,
            result: None,
        };
        assert_eq!(
            parsed(&ev.to_json()),
            serde_json::json!({"type": "room_status", "room_id": "r1", "status": "finished"})
        );
    }

    #[test]
    fn statuses_have_one_wire_name() {
        for s in [
            RoomStatus::Waiting,
            RoomStatus::Active,
            RoomStatus::Finished,
        ] {
            assert_eq!(serde_json::json!(s), Value::String(s.as_str().into()));
        }
        assert_eq!(RoomStatus::Active.as_str(), "active");
    }

    /// `welcome.missed` shows only when events were lost.
    #[test]
    fn zero_counts_are_left_out() {
        assert!(is_zero(&0));
        assert!(!is_zero(&3));
    }
}
