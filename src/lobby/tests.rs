//! Engine-level tests of what the property tests cannot reach by chance:
//! pending timers under long churn, join-code collisions, and more; the
//! parties, the queue and the ticket checks have their own files in
//! `tests/`.

mod party;
mod queue;
mod ready;
mod ticket_spec;

use std::time::{Duration, Instant};

use super::{Lobby, LobbyConfig};
use crate::protocol::{CreateRoom, FindMatch, RoomStatus};

fn lobby() -> Lobby {
    // The server's default timings: an idle room lives ten minutes, so a
    // timer per activity would pile up for the whole test.
    Lobby::new(LobbyConfig::default())
}

/// A lobby of `cfg` with `players` connected, each named `name-<id>`.
fn connected(cfg: LobbyConfig, players: &[&str]) -> Lobby {
    let mut l = Lobby::new(cfg);
    let mut out = Vec::new();
    for p in players {
        l.connect(p, &format!("name-{p}"), vec![], &mut out);
    }
    l
}

/// The events of `out` that `pick` takes, each with its recipients.
fn events<T>(
    out: &[super::Delivery],
    pick: impl Fn(&crate::protocol::Event) -> Option<T>,
) -> Vec<(Vec<String>, T)> {
    out.iter()
        .filter_map(|d| pick(&d.event).map(|t| (d.to.clone(), t)))
        .collect()
}

fn create(l: &mut Lobby, pid: &str, now: Instant) -> super::RoomInfo {
    let mut out = Vec::new();
    let req = CreateRoom {
        max_players: Some(4),
        ..CreateRoom::default()
    };
    l.create_room(pid, req, now, &mut out).expect("create_room")
}

fn find(l: &mut Lobby, pid: &str, now: Instant) -> super::Matched {
    let mut out = Vec::new();
    let req = FindMatch {
        max_players: Some(2),
        mode: Some("churn".into()),
        filters: None,
        backfill: false,
        max_spectators: None,
        start_when_ready: false,
    };
    l.find_match(pid, req, now, &mut out).expect("find_match")
}

/// Many rounds of create/leave, match/leave and drop/resume: the pending
/// timers stay at most one per live room plus one per held player, and the
/// same after every round, however many rounds ran.
#[test]
fn pending_timers_stay_flat_under_churn() {
    let mut l = lobby();
    let mut out = Vec::new();
    let now = Instant::now();
    for p in ["a", "b", "c"] {
        l.connect(p, p, vec![], &mut out);
    }
    // "c" keeps a waiting room open the whole time: one timer that stays.
    create(&mut l, "c", now);
    let mut after_round = Vec::new();
    for round in 0..500 {
        // A room made and left: its idle timer goes with it.
        create(&mut l, "a", now);
        assert_eq!(l.footprint().timers, 2, "round {round}: two waiting rooms");
        l.leave_room("a", &mut out).unwrap();

        // Two players matched: the room starts and needs no idle timer.
        assert!(find(&mut l, "a", now).created);
        assert!(!find(&mut l, "b", now).created);
        assert_eq!(l.room_of("a").unwrap().status, RoomStatus::Active);
        assert_eq!(l.footprint().timers, 1, "round {round}: active room");

        // A drop holds the seat for the grace; the resume ends the hold.
        l.disconnect("b", now, &mut out);
        assert_eq!(l.footprint().timers, 2, "round {round}: one held seat");
        l.connect("b", "b", vec![], &mut out);
        l.leave_room("a", &mut out).unwrap();
        l.leave_room("b", &mut out).unwrap();

        // A drop outside any room, then a resume.
        l.disconnect("a", now, &mut out);
        l.connect("a", "a", vec![], &mut out);
        l.check_invariants().unwrap();
        let f = l.footprint();
        assert!(f.timers <= f.rooms + f.players, "round {round}: {f:?}");
        after_round.push(f);
    }
    assert!(
        after_round.iter().all(|f| *f == after_round[0]),
        "footprint moved between rounds: first {:?}, last {:?}",
        after_round[0],
        after_round[after_round.len() - 1]
    );
    assert_eq!((after_round[0].rooms, after_round[0].timers), (1, 1));
}

/// Seat timers go with a player who is removed or kicked while held, and
/// room timers with a room that is closed before its deadline.
#[test]
fn timers_go_with_their_owner() {
    let mut l = lobby();
    let mut out = Vec::new();
    let now = Instant::now();
    for p in ["h", "x", "y"] {
        l.connect(p, p, vec![], &mut out);
    }
    let room = create(&mut l, "h", now);
    l.join_room("x", Some(&room.room_id), None, &mut out)
        .unwrap();
    l.join_room("y", Some(&room.room_id), None, &mut out)
        .unwrap();
    l.disconnect("x", now, &mut out);
    l.disconnect("y", now, &mut out);
    assert_eq!(l.footprint().timers, 3);
    l.kick("h", "x", &mut out).unwrap();
    assert_eq!(l.footprint().timers, 2, "kicked while held");
    assert!(l.remove_player("y", &mut out));
    assert_eq!(l.footprint().timers, 1, "removed while held");
    l.check_invariants().unwrap();

    // Started and finished: the finished room's close timer goes when an
    // admin closes it first.
    assert!(l.player("x").is_none() && l.player("y").is_none());
    l.connect("z", "z", vec![], &mut out);
    l.join_room("z", Some(&room.room_id), None, &mut out)
        .unwrap();
    l.start_game("h", &mut out).unwrap();
    assert_eq!(l.footprint().timers, 0, "an active room has no timer");
    l.finish_game("h", None, now, &mut out).unwrap();
    assert_eq!(l.footprint().timers, 1, "finished room TTL");
    let id = l.room_of("h").unwrap().id;
    assert!(l.close_room(id, &mut out));
    assert_eq!(l.footprint().timers, 0);
    l.check_invariants().unwrap();
}

/// The idle timer still closes a waiting room one timeout after its last
/// activity, checked when the first deadline passes, as before timers had
/// owners.
#[test]
fn idle_room_closes_one_timeout_after_its_last_activity() {
    let cfg = LobbyConfig {
        room_idle_timeout: Duration::from_millis(1000),
        ..LobbyConfig::default()
    };
    let mut l = Lobby::new(cfg);
    let mut out = Vec::new();
    let t0 = Instant::now();
    l.connect("a", "a", vec![], &mut out);
    create(&mut l, "a", t0);
    let idle = l.footprint().timers;
    assert_eq!(idle, 1);
    // Activity (stamped with the real clock, so strictly after t0) before
    // the first deadline: the timer sets itself again when it fires.
    std::thread::sleep(Duration::from_millis(2));
    l.chat("a", "still here", &mut out).unwrap();
    let last = l.room_of("a").unwrap().last_activity;
    l.tick(t0 + Duration::from_millis(1000), &mut out);
    assert!(l.room_of("a").is_some(), "activity moved the deadline");
    assert_eq!(l.footprint().timers, 1, "re-armed, not added");
    l.tick(last + Duration::from_millis(999), &mut out);
    assert!(l.room_of("a").is_some());
    l.tick(last + Duration::from_millis(1000), &mut out);
    assert!(l.room_of("a").is_none(), "closed when idle");
    // The player is still connected, in no room: nothing pending.
    assert_eq!(l.footprint().timers, 0);
    l.check_invariants().unwrap();
}

/// A generator that repeats a taken code several times before a fresh one:
/// every live room still gets a code of its own, and each code finds its
/// room.
#[test]
fn join_codes_stay_unique_when_the_generator_repeats_itself() {
    let mut l = lobby();
    // "AAAAAA" five times, then "BBBBBB" five times, then "CCCCCC" forever.
    let mut calls = 0;
    l.set_code_source(move || {
        calls += 1;
        match calls {
            1..=5 => "AAAAAA",
            6..=10 => "BBBBBB",
            _ => "CCCCCC",
        }
        .to_string()
    });
    let mut out = Vec::new();
    let now = Instant::now();
    let mut codes = Vec::new();
    for p in ["a", "b", "c"] {
        l.connect(p, p, vec![], &mut out);
        codes.push(create(&mut l, p, now).code.unwrap());
    }
    assert_eq!(codes, ["AAAAAA", "BBBBBB", "CCCCCC"]);
    l.check_invariants().unwrap();
    for (p, code) in ["a", "b", "c"].iter().zip(&codes) {
        l.connect("joiner", "j", vec![], &mut out);
        let room = l.join_room("joiner", None, Some(code), &mut out).unwrap();
        assert_eq!(
            room.host.as_deref(),
            Some(*p),
            "code {code} leads to its room"
        );
        l.leave_room("joiner", &mut out).unwrap();
    }
    // A code is free again once its room is gone.
    l.leave_room("a", &mut out).unwrap();
    l.set_code_source(|| "AAAAAA".to_string());
    l.connect("d", "d", vec![], &mut out);
    assert_eq!(create(&mut l, "d", now).code.as_deref(), Some("AAAAAA"));
    l.check_invariants().unwrap();
}

#[test]
fn a_printed_player_never_shows_its_resume_token() {
    let mut lobby = Lobby::new(LobbyConfig::default());
    let mut out = Vec::new();
    lobby.connect("p1", "ann", Vec::new(), &mut out);
    let token = lobby.issue_token("p1").expect("a token");
    let shown = format!("{:?}", lobby.player("p1").unwrap());
    assert!(!shown.contains(&token), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
}

/// The engine keeps the limits it was built with (the backends read them).
#[test]
fn the_config_is_the_one_given() {
    let cfg = LobbyConfig {
        max_players: 5,
        reconnect_grace: Duration::from_millis(1234),
        ..LobbyConfig::default()
    };
    let l = Lobby::new(cfg);
    assert_eq!(l.config().max_players, 5);
    assert_eq!(l.config().reconnect_grace, Duration::from_millis(1234));
}

/// Random join codes: six characters of the alphabet, spread over it (a
/// constant or truncated code would pass a uniqueness check only by luck).
#[test]
fn codes_are_six_characters_of_the_alphabet_and_vary() {
    let codes: std::collections::HashSet<String> =
        (0..200).map(|_| super::new_code_text()).collect();
    assert!(codes.len() > 190, "random codes repeat: {}", codes.len());
    let mut seen = std::collections::HashSet::new();
    for c in &codes {
        assert_eq!(c.len(), super::CODE_LEN, "{c}");
        for b in c.bytes() {
            assert!(super::CODE_ALPHABET.contains(&b), "{c}");
            seen.insert(b);
        }
    }
    // 1200 draws over 31 letters meet nearly all of them.
    assert!(seen.len() > 25, "only {} letters used", seen.len());
}

/// Who may signal whom, and what the stats count.
#[test]
fn signals_need_a_fellow_member_and_are_counted() {
    let mut l = lobby();
    let mut out = Vec::new();
    let now = Instant::now();
    for p in ["a", "b", "c"] {
        l.connect(p, p, vec![], &mut out);
    }
    let code = crate::protocol::ErrorCode::NotInRoom;
    assert_eq!(l.check_signal("a", "b").unwrap_err().code, code);
    let room = create(&mut l, "a", now);
    l.join_room("b", Some(&room.room_id), None, &mut out)
        .unwrap();
    let id = l.room_by_id_str(&room.room_id).unwrap().id;
    assert_eq!(l.check_signal("a", "b"), Ok(id));
    assert_eq!(l.check_signal("b", "a"), Ok(id));
    for (from, to) in [("a", "a"), ("a", "c"), ("a", "nobody")] {
        assert_eq!(
            l.check_signal(from, to).unwrap_err().code,
            crate::protocol::ErrorCode::PeerNotFound,
            "{from} -> {to}"
        );
    }
    assert_eq!(l.stats().signals_relayed, 0);
    l.count_signal();
    l.count_signal();
    assert_eq!(l.stats().signals_relayed, 2);
}

/// Every start counts once; the chat keeps the last lines only.
#[test]
fn starts_are_counted_and_chat_history_is_bounded() {
    let mut l = lobby();
    let mut out = Vec::new();
    let now = Instant::now();
    for p in ["a", "b", "c", "d"] {
        l.connect(p, p, vec![], &mut out);
    }
    for (host, guest) in [("a", "b"), ("c", "d")] {
        let room = create(&mut l, host, now);
        l.join_room(guest, Some(&room.room_id), None, &mut out)
            .unwrap();
        l.start_game(host, &mut out).unwrap();
    }
    assert_eq!(l.stats().matches_started, 2);
    for i in 0..super::CHAT_HISTORY + 5 {
        l.chat("a", &format!("line {i}"), &mut out).unwrap();
    }
    let chat = &l.room_of("a").unwrap().chat;
    assert_eq!(chat.len(), super::CHAT_HISTORY);
    assert_eq!(chat.front().unwrap().text, "line 5");
    assert_eq!(
        chat.back().unwrap().text,
        format!("line {}", super::CHAT_HISTORY + 4)
    );
}

/// Spectators signal players both ways, never each other.
#[test]
fn spectators_signal_players_only() {
    let mut l = lobby();
    let mut out = Vec::new();
    let now = Instant::now();
    for p in ["a", "b", "s", "t"] {
        l.connect(p, p, vec![], &mut out);
    }
    let room = l
        .create_room(
            "a",
            CreateRoom {
                max_players: Some(3),
                max_spectators: Some(2),
                ..CreateRoom::default()
            },
            now,
            &mut out,
        )
        .unwrap();
    l.join_room("b", Some(&room.room_id), None, &mut out)
        .unwrap();
    for s in ["s", "t"] {
        l.spectate(s, Some(&room.room_id), None, &mut out).unwrap();
    }
    let id = l.room_by_id_str(&room.room_id).unwrap().id;
    for (from, to) in [("a", "b"), ("a", "s"), ("s", "a"), ("t", "b")] {
        assert_eq!(l.check_signal(from, to), Ok(id), "{from} -> {to}");
    }
    assert_eq!(
        l.check_signal("s", "t").unwrap_err().code,
        crate::protocol::ErrorCode::Forbidden
    );
}

/// The live room list follows public waiting rooms: listed when the first
/// player sits, updated when what it shows changes (and only then),
/// delisted when the room starts.
#[test]
fn the_room_list_changes_with_what_it_shows() {
    use crate::protocol::Event;
    let mut l = lobby();
    let mut out = Vec::new();
    let now = Instant::now();
    for p in ["a", "b", "c"] {
        l.connect(p, p, vec![], &mut out);
    }
    l.watch_listing(true);
    let room = create(&mut l, "a", now);
    let kinds = |l: &mut Lobby| -> Vec<&'static str> {
        l.take_listing_changes()
            .into_iter()
            .map(|c| match c.event {
                Event::RoomListed { .. } => "listed",
                Event::RoomUpdated { .. } => "updated",
                Event::RoomDelisted { .. } => "delisted",
                _ => "other",
            })
            .collect()
    };
    assert_eq!(kinds(&mut l), ["listed"]);
    l.join_room("b", Some(&room.room_id), None, &mut out)
        .unwrap();
    assert_eq!(kinds(&mut l), ["updated"]);
    l.chat("a", "hello", &mut out).unwrap();
    assert_eq!(kinds(&mut l), Vec::<&str>::new(), "chat shows nothing new");
    l.start_game("a", &mut out).unwrap();
    assert_eq!(kinds(&mut l), ["delisted"]);
    create(&mut l, "c", now);
    assert_eq!(kinds(&mut l), ["listed"]);
    l.leave_room("c", &mut out).unwrap();
    assert_eq!(kinds(&mut l), ["delisted"]);
}

/// Listings by status and mode, and a private room never in them.
#[test]
fn listings_filter_by_status_and_mode() {
    let mut l = lobby();
    let mut out = Vec::new();
    let now = Instant::now();
    for p in ["a", "b", "c", "d"] {
        l.connect(p, p, vec![], &mut out);
    }
    let mk = |l: &mut Lobby, pid: &str, mode: &str, private: bool| {
        let mut out = Vec::new();
        l.create_room(
            pid,
            CreateRoom {
                max_players: Some(2),
                mode: Some(mode.into()),
                private,
                ..CreateRoom::default()
            },
            now,
            &mut out,
        )
        .unwrap()
    };
    let ra = mk(&mut l, "a", "duel", false);
    let rb = mk(&mut l, "b", "race", false);
    mk(&mut l, "c", "duel", true);
    l.join_room("d", Some(&ra.room_id), None, &mut out).unwrap();
    let ids = |rooms: Vec<super::RoomInfo>| -> Vec<String> {
        rooms.into_iter().map(|r| r.room_id).collect()
    };
    assert_eq!(
        ids(l.list_rooms(RoomStatus::Waiting, None, 10)),
        vec![rb.room_id.clone()]
    );
    assert_eq!(
        ids(l.list_rooms(RoomStatus::Waiting, Some("duel"), 10)),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(l.list_rooms(RoomStatus::Active, Some("duel"), 10)),
        vec![ra.room_id.clone()]
    );
    assert_eq!(
        ids(l.list_rooms(RoomStatus::Active, Some("race"), 10)),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(l.list_rooms(RoomStatus::Waiting, Some("race"), 10)),
        vec![rb.room_id]
    );
    // A private room closing is no change of the list.
    l.watch_listing(true);
    l.leave_room("c", &mut out).unwrap();
    assert!(l.take_listing_changes().is_empty());
    // Not watching: nothing is recorded.
    l.watch_listing(false);
    l.leave_room("b", &mut out).unwrap();
    assert!(l.take_listing_changes().is_empty());
}

/// The recount catches a player and its seat disagreeing: the check
/// itself can fail.
#[test]
fn the_recount_sees_a_seat_and_its_player_disagree() {
    let mut l = lobby();
    let mut out = Vec::new();
    let now = Instant::now();
    for p in ["a", "b", "s"] {
        l.connect(p, p, vec![], &mut out);
    }
    let room = l
        .create_room(
            "a",
            CreateRoom {
                max_players: Some(3),
                max_spectators: Some(1),
                ..CreateRoom::default()
            },
            now,
            &mut out,
        )
        .unwrap();
    l.spectate("s", Some(&room.room_id), None, &mut out)
        .unwrap();
    l.check_invariants().unwrap();
    let id = l.room_by_id_str(&room.room_id).unwrap().id;
    // A seat marked connected for a dropped player.
    l.players.get_mut("a").unwrap().connected = false;
    assert!(l.check_invariants().is_err());
    l.players.get_mut("a").unwrap().connected = true;
    // A player pointing at no room while seated.
    l.players.get_mut("a").unwrap().room = None;
    assert!(l.check_invariants().is_err());
    l.players.get_mut("a").unwrap().room = Some(id);
    // A spectator whose connection flag differs.
    l.rooms.get_mut(&id).unwrap().spectators[0].connected = false;
    assert!(l.check_invariants().is_err());
    l.rooms.get_mut(&id).unwrap().spectators[0].connected = true;
    // A player pointing at a room it has no place in.
    l.players.get_mut("b").unwrap().room = Some(id);
    assert!(l.check_invariants().is_err());
    l.players.get_mut("b").unwrap().room = None;
    l.check_invariants().unwrap();
}

/// Resume tokens: single use, replaced by a newer one, unknown ones refused.
#[test]
fn resume_tokens_are_single_use_and_replaced() {
    let mut l = lobby();
    let mut out = Vec::new();
    l.connect("a", "a", vec![], &mut out);
    assert!(l.issue_token("nobody").is_none());
    let first = l.issue_token("a").unwrap();
    let second = l.issue_token("a").unwrap();
    assert_ne!(first, second);
    assert_eq!(l.redeem_token(&first), None, "replaced");
    assert_eq!(l.redeem_token("not-a-token"), None);
    assert_eq!(l.redeem_token(&second).as_deref(), Some("a"));
    assert_eq!(l.redeem_token(&second), None, "used up");
    assert_eq!(l.footprint().tokens, 0);
    // A token of a player forgotten since is gone with it.
    let third = l.issue_token("a").unwrap();
    let mut removed = Vec::new();
    assert!(l.remove_player("a", &mut removed));
    assert_eq!(l.redeem_token(&third), None);
    l.check_invariants().unwrap();
}

/// A room that closes dismisses its spectators, each told of every one.
#[test]
fn a_closing_room_dismisses_its_spectators() {
    use crate::protocol::{Event, LeaveReason};
    let mut l = connected(LobbyConfig::default(), &["h", "s1", "s2"]);
    let mut out = Vec::new();
    let now = Instant::now();
    let req = CreateRoom {
        max_spectators: Some(2),
        ..CreateRoom::default()
    };
    let room = l.create_room("h", req, now, &mut out).unwrap();
    l.spectate("s1", Some(&room.room_id), None, &mut out)
        .unwrap();
    l.spectate("s2", Some(&room.room_id), None, &mut out)
        .unwrap();
    out.clear();
    l.leave_room("h", &mut out).unwrap();
    let left = events(&out, |e| match e {
        Event::SpectatorLeft {
            room_id,
            player_id,
            reason,
        } => {
            assert_eq!(room_id, &room.room_id);
            assert_eq!(*reason, LeaveReason::Closed);
            Some(player_id.clone())
        }
        _ => None,
    });
    let both = vec!["s1".to_string(), "s2".to_string()];
    assert_eq!(left, [(both.clone(), "s1".into()), (both, "s2".into())]);
    assert!(l.room_of("s1").is_none());
    assert_eq!(l.footprint().rooms, 0);
    l.check_invariants().unwrap();
}
