//! The allocation hook (issue 16) through the real interfaces: when a room
//! becomes active the server asks a real HTTP allocator on 127.0.0.1 (the
//! signature-checking receiver of tests/support/hooks.rs) for a dedicated
//! game server, and its answer rides in every member's `game_start`; an
//! allocator that refuses, answers nonsense or hangs past the timeout gives
//! `allocation: null` with `allocation_error`, and the game starts anyway.
//! Run again in cluster mode with `RENDEZVOUS_TEST_CLUSTER=1`.

mod support;

use std::time::Duration;

use rendezvous::client::Client;
use serde_json::{json, Value};
use support::hooks::{summary, Receiver};
use support::*;
use tokio::time::Instant;

const SECRET: &str = "alloc-secret";
const ALLOCATION: &str = r#"{"address":"127.0.0.1:7777","token":"t-1"}"#;

async fn with_allocator(alloc: &Receiver, extra: &[&str]) -> TestServer {
    let url = alloc.url();
    let mut args = vec!["--allocator-url", &url, "--webhook-secret", SECRET];
    args.extend_from_slice(extra);
    TestServer::with_args(&args).await
}

/// Reads `c`'s events up to its `game_start`, which it returns; panics when
/// `room_status` `active` did not come first.
async fn game_start(c: &Client) -> Value {
    let mut active = false;
    loop {
        let ev = c.next_event().await.expect("an event before game_start");
        match ev["type"].as_str() {
            Some("room_status") if ev["status"] == "active" => active = true,
            Some("game_start") => {
                assert!(active, "room_status active comes before game_start");
                return ev;
            }
            _ => {}
        }
    }
}

/// Two players fill a room of 2; their two `game_start`s and the room id.
async fn pair(ts: &TestServer, mode: &str) -> (Value, Value, String) {
    let ann = ts.client("ann").await;
    let bob = ts.client("bob").await;
    let (room, _) = ann.find_match(2, mode, json!({})).await.unwrap();
    bob.find_match(2, mode, json!({})).await.unwrap();
    let (a, b) = (game_start(&ann).await, game_start(&bob).await);
    (a, b, room.room_id)
}

fn assert_peer_to_peer(start: &Value) {
    assert_eq!(start["allocation"], Value::Null, "{start}");
    assert!(
        start.get("allocation").is_some(),
        "allocation: null is there: {start}"
    );
    let why = start["allocation_error"].as_str().unwrap_or("");
    assert!(!why.is_empty(), "a short reason: {start}");
    assert_eq!(start["room"]["status"], "active", "the game starts anyway");
}

#[tokio::test]
async fn the_allocators_answer_reaches_every_member_in_game_start() {
    let alloc = Receiver::start(SECRET).await;
    alloc.set_answer(200, ALLOCATION);
    let ts = with_allocator(&alloc, &[]).await;
    let want: Value = serde_json::from_str(ALLOCATION).unwrap();

    let (a, b, room_id) = pair(&ts, "default").await;
    for start in [&a, &b] {
        assert_eq!(start["allocation"], want, "{start}");
        assert!(start["allocation_error"].is_null(), "{start}");
        assert_eq!(start["room"]["room_id"], room_id.as_str());
    }
    let hits = alloc.hits();
    assert_eq!(hits.len(), 1, "one question per room:\n{}", summary(&hits));
    assert_eq!(hits[0].kind(), "match.allocate");
    assert_eq!(hits[0].header("rendezvous-event"), "match.allocate");
    assert_eq!(hits[0].room_id(), room_id);
    assert_eq!(
        hits[0].json["data"]["room"]["players"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A host starting a room that is not full asks the same way.
    let carl = ts.client("carl").await;
    let dave = ts.client("dave").await;
    let room = carl.create_room(json!({"max_players": 4})).await.unwrap();
    dave.join_room(&room.room_id).await.unwrap();
    carl.start_game().await.unwrap();
    for c in [&carl, &dave] {
        assert_eq!(game_start(c).await["allocation"], want);
    }
    assert_eq!(alloc.hits().len(), 2);
    assert_ne!(alloc.hits()[1].id(), alloc.hits()[0].id());
    ts.stop().await;
}

#[tokio::test]
async fn a_refusing_or_nonsensical_allocator_means_peer_to_peer() {
    let alloc = Receiver::start(SECRET).await;
    alloc.set_answer(200, ALLOCATION);
    alloc.fail_next(1, 500);
    let ts = with_allocator(&alloc, &[]).await;
    let (a, b, _) = pair(&ts, "refused").await;
    assert_peer_to_peer(&a);
    assert_peer_to_peer(&b);

    for (i, nonsense) in ["[1,2]", "\"text\"", "not json", ""].iter().enumerate() {
        alloc.set_answer(200, nonsense);
        let (a, b, _) = pair(&ts, &format!("m{i}")).await;
        assert_peer_to_peer(&a);
        assert_peer_to_peer(&b);
    }
    // The allocator being wrong stopped no game.
    let s = ts.stats().await;
    assert_eq!(s["active_rooms"], 5, "{s}");
    assert_eq!(alloc.hits().len(), 5, "no retries: the players are waiting");
    ts.stop().await;
}

#[tokio::test]
async fn an_allocator_hanging_past_its_timeout_delays_game_start_only_that_long() {
    let alloc = Receiver::start(SECRET).await;
    alloc.set_answer(200, ALLOCATION);
    alloc.hang_next(1);
    let ts = with_allocator(&alloc, &["--allocator-timeout-ms", "400"]).await;
    let ann = ts.client("ann").await;
    let bob = ts.client("bob").await;
    ann.find_match(2, "default", json!({})).await.unwrap();
    let t0 = Instant::now();
    bob.find_match(2, "default", json!({})).await.unwrap();
    let start = game_start(&bob).await;
    let waited = t0.elapsed();
    assert_peer_to_peer(&start);
    assert_peer_to_peer(&game_start(&ann).await);
    assert!(
        waited >= Duration::from_millis(350),
        "game_start waited for the allocator: {waited:?}"
    );
    assert!(
        waited <= Duration::from_secs(3),
        "but no longer than its timeout (+ slack): {waited:?}"
    );

    // The next room gets its allocation again.
    let (a, _, _) = pair(&ts, "again").await;
    assert_eq!(
        a["allocation"],
        serde_json::from_str::<Value>(ALLOCATION).unwrap()
    );
    ts.stop().await;
}

#[tokio::test]
async fn an_allocator_that_is_down_means_peer_to_peer_at_once() {
    let alloc = Receiver::start(SECRET).await;
    alloc.down().await;
    let ts = with_allocator(&alloc, &[]).await;
    let t0 = Instant::now();
    let (a, b, _) = pair(&ts, "default").await;
    assert_peer_to_peer(&a);
    assert_peer_to_peer(&b);
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "a refused connection does not wait for the 3 s timeout: {:?}",
        t0.elapsed()
    );
    ts.stop().await;
}
