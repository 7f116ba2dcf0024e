//! The PeerJS drop-in endpoint driven through its wire protocol (what the
//! `peerjs` client sends and expects, per peerjs-server): `OPEN`,
//! `ID-TAKEN`, `ERROR`, relays with `src` stamped, `LEAVE`, held messages
//! and `EXPIRE`, the id and discovery routes, the shared limits and
//! figures, and hostile frames. With `RENDEZVOUS_TEST_CLUSTER=1` every
//! server runs in cluster mode; the two-node test always does.

mod support;

use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use rendezvous::config::Config;
use serde_json::{json, Value};
use support::*;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const OFFER: &str = include_str!("fixtures/sdp/chromium-offer-datachannel.sdp");
const CANDIDATE: &str = "candidate:1 1 udp 2113937151 192.0.2.1 5000 typ host";
const WAIT: Duration = Duration::from_secs(10);

type Sock = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A raw PeerJS socket.
struct Peer {
    ws: Sock,
}

async fn connect(addr: &str, key: &str, id: &str, token: &str) -> Peer {
    let url = format!("ws://{addr}/peerjs/peerjs?key={key}&id={id}&token={token}&version=1.5.5");
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("peerjs socket opens");
    Peer { ws }
}

impl Peer {
    /// Opens `id` and expects `OPEN`.
    async fn open(addr: &str, id: &str) -> Peer {
        let mut p = connect(addr, "peerjs", id, &format!("tok{id}")).await;
        assert_eq!(p.recv().await["type"], "OPEN", "{id} opens");
        p
    }

    async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("send");
    }

    /// The next JSON message; panics on close or after [`WAIT`].
    async fn recv(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a message within the wait");
            match frame {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).expect("JSON"),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    /// Whether the socket ends (close frame or EOF) within the wait.
    async fn closes(&mut self) -> bool {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Err(_) => return false,
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Nothing arrives for `d`.
    async fn quiet(&mut self, d: Duration) {
        if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(d, self.ws.next()).await {
            panic!("unexpected message {t}");
        }
    }
}

fn offer(dst: &str) -> Value {
    json!({"type": "OFFER", "dst": dst, "payload": {
        "sdp": {"type": "offer", "sdp": OFFER}, "type": "data",
        "connectionId": "dc_1", "label": "dc_1", "serialization": "binary", "reliable": true}})
}

async fn addr_of(ts: &TestServer) -> String {
    ts.server.addr.to_string()
}

#[tokio::test]
async fn relays_by_dst_with_src_stamped() {
    let ts = TestServer::start().await;
    let addr = addr_of(&ts).await;
    let mut a = Peer::open(&addr, "alice").await;
    let mut b = Peer::open(&addr, "bob").await;
    let mut forged = offer("bob");
    forged["src"] = json!("mallory");
    a.send(forged).await;
    let got = b.recv().await;
    assert_eq!(got["type"], "OFFER");
    assert_eq!(
        got["src"], "alice",
        "src is the sender's, whatever it wrote"
    );
    assert_eq!(got["dst"], "bob");
    assert_eq!(got["payload"]["sdp"]["sdp"], OFFER);
    assert_eq!(got["payload"]["connectionId"], "dc_1");
    b.send(json!({"type": "CANDIDATE", "dst": "alice", "payload": {
        "candidate": {"candidate": CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0}, "type": "data", "connectionId": "dc_1"}}))
        .await;
    let got = a.recv().await;
    assert_eq!(
        (got["type"].as_str(), got["src"].as_str()),
        (Some("CANDIDATE"), Some("bob"))
    );
    // A heartbeat is taken silently.
    a.send(json!({"type": "HEARTBEAT"})).await;
    a.quiet(Duration::from_millis(300)).await;
    let stats = wait_stats(&ts, |s| s["signals_relayed"].as_u64() >= Some(2)).await;
    assert_eq!(stats["connections"], 2, "{stats}");
    let (_, metrics) = http_raw("GET", &ts.http("/metrics"), &[]).await;
    assert!(
        metrics.contains("rendezvous_endpoint_connections{endpoint=\"peerjs\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rendezvous_endpoint_signals_relayed_total{endpoint=\"peerjs\"} 2"),
        "{metrics}"
    );
    ts.stop().await;
}

#[tokio::test]
async fn an_id_in_use_is_taken_unless_the_token_is_the_same() {
    let ts = TestServer::start().await;
    let addr = addr_of(&ts).await;
    let mut a = Peer::open(&addr, "alice").await;
    let mut b = Peer::open(&addr, "bob").await;
    a.send(offer("bob")).await;
    assert_eq!(b.recv().await["src"], "alice");
    let mut thief = connect(&addr, "peerjs", "alice", "othertoken").await;
    let got = thief.recv().await;
    assert_eq!(got["type"], "ID-TAKEN", "{got}");
    assert_eq!(got["payload"]["msg"], "ID is taken");
    assert!(thief.closes().await);
    // The same token is the same client reconnecting: it takes the id over.
    let mut again = connect(&addr, "peerjs", "alice", "tokalice").await;
    assert_eq!(again.recv().await["type"], "OPEN");
    assert!(a.closes().await, "the older socket is closed");
    // Alice did not go: Bob gets no LEAVE.
    b.quiet(Duration::from_millis(500)).await;
    b.send(offer("alice")).await;
    assert_eq!(again.recv().await["src"], "bob");
    ts.stop().await;
}

#[tokio::test]
async fn peers_that_talked_get_leave_when_one_goes() {
    let ts = TestServer::start().await;
    let addr = addr_of(&ts).await;
    let mut a = Peer::open(&addr, "alice").await;
    let mut b = Peer::open(&addr, "bob").await;
    a.send(offer("bob")).await;
    b.recv().await;
    // A client's own LEAVE is relayed too.
    b.send(json!({"type": "LEAVE", "dst": "alice"})).await;
    let got = a.recv().await;
    assert_eq!(
        (got["type"].as_str(), got["src"].as_str()),
        (Some("LEAVE"), Some("bob"))
    );
    a.ws.close(None).await.expect("close");
    let got = b.recv().await;
    assert_eq!(got["type"], "LEAVE", "{got}");
    assert_eq!(got["src"], "alice");
    assert_eq!(got["dst"], "bob");
    wait_stats(&ts, |s| s["connections"] == 1).await;
    ts.stop().await;
}

#[tokio::test]
async fn messages_for_an_absent_peer_are_held_then_expire() {
    let ts = TestServer::start().await;
    let addr = addr_of(&ts).await;
    let mut a = Peer::open(&addr, "alice").await;
    // Held, and delivered when the peer connects in time.
    a.send(offer("late")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut late = connect(&addr, "peerjs", "late", "t").await;
    assert_eq!(late.recv().await["type"], "OPEN");
    let got = late.recv().await;
    assert_eq!(
        (got["type"].as_str(), got["src"].as_str()),
        (Some("OFFER"), Some("alice"))
    );
    // Never claimed: the sender is told once, after about 5 s.
    let sent = std::time::Instant::now();
    a.send(offer("ghost")).await;
    a.send(offer("ghost")).await;
    let got = a.recv().await;
    assert_eq!(got["type"], "EXPIRE", "{got}");
    assert_eq!(got["src"], "ghost");
    assert_eq!(got["dst"], "alice");
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_millis(4900),
        "expired after {waited:?}"
    );
    a.quiet(Duration::from_millis(700)).await;
    // LEAVE and EXPIRE for nobody are dropped, not held.
    a.send(json!({"type": "LEAVE", "dst": "nobody"})).await;
    a.send(json!({"type": "EXPIRE", "dst": "nobody"})).await;
    a.quiet(Duration::from_millis(6000)).await;
    ts.stop().await;
}

#[tokio::test]
async fn bad_handshakes_get_the_peerjs_error() {
    let ts = TestServer::start().await;
    let addr = addr_of(&ts).await;
    for (key, id, token, msg) in [
        ("wrong", "alice", "t", "Invalid key provided"),
        (
            "peerjs",
            "",
            "t",
            "No id, token, or key supplied to websocket server",
        ),
        (
            "peerjs",
            "alice",
            "",
            "No id, token, or key supplied to websocket server",
        ),
        ("peerjs", "-bad-", "t", "Invalid id provided"),
        ("peerjs", "a%20%20b", "t", "Invalid id provided"),
    ] {
        let mut p = connect(&addr, key, id, token).await;
        let got = p.recv().await;
        assert_eq!(got["type"], "ERROR", "{key} {id}: {got}");
        assert_eq!(got["payload"]["msg"], msg);
        assert!(p.closes().await);
    }
    ts.stop().await;
}

#[tokio::test]
async fn hostile_frames_get_errors_and_the_server_keeps_serving() {
    let ts = TestServer::start().await;
    let addr = addr_of(&ts).await;
    let mut a = Peer::open(&addr, "alice").await;
    let mut b = Peer::open(&addr, "bob").await;
    let frames = [
        "{not json".to_string(),
        "[1,2]".to_string(),
        json!({"type": "NOPE", "dst": "bob"}).to_string(),
        json!({"dst": "bob"}).to_string(),
        json!({"type": "OFFER"}).to_string(),
        json!({"type": "OFFER", "dst": 7}).to_string(),
        json!({"type": "OFFER", "dst": "bo b!"}).to_string(),
        json!({"type": "OFFER", "dst": "bob", "payload": {"sdp": {"sdp": "garbage"}}}).to_string(),
        json!({"type": "ANSWER", "dst": "bob", "payload": {"sdp": {"sdp": 5}}}).to_string(),
        json!({"type": "CANDIDATE", "dst": "bob", "payload": {"candidate": {"candidate": "evil"}}})
            .to_string(),
        "x".repeat(70_000),
    ];
    for f in &frames {
        a.ws.send(Message::Text(f.clone().into()))
            .await
            .expect("send");
        let got = a.recv().await;
        assert_eq!(got["type"], "ERROR", "{f:.80}: {got}");
        assert!(got["payload"]["msg"].is_string());
    }
    b.quiet(Duration::from_millis(200)).await;
    // Still serving on the same socket.
    a.send(offer("bob")).await;
    assert_eq!(b.recv().await["src"], "alice");
    // A frame over the socket limit ends that socket only.
    a.ws.send(Message::Text("y".repeat(300_000).into()))
        .await
        .ok();
    assert!(a.closes().await);
    let got = b.recv().await;
    assert_eq!(
        (got["type"].as_str(), got["src"].as_str()),
        (Some("LEAVE"), Some("alice"))
    );
    let mut c = Peer::open(&addr, "carol").await;
    c.send(offer("bob")).await;
    assert_eq!(b.recv().await["src"], "carol");
    ts.stop().await;
}

#[tokio::test]
async fn id_and_discovery_routes() {
    let ts = TestServer::start().await;
    let (status, head, id) = http_full("GET", &ts.http("/peerjs/peerjs/id?ts=1"), &[]).await;
    assert_eq!(status, 200);
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{head}"
    );
    let (status, _) = http_raw("GET", &ts.http("/peerjs/wrong/id"), &[]).await;
    assert_eq!(status, 401);
    let (status, _) = http_raw("GET", &ts.http("/peerjs/peerjs/peers"), &[]).await;
    assert_eq!(status, 401, "no discovery without --peerjs-discovery");
    ts.stop().await;

    let ts = TestServer::with_args(&["--peerjs-discovery", "--peerjs-key", "k1"]).await;
    let addr = addr_of(&ts).await;
    let mut p = connect(&addr, "k1", "alice", "t").await;
    assert_eq!(p.recv().await["type"], "OPEN");
    let (status, ids) = http_get(&ts.http("/peerjs/k1/peers")).await;
    assert_eq!(status, 200);
    assert_eq!(ids, json!(["alice"]));
    ts.stop().await;
}

#[tokio::test]
async fn connection_caps_count_peerjs_sockets() {
    let ts = TestServer::with_args(&["--max-connections", "1"]).await;
    let addr = addr_of(&ts).await;
    let _a = Peer::open(&addr, "alice").await;
    let mut b = connect(&addr, "peerjs", "bob", "t").await;
    let got = b.recv().await;
    assert_eq!(got["type"], "ERROR");
    assert_eq!(
        got["payload"]["msg"],
        "Server has reached its concurrent user limit"
    );
    // And a /ws client too.
    let refused = handshake(&ts.ws_url(), &[]).await;
    assert_eq!(refused.err().map(|e| e.0), Some(503));
    ts.stop().await;
}

#[tokio::test]
async fn the_rate_limit_applies() {
    let ts = TestServer::with_args(&["--rate-limit", "1", "--rate-burst", "2"]).await;
    let addr = addr_of(&ts).await;
    let mut a = Peer::open(&addr, "alice").await;
    for _ in 0..3 {
        a.send(json!({"type": "HEARTBEAT"})).await;
    }
    let got = a.recv().await;
    assert_eq!(got["type"], "ERROR");
    assert!(
        got["payload"]["msg"]
            .as_str()
            .unwrap_or("")
            .contains("rate"),
        "{got}"
    );
    ts.stop().await;
}

#[tokio::test]
async fn with_auth_the_token_is_a_jwt() {
    let secret = "peerjs-test-secret";
    let ts = TestServer::with_args(&["--auth", "required", "--jwt-secret", secret]).await;
    let addr = addr_of(&ts).await;
    let exp = chrono::Utc::now().timestamp() + 600;
    let jwt = rendezvous::auth::sign_hs256_for_tests(secret, &json!({"sub": "u1", "exp": exp}));
    let mut ok = connect(&addr, "peerjs", "alice", &jwt).await;
    assert_eq!(ok.recv().await["type"], "OPEN");
    let mut bad = connect(&addr, "peerjs", "bob", "randomtoken").await;
    let got = bad.recv().await;
    assert_eq!(got["type"], "ERROR");
    assert_eq!(got["payload"]["msg"], "Invalid token provided");
    ts.stop().await;
}

/// Two nodes on one Redis: peers on different nodes relay, a taken id is
/// taken cluster-wide, messages held for a peer that then opens on the
/// other node arrive, and LEAVE crosses nodes.
#[tokio::test]
async fn two_cluster_nodes_route_by_peer_id() {
    let redis = RedisServer::start();
    let node = |name: &str| {
        let argv = [
            "rendezvous",
            "--listen",
            "127.0.0.1:0",
            "--redis-url",
            &redis.url(),
            "--node-id",
            name,
            "--max-connections-per-ip",
            "1000",
        ];
        Config::try_parse_from(argv).expect("config")
    };
    let n1 = rendezvous::server::start(node("pj1"))
        .await
        .expect("node 1");
    let n2 = rendezvous::server::start(node("pj2"))
        .await
        .expect("node 2");
    let (a1, a2) = (n1.addr.to_string(), n2.addr.to_string());
    let mut a = Peer::open(&a1, "alice").await;
    let mut b = Peer::open(&a2, "bob").await;
    a.send(offer("bob")).await;
    let got = b.recv().await;
    assert_eq!(
        (got["type"].as_str(), got["src"].as_str()),
        (Some("OFFER"), Some("alice"))
    );
    b.send(json!({"type": "ANSWER", "dst": "alice", "payload": {"sdp": {"type": "answer", "sdp": OFFER}}}))
        .await;
    assert_eq!(a.recv().await["src"], "bob");
    // Each node's stats count the PeerJS sockets of both.
    for addr in [&a1, &a2] {
        let (_, stats) = http_get(&format!("http://{addr}/api/stats")).await;
        assert_eq!(stats["connections"], 2, "{addr}: {stats}");
    }
    let mut thief = connect(&a2, "peerjs", "alice", "other").await;
    assert_eq!(thief.recv().await["type"], "ID-TAKEN");
    // Held on node 1 for a peer that opens on node 2.
    a.send(offer("carol")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = Peer::open(&a2, "carol").await;
    assert_eq!(c.recv().await["src"], "alice");
    b.ws.close(None).await.ok();
    let got = a.recv().await;
    assert_eq!(
        (got["type"].as_str(), got["src"].as_str()),
        (Some("LEAVE"), Some("bob"))
    );
    // Bob's id is free again, cluster-wide.
    let mut b2 = connect(&a1, "peerjs", "bob", "new").await;
    assert_eq!(b2.recv().await["type"], "OPEN");
    // Alice reconnects through node 2 with her token: node 1 lets go.
    let mut a_again = connect(&a2, "peerjs", "alice", "tokalice").await;
    assert_eq!(a_again.recv().await["type"], "OPEN");
    assert!(a.closes().await, "the socket on node 1 is closed");
    b2.send(offer("alice")).await;
    assert_eq!(a_again.recv().await["src"], "bob");
    let (_, stats) = http_get(&format!("http://{a1}/api/stats")).await;
    assert!(stats["signals_relayed"].as_u64() >= Some(3), "{stats}");
    n1.shutdown().await;
    n2.shutdown().await;
    drop(redis);
}
