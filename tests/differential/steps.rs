//! The steps of a differential case and their random generation: what a
//! few logical players do (requests of PROTOCOL.md v1, malformed input,
//! connection events, admin calls, waits). A step names players and rooms
//! by logical index; each server's harness maps them to its own ids, so
//! the same step means the same thing on both servers.

use proptest::prelude::*;

/// A player by logical slot, or an id no server knows (some with
/// characters that error messages may quote differently).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PlayerRef {
    Slot(usize),
    Bad(&'static str),
}

/// A room by index among the rooms seen so far (in order of first
/// appearance, closed ones included), or a room id that never existed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RoomRef {
    Known(usize),
    Bad(&'static str),
}

/// A join code by index among the codes seen so far; `lower` sends it in
/// lower case (the server must accept it). Or a code that never existed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CodeRef {
    Known { index: usize, lower: bool },
    Bad(&'static str),
}

/// A request. Field values are JSON fragments (`None`: field absent), so
/// invalid values and types are just other fragments.
#[derive(Debug, Clone, PartialEq)]
pub enum Req {
    FindMatch {
        max: Option<&'static str>,
        mode: Option<&'static str>,
        filters: Option<&'static str>,
        backfill: Option<&'static str>,
        max_spectators: Option<&'static str>,
        /// 1.2.
        start_when_ready: Option<&'static str>,
    },
    CreateRoom {
        private: Option<&'static str>,
        max: Option<&'static str>,
        mode: Option<&'static str>,
        data: Option<&'static str>,
        allowed: Option<PlayerRef>,
        backfill: Option<&'static str>,
        max_spectators: Option<&'static str>,
        /// 1.2.
        start_when_ready: Option<&'static str>,
    },
    /// `queue_match` (1.1). Skills, regions and sizes are chosen so that
    /// whether two tickets match never depends on how long they waited
    /// (windows and fill delays never reach a decision within a case).
    QueueMatch {
        max: Option<&'static str>,
        min: Option<&'static str>,
        mode: Option<&'static str>,
        skill: Option<&'static str>,
        regions: Option<&'static str>,
        filters: Option<&'static str>,
        backfill: Option<&'static str>,
    },
    CancelMatch,
    /// `create_party` with `max_size`.
    CreateParty(Option<&'static str>),
    /// `join_party` by a code seen so far (a room's or a party's).
    JoinParty(CodeRef),
    LeaveParty,
    JoinById(RoomRef),
    /// `join_room` by id with `as` (`"spectator"` mostly).
    JoinAs(RoomRef, &'static str),
    JoinByCode(CodeRef),
    JoinNeither,
    Leave,
    List {
        status: Option<&'static str>,
        mode: Option<&'static str>,
        limit: Option<&'static str>,
    },
    Start,
    Finish(Option<&'static str>),
    SetRoomData(Option<&'static str>),
    SetPlayerData(Option<&'static str>),
    Kick(PlayerRef),
    /// `offer`, `answer` or `ice_candidate`; without `rid` the server
    /// replies only on refusal (v1.1 fire-and-forget).
    Signal {
        kind: &'static str,
        to: PlayerRef,
        payload: Payload,
        rid: bool,
    },
    Chat(&'static str),
    /// `set_ready` (1.2) with `ready` (absent, or of a wrong type too).
    SetReady(Option<&'static str>),
    /// `send` (1.2): to one player or (`None`) the room, `data` as a JSON
    /// fragment (absent: `None`), with or without `rid`.
    SendMsg {
        to: Option<PlayerRef>,
        data: Option<&'static str>,
        rid: bool,
    },
    Ping,
    SubscribeStats(Option<&'static str>),
    UnsubscribeStats,
    SubscribeRooms(Option<&'static str>),
    UnsubscribeRooms,
    /// A text frame sent as is (malformed messages).
    Raw(&'static str),
    Binary,
}

/// What a signal carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Payload {
    /// An SDP fixture from tests/fixtures/sdp, by file name.
    Sdp(&'static str),
    /// A field fragment as is (`"sdp": ...` or `"candidate": ...`).
    Field(&'static str),
    /// A candidate line from the fixtures, as a string or as an init object.
    Candidate { object: bool },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A fresh connection (no resume token), unless the slot is connected.
    Connect(usize),
    /// Close handshake from the client (the seat is held).
    Close(usize),
    /// The TCP connection is reset without a close frame (seat held).
    Drop(usize),
    /// A new connection with the last welcome's resume token: a resume, or
    /// a takeover when the slot is still connected.
    Resume(usize),
    /// A new connection with an older token (a fresh session), unless the
    /// slot is connected.
    ResumeStale(usize),
    /// Waits past every pending timer (reconnect grace, finished rooms).
    WaitTimers,
    AdminCloseRoom(RoomRef),
    AdminDisconnect(PlayerRef),
    /// A request by a slot (which resumes first if it is not connected).
    Send(usize, Req),
    /// Waits this many ms, then compares (fixed cases only: the random
    /// ones never wait on a timer they do not track).
    Sleep(u64),
}

pub const SDP_OFFERS: &[&str] = &[
    "chromium-offer-datachannel.sdp",
    "firefox-offer-av-data.sdp",
];
pub const SDP_ANSWERS: &[&str] = &[
    "firefox-answer-datachannel.sdp",
    "chromium-answer-av-data.sdp",
];
pub const CANDIDATE: &str = "candidate:4137388373 1 udp 1677729535 203.0.113.8 32983 typ srflx raddr 0.0.0.0 rport 0 generation 0 ufrag Uqnz network-cost 999";

const SLOTS: usize = 5;

fn slot() -> impl Strategy<Value = usize> {
    0..SLOTS
}

fn opt(values: &'static [&'static str]) -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![3 => Just(None), 4 => proptest::sample::select(values).prop_map(Some)]
}

fn player_ref() -> impl Strategy<Value = PlayerRef> {
    prop_oneof![
        6 => slot().prop_map(PlayerRef::Slot),
        1 => proptest::sample::select(&["p_nobody", "p_\"quoted\"", "p_é", ""][..])
            .prop_map(PlayerRef::Bad),
    ]
}

fn room_ref() -> impl Strategy<Value = RoomRef> {
    prop_oneof![
        6 => (0..4usize).prop_map(RoomRef::Known),
        1 => proptest::sample::select(&[
            "00000000-0000-0000-0000-000000000000",
            "not-a-room",
            "r\"q",
            "0123456789012345678901234567890123456789012345678901234567890123456789",
        ][..])
        .prop_map(RoomRef::Bad),
    ]
}

fn code_ref() -> impl Strategy<Value = CodeRef> {
    prop_oneof![
        4 => ((0..4usize), any::<bool>()).prop_map(|(index, lower)| CodeRef::Known { index, lower }),
        1 => proptest::sample::select(&["ZZZZZZ", "zzzzzz", " k7qx2m ", ""][..]).prop_map(CodeRef::Bad),
    ]
}

const MAX: &[&str] = &["2", "3", "4", "1", "0", "1000", "\"two\"", "-1"];
const MODE: &[&str] = &["\"default\"", "\"duel\"", "\"\"", "5"];
const FILTERS: &[&str] = &[
    "{}",
    "{\"map\":\"a\"}",
    "{\"map\":\"b\"}",
    "{\"map\":\"a\",\"lvl\":1}",
    "{\"deep\":{\"x\":1}}",
    "{\"list\":[1]}",
    "{\"n\":null}",
    "\"map\"",
];
const DATA: &[&str] = &[
    "{}",
    "{\"map\":\"a\"}",
    "{\"map\":\"b\",\"lvl\":1}",
    "{\"deep\":{\"x\":[1,2]}}",
    "[1]",
    "\"text\"",
];

/// `start_when_ready` (1.2): mostly on when given, so ready checks start
/// rooms; sometimes of the wrong type.
const WHEN_READY: &[&str] = &["true", "true", "false", "\"yes\""];

/// `backfill`: mostly on, so rooms that lose a player mid-game are
/// offered again; sometimes of the wrong type.
const BACKFILL: &[&str] = &["true", "true", "false", "1"];

/// 1000 and 1050 always match (windows of 100); 5000 never reaches them
/// (windows stop at 1000).
const SKILL: &[&str] = &["1000", "1050", "5000", "\"x\"", "1e400"];
/// eu alone, us (eu over the limit), eu over every limit; bad names and
/// values.
const REGIONS: &[&str] = &[
    "{\"eu\":30}",
    "{\"us\":40,\"eu\":200}",
    "{\"eu\":151}",
    "{\"eu west\":1}",
    "{\"eu\":-1}",
    "[]",
];

fn req() -> impl Strategy<Value = Req> {
    let queue = (
        opt(&["2", "3", "1", "\"2\""]),
        opt(&["2", "4", "0"]),
        opt(&["\"default\"", "\"duel\"", "\"\""]),
        opt(SKILL),
        opt(REGIONS),
        opt(&["{}", "{\"map\":\"a\"}", "{\"deep\":{\"x\":1}}"]),
        opt(BACKFILL),
    )
        .prop_map(
            |(max, min, mode, skill, regions, filters, backfill)| Req::QueueMatch {
                max,
                min,
                mode,
                skill,
                regions,
                filters,
                backfill,
            },
        );
    let find = (
        opt(MAX),
        opt(MODE),
        opt(FILTERS),
        opt(BACKFILL),
        proptest::option::weighted(0.3, proptest::sample::select(&["2", "0", "101"][..])),
        opt(WHEN_READY),
    )
        .prop_map(
            |(max, mode, filters, backfill, max_spectators, start_when_ready)| Req::FindMatch {
                max,
                mode,
                filters,
                backfill,
                max_spectators,
                start_when_ready,
            },
        );
    let create = (
        opt(&["true", "false", "\"yes\""]),
        opt(MAX),
        opt(MODE),
        opt(DATA),
        proptest::option::weighted(0.2, player_ref()),
        opt(BACKFILL),
        // Mostly places for spectators, so `JoinAs` finds some.
        prop_oneof![
            1 => Just(None),
            4 => proptest::sample::select(&["2", "2", "1", "0", "101", "-1"][..]).prop_map(Some),
        ],
        opt(WHEN_READY),
    )
        .prop_map(
            |(private, max, mode, data, allowed, backfill, max_spectators, start_when_ready)| {
                Req::CreateRoom {
                    private,
                    max,
                    mode,
                    data,
                    allowed,
                    backfill,
                    max_spectators,
                    start_when_ready,
                }
            },
        );
    let list = (
        opt(&["\"waiting\"", "\"active\"", "\"finished\"", "\"bogus\""]),
        opt(MODE),
        opt(&["1", "0", "1000", "-5"]),
    )
        .prop_map(|(status, mode, limit)| Req::List {
            status,
            mode,
            limit,
        });
    let payload = prop_oneof![
        3 => proptest::sample::select(SDP_OFFERS).prop_map(Payload::Sdp),
        2 => proptest::sample::select(SDP_ANSWERS).prop_map(Payload::Sdp),
        1 => proptest::sample::select(&["\"v=0\\r\\nnot an sdp\"", "42", "\"\""][..])
            .prop_map(Payload::Field),
    ];
    let sdp_signal = (
        proptest::sample::select(&["offer", "answer"][..]),
        player_ref(),
        payload,
        proptest::bool::weighted(0.8),
    )
        .prop_map(|(kind, to, payload, rid)| Req::Signal {
            kind,
            to,
            payload,
            rid,
        });
    let cand = prop_oneof![
        3 => any::<bool>().prop_map(|object| Payload::Candidate { object }),
        1 => proptest::sample::select(&[
            "\"\"",
            "\"candidate:bad\"",
            "{\"candidate\":\"\",\"sdpMid\":\"0\",\"sdpMLineIndex\":0,\"usernameFragment\":null}",
            "7",
        ][..])
        .prop_map(Payload::Field),
    ];
    let ice = (player_ref(), cand, proptest::bool::weighted(0.8)).prop_map(|(to, payload, rid)| {
        Req::Signal {
            kind: "ice_candidate",
            to,
            payload,
            rid,
        }
    });
    prop_oneof![
        6 => find,
        5 => create,
        5 => queue,
        2 => Just(Req::CancelMatch),
        2 => opt(&["2", "3", "1", "17", "\"4\""]).prop_map(Req::CreateParty),
        3 => code_ref().prop_map(Req::JoinParty),
        2 => Just(Req::LeaveParty),
        3 => room_ref().prop_map(Req::JoinById),
        5 => (
            room_ref(),
            proptest::sample::select(&["\"spectator\"", "\"spectator\"", "\"player\"", "\"ghost\"", "1"][..])
        )
            .prop_map(|(r, role)| Req::JoinAs(r, role)),
        3 => code_ref().prop_map(Req::JoinByCode),
        1 => Just(Req::JoinNeither),
        3 => Just(Req::Leave),
        2 => list,
        3 => Just(Req::Start),
        2 => opt(&["{\"winner\":\"ann\"}", "{}", "[1]"]).prop_map(Req::Finish),
        2 => opt(DATA).prop_map(Req::SetRoomData),
        2 => opt(DATA).prop_map(Req::SetPlayerData),
        2 => player_ref().prop_map(Req::Kick),
        3 => sdp_signal,
        2 => ice,
        2 => proptest::sample::select(&["\"hi\"", "\"\"", "\"   \"", "12", "\"ünïcode ✓\""][..])
            .prop_map(Req::Chat),
        4 => prop_oneof![
            6 => Just(Some("true")),
            2 => Just(Some("false")),
            1 => proptest::sample::select(&["1", "\"true\"", "null"][..]).prop_map(Some),
            1 => Just(None),
        ]
        .prop_map(Req::SetReady),
        4 => (
            proptest::option::weighted(0.5, player_ref()),
            prop_oneof![
                8 => proptest::sample::select(&[
                    "{\"move\":4}", "[1,\"two\",null]", "null", "12.50", "\"x\"",
                ][..]).prop_map(Some),
                1 => Just(Some(oversized_data())),
                1 => Just(None),
            ],
            proptest::bool::weighted(0.7),
        )
            .prop_map(|(to, data, rid)| Req::SendMsg { to, data, rid }),
        1 => Just(Req::Ping),
        // Never the default interval (1 s): pushes would race the steps.
        1 => proptest::sample::select(&["60000", "100", "70000", "\"x\""][..])
            .prop_map(|ms| Req::SubscribeStats(Some(ms))),
        1 => Just(Req::UnsubscribeStats),
        1 => opt(&["\"default\"", "\"duel\"", "\"\""]).prop_map(Req::SubscribeRooms),
        1 => Just(Req::UnsubscribeRooms),
        2 => proptest::sample::select(&[
            "not json",
            "[1,2]",
            "{}",
            "{\"type\":\"nope\",\"rid\":\"u\"}",
            "{\"type\":5}",
            "{\"type\":\"ping\",\"rid\":{\"a\":1}}",
            "{\"type\":\"join_room\",\"rid\":\"j\",\"room_id\":7}",
            "{\"type\":\"kick\",\"rid\":\"k\"}",
        ][..])
        .prop_map(Req::Raw),
        1 => Just(Req::Binary),
    ]
}

/// A `send` payload over the default `--max-send-bytes` (4096).
pub fn oversized_data() -> &'static str {
    static DATA: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DATA.get_or_init(|| format!("\"{}\"", "d".repeat(4100)))
}

pub fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => slot().prop_map(Step::Connect),
        2 => slot().prop_map(Step::Close),
        2 => slot().prop_map(Step::Drop),
        2 => slot().prop_map(Step::Resume),
        1 => slot().prop_map(Step::ResumeStale),
        1 => Just(Step::WaitTimers),
        1 => room_ref().prop_map(Step::AdminCloseRoom),
        1 => player_ref().prop_map(Step::AdminDisconnect),
        24 => (slot(), req()).prop_map(|(s, r)| Step::Send(s, r)),
    ]
}

/// `n` logical players (3 to 5) and up to `max_steps` steps over them.
pub fn case(max_steps: usize) -> impl Strategy<Value = (usize, Vec<Step>)> {
    (
        3..=SLOTS,
        proptest::collection::vec(step(), 1..=max_steps.max(1)),
    )
}
