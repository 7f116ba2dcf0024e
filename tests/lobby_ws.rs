//! The lobby through the real WebSocket interface: matchmaking, rooms, host
//! rules, errors, disconnects and stats, against a server on 127.0.0.1:0.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const SHORT: Duration = Duration::from_millis(300);

#[tokio::test]
async fn two_players_pair_and_both_get_game_start() {
    let ts = TestServer::start().await;
    let ann = ts.client("ann").await;
    let bob = ts.client("bob").await;

    let (room, created) = ann.find_match(2, "default", json!({})).await.unwrap();
    assert!(created);
    assert_eq!(room.status.as_str(), "waiting");
    assert_eq!(room.host.as_deref(), Some(ann.player_id()));
    assert_eq!(
        ann.wait_for("chat_history").await.unwrap()["messages"],
        json!([])
    );

    let (room2, created2) = bob.find_match(2, "default", json!({})).await.unwrap();
    assert!(!created2);
    assert_eq!(room2.room_id, room.room_id);
    assert_eq!(room2.status.as_str(), "active", "a full room is active");
    let ids: Vec<_> = room2.players.iter().map(|p| p.player_id.as_str()).collect();
    assert_eq!(
        ids,
        [ann.player_id(), bob.player_id()],
        "players in join order"
    );

    let joined = ann.next_event().await.unwrap();
    assert_eq!(joined["type"], "player_joined");
    assert_eq!(joined["player"]["player_id"], bob.player_id());
    assert_eq!(joined["player"]["name"], "bob");
    let status = ann.next_event().await.unwrap();
    assert_eq!(status["type"], "room_status");
    assert_eq!(status["status"], "active");
    for c in [&ann, &bob] {
        let start = c.wait_for("game_start").await.unwrap();
        assert_eq!(start["room"]["room_id"], room.room_id.as_str());
        assert_eq!(start["room"]["status"], "active");
        assert_eq!(start["room"]["players"].as_array().unwrap().len(), 2);
        assert_eq!(start["room"]["players"][0]["player_id"], ann.player_id());
    }
    let s = ts.stats().await;
    assert_eq!(s["active_rooms"], 1);
    assert_eq!(s["total_rooms"], 1);
    assert_eq!(s["total_players"], 2);
    assert_eq!(s["players_waiting"], 0);
    assert_eq!(s["matches_started"], 1);
    assert_eq!(s["connections"], 2);
    ts.stop().await;
}

#[tokio::test]
async fn modes_sizes_and_filters_never_mix() {
    let ts = TestServer::start().await;
    let mut clients = Vec::new();
    for i in 0..8 {
        clients.push(ts.client(&format!("p{i}")).await);
    }
    let (r0, c0) = clients[0].find_match(2, "duel", json!({})).await.unwrap();
    let (r1, c1) = clients[1].find_match(2, "race", json!({})).await.unwrap();
    let (r2, c2) = clients[2].find_match(3, "duel", json!({})).await.unwrap();
    let (r3, c3) = clients[3]
        .find_match(2, "duel", json!({"map": "moon", "ranked": true}))
        .await
        .unwrap();
    assert!(
        c0 && c1 && c2 && c3,
        "different mode, size or filters each make a room"
    );
    assert_eq!(
        r3.data,
        json!({"map": "moon", "ranked": true})
            .as_object()
            .unwrap()
            .clone()
    );
    // Same filters (a subset of the room's data is enough) join the filtered room.
    let (r4, c4) = clients[4]
        .find_match(2, "duel", json!({"map": "moon"}))
        .await
        .unwrap();
    assert!(!c4);
    assert_eq!(r4.room_id, r3.room_id);
    // A filter value of another JSON type does not match ("1" is not 1).
    let (r5, c5) = clients[5]
        .find_match(2, "race", json!({"level": "1"}))
        .await
        .unwrap();
    assert!(c5);
    let (r6, c6) = clients[6]
        .find_match(2, "race", json!({"level": 1}))
        .await
        .unwrap();
    assert!(c6, "level 1 must not join the room with level \"1\"");
    assert_ne!(r5.room_id, r6.room_id);
    // No filters: the oldest room of the mode and size.
    let (r7, c7) = clients[7].find_match(2, "duel", json!({})).await.unwrap();
    assert!(!c7);
    assert_eq!(r7.room_id, r0.room_id);
    assert_ne!(r1.room_id, r2.room_id);
    for r in [&r0, &r1, &r2, &r3, &r5, &r6] {
        let (_, room) = http_get(&ts.http(&format!("/api/rooms/{}", r.room_id))).await;
        assert!(
            room["players"].as_array().unwrap().len() as u64
                <= room["max_players"].as_u64().unwrap()
        );
    }
    ts.server.app.check_invariants().await.unwrap();
    ts.stop().await;
}

#[tokio::test]
async fn find_match_takes_the_oldest_open_room() {
    let ts = TestServer::start().await;
    let a = ts.client("a").await;
    let b = ts.client("b").await;
    let c = ts.client("c").await;
    let r1 = a.create_room(json!({"max_players": 3})).await.unwrap();
    let r2 = b.create_room(json!({"max_players": 3})).await.unwrap();
    let _r3 = c.create_room(json!({"max_players": 3})).await.unwrap();
    let d = ts.client("d").await;
    let e = ts.client("e").await;
    let f = ts.client("f").await;
    assert_eq!(
        d.find_match(3, "default", json!({}))
            .await
            .unwrap()
            .0
            .room_id,
        r1.room_id
    );
    let (full, _) = e.find_match(3, "default", json!({})).await.unwrap();
    assert_eq!(full.room_id, r1.room_id);
    assert_eq!(full.status.as_str(), "active");
    assert_eq!(
        f.find_match(3, "default", json!({}))
            .await
            .unwrap()
            .0
            .room_id,
        r2.room_id
    );
    ts.stop().await;
}

#[tokio::test]
async fn private_rooms_are_joined_by_code_only() {
    let ts = TestServer::start().await;
    let ann = ts.client("ann").await;
    let bob = ts.client("bob").await;
    let cat = ts.client("cat").await;
    let room = ann
        .create_room(json!({"private": true, "max_players": 3, "data": {"map": "x"}}))
        .await
        .unwrap();
    let code = room.code.clone().expect("members see the code");
    assert_eq!(code.len(), 6);
    assert!(
        code.bytes()
            .all(|b| rendezvous::lobby::CODE_ALPHABET.contains(&b)),
        "{code}"
    );
    assert_eq!(room.visibility, rendezvous::protocol::Visibility::Private);

    // Not listed, not matched.
    let list = bob.request("list_rooms", json!({})).await.unwrap();
    assert_eq!(list["rooms"], json!([]));
    let (m, created) = bob
        .find_match(3, "default", json!({"map": "x"}))
        .await
        .unwrap();
    assert!(created && m.room_id != room.room_id);
    bob.leave_room().await.unwrap();

    assert_code(cat.join_code("ZZZZZZ").await, "room_not_found");
    let joined = cat.join_code(&code.to_lowercase()).await.unwrap();
    assert_eq!(joined.room_id, room.room_id);
    assert_eq!(joined.code.as_deref(), Some(code.as_str()));
    // Outsiders never see the code.
    let (status, api) = http_get(&ts.http(&format!("/api/rooms/{}", room.room_id))).await;
    assert_eq!(status, 200);
    // The body is this room's JSON (an unparsable body has no `code` either).
    assert_eq!(api["room_id"], room.room_id.as_str(), "{api}");
    assert_eq!(api["visibility"], "private", "{api}");
    assert!(api.get("code").is_none(), "{api}");
    ts.stop().await;
}

#[tokio::test]
async fn join_codes_are_unique_among_live_rooms() {
    let ts = TestServer::start().await;
    let mut codes = std::collections::HashSet::new();
    let mut clients = Vec::new();
    for i in 0..60 {
        let c = ts.client(&format!("c{i}")).await;
        let r = c.create_room(json!({"private": i % 2 == 0})).await.unwrap();
        assert!(codes.insert(r.code.unwrap()), "duplicate code");
        clients.push(c);
    }
    ts.stop().await;
}

#[tokio::test]
async fn host_rules_kick_and_handover() {
    let ts = TestServer::start().await;
    let ann = ts.client("ann").await;
    let bob = ts.client("bob").await;
    let cat = ts.client("cat").await;
    let room = ann.create_room(json!({"max_players": 4})).await.unwrap();
    assert_code(ann.start_game().await, "not_enough_players");
    bob.join_room(&room.room_id).await.unwrap();
    cat.join_room(&room.room_id).await.unwrap();

    assert_code(bob.start_game().await, "not_host");
    assert_code(
        bob.request("set_room_data", json!({"data": {"a": 1}}))
            .await,
        "not_host",
    );
    assert_code(
        bob.request("kick", json!({"player_id": cat.player_id()}))
            .await,
        "not_host",
    );
    assert_code(
        ann.request("finish_game", json!({})).await,
        "room_not_active",
    );
    assert_code(
        ann.request("kick", json!({"player_id": "p_nobody"})).await,
        "peer_not_found",
    );

    // Room and player data reach every member.
    ann.request("set_room_data", json!({"data": {"map": "moon"}}))
        .await
        .unwrap();
    let ev = cat.wait_for("room_data").await.unwrap();
    assert_eq!(ev["data"], json!({"map": "moon"}));
    let r = bob
        .request("set_player_data", json!({"data": {"ready": true}}))
        .await
        .unwrap();
    assert_eq!(r["room"]["players"][1]["data"], json!({"ready": true}));
    let ev = ann.wait_for("player_data").await.unwrap();
    assert_eq!(ev["player_id"], bob.player_id());
    assert_eq!(ev["data"], json!({"ready": true}));

    // Kick: the kicked player is told, the others see player_left(kicked),
    // and the kicked player may not come back.
    ann.request("kick", json!({"player_id": cat.player_id()}))
        .await
        .unwrap();
    let k = cat.wait_for("kicked").await.unwrap();
    assert_eq!(k["room_id"], room.room_id.as_str());
    let left = bob.wait_for("player_left").await.unwrap();
    assert_eq!(left["player_id"], cat.player_id());
    assert_eq!(left["reason"], "kicked");
    assert_code(cat.join_room(&room.room_id).await, "forbidden");
    // Nor be matched back into it.
    let (other, created) = cat.find_match(4, "default", json!({})).await.unwrap();
    assert!(created && other.room_id != room.room_id);

    // Host leaves: the next in join order becomes host.
    ann.leave_room().await.unwrap();
    let left = bob.wait_for("player_left").await.unwrap();
    assert_eq!(left["reason"], "left");
    let hc = bob.wait_for("host_changed").await.unwrap();
    assert_eq!(hc["host"], bob.player_id());
    assert_code(ann.leave_room().await, "not_in_room");
    ts.stop().await;
}

#[tokio::test]
async fn start_and_finish_move_status_forward_only() {
    let ts = TestServer::start().await;
    let ann = ts.client("ann").await;
    let bob = ts.client("bob").await;
    let room = ann.create_room(json!({"max_players": 4})).await.unwrap();
    bob.join_room(&room.room_id).await.unwrap();
    let started = ann.start_game().await.unwrap();
    assert_eq!(started.status.as_str(), "active");
    let gs = bob.wait_for("game_start").await.unwrap();
    assert_eq!(gs["room"]["status"], "active");
    assert_code(ann.start_game().await, "room_not_waiting");
    let cat = ts.client("cat").await;
    assert_code(cat.join_room(&room.room_id).await, "room_not_waiting");

    let fin = ann
        .request(
            "finish_game",
            json!({"result": {"winner": bob.player_id()}}),
        )
        .await
        .unwrap();
    assert_eq!(fin["room"]["status"], "finished");
    let st = bob.wait_for("room_status").await.unwrap();
    assert_eq!(st["status"], "finished");
    assert_eq!(st["result"]["winner"], bob.player_id());
    assert_code(ann.start_game().await, "room_not_waiting");
    assert_code(
        ann.request("finish_game", json!({})).await,
        "room_not_active",
    );
    let s = ts.stats().await;
    assert_eq!(
        (s["finished_rooms"].as_u64(), s["total_rooms"].as_u64()),
        (Some(1), Some(1))
    );
    ts.stop().await;
}

#[tokio::test]
async fn finished_rooms_expire_after_their_ttl() {
    const TTL: Duration = Duration::from_millis(2000);
    let ts = TestServer::with_args(&["--finished-room-ttl-ms", "2000"]).await;
    let ann = ts.client("ann").await;
    let bob = ts.client("bob").await;
    let (room, _) = ann.find_match(2, "default", json!({})).await.unwrap();
    bob.find_match(2, "default", json!({})).await.unwrap();
    ann.request("finish_game", json!({})).await.unwrap();
    let finished_at = Instant::now();
    // Before the TTL: the finished room and its players are still there.
    let (st, api) = http_get(&ts.http(&format!("/api/rooms/{}", room.room_id))).await;
    assert_eq!(
        (st, api["status"].as_str()),
        (200, Some("finished")),
        "{api}"
    );
    let s = ts.stats().await;
    assert_eq!(
        (s["finished_rooms"].as_u64(), s["total_players"].as_u64()),
        (Some(1), Some(2)),
        "{s}"
    );
    assert!(
        finished_at.elapsed() < TTL / 2,
        "checked well before the TTL"
    );
    let mut seen = Vec::new();
    for _ in 0..2 {
        let ev = bob.wait_for("player_left").await.unwrap();
        // Not closed at once: only when the TTL is over (timers never fire
        // early; the slack covers the reply's trip).
        assert!(
            finished_at.elapsed() >= TTL - Duration::from_millis(300),
            "closed after {:?}",
            finished_at.elapsed()
        );
        assert_eq!(ev["reason"], "closed");
        seen.push(ev["player_id"].as_str().unwrap().to_string());
    }
    seen.sort();
    let mut want = vec![ann.player_id().to_string(), bob.player_id().to_string()];
    want.sort();
    assert_eq!(seen, want);
    wait_stats(&ts, |s| s["total_rooms"] == 0 && s["total_players"] == 0).await;
    let (st, _) = http_get(&ts.http(&format!("/api/rooms/{}", room.room_id))).await;
    assert_eq!(st, 404, "gone after the TTL");
    // Both are free to play again.
    ann.find_match(2, "default", json!({})).await.unwrap();
    ts.stop().await;
}

#[tokio::test]
async fn errors_carry_the_protocol_codes() {
    let ts = TestServer::start().await;
    let ann = ts.client("ann").await;
    let bob = ts.client("bob").await;
    let cat = ts.client("cat").await;
    assert_code(ann.leave_room().await, "not_in_room");
    assert_code(ann.start_game().await, "not_in_room");
    assert_code(
        ann.request("chat", json!({"text": "hi"})).await,
        "not_in_room",
    );
    assert_code(
        ann.request("set_player_data", json!({"data": {}})).await,
        "not_in_room",
    );
    assert_code(
        ann.join_room("7b1c9a52-0000-4000-8000-000000000000").await,
        "room_not_found",
    );
    assert_code(ann.join_room("not-a-uuid").await, "room_not_found");
    assert_code(ann.request("join_room", json!({})).await, "bad_request");
    for bad in [
        json!(1),
        json!(17),
        json!(0),
        json!(-3),
        json!("2"),
        json!(2.5),
    ] {
        assert_code(
            ann.request("find_match", json!({"max_players": bad})).await,
            "bad_request",
        );
    }
    assert_code(
        ann.request("find_match", json!({"filters": {"x": [1]}}))
            .await,
        "bad_request",
    );
    assert_code(
        ann.request("find_match", json!({"mode": ""})).await,
        "bad_request",
    );
    assert_code(
        ann.request("find_match", json!({"mode": "m".repeat(65)}))
            .await,
        "bad_request",
    );

    let room = ann.create_room(json!({"max_players": 2})).await.unwrap();
    assert_code(ann.create_room(json!({})).await, "already_in_room");
    assert_code(
        ann.find_match(2, "default", json!({})).await,
        "already_in_room",
    );
    assert_code(
        ann.request("chat", json!({"text": ""})).await,
        "bad_request",
    );
    assert_code(
        ann.request("chat", json!({"text": "x".repeat(501)})).await,
        "bad_request",
    );
    assert_code(ann.request("chat", json!({"text": 5})).await, "bad_request");
    bob.join_room(&room.room_id).await.unwrap();
    assert_code(cat.join_room(&room.room_id).await, "room_full");
    // A started room with a free seat is not waiting any more.
    bob.leave_room().await.unwrap();
    assert_code(cat.join_room(&room.room_id).await, "room_not_waiting");
    assert_code(
        ann.request("kick", json!({"player_id": ann.player_id()}))
            .await,
        "bad_request",
    );
    ts.server.app.check_invariants().await.unwrap();
    ts.stop().await;
}

#[tokio::test]
async fn malformed_frames_get_errors_and_the_connection_stays() {
    let ts = TestServer::start().await;
    let c = ts.client("ann").await;
    let cases: Vec<(&str, &str, Value)> = vec![
        ("not json", "bad_request", Value::Null),
        ("[1,2]", "bad_request", Value::Null),
        ("42", "bad_request", Value::Null),
        ("{}", "bad_request", Value::Null),
        (r#"{"rid": 9}"#, "bad_request", json!(9)),
        (r#"{"type": 7, "rid": "s"}"#, "bad_request", json!("s")),
        (r#"{"type": "warp", "rid": 3}"#, "unknown_type", json!(3)),
        (r#"{"type": "find_match", "rid": "x1", "max_players": "two"}"#, "bad_request", json!("x1")),
        (r#"{"type": "kick", "rid": 4}"#, "bad_request", json!(4)),
        (r#"{"type": "ping", "rid": 1.5}"#, "bad_request", Value::Null),
        (r#"{"type": "ping", "rid": {"a": 1}}"#, "bad_request", Value::Null),
        ("{\"type\": \"ping\", \"rid\": \"1234567890123456789012345678901234567890123456789012345678901234567890\"}", "bad_request", Value::Null),
        (r#"{"type": "find_match", "rid": 5, "max_players": 1e400}"#, "bad_request", json!(5)),
        ("", "bad_request", Value::Null),
    ];
    for (frame, code, rid) in &cases {
        c.send_text(*frame).await.unwrap();
        let ev = c.next_event().await.unwrap();
        assert_eq!(ev["type"], "error", "{frame}");
        assert_eq!(ev["code"], *code, "{frame}: {ev}");
        assert_eq!(ev["rid"], *rid, "{frame}: {ev}");
        assert!(ev["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Deep nesting is refused without a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    c.send_text(format!(r#"{{"type":"ping","rid":1,"x":{deep}}}"#))
        .await
        .unwrap();
    let ev = c.next_event().await.unwrap();
    assert_eq!(ev["code"], "payload_too_large");
    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    // In a field the request reads: refused by the parser's depth limit.
    c.send_text(format!(
        r#"{{"type":"set_player_data","rid":1,"data":{{"x":{deep}}}}}"#
    ))
    .await
    .unwrap();
    let ev = c.next_event().await.unwrap();
    assert_eq!(
        (ev["code"].as_str(), ev["rid"].as_i64()),
        (Some("bad_request"), Some(1))
    );
    // In an unknown field: skipped without recursion, like any extra field.
    c.send_text(format!(r#"{{"type":"ping","rid":2,"x":{deep}}}"#))
        .await
        .unwrap();
    let ev = c.next_event().await.unwrap();
    assert_eq!(
        (ev["type"].as_str(), ev["rid"].as_i64()),
        (Some("ok"), Some(2))
    );
    // Binary frames are not part of v1.
    c.send_frame(tokio_tungstenite::tungstenite::Message::Binary(
        vec![1, 2, 3].into(),
    ))
    .await
    .unwrap();
    let ev = c.next_event().await.unwrap();
    assert_eq!(
        (ev["type"].as_str(), ev["code"].as_str()),
        (Some("error"), Some("bad_request"))
    );
    // Extra fields are ignored; the connection still answers.
    let pong = c
        .request("ping", json!({"whatever": [1, 2]}))
        .await
        .unwrap();
    assert!(pong["server_time"].as_str().unwrap().ends_with('Z'));
    ts.stop().await;
}

#[tokio::test]
async fn replies_echo_rid_and_come_in_order() {
    let ts = TestServer::start().await;
    let c = ts.client("ann").await;
    for i in 0..20 {
        c.send_text(json!({"type": "ping", "rid": format!("r{i}")}).to_string())
            .await
            .unwrap();
    }
    c.send_text(r#"{"type":"ping"}"#).await.unwrap();
    for i in 0..20 {
        let ev = c.next_event().await.unwrap();
        assert_eq!(ev["type"], "ok");
        assert_eq!(ev["rid"], format!("r{i}"));
    }
    assert_eq!(c.next_event().await.unwrap()["rid"], Value::Null);
    ts.stop().await;
}

#[tokio::test]
async fn concurrent_find_match_fills_exactly_fifty_rooms_of_four() {
    let ts = TestServer::start().await;
    let mut clients = Vec::new();
    for i in 0..200 {
        clients.push(std::sync::Arc::new(ts.client(&format!("p{i}")).await));
    }
    let mut tasks = Vec::new();
    for c in &clients {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.find_match(4, "default", json!({}))
                .await
                .unwrap()
                .0
                .room_id
        }));
    }
    let mut per_room: HashMap<String, usize> = HashMap::new();
    for t in tasks {
        *per_room.entry(t.await.unwrap()).or_default() += 1;
    }
    assert_eq!(per_room.len(), 50, "{per_room:?}");
    assert!(per_room.values().all(|n| *n == 4));
    let s = ts.stats().await;
    assert_eq!(s["active_rooms"], 50);
    assert_eq!(s["waiting_rooms"], 0);
    assert_eq!(s["total_players"], 200);
    assert_eq!(s["matches_started"], 50);
    for c in &clients {
        let gs = c.wait_for("game_start").await.unwrap();
        assert_eq!(gs["room"]["players"].as_array().unwrap().len(), 4);
    }
    ts.server.app.check_invariants().await.unwrap();
    ts.stop().await;
}

#[tokio::test]
async fn a_dropped_player_keeps_its_seat_then_times_out() {
    // Long enough for the checks below on a busy machine; they run while
    // the seat is held, and the test asserts they did.
    const GRACE: Duration = Duration::from_millis(3000);
    let ts = TestServer::with_args(&["--reconnect-grace-ms", "3000"]).await;
    let ann = ts.client("ann").await;
    let bob = ts.client("bob").await;
    let room = ann.create_room(json!({"max_players": 3})).await.unwrap();
    bob.join_room(&room.room_id).await.unwrap();
    let bob_id = bob.player_id().to_string();
    let dropped_at = Instant::now();
    bob.close().await;
    drop(bob);
    let ev = ann.wait_for("player_disconnected").await.unwrap();
    assert_eq!(ev["player_id"], bob_id.as_str());
    let (_, api) = http_get(&ts.http(&format!("/api/rooms/{}", room.room_id))).await;
    assert_eq!(api["players"][1]["player_id"], bob_id.as_str(), "{api}");
    assert_eq!(api["players"][1]["connected"], false, "{api}");
    wait_stats(&ts, |s| s["total_players"] == 2 && s["held_seats"] == 1).await;
    let (st, presence) = http_get(&ts.http(&format!("/api/players/{bob_id}"))).await;
    assert_eq!(st, 200);
    assert_eq!(presence["connected"], false);
    assert_eq!(presence["room_id"], room.room_id.as_str());
    assert!(
        dropped_at.elapsed() < GRACE - Duration::from_millis(500),
        "the held-seat checks ran within the grace ({:?})",
        dropped_at.elapsed()
    );

    let left = ann.wait_for("player_left").await.unwrap();
    assert_eq!(left["player_id"], bob_id.as_str());
    assert_eq!(left["reason"], "timeout");
    assert!(dropped_at.elapsed() >= GRACE - Duration::from_millis(300));
    wait_stats(&ts, |s| s["total_players"] == 1 && s["held_seats"] == 0).await;
    let (st, _) = http_get(&ts.http(&format!("/api/players/{bob_id}"))).await;
    assert_eq!(st, 404);
    ts.stop().await;
}

#[tokio::test]
async fn everyone_disconnecting_empties_the_lobby() {
    let ts = TestServer::with_args(&["--reconnect-grace-ms", "200"]).await;
    let mut clients = Vec::new();
    for i in 0..30 {
        let c = ts.client(&format!("p{i}")).await;
        match i % 3 {
            0 => {
                c.find_match(4, "default", json!({"i": i % 2}))
                    .await
                    .unwrap();
            }
            1 => {
                c.create_room(json!({"private": true, "data": {"k": "v"}}))
                    .await
                    .unwrap();
            }
            _ => {
                c.request("chat", json!({"text": "x"})).await.ok();
            }
        }
        clients.push(c);
    }
    let s = ts.stats().await;
    assert_eq!(s["connections"], 30);
    for c in &clients {
        c.close().await;
    }
    drop(clients);
    let s = wait_stats(&ts, |s| s["connections"] == 0 && s["total_players"] == 0).await;
    assert_eq!(s["total_rooms"], 0);
    let left = ts.server.app.footprint().await.unwrap();
    assert!(left.is_empty(), "nothing left behind: {left:?}");
    ts.stop().await;
}

#[tokio::test]
async fn chat_reaches_members_and_history_greets_joiners() {
    let ts = TestServer::start().await;
    let ann = ts.client("ann").await;
    let bob = ts.client("bob").await;
    let room = ann.create_room(json!({"max_players": 3})).await.unwrap();
    for i in 0..25 {
        ann.request("chat", json!({"text": format!("line {i}")}))
            .await
            .unwrap();
    }
    let own = ann.wait_for("chat").await.unwrap();
    assert_eq!(own["text"], "line 0");
    assert_eq!(own["from"], ann.player_id());
    assert_eq!(own["name"], "ann");
    bob.join_room(&room.room_id).await.unwrap();
    let hist = bob.wait_for("chat_history").await.unwrap();
    let msgs = hist["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 20, "the last 20 lines");
    assert_eq!(msgs[0]["text"], "line 5");
    assert_eq!(msgs[19]["text"], "line 24");
    bob.request("chat", json!({"text": "héllo 👋"}))
        .await
        .unwrap();
    let ev = bob.wait_for("chat").await.unwrap();
    assert_eq!(ev["text"], "héllo 👋");
    assert!(ev["ts"].as_str().unwrap().ends_with('Z'));
    ts.stop().await;
}

#[tokio::test]
async fn list_rooms_shows_public_rooms_oldest_first() {
    let ts = TestServer::start().await;
    let a = ts.client("a").await;
    let b = ts.client("b").await;
    let c = ts.client("c").await;
    let d = ts.client("d").await;
    let ra = a
        .create_room(json!({"max_players": 4, "mode": "x"}))
        .await
        .unwrap();
    let _rb = b
        .create_room(json!({"max_players": 4, "private": true}))
        .await
        .unwrap();
    let rc = c
        .create_room(json!({"max_players": 4, "mode": "y"}))
        .await
        .unwrap();
    let list = d.request("list_rooms", json!({})).await.unwrap();
    let ids: Vec<_> = list["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["room_id"].clone())
        .collect();
    assert_eq!(ids, [json!(ra.room_id), json!(rc.room_id)]);
    assert!(
        list["rooms"][0].get("code").is_none(),
        "no code for outsiders"
    );
    let list = d.request("list_rooms", json!({"mode": "y"})).await.unwrap();
    assert_eq!(list["rooms"].as_array().unwrap().len(), 1);
    let list = d.request("list_rooms", json!({"limit": 1})).await.unwrap();
    assert_eq!(list["rooms"][0]["room_id"], ra.room_id.as_str());
    let list = d
        .request("list_rooms", json!({"status": "active"}))
        .await
        .unwrap();
    assert_eq!(list["rooms"], json!([]));
    assert_code(
        d.request("list_rooms", json!({"status": "done"})).await,
        "bad_request",
    );
    let (_, http) = http_get(&ts.http("/api/rooms?mode=x")).await;
    assert_eq!(http["rooms"][0]["room_id"], ra.room_id.as_str());
    let (st, _) = http_get(&ts.http("/api/rooms?limit=9999")).await;
    assert_eq!(st, 400);
    ts.stop().await;
}

#[tokio::test]
async fn stats_subscription_pushes_until_unsubscribed() {
    let ts = TestServer::start().await;
    let dash = ts.client("dash").await;
    assert_code(
        dash.request("subscribe_stats", json!({"interval_ms": 100}))
            .await,
        "bad_request",
    );
    let r = dash
        .request("subscribe_stats", json!({"interval_ms": 250}))
        .await
        .unwrap();
    assert_eq!(r["stats"]["connections"], 1);
    let p = ts.client("p").await;
    p.find_match(2, "default", json!({})).await.unwrap();
    let ev = dash.wait_for("stats").await.unwrap();
    let ev = if ev["stats"]["waiting_rooms"] == 1 {
        ev
    } else {
        dash.wait_for("stats").await.unwrap()
    };
    assert_eq!(ev["stats"]["waiting_rooms"], 1);
    assert_eq!(ev["stats"]["players_waiting"], 1);
    assert_eq!(ev["stats"]["connections"], 2);
    dash.request("unsubscribe_stats", json!({})).await.unwrap();
    // Drain anything pushed before the reply, then expect silence.
    while dash
        .next_event_within(Duration::from_millis(50))
        .await
        .is_ok()
    {}
    expect_no_event(&dash, Duration::from_millis(600)).await;
    ts.stop().await;
}

#[tokio::test]
async fn no_events_leak_to_other_rooms() {
    let ts = TestServer::start().await;
    let a = ts.client("a").await;
    let b = ts.client("b").await;
    let outsider = ts.client("o").await;
    outsider
        .create_room(json!({"max_players": 2, "mode": "other"}))
        .await
        .unwrap();
    outsider.wait_for("chat_history").await.unwrap();
    let room = a.create_room(json!({"max_players": 3})).await.unwrap();
    b.join_room(&room.room_id).await.unwrap();
    a.request("chat", json!({"text": "secret"})).await.unwrap();
    a.request("set_room_data", json!({"data": {"k": 1}}))
        .await
        .unwrap();
    b.leave_room().await.unwrap();
    expect_no_event(&outsider, SHORT).await;
    ts.stop().await;
}

/// Backfill (1.1): an active room made with `backfill` that loses a player
/// is offered to `find_match` before waiting rooms, even older ones; the
/// newcomer gets the active room, the members `player_joined`, and nobody a
/// second `game_start`. A room without `backfill` is never refilled.
#[tokio::test]
async fn backfill_refills_an_active_room_before_waiting_ones() {
    let ts = TestServer::start().await;
    let names = ["ann", "bob", "cat", "dan", "eve", "fay"];
    let c: Vec<_> = futures_util::future::join_all(names.map(|n| ts.client(n))).await;
    let create = |i: usize, backfill: bool| {
        c[i].create_room(json!({"max_players": 2, "mode": "bf", "backfill": backfill}))
    };
    // dan's waiting room is the oldest.
    let waiting = create(3, false).await.unwrap();
    // ann and bob: a game made with backfill, started.
    let game = create(0, true).await.unwrap();
    assert!(game.backfill);
    c[1].join_room(&game.room_id).await.unwrap();
    c[0].wait_for("game_start").await.unwrap();
    // cat and fay: a plain game, started; fay leaves it.
    let plain = create(2, false).await.unwrap();
    assert!(!plain.backfill);
    c[5].join_room(&plain.room_id).await.unwrap();
    c[2].wait_for("game_start").await.unwrap();
    c[5].leave_room().await.unwrap();
    // bob leaves the backfill game.
    c[1].leave_room().await.unwrap();
    c[0].wait_for("player_left").await.unwrap();

    // eve is placed in the active backfill game.
    let r = c[4]
        .request("find_match", json!({"max_players": 2, "mode": "bf"}))
        .await
        .unwrap();
    assert_eq!(r["created"], false);
    assert_eq!(r["room"]["room_id"], game.room_id);
    assert_eq!(r["room"]["status"], "active");
    assert_eq!(r["room"]["backfill"], true);
    let joined = c[0].wait_for("player_joined").await.unwrap();
    assert_eq!(joined["player"]["player_id"], c[4].player_id());
    expect_no_event(&c[0], SHORT).await;
    // Full again, and the plain game is not refilled: fay gets dan's room.
    let (room, created) = c[5].find_match(2, "bf", json!({})).await.unwrap();
    assert!(!created);
    assert_eq!(room.room_id, waiting.room_id);
    ts.server.app.check_invariants().await.unwrap();
}

/// Spectators (1.1): a place without a seat. They hear the room's events
/// and chat, signal players (not each other), never count as players,
/// have no player data, can be kicked, and are dismissed when the last
/// player leaves.
#[tokio::test]
async fn spectators_watch_without_a_seat() {
    const OFFER: &str = include_str!("fixtures/sdp/chromium-offer-datachannel.sdp");
    let ts = TestServer::start().await;
    let names = ["ann", "bob", "sam", "sue", "tom"];
    let c: Vec<_> = futures_util::future::join_all(names.map(|n| ts.client(n))).await;
    let (ann, bob, sam, sue, tom) = (&c[0], &c[1], &c[2], &c[3], &c[4]);
    let room = ann
        .create_room(json!({"max_players": 2, "max_spectators": 2}))
        .await
        .unwrap();
    assert_eq!(room.max_spectators, 2);
    async fn watch(
        who: &rendezvous::client::Client,
        room_id: &str,
    ) -> Result<Value, rendezvous::client::ClientError> {
        let fields = json!({"room_id": room_id, "as": "spectator"});
        who.request("join_room", fields).await
    }
    let spectate = |who| watch(who, &room.room_id);
    let r = spectate(sam).await.unwrap();
    assert_eq!(r["room"]["spectators"][0]["player_id"], sam.player_id());
    assert_eq!(r["room"]["players"].as_array().unwrap().len(), 1);
    let joined = ann.wait_for("spectator_joined").await.unwrap();
    assert_eq!(joined["player"]["player_id"], sam.player_id());
    spectate(sue).await.unwrap();
    assert_code(spectate(tom).await, "room_full");
    assert_code(
        tom.request(
            "join_room",
            json!({"room_id": room.room_id, "as": "referee"}),
        )
        .await,
        "bad_request",
    );

    // A player fills the room: spectators see it start, and stay out of
    // the player counts.
    bob.join_room(&room.room_id).await.unwrap();
    assert_eq!(
        sam.wait_for("player_joined").await.unwrap()["player"]["player_id"],
        bob.player_id()
    );
    let start = sam.wait_for("game_start").await.unwrap();
    assert_eq!(start["room"]["players"].as_array().unwrap().len(), 2);
    assert_eq!(start["room"]["spectators"].as_array().unwrap().len(), 2);
    let stats = wait_stats(&ts, |s| s["total_players"] == 2).await;
    assert_eq!(stats["active_rooms"], 1);

    // Chat both ways; signals between players and spectators only.
    sam.request("chat", json!({"text": "go ann"}))
        .await
        .unwrap();
    assert_eq!(ann.wait_for("chat").await.unwrap()["from"], sam.player_id());
    sam.request("offer", json!({"to": ann.player_id(), "sdp": OFFER}))
        .await
        .unwrap();
    assert_eq!(
        ann.wait_for("offer").await.unwrap()["from"],
        sam.player_id()
    );
    ann.request("offer", json!({"to": sam.player_id(), "sdp": OFFER}))
        .await
        .unwrap();
    assert_eq!(
        sam.wait_for("offer").await.unwrap()["from"],
        ann.player_id()
    );
    assert_code(
        sam.request("offer", json!({"to": sue.player_id(), "sdp": OFFER}))
            .await,
        "forbidden",
    );
    assert_code(
        sam.request("set_player_data", json!({"data": {"x": 1}}))
            .await,
        "forbidden",
    );
    assert_code(sam.request("start_game", json!({})).await, "not_host");
    assert_code(
        sam.request("find_match", json!({"max_players": 2})).await,
        "already_in_room",
    );

    // The host kicks a spectator; the others hear it.
    ann.request("kick", json!({"player_id": sue.player_id()}))
        .await
        .unwrap();
    sue.wait_for("kicked").await.unwrap();
    let left = sam.wait_for("spectator_left").await.unwrap();
    assert_eq!(left["player_id"], sue.player_id());
    assert_eq!(left["reason"], "kicked");
    assert_code(spectate(sue).await, "forbidden");

    // The players leave: the room closes under its last spectator.
    bob.leave_room().await.unwrap();
    ann.leave_room().await.unwrap();
    let closed = sam.wait_for("spectator_left").await.unwrap();
    assert_eq!(closed["player_id"], sam.player_id());
    assert_eq!(closed["reason"], "closed");
    let (_, created) = sam.find_match(2, "default", json!({})).await.unwrap();
    assert!(created, "the spectator is free again");
    ts.server.app.check_invariants().await.unwrap();
}
