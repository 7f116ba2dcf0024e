//! The store's operations, one typed struct each: the named arguments of
//! the matching function in `lobby.lua`'s `OPS` table, sent as one JSON
//! object. Raw JSON whose exact text must survive (room and player data,
//! results, rids) travels as a string field: the script stores and
//! forwards it without decoding it.

use serde::Serialize;

/// An operation of the script: its name in `OPS` and its arguments.
pub trait Op: Serialize {
    const NAME: &'static str;
}

macro_rules! ops {
    ($($ty:ty => $name:literal),* $(,)?) => {
        $(impl Op for $ty { const NAME: &'static str = $name; })*
    };
}

ops! {
    Hello<'_> => "hello",
    Bye<'_> => "bye",
    Keep<'_> => "keep",
    CreateRoom<'_> => "create_room",
    JoinRoom<'_> => "join_room",
    FindMatch<'_> => "find_match",
    QueueMatch<'_> => "queue_match",
    CancelMatch<'_> => "cancel_match",
    CreateParty<'_> => "create_party",
    JoinParty<'_> => "join_party",
    LeaveParty<'_> => "leave_party",
    LeaveRoom<'_> => "leave_room",
    StartGame<'_> => "start_game",
    FinishGame<'_> => "finish_game",
    SetRoomData<'_> => "set_room_data",
    SetPlayerData<'_> => "set_player_data",
    Kick<'_> => "kick",
    Chat<'_> => "chat",
    SetReady<'_> => "set_ready",
    SendMsg<'_> => "send",
    Signal<'_> => "signal",
    CloseRoom<'_> => "close_room",
    Announce<'_> => "announce",
    DisconnectPlayer<'_> => "disconnect_player",
    Tick => "tick",
    Beat<'_> => "beat",
    LeaveNode => "leave_node",
    Watch => "watch",
    ListRooms<'_> => "list_rooms",
    Stats => "stats",
    CheckInvariants => "check_invariants",
    Footprint => "footprint",
}

/// Cluster-wide counters.
#[derive(Serialize)]
pub struct Stats {}

/// The store's `check_invariants` (scans every key: for tests).
#[derive(Serialize)]
pub struct CheckInvariants {}

/// Sizes of the lobby's keys (scans every key: for tests).
#[derive(Serialize)]
pub struct Footprint {}

#[derive(Serialize)]
pub struct Hello<'a> {
    pub conn: String,
    pub fresh: &'a str,
    pub name: &'a str,
    pub resume: &'a str,
    pub sub: &'a str,
    pub token: &'a str,
    /// A returning player's ticket may form a room at once: its fresh id
    /// and codes, and the limits of `queue`.
    pub rooms: Vec<NewRoom>,
    pub max_rooms: u64,
    pub idle_ms: u64,
    pub fill_ms: u64,
    pub now: String,
}

#[derive(Serialize)]
pub struct Bye<'a> {
    pub p: &'a str,
    pub epoch: u64,
    pub grace_ms: u64,
}

#[derive(Serialize)]
pub struct Keep<'a> {
    pub p: &'a str,
    pub events: Vec<&'a str>,
}

#[derive(Serialize)]
pub struct CreateRoom<'a> {
    pub p: &'a str,
    pub room_id: String,
    pub codes: Vec<String>,
    pub private: bool,
    pub mode: &'a str,
    pub max: u64,
    pub data: String,
    pub allowed_players: &'a [String],
    pub allowed_roles: &'a [String],
    pub backfill: bool,
    pub max_spectators: u64,
    pub start_when_ready: bool,
    pub attrs: Vec<String>,
    pub max_rooms: u64,
    pub idle_ms: u64,
    pub rid: String,
    pub now: String,
}

#[derive(Serialize)]
pub struct JoinRoom<'a> {
    pub p: &'a str,
    /// Empty when joining by code.
    pub room_id: &'a str,
    /// The code normalized (trimmed, upper case), and as given (for the
    /// refusal's message).
    pub code: String,
    pub code_given: &'a str,
    pub roles: &'a [String],
    /// `"as": "spectator"`.
    pub spectator: bool,
    pub rid: String,
    pub now: String,
}

#[derive(Serialize)]
pub struct FindMatch<'a> {
    pub p: &'a str,
    pub attrs: Vec<String>,
    /// The filters: the data of a room it creates.
    pub data: String,
    pub room_id: String,
    pub codes: Vec<String>,
    pub max_rooms: u64,
    pub idle_ms: u64,
    pub mode: &'a str,
    pub max: u64,
    pub backfill: bool,
    pub max_spectators: u64,
    pub start_when_ready: bool,
    pub rid: String,
    pub now: String,
}

#[derive(Serialize)]
pub struct LeaveRoom<'a> {
    pub p: &'a str,
    pub rid: String,
}

#[derive(Serialize)]
pub struct StartGame<'a> {
    pub p: &'a str,
    pub rid: String,
}

#[derive(Serialize)]
pub struct FinishGame<'a> {
    pub p: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    pub ttl_ms: u64,
    pub rid: String,
}

#[derive(Serialize)]
pub struct SetRoomData<'a> {
    pub p: &'a str,
    pub data: String,
    pub attrs: Vec<String>,
    pub rid: String,
}

#[derive(Serialize)]
pub struct SetPlayerData<'a> {
    pub p: &'a str,
    pub data: String,
    pub rid: String,
}

#[derive(Serialize)]
pub struct Kick<'a> {
    pub p: &'a str,
    pub target: &'a str,
    pub rid: String,
}

#[derive(Serialize)]
pub struct Chat<'a> {
    pub p: &'a str,
    pub text: &'a str,
    pub ts: String,
    pub rid: String,
}

/// `set_ready` (1.2).
#[derive(Serialize)]
pub struct SetReady<'a> {
    pub p: &'a str,
    pub ready: bool,
    pub rid: String,
}

/// `send` (1.2) that the node could not route itself.
#[derive(Serialize)]
pub struct SendMsg<'a> {
    pub p: &'a str,
    /// Empty: every other member.
    pub to: &'a str,
    /// The relayed `message` event, `from` set.
    pub event: &'a str,
}

#[derive(Serialize)]
pub struct Signal<'a> {
    pub p: &'a str,
    pub to: &'a str,
    /// The relayed event, `from` set.
    pub event: &'a str,
}

#[derive(Serialize)]
pub struct CloseRoom<'a> {
    pub id: &'a str,
}

/// `game_start` of a room after the allocation hook.
#[derive(Serialize)]
pub struct Announce<'a> {
    pub id: &'a str,
    /// The allocator's JSON object, as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alloc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aerr: Option<&'a str>,
}

#[derive(Serialize)]
pub struct DisconnectPlayer<'a> {
    pub p: &'a str,
}

#[derive(Serialize)]
pub struct Tick {
    pub idle_ms: u64,
    /// Ticket rooms: at most one formed per entry (fresh ids and codes).
    pub rooms: Vec<NewRoom>,
    pub fill_ms: u64,
    pub max_rooms: u64,
    pub now: String,
}

/// A room the script may create: its id and candidate join codes.
#[derive(Serialize)]
pub struct NewRoom {
    pub id: String,
    pub codes: Vec<String>,
}

/// What the script keeps of a ticket's request (stored as this JSON text,
/// decoded by the script: cjson reads numbers exactly but would write
/// them back rounded).
#[derive(Serialize)]
pub struct TicketRec<'a> {
    pub mode: &'a str,
    pub max: u64,
    pub min: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skill: Option<f64>,
    pub w0: f64,
    pub wr: f64,
    pub wm: f64,
    /// `[region, rtt]` pairs.
    pub rg: Vec<(&'a str, f64)>,
    pub mrt: f64,
    pub bf: bool,
    /// The filters, raw JSON: the data of a room the ticket forms.
    pub fl: String,
    /// The filters' bucket suffixes (`attrs`).
    pub at: Vec<String>,
}

/// `queue_match`. a.spec: a [`TicketRec`] as JSON text; a.pool: the key of
/// the tickets it may share a room with.
#[derive(Serialize)]
pub struct QueueMatch<'a> {
    pub p: &'a str,
    pub id: String,
    pub pool: String,
    pub spec: String,
    pub room: NewRoom,
    pub max_rooms: u64,
    pub idle_ms: u64,
    pub ttl_ms: u64,
    pub fill_ms: u64,
    pub rid: String,
    pub now: String,
}

#[derive(Serialize)]
pub struct CreateParty<'a> {
    pub p: &'a str,
    pub id: String,
    pub codes: Vec<String>,
    pub max_size: u64,
    pub rid: String,
}

#[derive(Serialize)]
pub struct JoinParty<'a> {
    pub p: &'a str,
    /// Trimmed and upper-cased.
    pub code: String,
    /// As sent, for the refusal.
    pub code_given: &'a str,
    pub rid: String,
}

#[derive(Serialize)]
pub struct LeaveParty<'a> {
    pub p: &'a str,
    pub rid: String,
}

#[derive(Serialize)]
pub struct CancelMatch<'a> {
    pub p: &'a str,
    pub rid: String,
}

#[derive(Serialize)]
pub struct Beat<'a> {
    pub conns: u64,
    pub ttl_ms: u64,
    pub grace_ms: u64,
    pub watching: bool,
    pub generation: &'a str,
    pub first: bool,
    pub pending: u64,
    /// Webhook event types recorded (space separated; empty: off).
    pub hooks: String,
    pub hookcap: u64,
    pub alloc: bool,
}

#[derive(Serialize)]
pub struct LeaveNode {
    pub grace_ms: u64,
}

#[derive(Serialize)]
pub struct Watch {
    pub on: bool,
}

#[derive(Serialize)]
pub struct ListRooms<'a> {
    /// `w` waiting or `a` active.
    pub which: &'a str,
    /// Empty for every mode.
    pub mode: &'a str,
    pub limit: u64,
}
