//! Hostile peers that flood pings and read nothing (issue 35, point 2).
//!
//! Every ping is answered with a pong; a peer that never reads leaves the
//! pongs with the server. They used to pile up in the connection's write
//! buffer without bound on `/ws` (16 sockets flooding for 12 s grew the
//! server by 115 MB). The bound every other frame gets must hold for pongs
//! too, on every endpoint: the server keeps little per hostile socket, and
//! a peer that reads nothing for `--heartbeat-timeout-ms` is closed.
//!
//! The server is the real binary in a process of its own, so that its
//! memory (`VmRSS` in `/proc/<pid>/status`) is the server's alone. The
//! peers are raw TCP sockets with a small receive buffer (the kernel's
//! buffers fill after a few KiB), doing the upgrade by hand.

mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::spawn_binary;

/// Flooding sockets per endpoint.
const SOCKETS: usize = 4;
/// What each socket sends at most: 8 MiB of pings (64 000 of them).
const BUDGET: usize = 8 << 20;
/// A write that makes no progress for this long: the server stopped
/// reading (it waits for the peer to take what it wrote).
const STALL: Duration = Duration::from_millis(1500);
/// The most the server may grow by for each flooding socket.
const GROWTH_PER_SOCKET_KIB: u64 = 2048;

/// A masked ping with the largest payload a control frame may carry.
fn ping() -> Vec<u8> {
    let mut f = vec![0x89, 0x80 | 125, 0x12, 0x34, 0x56, 0x78];
    f.extend((0..125u8).map(|i| i ^ [0x12, 0x34, 0x56, 0x78][i as usize % 4]));
    f
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Connects with a small receive buffer and upgrades to `path`; the
/// socket and what came after the answer's head.
async fn upgrade(addr: &str, path: &str) -> (TcpStream, Vec<u8>) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock.connect(addr.parse().unwrap()).await.unwrap();
    s.set_nodelay(true).unwrap();
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                return i + 4;
            }
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "{path}: closed before answering");
            got.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("an answer to the upgrade within 10 s");
    let answer = String::from_utf8_lossy(&got[..end]).to_string();
    assert!(answer.starts_with("HTTP/1.1 101"), "{path}: {answer}");
    (s, got[end..].to_vec())
}

/// A new peer on `path` gets its first text frame (the endpoint's
/// greeting) within 5 s: the server still serves others.
async fn served(addr: &str, path: &str) -> String {
    let (mut s, mut got) = upgrade(addr, path).await;
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if got.len() >= 2 {
                assert_eq!(got[0], 0x81, "{path}: a text frame first");
                let (len, head) = match got[1] {
                    126 if got.len() >= 4 => (u16::from_be_bytes([got[2], got[3]]) as usize, 4),
                    126 => (usize::MAX, 4),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && got.len() >= head + len {
                    return String::from_utf8_lossy(&got[head..head + len]).to_string();
                }
            }
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "{path}: closed before its first frame");
            got.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{path}: no first frame within 5 s while others flood"))
}

/// How a flood ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Flood {
    /// All of the budget went out.
    Sent,
    /// The server stopped reading.
    Stalled,
    /// The server closed or reset the connection.
    Closed,
}

/// Sends pings on `s`, never reading, until the budget is spent, the
/// server stops reading, or it closes the connection.
async fn flood(s: &mut TcpStream) -> (Flood, usize) {
    let chunk: Vec<u8> = std::iter::repeat_n(ping(), 256).flatten().collect();
    let mut sent = 0;
    while sent < BUDGET {
        match tokio::time::timeout(STALL, s.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            Ok(Err(_)) => return (Flood::Closed, sent),
            Err(_) => return (Flood::Stalled, sent),
        }
    }
    (Flood::Sent, sent)
}

/// Whether the server ends `s` within `wait`, told without reading: a
/// read would take pongs off the server's hands and let it go on. The
/// flood goes on instead; a write fails once the server has closed (or
/// reset) the connection, and a write blocked on a full buffer is woken
/// by the reset.
async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let ping = ping();
    tokio::time::timeout(wait, async { while s.write_all(&ping).await.is_ok() {} })
        .await
        .is_ok()
}

/// Floods `SOCKETS` peers of `path(i)` at once; what each flood did.
async fn flood_all(addr: &str, path: fn(usize) -> String) -> (Vec<TcpStream>, Vec<(Flood, usize)>) {
    let mut socks = Vec::new();
    for i in 0..SOCKETS {
        socks.push(upgrade(addr, &path(i)).await.0);
    }
    let tasks: Vec<_> = socks
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let r = flood(&mut s).await;
                (s, r)
            })
        })
        .collect();
    let mut socks = Vec::new();
    let mut results = Vec::new();
    for t in tasks {
        let (s, r) = t.await.unwrap();
        socks.push(s);
        results.push(r);
    }
    (socks, results)
}

/// The server's growth while `SOCKETS` peers of `path(i)` flood pings and
/// read nothing stays under the bound, and a new peer of the same endpoint
/// is served meanwhile. The heartbeat is far off (60 s): neither the
/// server's own pings nor the heartbeat timeout end the flood here.
async fn memory_case(path: fn(usize) -> String, greeting: &str) {
    let (child, addr) = spawn_binary(
        &[
            "--heartbeat-interval-ms",
            "60000",
            "--heartbeat-timeout-ms",
            "60000",
        ],
        &[],
        false,
    );
    let pid = child.0.id();
    // The allocator's first arenas and the endpoint's first use.
    assert!(served(&addr, &path(100)).await.contains(greeting));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib(pid);
    let (socks, results) = flood_all(&addr, path).await;
    let after = rss_kib(pid);
    let growth = after.saturating_sub(before);
    eprintln!(
        "{}: {results:?}; VmRSS {before} -> {after} KiB, +{} KiB per socket",
        path(0),
        growth / SOCKETS as u64
    );
    assert!(
        growth <= GROWTH_PER_SOCKET_KIB * SOCKETS as u64,
        "{}: the server grew by {growth} KiB for {SOCKETS} sockets flooding pings \
         and reading nothing (bound {GROWTH_PER_SOCKET_KIB} KiB each); floods: {results:?}",
        path(0)
    );
    assert!(
        served(&addr, &path(101)).await.contains(greeting),
        "greeting"
    );
    drop(socks);
    drop(child);
}

/// A peer that floods pings and reads nothing is closed once it has read
/// nothing for `--heartbeat-timeout-ms` (2 s here), like a slow reader
/// of any other frame.
async fn close_case(path: fn(usize) -> String) {
    let (child, addr) = spawn_binary(
        &[
            "--heartbeat-interval-ms",
            "500",
            "--heartbeat-timeout-ms",
            "2000",
        ],
        &[],
        false,
    );
    let (socks, results) = flood_all(&addr, path).await;
    for (i, mut s) in socks.into_iter().enumerate() {
        assert!(
            closed_within(&mut s, Duration::from_secs(10)).await,
            "{}: still open 10 s after its flood ({:?}); the heartbeat timeout is 2 s",
            path(i),
            results[i]
        );
    }
    drop(child);
}

fn ws_path(i: usize) -> String {
    format!("/ws?name=flood{i}")
}

fn peerjs_path(i: usize) -> String {
    format!("/peerjs/peerjs?key=peerjs&id=flood{i}&token=t{i}&version=1.5.5")
}

fn matchbox_path(i: usize) -> String {
    format!("/matchbox/flood{i}")
}

#[tokio::test]
async fn ws_ping_flood_memory_is_bounded() {
    memory_case(ws_path, "welcome").await;
}

#[tokio::test]
async fn peerjs_ping_flood_memory_is_bounded() {
    memory_case(peerjs_path, "OPEN").await;
}

#[tokio::test]
async fn matchbox_ping_flood_memory_is_bounded() {
    memory_case(matchbox_path, "IdAssigned").await;
}

#[tokio::test]
async fn ws_ping_flood_is_closed_as_a_slow_reader() {
    close_case(ws_path).await;
}

#[tokio::test]
async fn peerjs_ping_flood_is_closed_as_a_slow_reader() {
    close_case(peerjs_path).await;
}

#[tokio::test]
async fn matchbox_ping_flood_is_closed_as_a_slow_reader() {
    close_case(matchbox_path).await;
}
