//! The real `matchbox_socket` client (native, 0.15) against Rendezvous's
//! `/matchbox/{room}`: two sockets on `/matchbox/test?next=2` are grouped by
//! the lobby (the room is listed with mode `matchbox:test`), connect peer
//! to peer through the relayed signals and pass a message over their data
//! channel both ways; then the same with each socket on another cluster
//! node sharing one redis-server. No ICE servers: the peers reach each
//! other through host candidates on this machine.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use matchbox_socket::{ChannelConfig, Packet, PeerState, RtcIceServerConfig, WebRtcSocket};
use rendezvous::config::Config;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

fn config(extra: &[&str]) -> Config {
    let mut argv = vec!["rendezvous", "--listen", "127.0.0.1:0"];
    argv.extend_from_slice(extra);
    Config::try_parse_from(argv).expect("config")
}

fn socket(addr: SocketAddr, path: &str) -> WebRtcSocket {
    let (socket, message_loop) = WebRtcSocket::builder(format!("ws://{addr}{path}"))
        .ice_server(RtcIceServerConfig {
            urls: vec![],
            username: None,
            credential: None,
        })
        .add_channel(ChannelConfig::reliable())
        .build();
    tokio::spawn(message_loop);
    socket
}

/// Polls both sockets until each has the other connected; their ids.
async fn connect_pair(a: &mut WebRtcSocket, b: &mut WebRtcSocket) {
    let deadline = Instant::now() + LIMIT;
    loop {
        a.update_peers();
        b.update_peers();
        let (ida, idb) = (a.id(), b.id());
        if let (Some(ida), Some(idb)) = (ida, idb) {
            let a_sees_b = a.connected_peers().any(|p| p == idb);
            let b_sees_a = b.connected_peers().any(|p| p == ida);
            if a_sees_b && b_sees_a {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the peers never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `text` from `from` to `to` over the data channel and waits for it.
async fn pass(from: &mut WebRtcSocket, to: &mut WebRtcSocket, text: &str) {
    let to_id = to.id().expect("id");
    let from_id = from.id().expect("id");
    from.channel_mut(0)
        .send(Packet::from(text.as_bytes().to_vec()), to_id);
    let deadline = Instant::now() + LIMIT;
    loop {
        from.update_peers();
        to.update_peers();
        let got = to.channel_mut(0).receive();
        if let Some((sender, packet)) = got.into_iter().next() {
            assert_eq!(sender, from_id);
            assert_eq!(&packet[..], text.as_bytes());
            return;
        }
        assert!(Instant::now() < deadline, "{text:?} never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get_json(addr: SocketAddr, path: &str) -> Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    // A chunked body: the JSON is between the first chunk size and the end.
    let json = body
        .find(['{', '['])
        .and_then(|i| body.rfind(['}', ']']).map(|j| &body[i..=j]))
        .unwrap_or("null");
    serde_json::from_str(json).expect("JSON body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sockets_grouped_by_next_exchange_a_message() {
    let server = rendezvous::server::start(config(&[]))
        .await
        .expect("server");
    let addr = server.addr;
    let mut a = socket(addr, "/matchbox/test?next=2");
    let mut b = socket(addr, "/matchbox/test?next=2");
    connect_pair(&mut a, &mut b).await;
    let rooms = get_json(addr, "/api/rooms?status=active&mode=matchbox:test").await;
    let rooms = rooms["rooms"].as_array().expect("rooms").clone();
    assert_eq!(rooms.len(), 1, "{rooms:?}");
    assert_eq!(rooms[0]["players"].as_array().map(Vec::len), Some(2));
    pass(&mut a, &mut b, "hello from a").await;
    pass(&mut b, &mut a, "hello from b").await;
    let stats = get_json(addr, "/api/stats").await;
    assert!(stats["signals_relayed"].as_u64() >= Some(2), "{stats}");
    assert_eq!(stats["connections"], 2, "{stats}");
    // A peer that goes is PeerLeft for the other.
    let a_id = a.id().expect("id");
    drop(a);
    let deadline = Instant::now() + LIMIT;
    loop {
        let changes = b.update_peers();
        if changes.contains(&(a_id, PeerState::Disconnected)) {
            break;
        }
        assert!(Instant::now() < deadline, "b never saw a leave");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
}

/// A `redis-server` on a free port, killed by pid when dropped.
struct Redis(Child, u16);

impl Redis {
    fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's redis-server package) runs");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis(child, port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_on_two_cluster_nodes_connect() {
    let redis = Redis::start();
    let url = format!("redis://127.0.0.1:{}/", redis.1);
    let n1 = rendezvous::server::start(config(&["--redis-url", &url, "--node-id", "mb1"]))
        .await
        .expect("node 1");
    let n2 = rendezvous::server::start(config(&["--redis-url", &url, "--node-id", "mb2"]))
        .await
        .expect("node 2");
    let mut a = socket(n1.addr, "/matchbox/cross?next=2");
    let mut b = socket(n2.addr, "/matchbox/cross?next=2");
    connect_pair(&mut a, &mut b).await;
    pass(&mut a, &mut b, "across nodes").await;
    pass(&mut b, &mut a, "and back").await;
    drop((a, b));
    n1.shutdown().await;
    n2.shutdown().await;
    drop(redis);
}
