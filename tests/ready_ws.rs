//! Ready checks (1.2) through the real WebSocket interface: `set_ready`,
//! `player_ready`, the `ready` flag of room views, and rooms made with
//! `start_when_ready`. With `RENDEZVOUS_TEST_CLUSTER=1` the same tests run
//! in cluster mode (the Lua engine on Redis).

mod support;

use std::time::Duration;

use rendezvous::client::Client;
use serde_json::{json, Value};
use support::*;

const SHORT: Duration = Duration::from_millis(300);

/// A room of `max` made by ann (with `start_when_ready` when asked and a
/// place for a spectator), joined by the others in order.
async fn room_with(
    ts: &TestServer,
    max: u64,
    when_ready: bool,
    names: &[&str],
) -> (Vec<Client>, String) {
    let mut clients = Vec::new();
    for name in names {
        clients.push(ts.manual_client(name).await);
    }
    let room = clients[0]
        .request(
            "create_room",
            json!({"max_players": max, "max_spectators": 1, "start_when_ready": when_ready}),
        )
        .await
        .unwrap();
    let id = room["room"]["room_id"].as_str().unwrap().to_string();
    assert_eq!(
        room["room"].get("start_when_ready").is_some(),
        when_ready,
        "shown only when on: {room}"
    );
    for c in &clients[1..] {
        c.join_room(&id).await.unwrap();
    }
    for c in &clients {
        while c.next_event_within(SHORT).await.is_ok() {}
    }
    (clients, id)
}

async fn set_ready(c: &Client, ready: bool) -> Value {
    c.request("set_ready", json!({ "ready": ready }))
        .await
        .unwrap()
}

#[tokio::test]
async fn set_ready_shows_in_the_room_and_tells_every_member_once() {
    let ts = TestServer::start().await;
    let (c, room_id) = room_with(&ts, 3, false, &["ann", "bob"]).await;
    let (ann, bob) = (&c[0], &c[1]);
    let watcher = ts.manual_client("sam").await;
    let joined = watcher
        .request("join_room", json!({"room_id": room_id, "as": "spectator"}))
        .await
        .unwrap();
    assert_eq!(joined["room"]["players"][0]["ready"], false);
    assert_eq!(joined["room"]["players"][1]["ready"], false);
    for c in [ann, bob] {
        while c.next_event_within(SHORT).await.is_ok() {}
    }

    let reply = set_ready(bob, true).await;
    assert_eq!(reply["room"]["players"][1]["ready"], true, "{reply}");
    assert_eq!(reply["room"]["players"][0]["ready"], false);
    assert_eq!(reply["room"]["status"], "waiting");
    for c in [ann, bob, &watcher] {
        let ev = c.wait_for("player_ready").await.unwrap();
        assert_eq!(ev["player_id"], bob.player_id());
        assert_eq!(ev["ready"], true);
    }
    // The same value again: the room, no event.
    let again = set_ready(bob, true).await;
    assert_eq!(again["room"]["players"][1]["ready"], true);
    expect_no_event(ann, SHORT).await;
    // Without start_when_ready, everyone ready starts nothing.
    set_ready(ann, true).await;
    let ev = bob.wait_for("player_ready").await.unwrap();
    assert_eq!(ev["player_id"], ann.player_id());
    expect_no_event(bob, SHORT).await;
    ts.stop().await;
}

#[tokio::test]
async fn set_ready_refusals() {
    let ts = TestServer::start().await;
    let loner = ts.manual_client("lou").await;
    assert_code(
        loner.request("set_ready", json!({"ready": true})).await,
        "not_in_room",
    );
    // Checked before any state: missing or not a bool.
    for bad in [json!({}), json!({"ready": 1}), json!({"ready": "true"})] {
        assert_code(loner.request("set_ready", bad).await, "bad_request");
    }
    let (_c, room_id) = room_with(&ts, 2, false, &["ann"]).await;
    let sam = ts.manual_client("sam").await;
    sam.request("join_room", json!({"room_id": room_id, "as": "spectator"}))
        .await
        .unwrap();
    assert_code(
        sam.request("set_ready", json!({"ready": true})).await,
        "forbidden",
    );
    // Full: active, ready is over.
    let bob = ts.manual_client("bob").await;
    bob.join_room(&room_id).await.unwrap();
    assert_code(
        bob.request("set_ready", json!({"ready": true})).await,
        "room_not_waiting",
    );
    ts.stop().await;
}

#[tokio::test]
async fn the_last_ready_player_starts_the_room() {
    let ts = TestServer::start().await;
    let (c, _) = room_with(&ts, 4, true, &["ann", "bob", "cat"]).await;
    set_ready(&c[0], true).await;
    set_ready(&c[1], true).await;
    let room = c[2].set_ready(true).await.unwrap();
    assert_eq!(room.status.as_str(), "active", "{room:?}");
    assert!(room.players.iter().all(|p| p.ready));
    for cl in &c {
        // player_ready, then the start as by start_game.
        let mut kinds = Vec::new();
        loop {
            let ev = cl.next_event().await.unwrap();
            kinds.push(ev["type"].as_str().unwrap().to_string());
            if ev["type"] == "game_start" {
                assert_eq!(ev["room"]["status"], "active");
                break;
            }
        }
        let tail: Vec<&str> = kinds
            .iter()
            .rev()
            .take(3)
            .rev()
            .map(|s| s.as_str())
            .collect();
        assert_eq!(tail, ["player_ready", "room_status", "game_start"]);
    }
    let s = wait_stats(&ts, |s| s["active_rooms"] == 1).await;
    assert_eq!(s["matches_started"], 1);
    ts.stop().await;
}

#[tokio::test]
async fn a_player_who_leaves_or_is_kicked_no_longer_counts() {
    let ts = TestServer::start().await;
    // Kicked.
    let (c, _) = room_with(&ts, 4, true, &["ann", "bob", "cat"]).await;
    set_ready(&c[0], true).await;
    set_ready(&c[1], true).await;
    c[0].request("kick", json!({"player_id": c[2].player_id()}))
        .await
        .unwrap();
    let start = c[1].wait_for("game_start").await.unwrap();
    assert_eq!(player_ids(&start["room"]).len(), 2);
    // Left: the host goes, the rest are ready.
    let (d, _) = room_with(&ts, 4, true, &["dan", "eve", "fay"]).await;
    set_ready(&d[1], true).await;
    set_ready(&d[2], true).await;
    d[0].leave_room().await.unwrap();
    let mut kinds = Vec::new();
    loop {
        let ev = d[1].next_event().await.unwrap();
        kinds.push(ev["type"].as_str().unwrap().to_string());
        if ev["type"] == "game_start" {
            break;
        }
    }
    let tail: Vec<&str> = kinds
        .iter()
        .rev()
        .take(4)
        .rev()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(
        tail,
        ["player_left", "host_changed", "room_status", "game_start"]
    );
    ts.stop().await;
}

#[tokio::test]
async fn a_held_seat_keeps_its_flag_and_a_timed_out_one_stops_counting() {
    let ts = TestServer::with_args(&["--reconnect-grace-ms", "300"]).await;
    let (c, _) = room_with(&ts, 4, true, &["ann", "bob", "cat"]).await;
    set_ready(&c[0], true).await;
    set_ready(&c[1], true).await;
    // bob drops and resumes: still ready.
    let token = c[1].welcome.resume_token.clone();
    c[1].drop_connection();
    c[0].wait_for("player_disconnected").await.unwrap();
    let bob = Client::connect_with(&format!("{}?resume={token}", ts.ws_url()), no_reconnect())
        .await
        .unwrap();
    assert!(bob.welcome.resumed);
    let room = bob.welcome.room.clone().unwrap();
    assert!(room.players[1].ready, "{room:?}");
    assert!(!room.players[2].ready);
    // cat, not ready, drops for good: ann and bob start.
    c[2].drop_connection();
    let left = c[0].wait_for("player_left").await.unwrap();
    assert_eq!(left["reason"], "timeout");
    let start = event_within(&c[0], "game_start", Duration::from_secs(3)).await;
    assert_eq!(start["room"]["status"], "active");
    event_within(&bob, "game_start", Duration::from_secs(3)).await;
    ts.stop().await;
}

#[tokio::test]
async fn find_match_rooms_start_when_ready_and_full_ones_start_anyway() {
    let ts = TestServer::start().await;
    let ann = ts.manual_client("ann").await;
    let bob = ts.manual_client("bob").await;
    let fm = json!({"max_players": 3, "mode": "ready", "start_when_ready": true});
    let first = ann.request("find_match", fm.clone()).await.unwrap();
    assert_eq!(first["created"], true);
    assert_eq!(first["room"]["start_when_ready"], true);
    bob.request("find_match", fm).await.unwrap();
    set_ready(&ann, true).await;
    let reply = set_ready(&bob, true).await;
    assert_eq!(reply["room"]["status"], "active");
    // A room that fills starts whatever the flags.
    let cat = ts.manual_client("cat").await;
    let dan = ts.manual_client("dan").await;
    let fm = json!({"max_players": 2, "mode": "ready2", "start_when_ready": true});
    cat.request("find_match", fm.clone()).await.unwrap();
    let full = dan.request("find_match", fm).await.unwrap();
    assert_eq!(full["room"]["status"], "active");
    ts.stop().await;
}
