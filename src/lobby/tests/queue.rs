//! Engine-level tests of `queue_match` and `cancel_match` (`queue.rs`): the
//! room a group of tickets forms and what each player is told, refusals,
//! expiry, players away and back, backfill seats taken at queue time and
//! when a seat opens, and the recount's ticket rules.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{connected, events};
use crate::lobby::{Delivery, Lobby, LobbyConfig};
use crate::protocol::{CreateRoom, ErrorCode, Event, QueueMatch, RoomInfo, RoomStatus};

fn lobby(players: &[&str]) -> Lobby {
    connected(LobbyConfig::default(), players)
}

fn duel() -> QueueMatch {
    QueueMatch {
        mode: Some("duel".into()),
        max_players: Some(2),
        ..QueueMatch::default()
    }
}

fn queue(l: &mut Lobby, p: &str, req: QueueMatch, now: Instant, out: &mut Vec<Delivery>) -> String {
    l.queue_match(p, req, now, out)
        .expect("queue_match")
        .ticket_id
}

/// Every `game_start` in `out`: (recipients, room, ticket_id).
fn starts(out: &[Delivery]) -> Vec<(Vec<String>, RoomInfo, Option<String>)> {
    events(out, |e| match e {
        Event::GameStart {
            room, ticket_id, ..
        } => Some((room.clone(), ticket_id.clone())),
        _ => None,
    })
    .into_iter()
    .map(|(to, (room, ticket))| (to, room, ticket))
    .collect()
}

fn seated(room: &RoomInfo) -> Vec<&str> {
    room.players.iter().map(|p| p.player_id.as_str()).collect()
}

#[test]
fn two_tickets_form_an_active_room_and_each_player_hears_its_ticket() {
    let mut l = lobby(&["a", "b"]);
    let mut out = Vec::new();
    let now = Instant::now();
    let rtt = |list: &[(&str, f64)]| -> Option<BTreeMap<String, f64>> {
        Some(list.iter().map(|(r, t)| (r.to_string(), *t)).collect())
    };
    let with = |regions| QueueMatch {
        filters: json!({"map": "dust"}).as_object().cloned(),
        regions,
        ..duel()
    };
    let ta = queue(
        &mut l,
        "a",
        with(rtt(&[("eu", 20.0), ("us", 40.0)])),
        now,
        &mut out,
    );
    assert!(starts(&out).is_empty());
    assert_eq!(l.tickets_queued(), 1);
    assert_eq!(l.stats().tickets_queued, 1);
    assert_eq!(l.footprint().timers, 1, "the ticket's expiry");
    l.check_invariants().unwrap();
    // The same ticket again: refused.
    let again = l.queue_match("a", duel(), now, &mut out).unwrap_err();
    assert_eq!(again.code, ErrorCode::AlreadyQueued);

    let tb = queue(
        &mut l,
        "b",
        with(rtt(&[("eu", 30.0), ("us", 10.0)])),
        now,
        &mut out,
    );
    let s = starts(&out);
    assert_eq!(s.len(), 2, "{out:?}");
    assert_eq!(s[0].0, ["a"]);
    assert_eq!(s[0].2.as_deref(), Some(ta.as_str()));
    assert_eq!(s[1].0, ["b"]);
    assert_eq!(s[1].2.as_deref(), Some(tb.as_str()));
    let room = &s[0].1;
    assert_eq!(room, &s[1].1);
    assert_eq!(room.status, RoomStatus::Active);
    assert_eq!(seated(room), ["a", "b"], "in ticket order");
    assert_eq!(room.host.as_deref(), Some("a"));
    assert_eq!(room.players[1].name, "name-b");
    assert!(room.players.iter().all(|p| p.connected));
    assert_eq!(room.mode, "duel");
    assert_eq!(room.max_players, 2);
    // Filters become the room's data; the region with the lowest worst
    // RTT (eu: 30, us: 40) is chosen.
    assert_eq!(room.data["map"], "dust");
    assert_eq!(room.data["region"], "eu");

    assert_eq!(l.tickets_queued(), 0);
    assert_eq!(l.room_of("a").unwrap().id_str, room.room_id);
    assert_eq!(l.room_of("b").unwrap().id_str, room.room_id);
    assert_eq!(l.stats().matches_started, 1);
    assert_eq!(l.stats().active_rooms, 1);
    assert_eq!(
        l.footprint().timers,
        0,
        "expiry timers gone, an active room needs none"
    );
    // Seated: no ticket to cancel, no new one.
    assert_eq!(
        l.cancel_match("a", &mut out).unwrap_err().code,
        ErrorCode::NotQueued
    );
    assert_eq!(
        l.queue_match("b", duel(), now, &mut out).unwrap_err().code,
        ErrorCode::AlreadyInRoom
    );
    l.check_invariants().unwrap();
}

#[test]
fn tickets_expire_after_their_ttl_and_can_be_cancelled() {
    let mut l = lobby(&["a", "b"]);
    let mut out = Vec::new();
    let now = Instant::now();
    assert_eq!(
        l.cancel_match("a", &mut out).unwrap_err().code,
        ErrorCode::NotQueued
    );
    let t = queue(&mut l, "a", duel(), now, &mut out);
    out.clear();
    l.tick(now + Duration::from_secs(119), &mut out);
    assert_eq!(l.tickets_queued(), 1, "not yet: {out:?}");
    l.tick(now + Duration::from_secs(121), &mut out);
    assert_eq!(l.tickets_queued(), 0);
    let expired = events(&out, |e| match e {
        Event::TicketExpired { ticket_id } => Some(ticket_id.clone()),
        _ => None,
    });
    assert_eq!(expired, [(vec!["a".to_string()], t)]);
    assert_eq!(l.footprint().timers, 0);
    l.check_invariants().unwrap();

    // Cancelled: gone with its timer, nothing forms with it.
    queue(&mut l, "a", duel(), now, &mut out);
    out.clear();
    l.cancel_match("a", &mut out).unwrap();
    assert!(out.is_empty(), "nobody else to tell: {out:?}");
    assert_eq!(l.tickets_queued(), 0);
    assert_eq!(l.footprint().timers, 0);
    queue(&mut l, "b", duel(), now, &mut out);
    assert!(starts(&out).is_empty());
    l.check_invariants().unwrap();
}

#[test]
fn a_party_too_big_or_busy_is_refused_and_its_members_hear_the_ticket() {
    let mut l = lobby(&["a", "b", "c", "x"]);
    let mut out = Vec::new();
    let now = Instant::now();
    let code = l.create_party("a", None).unwrap().code;
    l.join_party("b", &code, &mut out).unwrap();
    l.join_party("c", &code, &mut out).unwrap();
    out.clear();
    let e = l.queue_match("a", duel(), now, &mut out).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(
        e.message.contains("3 members, more than max_players (2)"),
        "{}",
        e.message
    );
    // A member already seated holds the party back.
    l.leave_party("c", &mut out).unwrap();
    l.create_room("b", CreateRoom::default(), now, &mut out)
        .unwrap();
    out.clear();
    let e = l.queue_match("a", duel(), now, &mut out).unwrap_err();
    assert_eq!(e.code, ErrorCode::AlreadyInRoom);
    l.leave_room("b", &mut out).unwrap();
    out.clear();

    let four = QueueMatch {
        max_players: Some(4),
        ..duel()
    };
    let t = queue(&mut l, "a", four.clone(), now, &mut out);
    let told = events(&out, |e| match e {
        Event::TicketQueued { ticket } => Some(ticket.clone()),
        _ => None,
    });
    assert_eq!(told.len(), 1, "{out:?}");
    assert_eq!(told[0].0, ["b"]);
    assert_eq!(told[0].1.ticket_id, t);
    assert_eq!(told[0].1.players, ["a", "b"]);
    // The member cannot queue again, nor cancel the leader's ticket.
    assert_eq!(
        l.queue_match("b", four.clone(), now, &mut out)
            .unwrap_err()
            .code,
        ErrorCode::AlreadyQueued
    );
    assert_eq!(
        l.cancel_match("b", &mut out).unwrap_err().code,
        ErrorCode::NotPartyLeader
    );
    // Two more players fill the four seats: the party sits together.
    queue(&mut l, "c", four.clone(), now, &mut out);
    queue(&mut l, "x", four, now, &mut out);
    let s = starts(&out);
    assert_eq!(s.len(), 3, "one game_start per ticket: {out:?}");
    assert_eq!(s[0].0, ["a", "b"]);
    assert_eq!(s[0].2.as_deref(), Some(t.as_str()));
    assert_eq!(seated(&s[0].1), ["a", "b", "c", "x"]);
    l.check_invariants().unwrap();
}

#[test]
fn an_away_player_holds_its_ticket_until_it_is_back() {
    let mut l = lobby(&["a", "b"]);
    let mut out = Vec::new();
    let now = Instant::now();
    queue(&mut l, "a", duel(), now, &mut out);
    l.disconnect("a", now, &mut out);
    queue(&mut l, "b", duel(), now, &mut out);
    assert!(starts(&out).is_empty(), "a is away: {out:?}");
    l.tick(now + Duration::from_secs(1), &mut out);
    assert!(starts(&out).is_empty());
    assert_eq!(l.tickets_queued(), 2);
    l.check_invariants().unwrap();
    // Back: the room forms at once.
    l.connect("a", "name-a", vec![], &mut out);
    let s = starts(&out);
    assert_eq!(s.len(), 2, "{out:?}");
    assert_eq!(seated(&s[0].1), ["a", "b"]);
    assert_eq!(l.tickets_queued(), 0);
    l.check_invariants().unwrap();

    // Forgotten after the grace: its ticket goes with it.
    let mut l = lobby(&["a"]);
    queue(&mut l, "a", duel(), now, &mut out);
    l.disconnect("a", now, &mut out);
    l.tick(now + Duration::from_secs(16), &mut out);
    assert!(l.player("a").is_none());
    assert_eq!(l.tickets_queued(), 0);
    assert_eq!(l.footprint().timers, 0);
    l.check_invariants().unwrap();
}

/// An active backfill room of `max` seats, host "h" and `guests` seated,
/// with `data`.
fn backfill_room(
    l: &mut Lobby,
    max: u64,
    data: serde_json::Value,
    guests: &[&str],
    now: Instant,
) -> String {
    let mut out = Vec::new();
    let req = CreateRoom {
        max_players: Some(max),
        mode: Some("duel".into()),
        data: data.as_object().cloned(),
        backfill: true,
        ..CreateRoom::default()
    };
    let room = l.create_room("h", req, now, &mut out).unwrap();
    for g in guests {
        l.join_room(g, Some(&room.room_id), None, &mut out).unwrap();
    }
    l.start_game("h", &mut out).unwrap();
    room.room_id
}

#[test]
fn backfill_seats_go_to_tickets_that_fit_at_once_or_when_a_seat_opens() {
    let mut l = lobby(&["h", "g", "a", "b", "c", "x", "far"]);
    let mut out = Vec::new();
    let now = Instant::now();
    let room = backfill_room(
        &mut l,
        4,
        json!({"skill": 1000, "region": "eu"}),
        &["g"],
        now,
    );
    let q = |skill: f64, eu: f64| QueueMatch {
        max_players: Some(4),
        skill: Some(skill),
        regions: Some([("eu".to_string(), eu)].into()),
        ..duel()
    };
    out.clear();
    // Too far in skill (window 100), or over the RTT limit (150): queued.
    // (1200: 200 away, reached only after 2 s of widening.)
    queue(&mut l, "far", q(1200.0, 10.0), now, &mut out);
    assert!(starts(&out).is_empty());
    l.queue_match("c", q(1000.0, 151.0), now, &mut out)
        .expect_err("no region within the limit");
    assert!(starts(&out).is_empty());
    // Within both: seated at queue time.
    let ta = queue(&mut l, "a", q(1100.0, 150.0), now, &mut out);
    let s = starts(&out);
    assert_eq!(s.len(), 1, "{out:?}");
    assert_eq!(s[0].0, ["a"]);
    assert_eq!(s[0].2.as_deref(), Some(ta.as_str()));
    assert_eq!(s[0].1.room_id, room);
    assert_eq!(seated(&s[0].1), ["h", "g", "a"]);
    let joined: Vec<_> = out
        .iter()
        .filter(
            |d| matches!(&d.event, Event::PlayerJoined { player, .. } if player.player_id == "a"),
        )
        .flat_map(|d| d.to.clone())
        .collect();
    assert!(
        joined.contains(&"h".to_string()) && joined.contains(&"g".to_string()),
        "{out:?}"
    );
    assert_eq!(l.room_of("a").unwrap().id_str, room);
    assert_eq!(l.tickets_queued(), 1);
    l.check_invariants().unwrap();

    // A kicked player is never put back in that room.
    l.kick("h", "a", &mut out).unwrap();
    out.clear();
    queue(&mut l, "a", q(1000.0, 10.0), now, &mut out);
    assert!(starts(&out).is_empty(), "{out:?}");
    l.cancel_match("a", &mut out).unwrap();
    out.clear();

    // Nearer tickets fill the room.
    queue(&mut l, "b", q(1000.0, 10.0), now, &mut out);
    assert_eq!(seated(&starts(&out)[0].1), ["h", "g", "b"]);
    l.cancel_match("far", &mut out).unwrap();
    let far = queue(&mut l, "far", q(1050.0, 10.0), now, &mut out);
    let s = starts(&out);
    assert_eq!(seated(&s.last().unwrap().1), ["h", "g", "b", "far"]);
    assert_eq!(s.last().unwrap().2.as_deref(), Some(far.as_str()));
    // Full: new tickets wait; b leaves and the seat goes to the oldest
    // one that fits (x, older, is too far in skill).
    queue(&mut l, "x", q(1400.0, 10.0), now, &mut out);
    let tc = queue(&mut l, "c", q(990.0, 10.0), now, &mut out);
    out.clear();
    l.leave_room("b", &mut out).unwrap();
    let s = starts(&out);
    assert_eq!(s.len(), 1, "{out:?}");
    assert_eq!(s[0].0, ["c"]);
    assert_eq!(s[0].2.as_deref(), Some(tc.as_str()));
    assert_eq!(seated(&s[0].1), ["h", "g", "far", "c"]);
    assert_eq!(l.tickets_queued(), 1, "x waits");
    l.check_invariants().unwrap();
}

#[test]
fn a_party_takes_backfill_seats_only_when_all_fit() {
    let now = Instant::now();
    // Three seats taken: a party of two does not fit in four seats, and
    // fits exactly in five.
    for (max, fits) in [(4, false), (5, true)] {
        let mut l = lobby(&["h", "g", "k", "a", "b"]);
        let mut out = Vec::new();
        let code = l.create_party("a", None).unwrap().code;
        l.join_party("b", &code, &mut out).unwrap();
        backfill_room(&mut l, max, json!({}), &["g", "k"], now);
        out.clear();
        let req = QueueMatch {
            max_players: Some(max),
            ..duel()
        };
        queue(&mut l, "a", req, now, &mut out);
        let s = starts(&out);
        if fits {
            assert_eq!(s.len(), 1, "{out:?}");
            assert_eq!(s[0].0, ["a", "b"]);
            assert_eq!(seated(&s[0].1), ["h", "g", "k", "a", "b"]);
        } else {
            assert!(s.is_empty(), "3 + 2 > 4: {out:?}");
            assert!(l.room_of("a").is_none());
        }
        l.check_invariants().unwrap();
    }
}

#[test]
fn a_private_backfill_room_takes_no_ticket_when_a_seat_opens() {
    let mut l = lobby(&["h", "g", "a"]);
    let mut out = Vec::new();
    let now = Instant::now();
    let req = CreateRoom {
        max_players: Some(3),
        mode: Some("duel".into()),
        backfill: true,
        private: true,
        ..CreateRoom::default()
    };
    let room = l.create_room("h", req, now, &mut out).unwrap();
    l.join_room("g", None, room.code.as_deref(), &mut out)
        .unwrap();
    l.start_game("h", &mut out).unwrap();
    let three = QueueMatch {
        max_players: Some(3),
        ..duel()
    };
    queue(&mut l, "a", three, now, &mut out);
    assert!(l.room_of("a").is_none());
    out.clear();
    l.leave_room("g", &mut out).unwrap();
    assert!(starts(&out).is_empty(), "{out:?}");
    assert!(l.room_of("a").is_none());
    assert_eq!(l.tickets_queued(), 1);
    l.check_invariants().unwrap();
}

#[test]
fn a_room_without_backfill_or_not_active_takes_no_ticket() {
    let mut l = lobby(&["h", "g", "a"]);
    let mut out = Vec::new();
    let now = Instant::now();
    // Waiting (not started) backfill room: not offered.
    let req = CreateRoom {
        max_players: Some(4),
        mode: Some("duel".into()),
        backfill: true,
        ..CreateRoom::default()
    };
    l.create_room("h", req, now, &mut out).unwrap();
    let four = QueueMatch {
        max_players: Some(4),
        ..duel()
    };
    queue(&mut l, "a", four, now, &mut out);
    assert!(starts(&out).is_empty(), "{out:?}");
    assert!(l.room_of("a").is_none());
    l.check_invariants().unwrap();
}

#[test]
fn the_recount_sees_a_ticket_out_of_step() {
    let now = Instant::now();
    let make = || {
        let mut l = lobby(&["a", "b"]);
        let mut out = Vec::new();
        queue(&mut l, "a", duel(), now, &mut out);
        l.create_room("b", CreateRoom::default(), now, &mut out)
            .unwrap();
        l.check_invariants().unwrap();
        l
    };
    // A ticket holding a seated player (seated properly: the seat and the
    // player agree, so only the ticket is out of step).
    let mut l = make();
    let room = l.players["b"].room.unwrap();
    let seat = crate::lobby::Seat {
        player_id: "a".into(),
        name: "a".into(),
        data: Default::default(),
        joined_at: chrono::Utc::now(),
        connected: true,
        ready: false,
    };
    l.update_room(room, |r| r.seats.push(seat));
    l.players.get_mut("a").unwrap().room = Some(room);
    let e = l.check_invariants().unwrap_err();
    assert!(e.contains("seated or unknown"), "{e}");
    // A ticket of an unknown player.
    let mut l = make();
    l.players.remove("a");
    assert!(l.check_invariants().is_err());
    // A ticket without its expiry timer.
    let mut l = make();
    let key = l.tickets.iter().next().unwrap().timer.unwrap();
    l.timers.remove(&key);
    assert!(l.check_invariants().is_err());
    // Two tickets with each other's timers.
    let mut l = lobby(&["a", "b"]);
    let mut out = Vec::new();
    let four = QueueMatch {
        max_players: Some(4),
        ..duel()
    };
    let ta = queue(&mut l, "a", four.clone(), now, &mut out);
    let tb = queue(&mut l, "b", four, now, &mut out);
    l.check_invariants().unwrap();
    let ka = l.tickets.get(&ta).unwrap().timer;
    let kb = l.tickets.get(&tb).unwrap().timer;
    l.tickets.get_mut(&ta).unwrap().timer = kb;
    l.tickets.get_mut(&tb).unwrap().timer = ka;
    assert!(l.check_invariants().is_err());
    // One ticket pointing at the other's timer, its own gone: every timer
    // still has its owner, but a's expiry is b's.
    l.tickets.get_mut(&tb).unwrap().timer = kb;
    l.timers.remove(&ka.unwrap());
    let e = l.check_invariants().unwrap_err();
    assert!(e.contains("no expiry timer"), "{e}");
}

#[test]
fn ticks_form_rooms_when_windows_meet_or_the_fill_delay_passes() {
    let mut l = lobby(&["a", "b", "c", "d"]);
    let mut out = Vec::new();
    let t0 = Instant::now();
    l.tick(t0, &mut out);
    let skilled = |s: f64| QueueMatch {
        skill: Some(s),
        ..duel()
    };
    // 250 apart with windows of 100 widening by 50/s: they meet after 3 s.
    queue(&mut l, "a", skilled(1000.0), t0, &mut out);
    queue(&mut l, "b", skilled(1250.0), t0, &mut out);
    l.tick(t0 + Duration::from_secs(2), &mut out);
    assert!(starts(&out).is_empty(), "windows of 200: {out:?}");
    l.tick(t0 + Duration::from_millis(3_100), &mut out);
    let s = starts(&out);
    assert_eq!(s.len(), 2, "{out:?}");
    assert_eq!(seated(&s[0].1), ["a", "b"]);
    out.clear();

    // Two of four with min_players 2: a room of two after the fill delay.
    let t1 = t0 + Duration::from_secs(4);
    let fill = QueueMatch {
        max_players: Some(4),
        min_players: Some(2),
        ..duel()
    };
    queue(&mut l, "c", fill.clone(), t1, &mut out);
    queue(&mut l, "d", fill, t1, &mut out);
    l.tick(t1 + Duration::from_secs(9), &mut out);
    assert!(starts(&out).is_empty(), "{out:?}");
    l.tick(t1 + Duration::from_millis(10_100), &mut out);
    let s = starts(&out);
    assert_eq!(s.len(), 2, "{out:?}");
    assert_eq!(seated(&s[0].1), ["c", "d"]);
    assert_eq!(s[0].1.max_players, 4);
    assert_eq!(l.tickets_queued(), 0);
    l.check_invariants().unwrap();
}

#[test]
fn at_the_room_limit_tickets_wait() {
    let cfg = LobbyConfig {
        max_rooms: 1,
        ..LobbyConfig::default()
    };
    let mut l = connected(cfg, &["h", "a", "b", "c"]);
    let mut out = Vec::new();
    let now = Instant::now();
    l.create_room("h", CreateRoom::default(), now, &mut out)
        .unwrap();
    queue(&mut l, "a", duel(), now, &mut out);
    queue(&mut l, "b", duel(), now, &mut out);
    assert!(starts(&out).is_empty(), "one room at most: {out:?}");
    assert_eq!(l.tickets_queued(), 2);
    l.check_invariants().unwrap();
    // The room goes; the next ticket forms a room with the oldest waiting
    // one.
    l.leave_room("h", &mut out).unwrap();
    out.clear();
    queue(&mut l, "c", duel(), now, &mut out);
    let s = starts(&out);
    assert_eq!(s.len(), 2, "{out:?}");
    assert_eq!(seated(&s[0].1), ["a", "c"]);
    assert!(l.room_of("b").is_none());
    assert_eq!(l.tickets_queued(), 1);
    l.check_invariants().unwrap();
}

#[test]
fn a_formed_room_is_created_joined_and_started_for_the_hooks() {
    use crate::lobby::HookEvent;
    let mut l = lobby(&["a", "b"]);
    l.record_hooks(true);
    let mut out = Vec::new();
    let now = Instant::now();
    queue(&mut l, "a", duel(), now, &mut out);
    queue(&mut l, "b", duel(), now, &mut out);
    let room_id = l.room_of("a").unwrap().id_str.clone();
    let events = l.take_hooks();
    let seen: Vec<(&str, String)> = events
        .iter()
        .map(|e| {
            let who = match e {
                HookEvent::PlayerJoined { player, .. } => player.player_id.clone(),
                HookEvent::RoomCreated { room } | HookEvent::MatchStarted { room } => {
                    format!("{} {}", room.status.as_str(), room.players.len())
                }
                other => format!("{other:?}"),
            };
            (e.kind(), who)
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("room.created", "active 2".to_string()),
            ("player.joined", "a".to_string()),
            ("player.joined", "b".to_string()),
            ("match.started", "active 2".to_string()),
        ]
    );
    assert!(events.iter().all(|e| e.room_id() == room_id));
}
