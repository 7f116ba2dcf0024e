//! Cluster: the relay measurement of [`super::relay`] across two Rendezvous
//! instances that share one lobby through Redis (`--redis-url`).
//!
//! The generator starts its own `redis-server` (on a free loopback port, no
//! persistence) and two Rendezvous processes pointed at it (`--node-id
//! bench-a` / `bench-b`), all stopped by pid at the end. Each pair of players
//! meets in a room of two created on node A and joined by `room_id` on node
//! B, so every signal crosses from one node to the other through Redis (the
//! sender's node runs the membership script, which publishes to the
//! receiver's node channel). The relay runs themselves (max rate, then half
//! of that setup's own max) are those of the relay scenario, code and all.
//!
//! For comparison, the same runs with both players of each pair on node A of
//! a fresh cluster (Redis still in the path), and on one Rendezvous with
//! everything in memory. Server CPU is the sum of every server process of
//! the setup (both nodes and redis-server), each also reported alone; the
//! Redis commands run per signal come from `INFO commandstats` (reset by
//! `CONFIG RESETSTAT` once the pairs are in their rooms).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::relay::{self, RelayRun};
use super::Params;
use crate::server::{self, Programs, Server};
use crate::target::Kind;
use crate::util;

#[derive(Debug, Clone, Serialize)]
pub struct ClusterResult {
    /// When and with what this was measured (the section may be merged into
    /// the report of another run).
    pub date: String,
    pub command: String,
    pub rendezvous: String,
    pub redis: String,
    pub pairs: usize,
    pub window: usize,
    pub warmup_s: f64,
    pub relay_s: f64,
    pub server_cpus: Option<String>,
    pub client_cpus: Option<String>,
    pub load_before: String,
    pub load_after: String,
    pub setups: Vec<Setup>,
}

/// One way of placing the players, and its relay runs.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    /// `cross-node`, `same-node` or `single`.
    pub name: String,
    pub about: String,
    pub runs: Vec<ClusterRun>,
    /// `/api/stats` of each node once the pairs of the first run were in
    /// their rooms: both nodes see the whole lobby.
    pub stats: BTreeMap<String, Value>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterRun {
    /// `max`, `half`, `equal` or `fixed`.
    pub run: String,
    pub relay: RelayRun,
    pub redis: Option<RedisCost>,
    /// How many times the run was made: one made while the hypervisor stole
    /// more than [`MAX_STEAL`] of the machine's CPU is made again (at most
    /// [`ATTEMPTS`] times in all), and the least disturbed one is kept.
    pub attempts: u32,
}

/// Share of stolen CPU time above which a run counts as disturbed.
pub const MAX_STEAL: f64 = 0.05;
/// Most attempts at one run.
pub const ATTEMPTS: u32 = 3;

/// What Redis did during one run (pairs already set up).
#[derive(Debug, Clone, Serialize)]
pub struct RedisCost {
    /// Command -> (calls, microseconds inside Redis).
    pub commands: BTreeMap<String, (u64, u64)>,
    /// All calls: a script call counts once, and so does each command it
    /// runs inside Redis.
    pub calls: u64,
    /// Script calls (EVALSHA, EVAL, FCALL) per signal sent.
    pub scripts_per_signal: Option<f64>,
    /// PUBLISH calls (from scripts or not) per signal sent.
    pub publishes_per_signal: Option<f64>,
    /// Time Redis spent running scripts (its own accounting, the commands
    /// they run included) per signal sent.
    pub script_usec_per_signal: Option<f64>,
}

/// Runs the three setups one after another.
pub async fn run(
    programs: &Programs,
    p: &Params,
    rate: Option<f64>,
) -> anyhow::Result<ClusterResult> {
    let help = util::command_line_output(&programs.rendezvous.to_string_lossy(), &["--help"]);
    let has_cluster = help.contains("--redis-url");
    // "Redis server v=7.0.15 sha=... malloc=..." -> "redis-server 7.0.15".
    let redis_version =
        util::command_line_output(&programs.redis.to_string_lossy(), &["--version"]);
    let redis_version = match redis_version
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
    {
        Some(v) => format!("redis-server {v}"),
        None => redis_version,
    };
    let load_before = util::loadavg();
    let mut setups = Vec::new();
    for (name, about) in [
        (
            "cross-node",
            "two nodes and Redis; each pair: room created on node A, joined on node B",
        ),
        (
            "same-node",
            "two nodes and Redis; both players of each pair on node A",
        ),
        ("single", "one Rendezvous without Redis (state in memory)"),
    ] {
        eprintln!("  cluster setup: {name}");
        let mut setup = Setup {
            name: name.into(),
            about: about.into(),
            runs: Vec::new(),
            stats: BTreeMap::new(),
            error: None,
        };
        let r = if name != "single" && !has_cluster {
            Err(anyhow::anyhow!(
                "{} has no --redis-url (no cluster mode in this build)",
                programs.rendezvous.display()
            ))
        } else {
            // Latency at equal load: the other setups also run at the rate
            // of the cross-node half-rate run.
            let equal = setups
                .iter()
                .filter(|s: &&Setup| s.name == "cross-node")
                .flat_map(|s| &s.runs)
                .find(|r| r.run == "half")
                .and_then(|r| r.relay.offered_rate);
            one_setup(programs, p, rate, equal, &mut setup).await
        };
        if let Err(e) = r {
            eprintln!("  error: {e:#}");
            setup.error = Some(format!("{e:#}"));
        }
        setups.push(setup);
    }
    Ok(ClusterResult {
        date: util::command_line_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        rendezvous: crate::suite::rendezvous_version(programs),
        redis: redis_version,
        pairs: p.pairs,
        window: p.window,
        warmup_s: p.warmup_s,
        relay_s: p.relay_s,
        server_cpus: p.server_cpus.clone(),
        client_cpus: p.client_cpus.clone(),
        load_before,
        load_after: util::loadavg(),
        setups,
    })
}

/// The processes of one setup; dropping it stops them all (nodes first).
struct Procs {
    nodes: Vec<Server>,
    redis: Option<Server>,
}

impl Drop for Procs {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.stop(Duration::from_secs(3));
        }
        if let Some(r) = &mut self.redis {
            r.stop(Duration::from_secs(3));
        }
    }
}

/// Starts the processes of `setup` and runs max then half (or the fixed
/// rate), then `equal` (the cross-node half rate) if given.
async fn one_setup(
    programs: &Programs,
    p: &Params,
    rate: Option<f64>,
    equal: Option<f64>,
    setup: &mut Setup,
) -> anyhow::Result<()> {
    let mut procs = Procs {
        nodes: Vec::new(),
        redis: None,
    };
    if setup.name == "single" {
        procs.nodes.push(server::start(
            Kind::Rendezvous,
            programs,
            "cluster-single",
            &[],
        )?);
    } else {
        let redis = start_redis(programs, &setup.name)?;
        let url = format!("redis://{}/", redis.addr);
        procs.redis = Some(redis);
        for node in ["a", "b"] {
            let tag = format!("cluster-{}-{node}", setup.name);
            let id = format!("bench-{node}");
            let srv = server::start(
                Kind::Rendezvous,
                programs,
                &tag,
                &["--redis-url", &url, "--node-id", &id],
            )?;
            procs.nodes.push(srv);
        }
    }
    for n in &procs.nodes {
        wait_healthy(n.addr).await?;
    }
    let a = procs.nodes[0].addr;
    let addrs = match setup.name.as_str() {
        "cross-node" => (a, procs.nodes[1].addr),
        _ => (a, a),
    };
    let mut servers: Vec<(String, u32)> = Vec::new();
    for (i, n) in procs.nodes.iter().enumerate() {
        let name = if procs.nodes.len() == 1 {
            "rendezvous".to_string()
        } else {
            format!("node {}", ["A", "B"][i])
        };
        servers.push((name, n.pid));
    }
    let redis_addr = procs.redis.as_ref().map(|r| r.addr);
    if let Some(r) = &procs.redis {
        servers.push(("redis-server".into(), r.pid));
    }
    let label = format!("cluster {}", setup.name);

    let mut todo: VecDeque<(&str, Option<f64>)> = match rate {
        Some(r) => [("fixed", Some(r))].into(),
        None => [("max", None)].into(),
    };
    while let Some((run_name, run_rate)) = todo.pop_front() {
        let mut best: Option<(RelayRun, Option<RedisCost>)> = None;
        let mut attempts = 0;
        while attempts < ATTEMPTS {
            attempts += 1;
            let (r, redis) = one_run(
                &procs, &servers, addrs, redis_addr, p, run_rate, &label, setup,
            )
            .await?;
            log_run(&setup.name, run_name, &r, redis.as_ref());
            let steal = |r: &RelayRun| r.steal_share.unwrap_or(0.0);
            let stolen = steal(&r);
            if best.as_ref().is_none_or(|b| stolen < steal(&b.0)) {
                best = Some((r, redis));
            }
            if stolen <= MAX_STEAL {
                break;
            }
            if attempts < ATTEMPTS {
                eprintln!(
                    "  {:.0}% of the CPU time was stolen by the hypervisor: once more",
                    stolen * 100.0
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        let (r, redis) = best.context("no run")?;
        if run_name == "max" && p.half_rate {
            let half = r.rate_median_1s.unwrap_or(r.rate) / 2.0;
            if half > 0.0 {
                todo.push_back(("half", Some(half)));
            }
        }
        if run_name != "equal" && todo.is_empty() {
            if let Some(e) = equal {
                todo.push_back(("equal", Some(e)));
            }
        }
        setup.runs.push(ClusterRun {
            run: run_name.into(),
            relay: r,
            redis,
            attempts,
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(procs);
    Ok(())
}

/// One relay run on fresh pairs: the run and what Redis did meanwhile.
#[allow(clippy::too_many_arguments)]
async fn one_run(
    procs: &Procs,
    servers: &[(String, u32)],
    addrs: (SocketAddr, SocketAddr),
    redis_addr: Option<SocketAddr>,
    p: &Params,
    run_rate: Option<f64>,
    label: &str,
    setup: &mut Setup,
) -> anyhow::Result<(RelayRun, Option<RedisCost>)> {
    let pairs = relay::open_pairs(Kind::Rendezvous, addrs, p, label).await?;
    if setup.stats.is_empty() {
        for (i, n) in procs.nodes.iter().enumerate() {
            let key = servers[i].0.clone();
            let stats = util::http_get(n.addr, "/api/stats")
                .await
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(Value::Null);
            setup.stats.insert(key, stats);
        }
    }
    if let Some(ra) = redis_addr {
        redis_command(ra, "CONFIG RESETSTAT").await?;
    }
    let r = relay::measure(Kind::Rendezvous, pairs, servers, p, run_rate, label).await?;
    let redis = match redis_addr {
        Some(ra) => Some(redis_cost(ra, r.sent).await?),
        None => None,
    };
    for n in &procs.nodes {
        if !util::pid_alive(n.pid) {
            bail!("{} died during the run", n.label);
        }
    }
    if let Some(rs) = &procs.redis {
        if !util::pid_alive(rs.pid) {
            bail!("redis-server died during the run");
        }
    }
    Ok((r, redis))
}

/// A redis-server on a free loopback port, without persistence, pinned like
/// the servers under test; its log goes next to theirs.
fn start_redis(programs: &Programs, tag: &str) -> anyhow::Result<Server> {
    let port = server::free_port()?;
    std::fs::create_dir_all(&programs.logs)?;
    let log_path = programs.logs.join(format!("redis-{tag}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut cmd = server::with_cpus(&programs.cpus, &programs.redis);
    cmd.args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .args(["--daemonize", "no"])
        .current_dir(&programs.logs)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    server::launch_named("redis-server", cmd, Some(port))
        .context("starting redis-server (Debian: apt-get install redis-server)")
}

/// Waits until `/healthz` answers 200 (a node is up once it reached Redis).
async fn wait_healthy(addr: SocketAddr) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let r = util::http_get(addr, "/healthz").await;
        match r {
            Ok(_) => return Ok(()),
            Err(e) if start.elapsed() > Duration::from_secs(20) => {
                return Err(e.context(format!("{addr} not healthy within 20 s")))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Sends one inline command and returns its reply (simple, error, integer
/// or bulk string; enough for INFO and CONFIG RESETSTAT).
pub async fn redis_command(addr: SocketAddr, cmd: &str) -> anyhow::Result<String> {
    let fut = async {
        let mut s = BufReader::new(TcpStream::connect(addr).await?);
        s.get_mut()
            .write_all(format!("{cmd}\r\n").as_bytes())
            .await?;
        let mut line = String::new();
        s.read_line(&mut line).await?;
        let line = line.trim_end().to_string();
        match line.chars().next() {
            Some('+') | Some(':') => Ok(line[1..].to_string()),
            Some('-') => bail!("redis: {}", &line[1..]),
            Some('$') => {
                let n: i64 = line[1..].parse().context("bulk length")?;
                if n < 0 {
                    return Ok(String::new());
                }
                let mut buf = vec![0; n as usize + 2];
                s.read_exact(&mut buf).await?;
                buf.truncate(n as usize);
                Ok(String::from_utf8_lossy(&buf).into_owned())
            }
            _ => bail!("unexpected redis reply {line:?}"),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .context("redis command timed out")?
}

/// `INFO commandstats` as command -> (calls, usec).
fn parse_commandstats(text: &str) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some((name, rest)) = line.trim().split_once(':') else {
            continue;
        };
        let Some(cmd) = name.strip_prefix("cmdstat_") else {
            continue;
        };
        let mut calls = 0;
        let mut usec = 0;
        for kv in rest.split(',') {
            match kv.split_once('=') {
                Some(("calls", v)) => calls = v.parse().unwrap_or(0),
                Some(("usec", v)) => usec = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        out.insert(cmd.to_string(), (calls, usec));
    }
    out
}

async fn redis_cost(addr: SocketAddr, sent: u64) -> anyhow::Result<RedisCost> {
    let mut commands = parse_commandstats(&redis_command(addr, "INFO commandstats").await?);
    // Our own INFO and CONFIG RESETSTAT.
    commands.remove("info");
    commands.remove("config|resetstat");
    commands.remove("config");
    let calls: u64 = commands.values().map(|c| c.0).sum();
    let sum = |names: &[&str]| -> (u64, u64) {
        commands
            .iter()
            .filter(|(k, _)| names.contains(&k.as_str()))
            .fold((0, 0), |acc, (_, c)| (acc.0 + c.0, acc.1 + c.1))
    };
    // A script's time includes the commands it runs, which commandstats
    // also counts on their own: only script time is summed.
    let (scripts, usec) = sum(&[
        "evalsha",
        "eval",
        "evalsha_ro",
        "eval_ro",
        "fcall",
        "fcall_ro",
    ]);
    let (publishes, _) = sum(&["publish", "spublish"]);
    let per = |n: u64| (sent > 0).then(|| n as f64 / sent as f64);
    Ok(RedisCost {
        calls,
        scripts_per_signal: per(scripts),
        publishes_per_signal: per(publishes),
        script_usec_per_signal: (sent > 0).then(|| usec as f64 / sent as f64),
        commands,
    })
}

fn log_run(setup: &str, run: &str, r: &RelayRun, redis: Option<&RedisCost>) {
    let procs: Vec<String> = r
        .server_processes
        .iter()
        .map(|p| format!("{} {:.2}", p.name, p.cores.unwrap_or(0.0)))
        .collect();
    eprintln!(
        "  cluster {setup} {run}: {:.0} signals/s, lost {}, errors {}, server {:.2} cores [{}], {}",
        r.rate,
        r.lost,
        r.errors,
        r.server_cores.unwrap_or(0.0),
        procs.join(", "),
        r.latency.line()
    );
    if let Some(c) = redis {
        eprintln!(
            "  redis: {:.2} scripts, {:.2} publishes, {:.1} us of scripts per signal; {:?}",
            c.scripts_per_signal.unwrap_or(0.0),
            c.publishes_per_signal.unwrap_or(0.0),
            c.script_usec_per_signal.unwrap_or(0.0),
            c.commands
        );
    }
    if let Some(e) = &r.first_error {
        eprintln!("  first error: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commandstats() {
        let text = "# Commandstats\r\ncmdstat_evalsha:calls=10,usec=200,usec_per_call=20.00,rejected_calls=0,failed_calls=0\r\ncmdstat_publish:calls=12,usec=30,usec_per_call=2.50,rejected_calls=0,failed_calls=0\r\n";
        let c = parse_commandstats(text);
        assert_eq!(c["evalsha"], (10, 200));
        assert_eq!(c["publish"], (12, 30));
        assert_eq!(c.len(), 2);
    }
}
