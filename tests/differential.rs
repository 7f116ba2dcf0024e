//! Differential test of the two lobby engines: the Rust one (the in-memory
//! server) and the Lua one (the server with `--redis-url`) must behave the
//! same, because a deployment switches between them with one flag and
//! clients cannot tell which one they talk to.
//!
//! Black box: two real servers start in this process, one in memory and
//! one in cluster mode on a real redis-server, with the same flags. The same
//! random sequence of steps (proptest) runs on both, over 3 to 5 logical
//! players on raw WebSocket connections: every request of PROTOCOL.md v1,
//! malformed input, connects, clean closes, resets, resumes, takeovers,
//! waits past the reconnect grace and the finished-room TTL, and the admin
//! API. After each step both servers are brought to rest (see world.rs) and
//! their observable state is compared, normalized: every frame each player
//! received, the public room listings, the stats and each player's
//! presence. At the end of each case (every timer fired) the webhook
//! events each server POSTed to its own receiver are compared too, room by
//! room in delivery order. On a difference the test prints the step list
//! (shrunk by proptest) and both records side by side.
//!
//! `RENDEZVOUS_DIFF_CASES` (default 24), `RENDEZVOUS_DIFF_STEPS` (default
//! 40) and `RENDEZVOUS_DIFF_SHRINK` (shrink iterations, default 48) size
//! the run.
#![forbid(unsafe_code)]

#[path = "differential/cases.rs"]
mod cases;
#[path = "differential/norm.rs"]
mod norm;
#[path = "differential/steps.rs"]
mod steps;
mod support;
#[path = "differential/wire.rs"]
mod wire;
#[path = "differential/world.rs"]
mod world;

use std::time::{Duration, Instant};

use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestError, TestRunner};
use steps::Step;
use world::{Deadline, World};

/// A timer whose earliest firing is closer than this is waited out before
/// the next step, so no timer fires while a step runs on one server and not
/// yet on the other: where timers fire in the sequence is then the same on
/// both.
const MARGIN: Duration = Duration::from_millis(250);

/// How often each kind of frame (reply code, event type) was compared: the
/// run prints it, to show what the random steps reached.
static SEEN: std::sync::Mutex<std::collections::BTreeMap<String, u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

fn count_frames(record: &serde_json::Value) {
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    for frame in record["frames"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|f| f.as_array().into_iter().flatten())
    {
        let kind = match (frame["type"].as_str(), frame["code"].as_str()) {
            (Some("error"), Some(code)) => format!("error:{code}"),
            (Some(t), _) => t.to_string(),
            _ if frame.get("close").is_some() => format!("close:{}", frame["close"]),
            _ => frame
                .as_object()
                .and_then(|o| o.keys().next().cloned())
                .unwrap_or_default(),
        };
        *seen.entry(kind).or_default() += 1;
    }
}

/// Cases cut short because a step outlasted a timer's margin.
static INCONCLUSIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub(crate) struct Pair {
    pub mem: World,
    pub clu: World,
    deadlines: Vec<Deadline>,
    seq: u64,
    done: Vec<String>,
    inconclusive: bool,
}

impl Pair {
    pub async fn start(n: usize, extra: &[&str]) -> Pair {
        let (mem, clu) = tokio::join!(World::start(false, n, extra), World::start(true, n, extra));
        Pair {
            mem,
            clu,
            deadlines: Vec::new(),
            seq: 0,
            done: Vec::new(),
            inconclusive: false,
        }
    }

    pub async fn stop(self) {
        tokio::join!(self.mem.stop(), self.clu.stop());
    }

    /// Runs the steps on both servers; the first difference is an error
    /// with the report.
    pub async fn run(&mut self, steps: &[Step]) -> Result<(), String> {
        for step in steps {
            self.settle_timers(false).await?;
            if *step == Step::WaitTimers {
                self.settle_timers(true).await?;
            }
            if self.inconclusive {
                return Ok(());
            }
            if *step == Step::WaitTimers {
                continue;
            }
            if let Step::Sleep(ms) = step {
                tokio::time::sleep(Duration::from_millis(*ms)).await;
                self.seq += 1;
                let seq = self.seq;
                let (a, b) = tokio::join!(self.mem.rest(seq), self.clu.rest(seq));
                self.compare(format!("{step:?}"), a, b)?;
                continue;
            }
            self.seq += 1;
            let seq = self.seq;
            let (a, b) = tokio::join!(self.mem.apply(step, seq), self.clu.apply(step, seq));
            self.merge_deadlines();
            if a != b && self.overran() {
                return Ok(());
            }
            self.compare(format!("{step:?}"), a, b)?;
        }
        // Both engines told their webhook receivers the same story (once
        // every pending timer fired, so none fires while they settle).
        self.settle_timers(true).await?;
        if self.inconclusive {
            return Ok(());
        }
        let (a, b) = tokio::join!(self.mem.hook_record(), self.clu.hook_record());
        self.compare("webhook events at the end".into(), a, b)
    }

    /// Waits out the timers that could fire soon (all of them when `all`),
    /// then compares both servers at rest.
    async fn settle_timers(&mut self, all: bool) -> Result<(), String> {
        loop {
            let soon = Instant::now() + MARGIN;
            let (due, rest): (Vec<Deadline>, Vec<Deadline>) =
                self.deadlines.drain(..).partition(|d| all || d.lo <= soon);
            self.deadlines = rest;
            if due.is_empty() && !all {
                return Ok(());
            }
            let until = due.iter().map(|d| d.hi).max();
            if let Some(until) = until {
                tokio::time::sleep_until(until.into()).await;
            }
            self.seq += 1;
            let seq = self.seq;
            let (a, b) = tokio::join!(self.mem.rest(seq), self.clu.rest(seq));
            if a != b && self.overran() {
                return Ok(());
            }
            let keys: Vec<&str> = due.iter().map(|d| d.key.as_str()).collect();
            self.compare(format!("(timers: waited for {keys:?})"), a, b)?;
            if all || self.deadlines.is_empty() {
                return Ok(());
            }
        }
    }

    /// Asked when the servers differ: true when the step took so long (on
    /// a loaded machine) that a timer may have fired while it ran, so where
    /// it fired on each server was up to chance; the case is then cut short
    /// as inconclusive rather than failed. (When both agree the step
    /// counts, and the late timer is waited out before the next one.)
    fn overran(&mut self) -> bool {
        let now = Instant::now();
        let late = self.deadlines.iter().any(|d| d.lo <= now);
        if late {
            self.inconclusive = true;
            INCONCLUSIVE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            eprintln!(
                "differential: a step outlasted a timer's margin; rest of the case skipped after {} steps",
                self.done.len()
            );
        }
        late
    }

    fn merge_deadlines(&mut self) {
        for w in [&mut self.mem, &mut self.clu] {
            let back = std::mem::take(&mut w.resumed);
            self.deadlines.retain(|d| !back.contains(&d.key));
        }
        for d in self
            .mem
            .deadlines
            .drain(..)
            .chain(self.clu.deadlines.drain(..))
        {
            match self.deadlines.iter_mut().find(|x| x.key == d.key) {
                Some(x) => {
                    x.lo = x.lo.min(d.lo);
                    x.hi = x.hi.max(d.hi);
                }
                None => self.deadlines.push(d),
            }
        }
    }

    fn compare(
        &mut self,
        what: String,
        a: serde_json::Value,
        b: serde_json::Value,
    ) -> Result<(), String> {
        self.done.push(what);
        count_frames(&a);
        if a == b {
            return Ok(());
        }
        let steps: Vec<String> = self
            .done
            .iter()
            .enumerate()
            .map(|(i, s)| format!("  {i:>2}: {s}"))
            .collect();
        Err(format!(
            "the engines differ at step {} of this case:\n{}\n\n{}",
            self.done.len() - 1,
            steps.join("\n"),
            norm::side_by_side(&a, &b)
        ))
    }
}

/// One case on a fresh pair of servers.
/// One case on a fresh pair of servers: `Ok(false)` when it was cut short
/// as inconclusive (see [`Pair::overran`]).
pub(crate) async fn run_case(n: usize, steps: &[Step], extra: &[&str]) -> Result<bool, String> {
    let mut pair = Pair::start(n, extra).await;
    let r = pair.run(steps).await;
    let conclusive = !pair.inconclusive;
    pair.stop().await;
    r.map(|()| conclusive)
}

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn engines_agree_on_random_sequences() {
    let cases = env_or("RENDEZVOUS_DIFF_CASES", 24);
    let max_steps = env_or("RENDEZVOUS_DIFF_STEPS", 40) as usize;
    let shrink = env_or("RENDEZVOUS_DIFF_SHRINK", 48);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        max_shrink_iters: shrink,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let started = Instant::now();
    let result = runner.run(&steps::case(max_steps), |(n, steps)| {
        rt.block_on(run_case(n, &steps, &[]))
            .map(|_| ())
            .map_err(TestCaseError::fail)
    });
    eprintln!(
        "differential: {cases} cases of up to {max_steps} steps in {:.1} s ({} cut short by a slow step)",
        started.elapsed().as_secs_f64(),
        INCONCLUSIVE.load(std::sync::atomic::Ordering::Relaxed)
    );
    let seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let seen: Vec<String> = seen.iter().map(|(k, n)| format!("{k} {n}")).collect();
    eprintln!("differential: frames compared: {}", seen.join(", "));
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, (n, steps))) => {
            let steps: Vec<String> = steps.iter().map(|s| format!("  {s:?}")).collect();
            panic!(
                "{reason}\nminimal case: {n} players, steps:\n{}",
                steps.join(",\n")
            )
        }
        Err(e) => panic!("{e}"),
    }
}
