//! The wire side of the harness: a step's request as the text frame a
//! client sends (ids resolved per server), and a minimal HTTP/1.1 client
//! for the admin API and the listings.

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::steps::{CodeRef, Payload, PlayerRef, Req, RoomRef, CANDIDATE};

/// How a server's harness names the players, rooms and codes of a step.
pub trait Resolve {
    fn player(&self, r: PlayerRef) -> String;
    fn room(&self, r: RoomRef) -> String;
    fn code(&self, r: CodeRef) -> String;
}

/// The frame of a request; true for a signal or a `send` sent without `rid`.
pub fn render(req: &Req, seq: u64, ids: &impl Resolve) -> (Message, bool) {
    let s = |v: &str| Value::String(v.to_string()).to_string();
    let mut f: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            f.push((k.to_string(), v.to_string()));
        }
    };
    let kind = match req {
        Req::FindMatch {
            max,
            mode,
            filters,
            backfill,
            max_spectators,
            start_when_ready,
        } => {
            put("max_spectators", *max_spectators);
            put("start_when_ready", *start_when_ready);
            put("max_players", *max);
            put("mode", *mode);
            put("filters", *filters);
            put("backfill", *backfill);
            "find_match"
        }
        Req::CreateRoom {
            private,
            max,
            mode,
            data,
            allowed,
            backfill,
            max_spectators,
            start_when_ready,
        } => {
            put("private", *private);
            put("start_when_ready", *start_when_ready);
            put("backfill", *backfill);
            put("max_spectators", *max_spectators);
            put("max_players", *max);
            put("mode", *mode);
            put("data", *data);
            let allowed = allowed.map(|p| format!("[{}]", s(&ids.player(p))));
            put("allowed_players", allowed.as_deref());
            "create_room"
        }
        Req::QueueMatch {
            max,
            min,
            mode,
            skill,
            regions,
            filters,
            backfill,
        } => {
            put("max_players", *max);
            put("min_players", *min);
            put("mode", *mode);
            put("skill", *skill);
            put("regions", *regions);
            put("filters", *filters);
            put("backfill", *backfill);
            "queue_match"
        }
        Req::CancelMatch => "cancel_match",
        Req::CreateParty(n) => {
            put("max_size", *n);
            "create_party"
        }
        Req::JoinParty(c) => {
            put("code", Some(&s(&ids.code(*c))));
            "join_party"
        }
        Req::LeaveParty => "leave_party",
        Req::JoinById(r) => {
            put("room_id", Some(&s(&ids.room(*r))));
            "join_room"
        }
        Req::JoinAs(r, role) => {
            put("room_id", Some(&s(&ids.room(*r))));
            put("as", Some(role));
            "join_room"
        }
        Req::JoinByCode(c) => {
            put("code", Some(&s(&ids.code(*c))));
            "join_room"
        }
        Req::JoinNeither => "join_room",
        Req::Leave => "leave_room",
        Req::List {
            status,
            mode,
            limit,
        } => {
            put("status", *status);
            put("mode", *mode);
            put("limit", *limit);
            "list_rooms"
        }
        Req::Start => "start_game",
        Req::Finish(result) => {
            put("result", *result);
            "finish_game"
        }
        Req::SetRoomData(d) => {
            put("data", *d);
            "set_room_data"
        }
        Req::SetPlayerData(d) => {
            put("data", *d);
            "set_player_data"
        }
        Req::Kick(p) => {
            put("player_id", Some(&s(&ids.player(*p))));
            "kick"
        }
        Req::Signal {
            kind, to, payload, ..
        } => {
            put("to", Some(&s(&ids.player(*to))));
            let field = if *kind == "ice_candidate" {
                "candidate"
            } else {
                "sdp"
            };
            let value = match payload {
                Payload::Sdp(file) => s(&sdp(file)),
                Payload::Field(v) => v.to_string(),
                Payload::Candidate { object: false } => s(CANDIDATE),
                Payload::Candidate { object: true } => json!({
                    "candidate": CANDIDATE, "sdpMid": "0",
                    "sdpMLineIndex": 0, "usernameFragment": "Uqnz"
                })
                .to_string(),
            };
            put(field, Some(&value));
            kind
        }
        Req::Chat(t) => {
            put("text", Some(t));
            "chat"
        }
        Req::SetReady(ready) => {
            put("ready", *ready);
            "set_ready"
        }
        Req::SendMsg { to, data, .. } => {
            let to = to.map(|p| s(&ids.player(p)));
            put("to", to.as_deref());
            put("data", *data);
            "send"
        }
        Req::Ping => "ping",
        Req::SubscribeStats(ms) => {
            put("interval_ms", *ms);
            "subscribe_stats"
        }
        Req::UnsubscribeStats => "unsubscribe_stats",
        Req::SubscribeRooms(mode) => {
            put("mode", *mode);
            "subscribe_rooms"
        }
        Req::UnsubscribeRooms => "unsubscribe_rooms",
        Req::Raw(text) => return (Message::Text((*text).into()), false),
        Req::Binary => return (Message::Binary(vec![1u8, 2, 3].into()), false),
    };
    let rid_less = matches!(
        req,
        Req::Signal { rid: false, .. } | Req::SendMsg { rid: false, .. }
    );
    let mut text = format!("{{\"type\":{}", s(kind));
    if !rid_less {
        text.push_str(&format!(",\"rid\":{seq}"));
    }
    for (k, v) in f {
        text.push_str(&format!(",{}:{v}", s(&k)));
    }
    text.push('}');
    (Message::Text(text.into()), rid_less)
}

/// Percent-encodes everything but unreserved characters.
pub fn urlenc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn sdp(file: &str) -> String {
    let path = format!("{}/tests/fixtures/sdp/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).expect("sdp fixture")
}
