//! Cluster mode through real processes: a real `redis-server` and two or
//! three server binaries sharing it. Players on different nodes match and
//! signal each other, concurrent matchmaking never overfills a room, a node
//! killed with SIGKILL hands its players to the reconnect grace (also when
//! it comes straight back under the same node id), a Redis outage is
//! reported (and survived), stats are exact on every node, and a resume
//! token works on any node.

mod support;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use futures_util::future::join_all;
use rendezvous::client::{Client, ClientError};
use serde_json::{json, Value};
use support::*;
use tokio::time::Instant;

const OFFER: &str = include_str!("fixtures/sdp/chromium-offer-datachannel.sdp");
const ANSWER: &str = include_str!("fixtures/sdp/firefox-answer-datachannel.sdp");
const CANDIDATES: &str = include_str!("fixtures/sdp/chromium-candidates.txt");
const CANDIDATE: &str = "candidate:1 1 udp 2113937151 192.0.2.1 5000 typ host";

/// Every test body runs under this limit: a server that hangs fails the
/// test (and the guards stop every process) instead of hanging the run.
const TEST_LIMIT: Duration = Duration::from_secs(60);
const QUIET: Duration = Duration::from_millis(300);

async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {limit:?}"))
}

/// GET `path` on the node at `addr`, answered within 5 s.
async fn get(addr: &str, path: &str) -> (u16, Value) {
    within(
        Duration::from_secs(5),
        &format!("GET {path} on {addr}"),
        http_get(&format!("http://{addr}{path}")),
    )
    .await
}

async fn stats(addr: &str) -> Value {
    let (status, body) = get(addr, "/api/stats").await;
    assert_eq!(status, 200, "stats of {addr}: {body}");
    body
}

/// The public rooms of `status` listed by the node at `addr` (all modes).
async fn rooms(addr: &str, status: &str) -> Vec<Value> {
    let (code, body) = get(addr, &format!("/api/rooms?status={status}&limit=500")).await;
    assert_eq!(code, 200, "rooms of {addr}: {body}");
    body["rooms"].as_array().expect("rooms array").clone()
}

async fn health(addr: &str) -> u16 {
    get(addr, "/healthz").await.0
}

/// `/healthz`, `/readyz` and `/livez` of a node.
async fn probes(addr: &str) -> (u16, u16, u16) {
    (
        get(addr, "/healthz").await.0,
        get(addr, "/readyz").await.0,
        get(addr, "/livez").await.0,
    )
}

/// Tries a WebSocket handshake on a node, within 5 s: Ok, or the HTTP
/// status it was refused with and the JSON body of the refusal.
async fn probe(addr: &str) -> Result<(), (u16, Value)> {
    let url = format!("ws://{addr}/ws?name=probe");
    within(Duration::from_secs(5), "handshake", handshake(&url, &[])).await
}

fn player_ids(room: &Value) -> Vec<String> {
    room["players"]
        .as_array()
        .unwrap_or_else(|| panic!("no players in {room}"))
        .iter()
        .map(|p| p["player_id"].as_str().expect("player_id").to_string())
        .collect()
}

/// Skips events until one of type `kind` arrives; panics after `limit`.
async fn wait_event(c: &Client, kind: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next_event_within(left).await {
            Ok(ev) if ev["type"] == kind => return ev,
            Ok(_) => continue,
            Err(e) => panic!("{}: no {kind} within {limit:?}: {e}", c.player_id()),
        }
    }
}

/// Retries `check` every 50 ms until it passes; panics with its last
/// complaint after `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let last = match check().await {
            Ok(()) => return,
            Err(e) => e,
        };
        if Instant::now() > deadline {
            panic!("{what}: not within {limit:?}; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The room counts and seats recounted from the node's public listings
/// (waiting and active) plus the given finished rooms, next to what its
/// `/api/stats` says. Panics on any difference.
async fn assert_stats_match_recount(addr: &str, finished: &[&str]) -> Value {
    let s = stats(addr).await;
    let waiting = rooms(addr, "waiting").await;
    let active = rooms(addr, "active").await;
    let seats = |rs: &[Value]| rs.iter().map(|r| player_ids(r).len() as u64).sum::<u64>();
    let mut finished_seats = 0;
    for id in finished {
        let (code, room) = get(addr, &format!("/api/rooms/{id}")).await;
        assert_eq!(code, 200, "{room}");
        assert_eq!(room["status"], "finished", "{room}");
        finished_seats += player_ids(&room).len() as u64;
    }
    for r in &waiting {
        assert_eq!(r["status"], "waiting", "{r}");
    }
    for r in &active {
        assert_eq!(r["status"], "active", "{r}");
    }
    let recount = json!({
        "waiting_rooms": waiting.len(),
        "active_rooms": active.len(),
        "finished_rooms": finished.len(),
        "total_rooms": waiting.len() + active.len() + finished.len(),
        "total_players": seats(&waiting) + seats(&active) + finished_seats,
        "players_waiting": seats(&waiting),
    });
    for (k, v) in recount.as_object().unwrap() {
        assert_eq!(&s[k], v, "{k} on {addr}: stats {s}, recount {recount}");
    }
    s
}

fn server_error(r: Result<impl std::fmt::Debug, ClientError>) -> (String, String) {
    match r {
        Err(ClientError::Server { code, message }) => (code.as_str().to_string(), message),
        other => panic!("expected an error reply, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn players_on_two_nodes_match_and_signal_each_other() {
    within(TEST_LIMIT, "test", async {
        let redis = RedisServer::start();
        let (_node_a, a) = spawn_node(&redis.url(), "node-a", &[]);
        let (_node_b, b) = spawn_node(&redis.url(), "node-b", &[]);
        let ann = client_at(&a, "ann").await;
        let bob = client_at(&b, "bob").await;
        let cat = client_at(&b, "cat").await;

        let (room, created) = ann.find_match(2, "duel", json!({})).await.unwrap();
        assert!(created);
        assert_eq!(room.status.as_str(), "waiting");
        assert_eq!(room.host.as_deref(), Some(ann.player_id()));
        ann.wait_for("chat_history").await.unwrap();

        let (joined, created) = bob.find_match(2, "duel", json!({})).await.unwrap();
        assert!(!created, "bob joins ann's room on the other node");
        assert_eq!(joined.room_id, room.room_id);
        assert_eq!(joined.status.as_str(), "active", "a full room is active");
        let ids: Vec<_> = joined.players.iter().map(|p| p.player_id.as_str()).collect();
        assert_eq!(ids, [ann.player_id(), bob.player_id()], "join order");

        let ev = ann.next_event().await.unwrap();
        assert_eq!(ev["type"], "player_joined", "{ev}");
        assert_eq!(ev["room_id"], room.room_id.as_str());
        assert_eq!(ev["player"]["player_id"], bob.player_id());
        assert_eq!(ev["player"]["name"], "bob");
        let ev = ann.next_event().await.unwrap();
        assert_eq!(ev["type"], "room_status", "{ev}");
        assert_eq!(ev["status"], "active");
        for c in [&ann, &bob] {
            let start = c.wait_for("game_start").await.unwrap();
            assert_eq!(start["room"]["room_id"], room.room_id.as_str());
            assert_eq!(start["room"]["status"], "active");
            assert_eq!(
                player_ids(&start["room"]),
                [ann.player_id(), bob.player_id()]
            );
        }

        // The later joiner (bob, node B) offers; ann (node A) answers.
        bob.request("offer", json!({"to": ann.player_id(), "sdp": OFFER}))
            .await
            .unwrap();
        let ev = ann.wait_for("offer").await.unwrap();
        assert_eq!(ev["from"], bob.player_id());
        assert_eq!(ev["sdp"].as_str(), Some(OFFER), "byte for byte");
        assert!(ev.get("to").is_none() && ev.get("rid").is_none(), "{ev}");

        ann.request("answer", json!({"to": bob.player_id(), "sdp": ANSWER}))
            .await
            .unwrap();
        let ev = bob.wait_for("answer").await.unwrap();
        assert_eq!(ev["from"], ann.player_id());
        assert_eq!(ev["sdp"].as_str(), Some(ANSWER));
        assert!(ev.get("to").is_none() && ev.get("rid").is_none(), "{ev}");

        // ICE candidates both ways, one of them captured from Chromium.
        let browser_line = CANDIDATES
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("candidate:"))
            .expect("a candidate in the fixture");
        let flows = [
            (&bob, &ann, CANDIDATE),
            (&ann, &bob, browser_line),
            (&ann, &bob, CANDIDATE),
        ];
        for (from, to, line) in flows {
            let cand = json!({"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": null});
            from.request(
                "ice_candidate",
                json!({"to": to.player_id(), "candidate": cand}),
            )
            .await
            .unwrap();
            let ev = to.wait_for("ice_candidate").await.unwrap();
            assert_eq!(ev["from"], from.player_id());
            assert_eq!(ev["candidate"], cand);
            assert!(ev.get("to").is_none() && ev.get("rid").is_none(), "{ev}");
        }

        // Only between members of the room, wherever they are connected.
        assert_code(
            cat.request("offer", json!({"to": ann.player_id(), "sdp": OFFER}))
                .await,
            "not_in_room",
        );
        assert_code(
            ann.request("offer", json!({"to": cat.player_id(), "sdp": OFFER}))
                .await,
            "peer_not_found",
        );
        expect_no_event(&cat, QUIET).await;
        expect_no_event(&ann, QUIET).await;

        for addr in [&a, &b] {
            let s = stats(addr).await;
            assert_eq!(s["total_rooms"], 1, "{addr}: {s}");
            assert_eq!(s["active_rooms"], 1, "{addr}: {s}");
            assert_eq!(s["waiting_rooms"], 0, "{addr}: {s}");
            assert_eq!(s["total_players"], 2, "{addr}: {s}");
            assert_eq!(s["connections"], 3, "{addr}: {s}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_find_match_over_three_nodes_fill_fifty_rooms() {
    within(TEST_LIMIT, "test", async {
        let redis = RedisServer::start();
        let nodes: Vec<_> = ["n1", "n2", "n3"]
            .iter()
            .map(|id| spawn_node(&redis.url(), id, &["--max-connections-per-ip", "100000"]))
            .collect();
        let addrs: Vec<&str> = nodes.iter().map(|(_, addr)| addr.as_str()).collect();

        // Every client is connected before the first find_match.
        let clients: Vec<Client> = join_all((0..200).map(|i| {
            let addr = addrs[i % 3];
            async move { client_at(addr, &format!("p{i}")).await }
        }))
        .await;
        for addr in &addrs {
            assert_eq!(stats(addr).await["connections"], 200);
        }

        let replies = join_all(clients.iter().map(|c| c.find_match(4, "squad", json!({})))).await;
        let mut by_room: HashMap<String, Vec<String>> = HashMap::new();
        let mut created = 0;
        for (c, reply) in clients.iter().zip(replies) {
            let (room, was_created) =
                reply.unwrap_or_else(|e| panic!("find_match of {}: {e}", c.player_id()));
            assert!(room.players.len() <= 4, "{} players", room.players.len());
            assert!(
                room.players.iter().any(|p| p.player_id == c.player_id()),
                "the reply's room holds the player"
            );
            created += usize::from(was_created);
            by_room
                .entry(room.room_id.clone())
                .or_default()
                .push(c.player_id().to_string());
        }
        for (id, members) in &by_room {
            assert_eq!(members.len(), 4, "room {id} was given to {members:?}");
        }
        assert_eq!(by_room.len(), 50);
        assert_eq!(created, 50, "one creator per room");

        // Every member hears game_start with the four players its room got.
        let starts = join_all(clients.iter().map(|c| c.wait_for("game_start"))).await;
        for (c, start) in clients.iter().zip(starts) {
            let start = start.unwrap_or_else(|e| panic!("{}: {e}", c.player_id()));
            let room_id = start["room"]["room_id"].as_str().unwrap();
            assert_eq!(start["room"]["status"], "active");
            let members: HashSet<String> = player_ids(&start["room"]).into_iter().collect();
            let expected: HashSet<String> = by_room[room_id].iter().cloned().collect();
            assert_eq!(members, expected, "game_start of {room_id}");
        }

        for addr in &addrs {
            let s = stats(addr).await;
            for (k, v) in [
                ("total_rooms", 50),
                ("active_rooms", 50),
                ("waiting_rooms", 0),
                ("finished_rooms", 0),
                ("total_players", 200),
                ("players_waiting", 0),
                ("connections", 200),
            ] {
                assert_eq!(s[k], v, "{k} on {addr}: {s}");
            }
            let active = rooms(addr, "active").await;
            assert_eq!(active.len(), 50, "{addr} lists every active room");
            let mut seen = HashSet::new();
            for r in &active {
                let ids = player_ids(r);
                assert_eq!(ids.len(), 4, "{r}");
                for id in ids {
                    assert!(seen.insert(id.clone()), "{id} sits in two rooms");
                }
            }
            assert!(rooms(addr, "waiting").await.is_empty());
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_s_players_are_held_then_time_out() {
    within(TEST_LIMIT, "test", async {
        const TTL_MS: u64 = 1000;
        const GRACE_MS: u64 = 2000;
        let ttl = TTL_MS.to_string();
        let grace = GRACE_MS.to_string();
        let timing = ["--node-ttl-ms", &ttl, "--reconnect-grace-ms", &grace];
        let limit = Duration::from_millis(TTL_MS + GRACE_MS + 5000);
        let redis = RedisServer::start();
        let (_survivor, a) = spawn_node(&redis.url(), "survivor", &timing);
        let (mut victim, b) = spawn_node(&redis.url(), "victim", &timing);
        let on_b = |name: &str| {
            let b = b.clone();
            let query = format!("name={name}");
            async move { client_at_with(&b, &query, no_reconnect()).await.unwrap() }
        };

        // A waiting room: ann (A) hosts, bob (B) joined.
        let ann = client_at(&a, "ann").await;
        let bob = on_b("bob").await;
        let r1 = ann.create_room(json!({"max_players": 3})).await.unwrap();
        bob.join_room(&r1.room_id).await.unwrap();
        ann.wait_for("player_joined").await.unwrap();
        // An active room: carl (A) and dan (B), matched.
        let carl = client_at(&a, "carl").await;
        let dan = on_b("dan").await;
        let (r2, created) = carl.find_match(2, "duel", json!({})).await.unwrap();
        assert!(created);
        let (r2b, _) = dan.find_match(2, "duel", json!({})).await.unwrap();
        assert_eq!(r2b.room_id, r2.room_id);
        carl.wait_for("game_start").await.unwrap();
        // A room held only by players of B.
        let eve = on_b("eve").await;
        let fay = on_b("fay").await;
        let r3 = eve.create_room(json!({"max_players": 4})).await.unwrap();
        fay.join_room(&r3.room_id).await.unwrap();
        let dead: Vec<String> = [&bob, &dan, &eve, &fay]
            .iter()
            .map(|c| c.player_id().to_string())
            .collect();
        let s = stats(&a).await;
        assert_eq!(
            (s["total_rooms"].as_u64(), s["total_players"].as_u64()),
            (Some(3), Some(6)),
            "{s}"
        );

        victim.kill9();

        // Survivors see the dead node's players drop...
        let ev = wait_event(&ann, "player_disconnected", limit).await;
        let disconnected_at = Instant::now();
        assert_eq!(ev["player_id"], bob.player_id());
        assert_eq!(ev["room_id"], r1.room_id.as_str());
        let ev = wait_event(&carl, "player_disconnected", limit).await;
        assert_eq!(ev["player_id"], dan.player_id());
        // ...with their seats held for the grace...
        let (_, room) = get(&a, &format!("/api/rooms/{}", r1.room_id)).await;
        let seat = room["players"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["player_id"] == bob.player_id())
            .unwrap_or_else(|| panic!("bob's seat is held: {room}"))
            .clone();
        assert_eq!(seat["connected"], false, "{room}");
        // ...then given up.
        let ev = wait_event(&ann, "player_left", limit).await;
        assert_eq!(ev["player_id"], bob.player_id());
        assert_eq!(ev["reason"], "timeout");
        assert!(
            disconnected_at.elapsed() >= Duration::from_millis(GRACE_MS / 2),
            "bob's seat was given up {:?} after player_disconnected, grace {GRACE_MS} ms",
            disconnected_at.elapsed()
        );
        let ev = wait_event(&carl, "player_left", limit).await;
        assert_eq!(ev["player_id"], dan.player_id());
        assert_eq!(ev["reason"], "timeout");

        // No room the survivor lists keeps a player of the dead node, and
        // the room only they held is gone.
        let a_ref = a.as_str();
        let dead_ref = &dead;
        let r3_id = r3.room_id.as_str();
        eventually(
            limit,
            "the dead node's seats are all given up",
            || async move {
                for status in ["waiting", "active"] {
                    for r in rooms(a_ref, status).await {
                        if let Some(p) = player_ids(&r).iter().find(|p| dead_ref.contains(p)) {
                            return Err(format!("{p} still sits in {r}"));
                        }
                    }
                }
                match get(a_ref, &format!("/api/rooms/{r3_id}")).await {
                    (404, _) => Ok(()),
                    (code, body) => Err(format!("room of the dead node: {code} {body}")),
                }
            },
        )
        .await;
        let s = assert_stats_match_recount(&a, &[]).await;
        for (k, v) in [
            ("total_rooms", 2),
            ("waiting_rooms", 1),
            ("active_rooms", 1),
            ("total_players", 2),
            ("held_seats", 0),
            ("connections", 2),
        ] {
            assert_eq!(s[k], v, "{k}: {s}");
        }
        let (code, p) = get(&a, &format!("/api/players/{}", bob.player_id())).await;
        assert!(
            code == 404 || (p["room_id"].is_null() && p["connected"] == false),
            "bob after the timeout: {code} {p}"
        );

        // The survivor keeps serving: the seat bob left can be taken.
        let gus = client_at(&a, "gus").await;
        let room = gus.join_room(&r1.room_id).await.unwrap();
        let ids: Vec<_> = room.players.iter().map(|p| p.player_id.as_str()).collect();
        assert_eq!(ids, [ann.player_id(), gus.player_id()]);
    })
    .await;
}

/// A crashed node that a supervisor brings back at once under the same
/// `--node-id` (docker-compose.yml names its nodes and restarts them) has
/// none of the old process's sockets: their seats must still be handed to
/// the grace and given up, and no longer counted as connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_restarted_under_its_old_id_still_gives_up_the_lost_seats() {
    within(TEST_LIMIT, "test", async {
        const TTL_MS: u64 = 1000;
        const GRACE_MS: u64 = 1000;
        let ttl = TTL_MS.to_string();
        let grace = GRACE_MS.to_string();
        let timing = ["--node-ttl-ms", &ttl, "--reconnect-grace-ms", &grace];
        let limit = Duration::from_millis(TTL_MS + GRACE_MS + 5000);
        let redis = RedisServer::start();
        let (_survivor, a) = spawn_node(&redis.url(), "node-a", &timing);
        let (mut crashed, b) = spawn_node(&redis.url(), "node-b", &timing);
        let ann = client_at(&a, "ann").await;
        let bob = client_at_with(&b, "name=bob", no_reconnect())
            .await
            .unwrap();
        let room = ann.create_room(json!({"max_players": 3})).await.unwrap();
        bob.join_room(&room.room_id).await.unwrap();
        ann.wait_for("player_joined").await.unwrap();

        crashed.kill9();
        let (_restarted, b2) = spawn_node(&redis.url(), "node-b", &timing);

        let ev = wait_event(&ann, "player_disconnected", limit).await;
        assert_eq!(ev["player_id"], bob.player_id());
        let ev = wait_event(&ann, "player_left", limit).await;
        assert_eq!(ev["player_id"], bob.player_id());
        assert_eq!(ev["reason"], "timeout");

        let cat = client_at(&b2, "cat").await;
        cat.request("ping", json!({})).await.unwrap();
        for addr in [&a, &b2] {
            let s = assert_stats_match_recount(addr, &[]).await;
            for (k, v) in [("total_players", 1), ("held_seats", 0), ("connections", 2)] {
                assert_eq!(s[k], v, "{k} on {addr}: {s}");
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_outage_is_reported_and_the_nodes_recover() {
    within(TEST_LIMIT, "test", async {
        let mut redis = RedisServer::start();
        let (_node_a, a) = spawn_node(&redis.url(), "node-a", &[]);
        let (_node_b, b) = spawn_node(&redis.url(), "node-b", &[]);
        let ann = client_at_with(&a, "name=ann", no_reconnect())
            .await
            .unwrap();
        let early = client_at(&b, "early").await;
        early.create_room(json!({"max_players": 3})).await.unwrap();
        for addr in [&a, &b] {
            assert_eq!(health(addr).await, 200);
        }

        redis.kill();

        // A request that needs the store is answered, promptly, with
        // `internal` and a message saying why.
        let reply = within(
            Duration::from_secs(6),
            "find_match during the outage",
            ann.find_match(2, "duel", json!({})),
        )
        .await;
        let (code, message) = server_error(reply);
        assert_eq!(code, "internal", "{message}");
        let lower = message.to_lowercase();
        assert!(
            lower.contains("store") || lower.contains("redis"),
            "the message says the store is unavailable: {message:?}"
        );
        // New handshakes are refused with 503 and health says so.
        for addr in [&a, &b] {
            let addr = addr.as_str();
            eventually(
                Duration::from_secs(5),
                "503 during the outage",
                || async move {
                    match (probe(addr).await, probes(addr).await) {
                        // Refused before the upgrade, with the error shape
                        // of every refusal; not ready, but alive (a
                        // liveness probe must not restart the node).
                        (Err((503, body)), (503, 503, 200))
                            if body["error"]["code"].is_string()
                                && body["error"]["message"]
                                    .as_str()
                                    .is_some_and(|m| !m.is_empty()) =>
                        {
                            Ok(())
                        }
                        other => Err(format!(
                            "{addr}: handshake, (healthz, readyz, livez) = {other:?}"
                        )),
                    }
                },
            )
            .await;
        }

        redis.restart();

        for addr in [&a, &b] {
            let addr = addr.as_str();
            eventually(
                Duration::from_secs(10),
                "serving after Redis is back",
                || async move {
                    match (probes(addr).await, probe(addr).await) {
                        ((200, 200, 200), Ok(())) => Ok(()),
                        other => Err(format!(
                            "{addr}: (healthz, readyz, livez), handshake = {other:?}"
                        )),
                    }
                },
            )
            .await;
        }
        let cy = client_at(&a, "cy").await;
        let di = client_at(&b, "di").await;
        let (room, created) = cy.find_match(2, "after", json!({})).await.unwrap();
        assert!(created);
        let (joined, created) = di.find_match(2, "after", json!({})).await.unwrap();
        assert!(!created);
        assert_eq!(joined.room_id, room.room_id);
        for c in [&cy, &di] {
            let start = c.wait_for("game_start").await.unwrap();
            assert_eq!(start["room"]["room_id"], room.room_id.as_str());
        }
        let mut counts = Vec::new();
        for addr in [&a, &b] {
            let s = assert_stats_match_recount(addr, &[]).await;
            let total = s["total_rooms"].as_u64().unwrap();
            let parts = ["waiting_rooms", "active_rooms", "finished_rooms"]
                .map(|k| s[k].as_u64().unwrap())
                .iter()
                .sum::<u64>();
            assert_eq!(total, parts, "{addr}: {s}");
            // Redis came back empty: the lobby is exactly the one match
            // made since (the waiting room of before the outage is gone).
            for (k, v) in [
                ("total_rooms", 1),
                ("active_rooms", 1),
                ("waiting_rooms", 0),
                ("finished_rooms", 0),
                ("total_players", 2),
                ("players_waiting", 0),
            ] {
                assert_eq!(s[k], v, "{k} on {addr}: {s}");
            }
            let listed: Vec<Value> = rooms(addr, "active").await;
            let ids: Vec<&str> = listed
                .iter()
                .filter_map(|r| r["room_id"].as_str())
                .collect();
            assert_eq!(
                ids,
                [room.room_id.as_str()],
                "{addr} lists the new room only"
            );
            assert_eq!(rooms(addr, "waiting").await, Vec::<Value>::new(), "{addr}");
            counts.push(
                [
                    "total_rooms",
                    "waiting_rooms",
                    "active_rooms",
                    "total_players",
                ]
                .map(|k| s[k].clone()),
            );
        }
        assert_eq!(counts[0], counts[1], "both nodes count the same lobby");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stats_on_every_node_equal_a_recount_after_mixed_operations() {
    within(TEST_LIMIT, "test", async {
        let redis = RedisServer::start();
        let nodes: Vec<_> = ["n1", "n2", "n3"]
            .iter()
            .map(|id| spawn_node(&redis.url(), id, &[]))
            .collect();
        let addrs: Vec<&str> = nodes.iter().map(|(_, addr)| addr.as_str()).collect();
        let mut c = Vec::new();
        for i in 0..12 {
            c.push(client_at(addrs[i % 3], &format!("c{i}")).await);
        }

        // R1, waiting: created on n1, joined from n2 and n3.
        let r1 = c[0]
            .create_room(json!({"max_players": 4, "mode": "mix"}))
            .await
            .unwrap();
        c[1].join_room(&r1.room_id).await.unwrap();
        c[2].join_room(&r1.room_id).await.unwrap();
        // R2, started by its host with two of three seats taken.
        let r2 = c[3]
            .create_room(json!({"max_players": 3, "mode": "mix"}))
            .await
            .unwrap();
        c[4].join_room(&r2.room_id).await.unwrap();
        assert_eq!(c[3].start_game().await.unwrap().status.as_str(), "active");
        // R3, full (active), then finished.
        let r3 = c[5]
            .create_room(json!({"max_players": 2, "mode": "mix"}))
            .await
            .unwrap();
        assert_eq!(
            c[6].join_room(&r3.room_id).await.unwrap().status.as_str(),
            "active"
        );
        let done = c[5]
            .request(
                "finish_game",
                json!({"result": {"winner": c[6].player_id()}}),
            )
            .await
            .unwrap();
        assert_eq!(done["room"]["status"], "finished");
        // A leave, then find_match fills the seat in R1 from another node.
        c[1].leave_room().await.unwrap();
        let (m, created) = c[7].find_match(4, "mix", json!({})).await.unwrap();
        assert!(!created);
        assert_eq!(m.room_id, r1.room_id);
        // R4 is created and left: it is gone.
        let r4 = c[8].create_room(json!({"max_players": 2})).await.unwrap();
        c[8].leave_room().await.unwrap();
        // R5, waiting, made by find_match.
        let (r5, created) = c[9].find_match(2, "solo", json!({})).await.unwrap();
        assert!(created);
        // c10 stays in no room; c11 goes away.
        c[11].close().await;
        let open = 11u64;
        for addr in &addrs {
            eventually(
                Duration::from_secs(5),
                "the closed client is uncounted",
                || async move {
                    match stats(addr).await["connections"].as_u64() {
                        Some(n) if n == open => Ok(()),
                        other => Err(format!("{addr}: connections {other:?}")),
                    }
                },
            )
            .await;
        }

        for addr in &addrs {
            let s = assert_stats_match_recount(addr, &[r3.room_id.as_str()]).await;
            for (k, v) in [
                ("waiting_rooms", 2),
                ("active_rooms", 1),
                ("finished_rooms", 1),
                ("total_rooms", 4),
                ("total_players", 8),
                ("players_waiting", 4),
                ("connections", open),
            ] {
                assert_eq!(s[k], v, "{k} on {addr}: {s}");
            }
            let waiting: Vec<Value> = rooms(addr, "waiting").await;
            let ids: Vec<&str> = waiting
                .iter()
                .map(|r| r["room_id"].as_str().unwrap())
                .collect();
            assert_eq!(
                ids,
                [r1.room_id.as_str(), r5.room_id.as_str()],
                "oldest first"
            );
            assert_eq!(
                player_ids(&waiting[0]),
                [c[0].player_id(), c[2].player_id(), c[7].player_id()]
            );
            assert_eq!(
                get(addr, &format!("/api/rooms/{}", r4.room_id)).await.0,
                404
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resume_token_from_one_node_takes_the_seat_back_on_another() {
    within(TEST_LIMIT, "test", async {
        let redis = RedisServer::start();
        let grace = ["--reconnect-grace-ms", "5000"];
        let (_node_a, a) = spawn_node(&redis.url(), "node-a", &grace);
        let (_node_b, b) = spawn_node(&redis.url(), "node-b", &grace);
        let ann = client_at(&b, "ann").await;
        let bob = client_at_with(&a, "name=bob", no_reconnect())
            .await
            .unwrap();
        let room = ann.create_room(json!({"max_players": 3})).await.unwrap();
        bob.join_room(&room.room_id).await.unwrap();
        ann.wait_for("player_joined").await.unwrap();
        bob.wait_for("chat_history").await.unwrap();
        let token = bob.welcome.resume_token.clone();
        let bob_id = bob.player_id().to_string();

        bob.drop_connection();
        let ev = ann.wait_for("player_disconnected").await.unwrap();
        assert_eq!(ev["player_id"], bob_id.as_str());
        assert_eq!(ev["room_id"], room.room_id.as_str());

        let back = client_at_with(&b, &format!("name=bob&resume={token}"), no_reconnect())
            .await
            .unwrap();
        assert!(back.welcome.resumed, "the token of node A works on node B");
        assert_eq!(back.player_id(), bob_id);
        let held = back.welcome.room.as_ref().expect("the room comes back");
        assert_eq!(held.room_id, room.room_id);
        let ids: Vec<_> = held.players.iter().map(|p| p.player_id.as_str()).collect();
        assert_eq!(ids, [ann.player_id(), bob_id.as_str()]);
        let ev = ann.next_event().await.unwrap();
        assert_eq!(ev["type"], "player_reconnected", "{ev}");
        assert_eq!(ev["player_id"], bob_id.as_str());

        // The seat works from its new node.
        back.request("chat", json!({"text": "back"})).await.unwrap();
        let chat = ann.wait_for("chat").await.unwrap();
        assert_eq!(
            (chat["from"].as_str(), chat["text"].as_str()),
            (Some(bob_id.as_str()), Some("back"))
        );
        // The token was single-use in the whole cluster.
        let again = client_at_with(&a, &format!("name=bob&resume={token}"), no_reconnect())
            .await
            .unwrap();
        assert!(!again.welcome.resumed, "a used token gives a fresh session");
        assert_ne!(again.player_id(), bob_id);
        for addr in [&a, &b] {
            let (code, p) = get(addr, &format!("/api/players/{bob_id}")).await;
            assert_eq!(code, 200, "{p}");
            assert_eq!(p["connected"], true, "{addr}: {p}");
            assert_eq!(p["room_id"], room.room_id.as_str(), "{addr}: {p}");
            let s = stats(addr).await;
            assert_eq!(s["total_players"], 2, "{addr}: {s}");
            assert_eq!(s["held_seats"], 0, "{addr}: {s}");
            assert_eq!(s["connections"], 3, "{addr}: {s}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_missed_while_away_follow_the_resume_to_another_node() {
    within(TEST_LIMIT, "test", async {
        let redis = RedisServer::start();
        let grace = ["--reconnect-grace-ms", "5000"];
        let (_node_a, a) = spawn_node(&redis.url(), "node-a", &grace);
        let (_node_b, b) = spawn_node(&redis.url(), "node-b", &grace);
        let ann = client_at(&b, "ann").await;
        let bob = client_at_with(&a, "name=bob", no_reconnect()).await.unwrap();
        let room = ann.create_room(json!({"max_players": 3})).await.unwrap();
        bob.join_room(&room.room_id).await.unwrap();
        ann.wait_for("player_joined").await.unwrap();
        bob.wait_for("chat_history").await.unwrap();
        let token = bob.welcome.resume_token.clone();
        let bob_id = bob.player_id().to_string();
        bob.drop_connection();
        ann.wait_for("player_disconnected").await.unwrap();

        let cand = json!({"candidate": CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": null});
        ann.request("offer", json!({"to": bob_id, "sdp": OFFER}))
            .await
            .unwrap();
        ann.request("ice_candidate", json!({"to": bob_id, "candidate": cand}))
            .await
            .unwrap();
        ann.request("chat", json!({"text": "where did you go?"}))
            .await
            .unwrap();

        let back = client_at_with(&b, &format!("name=bob&resume={token}"), no_reconnect())
            .await
            .unwrap();
        assert!(back.welcome.resumed);
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(back.next_event().await.unwrap());
        }
        let kinds: Vec<&str> = got.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["offer", "ice_candidate", "chat"], "in order: {got:?}");
        assert_eq!(got[0]["from"], ann.player_id());
        assert_eq!(got[0]["sdp"].as_str(), Some(OFFER));
        assert_eq!(got[1]["candidate"], cand);
        assert_eq!(got[2]["text"], "where did you go?");
        expect_no_event(&back, QUIET).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_graceful_shutdown_hands_the_players_over_to_another_node() {
    within(TEST_LIMIT, "test", async {
        let redis = RedisServer::start();
        let grace = ["--reconnect-grace-ms", "5000"];
        let (_node_a, a) = spawn_node(&redis.url(), "node-a", &grace);
        let (node_b, b) = spawn_node(&redis.url(), "node-b", &grace);
        let ann = client_at(&a, "ann").await;
        let bob = client_at_with(&b, "name=bob", no_reconnect())
            .await
            .unwrap();
        let room = ann.create_room(json!({"max_players": 2})).await.unwrap();
        bob.join_room(&room.room_id).await.unwrap();
        ann.wait_for("game_start").await.unwrap();
        let token = bob.welcome.resume_token.clone();
        let bob_id = bob.player_id().to_string();

        // SIGTERM: bob is told, his socket closes with 1001, his seat is held.
        node_b.terminate();
        let notice = bob.wait_for("server_shutdown").await.unwrap();
        assert!(notice["reconnect_after_ms"].is_u64(), "{notice}");
        let close = bob.wait_closed(Duration::from_secs(5)).await.unwrap();
        assert_eq!(close.map(|c| c.code), Some(1001));
        let ev = ann.wait_for("player_disconnected").await.unwrap();
        assert_eq!(ev["player_id"], bob_id.as_str());
        let s = stats(&a).await;
        assert_eq!(
            (
                s["total_players"].as_u64(),
                s["held_seats"].as_u64(),
                s["connections"].as_u64()
            ),
            (Some(2), Some(1), Some(1)),
            "{s}"
        );

        // Bob comes back through the surviving node and keeps his seat.
        let back = client_at_with(&a, &format!("name=bob&resume={token}"), no_reconnect())
            .await
            .unwrap();
        assert!(back.welcome.resumed);
        assert_eq!(back.player_id(), bob_id);
        assert_eq!(
            back.welcome.room.as_ref().map(|r| r.room_id.as_str()),
            Some(room.room_id.as_str())
        );
        let ev = ann.wait_for("player_reconnected").await.unwrap();
        assert_eq!(ev["player_id"], bob_id.as_str());
        back.request("offer", json!({"to": ann.player_id(), "sdp": OFFER}))
            .await
            .unwrap();
        let offer = ann.wait_for("offer").await.unwrap();
        assert_eq!(offer["from"], bob_id.as_str());
        let s = stats(&a).await;
        assert_eq!(
            (
                s["total_players"].as_u64(),
                s["held_seats"].as_u64(),
                s["connections"].as_u64()
            ),
            (Some(2), Some(0), Some(2)),
            "{s}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_dies_while_redis_is_frozen_is_cleaned_up_when_redis_is_back() {
    within(TEST_LIMIT, "test", async {
        let redis = RedisServer::start();
        let timing = ["--node-ttl-ms", "1000", "--reconnect-grace-ms", "1000"];
        let (_node_a, a) = spawn_node(&redis.url(), "node-a", &timing);
        let (mut node_b, b) = spawn_node(&redis.url(), "node-b", &timing);
        let ann = client_at(&a, "ann").await;
        let bob = client_at_with(&b, "name=bob", no_reconnect())
            .await
            .unwrap();
        let room = ann.create_room(json!({"max_players": 3})).await.unwrap();
        bob.join_room(&room.room_id).await.unwrap();
        ann.wait_for("player_joined").await.unwrap();
        let bob_id = bob.player_id().to_string();

        // Redis freezes (its data intact), and node B dies meanwhile.
        redis.signal("STOP");
        node_b.kill9();
        eventually(
            Duration::from_secs(10),
            "node A reports the store",
            || async {
                match health(&a).await {
                    503 => Ok(()),
                    other => Err(format!("healthz {other}")),
                }
            },
        )
        .await;
        let err = ann.request("chat", json!({"text": "anyone?"})).await;
        let (code, message) = server_error(err);
        assert_eq!(code, "internal");
        assert!(message.contains("store"), "{message}");

        // Redis is back with its data: node A serves again, sees that node B
        // is gone, holds Bob's seat and gives it up after the grace.
        redis.signal("CONT");
        let limit = Duration::from_secs(10);
        let ev = wait_event(&ann, "player_disconnected", limit).await;
        assert_eq!(ev["player_id"], bob_id.as_str());
        let ev = wait_event(&ann, "player_left", limit).await;
        assert_eq!(ev["player_id"], bob_id.as_str());
        assert_eq!(ev["reason"], "timeout");
        assert_eq!(health(&a).await, 200);
        let s = assert_stats_match_recount(&a, &[]).await;
        assert_eq!(
            (
                s["total_players"].as_u64(),
                s["held_seats"].as_u64(),
                s["connections"].as_u64()
            ),
            (Some(1), Some(0), Some(1)),
            "{s}"
        );
        // The lobby serves: ann's room takes a new player.
        let cat = client_at(&a, "cat").await;
        cat.join_room(&room.room_id).await.unwrap();
    })
    .await;
}
