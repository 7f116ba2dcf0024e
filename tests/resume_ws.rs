//! Reconnection through the real server: held seats, resume tokens, events
//! kept while away, takeover, and the live room listing.

mod support;

use std::time::Duration;

use rendezvous::client::{Client, ClientOptions};
use serde_json::{json, Value};
use support::*;

const OFFER: &str = include_str!("fixtures/sdp/chromium-offer-datachannel.sdp");

fn fast_reconnect() -> ClientOptions {
    ClientOptions {
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(100),
        ..ClientOptions::default()
    }
}

async fn room_of_two(ts: &TestServer, bob_opts: ClientOptions) -> (Client, Client, String) {
    let ann = ts.client("ann").await;
    let bob = Client::connect_with(&format!("{}?name=bob", ts.ws_url()), bob_opts)
        .await
        .unwrap();
    let room = ann.create_room(json!({"max_players": 3})).await.unwrap();
    bob.join_room(&room.room_id).await.unwrap();
    ann.wait_for("player_joined").await.unwrap();
    bob.wait_for("chat_history").await.unwrap();
    (ann, bob, room.room_id)
}

#[tokio::test]
async fn a_dropped_player_resumes_and_gets_what_it_missed_in_order() {
    let ts = TestServer::with_args(&["--reconnect-grace-ms", "5000"]).await;
    let (ann, bob, room_id) = room_of_two(&ts, fast_reconnect()).await;
    let bob_id = bob.player_id().to_string();
    bob.drop_connection();
    let ev = ann.wait_for("player_disconnected").await.unwrap();
    assert_eq!(ev["player_id"], bob_id.as_str());

    // Sent while bob is away; bob's client is reconnecting in the background.
    let cand = json!({"candidate": "candidate:1 1 udp 2113937151 192.0.2.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": null});
    ann.request("offer", json!({"to": bob_id, "sdp": OFFER}))
        .await
        .unwrap();
    ann.request("ice_candidate", json!({"to": bob_id, "candidate": cand}))
        .await
        .unwrap();
    ann.request("chat", json!({"text": "where did you go?"}))
        .await
        .unwrap();

    let welcome = bob.wait_for("welcome").await.unwrap();
    assert_eq!(welcome["resumed"], true);
    assert_eq!(welcome["player_id"], bob_id.as_str());
    assert_eq!(welcome["room"]["room_id"], room_id.as_str());
    assert_eq!(welcome["room"]["players"][1]["connected"], true);
    assert_ne!(
        welcome["resume_token"],
        json!(bob.welcome.resume_token),
        "fresh token"
    );
    let kinds: Vec<Value> = [
        bob.next_event().await.unwrap(),
        bob.next_event().await.unwrap(),
        bob.next_event().await.unwrap(),
    ]
    .into_iter()
    .map(|e| e["type"].clone())
    .collect();
    assert_eq!(
        kinds,
        [json!("offer"), json!("ice_candidate"), json!("chat")]
    );
    let ev = ann.wait_for("player_reconnected").await.unwrap();
    assert_eq!(ev["player_id"], bob_id.as_str());
    // The resumed client works as before.
    bob.request("chat", json!({"text": "back"})).await.unwrap();
    let (_, p) = http_get(&ts.http(&format!("/api/players/{bob_id}"))).await;
    assert_eq!(p["connected"], true);
    ts.stop().await;
}

#[tokio::test]
async fn after_the_grace_the_seat_is_gone_and_resume_gives_a_fresh_session() {
    let ts = TestServer::with_args(&["--reconnect-grace-ms", "200"]).await;
    let (ann, bob, _) = room_of_two(&ts, no_reconnect()).await;
    let token = bob.welcome.resume_token.clone();
    let bob_id = bob.player_id().to_string();
    bob.drop_connection();
    let left = ann.wait_for("player_left").await.unwrap();
    assert_eq!(
        (left["player_id"].as_str(), left["reason"].as_str()),
        (Some(bob_id.as_str()), Some("timeout"))
    );
    let again = Client::connect_with(&format!("{}?resume={token}", ts.ws_url()), no_reconnect())
        .await
        .unwrap();
    assert!(!again.welcome.resumed);
    assert_ne!(again.player_id(), bob_id);
    assert!(again.welcome.room.is_none());
    ts.stop().await;
}

#[tokio::test]
async fn resume_tokens_are_single_use_and_unknown_ones_are_no_error() {
    let ts = TestServer::with_args(&["--reconnect-grace-ms", "5000"]).await;
    let (_ann, bob, _) = room_of_two(&ts, no_reconnect()).await;
    let token = bob.welcome.resume_token.clone();
    assert!(token.len() >= 32, "at least 128 bits");
    bob.drop_connection();
    let url = format!("{}?resume={token}", ts.ws_url());
    let first = Client::connect_with(&url, no_reconnect()).await.unwrap();
    assert!(first.welcome.resumed);
    assert_eq!(first.player_id(), bob.player_id());
    let second = Client::connect_with(&url, no_reconnect()).await.unwrap();
    assert!(
        !second.welcome.resumed,
        "a used token gives a fresh session"
    );
    assert_ne!(second.player_id(), bob.player_id());
    let junk = Client::connect_with(&format!("{}?resume=nonsense", ts.ws_url()), no_reconnect())
        .await
        .unwrap();
    assert!(!junk.welcome.resumed);
    ts.stop().await;
}

#[tokio::test]
async fn resuming_while_the_old_socket_lives_replaces_it() {
    let ts = TestServer::start().await;
    let (ann, bob, room_id) = room_of_two(&ts, no_reconnect()).await;
    let url = format!("{}?resume={}", ts.ws_url(), bob.welcome.resume_token);
    let bob2 = Client::connect_with(&url, no_reconnect()).await.unwrap();
    assert!(bob2.welcome.resumed);
    assert_eq!(bob2.player_id(), bob.player_id());
    assert_eq!(bob2.welcome.room.as_ref().unwrap().room_id, room_id);
    let close = bob.wait_closed(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        close.map(|c| (c.code, c.reason)),
        Some((4001, "replaced".to_string()))
    );
    // The seat never looked empty to the others.
    bob2.request("chat", json!({"text": "same seat"}))
        .await
        .unwrap();
    let chat = ann.wait_for("chat").await.unwrap();
    assert_eq!(chat["from"], bob.player_id());
    assert_eq!(ts.stats().await["connections"], 2);
    ts.stop().await;
}

#[tokio::test]
async fn an_overflowing_buffer_keeps_the_newest_and_counts_the_rest() {
    let ts = TestServer::with_args(&["--reconnect-grace-ms", "5000", "--resume-buffer", "3"]).await;
    let (ann, bob, _) = room_of_two(&ts, no_reconnect()).await;
    let token = bob.welcome.resume_token.clone();
    bob.drop_connection();
    ann.wait_for("player_disconnected").await.unwrap();
    for i in 0..5 {
        ann.request("chat", json!({"text": format!("m{i}")}))
            .await
            .unwrap();
    }
    let back = Client::connect_with(&format!("{}?resume={token}", ts.ws_url()), no_reconnect())
        .await
        .unwrap();
    assert!(back.welcome.resumed);
    assert_eq!(back.welcome.missed, 2);
    for i in 2..5 {
        let ev = back.next_event().await.unwrap();
        assert_eq!(ev["text"], format!("m{i}"));
    }
    ts.stop().await;
}

#[tokio::test]
async fn the_room_listing_follows_every_change_in_order() {
    let ts = TestServer::start().await;
    let watcher = ts.client("watch").await;
    let all = ts.client("all").await;
    let early = ts.client("early").await;
    let existing = early
        .create_room(json!({"max_players": 4, "mode": "x"}))
        .await
        .unwrap();
    let r = watcher
        .request("subscribe_rooms", json!({"mode": "x"}))
        .await
        .unwrap();
    assert_eq!(r["rooms"][0]["room_id"], existing.room_id.as_str());
    assert!(r["rooms"][0].get("code").is_none());
    all.request("subscribe_rooms", json!({})).await.unwrap();

    let a = ts.client("a").await;
    let b = ts.client("b").await;
    let c = ts.client("c").await;
    let room = a
        .create_room(json!({"max_players": 3, "mode": "x"}))
        .await
        .unwrap();
    let ev = watcher.next_event().await.unwrap();
    assert_eq!(
        (ev["type"].as_str(), ev["room"]["room_id"].as_str()),
        (Some("room_listed"), Some(room.room_id.as_str()))
    );
    assert!(ev["room"].get("code").is_none(), "no join code in listings");
    b.join_room(&room.room_id).await.unwrap();
    let ev = watcher.next_event().await.unwrap();
    assert_eq!(ev["type"], "room_updated");
    assert_eq!(ev["room"]["players"].as_array().unwrap().len(), 2);
    a.request("set_room_data", json!({"data": {"map": "moon"}}))
        .await
        .unwrap();
    let ev = watcher.next_event().await.unwrap();
    assert_eq!(
        (ev["type"].as_str(), ev["room"]["data"]["map"].as_str()),
        (Some("room_updated"), Some("moon"))
    );
    c.join_room(&room.room_id).await.unwrap(); // full: active
    let ev = watcher.next_event().await.unwrap();
    assert_eq!(
        (ev["type"].as_str(), ev["room_id"].as_str()),
        (Some("room_delisted"), Some(room.room_id.as_str()))
    );

    // Private rooms and other modes never show for this watcher.
    let d = ts.client("d").await;
    let private = d
        .create_room(json!({"private": true, "mode": "x"}))
        .await
        .unwrap();
    // Changes to the private room would be announced too, if it leaked.
    let d2 = ts.client("d2").await;
    d2.join_code(private.code.as_deref().unwrap())
        .await
        .unwrap();
    let e = ts.client("e").await;
    let other_mode = e.create_room(json!({"mode": "y"})).await.unwrap();

    // Started by hand and left empty: delisted too.
    let f = ts.client("f").await;
    let g = ts.client("g").await;
    let r2 = f
        .create_room(json!({"max_players": 4, "mode": "x"}))
        .await
        .unwrap();
    let ev = watcher.next_event().await.unwrap();
    assert_eq!(
        (ev["type"].as_str(), ev["room"]["room_id"].as_str()),
        (Some("room_listed"), Some(r2.room_id.as_str()))
    );
    g.join_room(&r2.room_id).await.unwrap();
    let ev = watcher.next_event().await.unwrap();
    assert_eq!(
        (ev["type"].as_str(), ev["room"]["room_id"].as_str()),
        (Some("room_updated"), Some(r2.room_id.as_str()))
    );
    f.start_game().await.unwrap();
    let ev = watcher.next_event().await.unwrap();
    assert_eq!(
        (ev["type"].as_str(), ev["room_id"].as_str()),
        (Some("room_delisted"), Some(r2.room_id.as_str()))
    );
    early.leave_room().await.unwrap();
    let ev = watcher.next_event().await.unwrap();
    assert_eq!(
        (ev["type"].as_str(), ev["room_id"].as_str()),
        (Some("room_delisted"), Some(existing.room_id.as_str()))
    );
    expect_no_event(&watcher, Duration::from_millis(300)).await;

    // The unfiltered subscriber saw the other mode, never the private room
    // (`room_delisted` carries only `room_id`, the others a `room`).
    d2.leave_room().await.unwrap();
    let mut seen_other = false;
    while let Ok(ev) = all.next_event_within(Duration::from_millis(300)).await {
        let id = ev["room"]["room_id"].as_str().or(ev["room_id"].as_str());
        assert!(id.is_some(), "every listing event names its room: {ev}");
        assert_ne!(
            id,
            Some(private.room_id.as_str()),
            "private room leaked: {ev}"
        );
        if id == Some(other_mode.room_id.as_str()) {
            seen_other = true;
        }
    }
    assert!(seen_other);
    watcher
        .request("unsubscribe_rooms", json!({}))
        .await
        .unwrap();
    let h = ts.client("h").await;
    h.create_room(json!({"mode": "x"})).await.unwrap();
    expect_no_event(&watcher, Duration::from_millis(300)).await;
    ts.stop().await;
}

#[tokio::test]
async fn idle_waiting_rooms_are_closed() {
    const IDLE: Duration = Duration::from_millis(2000);
    let ts = TestServer::with_args(&["--room-idle-timeout-ms", "2000"]).await;
    let ann = ts.client("ann").await;
    let room = ann.create_room(json!({})).await.unwrap();
    let created_at = std::time::Instant::now();
    // Before the timeout the room is open.
    let (st, api) = http_get(&ts.http(&format!("/api/rooms/{}", room.room_id))).await;
    assert_eq!(
        (st, api["status"].as_str()),
        (200, Some("waiting")),
        "{api}"
    );
    assert_eq!(ts.stats().await["waiting_rooms"], 1);
    assert!(
        created_at.elapsed() < IDLE / 2,
        "checked well before the timeout"
    );
    let ev = ann.wait_for("player_left").await.unwrap();
    assert_eq!(
        (ev["player_id"].as_str(), ev["reason"].as_str()),
        (Some(ann.player_id()), Some("closed"))
    );
    // Not closed at once (timers never fire early; the slack covers the
    // reply's trip).
    assert!(
        created_at.elapsed() >= IDLE - Duration::from_millis(300),
        "closed after {:?}",
        created_at.elapsed()
    );
    wait_stats(&ts, |s| s["total_rooms"] == 0).await;
    let (st, _) = http_get(&ts.http(&format!("/api/rooms/{}", room.room_id))).await;
    assert_eq!(st, 404, "gone after the timeout");
    ts.stop().await;
}

#[tokio::test]
async fn churn_of_connects_drops_and_resumes_leaves_nothing_behind() {
    let ts = TestServer::with_args(&["--reconnect-grace-ms", "1500"]).await;
    let watcher = ts.client("watch").await;
    watcher.request("subscribe_rooms", json!({})).await.unwrap();
    watcher
        .request("subscribe_stats", json!({"interval_ms": 250}))
        .await
        .unwrap();
    for round in 0..4 {
        let mut clients = Vec::new();
        for i in 0..12 {
            let c = Client::connect_with(&format!("{}?name=c{i}", ts.ws_url()), fast_reconnect())
                .await
                .unwrap();
            match i % 4 {
                0 | 1 => {
                    c.find_match(2 + (round % 3), "churn", json!({}))
                        .await
                        .unwrap();
                }
                2 => {
                    c.create_room(json!({"private": true})).await.unwrap();
                }
                _ => {}
            }
            clients.push(c);
        }
        // Half drop and come back by themselves, the others leave or vanish.
        for (i, c) in clients.iter().enumerate() {
            if i % 2 == 0 {
                c.drop_connection();
            }
        }
        for c in clients.iter().step_by(2) {
            let w = c.wait_for("welcome").await.unwrap();
            assert_eq!(w["resumed"], true);
        }
        for c in &clients {
            c.close().await;
        }
    }
    watcher.close().await;
    wait_stats(&ts, |s| {
        s["connections"] == 0 && s["total_players"] == 0 && s["total_rooms"] == 0
    })
    .await;
    ts.server.app.check_invariants().await.unwrap();
    // Players without a seat are held for the same grace as the seated
    // ones but are not in the stats: wait (bounded) for their timers too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let left = loop {
        let left = ts.server.app.footprint().await.unwrap();
        if left.is_empty() || tokio::time::Instant::now() > deadline {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(left.is_empty(), "nothing left behind: {left:?}");
    ts.stop().await;
}
