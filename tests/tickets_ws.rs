//! Ticket matchmaking (1.1 `queue_match`, `cancel_match`) through the real
//! WebSocket interface, in memory and (with `RENDEZVOUS_TEST_CLUSTER=1`)
//! in cluster mode: rooms formed from tickets, skill windows that widen,
//! regions and RTT limits, the fill delay, expiry, players who drop while
//! queued, backfill seats, and the refusals.

mod support;

use std::time::Duration;

use rendezvous::client::Client;
use serde_json::json;
use support::*;

#[tokio::test]
async fn two_tickets_form_an_active_room_and_each_player_gets_its_ticket() {
    let ts = TestServer::start().await;
    let ann = ts.client("ann").await;
    let bob = ts.client("bob").await;
    let ta = ann
        .queue_match(json!({"mode": "duel", "max_players": 2}))
        .await
        .unwrap();
    assert_eq!(ta.players, [ann.player_id()]);
    assert!(!ta.ticket_id.is_empty());
    let s = wait_stats(&ts, |s| s["tickets_queued"] == 1).await;
    assert_eq!(s["total_rooms"], 0, "a ticket alone makes no room");
    expect_no_event(&ann, Duration::from_millis(300)).await;

    let tb = bob
        .queue_match(json!({"mode": "duel", "max_players": 2}))
        .await
        .unwrap();
    assert_ne!(ta.ticket_id, tb.ticket_id);
    let ga = event_within(&ann, "game_start", Duration::from_secs(5)).await;
    let gb = event_within(&bob, "game_start", Duration::from_secs(5)).await;
    assert_eq!(ga["ticket_id"], ta.ticket_id.as_str());
    assert_eq!(gb["ticket_id"], tb.ticket_id.as_str());
    assert_eq!(ga["room"], gb["room"]);
    let room = &ga["room"];
    assert_eq!(room["status"], "active");
    assert_eq!(room["mode"], "duel");
    assert_eq!(room["max_players"], 2);
    assert_eq!(room["host"], ann.player_id(), "the oldest ticket hosts");
    assert_eq!(player_ids(room), [ann.player_id(), bob.player_id()]);
    let s = wait_stats(&ts, |s| s["tickets_queued"] == 0).await;
    assert_eq!(s["active_rooms"], 1);
    assert_eq!(s["matches_started"], 1);
    assert_eq!(s["total_players"], 2);
    ts.server.app.check_invariants().await.unwrap();

    // The room is an ordinary room from here: chat and leave work.
    ann.request("chat", json!({"text": "gg"})).await.unwrap();
    assert_eq!(bob.wait_for("chat").await.unwrap()["text"], "gg");
    ann.leave_room().await.unwrap();
    bob.leave_room().await.unwrap();
    ann.close().await;
    bob.close().await;
    ts.server.app.check_invariants().await.unwrap();
    ts.stop().await;
}

#[tokio::test]
async fn refusals_name_the_reason_and_a_ticket_excludes_rooms() {
    let ts = TestServer::start().await;
    let ann = ts.client("ann").await;
    let bob = ts.client("bob").await;
    for (fields, why) in [
        (json!({"max_players": 3, "min_players": 4}), "min over max"),
        (json!({"max_players": 2, "min_players": 0}), "min 0"),
        (json!({"max_players": 1}), "room of 1"),
        (json!({"skill": "high"}), "skill not a number"),
        (json!({"skill": 10, "skill_window": -1}), "negative window"),
        (
            json!({"regions": {"eu west": 20}}),
            "region name with a space",
        ),
        (json!({"regions": {"eu": -5}}), "negative rtt"),
        (json!({"max_rtt_ms": -1}), "negative limit"),
        (
            json!({"regions": {"eu": 151, "us": 200}}),
            "no region within the default 150 ms",
        ),
        (
            json!({"regions": {"eu": 40}, "max_rtt_ms": 30}),
            "no region within its own limit",
        ),
        (
            json!({"filters": {"map": {"nested": 1}}}),
            "filter not scalar",
        ),
        (json!({"mode": ""}), "empty mode"),
    ] {
        assert_code(ann.queue_match(fields.clone()).await, "bad_request");
        let _ = why;
    }
    assert_code(ann.cancel_match().await, "not_queued");
    ann.queue_match(json!({"max_players": 3})).await.unwrap();
    assert_code(
        ann.queue_match(json!({"max_players": 3})).await,
        "already_queued",
    );
    assert_code(
        ann.find_match(2, "default", json!({})).await,
        "already_queued",
    );
    assert_code(ann.create_room(json!({})).await, "already_queued");
    let room = bob.create_room(json!({})).await.unwrap();
    assert_code(ann.join_room(&room.room_id).await, "already_queued");
    assert_code(
        bob.queue_match(json!({"max_players": 3})).await,
        "already_in_room",
    );
    wait_stats(&ts, |s| s["tickets_queued"] == 1).await;
    ann.cancel_match().await.unwrap();
    assert_code(ann.cancel_match().await, "not_queued");
    wait_stats(&ts, |s| s["tickets_queued"] == 0).await;
    // Free again: a room can be joined.
    ann.join_room(&room.room_id).await.unwrap();
    ts.server.app.check_invariants().await.unwrap();
    ts.stop().await;
}

#[tokio::test]
async fn skill_windows_widen_until_two_tickets_meet() {
    let ts = TestServer::start().await;
    let ann = ts.client("ann").await;
    let bob = ts.client("bob").await;
    let cat = ts.client("cat").await;
    // 250 apart, windows of 100 growing by 100/s: they meet after 1.5 s.
    let t = |skill: f64| {
        json!({"max_players": 2, "skill": skill, "skill_window": 100,
               "skill_widen_per_s": 100, "skill_window_max": 400})
    };
    ann.queue_match(t(1000.0)).await.unwrap();
    bob.queue_match(t(1250.0)).await.unwrap();
    // Far beyond any window: stays queued.
    cat.queue_match(t(5000.0)).await.unwrap();
    expect_no_event(&ann, Duration::from_millis(900)).await;
    let started = tokio::time::Instant::now();
    let ga = event_within(&ann, "game_start", Duration::from_secs(5)).await;
    let gb = event_within(&bob, "game_start", Duration::from_secs(1)).await;
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(ga["room"]["room_id"], gb["room"]["room_id"]);
    assert_eq!(player_ids(&ga["room"]), [ann.player_id(), bob.player_id()]);
    expect_no_event(&cat, Duration::from_millis(300)).await;
    let s = wait_stats(&ts, |s| s["tickets_queued"] == 1).await;
    assert_eq!(s["active_rooms"], 1);
    // Tickets without skill never meet tickets with one.
    let dan = ts.client("dan").await;
    dan.queue_match(json!({"max_players": 2})).await.unwrap();
    expect_no_event(&dan, Duration::from_millis(600)).await;
    ts.server.app.check_invariants().await.unwrap();
    ts.stop().await;
}

#[tokio::test]
async fn regions_pick_the_lowest_worst_rtt_within_every_limit() {
    let ts = TestServer::start().await;
    let ann = ts.client("ann").await;
    let bob = ts.client("bob").await;
    let cat = ts.client("cat").await;
    let dan = ts.client("dan").await;
    ann.queue_match(json!({"mode": "r", "regions": {"eu": 30, "us": 90}}))
        .await
        .unwrap();
    // Only eu in common, and eu is over cat's limit: no room.
    cat.queue_match(json!({"mode": "r", "regions": {"eu": 120, "asia": 10}, "max_rtt_ms": 100}))
        .await
        .unwrap();
    expect_no_event(&ann, Duration::from_millis(400)).await;
    bob.queue_match(json!({"mode": "r", "regions": {"us": 40, "asia": 20}}))
        .await
        .unwrap();
    let ga = event_within(&ann, "game_start", Duration::from_secs(5)).await;
    assert_eq!(ga["room"]["data"]["region"], "us", "us: worst 90 ms");
    assert_eq!(player_ids(&ga["room"]), [ann.player_id(), bob.player_id()]);
    // A ticket without regions accepts any: cat's asia.
    dan.queue_match(json!({"mode": "r"})).await.unwrap();
    let gc = event_within(&cat, "game_start", Duration::from_secs(5)).await;
    assert_eq!(gc["room"]["data"]["region"], "asia");
    assert_eq!(player_ids(&gc["room"]), [cat.player_id(), dan.player_id()]);
    ts.server.app.check_invariants().await.unwrap();
    ts.stop().await;
}

#[tokio::test]
async fn smaller_rooms_form_after_the_fill_delay_and_full_ones_at_once() {
    let ts = TestServer::with_args(&["--ticket-fill-after-ms", "1000"]).await;
    let c: Vec<Client> = futures_join(&ts, 4).await;
    let t =
        json!({"mode": "squad", "max_players": 4, "min_players": 2, "filters": {"map": "moon"}});
    c[0].queue_match(t.clone()).await.unwrap();
    c[1].queue_match(t.clone()).await.unwrap();
    expect_no_event(&c[0], Duration::from_millis(500)).await;
    let g = event_within(&c[0], "game_start", Duration::from_secs(5)).await;
    assert_eq!(player_ids(&g["room"]), [c[0].player_id(), c[1].player_id()]);
    assert_eq!(g["room"]["max_players"], 4);
    assert_eq!(g["room"]["status"], "active");
    assert_eq!(
        g["room"]["data"],
        json!({"map": "moon"}),
        "the filters are the room's data"
    );
    // A full room does not wait for the delay.
    let d: Vec<Client> = futures_join(&ts, 4).await;
    let full = json!({"mode": "squad", "max_players": 4, "min_players": 2});
    for x in &d {
        x.queue_match(full.clone()).await.unwrap();
    }
    let g = event_within(&d[3], "game_start", Duration::from_millis(900)).await;
    assert_eq!(g["room"]["players"].as_array().unwrap().len(), 4);
    ts.server.app.check_invariants().await.unwrap();
    ts.stop().await;
}

async fn futures_join(ts: &TestServer, n: usize) -> Vec<Client> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(ts.client(&format!("p{i}")).await);
    }
    out
}

#[tokio::test]
async fn tickets_expire_after_their_ttl() {
    let ts = TestServer::with_args(&["--ticket-ttl-ms", "1000"]).await;
    let ann = ts.client("ann").await;
    let t = ann.queue_match(json!({"max_players": 2})).await.unwrap();
    expect_no_event(&ann, Duration::from_millis(600)).await;
    let ev = ann.next_event_within(Duration::from_secs(5)).await.unwrap();
    assert_eq!(ev["type"], "ticket_expired");
    assert_eq!(ev["ticket_id"], t.ticket_id.as_str());
    wait_stats(&ts, |s| s["tickets_queued"] == 0).await;
    // Free again.
    ann.queue_match(json!({"max_players": 2})).await.unwrap();
    ts.server.app.check_invariants().await.unwrap();
    ts.stop().await;
}

#[tokio::test]
async fn a_dropped_player_is_not_matched_until_it_is_back_and_loses_its_ticket_with_its_seat() {
    let ts = TestServer::with_args(&["--reconnect-grace-ms", "1500"]).await;
    let ann = ts.manual_client("ann").await;
    let token = ann.welcome.resume_token.clone();
    let ta = ann.queue_match(json!({"max_players": 2})).await.unwrap();
    ann.drop_connection();
    wait_stats(&ts, |s| s["connections"] == 0).await;
    let bob = ts.client("bob").await;
    bob.queue_match(json!({"max_players": 2})).await.unwrap();
    expect_no_event(&bob, Duration::from_millis(500)).await;
    assert_eq!(ts.stats().await["tickets_queued"], 2);
    // Back within the grace: the tickets form a room.
    let ann = Client::connect_with(&format!("{}?resume={token}", ts.ws_url()), no_reconnect())
        .await
        .unwrap();
    assert!(ann.welcome.resumed);
    let g = event_within(&ann, "game_start", Duration::from_secs(5)).await;
    assert_eq!(g["ticket_id"], ta.ticket_id.as_str());
    assert_eq!(player_ids(&g["room"]), [ann.player_id(), bob.player_id()]);
    event_within(&bob, "game_start", Duration::from_secs(1)).await;

    // Gone past the grace: the ticket goes with the player.
    let cat = ts.manual_client("cat").await;
    cat.queue_match(json!({"max_players": 3})).await.unwrap();
    cat.drop_connection();
    wait_stats(&ts, |s| s["tickets_queued"] == 1).await;
    let s = wait_stats(&ts, |s| s["tickets_queued"] == 0).await;
    assert_eq!(s["active_rooms"], 1);
    ts.server.app.check_invariants().await.unwrap();
    ts.stop().await;
}

#[tokio::test]
async fn backfill_seats_go_to_tickets_before_new_rooms() {
    let ts = TestServer::start().await;
    let ann = ts.client("ann").await;
    let bob = ts.client("bob").await;
    let t = json!({"mode": "bf", "max_players": 2, "backfill": true});
    ann.queue_match(t.clone()).await.unwrap();
    bob.queue_match(t.clone()).await.unwrap();
    let g = event_within(&ann, "game_start", Duration::from_secs(5)).await;
    let room_id = g["room"]["room_id"].as_str().unwrap().to_string();
    assert_eq!(g["room"]["backfill"], true);
    event_within(&bob, "game_start", Duration::from_secs(1)).await;
    bob.leave_room().await.unwrap();
    ann.wait_for("player_left").await.unwrap();

    // A new ticket takes the free seat at once.
    let cat = ts.client("cat").await;
    let tc = cat.queue_match(t.clone()).await.unwrap();
    let gc = event_within(&cat, "game_start", Duration::from_secs(5)).await;
    assert_eq!(gc["ticket_id"], tc.ticket_id.as_str());
    assert_eq!(gc["room"]["room_id"], room_id.as_str());
    assert_eq!(player_ids(&gc["room"]), [ann.player_id(), cat.player_id()]);
    let joined = ann.wait_for("player_joined").await.unwrap();
    assert_eq!(joined["player"]["player_id"], cat.player_id());

    // A ticket already queued takes a seat that opens later.
    let dan = ts.client("dan").await;
    let td = dan
        .queue_match(json!({"mode": "bf", "max_players": 2, "backfill": true, "min_players": 2}))
        .await
        .unwrap();
    expect_no_event(&dan, Duration::from_millis(300)).await;
    cat.leave_room().await.unwrap();
    let gd = event_within(&dan, "game_start", Duration::from_secs(5)).await;
    assert_eq!(gd["ticket_id"], td.ticket_id.as_str());
    assert_eq!(gd["room"]["room_id"], room_id.as_str());
    let s = wait_stats(&ts, |s| s["tickets_queued"] == 0).await;
    assert_eq!(s["total_rooms"], 1, "no new room was made");
    ts.server.app.check_invariants().await.unwrap();
    ts.stop().await;
}

#[tokio::test]
async fn nothing_is_left_behind_after_tickets_come_and_go() {
    let ts = TestServer::with_args(&["--reconnect-grace-ms", "300"]).await;
    let mut clients = Vec::new();
    for i in 0..6 {
        let c = ts.client(&format!("p{i}")).await;
        c.queue_match(json!({"max_players": 3, "skill": 100 * i, "skill_window": 1000}))
            .await
            .unwrap();
        clients.push(c);
    }
    for c in &clients {
        event_within(c, "game_start", Duration::from_secs(5)).await;
    }
    let x = ts.client("x").await;
    x.queue_match(json!({"max_players": 2})).await.unwrap();
    x.cancel_match().await.unwrap();
    for c in clients.iter().chain([&x]) {
        c.close().await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let f = ts.server.app.footprint().await.unwrap();
        if f.is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "left behind: {f:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ts.server.app.check_invariants().await.unwrap();
    ts.stop().await;
}
