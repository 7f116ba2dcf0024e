//! Parties (1.1 `create_party`, `join_party`, `leave_party`) through the
//! real WebSocket interface, in memory and (with `RENDEZVOUS_TEST_CLUSTER=1`)
//! in cluster mode: the Party objects and `party_updated` each member sees,
//! the leader hand-over, the refusals, the party's one ticket formed into a
//! room with solo tickets and never split, the leader's `find_match`
//! seating everyone, cancellation by the leader or by a membership change,
//! and members who drop, come back or are forgotten.

mod support;

use std::time::Duration;

use rendezvous::client::{Client, ClientError};
use rendezvous::protocol::{PartyInfo, PartyMember, TicketInfo};
use serde_json::{json, Value};
use support::*;

/// How long any expected event may take.
const WAIT: Duration = Duration::from_secs(5);
/// How long a client is watched for an event that must not come.
const QUIET: Duration = Duration::from_millis(300);

/// The next event of `c`, which must come within [`WAIT`].
async fn next(c: &Client) -> Value {
    c.next_event_within(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{}: no event within {WAIT:?}: {e:?}", c.welcome.name))
}

/// Reads what `c` has been sent so far (until it is quiet for [`QUIET`]).
async fn drain(c: &Client) {
    for _ in 0..100 {
        if c.next_event_within(QUIET).await.is_err() {
            return;
        }
    }
    panic!("{}: events never stop", c.welcome.name);
}

/// The next event of `c`, which must be `party_updated`: its party.
async fn party_update(c: &Client) -> PartyInfo {
    let ev = next(c).await;
    assert_eq!(ev["type"], "party_updated", "{}: {ev}", c.welcome.name);
    serde_json::from_value(ev["party"].clone()).expect("a Party object")
}

/// `base` (id, code, size) with these members, in this order, the first
/// leading; each flag says whether that member is connected.
fn party(base: &PartyInfo, members: &[(&Client, bool)]) -> PartyInfo {
    PartyInfo {
        party_id: base.party_id.clone(),
        code: base.code.clone(),
        leader: members[0].0.player_id().to_string(),
        members: members
            .iter()
            .map(|(c, connected)| PartyMember {
                player_id: c.player_id().to_string(),
                name: c.welcome.name.clone(),
                connected: *connected,
            })
            .collect(),
        max_size: base.max_size,
    }
}

/// `leader` creates a party that `others` join in order; every
/// `party_updated` this sends is checked and consumed.
async fn form_party(leader: &Client, others: &[&Client], max_size: Option<u64>) -> PartyInfo {
    let base = leader.create_party(max_size).await.unwrap();
    let mut members = vec![(leader, true)];
    for c in others {
        let reply = c.join_party(&base.code).await.unwrap();
        let earlier: Vec<&Client> = members.iter().map(|(m, _)| *m).collect();
        members.push((c, true));
        let want = party(&base, &members);
        assert_eq!(reply, want);
        for m in earlier {
            assert_eq!(party_update(m).await, want, "{}", m.welcome.name);
        }
    }
    party(&base, &members)
}

fn pids(cs: &[&Client]) -> Vec<String> {
    cs.iter().map(|c| c.player_id().to_string()).collect()
}

/// Asserts the call failed with `code` and a message naming `who`.
fn assert_code_naming<T: std::fmt::Debug>(r: Result<T, ClientError>, code: &str, who: &str) {
    match r {
        Err(ClientError::Server { code: c, message }) => {
            assert_eq!(c.as_str(), code, "message was: {message}");
            assert!(message.contains(who), "{message:?} does not name {who}");
        }
        other => panic!("expected error {code}, got {other:?}"),
    }
}

#[tokio::test]
async fn create_join_and_leave_show_the_party_and_tell_every_other_member() {
    let ts = TestServer::start().await;
    let ann = ts.manual_client("ann").await;
    let bob = ts.manual_client("bob").await;
    let cat = ts.manual_client("cat").await;
    let p = ann.create_party(None).await.unwrap();
    assert!(!p.party_id.is_empty() && !p.code.is_empty());
    assert_eq!(p.max_size, 4, "the default size");
    assert_eq!(p, party(&p, &[(&ann, true)]));
    wait_stats(&ts, |s| s["parties"] == 1).await;

    // The code is matched trimmed and whatever its case.
    let typed = format!("  {}\t", p.code.to_lowercase());
    let two = party(&p, &[(&ann, true), (&bob, true)]);
    assert_eq!(bob.join_party(&typed).await.unwrap(), two);
    assert_eq!(party_update(&ann).await, two);
    let three = party(&p, &[(&ann, true), (&bob, true), (&cat, true)]);
    assert_eq!(cat.join_party(&p.code).await.unwrap(), three);
    assert_eq!(party_update(&ann).await, three);
    assert_eq!(party_update(&bob).await, three);
    // The requester gets the reply, not an update.
    expect_no_event(&bob, QUIET).await;
    expect_no_event(&cat, QUIET).await;

    bob.leave_party().await.unwrap();
    let two = party(&p, &[(&ann, true), (&cat, true)]);
    assert_eq!(party_update(&ann).await, two);
    assert_eq!(party_update(&cat).await, two);
    expect_no_event(&bob, QUIET).await;

    // Parties are counted; bob, out of his, may make another.
    let other = bob.create_party(Some(16)).await.unwrap();
    assert_eq!(other.max_size, 16);
    assert_ne!(other.party_id, p.party_id);
    assert_ne!(other.code, p.code);
    wait_stats(&ts, |s| s["parties"] == 2).await;
    bob.leave_party().await.unwrap();
    wait_stats(&ts, |s| s["parties"] == 1).await;
    assert_code(ann.join_party(&other.code).await, "already_in_party");
    assert_code(cat.join_party(&other.code).await, "already_in_party");
    // The last one out ends it, and its code with it.
    assert_code(bob.join_party(&other.code).await, "party_not_found");
    ts.server.app.check_invariants().await.unwrap();
    ts.stop().await;
}

#[tokio::test]
async fn the_next_member_in_join_order_leads_when_the_leader_leaves() {
    let ts = TestServer::start().await;
    let ann = ts.manual_client("ann").await;
    let bob = ts.manual_client("bob").await;
    let cat = ts.manual_client("cat").await;
    let p = form_party(&ann, &[&bob, &cat], None).await;
    ann.leave_party().await.unwrap();
    let led_by_bob = party(&p, &[(&bob, true), (&cat, true)]);
    assert_eq!(led_by_bob.leader, bob.player_id());
    assert_eq!(party_update(&bob).await, led_by_bob);
    assert_eq!(party_update(&cat).await, led_by_bob);
    expect_no_event(&ann, QUIET).await;

    // The new leader acts for the party; the old one is on its own.
    let t = bob.queue_match(json!({"max_players": 3})).await.unwrap();
    assert_eq!(t.players, pids(&[&bob, &cat]));
    let ev = next(&cat).await;
    assert_eq!(ev["type"], "ticket_queued");
    assert_eq!(ev["ticket"]["ticket_id"], t.ticket_id.as_str());
    assert_code(cat.cancel_match().await, "not_party_leader");
    bob.cancel_match().await.unwrap();
    let ev = next(&cat).await;
    assert_eq!(
        ev,
        json!({"type": "ticket_cancelled", "ticket_id": t.ticket_id})
    );
    wait_stats(&ts, |s| s["tickets_queued"] == 0).await;

    bob.leave_party().await.unwrap();
    assert_eq!(party_update(&cat).await, party(&p, &[(&cat, true)]));
    wait_stats(&ts, |s| s["parties"] == 1).await;
    cat.leave_party().await.unwrap();
    wait_stats(&ts, |s| s["parties"] == 0).await;
    assert_code(ann.join_party(&p.code).await, "party_not_found");
    expect_no_event(&bob, QUIET).await;
    ts.server.app.check_invariants().await.unwrap();
    ts.stop().await;
}

#[tokio::test]
async fn refusals_name_the_reason_and_change_nothing() {
    let ts = TestServer::start().await;
    let ann = ts.manual_client("ann").await;
    let bob = ts.manual_client("bob").await;
    let cat = ts.manual_client("cat").await;
    let dan = ts.manual_client("dan").await;
    for size in [0, 1, 17, 1000] {
        assert_code(ann.create_party(Some(size)).await, "bad_request");
    }
    assert_code(
        ann.request("create_party", json!({"max_size": "4"})).await,
        "bad_request",
    );
    assert_code(ann.request("join_party", json!({})).await, "bad_request");
    assert_code(ann.leave_party().await, "not_in_party");
    assert_code(ann.join_party("NO-SUCH-CODE").await, "party_not_found");
    assert_code(ann.join_party("").await, "party_not_found");
    assert_code(ann.join_party(&"A".repeat(5000)).await, "party_not_found");
    wait_stats(&ts, |s| s["parties"] == 0).await;

    // dan queued alone before joining: a member's ticket blocks the leader.
    dan.queue_match(json!({"max_players": 4})).await.unwrap();
    let p = form_party(&ann, &[&bob, &dan], Some(3)).await;
    assert_code(cat.join_party(&p.code).await, "party_full");
    assert_code(ann.create_party(None).await, "already_in_party");
    assert_code(bob.join_party(&p.code).await, "already_in_party");
    let q = json!({"max_players": 4});
    assert_code_naming(
        ann.queue_match(q.clone()).await,
        "already_queued",
        dan.player_id(),
    );
    assert_code_naming(
        ann.find_match(4, "default", json!({})).await,
        "already_queued",
        dan.player_id(),
    );
    dan.cancel_match().await.unwrap();

    // Only the leader queues or matches for the party.
    assert_code(bob.queue_match(q.clone()).await, "not_party_leader");
    assert_code(
        bob.find_match(4, "default", json!({})).await,
        "not_party_leader",
    );
    assert_code(dan.cancel_match().await, "not_queued");

    // A member in a room blocks the leader, named.
    bob.create_room(json!({})).await.unwrap();
    assert_code_naming(
        ann.queue_match(q.clone()).await,
        "already_in_room",
        bob.player_id(),
    );
    assert_code_naming(
        ann.find_match(4, "default", json!({})).await,
        "already_in_room",
        bob.player_id(),
    );
    bob.leave_room().await.unwrap();

    // A party of 3 does not fit rooms of 2.
    assert_code(
        ann.queue_match(json!({"max_players": 2})).await,
        "bad_request",
    );
    assert_code(ann.find_match(2, "default", json!({})).await, "bad_request");
    let s = wait_stats(&ts, |s| s["tickets_queued"] == 0 && s["total_rooms"] == 0).await;
    assert_eq!(s["parties"], 1, "{s}");

    // Once queued, a member cannot cancel the party's ticket.
    let t = ann.queue_match(q).await.unwrap();
    assert_eq!(t.players, pids(&[&ann, &bob, &dan]));
    assert_code(bob.cancel_match().await, "not_party_leader");
    assert_code(dan.cancel_match().await, "not_party_leader");
    wait_stats(&ts, |s| s["tickets_queued"] == 1).await;
    ts.server.app.check_invariants().await.unwrap();
    ts.stop().await;
}

#[tokio::test]
async fn a_party_ticket_and_two_solo_tickets_form_one_room_with_the_party_together() {
    let ts = TestServer::start().await;
    let ann = ts.manual_client("ann").await;
    let bob = ts.manual_client("bob").await;
    let solo1 = ts.manual_client("solo1").await;
    let solo2 = ts.manual_client("solo2").await;
    let q = json!({"mode": "squad", "max_players": 4});
    let t1 = solo1.queue_match(q.clone()).await.unwrap();
    form_party(&ann, &[&bob], None).await;
    let reply = ann.request("queue_match", q.clone()).await.unwrap();
    let tp: TicketInfo = serde_json::from_value(reply["ticket"].clone()).unwrap();
    assert_eq!(tp.players, pids(&[&ann, &bob]), "one ticket, leader first");
    let ev = next(&bob).await;
    assert_eq!(ev["type"], "ticket_queued");
    assert_eq!(
        ev["ticket"], reply["ticket"],
        "the member sees the leader's ticket"
    );
    let s = wait_stats(&ts, |s| s["tickets_queued"] == 2).await;
    assert_eq!(s["total_rooms"], 0, "3 of 4 players make no room: {s}");
    expect_no_event(&ann, QUIET).await;

    let t2 = solo2.queue_match(q).await.unwrap();
    let ga = next(&ann).await;
    let gb = next(&bob).await;
    let g1 = event_within(&solo1, "game_start", WAIT).await;
    let g2 = event_within(&solo2, "game_start", WAIT).await;
    for g in [&ga, &gb] {
        assert_eq!(g["type"], "game_start");
        assert_eq!(
            g["ticket_id"],
            tp.ticket_id.as_str(),
            "one ticket for the party"
        );
    }
    assert_eq!(g1["ticket_id"], t1.ticket_id.as_str());
    assert_eq!(g2["ticket_id"], t2.ticket_id.as_str());
    let room = &ga["room"];
    for g in [&gb, &g1, &g2] {
        assert_eq!(&g["room"], room);
    }
    assert_eq!(room["status"], "active");
    assert_eq!(room["max_players"], 4);
    assert_eq!(
        player_ids(room),
        pids(&[&solo1, &ann, &bob, &solo2]),
        "ticket order, the party's members adjacent in join order"
    );
    let s = wait_stats(&ts, |s| s["tickets_queued"] == 0).await;
    assert_eq!(s["active_rooms"], 1, "{s}");
    assert_eq!(s["parties"], 1, "the party outlives its match: {s}");
    ts.server.app.check_invariants().await.unwrap();
    ts.stop().await;
}

#[tokio::test]
async fn a_party_of_three_is_never_split() {
    let ts = TestServer::start().await;
    let ann = ts.manual_client("ann").await;
    let bob = ts.manual_client("bob").await;
    let cat = ts.manual_client("cat").await;
    let p0 = ts.manual_client("p0").await;
    let p1 = ts.manual_client("p1").await;
    // The only waiting room of 4 has 2 free seats.
    let (r0, created) = p0.find_match(4, "trio", json!({})).await.unwrap();
    assert!(created);
    let (r1, created) = p1.find_match(4, "trio", json!({})).await.unwrap();
    assert!(!created);
    assert_eq!(r1.room_id, r0.room_id);
    event_within(&p0, "player_joined", WAIT).await;

    form_party(&ann, &[&bob, &cat], None).await;
    let (room, created) = ann.find_match(4, "trio", json!({})).await.unwrap();
    assert!(created, "a new room rather than a split party");
    assert_ne!(room.room_id, r0.room_id);
    let members: Vec<&str> = room.players.iter().map(|p| p.player_id.as_str()).collect();
    assert_eq!(members, pids(&[&ann, &bob, &cat]));
    for c in [&bob, &cat] {
        let ev = event_within(c, "room_joined", WAIT).await;
        assert_eq!(ev["room"]["room_id"], room.room_id.as_str());
        assert_eq!(player_ids(&ev["room"]), members);
    }
    expect_no_event(&p0, QUIET).await;
    let s = wait_stats(&ts, |s| s["total_rooms"] == 2).await;
    assert_eq!(s["waiting_rooms"], 2, "{s}");

    // Tickets: 3 of the party and 1 solo fill a room of 4; the other solo
    // waits rather than take a member's seat.
    for c in [&ann, &bob, &cat, &p0, &p1] {
        c.leave_room().await.unwrap();
    }
    drain(&p1).await;
    let q = json!({"mode": "trio-q", "max_players": 4});
    let t0 = p0.queue_match(q.clone()).await.unwrap();
    p1.queue_match(q.clone()).await.unwrap();
    let tp = ann.queue_match(q).await.unwrap();
    let g = event_within(&ann, "game_start", WAIT).await;
    assert_eq!(g["ticket_id"], tp.ticket_id.as_str());
    assert_eq!(player_ids(&g["room"]), pids(&[&p0, &ann, &bob, &cat]));
    for c in [&bob, &cat] {
        let e = event_within(c, "game_start", WAIT).await;
        assert_eq!(e["ticket_id"], tp.ticket_id.as_str());
        assert_eq!(e["room"], g["room"]);
    }
    assert_eq!(
        event_within(&p0, "game_start", WAIT).await["ticket_id"],
        t0.ticket_id.as_str()
    );
    let s = wait_stats(&ts, |s| s["tickets_queued"] == 1).await;
    assert_eq!(s["active_rooms"], 1, "{s}");
    expect_no_event(&p1, QUIET).await;
    // p1's ticket is still queued: it can be cancelled.
    p1.cancel_match().await.unwrap();
    ts.server.app.check_invariants().await.unwrap();
    ts.stop().await;
}

#[tokio::test]
async fn the_leaders_find_match_seats_every_member_and_tells_them_with_room_joined() {
    let ts = TestServer::start().await;
    let ann = ts.manual_client("ann").await;
    let bob = ts.manual_client("bob").await;
    let p0 = ts.manual_client("p0").await;
    // An older room with two free seats takes the whole party.
    let (r0, _) = p0.find_match(3, "m", json!({})).await.unwrap();
    form_party(&ann, &[&bob], None).await;
    let reply = ann
        .request("find_match", json!({"max_players": 3, "mode": "m"}))
        .await
        .unwrap();
    assert_eq!(reply["created"], false);
    let room = &reply["room"];
    assert_eq!(room["room_id"], r0.room_id.as_str());
    assert_eq!(player_ids(room), pids(&[&p0, &ann, &bob]));
    assert_eq!(
        room["status"], "active",
        "the reply shows the room after every member is seated"
    );
    // bob: the room's usual events, then room_joined with the same room.
    let kinds = ["chat_history", "room_status", "game_start", "room_joined"];
    let mut seen = Vec::new();
    for _ in kinds {
        seen.push(next(&bob).await);
    }
    let types: Vec<&str> = seen.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, kinds);
    assert_eq!(&seen[3]["room"], room);
    assert_eq!(seen[2]["room"]["room_id"], room["room_id"]);
    // p0 sees both arrive, in join order, then the start.
    let j1 = event_within(&p0, "player_joined", WAIT).await;
    let j2 = next(&p0).await;
    assert_eq!(j1["player"]["player_id"], ann.player_id());
    assert_eq!(j2["type"], "player_joined");
    assert_eq!(j2["player"]["player_id"], bob.player_id());
    assert_eq!(
        event_within(&p0, "game_start", WAIT).await["room"]["room_id"],
        room["room_id"]
    );
    // ann's events: her chat history, bob joining, the start; no room_joined.
    assert_eq!(next(&ann).await["type"], "chat_history");
    assert_eq!(next(&ann).await["player"]["player_id"], bob.player_id());
    event_within(&ann, "game_start", WAIT).await;
    expect_no_event(&ann, QUIET).await;

    // No room fits: one is created, both seated, it waits for a third.
    for c in [&ann, &bob, &p0] {
        c.leave_room().await.unwrap();
    }
    let reply = ann
        .request(
            "find_match",
            json!({"max_players": 3, "mode": "m2", "filters": {"map": "x"}}),
        )
        .await
        .unwrap();
    assert_eq!(reply["created"], true);
    let room = &reply["room"];
    assert_eq!(room["host"], ann.player_id());
    assert_eq!(player_ids(room), pids(&[&ann, &bob]));
    assert_eq!(room["status"], "waiting");
    let ev = event_within(&bob, "room_joined", WAIT).await;
    assert_eq!(&ev["room"], room);
    let s = wait_stats(&ts, |s| s["waiting_rooms"] == 1 && s["total_rooms"] == 1).await;
    assert_eq!(s["total_players"], 2, "{s}");
    ts.server.app.check_invariants().await.unwrap();
    ts.stop().await;
}

#[tokio::test]
async fn the_leaders_cancel_match_tells_the_members() {
    let ts = TestServer::start().await;
    let ann = ts.manual_client("ann").await;
    let bob = ts.manual_client("bob").await;
    let cat = ts.manual_client("cat").await;
    form_party(&ann, &[&bob, &cat], None).await;
    let reply = ann
        .request("queue_match", json!({"max_players": 6}))
        .await
        .unwrap();
    let t: TicketInfo = serde_json::from_value(reply["ticket"].clone()).unwrap();
    assert_eq!(t.players, pids(&[&ann, &bob, &cat]));
    for c in [&bob, &cat] {
        let ev = next(c).await;
        assert_eq!(ev["type"], "ticket_queued");
        assert_eq!(ev["ticket"], reply["ticket"]);
    }
    wait_stats(&ts, |s| s["tickets_queued"] == 1).await;
    assert_code(bob.cancel_match().await, "not_party_leader");
    ann.cancel_match().await.unwrap();
    for c in [&bob, &cat] {
        let ev = next(c).await;
        assert_eq!(
            ev,
            json!({"type": "ticket_cancelled", "ticket_id": t.ticket_id})
        );
    }
    expect_no_event(&ann, QUIET).await;
    wait_stats(&ts, |s| s["tickets_queued"] == 0).await;
    assert_code(ann.cancel_match().await, "not_queued");
    assert_code(bob.cancel_match().await, "not_queued");
    // Free again: the party can queue anew.
    let again = ann.queue_match(json!({"max_players": 6})).await.unwrap();
    assert_ne!(again.ticket_id, t.ticket_id);
    ts.server.app.check_invariants().await.unwrap();
    ts.stop().await;
}

/// The `ticket_cancelled` and `party_updated` that `c` gets after a
/// membership change, in whatever order: (cancelled ticket id, party).
async fn cancelled_and_updated(c: &Client) -> (String, PartyInfo) {
    let (mut ticket, mut party) = (None, None);
    for _ in 0..2 {
        let ev = next(c).await;
        match ev["type"].as_str() {
            Some("ticket_cancelled") if ticket.is_none() => {
                ticket = Some(ev["ticket_id"].as_str().unwrap().to_string());
            }
            Some("party_updated") if party.is_none() => {
                party = Some(serde_json::from_value(ev["party"].clone()).unwrap());
            }
            _ => panic!("{}: unexpected {ev}", c.welcome.name),
        }
    }
    (ticket.unwrap(), party.unwrap())
}

#[tokio::test]
async fn a_membership_change_cancels_the_queued_party_ticket() {
    let ts = TestServer::start().await;
    let ann = ts.manual_client("ann").await;
    let bob = ts.manual_client("bob").await;
    let cat = ts.manual_client("cat").await;
    let p = form_party(&ann, &[&bob], None).await;
    let q = json!({"mode": "change", "max_players": 4});
    let t = ann.queue_match(q.clone()).await.unwrap();
    assert_eq!(next(&bob).await["type"], "ticket_queued");

    // cat joins: the ticket without cat goes; cat was never on it.
    let three = party(&p, &[(&ann, true), (&bob, true), (&cat, true)]);
    assert_eq!(cat.join_party(&p.code).await.unwrap(), three);
    for c in [&ann, &bob] {
        assert_eq!(
            cancelled_and_updated(c).await,
            (t.ticket_id.clone(), three.clone())
        );
    }
    expect_no_event(&cat, QUIET).await;
    wait_stats(&ts, |s| s["tickets_queued"] == 0).await;

    // A new ticket holds all three; bob leaving takes it down too.
    let t3 = ann.queue_match(q).await.unwrap();
    assert_eq!(t3.players, pids(&[&ann, &bob, &cat]));
    for c in [&bob, &cat] {
        assert_eq!(next(c).await["ticket"]["ticket_id"], t3.ticket_id.as_str());
    }
    bob.leave_party().await.unwrap();
    let two = party(&p, &[(&ann, true), (&cat, true)]);
    for c in [&ann, &cat] {
        assert_eq!(
            cancelled_and_updated(c).await,
            (t3.ticket_id.clone(), two.clone())
        );
    }
    expect_no_event(&bob, QUIET).await;
    let s = wait_stats(&ts, |s| s["tickets_queued"] == 0).await;
    assert_eq!(s["total_rooms"], 0, "{s}");
    // bob is free: his own ticket is his.
    let tb = bob.queue_match(json!({"max_players": 4})).await.unwrap();
    assert_eq!(tb.players, pids(&[&bob]));
    ts.server.app.check_invariants().await.unwrap();
    ts.stop().await;
}

#[tokio::test]
async fn a_dropped_member_shows_away_holds_the_ticket_and_is_forgotten_after_the_grace() {
    let ts = TestServer::with_args(&["--reconnect-grace-ms", "1500"]).await;
    let ann = ts.manual_client("ann").await;
    let bob = ts.manual_client("bob").await;
    let solo1 = ts.manual_client("solo1").await;
    let solo2 = ts.manual_client("solo2").await;
    let p = form_party(&ann, &[&bob], None).await;
    let q = json!({"mode": "away", "max_players": 4});
    let t = ann.queue_match(q.clone()).await.unwrap();
    assert_eq!(next(&bob).await["type"], "ticket_queued");
    let token = bob.welcome.resume_token.clone();
    bob.drop_connection();
    assert_eq!(
        party_update(&ann).await,
        party(&p, &[(&ann, true), (&bob, false)])
    );
    // Four players queued, but one is away: no room.
    solo1.queue_match(q.clone()).await.unwrap();
    solo2.queue_match(q).await.unwrap();
    expect_no_event(&solo1, Duration::from_millis(600)).await;
    let s = wait_stats(&ts, |s| s["tickets_queued"] == 3).await;
    assert_eq!(s["total_rooms"], 0, "{s}");

    // Back within the grace: shown connected, and the room forms.
    let bob = Client::connect_with(&format!("{}?resume={token}", ts.ws_url()), no_reconnect())
        .await
        .unwrap();
    assert!(bob.welcome.resumed);
    assert_eq!(
        party_update(&ann).await,
        party(&p, &[(&ann, true), (&bob, true)])
    );
    let g = event_within(&ann, "game_start", WAIT).await;
    assert_eq!(g["ticket_id"], t.ticket_id.as_str());
    assert_eq!(player_ids(&g["room"]), pids(&[&ann, &bob, &solo1, &solo2]));
    assert_eq!(
        event_within(&bob, "game_start", WAIT).await["ticket_id"],
        t.ticket_id.as_str()
    );
    event_within(&solo1, "game_start", WAIT).await;
    event_within(&solo2, "game_start", WAIT).await;

    // Gone past the grace: out of the party, and its ticket cancelled.
    for c in [&ann, &bob] {
        c.leave_room().await.unwrap();
    }
    let t2 = ann
        .queue_match(json!({"mode": "away2", "max_players": 3}))
        .await
        .unwrap();
    assert_eq!(
        event_within(&bob, "ticket_queued", WAIT).await["ticket"]["ticket_id"],
        t2.ticket_id.as_str()
    );
    bob.drop_connection();
    assert_eq!(
        event_within(&ann, "party_updated", WAIT).await["party"],
        serde_json::to_value(party(&p, &[(&ann, true), (&bob, false)])).unwrap()
    );
    assert_eq!(
        cancelled_and_updated(&ann).await,
        (t2.ticket_id.clone(), party(&p, &[(&ann, true)]))
    );
    let s = wait_stats(&ts, |s| s["tickets_queued"] == 0).await;
    assert_eq!(s["parties"], 1, "{s}");

    // A leader forgotten hands the party over.
    let cat = ts.manual_client("cat").await;
    cat.join_party(&p.code).await.unwrap();
    party_update(&ann).await;
    ann.drop_connection();
    assert_eq!(
        party_update(&cat).await,
        party(&p, &[(&ann, false), (&cat, true)])
    );
    assert_eq!(party_update(&cat).await, party(&p, &[(&cat, true)]));
    wait_stats(&ts, |s| s["parties"] == 1).await;
    ts.server.app.check_invariants().await.unwrap();
    ts.stop().await;
}

// A member who is away when the leader acts: the ticket waits for it, a
// seat is held for it, and a lone leader's ticket is the party's.

#[tokio::test]
async fn a_party_queued_while_a_member_is_away_waits_for_it() {
    let ts = TestServer::with_args(&["--reconnect-grace-ms", "3000"]).await;
    let ann = ts.manual_client("ann").await;
    let bob = ts.manual_client("bob").await;
    let p = form_party(&ann, &[&bob], None).await;
    let token = bob.welcome.resume_token.clone();
    bob.drop_connection();
    assert_eq!(
        party_update(&ann).await,
        party(&p, &[(&ann, true), (&bob, false)])
    );
    let t = ann
        .queue_match(json!({"mode": "aw", "max_players": 2}))
        .await
        .unwrap();
    expect_no_event(&ann, Duration::from_millis(600)).await;
    let s = wait_stats(&ts, |s| s["tickets_queued"] == 1).await;
    assert_eq!(s["total_rooms"], 0, "{s}");
    ts.server.app.check_invariants().await.unwrap();
    let bob = Client::connect_with(&format!("{}?resume={token}", ts.ws_url()), no_reconnect())
        .await
        .unwrap();
    assert_eq!(
        event_within(&bob, "game_start", WAIT).await["ticket_id"],
        t.ticket_id.as_str()
    );
    ts.server.app.check_invariants().await.unwrap();
    ts.stop().await;
}

#[tokio::test]
async fn find_match_with_a_member_away_keeps_the_invariants() {
    let ts = TestServer::with_args(&["--reconnect-grace-ms", "3000"]).await;
    let ann = ts.manual_client("ann").await;
    let bob = ts.manual_client("bob").await;
    form_party(&ann, &[&bob], None).await;
    bob.drop_connection();
    party_update(&ann).await;
    let reply = ann
        .request("find_match", json!({"mode": "aw", "max_players": 3}))
        .await
        .unwrap();
    assert_eq!(reply["room"]["players"][1]["connected"], false, "{reply}");
    let s = ts.stats().await;
    assert_eq!(s["held_seats"], 1, "{s}");
    ts.server.app.check_invariants().await.unwrap();
    ts.stop().await;
}

#[tokio::test]
async fn a_lone_leaders_ticket_is_cancelled_when_someone_joins() {
    let ts = TestServer::start().await;
    let ann = ts.manual_client("ann").await;
    let bob = ts.manual_client("bob").await;
    let p = ann.create_party(None).await.unwrap();
    let t = ann
        .queue_match(json!({"mode": "lone", "max_players": 2}))
        .await
        .unwrap();
    bob.join_party(&p.code).await.unwrap();
    let (ticket, _) = cancelled_and_updated(&ann).await;
    assert_eq!(ticket, t.ticket_id);
    wait_stats(&ts, |s| s["tickets_queued"] == 0).await;
    ts.server.app.check_invariants().await.unwrap();
    ts.stop().await;
}

/// A member that comes back (resume) finds its party in `welcome`; a fresh
/// session has none.
#[tokio::test]
async fn a_resumed_member_finds_its_party_in_welcome() {
    let ts = TestServer::with_args(&["--reconnect-grace-ms", "3000"]).await;
    let ann = ts.manual_client("ann").await;
    let bob = ts.manual_client("bob").await;
    let p = form_party(&ann, &[&bob], None).await;
    assert!(ann.welcome.party.is_none(), "a fresh session has no party");
    let token = bob.welcome.resume_token.clone();
    bob.drop_connection();
    party_update(&ann).await;
    let bob = Client::connect_with(&format!("{}?resume={token}", ts.ws_url()), no_reconnect())
        .await
        .unwrap();
    assert!(bob.welcome.resumed);
    assert_eq!(
        bob.welcome.party,
        Some(party(&p, &[(&ann, true), (&bob, true)]))
    );
    ts.server.app.check_invariants().await.unwrap();
    ts.stop().await;
}
