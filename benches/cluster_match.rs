//! Criterion benchmark of cluster-mode matchmaking at the store: one
//! `find_match` plus one `leave_room` through the Lua script of a real
//! `redis-server`, with 1k and with 100k open rooms in the same bucket.
//! Its cost must not grow with the number of rooms (sorted sets, not scans).
//!
//! `cargo bench --bench cluster_match` (needs Debian's redis-server; the
//! 100k setup takes some seconds). The Redis server is started on a free
//! loopback port and stopped by its pid at the end.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::future::join_all;
use rendezvous::backend::redis::store::{ops, Store};

struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> (Redis, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server)");
    let guard = Redis(child);
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (guard, format!("redis://127.0.0.1:{port}/"))
}

/// Four candidate join codes, as the server passes them.
fn codes() -> Vec<String> {
    (0..4).map(|_| rendezvous::lobby::new_code_text()).collect()
}

const NOW: &str = "2026-11-22T00:00:00.000Z";

async fn hello(store: &Store, pid: &str) {
    store
        .run(&ops::Hello {
            conn: "0".into(),
            fresh: pid,
            name: "bench",
            resume: "",
            sub: "",
            token: &format!("t{pid}"),
            rooms: Vec::new(),
            max_rooms: 10_000_000,
            idle_ms: 3_600_000,
            fill_ms: 10_000,
            now: NOW.into(),
        })
        .await
        .expect("hello");
}

/// `rooms` open rooms of 3 in mode "m", one player each.
async fn preload(store: &Store, rooms: usize) {
    let ids: Vec<usize> = (0..rooms).collect();
    for chunk in ids.chunks(500) {
        join_all(chunk.iter().map(|i| async move {
            let pid = format!("host{i}");
            hello(store, &pid).await;
            store
                .run(&ops::CreateRoom {
                    p: &pid,
                    room_id: uuid::Uuid::new_v4().to_string(),
                    codes: codes(),
                    private: false,
                    mode: "m",
                    max: 3,
                    data: "{}".into(),
                    allowed_players: &[],
                    allowed_roles: &[],
                    backfill: false,
                    max_spectators: 0,
                    start_when_ready: false,
                    attrs: Vec::new(),
                    max_rooms: 10_000_000,
                    idle_ms: 3_600_000,
                    rid: "null".into(),
                    now: NOW.into(),
                })
                .await
                .unwrap_or_else(|e| panic!("create: {e}"));
        }))
        .await;
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // The store's connection manager spawns its tasks on this runtime.
    let _entered = rt.enter();
    let mut group = c.benchmark_group("cluster_find_match");
    group.sample_size(30);
    for rooms in [1_000usize, 100_000] {
        let (_redis, url) = start_redis();
        let store = Store::new(&url, "bench".into()).expect("store");
        rt.block_on(preload(&store, rooms));
        rt.block_on(hello(&store, "seeker"));
        group.bench_function(format!("{rooms}_rooms"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    store
                        .run(&ops::FindMatch {
                            p: "seeker",
                            attrs: Vec::new(),
                            data: "{}".into(),
                            room_id: uuid::Uuid::new_v4().to_string(),
                            codes: codes(),
                            max_rooms: 10_000_000,
                            idle_ms: 3_600_000,
                            mode: "m",
                            max: 3,
                            backfill: false,
                            max_spectators: 0,
                            start_when_ready: false,
                            rid: "1".into(),
                            now: NOW.into(),
                        })
                        .await
                        .expect("match");
                    store
                        .run(&ops::LeaveRoom {
                            p: "seeker",
                            rid: "2".into(),
                        })
                        .await
                        .expect("leave");
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
