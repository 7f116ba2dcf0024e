//! The side-by-side run: every chosen target, one after another, through
//! every chosen scenario with the same parameters, each scenario on a fresh
//! server process. Also gathers what the report must say about the run
//! (machine, versions, load on the machine) and saves it all as JSON.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::scenario::{self, Params};
use crate::server::{self, Programs};
use crate::target::{Kind, Payload};
use crate::util;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Idle,
    Relay,
    Match,
    Churn,
    /// Relay across two Rendezvous nodes sharing a Redis (Rendezvous only).
    Cluster,
}

impl Scenario {
    const ALL: [Scenario; 5] = [
        Scenario::Idle,
        Scenario::Relay,
        Scenario::Match,
        Scenario::Churn,
        Scenario::Cluster,
    ];
    fn name(self) -> &'static str {
        match self {
            Scenario::Idle => "idle",
            Scenario::Relay => "relay",
            Scenario::Match => "match",
            Scenario::Churn => "churn",
            Scenario::Cluster => "cluster",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Small counts and short runs (a few minutes in all), for checking a change.
    #[arg(long)]
    pub quick: bool,
    /// Targets, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Kind::ALL.to_vec())]
    pub targets: Vec<Kind>,
    /// Scenarios, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Scenario::ALL.to_vec())]
    pub scenarios: Vec<Scenario>,
    /// Use an already running server at this address instead of starting
    /// one (then exactly one target).
    #[arg(long)]
    pub addr: Option<SocketAddr>,
    /// Pid of that server, for its memory and CPU time.
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// Repository root (working directory of the servers; paths below are
    /// relative to it).
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
    #[arg(long, default_value = "target/release/rendezvous")]
    pub rendezvous_bin: PathBuf,
    /// Extra flag for the Rendezvous server (repeat it), e.g. to raise
    /// rate or connection limits: `--rendezvous-arg=--max-rooms=1000000`.
    #[arg(long = "rendezvous-arg", allow_hyphen_values = true)]
    pub rendezvous_args: Vec<String>,
    #[arg(long, default_value = "target/bench-peers/bin/matchbox_server")]
    pub matchbox_bin: PathBuf,
    #[arg(
        long,
        default_value = "target/bench-peers/peerjs/node_modules/peer/dist/bin/peerjs.js"
    )]
    pub peerjs_script: PathBuf,
    #[arg(long, default_value = "node")]
    pub node: PathBuf,
    /// redis-server for the cluster scenario (Debian package redis-server).
    #[arg(long, default_value = "redis-server")]
    pub redis_server: PathBuf,
    /// Server logs go here.
    #[arg(long, default_value = "target/bench-logs")]
    pub logs: PathBuf,

    /// Idle socket counts, comma separated; `max` is the open-file hard
    /// limit less 100 (at most 50 000).
    #[arg(long)]
    pub idle_counts: Option<String>,
    /// Player pairs in the relay scenario.
    #[arg(long)]
    pub pairs: Option<usize>,
    /// Signals in flight per sender at the maximum rate.
    #[arg(long)]
    pub window: Option<usize>,
    #[arg(long)]
    pub warmup_secs: Option<f64>,
    #[arg(long)]
    pub relay_secs: Option<f64>,
    /// What the relay scenario sends.
    #[arg(long, value_enum, default_value_t = Payload::Candidate)]
    pub payload: Payload,
    /// Skip the relay run at half the maximum rate.
    #[arg(long)]
    pub no_half_rate: bool,
    /// A fixed relay rate (signals/s in all) instead of max + half.
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long)]
    pub match_clients: Option<usize>,
    #[arg(long, default_value_t = 4)]
    pub room_size: usize,
    #[arg(long)]
    pub churn_secs: Option<f64>,
    #[arg(long, default_value_t = 64)]
    pub churn_concurrency: usize,
    #[arg(long, default_value_t = 4)]
    pub churn_signals: usize,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 128)]
    pub connect_concurrency: usize,
    /// Source addresses 127.0.0.2.. for client sockets.
    #[arg(long, default_value_t = 16)]
    pub src_ips: usize,
    /// CPUs of the server (`taskset -c`), or `none`.
    #[arg(long, default_value = "1")]
    pub server_cpus: String,
    /// CPUs of the load generator, or `none`.
    #[arg(long, default_value = "0")]
    pub client_cpus: String,

    /// Where to save the results.
    #[arg(long, default_value = "target/bench-results.json")]
    pub json: PathBuf,
    /// Also write the report here (Markdown) ...
    #[arg(long)]
    pub md: Option<PathBuf>,
    /// ... and the chart here (SVG).
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Criterion output of `cargo bench --bench lobby`, to quote find_match.
    #[arg(long)]
    pub criterion_dir: Option<PathBuf>,
    /// Output of `rendezvous-bench profile`, to quote in the report.
    #[arg(long)]
    pub profile_json: Option<PathBuf>,
    /// Start from the results saved in this file and replace only the
    /// target/scenario results of this run (e.g. add `--scenarios cluster`
    /// to the last full run without rerunning it); the report says which
    /// sections come from which run.
    #[arg(long)]
    pub merge: Option<PathBuf>,
}

/// Everything a run found, as saved and as reported.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub date: String,
    pub mode: String,
    pub machine: BTreeMap<String, String>,
    pub versions: BTreeMap<String, String>,
    pub params: Value,
    /// target -> scenario -> result (or `{"error": ..}` / `{"skipped": ..}`).
    pub results: BTreeMap<String, BTreeMap<String, Value>>,
    pub lobby_bench: Option<Value>,
    pub profile: Option<Value>,
    pub load_before: String,
    pub load_after: String,
    /// Busiest other processes when the run started (a source of noise).
    pub other_load: Vec<String>,
    pub wall_s: f64,
    /// Later runs merged into these results (`run --merge`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged: Vec<Merged>,
}

/// A run whose results replaced some of a saved run's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Merged {
    pub date: String,
    pub mode: String,
    /// `target/scenario` entries it replaced or added.
    pub entries: Vec<String>,
    pub rendezvous: String,
    pub load_before: String,
    pub load_after: String,
}

fn cpus_arg(s: &str) -> Option<String> {
    let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
    (s != "none" && nproc > 1).then(|| s.to_string())
}

fn params_of(a: &RunArgs) -> anyhow::Result<Params> {
    let q = a.quick;
    let (_, hard) = util::nofile_limits();
    // Bounded so that a machine without a low limit still finishes in time.
    let max_sockets = (hard.saturating_sub(100) as usize).min(50_000);
    let counts =
        a.idle_counts
            .clone()
            .unwrap_or_else(|| if q { "2000".into() } else { "10000,max".into() });
    let mut idle_counts = Vec::new();
    for c in counts.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        idle_counts.push(if c == "max" {
            max_sockets
        } else {
            c.parse().with_context(|| format!("bad idle count {c:?}"))?
        });
    }
    idle_counts.sort_unstable();
    idle_counts.dedup();
    if a.room_size < 2 {
        bail!("--room-size must be at least 2");
    }
    Ok(Params {
        quick: q,
        idle_counts,
        pairs: a.pairs.unwrap_or(if q { 32 } else { 64 }),
        window: a.window.unwrap_or(16),
        warmup_s: a.warmup_secs.unwrap_or(if q { 1.0 } else { 2.0 }),
        relay_s: a.relay_secs.unwrap_or(if q { 3.0 } else { 10.0 }),
        payload: a.payload,
        half_rate: !a.no_half_rate,
        match_clients: a.match_clients.unwrap_or(if q { 2000 } else { 10_000 }),
        room_size: a.room_size,
        churn_s: a.churn_secs.unwrap_or(if q { 4.0 } else { 15.0 }),
        churn_concurrency: a.churn_concurrency,
        churn_signals: a.churn_signals,
        connect_concurrency: a.connect_concurrency,
        src_ips: a.src_ips,
        rendezvous_args: Vec::new(),
        server_cpus: cpus_arg(&a.server_cpus),
        client_cpus: cpus_arg(&a.client_cpus),
    })
}

pub fn run(a: RunArgs) -> anyhow::Result<()> {
    let root = a.root.canonicalize().context("--root")?;
    let abs = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            root.join(p)
        }
    };
    let limits = util::raise_nofile();
    let p = params_of(&a)?;
    if let Some(c) = &p.client_cpus {
        // Before the runtime starts, so that every thread inherits it.
        let _ = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", c, &std::process::id().to_string()])
            .stdout(std::process::Stdio::null())
            .status();
    }
    let rendezvous = abs(&a.rendezvous_bin);
    let mut rendezvous_args = limit_overrides(&rendezvous);
    rendezvous_args.extend(a.rendezvous_args.iter().cloned());
    let mut p = p;
    p.rendezvous_args = rendezvous_args.clone();
    let programs = Programs {
        rendezvous,
        rendezvous_args,
        matchbox: abs(&a.matchbox_bin),
        peerjs: abs(&a.peerjs_script),
        node: a.node.clone(),
        bench: std::env::current_exe()?,
        redis: if a.redis_server.components().count() > 1 {
            abs(&a.redis_server)
        } else {
            a.redis_server.clone()
        },
        root: root.clone(),
        logs: abs(&a.logs),
        cpus: p.server_cpus.clone(),
    };
    if a.addr.is_some() && a.targets.len() != 1 {
        bail!("--addr needs exactly one --targets");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let load_before = util::loadavg();
    let other_load = busiest_processes();
    let mut results: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for &kind in &a.targets {
        let per = results.entry(kind.name().to_string()).or_default();
        for &scen in &a.scenarios {
            eprintln!("== {} / {}", kind.label(), scen.name());
            let v = if scen == Scenario::Match && !kind.has_matchmaking() {
                json!({"skipped": "no matchmaking in this server"})
            } else if scen == Scenario::Cluster && kind != Kind::Rendezvous {
                json!({"skipped": "no cluster mode in this server"})
            } else if scen == Scenario::Cluster && a.addr.is_some() {
                json!({"skipped": "it starts its own servers (not with --addr)"})
            } else {
                match rt.block_on(one(kind, scen, &p, &programs, &a)) {
                    Ok(v) => v,
                    Err(e) => {
                        eprintln!("  error: {e:#}");
                        json!({"error": format!("{e:#}")})
                    }
                }
            };
            per.insert(scen.name().to_string(), v);
        }
    }
    drop(rt);
    let mut machine = machine_info();
    machine.insert(
        "open files (soft/hard)".into(),
        format!("{}/{}", limits.0, limits.1),
    );
    let mut r = Results {
        date: util::command_line_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        mode: if p.quick { "quick" } else { "full" }.into(),
        machine,
        versions: versions(&programs),
        params: serde_json::to_value(&p)?,
        results,
        lobby_bench: a.criterion_dir.as_deref().map(|d| lobby_bench(&abs(d))),
        profile: a
            .profile_json
            .as_deref()
            .and_then(|f| std::fs::read_to_string(abs(f)).ok())
            .and_then(|t| serde_json::from_str(&t).ok()),
        load_before,
        load_after: util::loadavg(),
        other_load,
        wall_s: started.elapsed().as_secs_f64(),
        merged: Vec::new(),
    };
    if let Some(base) = &a.merge {
        let text = std::fs::read_to_string(abs(base))
            .with_context(|| format!("reading {}", abs(base).display()))?;
        let mut saved: Results = serde_json::from_str(&text).context("--merge results")?;
        let mut entries = Vec::new();
        for (target, per) in r.results {
            for (scen, v) in per {
                entries.push(format!("{target}/{scen}"));
                saved
                    .results
                    .entry(target.clone())
                    .or_default()
                    .insert(scen, v);
            }
        }
        // Earlier merges whose entries are all replaced now are forgotten.
        for m in &mut saved.merged {
            m.entries.retain(|e| !entries.contains(e));
        }
        saved.merged.retain(|m| !m.entries.is_empty());
        saved.merged.push(Merged {
            date: r.date,
            mode: r.mode,
            entries,
            rendezvous: r.versions.get("rendezvous").cloned().unwrap_or_default(),
            load_before: r.load_before,
            load_after: r.load_after,
        });
        r = saved;
    }
    let json_path = abs(&a.json);
    if let Some(dir) = json_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&json_path, serde_json::to_string_pretty(&r)?)?;
    eprintln!("results: {}", json_path.display());
    if let Some(md) = &a.md {
        let svg = a.svg.clone().unwrap_or_else(|| md.with_extension("svg"));
        crate::report::write(&r, &abs(md), &abs(&svg))?;
        eprintln!("report: {}", abs(md).display());
    }
    Ok(())
}

/// One scenario against one target, on a fresh server (or the given one).
async fn one(
    kind: Kind,
    scen: Scenario,
    p: &Params,
    programs: &Programs,
    a: &RunArgs,
) -> anyhow::Result<Value> {
    if scen == Scenario::Cluster {
        if a.addr.is_some() {
            bail!("the cluster scenario starts its own servers (no --addr)");
        }
        let r = scenario::cluster::run(programs, p, a.rate).await?;
        return Ok(serde_json::to_value(r)?);
    }
    let srv = match a.addr {
        Some(_) => None,
        None => Some(server::start(kind, programs, scen.name(), &[])?),
    };
    let addr = a
        .addr
        .or(srv.as_ref().map(|s| s.addr))
        .context("no address")?;
    let pid = a.server_pid.or(srv.as_ref().map(|s| s.pid));
    let v = match scen {
        Scenario::Idle => {
            let pid = pid.context("the idle scenario needs the server's pid")?;
            let mut v = serde_json::to_value(scenario::idle::run(kind, addr, pid, p).await?)?;
            if kind == Kind::Bare && a.addr.is_none() {
                // How much of a socket is tungstenite's 4 KiB read buffer:
                // the same relay with a 512-byte one.
                let mut small = server::start(
                    kind,
                    programs,
                    "idle-small-buffer",
                    &["--read-buffer-size", "512"],
                )?;
                let mut q = p.clone();
                q.idle_counts.truncate(1);
                let r = scenario::idle::run(kind, small.addr, small.pid, &q).await;
                small.stop(Duration::from_secs(3));
                if let Ok(r) = r {
                    v["small_read_buffer"] = serde_json::to_value(r)?;
                }
            }
            v
        }
        Scenario::Relay => {
            let mut out = serde_json::Map::new();
            match a.rate {
                Some(rate) => {
                    let r = scenario::relay::run(kind, addr, pid, p, Some(rate)).await?;
                    log_relay(kind, &r);
                    out.insert("fixed".into(), serde_json::to_value(r)?);
                }
                None => {
                    let max = scenario::relay::run(kind, addr, pid, p, None).await?;
                    log_relay(kind, &max);
                    let half_rate = max.rate_median_1s.unwrap_or(max.rate) / 2.0;
                    out.insert("max".into(), serde_json::to_value(&max)?);
                    if p.half_rate && half_rate > 0.0 {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        let half =
                            scenario::relay::run(kind, addr, pid, p, Some(half_rate)).await?;
                        log_relay(kind, &half);
                        out.insert("half".into(), serde_json::to_value(half)?);
                    }
                }
            }
            Value::Object(out)
        }
        Scenario::Match => {
            let r = scenario::matching::run(kind, addr, p).await?;
            eprintln!(
                "  {} match: {} full rooms of {}, {:.0} matches/s, largest room {}, violations {}, {}",
                kind.name(),
                r.rooms_full,
                r.room_size,
                r.matches_per_s,
                r.largest_room,
                r.violations,
                r.latency.line()
            );
            serde_json::to_value(r)?
        }
        Scenario::Cluster => unreachable!("handled above"),
        Scenario::Churn => {
            let r = scenario::churn::run(kind, addr, pid, p).await?;
            eprintln!(
                "  {} churn: {} cycles, {:.0}/s, {} failures, server {:.2} cores, client {:.2} cores, {:.0} us CPU/cycle, stats zero: {:?}, cycle {}",
                kind.name(),
                r.cycles,
                r.cycles_per_s,
                r.failures,
                r.server_cores.unwrap_or(0.0),
                r.client_cores.unwrap_or(0.0),
                r.server_cpu_us_per_cycle.unwrap_or(0.0),
                r.stats_zero,
                r.latency.line()
            );
            serde_json::to_value(r)?
        }
    };
    let rss = pid.and_then(|p| util::rss_kib(p).ok());
    if let Some(mut s) = srv {
        if !s.alive() {
            bail!("{} died during the run", kind.label());
        }
        s.stop(Duration::from_secs(3));
    }
    let mut v = v;
    if let (Some(obj), Some(rss)) = (v.as_object_mut(), rss) {
        obj.insert("server_rss_kib_at_end".into(), json!(rss));
    }
    Ok(v)
}

/// Flags that lift Rendezvous's abuse limits (per-connection message rate,
/// connections per address and in all, rooms, outbound queue) out of the
/// benchmark's way;
/// only those the binary knows are passed, so older builds still run.
pub fn limit_overrides(bin: &Path) -> Vec<String> {
    const LIFT: [(&str, &str); 6] = [
        // Slow-client protection: the generator may stall for a moment.
        ("--max-queued-messages", "65536"),
        ("--rate-limit", "1000000"),
        ("--rate-burst", "1000000"),
        ("--max-connections", "10000000"),
        ("--max-connections-per-ip", "10000000"),
        ("--max-rooms", "10000000"),
    ];
    let help = util::command_line_output(&bin.to_string_lossy(), &["--help"]);
    let mut args = Vec::new();
    for (flag, value) in LIFT {
        let known = help
            .split(|c: char| c.is_whitespace() || c == ',' || c == '=')
            .any(|w| w == flag);
        if known {
            args.push(format!("{flag}={value}"));
        }
    }
    args
}

fn log_relay(kind: Kind, r: &scenario::relay::RelayRun) {
    eprintln!(
        "  {} relay {}: {:.0} signals/s, lost {}, errors {}, server {:.2} cores, client {:.2} cores, {}",
        kind.name(),
        r.offered_rate
            .map_or("max".to_string(), |o| format!("@{o:.0}/s")),
        r.rate,
        r.lost,
        r.errors,
        r.server_cores.unwrap_or(0.0),
        r.client_cores.unwrap_or(0.0),
        r.latency.line()
    );
    if let Some(l) = &r.sender_lag {
        eprintln!("  sender lag: {}", l.line());
    }
    if let Some(e) = &r.first_error {
        eprintln!("  first error: {e}");
    }
}

fn machine_info() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown".to_string(), |s| s.trim().to_string());
    m.insert("cpu".into(), model);
    // Counted from /proc/cpuinfo: this process may be pinned to one CPU.
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    m.insert("cores".into(), cores.to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    if let Some(kb) = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
    {
        m.insert("memory".into(), format!("{:.1} GiB", kb / 1024.0 / 1024.0));
    }
    m.insert(
        "kernel".into(),
        util::command_line_output("uname", &["-sr"]),
    );
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    if let Some(name) = os.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")) {
        m.insert("os".into(), name.trim_matches('"').to_string());
    }
    m.insert(
        "ephemeral ports".into(),
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join("-"),
    );
    m
}

/// `rendezvous 0.1.0 (git abc1234)`, with a note when src/ has changes.
pub fn rendezvous_version(p: &Programs) -> String {
    let rev = util::command_line_output(
        "git",
        &[
            "-C",
            &p.root.to_string_lossy(),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    );
    let dirty = util::command_line_output(
        "git",
        &[
            "-C",
            &p.root.to_string_lossy(),
            "status",
            "--porcelain",
            "--",
            "src",
        ],
    );
    let dirty = if dirty == "unknown" {
        ""
    } else {
        " + uncommitted changes in src/"
    };
    format!(
        "{} (git {rev}{dirty})",
        util::command_line_output(&p.rendezvous.to_string_lossy(), &["--version"])
    )
}

fn versions(p: &Programs) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    v.insert("rendezvous".into(), rendezvous_version(p));
    let crates = std::fs::read_to_string(
        p.matchbox
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join(".crates.toml"))
            .unwrap_or_default(),
    )
    .unwrap_or_default();
    let mbx = crates
        .split('"')
        .find(|s| s.starts_with("matchbox_server "))
        .and_then(|s| s.split_whitespace().nth(1))
        .unwrap_or("unknown");
    v.insert("matchbox_server".into(), mbx.to_string());
    let pkg = p
        .peerjs
        .ancestors()
        .nth(3)
        .map(|d| d.join("package.json"))
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    v.insert(
        "peer (PeerJS server)".into(),
        pkg.and_then(|p| p["version"].as_str().map(str::to_string))
            .unwrap_or_else(|| "unknown".into()),
    );
    v.insert(
        "node".into(),
        util::command_line_output(&p.node.to_string_lossy(), &["--version"]),
    );
    v.insert(
        "rustc".into(),
        util::command_line_output("rustc", &["--version"]),
    );
    v.insert(
        "rendezvous-bench".into(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    v
}

/// The busiest processes other than this run's, from `ps`.
fn busiest_processes() -> Vec<String> {
    let out =
        util::command_line_output("ps", &["-eo", "pcpu,comm", "--sort=-pcpu", "--no-headers"]);
    out.lines()
        .map(str::trim)
        .filter(|l| {
            let cpu: f64 = l
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0.0);
            cpu >= 5.0 && !l.contains("rendezvous-benc")
        })
        .take(5)
        .map(str::to_string)
        .collect()
}

/// find_match means from criterion's `estimates.json` files.
fn lobby_bench(dir: &Path) -> Value {
    let mut out = serde_json::Map::new();
    let group = dir.join("find_match");
    if std::fs::read_dir(&group).is_err() {
        return json!({"error": format!("no criterion results in {}", group.display())});
    }
    // The engine's group, then cluster mode's (`cargo bench --bench
    // cluster_match`), whose names say so.
    let groups = [(group, ""), (dir.join("cluster_find_match"), "cluster_")];
    let entries = groups.iter().flat_map(|(g, prefix)| {
        std::fs::read_dir(g)
            .into_iter()
            .flatten()
            .flatten()
            .map(move |e| (e, *prefix))
    });
    for (e, prefix) in entries {
        let f = e.path().join("new").join("estimates.json");
        let Some(est) = std::fs::read_to_string(&f)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        else {
            continue;
        };
        if let Some(ns) = est["mean"]["point_estimate"].as_f64() {
            let name = format!("{prefix}{}", e.file_name().to_string_lossy());
            out.insert(name, json!(ns));
        }
    }
    Value::Object(out)
}
