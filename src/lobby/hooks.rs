//! What the engine tells the hooks: the [`HookEvent`]s of each change (only
//! recorded while webhooks are on), and the rooms that just started when
//! an allocator is asked first (their `game_start` waits for
//! [`Lobby::announce_start`]).

use uuid::Uuid;

use super::{Delivery, Lobby};
use crate::lobby::HookEvent;
use crate::protocol::{Allocation, Event, RoomStatus};

impl Lobby {
    /// Turns the recording of hook events on or off.
    pub fn record_hooks(&mut self, on: bool) {
        self.hooks = on.then(Vec::new);
    }

    /// Hook events since the last call, in the order things happened.
    pub fn take_hooks(&mut self) -> Vec<HookEvent> {
        match &mut self.hooks {
            Some(h) => std::mem::take(h),
            None => Vec::new(),
        }
    }

    /// Records an event built by `f`, when recording (built only then).
    pub(super) fn hook(&mut self, f: impl FnOnce(&Lobby) -> Option<HookEvent>) {
        if self.hooks.is_none() {
            return;
        }
        if let Some(ev) = f(self) {
            if let Some(h) = &mut self.hooks {
                h.push(ev);
            }
        }
    }

    /// The room's current object, as a hook event shows it (with `code`).
    pub(super) fn hook_room(&self, room_id: Uuid) -> Option<crate::protocol::RoomInfo> {
        self.rooms.get(&room_id).map(|r| r.info(true))
    }

    /// With `on`, a room that starts sends `room_status` at once but holds
    /// `game_start` until [`Lobby::announce_start`] (the allocator's turn).
    pub fn hold_starts(&mut self, on: bool) {
        self.hold_starts = on;
    }

    /// Rooms started (and holding their `game_start`) since the last call.
    pub fn take_starts(&mut self) -> Vec<Uuid> {
        std::mem::take(&mut self.starts)
    }

    /// Sends a held `game_start` with the allocation to the room's members
    /// as they are now; nothing if the room is gone or no longer active.
    pub fn announce_start(&mut self, room_id: Uuid, alloc: &Allocation, out: &mut Vec<Delivery>) {
        let Some(room) = self.rooms.get(&room_id) else {
            return;
        };
        if room.status != RoomStatus::Active {
            return;
        }
        // Players seated by a ticket get its id; everyone else (spectators,
        // players who joined otherwise) the plain event.
        let info = room.info(true);
        let mut plain = room.member_ids();
        for (ticket, players) in &room.tickets {
            plain.retain(|p| !players.contains(p));
            let here: Vec<String> = players
                .iter()
                .filter(|p| room.seat_index(p).is_some())
                .cloned()
                .collect();
            let event = Event::game_start(info.clone(), Some(alloc), Some(ticket.clone()));
            super::emit(out, here, event);
        }
        super::emit(out, plain, Event::game_start(info, Some(alloc), None));
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_json::json;

    use super::super::{Lobby, LobbyConfig};
    use crate::lobby::HookEvent;
    use crate::protocol::{Allocation, CreateRoom, Event, RoomStatus};

    fn lobby(players: &[&str]) -> Lobby {
        let mut l = Lobby::new(LobbyConfig {
            reconnect_grace: Duration::from_millis(100),
            ..LobbyConfig::default()
        });
        let mut out = Vec::new();
        for p in players {
            l.connect(p, p, vec![], &mut out);
        }
        l
    }

    fn create(l: &mut Lobby, pid: &str, max: u64) -> String {
        let req = CreateRoom {
            max_players: Some(max),
            ..CreateRoom::default()
        };
        l.create_room(pid, req, Instant::now(), &mut Vec::new())
            .unwrap()
            .room_id
    }

    /// (type, room status or reason, player) of each event, for compact
    /// comparisons.
    fn summary(events: &[HookEvent]) -> Vec<(String, String, String)> {
        events
            .iter()
            .map(|e| {
                let (detail, who) = match e {
                    HookEvent::RoomCreated { room } | HookEvent::MatchStarted { room } => (
                        room.status.as_str().to_string(),
                        room.players.len().to_string(),
                    ),
                    HookEvent::PlayerJoined { room, player } => {
                        (room.status.as_str().to_string(), player.player_id.clone())
                    }
                    HookEvent::PlayerLeft {
                        player_id, reason, ..
                    } => (
                        json!(reason).as_str().unwrap().to_string(),
                        player_id.clone(),
                    ),
                    HookEvent::RoomFinished { room, result } => {
                        (room.status.as_str().to_string(), json!(result).to_string())
                    }
                    HookEvent::RoomClosed { .. } => (String::new(), String::new()),
                };
                (e.kind().to_string(), detail, who)
            })
            .collect()
    }

    fn s(kind: &str, detail: &str, who: &str) -> (String, String, String) {
        (kind.into(), detail.into(), who.into())
    }

    #[test]
    fn a_game_from_creation_to_close() {
        let mut l = lobby(&["a", "b"]);
        l.record_hooks(true);
        let id = create(&mut l, "a", 2);
        let mut out = Vec::new();
        l.join_room("b", Some(&id), None, &mut out).unwrap();
        l.finish_game(
            "a",
            json!({"winner": "b"}).as_object().cloned(),
            Instant::now(),
            &mut out,
        )
        .unwrap();
        l.leave_room("b", &mut out).unwrap();
        let events = l.take_hooks();
        assert_eq!(
            summary(&events),
            vec![
                s("room.created", "waiting", "1"),
                s("player.joined", "waiting", "a"),
                s("player.joined", "waiting", "b"),
                s("match.started", "active", "2"),
                s("room.finished", "finished", r#"{"winner":"b"}"#),
                s("player.left", "left", "b"),
            ]
        );
        assert!(events.iter().all(|e| e.room_id() == id));
        assert!(l.take_hooks().is_empty(), "taken once");

        // A drop is no departure until the grace runs out.
        let now = Instant::now();
        l.disconnect("a", now, &mut out);
        l.tick(now + Duration::from_millis(50), &mut out);
        assert!(l.take_hooks().is_empty());
        l.tick(now + Duration::from_millis(150), &mut out);
        assert_eq!(
            summary(&l.take_hooks()),
            vec![s("player.left", "timeout", "a"), s("room.closed", "", "")]
        );
    }

    #[test]
    fn kicks_and_closes_name_their_reason() {
        let mut l = lobby(&["a", "b", "c"]);
        l.record_hooks(true);
        let id = create(&mut l, "a", 4);
        let mut out = Vec::new();
        l.join_room("b", Some(&id), None, &mut out).unwrap();
        l.join_room("c", Some(&id), None, &mut out).unwrap();
        l.take_hooks();
        l.kick("a", "b", &mut out).unwrap();
        let room = l.room_by_id_str(&id).unwrap().id;
        l.close_room(room, &mut out);
        assert_eq!(
            summary(&l.take_hooks()),
            vec![
                s("player.left", "kicked", "b"),
                s("player.left", "closed", "a"),
                s("player.left", "closed", "c"),
                s("room.closed", "", ""),
            ]
        );
    }

    #[test]
    fn nothing_is_recorded_while_off() {
        let mut l = lobby(&["a", "b"]);
        let id = create(&mut l, "a", 2);
        l.join_room("b", Some(&id), None, &mut Vec::new()).unwrap();
        assert!(l.take_hooks().is_empty());
        l.record_hooks(true);
        l.leave_room("b", &mut Vec::new()).unwrap();
        l.record_hooks(false);
        l.leave_room("a", &mut Vec::new()).unwrap();
        assert!(l.take_hooks().is_empty());
    }

    fn kinds(out: &[super::Delivery]) -> Vec<&'static str> {
        out.iter()
            .map(|d| match &d.event {
                Event::RoomStatus { .. } => "room_status",
                Event::GameStart { .. } => "game_start",
                Event::PlayerJoined { .. } => "player_joined",
                Event::ChatHistory { .. } => "chat_history",
                _ => "other",
            })
            .collect()
    }

    #[test]
    fn a_held_start_waits_for_its_announcement() {
        let mut l = lobby(&["a", "b"]);
        l.hold_starts(true);
        let id = create(&mut l, "a", 2);
        let mut out = Vec::new();
        l.join_room("b", Some(&id), None, &mut out).unwrap();
        assert_eq!(
            kinds(&out),
            vec!["player_joined", "chat_history", "room_status"]
        );
        let room = l.room_by_id_str(&id).unwrap().id;
        assert_eq!(l.take_starts(), vec![room]);
        assert!(l.take_starts().is_empty());
        assert_eq!(l.room(&room).unwrap().status, RoomStatus::Active);

        let mut out = Vec::new();
        let alloc = Allocation {
            allocation: json!({"address": "10.0.0.1:7777"}).as_object().cloned(),
            allocation_error: None,
        };
        l.announce_start(room, &alloc, &mut out);
        assert_eq!(out.len(), 1);
        let mut to = out[0].to.clone();
        to.sort();
        assert_eq!(to, vec!["a", "b"]);
        let text = out[0].event.to_json();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "game_start");
        assert_eq!(v["allocation"]["address"], "10.0.0.1:7777");
        assert!(v.get("allocation_error").is_none());

        // A failed allocation says so; a room no longer active gets nothing.
        let failed = Allocation {
            allocation: None,
            allocation_error: Some("allocator timeout (3000 ms)".into()),
        };
        let mut out = Vec::new();
        l.announce_start(room, &failed, &mut out);
        let v: serde_json::Value = serde_json::from_str(&out[0].event.to_json()).unwrap();
        assert!(v["allocation"].is_null() && v.as_object().unwrap().contains_key("allocation"));
        assert_eq!(v["allocation_error"], "allocator timeout (3000 ms)");
        // Clients read a present null apart from an absent field.
        match serde_json::from_value::<Event>(v).unwrap() {
            Event::GameStart {
                allocation,
                allocation_error,
                ..
            } => {
                assert_eq!(allocation, Some(None));
                assert_eq!(
                    allocation_error.as_deref(),
                    Some("allocator timeout (3000 ms)")
                );
            }
            e => panic!("{e:?}"),
        }
        l.finish_game("a", None, Instant::now(), &mut Vec::new())
            .unwrap();
        let mut out = Vec::new();
        l.announce_start(room, &failed, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn without_hold_game_start_has_no_allocation_fields() {
        let mut l = lobby(&["a", "b"]);
        let id = create(&mut l, "a", 2);
        let mut out = Vec::new();
        l.join_room("b", Some(&id), None, &mut out).unwrap();
        assert!(l.take_starts().is_empty());
        let start = out
            .iter()
            .find(|d| matches!(d.event, Event::GameStart { .. }))
            .expect("game_start at once");
        let v: serde_json::Value = serde_json::from_str(&start.event.to_json()).unwrap();
        assert!(v.get("allocation").is_none() && v.get("allocation_error").is_none());
        match serde_json::from_value::<Event>(v).unwrap() {
            Event::GameStart { allocation, .. } => assert_eq!(allocation, None),
            e => panic!("{e:?}"),
        }
    }
}
