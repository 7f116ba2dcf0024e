//! The messages the store's script publishes to nodes, and how a node turns
//! them into protocol events for its own connections.
//!
//! A notice carries a snapshot of the room after the change plus event
//! specs (`{k: kind, to: [players], ...}`); rendering is a pure function of
//! (notice, recipient), so the same notice kept in a held player's pending
//! list renders the same events when the player comes back on any node.
//! Room data stays raw JSON text inside the script (Lua's cjson would round
//! numbers to 14 digits and reorder keys), and is parsed only here.

use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::Value;

use crate::protocol::{
    ChatMessage, Event, JsonObject, LeaveReason, PlayerInfo, RoomInfo, RoomStatus, Visibility,
};

/// cjson writes an empty array as `{}`: accept both for lists.
pub(crate) fn list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    match Value::deserialize(d)? {
        Value::Array(items) => items
            .into_iter()
            .map(|v| serde_json::from_value(v).map_err(de::Error::custom))
            .collect(),
        Value::Object(m) if m.is_empty() => Ok(Vec::new()),
        Value::Null => Ok(Vec::new()),
        other => Err(de::Error::custom(format!("expected a list, got {other}"))),
    }
}

/// A room as the script stores it.
#[derive(Debug, Clone, Deserialize)]
pub struct RoomRec {
    pub id: String,
    pub code: String,
    #[serde(rename = "priv", default)]
    pub private: bool,
    pub mode: String,
    pub max: u64,
    pub st: RoomStatus,
    pub ca: String,
    #[serde(default)]
    pub seq: u64,
    /// Raw JSON object text.
    pub data: String,
    #[serde(default, deserialize_with = "list")]
    pub pl: Vec<SeatRec>,
    /// Refilled through matchmaking while active (`backfill`).
    #[serde(default)]
    pub bf: bool,
    /// Spectators (1.1), in join order, and their places.
    #[serde(default, deserialize_with = "list")]
    pub sp: Vec<SeatRec>,
    #[serde(default)]
    pub msp: u64,
    /// 1.2: `start_when_ready`.
    #[serde(default)]
    pub swr: bool,
    /// Raw `chat` event texts, oldest first.
    #[serde(default, deserialize_with = "list")]
    pub chat: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SeatRec {
    pub id: String,
    pub nm: String,
    /// Raw JSON object text.
    pub dt: String,
    pub ja: String,
    pub c: bool,
    #[serde(default)]
    pub n: String,
    /// 1.2: the ready flag (seats only).
    #[serde(default)]
    pub rd: bool,
}

fn parse_obj(text: &str) -> JsonObject {
    serde_json::from_str(text).unwrap_or_default()
}

fn parse_ts(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

impl SeatRec {
    pub fn info(&self) -> PlayerInfo {
        PlayerInfo {
            player_id: self.id.clone(),
            name: self.nm.clone(),
            data: parse_obj(&self.dt),
            joined_at: parse_ts(&self.ja),
            connected: self.c,
            ready: self.rd,
        }
    }
}

impl RoomRec {
    /// The room object; `code` only for members.
    pub fn info(&self, for_member: bool) -> RoomInfo {
        RoomInfo {
            room_id: self.id.clone(),
            code: for_member.then(|| self.code.clone()),
            visibility: if self.private {
                Visibility::Private
            } else {
                Visibility::Public
            },
            mode: self.mode.clone(),
            max_players: self.max,
            status: self.st,
            host: self.pl.first().map(|s| s.id.clone()),
            created_at: parse_ts(&self.ca),
            data: parse_obj(&self.data),
            players: self.pl.iter().map(SeatRec::info).collect(),
            backfill: self.bf,
            max_spectators: self.msp,
            spectators: self.sp.iter().map(SeatRec::info).collect(),
            start_when_ready: self.swr,
        }
    }

    fn seat(&self, pid: &str) -> Option<&SeatRec> {
        self.pl.iter().find(|s| s.id == pid)
    }
}

/// One event of a notice, for the players in `to`.
#[derive(Debug, Clone, Deserialize)]
pub struct Spec {
    /// The event's type (`player_joined`...), or `raw` for a ready text.
    #[serde(rename = "k")]
    pub kind: String,
    #[serde(default, deserialize_with = "list")]
    pub to: Vec<String>,
    /// The player the event is about.
    #[serde(rename = "p", default)]
    pub player: Option<String>,
    #[serde(default)]
    pub reason: Option<LeaveReason>,
    #[serde(default)]
    pub status: Option<RoomStatus>,
    /// `finish_game`'s result, raw JSON.
    #[serde(default)]
    pub result: Option<String>,
    /// A ready event text (chat, relayed signals).
    #[serde(rename = "x", default)]
    pub raw: Option<String>,
    /// `game_start` after the allocation hook: `alloc` (raw JSON object)
    /// or `aerr` (why there is none).
    #[serde(default)]
    pub al: bool,
    #[serde(default)]
    pub alloc: Option<String>,
    #[serde(default)]
    pub aerr: Option<String>,
    /// The ticket of `game_start` (a room formed by `queue_match`), of
    /// `ticket_expired` or of `ticket_cancelled`.
    #[serde(default)]
    pub tid: Option<String>,
    /// `ticket_queued`: the ticket.
    #[serde(default)]
    pub tk: Option<TicketRec>,
    /// `party_updated`: the party as it was then.
    #[serde(default)]
    pub pt: Option<PartyRec>,
    /// `player_ready` (1.2): the flag as set.
    #[serde(default)]
    pub rd: Option<bool>,
}

/// A party as the script shows it (members with name and connection).
#[derive(Debug, Clone, Deserialize)]
pub struct PartyRec {
    pub id: String,
    pub code: String,
    pub max: u64,
    #[serde(deserialize_with = "list")]
    pub m: Vec<PartyMemberRec>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PartyMemberRec {
    pub id: String,
    pub nm: String,
    pub c: bool,
}

impl PartyRec {
    pub fn info(&self) -> crate::protocol::PartyInfo {
        crate::protocol::PartyInfo {
            party_id: self.id.clone(),
            code: self.code.clone(),
            leader: self.m.first().map(|m| m.id.clone()).unwrap_or_default(),
            members: self
                .m
                .iter()
                .map(|m| crate::protocol::PartyMember {
                    player_id: m.id.clone(),
                    name: m.nm.clone(),
                    connected: m.c,
                })
                .collect(),
            max_size: self.max,
        }
    }
}

impl Spec {
    fn allocation(&self) -> Option<crate::protocol::Allocation> {
        self.al.then(|| crate::protocol::Allocation {
            allocation: self.alloc.as_deref().map(parse_obj),
            allocation_error: self.aerr.clone(),
        })
    }
}

/// The reply to the request that made the change.
#[derive(Debug, Clone, Deserialize)]
pub struct ReplySpec {
    /// The requester.
    #[serde(rename = "p")]
    pub player: String,
    /// The request's `rid`, raw JSON.
    pub rid: String,
    /// What the reply carries: `room`, `match` (room and `created`) or
    /// `empty`.
    pub kind: String,
    #[serde(default)]
    pub created: bool,
    /// `ticket`: the queued ticket.
    #[serde(default)]
    pub tk: Option<TicketRec>,
    /// `party`: the party.
    #[serde(default)]
    pub pt: Option<PartyRec>,
}

/// A ticket as `queue_match` answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct TicketRec {
    pub id: String,
    #[serde(deserialize_with = "list")]
    pub pl: Vec<String>,
    pub qa: String,
}

impl TicketRec {
    pub fn info(&self) -> crate::protocol::TicketInfo {
        crate::protocol::TicketInfo {
            ticket_id: self.id.clone(),
            players: self.pl.clone(),
            queued_at: self.qa.parse().unwrap_or_default(),
        }
    }
}

/// A connection's registration, done by the `hello` operation.
#[derive(Debug, Clone, Deserialize)]
pub struct Hello {
    pub conn: String,
    #[serde(rename = "p")]
    pub player: String,
    pub name: String,
    pub resumed: bool,
    #[serde(rename = "tok")]
    pub token: String,
    pub epoch: u64,
    /// Notices kept while the player was away, oldest first.
    #[serde(default, deserialize_with = "list")]
    pub pending: Vec<String>,
    #[serde(default)]
    pub dropped: u64,
    /// The player's room after the registration.
    #[serde(default)]
    pub room: Option<RoomRec>,
    /// The party it is still in (a resume).
    #[serde(default)]
    pub party: Option<PartyRec>,
}

/// What the store's script publishes to a node, by the tag `t`.
// Parsed and consumed one at a time, never stored: the size difference of
// the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Notice {
    /// A change of the lobby: the room after it, its events, and the reply
    /// to the request that made it (for a requester on this node).
    Change {
        #[serde(default)]
        room: Option<RoomRec>,
        #[serde(rename = "ev", default, deserialize_with = "list")]
        events: Vec<Spec>,
        #[serde(default)]
        reply: Option<ReplySpec>,
    },
    /// A connection of this node is registered: its `welcome`.
    Hello(Box<Hello>),
    /// The player connected again elsewhere: close its socket here (4001).
    Replaced {
        #[serde(rename = "p")]
        player: String,
    },
    /// The admin API disconnected the player: close its socket here.
    Kill {
        #[serde(rename = "p")]
        player: String,
    },
    /// The store holds the seat of a player whose connection ended here.
    Gone {
        #[serde(rename = "p")]
        player: String,
    },
    /// For the PeerJS peer `to` connected here: a message `x` to send, or
    /// the end of its connection `close`, taken over on another node.
    PeerJs {
        to: String,
        #[serde(default)]
        x: Option<String>,
        #[serde(default)]
        close: Option<u64>,
    },
    /// A relayed signal for a player connected here.
    Signal {
        to: String,
        /// The event text, ready to send.
        #[serde(rename = "x")]
        event: String,
    },
}

/// A change of the live room list, published on the list channel.
#[derive(Debug, Clone, Deserialize)]
pub struct ListingNotice {
    pub k: String,
    pub mode: String,
    pub id: String,
    #[serde(default)]
    pub room: Option<RoomRec>,
}

impl ListingNotice {
    pub fn event(&self) -> Option<Event> {
        match (self.k.as_str(), &self.room) {
            ("listed", Some(r)) => Some(Event::RoomListed {
                room: r.info(false),
            }),
            ("updated", Some(r)) => Some(Event::RoomUpdated {
                room: r.info(false),
            }),
            ("delisted", _) => Some(Event::RoomDelisted {
                room_id: self.id.clone(),
            }),
            _ => None,
        }
    }
}

impl Spec {
    /// The event text of this spec (the same for every recipient).
    pub fn render(&self, room: Option<&RoomRec>) -> Option<String> {
        if let Some(x) = &self.raw {
            return Some(x.clone());
        }
        let event = match self.roomless_event() {
            Some(event) => event,
            None => self.room_event(room?)?,
        };
        Some(event.to_json())
    }

    /// The events about tickets and parties: they need no room.
    fn roomless_event(&self) -> Option<Event> {
        match self.kind.as_str() {
            "ticket_expired" => Some(Event::TicketExpired {
                ticket_id: self.tid.clone()?,
            }),
            "ticket_cancelled" => Some(Event::TicketCancelled {
                ticket_id: self.tid.clone()?,
            }),
            "ticket_queued" => Some(Event::TicketQueued {
                ticket: self.tk.as_ref()?.info(),
            }),
            "party_updated" => Some(Event::PartyUpdated {
                party: self.pt.as_ref()?.info(),
            }),
            _ => None,
        }
    }

    /// The events about `room`, built from its snapshot.
    fn room_event(&self, room: &RoomRec) -> Option<Event> {
        let room_id = room.id.clone();
        let pid = || self.player.clone().unwrap_or_default();
        let event = match self.kind.as_str() {
            "player_joined" => Event::PlayerJoined {
                room_id,
                player: room.seat(self.player.as_deref()?)?.info(),
            },
            "player_left" => Event::PlayerLeft {
                room_id,
                player_id: pid(),
                reason: self.reason.unwrap_or(LeaveReason::Left),
            },
            "player_disconnected" => Event::PlayerDisconnected {
                room_id,
                player_id: pid(),
            },
            "player_reconnected" => Event::PlayerReconnected {
                room_id,
                player_id: pid(),
            },
            "host_changed" => Event::HostChanged {
                room_id,
                host: pid(),
            },
            "room_status" => Event::RoomStatus {
                room_id,
                status: self.status.unwrap_or(room.st),
                result: self.result.as_deref().map(parse_obj),
            },
            "game_start" => Event::game_start(
                room.info(true),
                self.allocation().as_ref(),
                self.tid.clone(),
            ),
            "room_data" => Event::RoomData {
                room_id,
                data: parse_obj(&room.data),
            },
            "player_data" => Event::PlayerData {
                room_id,
                player_id: pid(),
                data: parse_obj(&room.seat(self.player.as_deref()?)?.dt),
            },
            "player_ready" => Event::PlayerReady {
                room_id,
                player_id: pid(),
                ready: self.rd?,
            },
            "kicked" => Event::Kicked { room_id },
            "room_joined" => Event::RoomJoined {
                room: room.info(true),
            },
            "spectator_joined" => Event::SpectatorJoined {
                room_id,
                player: room
                    .sp
                    .iter()
                    .find(|s| Some(&s.id) == self.player.as_ref())?
                    .info(),
            },
            "spectator_left" => Event::SpectatorLeft {
                room_id,
                player_id: pid(),
                reason: self.reason.unwrap_or(LeaveReason::Left),
            },
            // For nodes only: a member's connection moved to another node
            // (its room snapshot updates their routes).
            "moved" => return None,
            "chat_history" => Event::ChatHistory {
                room_id,
                messages: room
                    .chat
                    .iter()
                    .filter_map(|c| serde_json::from_str::<ChatMessage>(c).ok())
                    .collect(),
            },
            other => {
                tracing::warn!("unknown notice event {other:?}");
                return None;
            }
        };
        Some(event)
    }
}

impl Notice {
    /// Every event text of a change for one player, in order (used for the
    /// pending events of a returning player); nothing for other notices.
    pub fn render_for(&self, pid: &str) -> Vec<String> {
        let Notice::Change { room, events, .. } = self else {
            return Vec::new();
        };
        events
            .iter()
            .filter(|s| s.to.iter().any(|t| t == pid))
            .filter_map(|s| s.render(room.as_ref()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_lists_from_cjson_parse() {
        let text = r#"{"id":"r1","code":"ABCDEF","priv":false,"mode":"default","max":2,
            "st":"waiting","ca":"2026-11-21T19:42:01.745Z","seq":3,"data":"{\"a\":12345678901234567}",
            "pl":[{"id":"p1","nm":"ann","dt":"{}","ja":"2026-11-21T19:42:01.745Z","c":true,"n":"x"}],
            "chat":{},"kk":{},"ap":{},"ar":{},"bk":["default\u001f2"]}"#;
        let r: RoomRec = serde_json::from_str(text).unwrap();
        assert!(r.chat.is_empty());
        let info = r.info(true);
        assert_eq!(info.code.as_deref(), Some("ABCDEF"));
        assert_eq!(info.host.as_deref(), Some("p1"));
        // Data is kept as text by the script, so big numbers survive.
        assert_eq!(info.data["a"], serde_json::json!(12345678901234567u64));
        assert!(r.info(false).code.is_none());
    }

    #[test]
    fn render_for_filters_by_recipient() {
        let n: Notice = serde_json::from_str(
            r#"{"t":"change","ev":[{"k":"raw","to":["a"],"x":"{\"type\":\"offer\"}"},
                       {"k":"raw","to":["b"],"x":"{\"type\":\"answer\"}"}]}"#,
        )
        .unwrap();
        assert_eq!(n.render_for("a"), vec![r#"{"type":"offer"}"#.to_string()]);
        assert_eq!(n.render_for("b"), vec![r#"{"type":"answer"}"#.to_string()]);
        assert!(n.render_for("c").is_empty());
    }
}
