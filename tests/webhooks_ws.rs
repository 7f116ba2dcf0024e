//! Webhooks (issue 16) through the real interfaces: players on the WebSocket
//! make the lobby change, a real HTTP receiver on 127.0.0.1 (tests/support/
//! hooks.rs) checks the signature of every POST and records it, and faults
//! are real ones (500s, answers that never come, a receiver that is down and
//! comes back). Run again in cluster mode with `RENDEZVOUS_TEST_CLUSTER=1`.

mod support;

use std::time::Duration;

use rendezvous::client::Client;
use serde_json::{json, Value};
use support::hooks::{
    assert_once_each, delivered_once_each, post_json, sign, summary, Hit, Receiver,
};
use support::*;
use tokio::time::Instant;

const SECRET: &str = "whsec_0123456789";
/// Long enough for a few backoff rounds on a busy 2-core machine.
const LIMIT: Duration = Duration::from_secs(30);

fn cluster_mode() -> bool {
    std::env::var("RENDEZVOUS_TEST_CLUSTER").as_deref() == Ok("1")
}

/// A server sending every event to `receivers`, with a short per-attempt
/// timeout, plus `extra` flags.
async fn hooked(receivers: &[&Receiver], extra: &[&str]) -> TestServer {
    let urls = receivers
        .iter()
        .map(|r| r.url())
        .collect::<Vec<_>>()
        .join(",");
    let mut args = vec![
        "--webhook-url",
        &urls,
        "--webhook-secret",
        SECRET,
        "--webhook-timeout-ms",
        "300",
    ];
    args.extend_from_slice(extra);
    TestServer::with_args(&args).await
}

/// The delivered events of `room_id`, in delivery order, checking that no
/// event was delivered twice.
fn room_events(hits: &[Hit], room_id: &str) -> Vec<Hit> {
    delivered_once_each(hits)
        .into_iter()
        .filter(|h| h.room_id() == room_id)
        .collect()
}

fn kinds(events: &[Hit]) -> Vec<String> {
    events.iter().map(|h| h.kind().to_string()).collect()
}

/// Waits until an event of `kind` about `room_id` was delivered.
async fn wait_event(rx: &Receiver, room_id: &str, kind: &str) -> Vec<Hit> {
    rx.wait_until(LIMIT, &format!("{kind} of room {room_id}"), |h| {
        h.iter()
            .any(|h| h.delivered() && h.room_id() == room_id && h.kind() == kind)
    })
    .await
}

async fn metrics(ts: &TestServer) -> String {
    http_raw("GET", &ts.http("/metrics"), &[]).await.1
}

/// The sample of `name` whose labels contain `label` (e.g. `"expired"`).
fn labeled(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{') && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until `cond` holds on `/metrics`, or panics after [`LIMIT`].
async fn wait_metrics(ts: &TestServer, what: &str, cond: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + LIMIT;
    loop {
        let text = metrics(ts).await;
        if cond(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed {what}:\n{}",
            text.lines()
                .filter(|l| l.contains("webhook"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What `rx` got, once `ts` holds no event and has no attempt out: then
/// every POST it made has been answered, so is in (an absence checked on
/// the server's word, not by waiting a while). Checks that every delivery
/// the server counted is there.
async fn settled(ts: &TestServer, rx: &Receiver) -> Vec<Hit> {
    let m = wait_metrics(ts, "no event held, no attempt out", |m| {
        metric(m, "rendezvous_webhook_queue") == 0.0
            && metric(m, "rendezvous_webhook_attempts_total")
                == metric(m, "rendezvous_webhook_delivered_total")
                    + metric(m, "rendezvous_webhook_failures_total")
    })
    .await;
    let hits = rx.hits();
    assert_eq!(
        metric(&m, "rendezvous_webhook_delivered_total"),
        hits.iter().filter(|h| h.delivered()).count() as f64,
        "every delivery the server counted is in:\n{}",
        summary(&hits)
    );
    hits
}

async fn finish(c: &Client, result: Value) -> Value {
    c.request("finish_game", json!({ "result": result }))
        .await
        .expect("finish_game")
}

#[tokio::test]
async fn a_games_life_reaches_the_receiver_in_order_and_signed() {
    let rx = Receiver::start(SECRET).await;
    let ts = hooked(&[&rx], &[]).await;
    let ann = ts.client("ann").await;
    let bob = ts.client("bob").await;

    let room = ann
        .create_room(json!({"max_players": 3, "private": true, "data": {"map": "moon"}}))
        .await
        .unwrap();
    let code = room.code.clone().expect("a private room has a code");
    bob.join_code(&code).await.unwrap();
    ann.start_game().await.unwrap();
    finish(&ann, json!({"winner": ann.player_id()})).await;
    bob.leave_room().await.unwrap();
    ann.leave_room().await.unwrap();

    let hits = wait_event(&rx, &room.room_id, "room.closed").await;
    assert_once_each(&hits);
    let ev = room_events(&hits, &room.room_id);
    assert_eq!(
        kinds(&ev),
        [
            "room.created",
            "player.joined",
            "player.joined",
            "match.started",
            "room.finished",
            "player.left",
            "player.left",
            "room.closed"
        ],
        "\n{}",
        summary(&hits)
    );
    let d: Vec<&Value> = ev.iter().map(|h| &h.json["data"]).collect();
    assert_eq!(
        d[0]["room"]["code"],
        code.as_str(),
        "room.created has the code"
    );
    assert_eq!(d[0]["room"]["status"], "waiting");
    assert_eq!(d[0]["room"]["data"], json!({"map": "moon"}));
    assert_eq!(d[0]["room"]["players"][0]["player_id"], ann.player_id());
    assert_eq!(
        d[1]["player"]["player_id"],
        ann.player_id(),
        "creator joins"
    );
    assert_eq!(d[2]["player"]["player_id"], bob.player_id());
    assert_eq!(d[2]["player"]["name"], "bob");
    assert_eq!(d[2]["room"]["players"].as_array().unwrap().len(), 2);
    assert_eq!(d[3]["room"]["status"], "active");
    assert_eq!(d[4]["room"]["status"], "finished");
    assert_eq!(d[4]["result"], json!({"winner": ann.player_id()}));
    for (i, who) in [(5, bob.player_id()), (6, ann.player_id())] {
        assert_eq!(d[i]["room_id"], room.room_id.as_str());
        assert_eq!(d[i]["player_id"], who);
        assert_eq!(d[i]["reason"], "left");
    }
    assert_eq!(d[7]["room_id"], room.room_id.as_str());
    let times: Vec<_> = ev
        .iter()
        .map(|h| {
            chrono::DateTime::parse_from_rfc3339(h.json["created_at"].as_str().unwrap()).unwrap()
        })
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "created_at follows the order: {times:?}"
    );
    ts.stop().await;
}

#[tokio::test]
async fn kick_grace_timeout_admin_delete_and_finished_ttl_say_why() {
    let rx = Receiver::start(SECRET).await;
    let ts = hooked(
        &[&rx],
        &[
            "--admin-token",
            "adm",
            "--reconnect-grace-ms",
            "300",
            "--finished-room-ttl-ms",
            "300",
        ],
    )
    .await;
    let addr = ts.server.addr.to_string();
    let ann = ts.client("ann").await;
    let carl = ts.client("carl").await;
    let dave = client_at_with(&addr, "name=dave", no_reconnect())
        .await
        .unwrap();
    let room = ann.create_room(json!({"max_players": 4})).await.unwrap();
    let id = room.room_id.clone();
    carl.join_room(&id).await.unwrap();
    dave.join_room(&id).await.unwrap();
    ann.request("kick", json!({"player_id": carl.player_id()}))
        .await
        .unwrap();
    // A drop holds the seat: no player.left until the grace runs out.
    dave.close().await;
    wait_event(&rx, &id, "player.left").await;
    let hits = rx
        .wait_until(LIMIT, "dave's timeout", |h| {
            room_events(h, &id)
                .iter()
                .any(|e| e.json["data"]["player_id"] == dave.player_id())
        })
        .await;
    let (st, _) = http_raw(
        "DELETE",
        &ts.http(&format!("/api/rooms/{id}")),
        &[("Authorization", "Bearer adm")],
    )
    .await;
    assert_eq!(st, 204);
    let hits_closed = wait_event(&rx, &id, "room.closed").await;
    assert!(hits_closed.len() >= hits.len());
    assert_once_each(&hits_closed);
    let ev = room_events(&hits_closed, &id);
    let left: Vec<(Value, Value)> = ev
        .iter()
        .filter(|h| h.kind() == "player.left")
        .map(|h| {
            (
                h.json["data"]["player_id"].clone(),
                h.json["data"]["reason"].clone(),
            )
        })
        .collect();
    assert_eq!(
        kinds(&ev[..4]),
        [
            "room.created",
            "player.joined",
            "player.joined",
            "player.joined"
        ]
    );
    assert_eq!(
        left[..2],
        [
            (json!(carl.player_id()), json!("kicked")),
            (json!(dave.player_id()), json!("timeout")),
        ],
        "\n{}",
        summary(&hits_closed)
    );
    // Whether a room closed by the admin also reports its members leaving
    // is the server's choice; if it does, the reason is `closed`.
    for extra in &left[2..] {
        assert_eq!(extra, &(json!(ann.player_id()), json!("closed")));
    }
    assert_eq!(ev.last().unwrap().kind(), "room.closed");
    assert_eq!(ev.last().unwrap().json["data"], json!({"room_id": id}));

    // A finished room closes by itself after --finished-room-ttl-ms.
    let bob = ts.client("bob").await;
    let (r2, _) = ann.find_match(2, "ttl", json!({})).await.unwrap();
    bob.find_match(2, "ttl", json!({})).await.unwrap();
    finish(&ann, Value::Null).await;
    let hits = wait_event(&rx, &r2.room_id, "room.closed").await;
    let ev = room_events(&hits, &r2.room_id);
    assert_eq!(
        kinds(&ev[..5]),
        [
            "room.created",
            "player.joined",
            "player.joined",
            "match.started",
            "room.finished"
        ],
        "\n{}",
        summary(&hits)
    );
    assert_eq!(ev.last().unwrap().kind(), "room.closed");
    // The members still seated are reported as leaving with `closed`.
    let reasons: Vec<&Value> = ev[5..ev.len() - 1]
        .iter()
        .map(|h| &h.json["data"]["reason"])
        .collect();
    assert!(
        reasons.iter().all(|r| *r == "closed"),
        "{reasons:?}\n{}",
        summary(&hits)
    );
    let at = |h: &Hit| {
        chrono::DateTime::parse_from_rfc3339(h.json["created_at"].as_str().unwrap()).unwrap()
    };
    let lived = at(ev.last().unwrap()) - at(&ev[4]);
    assert!(
        lived >= chrono::Duration::milliseconds(250),
        "closed after the 300 ms TTL, not at once: {lived}"
    );
    assert_eq!(ev[4].json["data"]["result"], Value::Null);
    ts.stop().await;
}

#[tokio::test]
async fn the_event_filter_sends_only_the_chosen_types() {
    let rx = Receiver::start(SECRET).await;
    let ts = hooked(&[&rx], &["--webhook-events", "match.started,room.closed"]).await;
    let ann = ts.client("ann").await;
    let bob = ts.client("bob").await;
    let (room, _) = ann.find_match(2, "default", json!({})).await.unwrap();
    bob.find_match(2, "default", json!({})).await.unwrap();
    ann.leave_room().await.unwrap();
    bob.leave_room().await.unwrap();
    // Events of a room arrive in order: once room.closed is in, anything
    // else of that room would be in too.
    let hits = wait_event(&rx, &room.room_id, "room.closed").await;
    assert_eq!(
        kinds(&delivered_once_each(&hits)),
        ["match.started", "room.closed"],
        "\n{}",
        summary(&hits)
    );
    ts.stop().await;
}

#[tokio::test]
async fn every_url_gets_every_event_and_game_start_has_no_allocation_fields() {
    let (a, b) = (Receiver::start(SECRET).await, Receiver::start(SECRET).await);
    let ts = hooked(&[&a, &b], &[]).await;
    let ann = ts.client("ann").await;
    let bob = ts.client("bob").await;
    let (room, _) = ann.find_match(2, "default", json!({})).await.unwrap();
    bob.find_match(2, "default", json!({})).await.unwrap();
    let start = ann.wait_for("game_start").await.unwrap();
    assert!(
        start.get("allocation").is_none() && start.get("allocation_error").is_none(),
        "no allocator, no allocation fields: {start}"
    );
    ann.leave_room().await.unwrap();
    bob.leave_room().await.unwrap();
    let seen: Vec<Vec<(String, String)>> = [
        wait_event(&a, &room.room_id, "room.closed").await,
        wait_event(&b, &room.room_id, "room.closed").await,
    ]
    .iter()
    .map(|hits| {
        delivered_once_each(hits)
            .iter()
            .map(|h| (h.id().to_string(), h.kind().to_string()))
            .collect()
    })
    .collect();
    assert_eq!(seen[0].len(), 7, "{:?}", seen[0]);
    assert_eq!(seen[0], seen[1], "both URLs get the same events, same ids");
    ts.stop().await;
}

#[tokio::test]
async fn a_receiver_answering_500_gets_the_same_event_until_it_takes_it() {
    let rx = Receiver::start(SECRET).await;
    rx.fail_next(3, 500);
    let ts = hooked(&[&rx], &[]).await;
    let ann = ts.client("ann").await;
    let room = ann.create_room(json!({})).await.unwrap();
    let delivered = rx.wait_delivered(2, LIMIT).await;
    let hits = rx.hits();
    assert_eq!(
        kinds(&delivered_once_each(&hits)),
        ["room.created", "player.joined"],
        "the room's second event waits for its first:\n{}",
        summary(&hits)
    );
    let created: Vec<&Hit> = hits.iter().filter(|h| h.kind() == "room.created").collect();
    assert_eq!(
        created.len(),
        4,
        "3 refusals, 1 success:\n{}",
        summary(&hits)
    );
    assert!(
        created.iter().all(|h| h.json == created[0].json),
        "the same event each time"
    );
    assert_eq!(created[0].room_id(), room.room_id);
    assert_eq!(
        created.iter().map(|h| h.status).collect::<Vec<_>>(),
        [500, 500, 500, 200]
    );
    let joined_at = hits
        .iter()
        .position(|h| h.kind() == "player.joined")
        .unwrap();
    assert!(
        joined_at
            > hits
                .iter()
                .rposition(|h| h.kind() == "room.created")
                .unwrap(),
        "no attempt of the room's next event before its first was taken:\n{}",
        summary(&hits)
    );
    let first_retry = created[1].at - created[0].at;
    assert!(
        first_retry <= Duration::from_millis(2000),
        "first retry within 1 s (+ slack for a busy machine): {first_retry:?}"
    );
    assert_eq!(
        delivered.len(),
        2,
        "delivered once each:\n{}",
        summary(&hits)
    );

    let text = wait_metrics(&ts, "the deliveries counted", |m| {
        metric(m, "rendezvous_webhook_delivered_total") == 2.0
    })
    .await;
    assert_eq!(metric(&text, "rendezvous_webhook_attempts_total"), 5.0);
    assert_eq!(metric(&text, "rendezvous_webhook_failures_total"), 3.0);
    assert_eq!(metric(&text, "rendezvous_webhook_dropped_total"), 0.0);
    assert!(
        text.contains("rendezvous_webhook_delivery_seconds"),
        "delivery time is measured"
    );
    wait_metrics(&ts, "an empty queue", |m| {
        metric(m, "rendezvous_webhook_queue") == 0.0
    })
    .await;
    ts.stop().await;
}

#[tokio::test]
async fn an_answer_slower_than_the_timeout_is_retried_under_the_same_id() {
    let rx = Receiver::start(SECRET).await;
    rx.hang_next(1);
    rx.late_next(1, Duration::from_millis(1500));
    let ts = hooked(&[&rx], &[]).await;
    let ann = ts.client("ann").await;
    let room = ann.create_room(json!({})).await.unwrap();
    let hits = rx
        .wait_until(LIMIT, "room.created answered in time", |h| {
            h.iter()
                .filter(|h| h.kind() == "room.created")
                .nth(2)
                .is_some_and(Hit::delivered)
        })
        .await;
    let hits = rx
        .wait_until(LIMIT, "player.joined", |h| {
            hits.len() <= h.len()
                && h.iter()
                    .any(|h| h.delivered() && h.kind() == "player.joined")
        })
        .await;
    let created: Vec<&Hit> = hits.iter().filter(|h| h.kind() == "room.created").collect();
    assert!(
        created.iter().all(|h| h.id() == created[0].id()),
        "one id per event"
    );
    assert_eq!(created[0].room_id(), room.room_id);
    let gap = created[1].at - created[0].at;
    assert!(
        gap >= Duration::from_millis(250),
        "the server waited for its 300 ms timeout before retrying: {gap:?}"
    );
    assert!(
        gap <= Duration::from_millis(3000),
        "then retried soon: {gap:?}"
    );
    // The join came after the creation was acknowledged in time (attempt 3),
    // not while the late attempt 2 was pending.
    let joined = hits
        .iter()
        .position(|h| h.kind() == "player.joined")
        .unwrap();
    let third = hits
        .iter()
        .enumerate()
        .filter(|(_, h)| h.kind() == "room.created")
        .nth(2)
        .map(|(i, _)| i)
        .unwrap();
    assert!(third < joined, "order kept:\n{}", summary(&hits));
    let m = metrics(&ts).await;
    assert!(
        metric(&m, "rendezvous_webhook_failures_total") >= 2.0,
        "{m}"
    );
    ts.stop().await;
}

#[tokio::test]
async fn a_receiver_down_then_back_gets_everything_once_in_order() {
    let rx = Receiver::start(SECRET).await;
    let ts = hooked(&[&rx], &[]).await;
    rx.down().await;
    let [ann, bob, carl, dave] = [
        ts.client("ann").await,
        ts.client("bob").await,
        ts.client("carl").await,
        ts.client("dave").await,
    ];
    let (a, _) = ann.find_match(2, "default", json!({})).await.unwrap();
    bob.find_match(2, "default", json!({})).await.unwrap();
    let b = carl.create_room(json!({"max_players": 3})).await.unwrap();
    dave.join_room(&b.room_id).await.unwrap();
    ann.leave_room().await.unwrap();
    carl.start_game().await.unwrap();
    bob.leave_room().await.unwrap();
    finish(&carl, json!({"score": [3, 1]})).await;

    wait_metrics(&ts, "failed attempts while down", |m| {
        metric(m, "rendezvous_webhook_failures_total") >= 1.0
    })
    .await;
    if !cluster_mode() {
        let m = metrics(&ts).await;
        // 12 waiting; the one out on an attempt may count or not.
        let queued = metric(&m, "rendezvous_webhook_queue");
        assert!((11.0..=12.0).contains(&queued), "all waiting: {queued}");
    }
    assert!(rx.hits().is_empty());
    rx.up().await;

    rx.wait_delivered(12, LIMIT).await;
    // Anything else (a 13th event, a second delivery) would be a bug. Not
    // waited for by the clock: once the server holds no event and has no
    // attempt out, every POST it made has been answered, so is in `hits`.
    let hits = settled(&ts, &rx).await;
    assert_eq!(delivered_once_each(&hits).len(), 12, "\n{}", summary(&hits));
    assert_eq!(
        kinds(&room_events(&hits, &a.room_id)),
        [
            "room.created",
            "player.joined",
            "player.joined",
            "match.started",
            "player.left",
            "player.left",
            "room.closed"
        ]
    );
    assert_eq!(
        kinds(&room_events(&hits, &b.room_id)),
        [
            "room.created",
            "player.joined",
            "player.joined",
            "match.started",
            "room.finished"
        ]
    );
    ts.stop().await;
}

#[tokio::test]
async fn events_past_the_retry_window_are_dropped_and_counted() {
    let rx = Receiver::start(SECRET).await;
    let ts = hooked(&[&rx], &["--webhook-retry-for-ms", "1000"]).await;
    rx.down().await;
    let ann = ts.client("ann").await;
    let old = ann.create_room(json!({})).await.unwrap();
    wait_metrics(&ts, "2 events expired", |m| {
        labeled(m, "rendezvous_webhook_dropped_total", "\"expired\"") >= 2.0
    })
    .await;
    rx.up().await;
    ann.leave_room().await.unwrap();
    let new = ann.create_room(json!({})).await.unwrap();
    let hits = wait_event(&rx, &new.room_id, "player.joined").await;
    // The old room's leave and close are fresh events; its creation and
    // join expired and never arrive.
    let old_kinds = kinds(&room_events(&hits, &old.room_id));
    assert!(
        !old_kinds
            .iter()
            .any(|k| k == "room.created" || k == "player.joined"),
        "expired events were not dropped:\n{}",
        summary(&hits)
    );
    ts.stop().await;
}

#[tokio::test]
async fn a_full_queue_drops_new_events_and_counts_them() {
    let rx = Receiver::start(SECRET).await;
    let ts = hooked(&[&rx], &["--webhook-queue", "3"]).await;
    rx.down().await;
    let mut clients = Vec::new();
    let mut rooms = Vec::new();
    for i in 0..3 {
        let c = ts.client(&format!("p{i}")).await;
        rooms.push(c.create_room(json!({})).await.unwrap().room_id);
        clients.push(c);
    }
    // 6 events, room for 3 (one more may be out on its attempt, depending
    // on whether the server counts it as queued).
    let m = wait_metrics(&ts, "overflows", |m| {
        labeled(m, "rendezvous_webhook_dropped_total", "\"overflow\"") >= 2.0
    })
    .await;
    let dropped = labeled(&m, "rendezvous_webhook_dropped_total", "\"overflow\"") as usize;
    assert!((2..=3).contains(&dropped), "{m}");
    assert!(metric(&m, "rendezvous_webhook_queue") <= 3.0, "{m}");
    rx.up().await;
    rx.wait_delivered(6 - dropped, LIMIT).await;
    let hits = delivered_once_each(&settled(&ts, &rx).await);
    assert_eq!(hits.len(), 6 - dropped, "\n{}", summary(&hits));
    // The oldest are kept: the first room's events all arrive.
    assert_eq!(
        kinds(&room_events(&hits, &rooms[0])),
        ["room.created", "player.joined"]
    );
    ts.stop().await;
}

/// The receiver itself, without the server: the tests above rely on it to
/// spot a bad signature and to play its faults for real.
#[tokio::test]
async fn the_receiver_checks_signatures_and_plays_its_faults() {
    let rx = Receiver::start(SECRET).await;
    let body = r#"{"id":"e1","type":"room.closed","created_at":"2026-11-30T09:00:00.000Z","data":{"room_id":"r1"}}"#;
    let now = chrono::Utc::now().timestamp().to_string();
    let good = format!("t={now},v1={}", sign(SECRET, &now, body.as_bytes()));
    let post = |sig: String| {
        let url = rx.url();
        async move {
            post_json(
                &url,
                body,
                &[
                    ("Rendezvous-Event", "room.closed"),
                    ("Rendezvous-Delivery", "e1"),
                    ("Rendezvous-Signature", &sig),
                ],
            )
            .await
        }
    };
    assert_eq!(post(good.clone()).await, Some(200));
    rx.fail_next(1, 500);
    assert_eq!(post(good.clone()).await, Some(500));
    assert_eq!(rx.delivered().len(), 1);
    assert_eq!(rx.hits()[0].json["data"]["room_id"], "r1");

    // Another secret, or the body changed after signing: refused, reported.
    let other = format!(
        "t={now},v1={}",
        sign("not-the-secret", &now, body.as_bytes())
    );
    assert_eq!(post(other).await, Some(401));
    assert_eq!(rx.take_problems().len(), 1);
    let stale = "0".to_string();
    let old = format!("t={stale},v1={}", sign(SECRET, &stale, body.as_bytes()));
    assert_eq!(post(old).await, Some(401), "a signature time far from now");
    assert_eq!(rx.take_problems().len(), 1);

    rx.hang_next(1);
    let hung = tokio::time::timeout(Duration::from_millis(300), post(good.clone())).await;
    assert!(hung.is_err(), "a hang never answers");
    rx.late_next(1, Duration::from_millis(200));
    let t0 = Instant::now();
    assert_eq!(post(good.clone()).await, Some(200));
    assert!(t0.elapsed() >= Duration::from_millis(200));

    rx.down().await;
    assert_eq!(post(good.clone()).await, None, "down: connection refused");
    rx.up().await;
    assert_eq!(post(good).await, Some(200), "back on the same URL");
    rx.assert_signed();
}

#[test]
fn a_webhook_url_without_a_secret_refuses_to_start() {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rendezvous"));
    cmd.args(["--listen", "127.0.0.1:0"])
        .args(["--webhook-url", "http://127.0.0.1:9/hook"])
        .env_remove("RENDEZVOUS_WEBHOOK_SECRET");
    let out = output_within(&mut cmd, Duration::from_secs(20));
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("webhook-secret"));
}
