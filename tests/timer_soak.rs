//! Soak of the lobby's pending timers through the real server: rounds of
//! real clients that connect, match in pairs, signal, then leave, finish or
//! drop. After every round the lobby's maps, timers included, are back to
//! where they started: timers go with the rooms and seats they belong to
//! instead of waiting out a ten-minute idle deadline.
//!
//! Both stores: with `RENDEZVOUS_TEST_CLUSTER=1` the footprint counts the
//! lobby's keys in Redis, and the timers are the entries of its deadline
//! sorted sets (rooms' and held seats').

mod support;

use std::time::{Duration, Instant};

use rendezvous::client::Client;
use serde_json::json;
use support::*;

const OFFER: &str = include_str!("fixtures/sdp/chromium-offer-datachannel.sdp");

/// Waits until the lobby and the server hold nothing, or panics after 5 s
/// with what is left.
async fn wait_empty(ts: &TestServer, round: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = footprint(ts).await;
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "round {round}: left behind: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ts.server.app.check_invariants().await.unwrap();
    let s = ts.stats().await;
    assert_eq!(
        (
            &s["total_rooms"],
            &s["total_players"],
            &s["held_seats"],
            &s["connections"]
        ),
        (&json!(0), &json!(0), &json!(0), &json!(0)),
        "round {round}: {s}"
    );
}

async fn footprint(ts: &TestServer) -> rendezvous::backend::Footprint {
    ts.server.app.footprint().await.expect("footprint")
}

/// Two clients matched in a room of two (a mode of their own, so pairs
/// running at once do not mix), then an offer from one to the other.
async fn matched_pair(ts: &TestServer, round: usize, pair: usize) -> (Client, Client) {
    let mode = format!("soak{pair}");
    let a = ts.client(&format!("a{round}_{pair}")).await;
    let b = ts.client(&format!("b{round}_{pair}")).await;
    let (room, created) = a.find_match(2, &mode, json!({})).await.unwrap();
    assert!(created);
    let (joined, created) = b.find_match(2, &mode, json!({})).await.unwrap();
    assert!(!created);
    assert_eq!(joined.room_id, room.room_id);
    a.wait_for("game_start").await.unwrap();
    a.request("offer", json!({"to": b.player_id(), "sdp": OFFER}))
        .await
        .unwrap();
    let ev = b.wait_for("offer").await.unwrap();
    assert_eq!(ev["from"], a.player_id());
    (a, b)
}

#[tokio::test]
async fn churn_rounds_leave_no_timers_behind() {
    // Default idle timeout and finished TTL (minutes); a short grace so
    // dropped players time out within the round.
    let ts = TestServer::with_args(&["--reconnect-grace-ms", "150"]).await;
    wait_empty(&ts, 0).await;
    let started = Instant::now();
    let mut round = 0;
    while round < 4 || (round < 40 && started.elapsed() < Duration::from_secs(3)) {
        let (p0, p1, p2) = tokio::join!(
            matched_pair(&ts, round, 0),
            matched_pair(&ts, round, 1),
            matched_pair(&ts, round, 2),
        );
        let f = footprint(&ts).await;
        assert_eq!(
            (f.rooms, f.players, f.timers),
            (3, 6, 0),
            "round {round}: three active rooms need no timer"
        );

        // A client making and leaving rooms in a loop: one idle timer while
        // its room waits, none once it has left.
        let looper = ts.client(&format!("loop{round}")).await;
        for i in 0..20 {
            looper.create_room(json!({"data": {"i": i}})).await.unwrap();
            assert_eq!(footprint(&ts).await.timers, 1);
            looper.leave_room().await.unwrap();
            assert_eq!(footprint(&ts).await.timers, 0, "round {round}");
        }

        // Pair 0 leaves; pair 1 finishes its game (a close timer) and then
        // leaves; pair 2 drops and its seats time out.
        let (a, b) = p0;
        a.leave_room().await.unwrap();
        b.leave_room().await.unwrap();
        let (c, d) = p1;
        c.request("finish_game", json!({})).await.unwrap();
        let f = footprint(&ts).await;
        assert_eq!((f.rooms, f.timers), (2, 1), "round {round}: finished room");
        c.leave_room().await.unwrap();
        d.leave_room().await.unwrap();
        assert_eq!(footprint(&ts).await.timers, 0, "round {round}");
        let (e, g) = p2;
        for client in [&a, &b, &c, &d, &e, &g, &looper] {
            client.close().await;
        }
        // Held: the dropped seats of pair 2 and the identities of the
        // others, one grace timer each, nothing more.
        let f = footprint(&ts).await;
        assert!(f.timers <= f.rooms + f.players, "round {round}: {f:?}");
        wait_empty(&ts, round).await;
        round += 1;
    }
    eprintln!("timer_soak: {round} rounds in {:?}", started.elapsed());
    ts.stop().await;
}
