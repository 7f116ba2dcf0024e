//! Small shared pieces of the load generator: one monotonic clock that every
//! task stamps and reads (so one-way latency is a subtraction), latency
//! histograms and their summaries, `/proc` readings of a server process
//! (RSS, CPU time, open-file limits), and a bare HTTP GET for `/api/stats`.
//! They live together because every scenario needs most of them.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The process-wide time origin of every timestamp put in a payload.
pub fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`]; senders write it, receivers subtract it.
pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// Nanoseconds since [`epoch`] of a given instant (0 if before it).
pub fn ns_of(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_nanos() as u64
}

/// A latency histogram in microseconds, from 1 µs to 10 minutes.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Records a duration given in nanoseconds (clamped into the histogram).
pub fn record_ns(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record((ns / 1000).max(1));
}

/// One latency histogram written by many tasks. Each task records into its
/// own small buffer and adds the buffer to the shared histogram in one lock:
/// a histogram per task (hundreds of 160 KiB arrays, each touched at random)
/// made recording a cache and TLB miss per signal, 13% of the generator's CPU.
#[derive(Clone)]
pub struct SharedHist(std::sync::Arc<std::sync::Mutex<Histogram<u64>>>);

impl SharedHist {
    pub fn new() -> SharedHist {
        SharedHist(std::sync::Arc::new(std::sync::Mutex::new(new_hist())))
    }

    /// A recorder for one task.
    pub fn recorder(&self) -> Recorder {
        Recorder {
            to: self.clone(),
            buf: Vec::with_capacity(Recorder::BATCH),
        }
    }

    /// What has been recorded and flushed so far.
    pub fn snapshot(&self) -> Histogram<u64> {
        self.0.lock().expect("histogram lock").clone()
    }
}

/// One task's buffered writer into a [`SharedHist`]; flushed when full and
/// when dropped.
pub struct Recorder {
    to: SharedHist,
    buf: Vec<u64>,
}

impl Recorder {
    const BATCH: usize = 256;

    /// Records a duration given in nanoseconds (see [`record_ns`]).
    pub fn record_ns(&mut self, ns: u64) {
        self.buf.push(ns);
        if self.buf.len() == Self::BATCH {
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let mut h = self.to.0.lock().expect("histogram lock");
        for ns in self.buf.drain(..) {
            record_ns(&mut h, ns);
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }

    /// `p50 / p90 / p99 / p99.9 / max` in ms, for logs and tables.
    pub fn line(&self) -> String {
        format!(
            "p50 {:.3} / p90 {:.3} / p99 {:.3} / p99.9 {:.3} / max {:.3} ms (n={})",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms, self.count
        )
    }
}

/// Resident set size of a process, in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("VmRSS:") {
            let kib = rest.trim().trim_end_matches("kB").trim();
            return kib.parse().context("parsing VmRSS");
        }
    }
    bail!("no VmRSS in /proc/{pid}/status")
}

/// User + system CPU time consumed so far by a process (all its threads).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    cpu_split(pid).map(|(u, s)| u + s)
}

/// (user, system) CPU time consumed so far by a process (all its threads).
pub fn cpu_split(pid: u32) -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux architecture this runs on.
    Some((
        Duration::from_millis(utime * 10),
        Duration::from_millis(stime * 10),
    ))
}

/// Machine-wide CPU ticks from the first line of `/proc/stat`: (all, steal).
/// Steal is time the hypervisor gave this VM's CPUs to someone else.
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    Some((v.iter().take(8).sum(), *v.get(7)?))
}

/// Whether a process is still running (and not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            rest.split_whitespace()
                .next()
                .map(|st| st != "Z" && st != "X")
        })
        .unwrap_or(false)
}

/// The CPU time of this process.
pub fn own_cpu_time() -> Option<Duration> {
    cpu_time(std::process::id())
}

/// The soft and hard `RLIMIT_NOFILE` of this process.
pub fn nofile_limits() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    for line in limits.lines() {
        if line.starts_with("Max open files") {
            let nums: Vec<u64> = line
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            if nums.len() >= 2 {
                return (nums[0], nums[1]);
            }
        }
    }
    (1024, 1024)
}

/// Raises this process's soft open-file limit to its hard limit (children
/// inherit it). Returns the resulting (soft, hard).
pub fn raise_nofile() -> (u64, u64) {
    let (soft, hard) = nofile_limits();
    if soft < hard {
        let pid = std::process::id().to_string();
        let lim = format!("--nofile={hard}:{hard}");
        let _ = std::process::Command::new("prlimit")
            .args(["--pid", &pid, &lim])
            .status();
    }
    nofile_limits()
}

/// `GET path` over plain HTTP/1.1; the body of a 200 answer.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let fut = async {
        let mut s = TcpStream::connect(addr).await?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    let resp = tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .context("HTTP GET timed out")??;
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .context("no end of HTTP headers")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("GET {path}: {}", head.lines().next().unwrap_or_default());
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok(dechunk(body));
    }
    Ok(body.to_string())
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A rate in events per second, rounded for display.
pub fn fmt_rate(r: f64) -> String {
    if r >= 100.0 {
        format!("{:.0}", r)
    } else {
        format!("{:.1}", r)
    }
}

/// The line of `cmd args` output, or "unknown".
pub fn command_line_output(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks() {
        assert_eq!(dechunk("4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"), "Wikipedia");
    }

    #[test]
    fn reads_own_rss_and_cpu() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        assert!(own_cpu_time().is_some());
    }

    #[test]
    fn recorders_add_up_in_the_shared_histogram() {
        let shared = SharedHist::new();
        let mut a = shared.recorder();
        let mut b = shared.recorder();
        for us in 1..=300u64 {
            a.record_ns(us * 1000);
            b.record_ns(2 * us * 1000);
        }
        // A full batch is already in; the rest comes with flush and drop.
        assert_eq!(shared.snapshot().len(), 2 * Recorder::BATCH as u64);
        a.flush();
        drop(b);
        let h = shared.snapshot();
        assert_eq!(h.len(), 600);
        assert_eq!(h.max(), h.highest_equivalent(600));
        assert_eq!(h.min(), 1);
    }

    #[test]
    fn latency_of_histogram() {
        let mut h = new_hist();
        for us in 1..=1000u64 {
            record_ns(&mut h, us * 1000);
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 1000);
        assert!((l.p50_ms - 0.5).abs() < 0.01, "{l:?}");
        assert!((l.max_ms - 1.0).abs() < 0.01, "{l:?}");
    }
}
