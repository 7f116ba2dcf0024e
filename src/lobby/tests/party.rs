//! Engine-level tests of parties (`party.rs`): sizes, codes, joins and
//! leaves with their events, leader hand-over, the party's ticket cancelled
//! on a change, presence, a forgotten member, and the recount's party rules.

use std::time::{Duration, Instant};

use super::{connected, events};
use crate::lobby::{Delivery, Lobby, LobbyConfig};
use crate::protocol::{ErrorCode, Event, FindMatch, PartyInfo, QueueMatch};

fn lobby(players: &[&str]) -> Lobby {
    connected(LobbyConfig::default(), players)
}

fn code_of(err: Result<impl std::fmt::Debug, crate::protocol::ProtoError>) -> ErrorCode {
    err.expect_err("refused").code
}

/// The `party_updated` events in `out`, as (recipients, party).
fn updates(out: &[Delivery]) -> Vec<(Vec<String>, PartyInfo)> {
    events(out, |e| match e {
        Event::PartyUpdated { party } => Some(party.clone()),
        _ => None,
    })
}

fn cancelled(out: &[Delivery]) -> Vec<(Vec<String>, String)> {
    events(out, |e| match e {
        Event::TicketCancelled { ticket_id } => Some(ticket_id.clone()),
        _ => None,
    })
}

fn ids(info: &PartyInfo) -> Vec<&str> {
    info.members.iter().map(|m| m.player_id.as_str()).collect()
}

fn queue(l: &mut Lobby, pid: &str, out: &mut Vec<Delivery>) -> String {
    let req = QueueMatch {
        mode: Some("party-test".into()),
        max_players: Some(8),
        ..QueueMatch::default()
    };
    l.queue_match(pid, req, Instant::now(), out)
        .expect("queue_match")
        .ticket_id
}

#[test]
fn party_sizes_are_two_to_sixteen_and_four_by_default() {
    let mut l = lobby(&["a", "b", "c", "d", "e"]);
    assert_eq!(l.create_party("a", None).unwrap().max_size, 4);
    assert_eq!(l.create_party("b", Some(2)).unwrap().max_size, 2);
    assert_eq!(l.create_party("c", Some(16)).unwrap().max_size, 16);
    for bad in [0, 1, 17, u64::MAX] {
        let e = l.create_party("d", Some(bad)).expect_err("refused");
        assert_eq!(e.code, ErrorCode::BadRequest, "max_size {bad}");
        assert!(e.message.contains("2 to 16"), "{}", e.message);
    }
    assert!(l.party_of("d").is_none());
    assert_eq!(l.parties(), 3);
    assert_eq!(l.stats().parties, 3);
    l.check_invariants().unwrap();
}

#[test]
fn join_and_leave_with_their_events_and_the_leader_handed_over() {
    let mut l = lobby(&["a", "b", "c", "d"]);
    let mut out = Vec::new();
    let made = l.create_party("a", Some(3)).unwrap();
    assert_eq!(made.leader, "a");
    assert_eq!(ids(&made), ["a"]);
    assert_eq!(made.members[0].name, "name-a");
    assert!(made.members[0].connected);
    assert_eq!(made.code.len(), crate::lobby::CODE_LEN);
    assert_eq!(l.party_of("a").unwrap().id, made.party_id);
    assert_eq!(
        code_of(l.create_party("a", None)),
        ErrorCode::AlreadyInParty
    );

    // Codes are taken in any case, with spaces around.
    let typed = format!("  {} ", made.code.to_ascii_lowercase());
    let joined = l.join_party("b", &typed, &mut out).unwrap();
    assert_eq!(joined.party_id, made.party_id);
    assert_eq!(ids(&joined), ["a", "b"]);
    assert_eq!(joined.leader, "a");
    // The others hear of it; the joiner has the reply.
    let u = updates(&out);
    assert_eq!(u.len(), 1, "{out:?}");
    assert_eq!(u[0].0, ["a"]);
    assert_eq!(u[0].1, joined);
    out.clear();

    assert_eq!(
        code_of(l.join_party("b", &made.code, &mut out)),
        ErrorCode::AlreadyInParty
    );
    assert_eq!(
        code_of(l.create_party("b", None)),
        ErrorCode::AlreadyInParty
    );
    assert_eq!(
        code_of(l.join_party("c", "ZZZZZZ", &mut out)),
        ErrorCode::PartyNotFound
    );
    l.join_party("c", &made.code, &mut out).unwrap();
    out.clear();
    // Three of three: full.
    assert_eq!(
        code_of(l.join_party("d", &made.code, &mut out)),
        ErrorCode::PartyFull
    );
    assert!(out.is_empty(), "{out:?}");
    assert!(l.party_of("d").is_none());
    assert_eq!(code_of(l.leave_party("d", &mut out)), ErrorCode::NotInParty);
    l.check_invariants().unwrap();

    // The leader leaves: the next in join order leads, the others hear it.
    l.leave_party("a", &mut out).unwrap();
    assert!(l.party_of("a").is_none());
    let u = updates(&out);
    assert_eq!(u.len(), 1, "{out:?}");
    assert_eq!(u[0].0, ["b", "c"]);
    assert_eq!(u[0].1.leader, "b");
    assert_eq!(ids(&u[0].1), ["b", "c"]);
    assert_eq!(l.party_of("c").unwrap().members, ["b", "c"]);
    assert_eq!(code_of(l.leave_party("a", &mut out)), ErrorCode::NotInParty);
    out.clear();
    // A place is free again.
    l.join_party("d", &made.code, &mut out).unwrap();
    out.clear();
    l.leave_party("b", &mut out).unwrap();
    l.leave_party("c", &mut out).unwrap();
    assert_eq!(l.parties(), 1);
    // The last one out ends the party and frees its code.
    out.clear();
    l.leave_party("d", &mut out).unwrap();
    assert!(updates(&out).is_empty(), "nobody is left to tell: {out:?}");
    assert_eq!(l.parties(), 0);
    assert_eq!(l.footprint().parties, 0);
    assert!(l.party_codes.is_empty());
    assert_eq!(
        code_of(l.join_party("a", &made.code, &mut out)),
        ErrorCode::PartyNotFound
    );
    l.check_invariants().unwrap();
}

#[test]
fn a_change_of_members_cancels_the_party_ticket() {
    let mut l = lobby(&["a", "b", "c", "solo"]);
    let mut out = Vec::new();
    let code = l.create_party("a", None).unwrap().code;
    l.join_party("b", &code, &mut out).unwrap();
    out.clear();

    // Only the leader queues or matches for the party.
    let q = QueueMatch {
        max_players: Some(8),
        ..QueueMatch::default()
    };
    assert_eq!(
        code_of(l.queue_match("b", q, Instant::now(), &mut out)),
        ErrorCode::NotPartyLeader
    );
    let fm = FindMatch {
        max_players: Some(4),
        mode: None,
        filters: None,
        backfill: false,
        max_spectators: None,
        start_when_ready: false,
    };
    assert_eq!(
        code_of(l.find_match("b", fm, Instant::now(), &mut out)),
        ErrorCode::NotPartyLeader
    );
    assert!(out.is_empty(), "{out:?}");

    let t = queue(&mut l, "a", &mut out);
    assert_eq!(l.tickets_queued(), 1);
    out.clear();
    // A new member: the ticket (queued for a and b) goes; a and b hear it,
    // not the joiner.
    l.join_party("c", &code, &mut out).unwrap();
    assert_eq!(cancelled(&out), [(vec!["a".into(), "b".into()], t)]);
    assert_eq!(l.tickets_queued(), 0);
    // The cancel comes before the news of the new member.
    let first_update = out
        .iter()
        .position(|d| matches!(d.event, Event::PartyUpdated { .. }))
        .unwrap();
    let cancel = out
        .iter()
        .position(|d| matches!(d.event, Event::TicketCancelled { .. }))
        .unwrap();
    assert!(cancel < first_update, "{out:?}");
    out.clear();

    // A member leaving cancels it too; the one who left is not told.
    let t = queue(&mut l, "a", &mut out);
    out.clear();
    l.leave_party("b", &mut out).unwrap();
    assert_eq!(cancelled(&out), [(vec!["a".into(), "c".into()], t)]);
    assert_eq!(l.tickets_queued(), 0);
    out.clear();

    // The leader leaving: its own ticket goes, the others are told.
    let t = queue(&mut l, "a", &mut out);
    out.clear();
    l.leave_party("a", &mut out).unwrap();
    assert_eq!(cancelled(&out), [(vec!["c".into()], t)]);
    assert_eq!(l.tickets_queued(), 0);

    // A player in no party, or alone in one, acts for itself.
    out.clear();
    queue(&mut l, "solo", &mut out);
    assert!(cancelled(&out).is_empty());
    assert_eq!(l.party_of("c").unwrap().members, ["c"]);
    queue(&mut l, "c", &mut out);
    assert_eq!(l.tickets.ticket_of("c").unwrap().players, ["c"]);
    assert!(out.is_empty(), "{out:?}");
    l.check_invariants().unwrap();
}

#[test]
fn members_see_each_other_drop_come_back_and_be_forgotten() {
    let cfg = LobbyConfig {
        reconnect_grace: Duration::from_secs(5),
        ..LobbyConfig::default()
    };
    let mut l = connected(cfg, &["a", "b"]);
    let mut out = Vec::new();
    let code = l.create_party("a", None).unwrap().code;
    l.join_party("b", &code, &mut out).unwrap();
    out.clear();

    let now = Instant::now();
    l.disconnect("b", now, &mut out);
    let u = updates(&out);
    assert_eq!(u.len(), 1, "{out:?}");
    assert_eq!(u[0].0, ["a"]);
    let b = &u[0].1.members[1];
    assert_eq!((b.player_id.as_str(), b.connected), ("b", false));
    assert_eq!(b.name, "name-b");
    assert!(u[0].1.members[0].connected);
    out.clear();

    l.connect("b", "name-b", vec![], &mut out);
    let u = updates(&out);
    assert_eq!(u.len(), 1, "{out:?}");
    assert_eq!(u[0].0, ["a"]);
    assert!(u[0].1.members.iter().all(|m| m.connected));
    out.clear();

    // Gone for good after the grace: the party loses b, and a hears it
    // after the operation (the tick's own events come first).
    l.disconnect("b", now, &mut out);
    out.clear();
    l.tick(now + Duration::from_secs(6), &mut out);
    assert!(l.player("b").is_none());
    assert!(updates(&out).is_empty(), "{out:?}");
    let later = l.take_later();
    let u = updates(&later);
    assert_eq!(u.len(), 1, "{later:?}");
    assert_eq!(u[0].0, ["a"]);
    assert_eq!(ids(&u[0].1), ["a"]);
    assert!(l.take_later().is_empty(), "taken once");
    l.check_invariants().unwrap();
}

#[test]
fn the_recount_sees_every_party_disagreement() {
    fn corrupt(f: impl FnOnce(&mut Lobby)) -> String {
        let mut l = lobby(&["a", "b", "c"]);
        let mut out = Vec::new();
        let code = l.create_party("a", Some(2)).unwrap().code;
        l.join_party("b", &code, &mut out).unwrap();
        l.create_party("c", None).unwrap();
        l.check_invariants().unwrap();
        f(&mut l);
        l.check_invariants().expect_err("the recount must see it")
    }
    let id = |l: &Lobby, p: &str| l.players[p].party.clone().unwrap();
    // An empty party, one over its size.
    corrupt(|l| {
        let p = id(l, "a");
        l.parties.get_mut(&p).unwrap().members.clear();
    });
    corrupt(|l| {
        let p = id(l, "a");
        l.parties.get_mut(&p).unwrap().members.push("c".into());
    });
    // Its code not indexed, or pointing elsewhere.
    corrupt(|l| {
        let p = id(l, "a");
        let code = l.parties[&p].code.clone();
        l.party_codes.insert(code, "elsewhere".into());
    });
    // A player in two parties.
    corrupt(|l| {
        let (pa, pc) = (id(l, "a"), id(l, "c"));
        l.parties.get_mut(&pc).unwrap().members.push("b".into());
        l.parties.get_mut(&pc).unwrap().max_size = 4;
        assert_ne!(pa, pc);
    });
    // A member whose player points at no party.
    corrupt(|l| {
        l.players.get_mut("b").unwrap().party = None;
    });
    // A code left over.
    corrupt(|l| {
        l.party_codes.insert("XXXXXX".into(), "gone".into());
    });
    // A player pointing at a party that is gone.
    corrupt(|l| {
        let p = id(l, "c");
        let code = l.parties[&p].code.clone();
        l.parties.remove(&p);
        l.party_codes.remove(&code);
    });
}

fn fm(max: u64) -> FindMatch {
    FindMatch {
        max_players: Some(max),
        mode: Some("party-fm".into()),
        filters: None,
        backfill: false,
        max_spectators: None,
        start_when_ready: false,
    }
}

#[test]
fn the_leaders_find_match_seats_the_party_where_all_fit() {
    let mut l = lobby(&["x", "a", "b", "k"]);
    let mut out = Vec::new();
    let now = Instant::now();
    // A room of two with one seat taken: too small for a party of two.
    let open = l.find_match("x", fm(2), now, &mut out).unwrap();
    assert!(open.created);
    let code = l.create_party("a", None).unwrap().code;
    l.join_party("b", &code, &mut out).unwrap();
    out.clear();
    // A party of two fits a room of two exactly.
    let m = l.find_match("a", fm(2), now, &mut out).unwrap();
    assert!(m.created, "x's room has one free seat for two");
    assert_ne!(m.room.room_id, open.room.room_id);
    let seated: Vec<_> = m
        .room
        .players
        .iter()
        .map(|p| p.player_id.as_str())
        .collect();
    assert_eq!(seated, ["a", "b"]);
    assert_eq!(l.room_of("b").unwrap().id_str, m.room.room_id);
    // The member is told where it sits; the leader has the reply.
    let joined = events(&out, |e| match e {
        Event::RoomJoined { room } => Some(room.room_id.clone()),
        _ => None,
    });
    assert_eq!(joined, [(vec!["b".to_string()], m.room.room_id.clone())]);
    assert_eq!(l.room_of("x").unwrap().seats.len(), 1);
    // Three do not fit in rooms of two.
    l.leave_room("a", &mut out).unwrap();
    l.leave_room("b", &mut out).unwrap();
    l.join_party("k", &code, &mut out).unwrap();
    let e = l.find_match("a", fm(2), now, &mut out).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    l.check_invariants().unwrap();

    // Alone: no room_joined for anyone.
    out.clear();
    l.leave_party("k", &mut out).unwrap();
    out.clear();
    let solo = l.find_match("k", fm(2), now, &mut out).unwrap();
    assert!(!solo.created, "x's room has a seat for one");
    assert!(
        !out.iter()
            .any(|d| matches!(d.event, Event::RoomJoined { .. })),
        "{out:?}"
    );
    l.check_invariants().unwrap();
}

#[test]
fn find_match_never_seats_a_player_where_it_was_kicked() {
    let mut l = lobby(&["h", "k"]);
    let mut out = Vec::new();
    let now = Instant::now();
    let room = l.find_match("h", fm(3), now, &mut out).unwrap().room;
    assert!(!l.find_match("k", fm(3), now, &mut out).unwrap().created);
    l.kick("h", "k", &mut out).unwrap();
    let again = l.find_match("k", fm(3), now, &mut out).unwrap();
    assert!(again.created, "not back in the room it was kicked from");
    assert_ne!(again.room.room_id, room.room_id);
    l.check_invariants().unwrap();
}

/// Only known players make or join parties: a player the lobby forgot (a
/// disconnected player out of any room) never becomes a member without a
/// player (found by the party property test: a forgotten player joined a
/// party and the recount failed).
#[test]
fn a_forgotten_player_makes_and_joins_no_party() {
    let mut l = lobby(&["a"]);
    let mut out = Vec::new();
    let party = l.create_party("a", Some(3)).unwrap();
    assert_eq!(
        code_of(l.create_party("ghost", Some(3))),
        ErrorCode::Internal
    );
    assert_eq!(
        code_of(l.join_party("ghost", &party.code, &mut out)),
        ErrorCode::Internal
    );
    assert_eq!(ids(&l.party_info(&party.party_id).unwrap()), ["a"]);
    l.check_invariants().unwrap();
}
