//! Churn: C players loop for T seconds over connect, find a match, relay a
//! few signals each way, leave, close. Reports complete player cycles per
//! second and the cycle time, and for Rendezvous checks that `/api/stats`
//! returns to zero (no leaked connection, player or room) once they stop.
//!
//! Rendezvous and matchbox_server pair players themselves (`find_match`
//! with size 2, `?next=2`); the PeerJS server and the bare relay have no
//! matchmaking, so there a task runs both players of a pair with ids (or a
//! pair key) it chose.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::SinkExt;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::{nonce, timer_bar, Params};
use crate::target::{self, Frame, Kind, Payload, Session, Spot, Ws};
use crate::util::{self, Latency};

/// Longest wait for one step of a cycle.
const STEP: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Serialize)]
pub struct ChurnResult {
    pub concurrency: usize,
    pub signals_per_cycle: usize,
    pub duration_s: f64,
    /// Complete player cycles (one player: connect to close).
    pub cycles: u64,
    pub cycles_per_s: f64,
    pub failures: u64,
    pub first_error: Option<String>,
    /// Cycles cut short because the time was up.
    pub aborted: u64,
    pub latency: Latency,
    /// Server CPU time over the run, in cores (1.0 = one core busy).
    pub server_cores: Option<f64>,
    /// Generator CPU time over the run, in cores.
    pub client_cores: Option<f64>,
    /// Server CPU time per player cycle, in microseconds.
    pub server_cpu_us_per_cycle: Option<f64>,
    /// Rendezvous: whether `/api/stats` came back to zero, and in how long.
    pub stats_zero: Option<bool>,
    pub stats_zero_after_ms: Option<u64>,
    pub final_stats: Option<Value>,
}

struct Shared {
    kind: Kind,
    addr: SocketAddr,
    deadline: Instant,
    mode: String,
    /// Rendezvous: the `find_match` request of every cycle.
    find_match: String,
    signals: usize,
    cycles: AtomicU64,
    failures: AtomicU64,
    aborted: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
    src_ips: usize,
}

enum End {
    Done,
    /// Time ran out while waiting for a partner, or the partner left.
    Aborted,
}

pub async fn run(
    kind: Kind,
    addr: SocketAddr,
    pid: Option<u32>,
    p: &Params,
) -> anyhow::Result<ChurnResult> {
    let cpu0 = pid.and_then(util::cpu_time);
    let own0 = util::own_cpu_time();
    let started = Instant::now();
    let mode = format!("c{}", nonce());
    let shared = Arc::new(Shared {
        kind,
        addr,
        deadline: started + Duration::from_secs_f64(p.churn_s),
        mode: mode.clone(),
        find_match: json!({"type": "find_match", "rid": 1, "max_players": 2, "mode": mode})
            .to_string(),
        signals: p.churn_signals,
        cycles: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        aborted: AtomicU64::new(0),
        first_error: std::sync::Mutex::new(None),
        src_ips: p.src_ips,
    });
    let pb = timer_bar(p.churn_s, format!("{} churn", kind.name()));
    let ticker = {
        let pb = pb.clone();
        let deadline = shared.deadline;
        tokio::spawn(async move {
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
                pb.inc(1);
            }
        })
    };
    let workers = if kind.has_matchmaking() {
        p.churn_concurrency
    } else {
        p.churn_concurrency.div_ceil(2)
    };
    let mut tasks = Vec::new();
    for w in 0..workers {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move { worker(shared, w).await }));
    }
    let mut hist = util::new_hist();
    let limit = Duration::from_secs_f64(p.churn_s) + STEP * 3;
    let joined = tokio::time::timeout(limit, futures_util::future::join_all(tasks))
        .await
        .context("churn workers did not stop in time")?;
    for h in joined.into_iter().flatten() {
        hist.add(&h).ok();
    }
    let cpu = match (cpu0, pid.and_then(util::cpu_time)) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64()),
        _ => None,
    };
    let wall = started.elapsed().as_secs_f64();
    let own = match (own0, util::own_cpu_time()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64() / wall),
        _ => None,
    };
    let duration_s = wall.min(p.churn_s.max(0.001));
    let _ = ticker.await;
    pb.finish_and_clear();
    let cycles = shared.cycles.load(Ordering::Relaxed);
    let mut result = ChurnResult {
        concurrency: p.churn_concurrency,
        signals_per_cycle: p.churn_signals,
        duration_s,
        cycles,
        cycles_per_s: cycles as f64 / duration_s,
        failures: shared.failures.load(Ordering::Relaxed),
        first_error: shared.first_error.lock().expect("lock").clone(),
        aborted: shared.aborted.load(Ordering::Relaxed),
        latency: Latency::of(&hist),
        server_cores: cpu.map(|c| c / wall),
        client_cores: own,
        server_cpu_us_per_cycle: cpu.map(|c| c * 1e6 / cycles.max(1) as f64),
        stats_zero: None,
        stats_zero_after_ms: None,
        final_stats: None,
    };
    if kind == Kind::Rendezvous {
        let t0 = Instant::now();
        loop {
            let stats: Value = serde_json::from_str(&util::http_get(addr, "/api/stats").await?)?;
            let zero = [
                "connections",
                "total_players",
                "total_rooms",
                "players_waiting",
            ]
            .iter()
            .all(|k| stats[k].as_u64() == Some(0));
            if zero || t0.elapsed() > Duration::from_secs(30) {
                result.stats_zero = Some(zero);
                result.stats_zero_after_ms = zero.then(|| t0.elapsed().as_millis() as u64);
                result.final_stats = Some(stats);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(result)
}

async fn worker(shared: Arc<Shared>, w: usize) -> Histogram<u64> {
    let mut hist = util::new_hist();
    let mut round = 0usize;
    while Instant::now() < shared.deadline {
        let t0 = Instant::now();
        let src = target::src_ip(w * 7919 + round, shared.src_ips);
        let r = match shared.kind {
            Kind::Rendezvous => rendezvous_cycle(&shared, src).await.map(|e| (e, 1)),
            Kind::Matchbox => matchbox_cycle(&shared, src).await.map(|e| (e, 1)),
            Kind::Peerjs | Kind::Bare => pair_cycle(&shared, w, round).await.map(|e| (e, 2)),
        };
        round += 1;
        match r {
            Ok((End::Done, players)) => {
                shared.cycles.fetch_add(players, Ordering::Relaxed);
                for _ in 0..players {
                    util::record_ns(&mut hist, t0.elapsed().as_nanos() as u64);
                }
            }
            Ok((End::Aborted, _)) => {
                shared.aborted.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                if Instant::now() < shared.deadline {
                    shared.failures.fetch_add(1, Ordering::Relaxed);
                    shared
                        .first_error
                        .lock()
                        .expect("lock")
                        .get_or_insert_with(|| format!("{e:#}"));
                } else {
                    shared.aborted.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    hist
}

/// Sends `n` signals to `to` in one flush.
async fn send_signals(ws: &mut Ws, frame: &Frame, n: usize) -> anyhow::Result<()> {
    for _ in 0..n {
        ws.feed(frame.stamped(util::now_ns())).await?;
    }
    ws.flush().await?;
    Ok(())
}

/// Reads until `n` signals arrived; `Aborted` if `gone` says the peer left.
async fn recv_signals(ws: &mut Ws, n: usize, gone: impl Fn(&str) -> bool) -> anyhow::Result<End> {
    let mut got = 0;
    while got < n {
        let text = target::next_text(ws, STEP).await?;
        if target::timestamp_of(&text).is_some() {
            got += 1;
        } else if gone(&text) {
            return Ok(End::Aborted);
        }
    }
    Ok(End::Done)
}

async fn rendezvous_cycle(sh: &Shared, src: std::net::Ipv4Addr) -> anyhow::Result<End> {
    let spot = Spot {
        room: "",
        next: None,
    };
    let cfg = target::client_config(4096, 4096);
    let Session { mut ws, id } = target::open(sh.kind, sh.addr, &spot, src, cfg).await?;
    let players = target::rdv_find_match(&mut ws, &sh.find_match).await?;
    let peer = match players.into_iter().find(|p| *p != id) {
        Some(p) => p,
        None => {
            // Wait for the second player, or give up when time is up.
            #[derive(serde::Deserialize)]
            struct Joined {
                player: target::PlayerRef,
            }
            let waited = tokio::time::timeout_at(
                sh.deadline
                    .max(Instant::now() + Duration::from_millis(1))
                    .into(),
                target::wait_for(&mut ws, Duration::from_secs(3600), |t| {
                    if !t.contains("\"player_joined\"") {
                        return None;
                    }
                    let v: Joined = serde_json::from_str(t).ok()?;
                    Some(v.player.player_id)
                }),
            )
            .await;
            match waited {
                Ok(p) => p?,
                Err(_) => {
                    leave_and_close(ws).await;
                    return Ok(End::Aborted);
                }
            }
        }
    };
    let frame = Frame::new(sh.kind, Payload::Candidate, &peer);
    send_signals(&mut ws, &frame, sh.signals).await?;
    let end = recv_signals(&mut ws, sh.signals, |t| t.contains("\"player_left\"")).await?;
    leave_and_close(ws).await;
    Ok(end)
}

/// `leave_room` and the close frame, in one write.
async fn leave_and_close(ws: Ws) {
    let leave = Message::text(r#"{"type":"leave_room","rid":2}"#);
    target::close_after(ws, Some(leave)).await;
}

async fn matchbox_cycle(sh: &Shared, src: std::net::Ipv4Addr) -> anyhow::Result<End> {
    let spot = Spot {
        room: &sh.mode,
        next: Some(2),
    };
    let cfg = target::client_config(4096, 4096);
    let Session { mut ws, .. } = target::open(sh.kind, sh.addr, &spot, src, cfg).await?;
    // First of the pair: told about the second. Second: learns the first
    // from its first signal.
    let first = tokio::time::timeout_at(
        sh.deadline
            .max(Instant::now() + Duration::from_millis(1))
            .into(),
        target::wait_for(&mut ws, Duration::from_secs(3600), |t| {
            if let Some(p) = target::matchbox_event(t, "NewPeer") {
                return Some((p, 0usize));
            }
            target::matchbox_sender(t).map(|p| (p, 1usize))
        }),
    )
    .await;
    let (peer, already) = match first {
        Ok(r) => r?,
        Err(_) => {
            target::close(ws).await;
            return Ok(End::Aborted);
        }
    };
    let frame = Frame::new(sh.kind, Payload::Candidate, &peer);
    send_signals(&mut ws, &frame, sh.signals).await?;
    let end = recv_signals(&mut ws, sh.signals - already.min(sh.signals), |t| {
        t.contains("PeerLeft")
    })
    .await?;
    target::close(ws).await;
    Ok(end)
}

async fn pair_cycle(sh: &Shared, w: usize, round: usize) -> anyhow::Result<End> {
    let key = format!("{}w{w}r{round}", sh.mode);
    let srcs = (
        target::src_ip(2 * w + round, sh.src_ips),
        target::src_ip(2 * w + round + 1, sh.src_ips),
    );
    let cfg = target::client_config(4096, 4096);
    let (mut a, mut b) = target::open_pair(sh.kind, sh.addr, &key, srcs, cfg).await?;
    let fa = Frame::new(sh.kind, Payload::Candidate, &b.id);
    let fb = Frame::new(sh.kind, Payload::Candidate, &a.id);
    send_signals(&mut a.ws, &fa, sh.signals).await?;
    send_signals(&mut b.ws, &fb, sh.signals).await?;
    let ea = recv_signals(&mut a.ws, sh.signals, |_| false).await?;
    let eb = recv_signals(&mut b.ws, sh.signals, |_| false).await?;
    target::close(a.ws).await;
    target::close(b.ws).await;
    match (ea, eb) {
        (End::Done, End::Done) => Ok(End::Done),
        _ => bail!("pair cycle cut short"),
    }
}
