//! Cluster mode at its edges, in-process against a real `redis-server`:
//! a node whose notice subscription is cut while Redis stays up closes its
//! sockets with 1012 and its clients resume with their seats; a client that
//! closes cleanly gets the server's close frame at once (not after the
//! writer's linger), as on a single node.

mod support;

use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use rendezvous::config::Config;
use rendezvous::server::{self, RunningServer};
use serde_json::{json, Value};
use support::RedisServer;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn node(redis: &RedisServer, extra: &[&str]) -> RunningServer {
    node_at(&redis.url(), extra).await.expect("node starts")
}

/// A node of the store at `url`, or why it did not start.
async fn node_at(url: &str, extra: &[&str]) -> Result<RunningServer, String> {
    let mut argv = vec![
        "rendezvous",
        "--listen",
        "127.0.0.1:0",
        "--max-connections-per-ip",
        "100000",
        "--redis-url",
        url,
    ];
    argv.extend_from_slice(extra);
    let cfg = Config::try_parse_from(argv).expect("config");
    server::start(cfg).await.map_err(|e| e.to_string())
}

async fn connect(srv: &RunningServer, query: &str) -> (Ws, Value) {
    let url = format!("ws://{}/ws?{query}", srv.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connects");
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (ws, welcome)
}

/// The next text frame as JSON, within 5 s.
async fn next_json(ws: &mut Ws) -> Value {
    let deadline = Duration::from_secs(5);
    loop {
        let frame = tokio::time::timeout(deadline, ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("socket open")
            .expect("no socket error");
        if let Message::Text(t) = frame {
            return serde_json::from_str(&t).expect("JSON frame");
        }
    }
}

/// Sends a request and reads frames until its reply; returns the reply.
async fn request(ws: &mut Ws, rid: u64, body: Value) -> Value {
    let mut msg = body;
    msg["rid"] = json!(rid);
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .expect("send");
    loop {
        let v = next_json(ws).await;
        if v["rid"] == json!(rid) {
            return v;
        }
    }
}

/// Sends a request and reads frames until its reply: the events that came
/// before it (in order) and the reply.
async fn request_seeing(ws: &mut Ws, rid: u64, body: Value) -> (Vec<Value>, Value) {
    let mut msg = body;
    msg["rid"] = json!(rid);
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .expect("send");
    let mut before = Vec::new();
    loop {
        let v = next_json(ws).await;
        if v["rid"] == json!(rid) {
            return (before, v);
        }
        before.push(v);
    }
}

/// The kinds of `events`.
fn kinds(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?"))
        .collect()
}

/// The close frame's code, within 5 s, with the text frames before it.
async fn close_seeing(ws: &mut Ws) -> (Vec<Value>, Option<CloseCode>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return (before, frame.map(|f| f.code)),
            Ok(Some(Ok(Message::Text(t)))) => before.push(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => panic!("a socket error before the close: {e}"),
            Ok(None) => panic!("the socket ended without a close frame"),
            Err(_) => panic!("no close frame within 5 s"),
        }
    }
}

/// `host` creates a room of `max` seats, `guest` joins it (rids 1), and the
/// host sees the join; the room's id.
async fn shared_room(host: &mut Ws, guest: &mut Ws, max: u64) -> String {
    let created = request(host, 1, json!({"type": "create_room", "max_players": max})).await;
    assert_eq!(created["type"], "ok", "{created}");
    let room_id = created["room"]["room_id"].as_str().unwrap().to_string();
    let joined = request(guest, 1, json!({"type": "join_room", "room_id": room_id})).await;
    assert_eq!(joined["type"], "ok", "{joined}");
    until(host, "player_joined").await;
    room_id
}

/// Reads until an event of `kind`.
async fn until(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] == kind {
            return v;
        }
    }
}

/// The close frame's code, within 5 s.
async fn close_code(ws: &mut Ws) -> Option<CloseCode> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| f.code),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) => return None,
            Err(_) => panic!("no close frame within 5 s"),
        }
    }
}

fn kill_pubsub_clients(redis: &RedisServer) -> i64 {
    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut con = client.get_connection().expect("redis connection");
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut con)
        .expect("CLIENT KILL")
}

#[tokio::test]
async fn a_cut_subscription_closes_sockets_with_1012_and_clients_resume() {
    let redis = RedisServer::start();
    let srv = node(&redis, &["--reconnect-grace-ms", "10000"]).await;
    let (mut ann, ann_w) = connect(&srv, "name=ann").await;
    let (mut bob, bob_w) = connect(&srv, "name=bob").await;
    let room_id = shared_room(&mut ann, &mut bob, 3).await;

    assert!(
        kill_pubsub_clients(&redis) >= 1,
        "the node's subscription was killed"
    );
    assert_eq!(close_code(&mut ann).await, Some(CloseCode::Restart));
    assert_eq!(close_code(&mut bob).await, Some(CloseCode::Restart));

    // The node subscribes again; the clients resume with their seats.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut ann, again) = loop {
        let url = format!(
            "ws://{}/ws?resume={}",
            srv.addr,
            ann_w["resume_token"].as_str().unwrap()
        );
        match tokio_tungstenite::connect_async(url).await {
            Ok((mut ws, _)) => {
                let w = next_json(&mut ws).await;
                break (ws, w);
            }
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("no resume within 10 s: {e}"),
        }
    };
    assert_eq!(again["resumed"], true, "{again}");
    assert_eq!(again["player_id"], ann_w["player_id"]);
    assert_eq!(again["room"]["room_id"], json!(room_id));
    let (mut bob, bob_again) = connect(
        &srv,
        &format!("resume={}", bob_w["resume_token"].as_str().unwrap()),
    )
    .await;
    assert_eq!(bob_again["resumed"], true, "{bob_again}");

    // Notices flow again: a chat reaches both, and nothing was lost of the
    // room (two seats, both connected).
    let sent = request(&mut ann, 2, json!({"type": "chat", "text": "still here"})).await;
    assert_eq!(sent["type"], "ok", "{sent}");
    let chat = until(&mut bob, "chat").await;
    assert_eq!(chat["text"], "still here");
    srv.app.check_invariants().await.unwrap();
    let room = request(&mut bob, 2, json!({"type": "list_rooms"})).await;
    let listed = &room["rooms"][0];
    assert_eq!(listed["players"].as_array().unwrap().len(), 2, "{room}");
    assert!(listed["players"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["connected"] == true));
    srv.shutdown().await;
}

#[tokio::test]
async fn a_clean_close_is_answered_at_once_in_cluster_mode() {
    let redis = RedisServer::start();
    let srv = node(&redis, &[]).await;
    let started = Instant::now();
    for i in 0..200 {
        let (mut ws, _) = connect(&srv, &format!("name=c{i}")).await;
        ws.close(None).await.expect("close sent");
        // The server's close frame, then the stream's clean end: a server
        // that waited for its linger (1 s) ends the socket without a close
        // frame, told apart at any speed; the 10 s bound only catches a hang.
        let mut got = Vec::new();
        let end = loop {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(m))) => got.push(m),
                Ok(end) => break end,
                Err(_) => panic!("close {i} not answered within 10 s"),
            }
        };
        assert!(
            end.is_none() && matches!(got.last(), Some(Message::Close(_))),
            "close {i} answered with {got:?}, then {end:?}: the server gave up on its linger"
        );
    }
    eprintln!("200 connect+close cycles in {:?}", started.elapsed());
    srv.shutdown().await;
}

fn bob_w_check(w: &Value, round: u64) {
    assert_eq!(w["resumed"], true, "round {round}: {w}");
}

/// Reads frames for `wait` (or until the socket ends), collecting the texts
/// of `chat` events; the ones a `welcome` may carry after a resume too.
async fn collect_chats(ws: &mut Ws, wait: Duration, into: &mut Vec<String>) {
    let until = Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).expect("JSON");
                if v["type"] == "chat" {
                    into.push(v["text"].as_str().unwrap().to_string());
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) | Err(_) => return,
        }
    }
}

#[tokio::test]
async fn drops_and_resumes_while_events_flow_lose_nothing() {
    let redis = RedisServer::start();
    let args = [
        "--reconnect-grace-ms",
        "20000",
        "--rate-limit",
        "2000",
        "--rate-burst",
        "2000",
    ];
    let a = node(&redis, &args).await;
    let b = node(&redis, &args).await;
    let (mut ann, _) = connect(&a, "name=ann").await;
    let (mut bob, mut bob_w) = connect(&b, "name=bob").await;
    shared_room(&mut ann, &mut bob, 2).await;

    // Ann chats without pause while Bob drops his socket and resumes at
    // once, on one node then the other, again and again.
    const CHATS: usize = 2000;
    let sender = tokio::spawn(async move {
        for i in 0..CHATS {
            let msg = json!({"type": "chat", "text": format!("m{i}")});
            ann.send(Message::Text(msg.to_string().into()))
                .await
                .unwrap();
            if i % 4 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        ann
    });
    // Every round ends Bob's connection in one of three ways the server
    // must not lose events over, then resumes at once:
    // - a drop: Bob shuts his side of the TCP connection (the server reads
    //   the end of the stream, as for a lost client) and resumes at once,
    //   racing the old node's handling of the drop, while still reading
    //   whatever the server writes on the half-open old socket;
    // - a clean close, the old socket read to its end;
    // - a takeover: a new connection with the same token while the old one
    //   is open; the old one is read to its 4001 close.
    let mut got = Vec::new();
    let mut round = 0u64;
    while !sender.is_finished() {
        collect_chats(&mut bob, Duration::from_millis(round % 5 * 2), &mut got).await;
        // Two rounds on a node, two on the other: the resume lands on the
        // node that saw the drop, or on another one.
        let on = if (round / 2).is_multiple_of(2) {
            &a
        } else {
            &b
        };
        let token = bob_w["resume_token"].as_str().unwrap().to_string();
        let mut old = match round % 3 {
            0 => {
                // The half close and the new connection race each other.
                use tokio::io::AsyncWriteExt;
                let cut = async {
                    match bob.get_mut() {
                        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => {
                            tcp.shutdown().await.expect("half close")
                        }
                        _ => unreachable!("plain TCP"),
                    }
                };
                let query = format!("resume={token}");
                let ((ws, w), ()) = tokio::join!(connect(on, &query), cut);
                bob_w = w;
                std::mem::replace(&mut bob, ws)
            }
            1 => {
                bob.close(None).await.expect("close sent");
                collect_chats(&mut bob, Duration::from_secs(5), &mut got).await;
                let (ws, w) = connect(on, &format!("resume={token}")).await;
                bob_w = w;
                std::mem::replace(&mut bob, ws)
            }
            _ => {
                let (ws, w) = connect(on, &format!("resume={token}")).await;
                bob_w = w;
                std::mem::replace(&mut bob, ws)
            }
        };
        collect_chats(&mut old, Duration::from_secs(5), &mut got).await;
        bob_w_check(&bob_w, round);
        round += 1;
    }
    let _ann = sender.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < CHATS && Instant::now() < deadline {
        collect_chats(&mut bob, Duration::from_millis(200), &mut got).await;
    }
    let mut seen = std::collections::HashSet::new();
    let dups: Vec<&String> = got.iter().filter(|t| !seen.insert(*t)).collect();
    assert!(dups.is_empty(), "delivered twice: {dups:?}");
    let missing: Vec<String> = (0..CHATS)
        .map(|i| format!("m{i}"))
        .filter(|t| !seen.contains(t))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {CHATS} chats lost over {round} drop+resume rounds: {missing:?}",
        missing.len()
    );
    a.app.check_invariants().await.unwrap();
    b.shutdown().await;
    a.shutdown().await;
}

/// The store's script calls, by operation, as Redis's `MONITOR` shows
/// them between [`ScriptWatch::start`] and [`ScriptWatch::stop`].
struct ScriptWatch {
    port: u16,
    ops: tokio::task::JoinHandle<Vec<String>>,
}

/// The marker that ends a [`ScriptWatch`]'s window.
const WATCH_END: &str = "rv-script-watch-end";

impl ScriptWatch {
    async fn start(redis: &RedisServer) -> ScriptWatch {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", redis.port()))
            .await
            .expect("redis");
        s.write_all(b"MONITOR\r\n").await.unwrap();
        let mut lines = tokio::io::BufReader::new(s).lines();
        let ok = lines.next_line().await.unwrap();
        assert_eq!(ok.as_deref(), Some("+OK"), "MONITOR started");
        let ops = tokio::spawn(async move {
            let mut ops = Vec::new();
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains(WATCH_END) {
                    return ops;
                }
                if let Some(op) = script_op(&line) {
                    ops.push(op);
                }
            }
            panic!("MONITOR ended before its marker");
        });
        ScriptWatch {
            port: redis.port(),
            ops,
        }
    }

    /// The operations of the scripts run since `start`: every command sent
    /// before this one's marker is in (Redis shows commands in the order
    /// it runs them).
    async fn stop(self) -> Vec<String> {
        let url = format!("redis://127.0.0.1:{}/", self.port);
        let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
        let _: String = redis::cmd("ECHO").arg(WATCH_END).query(&mut con).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.ops)
            .await
            .expect("the marker within 10 s")
            .unwrap()
    }
}

/// The operation of a `MONITOR` line that runs the store's script
/// (`"EVALSHA" "<sha>" "0" "<op>" "<node>" "<args>"`).
fn script_op(line: &str) -> Option<String> {
    let (_, cmd) = line.split_once("] \"")?;
    let mut words = cmd.split("\" \"");
    let name = words.next()?;
    if !(name.eq_ignore_ascii_case("evalsha") || name.eq_ignore_ascii_case("eval")) {
        return None;
    }
    words.nth(2).map(str::to_string)
}

/// The script operations that run in the background, whatever a test does.
const BACKGROUND_OPS: [&str; 2] = ["tick", "beat"];

fn candidate(i: usize) -> Value {
    json!({"candidate": "candidate:1 1 udp 2113937151 192.0.2.1 5000 typ host",
           "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": format!("u{i}")})
}

/// Reads `n` relayed candidates from `from`, checking their order.
async fn expect_candidates(ws: &mut Ws, from: &str, n: usize) {
    for i in 0..n {
        let ev = until(ws, "ice_candidate").await;
        assert_eq!(ev["from"], from);
        assert_eq!(
            ev["candidate"]["usernameFragment"],
            format!("u{i}"),
            "in order"
        );
    }
}

#[tokio::test]
async fn signals_between_nodes_need_no_script_and_stay_in_order_and_in_the_room() {
    let redis = RedisServer::start();
    let rate = ["--rate-limit", "100000", "--rate-burst", "100000"];
    let n1 = node(&redis, &rate).await;
    let n2 = node(&redis, &rate).await;
    let (mut ann, ann_w) = connect(&n1, "name=ann").await;
    let (mut bob, bob_w) = connect(&n2, "name=bob").await;
    let (mut cy, cy_w) = connect(&n1, "name=cy").await;
    shared_room(&mut ann, &mut bob, 4).await;
    let room_id = until(&mut bob, "chat_history").await["room_id"].clone();
    let joined = request(&mut cy, 1, json!({"type": "join_room", "room_id": room_id})).await;
    assert_eq!(joined["type"], "ok", "{joined}");
    until(&mut ann, "player_joined").await;
    until(&mut bob, "player_joined").await;
    let (ann_id, bob_id, cy_id) = (
        ann_w["player_id"].as_str().unwrap(),
        bob_w["player_id"].as_str().unwrap(),
        cy_w["player_id"].as_str().unwrap(),
    );

    // Fire-and-forget both ways across the nodes: all of them, in order,
    // and the store runs no script for them: the background's beats and
    // ticks only, however many a slow machine fits in meanwhile.
    let watch = ScriptWatch::start(&redis).await;
    for i in 0..300 {
        let msg = json!({"type": "ice_candidate", "to": bob_id, "candidate": candidate(i)});
        ann.send(Message::Text(msg.to_string().into()))
            .await
            .unwrap();
    }
    for i in 0..100 {
        let msg = json!({"type": "ice_candidate", "to": ann_id, "candidate": candidate(i)});
        bob.send(Message::Text(msg.to_string().into()))
            .await
            .unwrap();
    }
    expect_candidates(&mut bob, ann_id, 300).await;
    expect_candidates(&mut ann, bob_id, 100).await;
    let ops = watch.stop().await;
    let mut caused = std::collections::BTreeMap::<&str, usize>::new();
    for op in ops
        .iter()
        .filter(|op| !BACKGROUND_OPS.contains(&op.as_str()))
    {
        *caused.entry(op).or_default() += 1;
    }
    assert!(
        caused.is_empty(),
        "script calls for 400 signals: {caused:?}"
    );
    // A signal with rid still gets its `ok`, after the ones before it.
    let ok = request(
        &mut ann,
        7,
        json!({"type": "ice_candidate", "to": cy_id, "candidate": candidate(0)}),
    )
    .await;
    assert_eq!(ok["type"], "ok", "{ok}");
    expect_candidates(&mut cy, ann_id, 1).await;
    // Counted once each, cluster-wide, once the nodes have added theirs.
    n1.app.stats_async().await.unwrap();
    n2.app.stats_async().await.unwrap();
    let stats = n1.app.stats_async().await.unwrap();
    assert_eq!(stats.signals_relayed, 401);

    // A takeover on the other node: the route follows the connection
    // (ann's node, which cy left, learns it from a `moved` notice).
    let token = cy_w["resume_token"].as_str().unwrap();
    let (mut cy2, w2) = connect(&n2, &format!("resume={token}")).await;
    assert_eq!(w2["player_id"], cy_id);
    // The old socket gets the takeover's close and nothing else.
    let (before, code) = close_seeing(&mut cy).await;
    assert_eq!(code, Some(CloseCode::Library(4001)));
    assert!(
        before.is_empty(),
        "cy's old socket before its close: {before:?}"
    );
    // The `moved` notice reached n1 before the takeover's end; the next
    // request of ann's (its reply a notice on n1's channel) proves n1
    // processed everything before it.
    // No event for the others: cy's seat never went.
    let (before, pong) = request_seeing(&mut ann, 8, json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "ok", "{pong}");
    assert!(before.is_empty(), "ann saw the takeover: {before:?}");
    for i in 0..20 {
        let msg = json!({"type": "ice_candidate", "to": cy_id, "candidate": candidate(i)});
        ann.send(Message::Text(msg.to_string().into()))
            .await
            .unwrap();
    }
    expect_candidates(&mut cy2, ann_id, 20).await;

    // Kicked: bob is out of the room for his own node too, so his signals
    // are refused (by the script) instead of going anywhere.
    let kicked = request(&mut ann, 9, json!({"type": "kick", "player_id": bob_id})).await;
    assert_eq!(kicked["type"], "ok", "{kicked}");
    until(&mut bob, "kicked").await;
    let msg = json!({"type": "ice_candidate", "to": ann_id, "candidate": candidate(0)});
    bob.send(Message::Text(msg.to_string().into()))
        .await
        .unwrap();
    let err = until(&mut bob, "error").await;
    assert_eq!(
        (err["code"].as_str(), &err["rid"]),
        (Some("not_in_room"), &Value::Null)
    );
    let err = request(
        &mut bob,
        2,
        json!({"type": "ice_candidate", "to": cy_id, "candidate": candidate(0)}),
    )
    .await;
    assert_eq!(err["code"], "not_in_room");
    // Nothing reached ann or cy from bob after the kick: the kick's events
    // only, then the reply to a ping sent after bob's signals were refused.
    for (ws, rid) in [(&mut ann, 10), (&mut cy2, 2)] {
        let (before, ping) = request_seeing(ws, rid, json!({"type": "ping"})).await;
        assert_eq!(ping["type"], "ok");
        assert_eq!(kinds(&before), ["player_left"], "{before:?}");
        assert_eq!(
            (&before[0]["player_id"], before[0]["reason"].as_str()),
            (&json!(bob_id), Some("kicked"))
        );
    }

    // Everyone leaves: the nodes keep no routes.
    for (ws, rid) in [(&mut ann, 11), (&mut cy2, 3)] {
        let left = request(ws, rid, json!({"type": "leave_room"})).await;
        assert_eq!(left["type"], "ok", "{left}");
    }
    for n in [&n1, &n2] {
        assert_eq!(n.app.footprint().await.unwrap().routes, 0);
    }
    drop((ann, bob, cy2));
    n1.shutdown().await;
    n2.shutdown().await;
}

#[tokio::test]
async fn a_store_that_wants_a_user_and_password_gets_them_on_every_connection() {
    // No default user: every connection (scripts, the subscription, the
    // signal batches) must log in as `rv`.
    let redis = RedisServer::start_with(&[
        "--user", "default", "off", "--user", "rv", "on", ">s3cret", "~*", "&*", "+@all",
    ]);
    let url = format!("redis://rv:s3cret@127.0.0.1:{}/", redis.port());
    let wrong = format!("redis://rv:nope@127.0.0.1:{}/", redis.port());
    // With a wrong one, the node starts but cannot serve: its handshakes
    // are refused with 503, as while the store is down.
    let refused = node_at(&wrong, &[]).await.expect("starts anyway");
    let url_ws = format!("ws://{}/ws?name=x", refused.addr);
    match tokio_tungstenite::connect_async(url_ws).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 503)
        }
        other => panic!("expected a 503 refusal, got {:?}", other.map(|_| ())),
    }
    refused.shutdown().await;

    signals_cross_between_two_nodes_of(&url, 50).await;
}

/// Two nodes of the store at `url`, a player on each in one room, `n`
/// candidates each way: all relayed, in order, and counted once.
async fn signals_cross_between_two_nodes_of(url: &str, n: usize) {
    let rate = ["--rate-limit", "100000", "--rate-burst", "100000"];
    let n1 = node_at(url, &rate).await.expect("n1 starts");
    let n2 = node_at(url, &rate).await.expect("n2 starts");
    let (mut ann, ann_w) = connect(&n1, "name=ann").await;
    let (mut bob, bob_w) = connect(&n2, "name=bob").await;
    shared_room(&mut ann, &mut bob, 2).await;
    let (ann_id, bob_id) = (
        ann_w["player_id"].as_str().unwrap(),
        bob_w["player_id"].as_str().unwrap(),
    );
    for i in 0..n {
        let msg = json!({"type": "ice_candidate", "to": bob_id, "candidate": candidate(i)});
        ann.send(Message::Text(msg.to_string().into()))
            .await
            .unwrap();
        let msg = json!({"type": "ice_candidate", "to": ann_id, "candidate": candidate(i)});
        bob.send(Message::Text(msg.to_string().into()))
            .await
            .unwrap();
    }
    expect_candidates(&mut bob, ann_id, n).await;
    expect_candidates(&mut ann, bob_id, n).await;
    n1.app.stats_async().await.unwrap();
    n2.app.stats_async().await.unwrap();
    let stats = n1.app.stats_async().await.unwrap();
    assert_eq!(stats.signals_relayed, 2 * n as u64);
    n1.shutdown().await;
    n2.shutdown().await;
}

#[tokio::test]
async fn a_store_on_a_unix_socket_serves_signals_across_nodes() {
    // The subscription and the signal batches (`resp.rs`) as well as
    // redis-rs's connection go through the socket file.
    let dir = std::env::temp_dir().join(format!("rv-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("redis.sock");
    let redis = RedisServer::start_with(&["--unixsocket", sock.to_str().unwrap()]);
    signals_cross_between_two_nodes_of(&format!("redis+unix://{}", sock.display()), 20).await;
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}
