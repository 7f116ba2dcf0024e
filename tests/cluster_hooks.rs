//! Webhooks in cluster mode through real processes (issue 16): a real
//! `redis-server`, two server binaries sharing it, and the signature-checking
//! receiver of tests/support/hooks.rs. Each event goes to each URL once,
//! from one node; and events the delivering node had in hand when it was
//! killed with SIGKILL (receiver down, nothing delivered yet) are delivered
//! by the other node once the receiver is back, each once, rooms in order.

mod support;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use serde_json::json;
use support::hooks::{delivered_once_each, summary, Hit, Receiver};
use support::*;
use tokio::time::Instant;

const SECRET: &str = "cluster-hooks-secret";
const TEST_LIMIT: Duration = Duration::from_secs(90);
const LIMIT: Duration = Duration::from_secs(30);

async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {limit:?}"))
}

fn redis_conn(redis: &RedisServer) -> redis::Connection {
    redis::Client::open(redis.url())
        .and_then(|c| c.get_connection())
        .expect("redis connection")
}

/// The node id holding the delivery lease `rv:hooks:lead`, once there is one.
async fn lease_holder(redis: &RedisServer) -> String {
    let mut con = redis_conn(redis);
    let deadline = Instant::now() + LIMIT;
    loop {
        let held: Option<String> = redis::cmd("GET")
            .arg("rv:hooks:lead")
            .query(&mut con)
            .expect("GET rv:hooks:lead");
        if let Some(node) = held {
            return node;
        }
        assert!(Instant::now() < deadline, "no node took rv:hooks:lead");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Entries of `rv:hooks` read by a consumer and not acknowledged yet.
fn pending(con: &mut redis::Connection) -> i64 {
    let reply: redis::RedisResult<redis::Value> =
        redis::cmd("XPENDING").arg("rv:hooks").arg("d").query(con);
    match reply {
        Ok(redis::Value::Array(items)) => match items.first() {
            Some(redis::Value::Int(n)) => *n,
            _ => 0,
        },
        _ => 0,
    }
}

fn hook_args(urls: &str) -> Vec<&str> {
    vec![
        "--webhook-url",
        urls,
        "--webhook-secret",
        SECRET,
        "--webhook-timeout-ms",
        "300",
        "--node-ttl-ms",
        "1000",
        // No seat given up during the test: the events are exactly the
        // ones the test makes.
        "--reconnect-grace-ms",
        "60000",
    ]
}

fn room_kinds(hits: &[Hit], room_id: &str) -> Vec<String> {
    delivered_once_each(hits)
        .iter()
        .filter(|h| h.room_id() == room_id)
        .map(|h| h.kind().to_string())
        .collect()
}

const LIFE_2: [&str; 7] = [
    "room.created",
    "player.joined",
    "player.joined",
    "match.started",
    "player.left",
    "player.left",
    "room.closed",
];

#[tokio::test]
async fn each_event_reaches_each_url_once_from_one_node() {
    within(TEST_LIMIT, "the test", async {
        let redis = RedisServer::start();
        let (r1, r2) = (Receiver::start(SECRET).await, Receiver::start(SECRET).await);
        let urls = format!("{},{}", r1.url(), r2.url());
        let (_node_a, a) = spawn_node(&redis.url(), "node-a", &hook_args(&urls));
        let (_node_b, b) = spawn_node(&redis.url(), "node-b", &hook_args(&urls));
        // One room made across both nodes, one on each node alone.
        let ann = client_at(&a, "ann").await;
        let bob = client_at(&b, "bob").await;
        let (cross, _) = ann.find_match(2, "default", json!({})).await.unwrap();
        bob.find_match(2, "default", json!({})).await.unwrap();
        ann.leave_room().await.unwrap();
        bob.leave_room().await.unwrap();
        let mut solo = Vec::new();
        for (addr, name) in [(&a, "carl"), (&b, "dave")] {
            let c = client_at(addr, name).await;
            solo.push(c.create_room(json!({})).await.unwrap().room_id);
            c.leave_room().await.unwrap();
        }
        // 7 + 4 + 4 events.
        for rx in [&r1, &r2] {
            rx.wait_delivered(15, LIMIT).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (h1, h2) = (r1.hits(), r2.hits());
        for hits in [&h1, &h2] {
            assert_eq!(delivered_once_each(hits).len(), 15, "\n{}", summary(hits));
            assert_eq!(room_kinds(hits, &cross.room_id), LIFE_2);
            for room in &solo {
                assert_eq!(
                    room_kinds(hits, room),
                    [
                        "room.created",
                        "player.joined",
                        "player.left",
                        "room.closed"
                    ]
                );
            }
        }
        let ids = |hits: &[Hit]| {
            let mut v: Vec<String> = delivered_once_each(hits)
                .iter()
                .map(|h| h.id().to_string())
                .collect();
            v.sort();
            v
        };
        assert_eq!(ids(&h1), ids(&h2), "the same event ids at both URLs");
    })
    .await;
}

#[tokio::test]
async fn undelivered_events_survive_a_kill_9_of_the_delivering_node() {
    within(TEST_LIMIT, "the test", async {
        let redis = RedisServer::start();
        let rx = Receiver::start(SECRET).await;
        let url = rx.url();
        let mut nodes = HashMap::new();
        for id in ["node-a", "node-b"] {
            nodes.insert(id, spawn_node(&redis.url(), id, &hook_args(&url)));
        }
        let leader = lease_holder(&redis).await;
        let survivor_id = match leader.as_str() {
            "node-a" => "node-b",
            "node-b" => "node-a",
            other => panic!("rv:hooks:lead holds {other:?}, not a node id"),
        };
        let (mut victim, v) = nodes.remove(leader.as_str()).unwrap();
        let (_survivor, s) = nodes.remove(survivor_id).unwrap();
        rx.down().await;

        // Events made through both nodes, while nothing can be delivered.
        let ann = client_at(&s, "ann").await;
        let bob = client_at(&v, "bob").await;
        let carl = client_at(&v, "carl").await;
        let dave = client_at(&s, "dave").await;
        let r1 = ann.create_room(json!({"max_players": 3})).await.unwrap();
        bob.join_room(&r1.room_id).await.unwrap();
        ann.start_game().await.unwrap();
        ann.request("finish_game", json!({"result": {"winner": "ann"}}))
            .await
            .unwrap();
        let (r2, _) = carl.find_match(2, "x", json!({})).await.unwrap();
        dave.find_match(2, "x", json!({})).await.unwrap();
        dave.leave_room().await.unwrap();
        let made = 10;

        // The leader read them all and holds them, unacknowledged.
        let mut con = redis_conn(&redis);
        let deadline = Instant::now() + LIMIT;
        while pending(&mut con) < made {
            assert!(
                Instant::now() < deadline,
                "the leader never read the {made} events: {} pending",
                pending(&mut con)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let m = http_raw("GET", &format!("http://{v}/metrics"), &[]).await.1;
        assert!(
            m.lines()
                .any(|l| l.starts_with("rendezvous_webhook_failures_total") && !l.ends_with(" 0")),
            "the leader tried and failed:\n{m}"
        );
        victim.kill9();
        rx.up().await;

        let hits = rx.wait_delivered(made as usize, LIMIT).await;
        assert!(!hits.is_empty());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let hits = rx.hits();
        assert_eq!(
            delivered_once_each(&hits).len(),
            made as usize,
            "nothing missing, nothing extra:\n{}",
            summary(&hits)
        );
        assert_eq!(
            room_kinds(&hits, &r1.room_id),
            [
                "room.created",
                "player.joined",
                "player.joined",
                "match.started",
                "room.finished"
            ]
        );
        assert_eq!(
            room_kinds(&hits, &r2.room_id),
            [
                "room.created",
                "player.joined",
                "player.joined",
                "match.started",
                "player.left"
            ]
        );
        assert_eq!(lease_holder(&redis).await, survivor_id);
        // Done with: acknowledged and deleted from the stream.
        let deadline = Instant::now() + LIMIT;
        loop {
            let len: i64 = redis::cmd("XLEN")
                .arg("rv:hooks")
                .query(&mut con)
                .expect("XLEN");
            if len == 0 && pending(&mut con) == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{len} entries left in rv:hooks");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}
