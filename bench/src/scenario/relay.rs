//! Relay: P pairs of players, each player sending signals to its peer, the
//! receiver measuring one-way latency from the timestamp in the payload.
//!
//! At the maximum rate each sender keeps at most `window` signals in flight
//! (sent and not yet received by its peer): a closed loop that finds the
//! server's throughput without overflowing any queue. At a set rate each
//! sender ticks on a schedule (catching up in a burst when late) and stamps
//! the actual send time: tokio's timer has a 1 ms grain, and stamping the
//! scheduled time would add up to 1 ms of generator lateness to every
//! target's latency. How late the senders were is reported separately
//! (`sender_lag`), so a stalled generator cannot hide.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{watch, Semaphore};

use super::{bar, nonce, timer_bar, Params};
use crate::rawws::{Incoming, RawWs};
use crate::target::{self, Frame, Kind, Session};
use crate::util::{self, Latency};

/// One relay measurement.
#[derive(Debug, Clone, Serialize)]
pub struct RelayRun {
    /// Signals per second asked for (none: as fast as possible).
    pub offered_rate: Option<f64>,
    pub pairs: usize,
    pub duration_s: f64,
    /// Signals received in the measured window, per second.
    pub rate: f64,
    /// Median of the per-second rates in the window.
    pub rate_median_1s: Option<f64>,
    pub rate_samples_1s: Vec<f64>,
    pub received_in_window: u64,
    pub sent: u64,
    pub received: u64,
    /// Sent but never received (after a drain of up to 3 s).
    pub lost: u64,
    /// Error replies or error events seen by senders.
    pub errors: u64,
    pub first_error: Option<String>,
    pub frame_bytes: usize,
    pub latency: Latency,
    /// Paced runs: how late senders were on their schedule.
    pub sender_lag: Option<Latency>,
    /// Server CPU time over the window, in cores (1.0 = one core busy).
    pub server_cores: Option<f64>,
    /// Share of the server's CPU time spent in the kernel (system time).
    pub server_kernel_share: Option<f64>,
    /// Generator CPU time over the window, in cores.
    pub client_cores: Option<f64>,
    /// When the server is several processes (a cluster and its Redis): each
    /// one's CPU time over the window; `server_cores` is their sum.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub server_processes: Vec<ProcessCores>,
    /// Share of the machine's CPU time stolen by the hypervisor over the
    /// window (a VM's noise: a high value marks a disturbed run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steal_share: Option<f64>,
}

/// CPU time of one server process over the measured window, in cores.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessCores {
    pub name: String,
    pub pid: u32,
    pub cores: Option<f64>,
}

/// The players of a relay run, two by two, before any signal is sent.
pub type Pairs = Vec<(Session, Session)>;

struct Window {
    from: AtomicU64,
    to: AtomicU64,
}

struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

/// Runs one relay measurement against the server at `addr` (pid `pid`).
pub async fn run(
    kind: Kind,
    addr: SocketAddr,
    pid: Option<u32>,
    p: &Params,
    rate: Option<f64>,
) -> anyhow::Result<RelayRun> {
    let pairs = open_pairs(kind, (addr, addr), p, kind.name()).await?;
    let servers: Vec<(String, u32)> = pid
        .map(|pid| (kind.name().to_string(), pid))
        .into_iter()
        .collect();
    measure(kind, pairs, &servers, p, rate, kind.name()).await
}

/// Opens `p.pairs` pairs, the first player of each at `addrs.0` and the
/// second at `addrs.1` (the same address but for a cluster's two nodes).
pub async fn open_pairs(
    kind: Kind,
    addrs: (SocketAddr, SocketAddr),
    p: &Params,
    label: &str,
) -> anyhow::Result<Pairs> {
    let tag = nonce();
    let cfg = relay_socket_config();
    let pb = bar(p.pairs as u64, format!("{label} relay: pairs"));
    let gate = Arc::new(Semaphore::new(32));
    let mut setups = Vec::new();
    for i in 0..p.pairs {
        let gate = gate.clone();
        let key = format!("r{tag}x{i}");
        let srcs = (
            target::src_ip(2 * i, p.src_ips),
            target::src_ip(2 * i + 1, p.src_ips),
        );
        let pb = pb.clone();
        setups.push(tokio::spawn(async move {
            let _permit = gate.acquire().await?;
            let r = target::open_pair_across(kind, addrs, &key, srcs, cfg).await;
            pb.inc(1);
            r
        }));
    }
    let mut pairs = Vec::new();
    for s in setups {
        pairs.push(s.await??);
    }
    pb.finish_and_clear();
    Ok(pairs)
}

/// WebSocket settings of relay players while they are seated (then
/// `RawWs` takes their sockets over and these buffers go).
fn relay_socket_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    target::client_config(8 * 1024, 64 * 1024)
}

/// CPU time (user, system) of every process of `pids`, summed; none if one
/// of them cannot be read.
fn cpu_split_sum(pids: &[u32]) -> Option<(Duration, Duration)> {
    let mut total = (Duration::ZERO, Duration::ZERO);
    for &pid in pids {
        let (u, s) = util::cpu_split(pid)?;
        total.0 += u;
        total.1 += s;
    }
    (!pids.is_empty()).then_some(total)
}

/// Drives open pairs: the measurement proper. `servers` are the processes
/// (name, pid) whose CPU time is the server's; `label` names the run on the
/// progress bar.
pub async fn measure(
    kind: Kind,
    pairs: Pairs,
    servers: &[(String, u32)],
    p: &Params,
    rate: Option<f64>,
    label: &str,
) -> anyhow::Result<RelayRun> {
    let pids: Vec<u32> = servers.iter().map(|s| s.1).collect();
    let counters = Arc::new(Counters {
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        first_error: std::sync::Mutex::new(None),
    });
    let window = Arc::new(Window {
        from: AtomicU64::new(u64::MAX),
        to: AtomicU64::new(u64::MAX),
    });
    let (stop_send, stop_send_rx) = watch::channel(false);
    let (stop_recv, stop_recv_rx) = watch::channel(false);
    let senders_total = 2 * pairs.len();
    let start = Instant::now() + Duration::from_millis(50);
    let latencies = util::SharedHist::new();
    let lags = util::SharedHist::new();
    let mut frame_bytes = 0;
    // Each player's socket is taken over from tungstenite (see `rawws`),
    // all at once.
    let mut taken = Vec::new();
    for (a, b) in pairs {
        let (ta, tb) = (a.ws, b.ws);
        taken.push((
            a.id,
            b.id,
            tokio::spawn(RawWs::take(ta, target::STEP_TIMEOUT)),
            tokio::spawn(RawWs::take(tb, target::STEP_TIMEOUT)),
        ));
    }
    let mut tasks = Vec::new();
    for (i, (a_id, b_id, ra, rb)) in taken.into_iter().enumerate() {
        let (ra, rb) = (ra.await??, rb.await??);
        let ab = Arc::new(Semaphore::new(p.window));
        let ba = Arc::new(Semaphore::new(p.window));
        let fa = Frame::new(kind, p.payload, &b_id);
        let fb = Frame::new(kind, p.payload, &a_id);
        frame_bytes = fa.len();
        // a sends on a->b permits and frees b->a ones as b's signals come in.
        for (j, (raw, frame, send_sem, recv_sem)) in
            [(ra, fa, ab.clone(), ba.clone()), (rb, fb, ba, ab)]
                .into_iter()
                .enumerate()
        {
            let player = Player {
                kind,
                raw,
                frame,
                send_sem,
                recv_sem,
                counters: counters.clone(),
                window: window.clone(),
                stop_send: stop_send_rx.clone(),
                stop_recv: stop_recv_rx.clone(),
                latencies: latencies.recorder(),
                lag: lags.recorder(),
                in_window: 0,
            };
            let offset = (2 * i + j) as f64 / senders_total as f64;
            let per_sender = rate.map(|r| r / senders_total as f64);
            tasks.push(tokio::spawn(player.run(per_sender, start, offset)));
        }
    }

    // Warm up, then measure.
    let label = match rate {
        Some(r) => format!("{label} relay @{}/s", util::fmt_rate(r)),
        None => format!("{label} relay max"),
    };
    let pb = timer_bar(p.warmup_s + p.relay_s, label);
    let tick = |pb: &indicatif::ProgressBar, until: Instant| {
        let pb = pb.clone();
        async move {
            while Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(100)).await;
                pb.inc(1);
            }
        }
    };
    let warm_end = start + Duration::from_secs_f64(p.warmup_s);
    tick(&pb, warm_end).await;
    let split0 = cpu_split_sum(&pids);
    let cpu0 = (split0.map(|(u, s)| u + s), util::own_cpu_time());
    let each0: Vec<Option<Duration>> = pids.iter().map(|&p| util::cpu_time(p)).collect();
    let ticks0 = util::machine_ticks();
    let t0 = Instant::now();
    window.from.store(util::ns_of(t0), Ordering::Relaxed);
    let t1 = t0 + Duration::from_secs_f64(p.relay_s);
    window.to.store(util::ns_of(t1), Ordering::Relaxed);
    // Per-second rates over the window show how steady the run was (the
    // machine may be shared: a burst of steal time lowers one second only).
    let mut samples = Vec::new();
    let mut last = counters.received.load(Ordering::Relaxed);
    let mut last_t = Instant::now();
    while Instant::now() < t1 {
        let next = (last_t + Duration::from_secs(1)).min(t1);
        tick(&pb, next).await;
        let now = counters.received.load(Ordering::Relaxed);
        let dt = last_t.elapsed().as_secs_f64();
        if dt > 0.5 {
            samples.push((now - last) as f64 / dt);
        }
        last = now;
        last_t = Instant::now();
    }
    let split1 = cpu_split_sum(&pids);
    let cpu1 = (split1.map(|(u, s)| u + s), util::own_cpu_time());
    let each1: Vec<Option<Duration>> = pids.iter().map(|&p| util::cpu_time(p)).collect();
    let ticks1 = util::machine_ticks();
    let measured = t0.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let _ = stop_send.send(true);
    // Drain what is in flight.
    let drain_end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < drain_end
        && counters.received.load(Ordering::Relaxed) < counters.sent.load(Ordering::Relaxed)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_recv.send(true);
    let mut in_window = 0;
    for t in tasks {
        if let Ok(n) = t.await {
            in_window += n;
        }
    }
    let hist = latencies.snapshot();
    let lag = rate.map(|_| lags.snapshot());
    let first_error = counters.first_error.lock().expect("lock").clone();
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied();
    let sent = counters.sent.load(Ordering::Relaxed);
    let received = counters.received.load(Ordering::Relaxed);
    let cores = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => Some((b.saturating_sub(a)).as_secs_f64() / measured),
        _ => None,
    };
    Ok(RelayRun {
        offered_rate: rate,
        pairs: p.pairs,
        duration_s: measured,
        rate: in_window as f64 / measured,
        rate_median_1s: median,
        rate_samples_1s: samples,
        received_in_window: in_window,
        sent,
        received,
        lost: sent.saturating_sub(received),
        errors: counters.errors.load(Ordering::Relaxed),
        first_error,
        frame_bytes,
        latency: Latency::of(&hist),
        sender_lag: lag.as_ref().map(Latency::of),
        server_cores: cores(cpu0.0, cpu1.0),
        server_kernel_share: match (split0, split1) {
            (Some((u0, s0)), Some((u1, s1))) => {
                let (u, s) = (u1.saturating_sub(u0), s1.saturating_sub(s0));
                (u + s > Duration::ZERO).then(|| s.as_secs_f64() / (u + s).as_secs_f64())
            }
            _ => None,
        },
        client_cores: cores(cpu0.1, cpu1.1),
        steal_share: match (ticks0, ticks1) {
            (Some((t0, s0)), Some((t1, s1))) if t1 > t0 => {
                Some(s1.saturating_sub(s0) as f64 / (t1 - t0) as f64)
            }
            _ => None,
        },
        server_processes: if servers.len() > 1 {
            servers
                .iter()
                .zip(each0.iter().zip(&each1))
                .map(|((name, pid), (&a, &b))| ProcessCores {
                    name: name.clone(),
                    pid: *pid,
                    cores: cores(a, b),
                })
                .collect()
        } else {
            Vec::new()
        },
    })
}

/// One player: its socket, sending at its pace and reading its peer's
/// signals, in one task.
struct Player {
    kind: Kind,
    raw: RawWs,
    frame: Frame,
    /// Permits to send (at the maximum rate: signals in flight to the peer).
    send_sem: Arc<Semaphore>,
    /// Permits given back to the peer for each of its signals received.
    recv_sem: Arc<Semaphore>,
    counters: Arc<Counters>,
    window: Arc<Window>,
    stop_send: watch::Receiver<bool>,
    stop_recv: watch::Receiver<bool>,
    /// Latencies of the signals received in the window.
    latencies: util::Recorder,
    /// Paced runs: how late each signal was on its schedule.
    lag: util::Recorder,
    in_window: u64,
}

/// When a player next sends: on its schedule, or when permits are free.
enum Pace {
    Flat,
    Paced(Schedule),
}

/// A sender's schedule: a signal every `period` from `next`. Ticks are
/// counted by arithmetic on one timer, reset once per wake-up: tokio's
/// `Interval` re-arms its timer for every tick taken, and at a 1 ms timer
/// grain a sender takes several per wake-up.
struct Schedule {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// When the next signal is due, in [`util::now_ns`] time.
    next: u64,
    period: u64,
}

impl Schedule {
    fn new(first: Instant, period: Duration) -> Self {
        Schedule {
            sleep: Box::pin(tokio::time::sleep_until(first.into())),
            next: util::ns_of(first),
            period: (period.as_nanos() as u64).max(1),
        }
    }

    /// Waits until signals are due; how many (a late sender catches up in
    /// one write), each one's lateness recorded, and the clock read once.
    async fn due(&mut self, lag: &mut util::Recorder) -> (u64, u64) {
        self.sleep.as_mut().await;
        let now = util::now_ns();
        let mut n = 0;
        while self.next <= now {
            lag.record_ns(now - self.next);
            self.next += self.period;
            n += 1;
        }
        let at = util::epoch() + Duration::from_nanos(self.next);
        self.sleep.as_mut().reset(at.into());
        (n, now)
    }
}

impl Player {
    /// Runs until stopped; the number of signals received in the window.
    async fn run(mut self, rate: Option<f64>, start: Instant, offset: f64) -> u64 {
        let mut pace = match rate {
            None => Pace::Flat,
            Some(r) => {
                let period = Duration::from_secs_f64(1.0 / r.max(0.001));
                let first = start + period.mul_f64(offset);
                Pace::Paced(Schedule::new(first, period))
            }
        };
        tokio::time::sleep_until(start.into()).await;
        let mut sending = true;
        loop {
            let unsent = self.raw.has_unsent();
            tokio::select! {
                biased;
                _ = self.stop_recv.changed() => break,
                _ = self.stop_send.changed(), if sending => sending = false,
                r = self.raw.tcp.readable() => {
                    if r.is_err() || !self.read() {
                        break;
                    }
                }
                r = self.raw.tcp.writable(), if unsent => {
                    if r.is_err() || self.raw.try_flush().is_err() {
                        break;
                    }
                }
                (n, now) = next_batch(&mut pace, &self.send_sem, &mut self.lag), if sending && !unsent => {
                    // One clock read per batch: its signals leave in one
                    // write.
                    let now = now.unwrap_or_else(util::now_ns);
                    for _ in 0..n {
                        self.put_signal(now);
                    }
                    self.counters.sent.fetch_add(n, Ordering::Relaxed);
                    if self.raw.try_flush().is_err() {
                        break;
                    }
                }
            }
        }
        self.raw.put_close();
        let _ = self.raw.try_flush();
        self.in_window
    }

    fn put_signal(&mut self, now: u64) {
        let mut digits = [0u8; 20];
        let ts = put_u64(&mut digits, now);
        let (head, tail) = self.frame.parts();
        self.raw.put_text(&[head.as_bytes(), ts, tail.as_bytes()]);
    }

    /// Takes in what was read; false once the connection is over.
    fn read(&mut self) -> bool {
        let Player {
            kind,
            raw,
            recv_sem,
            counters,
            window,
            latencies,
            in_window,
            ..
        } = self;
        let mut closed = false;
        let ok = raw.try_read(|frame| {
            let (text, now) = match frame {
                Incoming::Text(t, at) => (t, at),
                Incoming::Closed => {
                    closed = true;
                    return;
                }
            };
            let Ok(text) = std::str::from_utf8(text) else {
                return;
            };
            match target::timestamp_of(text) {
                Some(ts) => {
                    recv_sem.add_permits(1);
                    counters.received.fetch_add(1, Ordering::Relaxed);
                    let from = window.from.load(Ordering::Relaxed);
                    let to = window.to.load(Ordering::Relaxed);
                    if now >= from && now < to {
                        *in_window += 1;
                        latencies.record_ns(now.saturating_sub(ts));
                    }
                }
                None => {
                    if target::is_error(*kind, text)
                        && counters.errors.fetch_add(1, Ordering::Relaxed) == 0
                    {
                        let mut e: String = text.chars().take(300).collect();
                        e.retain(|c| c != '\n');
                        *counters.first_error.lock().expect("lock") = Some(e);
                    }
                }
            }
        });
        // A pong answering the server's ping goes out now.
        let flushed = !raw.has_unsent() || raw.try_flush().is_ok();
        matches!(ok, Ok(true)) && !closed && flushed
    }
}

/// Waits for the next signals to send; how many, and (paced) the clock
/// read when they fell due. At the maximum rate: free permits, up to 64 at
/// once. Paced: the ticks due (a late sender catches up in one write), each
/// one's lateness recorded.
async fn next_batch(
    pace: &mut Pace,
    sem: &Semaphore,
    lag: &mut util::Recorder,
) -> (u64, Option<u64>) {
    match pace {
        Pace::Flat => {
            let Ok(permit) = sem.acquire().await else {
                return std::future::pending().await;
            };
            permit.forget();
            let mut n = 1u64;
            while n < 64 {
                match sem.try_acquire() {
                    Ok(p) => {
                        p.forget();
                        n += 1;
                    }
                    Err(_) => break,
                }
            }
            (n, None)
        }
        Pace::Paced(schedule) => {
            let (n, now) = schedule.due(lag).await;
            (n, Some(now))
        }
    }
}

/// `n` in decimal, written at the end of `buf`; the digits.
fn put_u64(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[at..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_in_decimal() {
        for n in [0, 9, 10, 1_234_567_890_123, u64::MAX] {
            let mut buf = [0u8; 20];
            assert_eq!(put_u64(&mut buf, n), n.to_string().as_bytes());
        }
    }
}
