//! The report: `docs/benchmarks.md` (machine, versions, parameters, one
//! table per scenario, the ratios of Rendezvous to each other target, the
//! goals of issue 7 with pass/fail, Rendezvous's relay across a cluster, the
//! relay profile, the lobby engine's criterion numbers and the hand-written
//! ticket matchmaking section) and an SVG chart of relay throughput and p99 latency
//! per target (plotters, SVG backend only, no font files needed). It is
//! generated from the saved results so it can be rewritten without rerunning.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

use crate::suite::Results;
use crate::target::Kind;

fn get<'a>(r: &'a Results, kind: Kind, scen: &str) -> Option<&'a Value> {
    let v = r.results.get(kind.name())?.get(scen)?;
    (v.get("error").is_none() && v.get("skipped").is_none()).then_some(v)
}

fn f(v: &Value, path: &[&str]) -> Option<f64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_f64()
}

/// The max relay rate: the median of its one-second rates (steadier than
/// the mean on a shared machine), or the mean when there are no samples.
fn relay_max(r: &Results, k: Kind) -> Option<f64> {
    let v = get(r, k, "relay")?;
    f(v, &["max", "rate_median_1s"]).or_else(|| f(v, &["max", "rate"]))
}

/// Relayed signals per second of server CPU at the max rate.
fn relay_eff(r: &Results, k: Kind) -> Option<f64> {
    let v = get(r, k, "relay")?;
    ratio(f(v, &["max", "rate"]), f(v, &["max", "server_cores"]))
}

/// `min / median / max` of a run's one-second rates.
fn spread(x: &Value) -> String {
    let mut v: Vec<f64> = x["rate_samples_1s"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_f64)
        .collect();
    if v.is_empty() {
        return "n/a".into();
    }
    v.sort_by(f64::total_cmp);
    format!(
        "{} / {} / {}",
        group(v[0].round() as i64),
        group(v[v.len() / 2].round() as i64),
        group(v[v.len() - 1].round() as i64)
    )
}

/// What held a relay run back: the side whose CPU was (nearly) saturated.
fn bound_by(x: &Value) -> &'static str {
    let server = f(x, &["server_cores"]).unwrap_or(0.0);
    let client = f(x, &["client_cores"]).unwrap_or(0.0);
    if x["offered_rate"].is_number() {
        "offered rate"
    } else if server >= 0.85 && server >= client {
        "server CPU"
    } else if client >= 0.85 {
        "generator CPU"
    } else {
        "neither CPU: waits"
    }
}

fn relay_p99_half(r: &Results, k: Kind) -> Option<f64> {
    get(r, k, "relay").and_then(|v| f(v, &["half", "latency", "p99_ms"]))
}

/// KiB per idle socket at the largest count that connected, and that count.
fn idle_largest(r: &Results, k: Kind) -> Option<(f64, f64)> {
    let steps = get(r, k, "idle")?.get("steps")?.as_array()?;
    let last = steps.last()?;
    Some((f(last, &["kib_per_socket"])?, f(last, &["connected"])?))
}

fn matches(r: &Results, k: Kind) -> Option<f64> {
    get(r, k, "match").and_then(|v| f(v, &["matches_per_s"]))
}

fn churn(r: &Results, k: Kind) -> Option<f64> {
    get(r, k, "churn").and_then(|v| f(v, &["cycles_per_s"]))
}

fn num(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if digits == 0 => group(x.round() as i64),
        Some(x) => format!("{x:.digits$}"),
        None => "n/a".into(),
    }
}

/// 12345 -> "12 345" (thin grouping keeps tables readable).
fn group(n: i64) -> String {
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn x(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.2}x"))
}

fn status_of(r: &Results, k: Kind, scen: &str) -> Option<String> {
    let v = r.results.get(k.name())?.get(scen)?;
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return Some(format!("error: {}", e.lines().next().unwrap_or(e)));
    }
    v.get("skipped")
        .and_then(Value::as_str)
        .map(|s| format!("skipped: {s}"))
}

fn lat_cells(v: Option<&Value>) -> String {
    match v {
        Some(l) if f(l, &["count"]).unwrap_or(0.0) > 0.0 => format!(
            "{:.3} | {:.3} | {:.3} | {:.3} | {:.3}",
            f(l, &["p50_ms"]).unwrap_or(0.0),
            f(l, &["p90_ms"]).unwrap_or(0.0),
            f(l, &["p99_ms"]).unwrap_or(0.0),
            f(l, &["p999_ms"]).unwrap_or(0.0),
            f(l, &["max_ms"]).unwrap_or(0.0)
        ),
        _ => "n/a | n/a | n/a | n/a | n/a".into(),
    }
}

pub fn write(r: &Results, md: &Path, svg: &Path) -> anyhow::Result<()> {
    if let Some(d) = md.parent() {
        std::fs::create_dir_all(d)?;
    }
    if let Some(d) = svg.parent() {
        std::fs::create_dir_all(d)?;
    }
    chart(r, svg).context("drawing the chart")?;
    let svg_name = svg
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Hand-written text lives next to the generator and is quoted as it
    // is: the findings (`bench/findings.md`), and the ticket matchmaking
    // benchmarks (`bench/tickets.md`), which come from `cargo bench` runs of
    // their own rather than from this load generator.
    let hand_written = |name: &str| {
        md.parent()
            .and_then(Path::parent)
            .map(|root| root.join("bench").join(name))
            .and_then(|f| std::fs::read_to_string(f).ok())
            .unwrap_or_default()
    };
    let page = markdown(
        r,
        &svg_name,
        &hand_written("findings.md"),
        &hand_written("tickets.md"),
    );
    std::fs::write(md, page)?;
    Ok(())
}

fn markdown(r: &Results, svg_name: &str, findings: &str, tickets: &str) -> String {
    let mut s = String::new();
    let p = &r.params;
    let rdv = Kind::Rendezvous;
    let peers = [Kind::Matchbox, Kind::Peerjs, Kind::Bare];
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Rendezvous side by side with matchbox_server, the PeerJS server and a bare \
         tokio-tungstenite relay, all driven by the same load generator \
         (`rendezvous-bench`, in `bench/`) with the same parameters, one after another \
         in one run on one machine. Generated by `scripts/bench{}` on {} in {:.0} s; \
         do not edit by hand, rerun it.\n",
        if r.mode == "quick" { " --quick" } else { "" },
        r.date,
        r.wall_s
    );
    if r.mode == "quick" {
        let _ = writeln!(
            s,
            "**This is a quick run** (small counts, short runs): numbers are indicative only.\n"
        );
    }
    for m in &r.merged {
        let _ = writeln!(
            s,
            "Merged in from a later {} run on {} ({}; load average before / after {} / {}): {}. \
             Every other section is from the run above.\n",
            m.mode,
            m.date,
            m.rendezvous,
            m.load_before,
            m.load_after,
            m.entries
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    // Headline.
    let _ = writeln!(s, "## Headline\n");
    let _ = writeln!(
        s,
        "| metric | Rendezvous | matchbox_server | PeerJS server | bare relay | Rendezvous / matchbox | Rendezvous / PeerJS | Rendezvous / bare |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
    type Metric = (&'static str, fn(&Results, Kind) -> Option<f64>, usize, bool);
    let metrics: [Metric; 6] = [
        (
            "relay throughput, signals/s, median of 1-s rates (higher is better)",
            relay_max,
            0,
            false,
        ),
        (
            "relay signals per server CPU-second (higher is better)",
            relay_eff,
            0,
            false,
        ),
        (
            "relay p99 at half its max rate, ms (lower is better)",
            relay_p99_half,
            3,
            true,
        ),
        (
            "memory per idle socket, KiB, at the largest count (lower is better)",
            |r, k| idle_largest(r, k).map(|v| v.0),
            2,
            true,
        ),
        (
            "matches/s, burst of find_match (higher is better)",
            matches,
            0,
            false,
        ),
        ("churn cycles/s (higher is better)", churn, 0, false),
    ];
    for (name, m, digits, lower_better) in metrics {
        let ours = m(r, rdv);
        let mut row = format!("| {name} | {}", num(ours, digits));
        for k in peers {
            let _ = write!(row, " | {}", num(m(r, k), digits));
        }
        for k in peers {
            // Ratios read "how many times better": inverted where lower is better.
            let rt = if lower_better {
                ratio(m(r, k), ours)
            } else {
                ratio(ours, m(r, k))
            };
            let _ = write!(row, " | {}", x(rt));
        }
        let _ = writeln!(s, "{row} |");
    }
    let _ = writeln!(
        s,
        "\nRatios are \"times better than\": Rendezvous / peer for rates, peer / Rendezvous \
         for latency and memory. n/a: the server has no such feature (PeerJS and the bare \
         relay have no matchmaking) or the run failed (see below).\n"
    );
    let _ = writeln!(
        s,
        "![relay throughput and p99 latency per target]({svg_name})\n"
    );

    // Goals.
    let _ = writeln!(s, "## Goals (issue 13, the relay fast path)\n");
    let _ = writeln!(s, "| goal | measured | met |");
    let _ = writeln!(s, "|---|---|---|");
    let yes = |ok: Option<bool>| match ok {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "n/a",
    };
    for (k, want) in [(Kind::Matchbox, 2.0), (Kind::Bare, 0.8)] {
        let rt = ratio(relay_max(r, rdv), relay_max(r, k));
        let eff = ratio(relay_eff(r, rdv), relay_eff(r, k));
        let _ = writeln!(
            s,
            "| relay throughput >= {want}x {} | {} (per server CPU-second: {}) | {} |",
            k.label(),
            x(rt),
            x(eff),
            yes(rt.map(|v| v >= want))
        );
    }
    let p99 = relay_p99_half(r, rdv);
    let half_rate = get(r, rdv, "relay").and_then(|v| f(v, &["half", "offered_rate"]));
    let _ = writeln!(
        s,
        "| relay p99 < 2 ms at half the max rate ({} signals/s) | {} ms | {} |",
        num(half_rate, 0),
        num(p99, 3),
        yes(p99.map(|v| v < 2.0))
    );
    let mb_p99 = relay_p99_half(r, Kind::Matchbox);
    let mb_half = get(r, Kind::Matchbox, "relay").and_then(|v| f(v, &["half", "offered_rate"]));
    let _ = writeln!(
        s,
        "| relay p99 at its half rate below matchbox_server's p99 at matchbox_server's half rate ({} signals/s) | {} ms vs {} ms | {} |",
        num(mb_half, 0),
        num(p99, 3),
        num(mb_p99, 3),
        yes(p99.zip(mb_p99).map(|(a, b)| a < b && half_rate.zip(mb_half).is_some_and(|(h, m)| h >= m)))
    );
    let ch = ratio(churn(r, rdv), churn(r, Kind::Matchbox));
    let _ = writeln!(
        s,
        "| churn cycles/s >= matchbox_server | {} ({} / {}) | {} |",
        x(ch),
        num(churn(r, rdv), 0),
        num(churn(r, Kind::Matchbox), 0),
        yes(ch.map(|v| v >= 1.0))
    );
    let idle = idle_largest(r, rdv);
    let _ = writeln!(
        s,
        "| <= 4 KiB per idle socket at the largest count ({} sockets) | {} KiB | {} |",
        num(idle.map(|v| v.1), 0),
        num(idle.map(|v| v.0), 2),
        yes(idle.map(|v| v.0 <= 4.0))
    );
    let cl = cluster_ratio(r);
    let _ = writeln!(
        s,
        "| cluster cross-node relay >= 0.5x single node (max rate) | {} | {} |",
        x(cl),
        yes(cl.map(|v| v >= 0.5))
    );
    let lb = r.lobby_bench.as_ref();
    let fm = |name: &str| lb.and_then(|v| v.get(name)).and_then(Value::as_f64);
    let (k1, m1) = (fm("no_filter_1000_rooms"), fm("no_filter_1000000_rooms"));
    let (fk1, fm1) = (fm("filter_1000_rooms"), fm("filter_1000000_rooms"));
    let lobby_ratio = ratio(m1, k1);
    let lobby_ratio_f = ratio(fm1, fk1);
    let _ = writeln!(
        s,
        "| find_match at 1M rooms within 1.2x of 1k rooms | no filter {} ({} / {} ns), filter {} ({} / {} ns) | {} |",
        x(lobby_ratio),
        num(m1, 0),
        num(k1, 0),
        x(lobby_ratio_f),
        num(fm1, 0),
        num(fk1, 0),
        if lb.is_none() {
            "not run (full mode only)"
        } else {
            yes(lobby_ratio.map(|a| a <= 1.2 && lobby_ratio_f.is_none_or(|b| b <= 1.2)))
        }
    );
    let _ = writeln!(s);

    if !findings.is_empty() {
        let _ = writeln!(s, "{}\n", findings.trim());
    }

    // Machine and versions.
    let _ = writeln!(s, "## Machine, versions, parameters\n");
    let _ = writeln!(s, "| | |\n|---|---|");
    for (k, v) in &r.machine {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    let _ = writeln!(
        s,
        "| load average before / after | {} / {} |",
        r.load_before, r.load_after
    );
    if !r.other_load.is_empty() {
        let _ = writeln!(
            s,
            "| busiest other processes at start (%CPU) | {} |",
            r.other_load.join(", ")
        );
    }
    for (k, v) in &r.versions {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    let pin = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
    let _ = writeln!(
        s,
        "| CPU pinning | servers on CPU {}, load generator on CPU {} (`taskset`) |",
        pin("server_cpus").unwrap_or_else(|| "any".into()),
        pin("client_cpus").unwrap_or_else(|| "any".into())
    );
    let _ = writeln!(s, "\nParameters (the same for every target):\n");
    let _ = writeln!(
        s,
        "```json\n{}\n```\n",
        serde_json::to_string_pretty(p).unwrap_or_default()
    );

    relay_section(&mut s, r);
    idle_section(&mut s, r);
    match_section(&mut s, r);
    churn_section(&mut s, r);
    cluster_section(&mut s, r);
    fairness_section(&mut s, r);
    profile_section(&mut s, r);
    lobby_section(&mut s, r);
    if !tickets.is_empty() {
        let _ = writeln!(s, "{}\n", tickets.trim());
    }

    let _ = writeln!(s, "## How to repeat\n");
    let _ = writeln!(
        s,
        "```sh\nscripts/bench           # full run (installs the peers, builds, ~15 min), rewrites this page\n\
         scripts/bench --quick   # a few minutes, for checking a change\n\
         cargo run --release -p rendezvous-bench -- run --help   # every knob\n\
         # one scenario into the saved full run, e.g. the cluster (needs redis-server):\n\
         target/release/rendezvous-bench run --targets rendezvous --scenarios cluster \\\n  \
         --merge target/bench-results.json --md docs/benchmarks.md --svg docs/benchmarks.svg\n```\n"
    );
    let _ = writeln!(
        s,
        "matchbox_server and the PeerJS server are installed from their registries into \
         `target/bench-peers/` (`cargo install matchbox_server --version '^0.15'`, \
         `npm install peer@1.0`); raw results are in `target/bench-results.json` and \
         server logs in `target/bench-logs/`."
    );
    s
}

fn relay_section(s: &mut String, r: &Results) {
    let p = &r.params;
    let _ = writeln!(s, "## Relay\n");
    let _ = writeln!(
        s,
        "{} pairs of players, each player sending signals to its peer; the receiver takes \
         one-way latency from the timestamp in the payload. **max**: each sender keeps at most \
         {} signals in flight (closed loop), after {} s of warm-up, measured over {} s. \
         **half**: every sender on a fixed schedule at half that target's own max rate, \
         stamping the actual send time (how late senders were on their schedule is shown: \
         tokio's timer has a 1 ms grain). Each player's socket is opened and seated with \
         tokio-tungstenite, then driven by hand (`bench/src/rawws.rs`: one task per player for \
         both directions, frames written into and read out of plain buffers, nothing \
         allocated per frame); until 2026-12-01 the players sent and read through \
         tokio-tungstenite, which filled the generator's core before the bare relay's.\n",
        p["pairs"], p["window"], p["warmup_s"], p["relay_s"]
    );
    let _ = writeln!(
        s,
        "| target | run | signals/s | 1-s rates min / median / max | held back by | lost | errors | server CPU (cores) | of it in the kernel | signals per server CPU-s | generator CPU | sender lag p99 (ms) | p50 | p90 | p99 | p99.9 | max (ms) |"
    );
    let _ = writeln!(
        s,
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for k in Kind::ALL {
        if let Some(st) = status_of(r, k, "relay") {
            let _ = writeln!(s, "| {} | {st} ||||||||||||||||", k.label());
            continue;
        }
        let Some(v) = get(r, k, "relay") else {
            continue;
        };
        for run in ["max", "half", "fixed"] {
            let Some(x) = v.get(run) else { continue };
            let rate = f(x, &["rate"]);
            let cores = f(x, &["server_cores"]);
            let label = match f(x, &["offered_rate"]) {
                Some(o) => format!("{run} (@{} /s)", num(Some(o), 0)),
                None => run.to_string(),
            };
            let _ = writeln!(
                s,
                "| {} | {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                k.label(),
                num(rate, 0),
                spread(x),
                bound_by(x),
                num(f(x, &["lost"]), 0),
                num(f(x, &["errors"]), 0),
                num(cores, 2),
                f(x, &["server_kernel_share"])
                    .map_or("n/a".into(), |k| format!("{:.0}%", k * 100.0)),
                num(ratio(rate, cores), 0),
                num(f(x, &["client_cores"]), 2),
                num(f(x, &["sender_lag", "p99_ms"]), 3),
                lat_cells(x.get("latency"))
            );
        }
    }
    let _ = writeln!(s);
}

/// Number of CPUs in a `taskset -c` list such as `1`, `0-1` or `1,3`.
fn cpu_count(list: &str) -> Option<f64> {
    let mut n = 0.0;
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                n += f64::from(b.checked_sub(a)? + 1);
            }
            None => {
                part.trim().parse::<u32>().ok()?;
                n += 1.0;
            }
        }
    }
    Some(n)
}

/// What held a cluster relay run back: one saturated process (Redis is
/// single-threaded), or the CPUs all servers share, or the generator.
fn cluster_bound(x: &Value, server_cpus: Option<f64>) -> String {
    if x["offered_rate"].is_number() {
        return "offered rate".into();
    }
    let procs = x["server_processes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let server = f(x, &["server_cores"]).unwrap_or(0.0);
    let client = f(x, &["client_cores"]).unwrap_or(0.0);
    if let Some(p) = procs
        .iter()
        .filter(|p| f(p, &["cores"]).unwrap_or(0.0) >= 0.85)
        .max_by(|a, b| {
            f(a, &["cores"])
                .partial_cmp(&f(b, &["cores"]))
                .unwrap_or(std::cmp::Ordering::Equal)
        })
    {
        return format!("{} CPU", p["name"].as_str().unwrap_or("one server"));
    }
    let budget = server_cpus.unwrap_or(1.0);
    if server >= 0.85 * budget && server >= client {
        if procs.len() > 1 {
            "server CPU (shared by its processes)".into()
        } else {
            "server CPU".into()
        }
    } else if client >= 0.85 {
        "generator CPU".into()
    } else {
        "neither CPU: waits".into()
    }
}

/// Cross-node relay over the single in-memory server, max rate.
fn cluster_ratio(r: &Results) -> Option<f64> {
    let c = get(r, Kind::Rendezvous, "cluster")?;
    let setups = c["setups"].as_array()?;
    let find = |setup: &str| {
        setups
            .iter()
            .find(|st| st["name"] == setup)
            .and_then(|st| st["runs"].as_array())
            .and_then(|runs| runs.iter().find(|r| r["run"] == "max"))
            .map(|r| r["relay"].clone())
    };
    let rate = |v: &Value| f(v, &["rate_median_1s"]).or_else(|| f(v, &["rate"]));
    ratio(rate(&find("cross-node")?), rate(&find("single")?))
}

fn cluster_section(s: &mut String, r: &Results) {
    let k = Kind::Rendezvous;
    if r.results
        .get(k.name())
        .and_then(|m| m.get("cluster"))
        .is_none()
    {
        return;
    }
    let _ = writeln!(s, "## Cluster (two instances sharing one Redis)\n");
    if let Some(st) = status_of(r, k, "cluster") {
        let _ = writeln!(s, "{st}\n");
        return;
    }
    let Some(c) = get(r, k, "cluster") else {
        return;
    };
    let text = |key: &str| c[key].as_str().unwrap_or("unknown").to_string();
    let cpus = c["server_cpus"].as_str().map(str::to_string);
    let _ = writeln!(
        s,
        "The relay measurement above, in cluster mode (`--redis-url`). The generator starts \
         its own redis-server ({}; loopback, `--save \"\"`, no persistence) and two Rendezvous \
         nodes pointed at it (`--node-id bench-a`, `bench-b`), and stops them by pid at the \
         end. **cross-node**: each of {} pairs meets in a room of 2 created on node A and \
         joined by `room_id` on node B, so every `ice_candidate` goes from one node to the \
         other: the sender's node routes it on the room it learned from notices (no script), \
         queues it, and publishes its queued signals in batches, one `PUBLISH` per target \
         node; the receiver's node checks it and writes it out (signals without `rid`, no `ok`). **same-node**: both \
         players on node A of a fresh cluster (Redis still in the path). **single**: one \
         Rendezvous without Redis, as in the relay section. Each setup: max rate (at most {} \
         in flight per sender, {} s warm-up, {} s measured), then half of that setup's own \
         max; same-node and single also run at the cross-node half rate (**equal**), for \
         latency at the same load. Server CPU is the sum of every server process of the setup, {}; the Redis \
         columns come from `INFO commandstats` over the run (after the pairs were seated), per \
         signal sent (script time is Redis's own accounting of EVALSHA, the commands the \
         script runs included). \"Redis ceiling\" is signals/s divided by redis-server's CPU share: \
         the rate at which that one Redis core would be full if everything else kept up \
         (an extrapolation, not a measurement). \"CPU stolen\" is the share of the machine's CPU \
         time the hypervisor gave to other guests during the window (`steal` in `/proc/stat`): \
         this is a shared VM, and a run with much of it is a disturbed run. A run with more than \
         {:.0}% stolen is made again, up to {} times in all, and the least disturbed one is \
         shown.\n",
        text("redis"),
        c["pairs"],
        c["window"],
        c["warmup_s"],
        c["relay_s"],
        match &cpus {
            Some(cpu) => format!(
                "all pinned together to CPU {cpu} (`taskset`, the generator on CPU {}): \
                 the cluster gets the same CPU budget as the single server",
                c["client_cpus"].as_str().unwrap_or("any")
            ),
            None => "unpinned".into(),
        },
        crate::scenario::cluster::MAX_STEAL * 100.0,
        crate::scenario::cluster::ATTEMPTS
    );
    let _ = writeln!(
        s,
        "Measured on {} with {}, load average before / after {} / {}:\n\n```sh\n{}\n```\n",
        text("date"),
        text("rendezvous"),
        text("load_before"),
        text("load_after"),
        text("command")
    );
    let _ = writeln!(
        s,
        "| setup | run | signals/s | 1-s rates min / median / max | held back by | lost | errors | server CPU (cores) | per process (cores) | signals per server CPU-s | Redis scripts per signal | PUBLISH per signal | Redis script µs per signal | Redis ceiling (signals/s) | CPU stolen (VM) | p50 | p90 | p99 | p99.9 | max (ms) |"
    );
    let _ = writeln!(
        s,
        "|---|---|---:|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let budget = cpus.as_deref().and_then(cpu_count);
    let setups = c["setups"].as_array().cloned().unwrap_or_default();
    for st in &setups {
        let name = st["name"].as_str().unwrap_or("?");
        if let Some(e) = st["error"].as_str() {
            let _ = writeln!(
                s,
                "| {name} | error: {} |||||||||||||||||||",
                e.lines().next().unwrap_or(e)
            );
        }
        for run in st["runs"].as_array().into_iter().flatten() {
            let x = &run["relay"];
            let rate = f(x, &["rate"]);
            let cores = f(x, &["server_cores"]);
            let mut label = match f(x, &["offered_rate"]) {
                Some(o) => format!(
                    "{} (@{} /s)",
                    run["run"].as_str().unwrap_or("?"),
                    num(Some(o), 0)
                ),
                None => run["run"].as_str().unwrap_or("?").to_string(),
            };
            if let Some(n) = run["attempts"].as_u64().filter(|n| *n > 1) {
                let _ = write!(label, ", least disturbed of {n}");
            }
            let procs: Vec<String> = x["server_processes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{} {}",
                        p["name"].as_str().unwrap_or("?"),
                        num(f(p, &["cores"]), 2)
                    )
                })
                .collect();
            let redis_cores = x["server_processes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == "redis-server")
                .and_then(|p| f(p, &["cores"]));
            let rd = &run["redis"];
            let _ = writeln!(
                s,
                "| {name} | {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                num(rate, 0),
                spread(x),
                cluster_bound(x, budget),
                num(f(x, &["lost"]), 0),
                num(f(x, &["errors"]), 0),
                num(cores, 2),
                if procs.is_empty() { "n/a".into() } else { procs.join(", ") },
                num(ratio(rate, cores), 0),
                num(f(rd, &["scripts_per_signal"]), 2),
                num(f(rd, &["publishes_per_signal"]), 2),
                num(f(rd, &["script_usec_per_signal"]), 1),
                num(ratio(rate, redis_cores.filter(|c| *c >= 0.02)), 0),
                f(x, &["steal_share"]).map_or("n/a".into(), |v| format!("{:.0}%", v * 100.0)),
                lat_cells(x.get("latency"))
            );
        }
    }
    let _ = writeln!(s);
    // Cross-node against the in-memory server, run by run.
    let find = |setup: &str, run: &str| {
        setups
            .iter()
            .find(|st| st["name"] == setup)
            .and_then(|st| st["runs"].as_array())
            .and_then(|runs| runs.iter().find(|r| r["run"] == run))
            .map(|r| r["relay"].clone())
    };
    let mut lines = Vec::new();
    let rate = |v: &Value| f(v, &["rate_median_1s"]).or_else(|| f(v, &["rate"]));
    for run in ["max", "fixed"] {
        let (Some(cross), Some(single)) = (find("cross-node", run), find("single", run)) else {
            continue;
        };
        lines.push(format!(
            "- throughput ({run}, median of 1-s rates): cross-node {} signals/s, same-node {}, \
             single server {}: cross-node / single {}",
            num(rate(&cross), 0),
            num(find("same-node", run).as_ref().and_then(rate), 0),
            num(rate(&single), 0),
            x(ratio(rate(&cross), rate(&single)))
        ));
    }
    if let Some(cross) = find("cross-node", "half") {
        let lat = |v: Option<Value>| {
            v.map_or("n/a".to_string(), |v| {
                format!(
                    "p50 {} / p99 {} ms",
                    num(f(&v, &["latency", "p50_ms"]), 3),
                    num(f(&v, &["latency", "p99_ms"]), 3)
                )
            })
        };
        lines.push(format!(
            "- latency at the same offered rate ({} signals/s, the cross-node half rate): \
             cross-node {}, same-node {}, single server {}",
            num(f(&cross, &["offered_rate"]), 0),
            lat(Some(cross.clone())),
            lat(find("same-node", "equal")),
            lat(find("single", "equal"))
        ));
    }
    if !lines.is_empty() {
        let _ = writeln!(s, "In short:\n\n{}\n", lines.join("\n"));
    }
    // Both nodes must see the same lobby.
    let mut seen = Vec::new();
    for st in &setups {
        let Some(stats) = st["stats"].as_object() else {
            continue;
        };
        if stats.len() < 2 {
            continue;
        }
        let each: Vec<String> = stats
            .iter()
            .map(|(node, v)| {
                format!(
                    "{node}: {} players, {} rooms, {} connections",
                    num(f(v, &["total_players"]), 0),
                    num(f(v, &["total_rooms"]), 0),
                    num(f(v, &["connections"]), 0)
                )
            })
            .collect();
        seen.push(format!(
            "- {}: {}",
            st["name"].as_str().unwrap_or("?"),
            each.join("; ")
        ));
    }
    if !seen.is_empty() {
        let _ = writeln!(
            s,
            "`/api/stats` of each node once the pairs of the first run were seated \
             (each node reports the whole cluster's lobby):\n\n{}\n",
            seen.join("\n")
        );
    }
}

fn idle_section(s: &mut String, r: &Results) {
    let _ = writeln!(s, "## Idle sockets\n");
    let _ = writeln!(
        s,
        "Sockets that only answer pings, held by worker processes of the generator (at most \
         10 000 each), spread over 127.0.0.x source addresses. Memory is the growth of the \
         server's RSS (`VmRSS` of `/proc/<pid>/status`) over its RSS before the first socket, \
         2 s after the last handshake. The open-file limit (soft/hard) of a process in this run \
         was {}: `scripts/bench` tries to raise the hard limit first (on the machine these \
         numbers come from, even root may not: `ulimit -Hn` above 20000 fails with EPERM \
         there), the generator spreads its sockets over worker processes, but the server is \
         one process and cannot hold more sockets than its limit.\n",
        r.machine
            .get("open files (soft/hard)")
            .map_or("unknown", String::as_str)
    );
    let _ = writeln!(s, "| target | sockets asked | connected | failed | server RSS (KiB) | KiB per socket | connect time (s) |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    for k in Kind::ALL {
        if let Some(st) = status_of(r, k, "idle") {
            let _ = writeln!(s, "| {} | {st} ||||||", k.label());
            continue;
        }
        let Some(v) = get(r, k, "idle") else { continue };
        for step in v["steps"].as_array().into_iter().flatten() {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                k.label(),
                num(f(step, &["wanted"]), 0),
                num(f(step, &["connected"]), 0),
                num(f(step, &["failed"]), 0),
                num(f(step, &["rss_kib"]), 0),
                num(f(step, &["kib_per_socket"]), 2),
                num(f(step, &["connect_s"]), 1)
            );
        }
        if let Some(e) = v["first_error"].as_str() {
            let _ = writeln!(s, "| {} | first error: {e} ||||||", k.label());
        }
    }
    let _ = writeln!(s);
    let bare = get(r, Kind::Bare, "idle");
    let small = bare.and_then(|v| v["small_read_buffer"]["steps"].get(0));
    let normal = bare.and_then(|v| v["steps"].get(0));
    if let (Some(sm), Some(no)) = (small, normal) {
        let (a, b) = (
            f(sm, &["kib_per_socket"]).unwrap_or(0.0),
            f(no, &["kib_per_socket"]).unwrap_or(0.0),
        );
        let _ = writeln!(
            s,
            "The bare relay once more with a 512-byte tungstenite read buffer instead of \
             Rendezvous's 4096: **{a:.2} KiB** per socket at {} sockets, against {b:.2} KiB. \
             The read buffer, allocated at a socket's first read and kept for its life, is \
             {:.2} KiB of every idle socket.\n",
            num(f(sm, &["connected"]), 0),
            b - a
        );
    }
}

fn match_section(s: &mut String, r: &Results) {
    let p = &r.params;
    let _ = writeln!(s, "## Match\n");
    let _ = writeln!(
        s,
        "{} clients connect and ask for a room of {} at once ({} handshakes in flight). \
         Latency is from a client's request (connect) to its room being full: `game_start` \
         for Rendezvous; for matchbox_server (`/<room>?next={}`), the last `NewPeer` of its \
         group, the groups being rebuilt from `NewPeer` events. Violations: rooms over the \
         size, or clients in two rooms.\n",
        p["match_clients"], p["room_size"], p["connect_concurrency"], p["room_size"]
    );
    let _ = writeln!(s, "| target | full rooms | partial | largest | violations | failed clients | matches/s | p50 | p90 | p99 | p99.9 | max (ms) |");
    let _ = writeln!(
        s,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for k in Kind::ALL {
        if let Some(st) = status_of(r, k, "match") {
            let _ = writeln!(s, "| {} | {st} |||||||||||", k.label());
            continue;
        }
        let Some(v) = get(r, k, "match") else {
            continue;
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            k.label(),
            num(f(v, &["rooms_full"]), 0),
            num(f(v, &["rooms_partial"]), 0),
            num(f(v, &["largest_room"]), 0),
            num(f(v, &["violations"]), 0),
            num(f(v, &["failed_clients"]), 0),
            num(f(v, &["matches_per_s"]), 0),
            lat_cells(v.get("latency"))
        );
        if let Some(rl) = v.get("reply_latency").filter(|l| !l.is_null()) {
            let _ = writeln!(
                s,
                "| {} (`find_match` to its `ok`) |||||||{} |",
                k.label(),
                lat_cells(Some(rl))
            );
        }
    }
    let _ = writeln!(s);
}

fn churn_section(s: &mut String, r: &Results) {
    let p = &r.params;
    let _ = writeln!(s, "## Churn\n");
    let _ = writeln!(
        s,
        "{} players loop for {} s: connect, get a partner, send {} signals each way, leave, \
         close. Rendezvous uses `find_match` (size 2, then `leave_room`), matchbox_server \
         `?next=2`; the PeerJS server and the bare relay have no matchmaking, so one task runs \
         both players of a pair with ids it chose. Cycle time is per player, connect to close. \
         For Rendezvous, `/api/stats` must come back to zero connections, players and rooms.\n",
        p["churn_concurrency"], p["churn_s"], p["churn_signals"]
    );
    let _ = writeln!(s, "| target | player cycles | cycles/s | failures | cut by the clock | server CPU (cores) | server CPU per cycle (µs) | stats back to zero | p50 | p90 | p99 | p99.9 | max (ms) |");
    let _ = writeln!(
        s,
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"
    );
    for k in Kind::ALL {
        if let Some(st) = status_of(r, k, "churn") {
            let _ = writeln!(s, "| {} | {st} ||||||||||||", k.label());
            continue;
        }
        let Some(v) = get(r, k, "churn") else {
            continue;
        };
        let zero = match v["stats_zero"].as_bool() {
            Some(true) => format!("yes, after {} ms", v["stats_zero_after_ms"]),
            Some(false) => format!("**no**: {}", v["final_stats"]),
            None => "n/a (no stats API)".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {zero} | {} |",
            k.label(),
            num(f(v, &["cycles"]), 0),
            num(f(v, &["cycles_per_s"]), 0),
            num(f(v, &["failures"]), 0),
            num(f(v, &["aborted"]), 0),
            num(f(v, &["server_cores"]), 2),
            num(f(v, &["server_cpu_us_per_cycle"]), 0),
            lat_cells(v.get("latency"))
        );
        if let Some(e) = v["first_error"].as_str() {
            let _ = writeln!(s, "| {} | first failure: {e} ||||||||||||", k.label());
        }
    }
    let _ = writeln!(s);
}

fn fairness_section(s: &mut String, r: &Results) {
    let payload = r.params["payload"].as_str().unwrap_or("candidate");
    let bytes = |k: Kind| {
        get(r, k, "relay")
            .and_then(|v| f(v, &["max", "frame_bytes"]))
            .map_or("?".into(), |b| format!("{b:.0}"))
    };
    let _ = writeln!(s, "## What each target relays\n");
    let _ = writeln!(
        s,
        "Every target relays the same payload ({payload}: {}), with the sender's timestamp in \
         it, in its own envelope. The work done per signal is not the same, and that is the \
         point of the comparison:\n",
        if payload == "offer" {
            "a real Chromium SDP offer with the timestamp in its `s=` line"
        } else {
            "an ICE candidate object with a valid RFC 8839 `candidate:` line and the timestamp in `usernameFragment`"
        }
    );
    let _ = writeln!(
        s,
        "- **Rendezvous** (frame of {} bytes): `{{\"type\":\"ice_candidate\",\"to\":..,\"candidate\":{{..}}}}`. \
         It parses the JSON, **validates every candidate against the RFC 8839 grammar (every SDP \
         with a real SDP parser)**, checks that both players are in the same room, relays \
         `{{\"type\":\"ice_candidate\",\"from\":..}}`, counts it, and answers the sender with an \
         `ok` reply: 1 frame in, 2 frames out.\n\
         - **matchbox_server** ({} bytes): `{{\"Signal\":{{\"receiver\":..,\"data\":{{..}}}}}}`, parsed \
         into a `serde_json::Value` and re-serialized with `sender`; no check of the data, no \
         reply: 1 in, 1 out.\n\
         - **PeerJS server** ({} bytes): `{{\"type\":\"CANDIDATE\",\"dst\":..,\"payload\":{{..}}}}`, \
         `JSON.parse`d and re-stringified with `src`; no check, no reply: 1 in, 1 out.\n\
         - **bare relay** ({} bytes): any text frame to the other socket of the pair, \
         verbatim: no parse at all: 1 in, 1 out.\n",
        bytes(Kind::Rendezvous),
        bytes(Kind::Matchbox),
        bytes(Kind::Peerjs),
        bytes(Kind::Bare)
    );
    let _ =
        writeln!(
            s,
            "Settings that differ from each server's defaults: matchbox_server runs with \
         `RUST_LOG=warn` (its default logs every connection); the PeerJS server with \
         `--concurrent_limit 1000000` (default 5000) and `--alive_timeout 3600000` (idle \
         sockets of the benchmark send no HEARTBEAT); Rendezvous with its defaults{}. Every \
         server listens on 127.0.0.1 and all load goes to 127.0.0.0/8.\n",
            match r.params.get("rendezvous_args").and_then(Value::as_array) {
                Some(a) if !a.is_empty() =>
                    format!(
                " except `{}`, which lift its per-connection rate limit and its connection \
                 caps out of the benchmark's way",
                a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ")
            ),
                _ => String::new(),
            }
        );
}

fn profile_section(s: &mut String, r: &Results) {
    let _ = writeln!(s, "## Profile of the relay path\n");
    let Some(p) = &r.profile else {
        let _ = writeln!(
            s,
            "Not run in this mode (`scripts/bench` runs it in full mode; by hand: \
             `rendezvous-bench profile`).\n"
        );
        return;
    };
    let _ = writeln!(
        s,
        "Rendezvous under `{}` while relaying {} signals ({} payload, {} pairs, max rate): \
         **{} user-space instructions per relayed signal** (reading, checking and relaying \
         it; the generator sends signals without `rid`, so there is no `ok` reply; kernel \
         time in socket syscalls is not counted by callgrind). Self cost \
         grouped by what the code does:\n",
        p["tool"].as_str().unwrap_or("callgrind"),
        p["signals_relayed"],
        p["payload"].as_str().unwrap_or("?"),
        p["pairs"],
        num(p["instructions_per_signal"].as_f64(), 0)
    );
    let _ = writeln!(s, "| share of instructions | category |\n|---:|---|");
    for c in p["categories"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "| {:.1}% | {} |",
            c["share"].as_f64().unwrap_or(0.0),
            c["category"].as_str().unwrap_or("?")
        );
    }
    let _ = writeln!(s, "\nTop functions by self cost:\n");
    let _ = writeln!(s, "| self | function |\n|---:|---|");
    for e in p["self_top"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "| {:.1}% | `{}` |",
            e["share"].as_f64().unwrap_or(0.0),
            short(e["function"].as_str().unwrap_or("?"))
        );
    }
    let _ = writeln!(s, "\nInclusive cost of the steps of the relay path:\n");
    let _ = writeln!(s, "| inclusive | function |\n|---:|---|");
    for e in p["inclusive"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "| {:.1}% | `{}` |",
            e["share"].as_f64().unwrap_or(0.0),
            short(e["function"].as_str().unwrap_or("?"))
        );
    }
    let _ = writeln!(s);
}

/// Function names without generic arguments, which can be pages long; a
/// qualified path (`<A as B>::f`) or an `<impl B for A>` block is kept,
/// with the generics inside it removed.
fn short(f: &str) -> String {
    let mut out = String::new();
    // One entry per open '<': whether its content is being kept.
    let mut stack: Vec<bool> = Vec::new();
    let mut chars = f.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let shown = stack.iter().all(|k| *k);
        match c {
            '<' => {
                let rest = &f[i + 1..];
                let keep = shown && (out.is_empty() || rest.starts_with("impl "));
                if shown {
                    if keep {
                        out.push('<');
                    } else {
                        out.push_str("<…>");
                    }
                }
                stack.push(keep);
            }
            '>' if !stack.is_empty() => {
                let keep = stack.pop().unwrap_or(false);
                if keep && stack.iter().all(|k| *k) {
                    out.push('>');
                }
            }
            // `->` in a closure type is not a closing bracket.
            '-' if chars.peek().map(|p| p.1) == Some('>') => {
                chars.next();
                if shown {
                    out.push_str("->");
                }
            }
            _ if shown => out.push(c),
            _ => {}
        }
    }
    out.replace('|', "\\|")
}

fn lobby_section(s: &mut String, r: &Results) {
    let _ = writeln!(s, "## Lobby engine (criterion)\n");
    let Some(lb) = r.lobby_bench.as_ref().and_then(Value::as_object) else {
        let _ = writeln!(
            s,
            "Not run in this mode (`cargo bench --bench lobby`, run by `scripts/bench` in full mode).\n"
        );
        return;
    };
    let _ = writeln!(
        s,
        "`cargo bench --bench lobby -- find_match`: mean time of one `find_match` + \
         `leave_room` with N open rooms of 4 in the lobby (no I/O). Rows `cluster_*`: \
         `cargo bench --bench cluster_match`, the same pair through the cluster's Lua \
         script on a real redis-server (two store round trips) with N open rooms of 3.\n"
    );
    let _ = writeln!(s, "| benchmark | mean (ns) |\n|---|---:|");
    let mut names: Vec<_> = lb.iter().collect();
    names.sort_by(|a, b| a.0.cmp(b.0));
    for (n, v) in names {
        let shown = match n.strip_prefix("cluster_") {
            Some(rest) => format!("cluster_find_match/{rest}"),
            None => format!("find_match/{n}"),
        };
        let _ = writeln!(s, "| {shown} | {} |", num(v.as_f64(), 0));
    }
    let _ = writeln!(s);
}

/// Two bar charts side by side: relay throughput and p99 latency at half rate.
fn chart(r: &Results, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (960, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(480);
    let colors = [
        RGBColor(0x2b, 0x6c, 0xb0),
        RGBColor(0xd6, 0x6a, 0x2b),
        RGBColor(0x4c, 0x9a, 0x4c),
        RGBColor(0x88, 0x88, 0x88),
    ];
    let bars = |metric: fn(&Results, Kind) -> Option<f64>| -> Vec<(usize, f64)> {
        Kind::ALL
            .iter()
            .enumerate()
            .map(|(i, &k)| (i, metric(r, k).unwrap_or(0.0)))
            .collect()
    };
    for (area, title, data, unit) in [
        (&left, "relay throughput (signals/s)", bars(relay_max), ""),
        (
            &right,
            "relay p99 at half max rate (ms)",
            bars(relay_p99_half),
            " ms",
        ),
    ] {
        let top = data.iter().map(|d| d.1).fold(0.0, f64::max).max(1e-3) * 1.2;
        let mut c = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d((0usize..3usize).into_segmented(), 0f64..top)?;
        c.configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .x_labels(4)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => Kind::ALL
                    .get(*i)
                    .map_or(String::new(), |k| k.label().to_string()),
                _ => String::new(),
            })
            .y_label_formatter(&|v| {
                if top >= 1000.0 {
                    format!("{:.0}k", v / 1000.0)
                } else {
                    format!("{v:.2}")
                }
            })
            .draw()?;
        c.draw_series(data.iter().map(|&(i, v)| {
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), v),
                ],
                colors[i].filled(),
            );
            bar.set_margin(0, 0, 18, 18);
            bar
        }))?;
        c.draw_series(data.iter().map(|&(i, v)| {
            let text = if v == 0.0 {
                "n/a".to_string()
            } else if unit.is_empty() {
                group(v.round() as i64)
            } else {
                format!("{v:.3}{unit}")
            };
            Text::new(
                text,
                (SegmentValue::CenterOf(i), v + top * 0.04),
                ("sans-serif", 13)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
            )
        }))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(1234567), "1 234 567");
        assert_eq!(group(999), "999");
    }

    #[test]
    fn shortens_generics() {
        assert_eq!(short("a::b<c<d>>::e"), "a::b<…>::e");
        assert_eq!(
            short("<serde_json::read::StrRead<'a> as serde_json::read::Read>::parse_str"),
            "<serde_json::read::StrRead<…> as serde_json::read::Read>::parse_str"
        );
        assert_eq!(
            short("x::_::<impl serde::de::Deserialize for x::Field>::deserialize"),
            "x::_::<impl serde::de::Deserialize for x::Field>::deserialize"
        );
    }
}
