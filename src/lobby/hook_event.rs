//! The lobby changes a game's backend hears of (webhooks). Both engines
//! produce the same [`HookEvent`]s: the in-memory one directly, the Redis
//! one as stream entries that its node reads back into them.

use serde_json::{json, Value};

use crate::protocol::{JsonObject, LeaveReason, PlayerInfo, RoomInfo};

/// Every event type, in the order the README lists them.
pub const EVENT_TYPES: &[&str] = &[
    "room.created",
    "player.joined",
    "player.left",
    "match.started",
    "room.finished",
    "room.closed",
];

#[derive(Debug, Clone, PartialEq)]
pub enum HookEvent {
    /// A room was made; `room` has its creator seated.
    RoomCreated { room: RoomInfo },
    /// A seat was taken (the creator's too); `room` is after the join.
    PlayerJoined { room: RoomInfo, player: PlayerInfo },
    /// A seat was given up for good (a dropped player's only once its
    /// grace ran out: reason `timeout`).
    PlayerLeft {
        room_id: String,
        player_id: String,
        reason: LeaveReason,
    },
    /// The room became `active`.
    MatchStarted { room: RoomInfo },
    /// The host finished the game.
    RoomFinished {
        room: RoomInfo,
        result: Option<JsonObject>,
    },
    /// The room is gone (emptied, finished TTL, idle, admin).
    RoomClosed { room_id: String },
}

impl HookEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            HookEvent::RoomCreated { .. } => "room.created",
            HookEvent::PlayerJoined { .. } => "player.joined",
            HookEvent::PlayerLeft { .. } => "player.left",
            HookEvent::MatchStarted { .. } => "match.started",
            HookEvent::RoomFinished { .. } => "room.finished",
            HookEvent::RoomClosed { .. } => "room.closed",
        }
    }

    /// The room the event is about: events of one room are delivered in
    /// order, each room independently of the others.
    pub fn room_id(&self) -> &str {
        match self {
            HookEvent::RoomCreated { room }
            | HookEvent::PlayerJoined { room, .. }
            | HookEvent::MatchStarted { room }
            | HookEvent::RoomFinished { room, .. } => &room.room_id,
            HookEvent::PlayerLeft { room_id, .. } | HookEvent::RoomClosed { room_id } => room_id,
        }
    }

    /// The `data` object of the body.
    pub fn data(&self) -> Value {
        match self {
            HookEvent::RoomCreated { room } | HookEvent::MatchStarted { room } => {
                json!({ "room": room })
            }
            HookEvent::PlayerJoined { room, player } => json!({ "room": room, "player": player }),
            HookEvent::PlayerLeft {
                room_id,
                player_id,
                reason,
            } => json!({ "room_id": room_id, "player_id": player_id, "reason": reason }),
            HookEvent::RoomFinished { room, result } => json!({ "room": room, "result": result }),
            HookEvent::RoomClosed { room_id } => json!({ "room_id": room_id }),
        }
    }
}
