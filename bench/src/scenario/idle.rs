//! Idle: open N sockets that do nothing but answer pings, and read how much
//! the server's resident memory grew per socket. One process can hold only
//! as many sockets as its open-file limit allows, so the sockets are held by
//! worker processes (`rendezvous-bench idle-worker`, at most
//! [`PER_WORKER`] sockets each), spread over several 127.0.0.x source
//! addresses. Workers are told to close on stdin and are killed by pid if
//! they do not exit.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::StreamExt;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;

use super::{bar, nonce, Params};
use crate::target::{self, Kind, Spot};
use crate::util;

/// Sockets held by one worker process (its open-file limit is 20000 here).
pub const PER_WORKER: usize = 10_000;

/// How long workers hold their sockets at most, whatever happens.
const HOLD_LIMIT: Duration = Duration::from_secs(900);

#[derive(Debug, Clone, Serialize)]
pub struct IdleStep {
    pub wanted: usize,
    pub connected: usize,
    pub failed: usize,
    pub rss_kib: u64,
    /// (RSS now - RSS before any socket) / sockets connected.
    pub kib_per_socket: f64,
    pub connect_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdleResult {
    pub baseline_rss_kib: u64,
    pub steps: Vec<IdleStep>,
    pub first_error: Option<String>,
}

struct Worker {
    child: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stdin: Option<tokio::process::ChildStdin>,
}

impl Worker {
    fn spawn(
        kind: Kind,
        addr: SocketAddr,
        count: usize,
        prefix: &str,
        src_offset: usize,
        p: &Params,
    ) -> anyhow::Result<Worker> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args([
                "idle-worker",
                "--target",
                kind.name(),
                "--addr",
                &addr.to_string(),
                "--count",
                &count.to_string(),
                "--prefix",
                prefix,
                "--src-offset",
                &src_offset.to_string(),
                "--src-ips",
                &p.src_ips.to_string(),
                "--concurrency",
                &p.connect_concurrency.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting an idle worker")?;
        let lines = BufReader::new(child.stdout.take().context("worker stdout")?).lines();
        let stdin = child.stdin.take();
        Ok(Worker {
            child,
            lines,
            stdin,
        })
    }

    /// Waits for `ready OK FAILED [first error]`, passing progress on.
    async fn ready(
        &mut self,
        pb: &indicatif::ProgressBar,
    ) -> anyhow::Result<(usize, usize, String)> {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = tokio::time::timeout(left, self.lines.next_line())
                .await
                .context("idle worker not ready within 300 s")??
                .context("idle worker exited")?;
            let mut words = line.splitn(4, ' ');
            match words.next() {
                Some("progress") => pb.inc(words.next().and_then(|w| w.parse().ok()).unwrap_or(0)),
                Some("ready") => {
                    let ok = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                    let failed = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                    return Ok((ok, failed, words.next().unwrap_or("").to_string()));
                }
                _ => {}
            }
        }
    }

    /// Asks the worker to close its sockets; kills it after 15 s.
    async fn finish(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"close\n").await;
        }
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Runs the idle scenario: sockets are added step by step up to each count.
pub async fn run(kind: Kind, addr: SocketAddr, pid: u32, p: &Params) -> anyhow::Result<IdleResult> {
    let tag = nonce();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = util::rss_kib(pid)?;
    let mut workers: Vec<Worker> = Vec::new();
    let mut steps = Vec::new();
    let mut have = 0usize;
    let mut first_error = None;
    let mut connected_total = 0usize;
    let result: anyhow::Result<()> = async {
        for &wanted in &p.idle_counts {
            if wanted <= have {
                continue;
            }
            let t0 = Instant::now();
            let pb = bar(
                (wanted - have) as u64,
                format!("{} idle: {wanted}", kind.name()),
            );
            let mut fresh = Vec::new();
            while have < wanted {
                let n = (wanted - have).min(PER_WORKER);
                let prefix = format!("i{tag}w{}", workers.len() + fresh.len());
                fresh.push(Worker::spawn(kind, addr, n, &prefix, have, p)?);
                have += n;
            }
            let mut failed = 0;
            for w in &mut fresh {
                let (ok, bad, err) = w.ready(&pb).await?;
                connected_total += ok;
                failed += bad;
                if first_error.is_none() && !err.is_empty() {
                    first_error = Some(err);
                }
            }
            pb.finish_and_clear();
            workers.extend(fresh);
            let connect_s = t0.elapsed().as_secs_f64();
            // Let the server settle (buffers freed after the handshakes).
            tokio::time::sleep(Duration::from_secs(2)).await;
            let rss = util::rss_kib(pid)?;
            let step = IdleStep {
                wanted,
                connected: connected_total,
                failed,
                rss_kib: rss,
                kib_per_socket: rss.saturating_sub(baseline) as f64 / connected_total.max(1) as f64,
                connect_s,
            };
            eprintln!(
                "  {} idle {}: {} connected, {} failed, RSS {} KiB, {:.2} KiB/socket",
                kind.name(),
                wanted,
                step.connected,
                step.failed,
                rss,
                step.kib_per_socket
            );
            steps.push(step);
        }
        Ok(())
    }
    .await;
    for w in workers {
        w.finish().await;
    }
    result?;
    Ok(IdleResult {
        baseline_rss_kib: baseline,
        steps,
        first_error,
    })
}

/// The worker process: opens `count` sessions, reports, holds them until
/// told (or [`HOLD_LIMIT`]), then closes them.
pub async fn worker(
    kind: Kind,
    addr: SocketAddr,
    count: usize,
    prefix: String,
    src_offset: usize,
    src_ips: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    if count > PER_WORKER * 2 {
        bail!("at most {} sockets per worker", PER_WORKER * 2);
    }
    util::raise_nofile();
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let progress = Arc::new(AtomicU64::new(0));
    let (close_tx, close_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::with_capacity(count);
    let cfg = target::client_config(1024, 0);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<Result<(), String>>();
    for i in 0..count {
        let gate = gate.clone();
        let ready_tx = ready_tx.clone();
        let mut close_rx = close_rx.clone();
        let room = format!("{prefix}s{i}");
        let src = target::src_ip(src_offset + i, src_ips);
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire().await;
            let spot = Spot {
                room: &room,
                next: None,
            };
            let session = target::open(kind, addr, &spot, src, cfg).await;
            drop(permit);
            progress.fetch_add(1, Ordering::Relaxed);
            let mut s = match session {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("{e:#}")));
                    return;
                }
            };
            // Keep reading so that pings are answered, until told to close.
            loop {
                tokio::select! {
                    m = s.ws.next() => if !matches!(m, Some(Ok(_))) { return },
                    _ = close_rx.changed() => break,
                }
            }
            target::close(s.ws).await;
        }));
    }
    drop(ready_tx);
    let (mut ok, mut failed, mut first_err) = (0usize, 0usize, String::new());
    let mut reported = 0;
    let mut out = tokio::io::stdout();
    while ok + failed < count {
        match tokio::time::timeout(Duration::from_millis(250), ready_rx.recv()).await {
            Ok(Some(Ok(()))) => ok += 1,
            Ok(Some(Err(e))) => {
                failed += 1;
                if first_err.is_empty() {
                    first_err = e.replace('\n', " ");
                }
            }
            Ok(None) => break,
            Err(_) => {}
        }
        let done = progress.load(Ordering::Relaxed);
        if done - reported >= 500 || ok + failed == count {
            out.write_all(format!("progress {}\n", done - reported).as_bytes())
                .await?;
            out.flush().await?;
            reported = done;
        }
    }
    out.write_all(format!("ready {ok} {failed} {first_err}\n").as_bytes())
        .await?;
    out.flush().await?;
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let _ = tokio::time::timeout(HOLD_LIMIT, stdin.next_line()).await;
    let _ = close_tx.send(true);
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        futures_util::future::join_all(tasks),
    )
    .await;
    Ok(())
}
