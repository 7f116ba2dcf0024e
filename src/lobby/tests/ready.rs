//! Ready checks (1.2): `set_ready`, the `player_ready` event, and rooms
//! made with `start_when_ready` starting once every seated player is.

use std::time::{Duration, Instant};

use super::super::{Delivery, Lobby, LobbyConfig};
use super::connected;
use crate::protocol::{CreateRoom, ErrorCode, Event, FindMatch, LeaveReason, RoomStatus};

fn room_of(l: &mut Lobby, host: &str, max: u64, when_ready: bool) -> String {
    let mut out = Vec::new();
    let req = CreateRoom {
        max_players: Some(max),
        max_spectators: Some(2),
        start_when_ready: when_ready,
        ..CreateRoom::default()
    };
    l.create_room(host, req, Instant::now(), &mut out)
        .expect("create_room")
        .room_id
}

fn join(l: &mut Lobby, pid: &str, room: &str) {
    let mut out = Vec::new();
    l.join_room(pid, Some(room), None, &mut out).expect("join");
}

fn kinds(out: &[Delivery]) -> Vec<&'static str> {
    out.iter()
        .map(|d| match &d.event {
            Event::PlayerReady { .. } => "player_ready",
            Event::RoomStatus { .. } => "room_status",
            Event::GameStart { .. } => "game_start",
            Event::PlayerLeft { .. } => "player_left",
            Event::HostChanged { .. } => "host_changed",
            Event::Kicked { .. } => "kicked",
            Event::PlayerDisconnected { .. } => "player_disconnected",
            Event::PlayerReconnected { .. } => "player_reconnected",
            _ => "other",
        })
        .collect()
}

#[test]
fn set_ready_tells_every_member_once_per_change() {
    let mut l = connected(LobbyConfig::default(), &["a", "b", "s"]);
    let room = room_of(&mut l, "a", 4, false);
    join(&mut l, "b", &room);
    let mut out = Vec::new();
    l.spectate("s", Some(&room), None, &mut out).unwrap();

    let mut out = Vec::new();
    let info = l.set_ready("b", true, &mut out).unwrap();
    assert!(info.players[1].ready && !info.players[0].ready);
    assert_eq!(kinds(&out), ["player_ready"]);
    assert_eq!(out[0].to, ["a", "b", "s"], "spectators hear it too");
    match &out[0].event {
        Event::PlayerReady {
            player_id, ready, ..
        } => assert_eq!((player_id.as_str(), *ready), ("b", true)),
        other => panic!("{other:?}"),
    }

    // The same value again: the room, no event.
    let mut out = Vec::new();
    assert!(l.set_ready("b", true, &mut out).unwrap().players[1].ready);
    assert!(out.is_empty());

    // Back to not ready: an event again. Without start_when_ready, all
    // ready does nothing.
    let mut out = Vec::new();
    l.set_ready("b", false, &mut out).unwrap();
    assert_eq!(kinds(&out), ["player_ready"]);
    l.set_ready("a", true, &mut out).unwrap();
    l.set_ready("b", true, &mut out).unwrap();
    assert_eq!(l.room_of("a").unwrap().status, RoomStatus::Waiting);
    l.check_invariants().unwrap();
}

#[test]
fn set_ready_refusals() {
    let mut l = connected(LobbyConfig::default(), &["a", "b", "s", "x"]);
    let mut out = Vec::new();
    let code = |r: Result<crate::protocol::RoomInfo, crate::protocol::ProtoError>| {
        r.map(|_| ()).unwrap_err().code
    };
    assert_eq!(code(l.set_ready("x", true, &mut out)), ErrorCode::NotInRoom);
    let room = room_of(&mut l, "a", 2, false);
    l.spectate("s", Some(&room), None, &mut out).unwrap();
    assert_eq!(code(l.set_ready("s", true, &mut out)), ErrorCode::Forbidden);
    join(&mut l, "b", &room);
    // Full: started.
    assert_eq!(
        code(l.set_ready("a", true, &mut out)),
        ErrorCode::RoomNotWaiting
    );
}

#[test]
fn the_room_starts_when_the_last_seated_player_is_ready() {
    let mut l = connected(LobbyConfig::default(), &["a", "b", "c", "s"]);
    let room = room_of(&mut l, "a", 4, true);
    assert!(l.room_of("a").unwrap().info(true).start_when_ready);
    let mut out = Vec::new();
    // Alone and ready: not enough players.
    l.set_ready("a", true, &mut out).unwrap();
    assert_eq!(l.room_of("a").unwrap().status, RoomStatus::Waiting);
    join(&mut l, "b", &room);
    join(&mut l, "c", &room);
    l.spectate("s", Some(&room), None, &mut out).unwrap();
    l.set_ready("b", true, &mut out).unwrap();
    assert_eq!(l.room_of("a").unwrap().status, RoomStatus::Waiting);

    let mut out = Vec::new();
    let info = l.set_ready("c", true, &mut out).unwrap();
    assert_eq!(
        info.status,
        RoomStatus::Active,
        "the reply shows it started"
    );
    assert_eq!(kinds(&out), ["player_ready", "room_status", "game_start"]);
    assert!(out.iter().all(|d| d.to == ["a", "b", "c", "s"]));
    let s = l.stats();
    assert_eq!((s.matches_started, s.active_rooms), (1, 1));
    // Started: ready is over.
    assert_eq!(
        l.set_ready("c", false, &mut out).unwrap_err().code,
        ErrorCode::RoomNotWaiting
    );
    l.check_invariants().unwrap();
}

#[test]
fn a_player_who_leaves_or_is_kicked_no_longer_counts() {
    let mut l = connected(LobbyConfig::default(), &["a", "b", "c"]);
    let room = room_of(&mut l, "a", 4, true);
    join(&mut l, "b", &room);
    join(&mut l, "c", &room);
    let mut out = Vec::new();
    l.set_ready("a", true, &mut out).unwrap();
    l.set_ready("b", true, &mut out).unwrap();
    // c, not ready, is kicked: a and b are all ready.
    let mut out = Vec::new();
    l.kick("a", "c", &mut out).unwrap();
    assert_eq!(
        kinds(&out),
        ["kicked", "player_left", "room_status", "game_start"]
    );
    assert_eq!(l.room_of("a").unwrap().status, RoomStatus::Active);

    // The host leaves: the rest are ready, the new host is told first.
    let mut l = connected(LobbyConfig::default(), &["a", "b", "c"]);
    let room = room_of(&mut l, "a", 4, true);
    join(&mut l, "b", &room);
    join(&mut l, "c", &room);
    l.set_ready("b", true, &mut out).unwrap();
    l.set_ready("c", true, &mut out).unwrap();
    let mut out = Vec::new();
    l.leave_room("a", &mut out).unwrap();
    assert_eq!(
        kinds(&out),
        ["player_left", "host_changed", "room_status", "game_start"]
    );
    assert_eq!(l.room_of("b").unwrap().status, RoomStatus::Active);

    // Down to one ready player: not enough to start.
    let mut l = connected(LobbyConfig::default(), &["a", "b"]);
    let room = room_of(&mut l, "a", 4, true);
    join(&mut l, "b", &room);
    l.set_ready("a", true, &mut out).unwrap();
    l.leave_room("b", &mut out).unwrap();
    assert_eq!(l.room_of("a").unwrap().status, RoomStatus::Waiting);
    l.check_invariants().unwrap();
}

#[test]
fn a_held_seat_keeps_its_flag_and_its_timeout_can_start_the_room() {
    let cfg = LobbyConfig {
        reconnect_grace: Duration::from_millis(100),
        ..LobbyConfig::default()
    };
    let mut l = connected(cfg, &["a", "b", "c"]);
    let room = room_of(&mut l, "a", 4, true);
    join(&mut l, "b", &room);
    join(&mut l, "c", &room);
    let mut out = Vec::new();
    l.set_ready("a", true, &mut out).unwrap();
    l.set_ready("b", true, &mut out).unwrap();
    let now = Instant::now();
    // b drops and comes back: still ready.
    l.disconnect("b", now, &mut out);
    let back = l.connect("b", "b", vec![], &mut out).unwrap();
    assert!(back.players[1].ready);
    // c drops (not ready) and its seat runs out: a and b start.
    l.disconnect("c", now, &mut out);
    let mut out = Vec::new();
    l.tick(now + Duration::from_millis(200), &mut out);
    assert_eq!(kinds(&out), ["player_left", "room_status", "game_start"]);
    match &out[0].event {
        Event::PlayerLeft { reason, .. } => assert_eq!(*reason, LeaveReason::Timeout),
        other => panic!("{other:?}"),
    }
    assert_eq!(l.room_of("a").unwrap().status, RoomStatus::Active);
    l.check_invariants().unwrap();
}

#[test]
fn find_match_makes_start_when_ready_rooms_and_a_full_room_still_starts() {
    let mut l = connected(LobbyConfig::default(), &["a", "b", "c", "d"]);
    let fm = |max| FindMatch {
        max_players: Some(max),
        start_when_ready: true,
        ..FindMatch::default()
    };
    let mut out = Vec::new();
    let m = l.find_match("a", fm(3), Instant::now(), &mut out).unwrap();
    assert!(m.created && m.room.start_when_ready);
    l.find_match("b", fm(3), Instant::now(), &mut out).unwrap();
    l.set_ready("a", true, &mut out).unwrap();
    l.set_ready("b", true, &mut out).unwrap();
    assert_eq!(l.room_of("a").unwrap().status, RoomStatus::Active);
    // Filling a room starts it whatever the flags (as before 1.2).
    let m = l.find_match("c", fm(2), Instant::now(), &mut out).unwrap();
    assert!(m.created);
    let m = l.find_match("d", fm(2), Instant::now(), &mut out).unwrap();
    assert_eq!(m.room.status, RoomStatus::Active);
    assert!(m.room.players.iter().all(|p| !p.ready));
    l.check_invariants().unwrap();
}

/// `send` (1.2) recipients: one member, or every other one; a spectator
/// sends to the room only.
#[test]
fn message_targets_follow_the_room() {
    let mut l = connected(LobbyConfig::default(), &["a", "b", "s", "x"]);
    let room = room_of(&mut l, "a", 3, false);
    join(&mut l, "b", &room);
    let mut out = Vec::new();
    l.spectate("s", Some(&room), None, &mut out).unwrap();
    assert_eq!(l.message_targets("a", None).unwrap(), ["b", "s"]);
    assert_eq!(l.message_targets("s", None).unwrap(), ["a", "b"]);
    assert_eq!(l.message_targets("a", Some("s")).unwrap(), ["s"]);
    let code = |r: Result<Vec<String>, crate::protocol::ProtoError>| r.unwrap_err().code;
    assert_eq!(
        code(l.message_targets("s", Some("a"))),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(l.message_targets("a", Some("a"))),
        ErrorCode::PeerNotFound
    );
    assert_eq!(
        code(l.message_targets("a", Some("x"))),
        ErrorCode::PeerNotFound
    );
    assert_eq!(code(l.message_targets("x", None)), ErrorCode::NotInRoom);
    l.count_message();
    assert_eq!(l.stats().messages_relayed, 1);
}
