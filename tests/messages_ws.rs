//! Room messages (1.2) through the real WebSocket interface: `send` to one
//! member or to the room, the `message` event, spectators' rules, the size
//! cap, the rate limit, fire-and-forget, held recipients, stats and
//! metrics. With `RENDEZVOUS_TEST_CLUSTER=1` the same tests run in cluster
//! mode; the two-node case always does (on a Redis of its own).

mod support;

use std::time::Duration;

use clap::Parser;
use rendezvous::client::Client;
use rendezvous::config::Config;
use serde_json::{json, Value};
use support::*;

const SHORT: Duration = Duration::from_millis(300);

/// ann hosts a room of 3 with bob seated and sam watching; events drained.
async fn room(ts: &TestServer) -> (Client, Client, Client) {
    let ann = ts.manual_client("ann").await;
    let bob = ts.manual_client("bob").await;
    let sam = ts.manual_client("sam").await;
    let r = ann
        .create_room(json!({"max_players": 3, "max_spectators": 2}))
        .await
        .unwrap();
    bob.join_room(&r.room_id).await.unwrap();
    sam.request(
        "join_room",
        json!({"room_id": r.room_id, "as": "spectator"}),
    )
    .await
    .unwrap();
    for c in [&ann, &bob, &sam] {
        while c.next_event_within(SHORT).await.is_ok() {}
    }
    (ann, bob, sam)
}

async fn message(c: &Client) -> Value {
    event_within(c, "message", Duration::from_secs(5)).await
}

#[tokio::test]
async fn send_to_one_member_or_to_the_room() {
    let ts = TestServer::start().await;
    let (ann, bob, sam) = room(&ts).await;
    let ok = ann
        .request("send", json!({"to": bob.player_id(), "data": {"move": 4}}))
        .await
        .unwrap();
    assert_eq!(ok["delivered"], 1, "{ok}");
    let m = message(&bob).await;
    assert_eq!(
        m,
        json!({"type": "message", "from": ann.player_id(), "data": {"move": 4}})
    );
    // To the room: every other member, spectators included, not the sender.
    let delivered = ann
        .send_message_with_reply(json!([1, "two", null]), None)
        .await
        .unwrap();
    assert_eq!(delivered, 2);
    for c in [&bob, &sam] {
        assert_eq!(message(c).await["data"], json!([1, "two", null]));
    }
    expect_no_event(&ann, SHORT).await;
    // Any JSON value; a burst arrives in the order sent.
    for i in 0..20 {
        ann.send_message(json!(i), None).await.unwrap();
    }
    ann.send_message(json!("last"), Some(bob.player_id()))
        .await
        .unwrap();
    for c in [&bob, &sam] {
        for i in 0..20 {
            assert_eq!(message(c).await["data"], i);
        }
    }
    assert_eq!(message(&bob).await["data"], "last");
    ts.stop().await;
}

#[tokio::test]
async fn spectators_send_to_the_room_only_and_players_may_send_to_them() {
    let ts = TestServer::start().await;
    let (ann, bob, sam) = room(&ts).await;
    assert_code(
        sam.request("send", json!({"to": ann.player_id(), "data": 1}))
            .await,
        "forbidden",
    );
    let ok = sam.request("send", json!({"data": "cheer"})).await.unwrap();
    assert_eq!(ok["delivered"], 2);
    for c in [&ann, &bob] {
        let m = message(c).await;
        assert_eq!(
            (m["from"].as_str(), &m["data"]),
            (Some(sam.player_id()), &json!("cheer"))
        );
    }
    let ok = bob
        .request("send", json!({"to": sam.player_id(), "data": {}}))
        .await
        .unwrap();
    assert_eq!(ok["delivered"], 1);
    assert_eq!(message(&sam).await["from"], bob.player_id());
    // Any status: the game runs, then ends.
    ann.start_game().await.unwrap();
    ann.request("send", json!({"data": "active"}))
        .await
        .unwrap();
    assert_eq!(message(&bob).await["data"], "active");
    ann.request("finish_game", json!({})).await.unwrap();
    ann.request("send", json!({"data": "finished"}))
        .await
        .unwrap();
    assert_eq!(message(&sam).await["data"], "active");
    assert_eq!(message(&sam).await["data"], "finished");
    ts.stop().await;
}

#[tokio::test]
async fn refusals() {
    let ts = TestServer::with_args(&["--max-send-bytes", "32"]).await;
    let lou = ts.manual_client("lou").await;
    assert_code(lou.request("send", json!({"data": 1})).await, "not_in_room");
    let (ann, bob, _sam) = room(&ts).await;
    assert_code(
        ann.request("send", json!({"to": "p_nobody", "data": 1}))
            .await,
        "peer_not_found",
    );
    assert_code(
        ann.request("send", json!({"to": lou.player_id(), "data": 1}))
            .await,
        "peer_not_found",
    );
    assert_code(
        ann.request("send", json!({"to": ann.player_id(), "data": 1}))
            .await,
        "peer_not_found",
    );
    assert_code(ann.request("send", json!({})).await, "bad_request");
    assert_code(
        ann.request("send", json!({"to": 5, "data": 1})).await,
        "bad_request",
    );
    // The size of `data` as sent: 32 bytes pass, 33 do not.
    let fits = "x".repeat(30);
    let ok = ann.request("send", json!({"data": fits})).await.unwrap();
    assert_eq!(ok["delivered"], 2);
    assert_code(
        ann.request("send", json!({"data": "x".repeat(31)})).await,
        "payload_too_large",
    );
    // Whitespace as sent counts.
    ann.send_text(r#"{"type":"send","rid":"w","data":[1,                              2]}"#)
        .await
        .unwrap();
    let e = ann.wait_for("error").await.unwrap();
    assert_eq!(
        (e["rid"].as_str(), e["code"].as_str()),
        (Some("w"), Some("payload_too_large"))
    );
    assert_eq!(message(&bob).await["data"], fits);
    expect_no_event(&bob, SHORT).await;
    ts.stop().await;
}

#[tokio::test]
async fn without_rid_no_ok_but_refusals_still_come_back() {
    let ts = TestServer::start().await;
    let (ann, bob, _sam) = room(&ts).await;
    ann.send_text(r#"{"type":"send","to":"p_nobody","data":1}"#)
        .await
        .unwrap();
    let e = ann.next_event().await.unwrap();
    assert_eq!(e["type"], "error");
    assert_eq!(e["code"], "peer_not_found");
    assert_eq!(e["rid"], Value::Null);
    ann.send_text(r#"{"type":"send","data":{"n":1}}"#)
        .await
        .unwrap();
    assert_eq!(message(&bob).await["data"], json!({"n": 1}));
    // Nothing came back for it: the next frame is the ping's answer.
    ann.request("ping", json!({})).await.unwrap();
    expect_no_event(&ann, SHORT).await;
    ts.stop().await;
}

#[tokio::test]
async fn sends_have_their_own_rate_limit() {
    let ts = TestServer::with_args(&["--send-rate", "1", "--send-burst", "3"]).await;
    let (ann, bob, _sam) = room(&ts).await;
    for _ in 0..3 {
        ann.request("send", json!({"data": 1})).await.unwrap();
    }
    let r = ann.request("send", json!({"data": 1})).await;
    assert_code(r, "rate_limited");
    // Other requests and signals are not held back by it.
    ann.request("chat", json!({"text": "still here"}))
        .await
        .unwrap();
    ann.send_text(r#"{"type":"send","data":2}"#).await.unwrap();
    let e = ann.wait_for("error").await.unwrap();
    assert_eq!(
        (e["code"].as_str(), &e["rid"]),
        (Some("rate_limited"), &Value::Null)
    );
    for _ in 0..3 {
        message(&bob).await;
    }
    ts.stop().await;
}

#[tokio::test]
async fn a_held_recipient_gets_its_messages_on_resume() {
    let ts = TestServer::start().await;
    let (ann, bob, sam) = room(&ts).await;
    let token = bob.welcome.resume_token.clone();
    bob.drop_connection();
    ann.wait_for("player_disconnected").await.unwrap();
    let ok = ann.request("send", json!({"data": "one"})).await.unwrap();
    assert_eq!(ok["delivered"], 2, "a held seat counts");
    ann.request("send", json!({"to": bob.player_id(), "data": "two"}))
        .await
        .unwrap();
    assert_eq!(message(&sam).await["data"], "one");
    let back = Client::connect_with(&format!("{}?resume={token}", ts.ws_url()), no_reconnect())
        .await
        .unwrap();
    assert!(back.welcome.resumed);
    assert_eq!(message(&back).await["data"], "one");
    assert_eq!(message(&back).await["data"], "two");
    ts.stop().await;
}

#[tokio::test]
async fn stats_and_metrics_count_each_accepted_send_once() {
    let ts = TestServer::start().await;
    let (ann, bob, sam) = room(&ts).await;
    ann.request("send", json!({"data": 1})).await.unwrap();
    bob.request("send", json!({"to": ann.player_id(), "data": 1}))
        .await
        .unwrap();
    sam.send("send", json!({"data": 1})).await.unwrap();
    let _ = ann
        .request("send", json!({"to": "p_nobody", "data": 1}))
        .await;
    message(&ann).await;
    message(&ann).await;
    let s = wait_stats(&ts, |s| s["messages_relayed"] == 3).await;
    assert_eq!(s["signals_relayed"], 0);
    let metrics = http_raw("GET", &ts.http("/metrics"), &[]).await.1;
    assert_eq!(metric(&metrics, "rendezvous_messages_relayed_total"), 3.0);
    let welcome = serde_json::to_value(&ann.welcome).unwrap();
    let features = welcome["features"].as_array().unwrap();
    assert!(features.contains(&json!("ready")) && features.contains(&json!("messages")));
    ts.stop().await;
}

/// Two nodes on one Redis: messages cross nodes in order, reach held
/// seats on resume, and `messages_relayed` is exact on both nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_nodes_in_order_and_are_counted_once() {
    let redis = RedisServer::start();
    let url = redis.url();
    let node = |id: &'static str| {
        let url = url.clone();
        async move {
            let argv = [
                "rendezvous",
                "--listen",
                "127.0.0.1:0",
                "--max-connections-per-ip",
                "100000",
                "--redis-url",
                &url,
                "--node-id",
                id,
            ];
            let cfg = Config::try_parse_from(argv).expect("config");
            rendezvous::server::start(cfg).await.expect("node starts")
        }
    };
    let (a, b) = (node("n-a").await, node("n-b").await);
    let client = |addr: std::net::SocketAddr, name: &'static str| async move {
        Client::connect_with(&format!("ws://{addr}/ws?name={name}"), no_reconnect())
            .await
            .expect("connects")
    };
    let ann = client(a.addr, "ann").await;
    let bob = client(b.addr, "bob").await;
    let cat = client(b.addr, "cat").await;
    let r = ann
        .create_room(json!({"max_players": 3, "max_spectators": 1}))
        .await
        .unwrap();
    bob.join_room(&r.room_id).await.unwrap();
    cat.request(
        "join_room",
        json!({"room_id": r.room_id, "as": "spectator"}),
    )
    .await
    .unwrap();
    for c in [&ann, &bob, &cat] {
        while c.next_event_within(SHORT).await.is_ok() {}
    }
    // A burst, half fire-and-forget, half with rid: in order on node b.
    for i in 0..40 {
        if i % 2 == 0 {
            ann.send("send", json!({"data": i})).await.unwrap();
        } else {
            let ok = ann.request("send", json!({"data": i})).await.unwrap();
            assert_eq!(ok["delivered"], 2);
        }
    }
    for c in [&bob, &cat] {
        for i in 0..40 {
            let m = message(c).await;
            assert_eq!(
                (m["from"].as_str(), &m["data"]),
                (Some(ann.player_id()), &json!(i))
            );
        }
    }
    let ok = cat.request("send", json!({"data": "back"})).await.unwrap();
    assert_eq!(ok["delivered"], 2);
    assert_eq!(message(&ann).await["data"], "back");
    assert_eq!(message(&bob).await["data"], "back");
    // bob drops on node b; ann's messages wait for him, he resumes on a.
    let token = bob.welcome.resume_token.clone();
    bob.drop_connection();
    ann.wait_for("player_disconnected").await.unwrap();
    ann.request("send", json!({"to": bob.player_id(), "data": "held 1"}))
        .await
        .unwrap();
    ann.request("send", json!({"data": "held 2"}))
        .await
        .unwrap();
    let back = Client::connect_with(
        &format!("ws://{}/ws?resume={token}", a.addr),
        no_reconnect(),
    )
    .await
    .unwrap();
    assert!(back.welcome.resumed);
    assert_eq!(message(&back).await["data"], "held 1");
    assert_eq!(message(&back).await["data"], "held 2");
    // Counted once per send on every node: 40 + 1 + 2.
    for addr in [a.addr, b.addr] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let s = http_get(&format!("http://{addr}/api/stats")).await.1;
            if s["messages_relayed"] == 43 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "stats of {addr}: {s}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    a.shutdown().await;
    b.shutdown().await;
    drop(redis);
}
