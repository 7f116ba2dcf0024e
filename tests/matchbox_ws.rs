//! The matchbox drop-in endpoint through its wire protocol (what
//! matchbox_socket sends and expects from matchbox_server): `IdAssigned`
//! first, `NewPeer` to the peers already there, `Signal` relayed with the
//! sender stamped and only within a room, `PeerLeft`, `?next=N` groups
//! (rooms of the lobby, listed as `matchbox:{room}`), the full mesh without
//! it, and hostile frames. With `RENDEZVOUS_TEST_CLUSTER=1` every server
//! runs in cluster mode. The real client is tested in tests-matchbox/.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::*;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const OFFER: &str = include_str!("fixtures/sdp/chromium-offer-datachannel.sdp");
const CANDIDATE: &str = "candidate:1 1 udp 2113937151 192.0.2.1 5000 typ host";
const WAIT: Duration = Duration::from_secs(10);

struct Peer {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    id: String,
}

impl Peer {
    /// Connects to `path` and reads `IdAssigned`.
    async fn join(ts: &TestServer, path: &str) -> Peer {
        let url = format!("ws://{}{path}", ts.server.addr);
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("matchbox socket opens");
        let mut p = Peer {
            ws,
            id: String::new(),
        };
        let first = p.recv().await;
        p.id = first["IdAssigned"]
            .as_str()
            .unwrap_or_else(|| panic!("IdAssigned first, got {first}"))
            .to_string();
        assert!(uuid::Uuid::parse_str(&p.id).is_ok(), "{first}");
        p
    }

    async fn send(&mut self, v: Value) {
        self.send_text(v.to_string()).await;
    }

    async fn send_text(&mut self, t: String) {
        self.ws.send(Message::Text(t.into())).await.expect("send");
    }

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

    async fn quiet(&mut self, d: Duration) {
        if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(d, self.ws.next()).await {
            panic!("unexpected message {t}");
        }
    }

    fn signal(&self, to: &Peer, data: Value) -> Value {
        json!({"Signal": {"receiver": to.id, "data": data}})
    }
}

#[tokio::test]
async fn next_groups_pairs_and_relays_signals_within_them() {
    let ts = TestServer::start().await;
    let mut a = Peer::join(&ts, "/matchbox/game?next=2").await;
    a.quiet(Duration::from_millis(200)).await;
    let mut b = Peer::join(&ts, "/matchbox/game?next=2").await;
    assert_eq!(
        a.recv().await,
        json!({ "NewPeer": b.id }),
        "the first is told"
    );
    b.quiet(Duration::from_millis(200)).await;
    // The third starts the next pair.
    let mut c = Peer::join(&ts, "/matchbox/game?next=2").await;
    a.quiet(Duration::from_millis(200)).await;
    let (_, rooms) = http_get(&ts.http("/api/rooms?status=waiting&mode=matchbox:game")).await;
    assert_eq!(rooms["rooms"].as_array().map(Vec::len), Some(1), "{rooms}");
    let (_, rooms) = http_get(&ts.http("/api/rooms?status=active&mode=matchbox:game")).await;
    assert_eq!(
        rooms["rooms"][0]["players"].as_array().map(Vec::len),
        Some(2)
    );

    a.send(a.signal(&b, json!({ "Offer": OFFER }))).await;
    let got = b.recv().await;
    assert_eq!(got["Signal"]["sender"], json!(a.id));
    assert_eq!(got["Signal"]["data"]["Offer"], OFFER);
    let cand = json!({"candidate": CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0}).to_string();
    b.send(b.signal(&a, json!({ "IceCandidate": cand }))).await;
    let got = a.recv().await;
    assert_eq!(got["Signal"]["sender"], json!(b.id));
    let relayed: Value = serde_json::from_str(
        got["Signal"]["data"]["IceCandidate"]
            .as_str()
            .expect("a string"),
    )
    .expect("candidate JSON");
    assert_eq!(relayed["candidate"], CANDIDATE);
    assert_eq!(relayed["sdpMid"], "0");
    b.send(b.signal(&a, json!({ "IceCandidate": "null" })))
        .await;
    assert_eq!(a.recv().await["Signal"]["data"]["IceCandidate"], "null");
    // Not across rooms (matchbox_server would relay it).
    c.send(c.signal(&a, json!({ "Offer": OFFER }))).await;
    a.quiet(Duration::from_millis(300)).await;
    wait_stats(&ts, |s| s["signals_relayed"] == 3 && s["connections"] == 3).await;
    let (_, metrics) = http_raw("GET", &ts.http("/metrics"), &[]).await;
    for line in [
        "rendezvous_endpoint_connections{endpoint=\"matchbox\"} 3",
        "rendezvous_endpoint_signals_relayed_total{endpoint=\"matchbox\"} 3",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    // Leaving: PeerLeft for the other of the pair only.
    drop(a.ws);
    assert_eq!(b.recv().await, json!({ "PeerLeft": a.id }));
    c.quiet(Duration::from_millis(200)).await;
    ts.stop().await;
}

#[tokio::test]
async fn without_next_the_path_is_one_full_mesh() {
    let ts = TestServer::start().await;
    let mut a = Peer::join(&ts, "/matchbox/mesh").await;
    let mut b = Peer::join(&ts, "/matchbox/mesh").await;
    assert_eq!(a.recv().await, json!({ "NewPeer": b.id }));
    let mut c = Peer::join(&ts, "/matchbox/mesh").await;
    assert_eq!(a.recv().await, json!({ "NewPeer": c.id }));
    assert_eq!(b.recv().await, json!({ "NewPeer": c.id }));
    // Another path is another mesh.
    let mut other = Peer::join(&ts, "/matchbox/elsewhere").await;
    a.quiet(Duration::from_millis(200)).await;
    c.send(c.signal(&a, json!({ "Answer": OFFER }))).await;
    assert_eq!(a.recv().await["Signal"]["sender"], json!(c.id));
    other
        .send(other.signal(&a, json!({ "Offer": OFFER })))
        .await;
    a.quiet(Duration::from_millis(300)).await;
    drop(b.ws);
    assert_eq!(a.recv().await, json!({ "PeerLeft": b.id }));
    assert_eq!(c.recv().await, json!({ "PeerLeft": b.id }));
    ts.stop().await;
}

#[tokio::test]
async fn bad_paths_are_refused_before_the_upgrade() {
    let ts = TestServer::start().await;
    for path in [
        "/matchbox/test?next=1",
        "/matchbox/test?next=abc",
        "/matchbox/test?next=9999",
        "/matchbox/bad%20room",
        &format!("/matchbox/{}", "r".repeat(56)),
    ] {
        let url = format!("ws://{}{path}", ts.server.addr);
        let refused = handshake(&url, &[]).await;
        assert_eq!(refused.err().map(|e| e.0), Some(400), "{path}");
    }
    ts.stop().await;
}

#[tokio::test]
async fn hostile_frames_are_dropped_and_the_server_keeps_serving() {
    let ts = TestServer::start().await;
    let mut a = Peer::join(&ts, "/matchbox/h?next=2").await;
    let mut b = Peer::join(&ts, "/matchbox/h?next=2").await;
    a.recv().await;
    let ghost = uuid::Uuid::new_v4().to_string();
    for f in [
        "{not json".to_string(),
        "\"KeepAlive\"".to_string(),
        json!({"Nope": 1}).to_string(),
        json!({"Signal": {"receiver": "not-a-uuid", "data": {"Offer": OFFER}}}).to_string(),
        json!({"Signal": {"receiver": ghost, "data": {"Offer": OFFER}}}).to_string(),
        json!({"Signal": {"receiver": b.id, "data": {"Offer": "garbage"}}}).to_string(),
        json!({"Signal": {"receiver": b.id, "data": {"IceCandidate": "{\"candidate\":\"evil\"}"}}})
            .to_string(),
        json!({"Signal": {"receiver": b.id, "data": {"Weird": "x"}}}).to_string(),
        "x".repeat(70_000),
    ] {
        a.send_text(f).await;
    }
    a.ws.send(Message::Binary(vec![1, 2, 3].into())).await.ok();
    b.quiet(Duration::from_millis(300)).await;
    a.send(a.signal(&b, json!({ "Offer": OFFER }))).await;
    assert_eq!(b.recv().await["Signal"]["sender"], json!(a.id));
    // Over the socket limit: that socket is closed, the other gets PeerLeft.
    a.send_text("y".repeat(300_000)).await;
    assert_eq!(b.recv().await, json!({ "PeerLeft": a.id }));
    let mut c = Peer::join(&ts, "/matchbox/h2?next=2").await;
    let d = Peer::join(&ts, "/matchbox/h2?next=2").await;
    assert_eq!(c.recv().await, json!({ "NewPeer": d.id }));
    ts.stop().await;
}

#[tokio::test]
async fn welcome_lists_the_drop_in_features() {
    let ts = TestServer::start().await;
    let c = ts.client("ann").await;
    let features = c.current_welcome().features;
    assert!(features.iter().any(|f| f == "peerjs"), "{features:?}");
    assert!(features.iter().any(|f| f == "matchbox"), "{features:?}");
    ts.stop().await;
}
